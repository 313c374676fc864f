//! One store, many processes (contract §1, §8.9).
//!
//! sled lets one process open a database. The first `serve` on a data
//! folder opens it and becomes the **owner**: it runs the engine and listens
//! on `DATA/nbledger.sock` (0600, in a 0700 folder, peer uid checked). Every
//! later process **attaches**: it says hello (its nbledger version, store
//! format and root; a mismatch is refused naming both), then speaks MCP to
//! the owner over the socket and forwards each tool call there, with the
//! caller's declared client name in `_meta`. So there is one engine, one
//! version sequence and one place where long-polls wake.
//!
//! The link carries MCP through [`crate::lines`], whose limit is larger
//! than the front door's, so any call a process took can be forwarded, and
//! an answer too large for the link still ends its call (with an error).
//!
//! A supervisor task per process keeps it owner or attached. When the link
//! to the owner drops (the owner exited or was killed), the attached
//! process tries the socket again and, finding no one, takes the store's
//! lock itself; whoever gets it replays the log (every returned write was
//! flushed, so none is lost), removes the stale socket and listens.
//!
//! The owner's answer is passed through as it is, a protocol-level refusal
//! (an unknown tool) included. A forwarded read whose owner dies is
//! retried on the next owner. A forwarded write whose owner dies may or
//! may not have committed: it answers `unavailable` with `retryable: true,
//! outcome: "unknown"`, and a retry with the same `request_id` is safe. An
//! owner that stops cleanly first finishes its in-flight calls and refuses
//! new ones with a handover answer (nothing applied) that attached
//! processes retry on their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    Implementation, ListToolsResult, PaginatedRequestParams, RequestMetaObject, ServerConfig, Tool,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;
use crate::error::{Code, ToolError};
use crate::lines::{self, LINK_LIMIT};
use crate::resources;
use crate::runs::Runner;
use crate::store::{Store, StoreError};

mod face;
use crate::tools::sets::{Toolset, Toolsets};
use crate::tools::{NotebookServer, common};

/// The owner's socket, inside the data folder.
pub const SOCKET: &str = "nbledger.sock";
/// Where a forwarded call carries its caller's declared client name.
const DECLARED: &str = "io.nbledger/declared-client";
/// How long a call waits for an owner (while one takes over) before it
/// answers `unavailable`.
const READY_WAIT: Duration = Duration::from_secs(15);
/// How long start-up keeps trying to own or attach.
const START_WAIT: Duration = Duration::from_secs(60);

/// The store format a process speaks: envelope format and event schema.
pub fn store_format() -> String {
    format!(
        "{}.{}",
        crate::events::codec::FORMAT,
        crate::events::codec::SCHEMA
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    nbledger: String,
    store_format: String,
    /// Empty for an audit command (it reads any root's log).
    root: String,
    /// `"dump"`: an audit command wants a copy of the log, not MCP.
    #[serde(default)]
    want: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Welcome {
    ok: bool,
    nbledger: String,
    store_format: String,
    #[serde(default)]
    message: Option<String>,
}

/// This process's place in the store, as seen by tool calls.
#[derive(Clone)]
enum Mode {
    /// Between owners: calls wait.
    Down,
    Owner(NotebookServer),
    Attached(Link),
    /// Attaching was refused for good (another version, another root).
    Failed(String),
}

#[derive(Clone)]
struct Link {
    peer: Peer<RoleClient>,
    generation: u64,
    /// Calls sent on this link and not yet answered.
    in_flight: Arc<Counter>,
    /// Cancelled once the link is known dead: calls still waiting on it
    /// stop waiting (rmcp may not answer a request it queued just as the
    /// transport closed).
    dead: CancellationToken,
}

/// A count that can be awaited down to zero.
#[derive(Default)]
struct Counter {
    n: AtomicUsize,
    zero: Notify,
}

impl Counter {
    fn enter(self: &Arc<Self>) -> CounterGuard {
        self.n.fetch_add(1, Ordering::SeqCst);
        CounterGuard(self.clone())
    }

    fn count(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }

    async fn zero(&self) {
        loop {
            let zero = self.zero.notified();
            if self.count() == 0 {
                return;
            }
            zero.await;
        }
    }
}

struct CounterGuard(Arc<Counter>);

impl Drop for CounterGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// The notification a stopping owner sends each attached process: send
/// nothing more on this link, close it once your calls are answered.
const HANDOVER: &str = "notifications/nbledger/handover";

/// The attached side of a link: hears the owner's handover.
struct AttachedClient {
    config: ClientConfig,
    generation: u64,
    retire: watch::Sender<u64>,
}

impl rmcp::ClientHandler for AttachedClient {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_custom_notification(
        &self,
        notification: rmcp::model::CustomNotification,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        if notification.method == HANDOVER {
            self.retire.send_replace(self.generation);
        }
    }
}

type AttachedService = rmcp::service::RunningService<RoleClient, AttachedClient>;

/// What [`acquire`] got.
enum Acquired {
    Owner(Arc<Engine>),
    Attached(AttachedService, u64),
}

pub struct Hub {
    root: PathBuf,
    data: PathBuf,
    mode: watch::Sender<Mode>,
    /// Set when this process stops: no new calls, long-polls end.
    draining: CancellationToken,
    /// Set when the store failed under this owner: the process must stop
    /// so that another one replays the log from disk.
    fatal: CancellationToken,
    /// Calls running on this process's engine.
    in_flight: Arc<Counter>,
    /// The attached link to give up (its generation): the owner is
    /// handing over, or a call found the link dead.
    retire: watch::Sender<u64>,
    generation: AtomicU64,
    sessions: TaskTracker,
    /// The engine, while this process owns the store.
    engine: parking_lot::Mutex<Option<Arc<Engine>>>,
    /// Its kernels, while this process owns the store.
    runner: parking_lot::Mutex<Option<Arc<Runner>>>,
    /// The Jupyter server whose rooms the owner joins (§12), if any.
    jupyter: Option<crate::room::Jupyter>,
    /// Stops the room peers (each hands its file back to the engine).
    rooms_stop: CancellationToken,
    rooms: TaskTracker,
}

impl Hub {
    /// Becomes the owner of the store in `data` or attaches to its owner,
    /// then keeps it so in the background. Fails when attaching is refused
    /// (another nbledger version or root) or the store cannot be opened.
    pub async fn start(root: &Path, data: &Path) -> anyhow::Result<Arc<Hub>> {
        Hub::start_with(root, data, None).await
    }

    /// [`Hub::start`], joining the rooms of `jupyter` while owner (§12).
    pub async fn start_with(
        root: &Path,
        data: &Path,
        jupyter: Option<crate::room::Jupyter>,
    ) -> anyhow::Result<Arc<Hub>> {
        let root = std::fs::canonicalize(root)?;
        let hub = Arc::new(Hub {
            root,
            data: data.to_path_buf(),
            mode: watch::Sender::new(Mode::Down),
            draining: CancellationToken::new(),
            fatal: CancellationToken::new(),
            in_flight: Arc::default(),
            retire: watch::Sender::new(0),
            generation: AtomicU64::new(0),
            sessions: TaskTracker::new(),
            engine: parking_lot::Mutex::new(None),
            runner: parking_lot::Mutex::new(None),
            jupyter,
            rooms_stop: CancellationToken::new(),
            rooms: TaskTracker::new(),
        });
        let first = tokio::time::timeout(START_WAIT, acquire(&hub))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the store in {} stayed locked by another process that does not answer on its socket for {}s; is an older nbledger or an audit command running on it?",
                    data.display(),
                    START_WAIT.as_secs()
                )
            })??;
        tokio::spawn(supervise(hub.clone(), first));
        // The supervisor installs the first mode at once.
        let mut rx = hub.mode.subscribe();
        let _ = rx.wait_for(|m| !matches!(m, Mode::Down)).await;
        Ok(hub)
    }

    /// Cancelled when the store failed under this owner (a flush error):
    /// the process should stop, and exit with a failure.
    pub fn fatal(&self) -> CancellationToken {
        self.fatal.clone()
    }

    /// Whether this process owns the store now.
    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data folder (where the log lives).
    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn is_owner(&self) -> bool {
        matches!(&*self.mode.borrow(), Mode::Owner(_))
    }

    /// The engine, while this process owns the store.
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.lock().clone()
    }

    /// Stops cleanly: refuses new calls (attached processes retry them on
    /// the next owner), ends long-polls, finishes the calls in flight, then
    /// closes the socket and writes a checkpoint. The store's lock goes
    /// with the process.
    pub async fn shutdown(&self) {
        self.draining.cancel();
        let owner = self.is_owner();
        if owner {
            let _ = std::fs::remove_file(self.data.join(SOCKET));
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.in_flight.zero()).await;
        // Each session tells its attached process to hand over and ends
        // when that process has had every call it sent answered.
        self.sessions.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.sessions.wait()).await;
        self.mode.send_replace(Mode::Down);
        // Rooms first: each records its room's last edits and hands its
        // file back to the engine.
        self.rooms_stop.cancel();
        self.rooms.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.rooms.wait()).await;
        // Kernels stop before the engine, so the ends of their runs are
        // in the log the checkpoint covers.
        let runner = self.runner.lock().take();
        if let Some(runner) = runner {
            runner.shutdown().await;
        }
        let engine = self.engine.lock().take();
        if let Some(engine) = engine {
            let _ = tokio::task::spawn_blocking(move || engine.stop()).await;
        }
    }

    fn enter(&self) -> Option<CounterGuard> {
        let guard = self.in_flight.enter();
        (!self.draining.is_cancelled()).then_some(guard)
    }

    /// Gives up `link` (after a handover answer or a transport error):
    /// asks the supervisor to retire it, stops counting this call on it,
    /// and waits until the process has left it for the next owner.
    async fn leave(&self, link: &Link, sent: CounterGuard) {
        self.retire.send_replace(link.generation);
        drop(sent);
        let mut rx = self.mode.subscribe();
        let _ = rx
            .wait_for(|m| !matches!(m, Mode::Attached(l) if l.generation == link.generation))
            .await;
    }

    /// The mode once it is usable, or `None` after `READY_WAIT`.
    async fn ready(&self) -> Option<Mode> {
        let mut rx = self.mode.subscribe();
        let waited =
            tokio::time::timeout(READY_WAIT, rx.wait_for(|m| !matches!(m, Mode::Down))).await;
        match waited {
            Ok(Ok(m)) => Some(m.clone()),
            _ => None,
        }
    }

    fn socket(&self) -> std::io::Result<SockPath> {
        SockPath::of(&self.data)
    }
}

/// Keeps the process owner or attached until it stops.
async fn supervise(hub: Arc<Hub>, first: Acquired) {
    let mut next = Some(first);
    loop {
        let acquired = match next.take() {
            Some(a) => a,
            None => match acquire(&hub).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "cannot reach or take over the store");
                    hub.mode.send_replace(Mode::Failed(format!("{e:#}")));
                    return;
                }
            },
        };
        match acquired {
            Acquired::Owner(engine) => {
                *hub.engine.lock() = Some(engine.clone());
                // Kernels live in the owner (§9.2); a crashed owner's are
                // killed and their runs ended on record before any new run.
                let runner = Arc::new(Runner::new(engine.clone(), hub.data.join("kernels")));
                runner.recover().await;
                *hub.runner.lock() = Some(runner.clone());
                if let Some(jupyter) = &hub.jupyter {
                    crate::room::start(
                        engine.clone(),
                        jupyter.clone(),
                        hub.rooms_stop.clone(),
                        hub.rooms.clone(),
                    );
                }
                let server = NotebookServer::new(engine, runner).with_stop(hub.draining.clone());
                hub.mode.send_replace(Mode::Owner(server));
                tracing::info!("owner of the store");
                return;
            }
            Acquired::Attached(service, generation) => {
                let in_flight: Arc<Counter> = Arc::default();
                let dead = CancellationToken::new();
                let link = Link {
                    peer: service.peer().clone(),
                    generation,
                    in_flight: in_flight.clone(),
                    dead: dead.clone(),
                };
                hub.mode.send_replace(Mode::Attached(link));
                tracing::info!("attached to the store's owner");
                let cancel = service.cancellation_token();
                let mut ended = tokio::spawn(async move {
                    let _ = service.waiting().await;
                });
                let mut retire = hub.retire.subscribe();
                let mut done = false;
                tokio::select! {
                    _ = &mut ended => done = true,
                    _ = async { retire.wait_for(|g| *g == generation).await.is_ok() } => {
                        // New calls wait for the next owner; the ones sent
                        // here get their answers (run, or a handover that
                        // is retried) before the link closes, unless the
                        // link is dead.
                        hub.mode.send_replace(Mode::Down);
                        let drained = tokio::time::timeout(Duration::from_secs(60), in_flight.zero());
                        tokio::select! {
                            _ = drained => {},
                            _ = &mut ended => done = true,
                            _ = dead.cancelled() => {},
                        }
                    }
                    _ = hub.draining.cancelled() => {
                        dead.cancel();
                        cancel.cancel();
                        return;
                    }
                }
                dead.cancel();
                cancel.cancel();
                if !done
                    && tokio::time::timeout(Duration::from_secs(2), &mut ended)
                        .await
                        .is_err()
                {
                    ended.abort();
                }
                hub.mode.send_replace(Mode::Down);
                tracing::info!("left the store's owner; taking over or re-attaching");
            }
        }
    }
}

/// Attaches to the owner, or becomes it when no one listens.
async fn acquire(hub: &Arc<Hub>) -> anyhow::Result<Acquired> {
    let mut delay = Duration::from_millis(2);
    let mut warned = tokio::time::Instant::now();
    loop {
        if hub.draining.is_cancelled() {
            anyhow::bail!("stopping");
        }
        if let Some((service, generation)) = attach(hub).await? {
            return Ok(Acquired::Attached(service, generation));
        }
        let data = hub.data.clone();
        let opened =
            tokio::task::spawn_blocking(move || Store::open_waiting(&data, Duration::ZERO)).await?;
        match opened {
            Ok(store) => {
                let root = hub.root.clone();
                let engine =
                    tokio::task::spawn_blocking(move || Engine::open_store(&root, store)).await??;
                listen(hub)?;
                return Ok(Acquired::Owner(Arc::new(engine)));
            }
            Err(StoreError::InUse(_)) => {
                // Someone holds the lock but does not answer yet: an owner
                // starting up or stopping, or an audit command.
                if warned.elapsed() > Duration::from_secs(5) {
                    tracing::warn!(
                        "the store is locked by a process not answering on its socket yet; waiting"
                    );
                    warned = tokio::time::Instant::now();
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects and says hello. `Ok(None)`: no owner listening.
async fn attach(hub: &Hub) -> anyhow::Result<Option<(AttachedService, u64)>> {
    let sock = hub.socket()?;
    let Ok(stream) = UnixStream::connect(&sock.path).await else {
        return Ok(None);
    };
    let hello = Hello {
        nbledger: env!("CARGO_PKG_VERSION").into(),
        store_format: store_format(),
        root: hub.root.to_string_lossy().into_owned(),
        want: None,
    };
    let greeted = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = BufReader::new(stream);
        let mut line = serde_json::to_vec(&hello)?;
        line.push(b'\n');
        stream.get_mut().write_all(&line).await?;
        let mut answer = String::new();
        stream.read_line(&mut answer).await?;
        anyhow::ensure!(
            stream.buffer().is_empty(),
            "the owner spoke before the handshake ended"
        );
        let welcome: Welcome = serde_json::from_str(&answer)?;
        anyhow::Ok((stream.into_inner(), welcome))
    })
    .await;
    // A socket that accepts and then goes silent or closes is an owner
    // on its way out: treat it as absent and try again.
    let Ok(Ok((stream, welcome))) = greeted else {
        return Ok(None);
    };
    if !welcome.ok {
        anyhow::bail!(
            "{}",
            welcome
                .message
                .unwrap_or_else(|| "the store's owner refused this process".into())
        );
    }
    let generation = hub.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let client = AttachedClient {
        config: ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("nbledger-attached", env!("CARGO_PKG_VERSION")),
        ),
        generation,
        retire: hub.retire.clone(),
    };
    let (read, write) = stream.into_split();
    match client.serve(lines::client(read, write, LINK_LIMIT)).await {
        Ok(service) => Ok(Some((service, generation))),
        Err(_) => Ok(None),
    }
}

/// The socket path, shortened through `/proc/self/fd` when the data
/// folder's path is too long for `sun_path` (108 bytes).
struct SockPath {
    path: PathBuf,
    _dir: Option<std::fs::File>,
}

impl SockPath {
    fn of(data: &Path) -> std::io::Result<SockPath> {
        let path = data.join(SOCKET);
        if path.as_os_str().len() < 100 {
            return Ok(SockPath { path, _dir: None });
        }
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(data)?;
        Ok(SockPath {
            path: PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())),
            _dir: Some(dir),
        })
    }
}

/// Binds the owner's socket (removing a stale one: holding the store's
/// lock proves its owner is gone) and serves attached processes on it.
fn listen(hub: &Arc<Hub>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let real = hub.data.join(SOCKET);
    let _ = std::fs::remove_file(&real);
    let sock = hub.socket()?;
    let listener = UnixListener::bind(&sock.path)?;
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600))?;
    let hub = hub.clone();
    let root = hub.root.to_string_lossy().into_owned();
    tokio::spawn(async move {
        let _keep = sock;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = hub.draining.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let hub2 = hub.clone();
            let root = root.clone();
            hub.sessions.spawn(async move {
                if let Err(e) = session(hub2, stream, root).await {
                    tracing::debug!(error = %e, "attached session ended");
                }
            });
        }
    });
    Ok(())
}

/// One attached process: check who it is, then serve MCP to it.
async fn session(hub: Arc<Hub>, stream: UnixStream, root: String) -> anyhow::Result<()> {
    let cred = stream.peer_cred()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid() != me {
        anyhow::bail!("refused a process of uid {} on the socket", cred.uid());
    }
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        // Bounded: a hello is a few hundred bytes.
        let mut limited = (&mut stream).take(64 << 10);
        limited.read_line(&mut line).await
    })
    .await??;
    let hello: Hello = serde_json::from_str(&line)?;
    let ours = (env!("CARGO_PKG_VERSION").to_owned(), store_format());
    let message = if (hello.nbledger.as_str(), hello.store_format.as_str())
        != (ours.0.as_str(), ours.1.as_str())
    {
        Some(format!(
            "the store's owner runs nbledger {} (store format {}) but this process is nbledger {} (store format {}); run the same nbledger for every process on one store",
            ours.0, ours.1, hello.nbledger, hello.store_format
        ))
    } else if hello.root != root && hello.want.is_none() {
        Some(format!(
            "the store is bound to root {root} but this process was given root {}; use the same --root (or another --data)",
            hello.root
        ))
    } else {
        None
    };
    let welcome = Welcome {
        ok: message.is_none(),
        nbledger: ours.0,
        store_format: ours.1,
        message,
    };
    let mut out = serde_json::to_vec(&welcome)?;
    out.push(b'\n');
    stream.get_mut().write_all(&out).await?;
    if !welcome.ok || !stream.buffer().is_empty() {
        return Ok(());
    }
    if hello.want.as_deref() == Some("dump") {
        let engine = hub
            .engine()
            .ok_or_else(|| anyhow::anyhow!("not the owner any more"))?;
        let mut out = stream.into_inner().into_std()?;
        out.set_nonblocking(false)?;
        return tokio::task::spawn_blocking(move || send_dump(engine.store(), &mut out)).await?;
    }
    let front = Front::new(hub.clone(), true);
    let (read, write) = stream.into_inner().into_split();
    let link = lines::server(read, write, LINK_LIMIT, "an attached process's socket");
    let service = front.serve(link).await?;
    let cancel = service.cancellation_token();
    let peer = service.peer().clone();
    let mut ended = tokio::spawn(async move {
        let _ = service.waiting().await;
    });
    tokio::select! {
        _ = &mut ended => return Ok(()),
        _ = hub.draining.cancelled() => {}
    }
    // Calls still arriving are answered with a handover (nothing applied)
    // until the attached process closes the link.
    let note = rmcp::model::CustomNotification::new(HANDOVER, None);
    let _ = peer
        .send_notification(rmcp::model::ServerNotification::CustomNotification(note))
        .await;
    if tokio::time::timeout(Duration::from_secs(5), &mut ended)
        .await
        .is_err()
    {
        cancel.cancel();
        let _ = ended.await;
    }
    Ok(())
}

/// The MCP face of a process: runs calls on the engine when this process
/// owns the store, forwards them to the owner otherwise.
#[derive(Clone)]
pub struct Front {
    hub: Arc<Hub>,
    /// Serving an attached process: the caller's name comes in `_meta`.
    forwarded: bool,
    tools: Arc<Vec<(Toolset, Tool)>>,
    /// What this process lists and runs for its own clients.
    toolsets: Toolsets,
    /// This session's resource subscriptions (§10).
    subs: resources::Subscriptions,
    /// When each `subscriptions/listen` of this session was acknowledged
    /// (ms): the SDK acknowledges before [`ServerHandler::listen`] runs,
    /// so changes in between are caught up by their time.
    listen_marks: Arc<parking_lot::Mutex<Vec<i64>>>,
}

impl Front {
    /// The hub this face serves (the forensic view reads its log).
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    pub fn new(hub: Arc<Hub>, forwarded: bool) -> Front {
        Front {
            hub,
            forwarded,
            tools: Arc::new(NotebookServer::catalog()),
            toolsets: Toolsets::all(),
            subs: resources::Subscriptions::default(),
            listen_marks: Arc::default(),
        }
    }

    /// A face for one more session (HTTP makes one per session): the same
    /// process and sets, subscriptions of its own.
    pub fn for_session(&self) -> Front {
        Front {
            subs: resources::Subscriptions::default(),
            listen_marks: Arc::default(),
            ..self.clone()
        }
    }

    /// Lists and runs only these sets. The owner's face for an attached
    /// process keeps them all: that process refuses by its own sets.
    pub fn with_toolsets(mut self, toolsets: Toolsets) -> Front {
        self.toolsets = toolsets;
        self
    }

    fn listed(&self) -> impl Iterator<Item = &Tool> {
        self.tools
            .iter()
            .filter(|(set, _)| self.toolsets.contains(*set))
            .map(|(_, t)| t)
    }

    fn read_only(&self, name: &str) -> bool {
        self.tools.iter().any(|(_, t)| {
            t.name == name
                && t.annotations
                    .as_ref()
                    .and_then(|a| a.read_only_hint)
                    .unwrap_or(false)
        })
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Refused here, by this process's own sets, before anything is
        // forwarded: the owner serves every set to attached processes.
        let unlisted = self
            .tools
            .iter()
            .find(|(set, t)| t.name == request.name && !self.toolsets.contains(*set));
        if let Some((set, _)) = unlisted {
            return Ok(complete(common::err(
                &self.toolsets.refusal(&request.name, *set),
            )));
        }
        self.dispatch(request, context).await
    }

    /// Runs a call here when owner, forwards it otherwise, whatever this
    /// process's toolsets (resources use the tools underneath).
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.forwarded {
            // The attached process's caller, not the attached process.
            let declared = context
                .meta
                .0
                .get(DECLARED)
                .or_else(|| request.meta.as_ref().and_then(|m| m.0.get(DECLARED)))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            context
                .meta
                .set_client_info(Implementation::new(declared, "forwarded"));
        }
        let declared = context.client_info().map(|i| i.name);
        let read_only = self.read_only(&request.name);
        loop {
            let Some(mode) = self.hub.ready().await else {
                return Ok(complete(unavailable(
                    "no store owner answered in time (one may be taking over); retry",
                    None,
                )));
            };
            match mode {
                Mode::Down => continue,
                Mode::Failed(why) => {
                    return Ok(complete(common::err(
                        &ToolError::new(
                            Code::Unavailable,
                            format!("this server cannot reach the store: {why}"),
                        )
                        .with("retryable", false),
                    )));
                }
                Mode::Owner(server) => {
                    let Some(_guard) = self.hub.enter() else {
                        return Ok(complete(handover()));
                    };
                    let answer = server.call_tool(request, context).await;
                    if server.store_failed() {
                        tracing::error!(
                            "the log's storage failed; stopping so another process can take over"
                        );
                        self.hub.fatal.cancel();
                    }
                    return answer;
                }
                Mode::Attached(link) => {
                    if self.hub.draining.is_cancelled() {
                        return Ok(complete(unavailable(
                            "this server is stopping; nothing was done, retry on another",
                            None,
                        )));
                    }
                    let mut forwarded = request.clone();
                    let meta = forwarded.meta.get_or_insert_with(RequestMetaObject::new);
                    // This process reports progress to its caller itself.
                    meta.0.remove("progressToken");
                    meta.0.insert(
                        DECLARED.into(),
                        declared.clone().map_or(Value::Null, Value::String),
                    );
                    let _sent = link.in_flight.enter();
                    let answer = tokio::select! {
                        a = link.peer.call_tool(forwarded) => a,
                        _ = link.dead.cancelled() => Err(rmcp::ServiceError::TransportClosed),
                        _ = context.ct.cancelled() => {
                            return Ok(complete(unavailable("cancelled", None)));
                        }
                    };
                    match answer {
                        Ok(result) if is_handover(&result) => {
                            self.hub.leave(&link, _sent).await;
                            continue;
                        }
                        Ok(mut result) => {
                            // The owner's session with us is of the older
                            // era, which carries no resultType; our caller's
                            // may need it (rmcp strips it again for legacy).
                            result.result_type = Some(rmcp::model::ResultType::COMPLETE);
                            return Ok(complete(result));
                        }
                        // The owner is alive and refused the call at the
                        // protocol level (an unknown tool, malformed
                        // params): that is its answer to our caller.
                        Err(rmcp::ServiceError::McpError(refusal)) => return Err(refusal),
                        Err(e) => {
                            tracing::warn!(error = %e, tool = %request.name, "the store's owner went away during a call");
                            link.dead.cancel();
                            self.hub.leave(&link, _sent).await;
                            if read_only {
                                continue;
                            }
                            return Ok(complete(unavailable(
                                "the store's owner stopped while handling this write, so whether it was applied is unknown; retry with the same request_id (a repeat returns the first result instead of applying twice)",
                                Some("unknown"),
                            )));
                        }
                    }
                }
            }
        }
    }
}

fn complete(result: CallToolResult) -> CallToolResponse {
    CallToolResponse::Complete(result)
}

fn unavailable(message: &str, outcome: Option<&str>) -> CallToolResult {
    let mut e = ToolError::new(Code::Unavailable, message).with("retryable", true);
    if let Some(o) = outcome {
        e = e.with("outcome", o);
    }
    common::err(&e)
}

/// What a stopping owner answers instead of running a call.
fn handover() -> CallToolResult {
    common::err(
        &ToolError::new(
            Code::Unavailable,
            "the store's owner is stopping; nothing was done, retry",
        )
        .with("retryable", true)
        .with("outcome", "not_applied")
        .with("handover", true),
    )
}

fn is_handover(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
        && r.structured_content
            .as_ref()
            .and_then(|v| v.pointer("/error/handover"))
            .and_then(Value::as_bool)
            == Some(true)
}
#[allow(deprecated)] // resources/subscribe: the 2025-11-25 era still uses it (§10).
impl ServerHandler for Front {
    fn get_info(&self) -> ServerConfig {
        NotebookServer::info()
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        self.resources_list(request, context).await
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        self.resource_read(request, context).await
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_subscribe(request, context).await
    }

    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.resource_unsubscribe(request, context).await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        self.subscription_filter(requested)
    }

    async fn listen(
        &self,
        subscription: rmcp::service::SubscriptionContext,
    ) -> Result<(), ErrorData> {
        self.resource_listen(subscription).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match crate::progress::token(&request, &context) {
            Some(token) => {
                let (peer, tool) = (context.peer.clone(), request.name.clone());
                crate::progress::reporting(peer, token, &tool, self.call(request, context)).await
            }
            None => self.call(request, context).await,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // As rmcp's generated handler answers: the list never changes
        // while the server runs, so 2026-07-28 clients may cache it.
        let hints = context
            .protocol_version()
            .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28);
        let mut list = ListToolsResult::with_all_items(self.listed().cloned().collect());
        list.result_type = Some(rmcp::model::ResultType::COMPLETE);
        list.ttl_ms = hints.then_some(0);
        list.cache_scope = hints.then_some(rmcp::model::CacheScope::Public);
        Ok(list)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.listed().find(|t| t.name == name).cloned()
    }
}

/// Streams [`Store::dump`] as frames: part (u8), key length and value
/// length (u32, big-endian), key, value; then part 255 with no body.
fn send_dump(store: &Store, out: &mut std::os::unix::net::UnixStream) -> anyhow::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    store.dump(|part, k, v| {
        w.write_all(&[part as u8])?;
        w.write_all(&(k.len() as u32).to_be_bytes())?;
        w.write_all(&(v.len() as u32).to_be_bytes())?;
        w.write_all(k)?;
        w.write_all(v)
    })?;
    w.write_all(&[255])?;
    w.flush()?;
    Ok(())
}

/// A private copy of the log, for the audit commands: through the owner's
/// socket when a server runs (`Ok(None)` when none answers), so an audit
/// never stops or blocks a server. The copy lives in `into` (a temporary
/// folder the caller removes).
pub fn copy_from_owner(data: &Path, into: &Path) -> anyhow::Result<Option<Store>> {
    use std::io::{BufRead, Read, Write};
    let sock = SockPath::of(data)?;
    let Ok(stream) = std::os::unix::net::UnixStream::connect(&sock.path) else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let hello = Hello {
        nbledger: env!("CARGO_PKG_VERSION").into(),
        store_format: store_format(),
        root: String::new(),
        want: Some("dump".into()),
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, stream);
    let mut line = serde_json::to_vec(&hello)?;
    line.push(b'\n');
    r.get_mut().write_all(&line)?;
    let mut answer = String::new();
    if r.read_line(&mut answer).is_err() || answer.is_empty() {
        // An owner on its way out: read the store directly instead.
        return Ok(None);
    }
    let welcome: Welcome = serde_json::from_str(&answer)?;
    if !welcome.ok {
        anyhow::bail!("{}", welcome.message.unwrap_or_default());
    }
    let store = Store::from_dump(into, || {
        let mut part = [0u8; 1];
        r.read_exact(&mut part)?;
        if part[0] == 255 {
            return Ok(None);
        }
        let part = crate::store::Part::from_u8(part[0])
            .ok_or_else(|| std::io::Error::other("bad frame from the owner"))?;
        let mut lens = [0u8; 8];
        r.read_exact(&mut lens)?;
        let klen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let vlen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        let mut k = vec![0u8; klen];
        r.read_exact(&mut k)?;
        let mut v = vec![0u8; vlen];
        r.read_exact(&mut v)?;
        Ok(Some((part, k, v)))
    })?;
    Ok(Some(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_in_a_folder_too_deep_for_sun_path_still_binds_and_connects() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        assert!(deep.join(SOCKET).as_os_str().len() > 108);
        let sock = SockPath::of(&deep).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&sock.path).unwrap();
        assert!(
            deep.join(SOCKET).exists(),
            "the socket lives in the data folder"
        );
        let other = SockPath::of(&deep).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&other.path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn handover_answers_are_recognised_and_nothing_else_is() {
        assert!(is_handover(&handover()));
        assert!(!is_handover(&unavailable("x", Some("unknown"))));
        let e = handover();
        let err = &e.structured_content.as_ref().unwrap()["error"];
        assert_eq!(err["code"], "unavailable");
        assert_eq!(err["retryable"], true);
    }
}
