//! The engine runs a tool call against the log: it brings the notebook's
//! file and the log into agreement, lets the tool plan its changes against
//! the current state, and commits them as one event.
//!
//! A write goes: lock → sync the file (import / take in an outside change)
//! → plan → stage the event (fold it into the projection, keep it pending)
//! and, at the end of the batch: render each touched file once from
//! per-cell cached bytes → write the hidden temp files → append every
//! pending event in one transaction and one flush (durable) → rename the
//! temp files over the notebooks → publish the head → answer. Anything that
//! fails before the append leaves no trace; the event records the file's
//! hash before and after, so start-up can finish a rename a crash
//! interrupted (§8.8).
//!
//! The rooms: [`writer`] runs batches (the queue, the leader, durability
//! and rollback); [`staging`] turns a plan into a staged event (next
//! version, fold, answer, request ids, `rejected` records); [`sync`] keeps
//! files and log in agreement (stat, import, outside changes, saves that
//! land during a write, start-up reconciliation and repair). Writing the
//! bytes of a file is [`crate::files`]; replaying the log is
//! [`crate::replay`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};
use serde_json::{Map, Value};

use crate::error::{Code, ToolError, quote};
use crate::events::{CLIENT_EXTERNAL, Event, FileWrite, Hash};
use crate::files::RenderCache;
use crate::ipynb;
use crate::notebook;
use crate::paths::{NotebookPath, Root};
use crate::projections::{NotebookState, Workspace};
use crate::replay;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

mod room;
mod staging;
mod sync;
#[cfg(test)]
mod tests;
mod writer;

use sync::Stamp;
use writer::Queue;

/// Largest notebook file the server imports (§8.12).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
use crate::projections::REQUEST_TTL_MS;

/// A projection checkpoint is written every this many events (and at
/// shutdown), so start-up replays at most this many.
const CHECKPOINT_EVERY: u64 = 100_000;
/// Who is acting, and their idempotency key.
#[derive(Debug, Clone)]
pub struct Actor {
    pub client_name: String,
    pub request_id: Option<String>,
    /// Whether the caller passed client_name itself (rather than getting
    /// its client's declared name or `anonymous`).
    pub named: bool,
}

/// Builds a tool's result from the committed version and the new state.
pub type ResultFn = Box<dyn FnOnce(u64, &NotebookState) -> Map<String, Value> + Send>;

/// What a tool wants to commit.
pub struct Plan {
    pub operation: &'static str,
    pub changes: Vec<crate::events::Change>,
    pub cell_ids: Vec<String>,
    pub summary: String,
    /// `(cell_id, owner)` of every lock this write was forced past.
    pub overrode_locks: Vec<(String, String)>,
    pub result: ResultFn,
}

/// Whether a write needs the notebook to exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Existing,
    /// `create_notebook`: the file must not exist; an earlier history of
    /// the same path, if any, is handed to the planner to continue.
    Create,
}

type Answer = Result<Map<String, Value>, ToolError>;

#[derive(Default)]
struct Inner {
    ws: Workspace,
    /// Per notebook, each cell's rendered file text, valid while the
    /// cell's `Arc` is the one rendered: a write re-encodes only what changed.
    renders: HashMap<String, RenderCache>,
    /// What each file on disk held when last seen, by stat and hash.
    disk: HashMap<String, (Stamp, Hash)>,
    /// The version of the newest checkpoint written.
    checkpointed: u64,
    /// Events already folded into `ws` and not yet in the log, in version
    /// order. Empty whenever the mutex is free.
    staged: Vec<Event>,
    /// Notebooks whose file the staged events must write: path → (file,
    /// index in `staged` of the last event that writes it).
    unwritten: BTreeMap<String, (PathBuf, usize)>,
    /// Files of notebooks renamed away in this batch, removed once the
    /// batch is durable and its new files are in place.
    removals: Vec<NotebookPath>,
    /// For each notebook in `unwritten`, its content before the batch: what
    /// its file held when the batch checked it. A save that lands after
    /// that check is merged against it (§8.8).
    bases: HashMap<String, notebook::Content>,
    /// Notebooks nbledger is in the JupyterLab room of (§12): Jupyter
    /// saves their files, so the engine neither writes nor syncs them.
    roomed: std::collections::HashSet<String>,
}

/// Long-polls waiting at once on one engine, that is per store owner
/// process (§8.4); past it, calls return at once.
const MAX_WAITERS: usize = 256;

/// A place among the engine's long-poll waiters; freed when dropped (also
/// when the call is cancelled and its future dropped).
pub struct WaitSlot(Arc<AtomicUsize>);

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Engine {
    /// Long-polls waiting now (see [`WaitSlot`]).
    waiters: Arc<AtomicUsize>,
    root: Root,
    store: Store,
    inner: Mutex<Inner>,
    queue: Mutex<Queue>,
    /// Signalled (under `queue`) when a batch's answers are in their
    /// slots and when the leader steps down.
    answered: Condvar,
    /// The newest committed (durable) version, for long-polling readers.
    head_tx: tokio::sync::watch::Sender<u64>,
}

fn internal(e: impl std::fmt::Display) -> ToolError {
    ToolError::internal(format!("{e}; nothing was changed, the call can be retried"))
}

impl Engine {
    /// Opens the log in `data` for the workspace `root`, replays it and
    /// reconciles the files on disk with it.
    pub fn open(root: &Path, data: &Path) -> anyhow::Result<Engine> {
        Engine::open_store(root, Store::open(data)?)
    }

    /// [`Engine::open`] on a store already opened (and locked) by the caller.
    pub fn open_store(root: &Path, store: Store) -> anyhow::Result<Engine> {
        let data = store.dir().to_path_buf();
        let data = data.as_path();
        let root = Root::new(root, data)?;
        store.bind_root(&root.path().to_string_lossy())?;
        let (ws, checkpointed, replayed) = replay::workspace(&store);
        replayed?;
        let head_tx = tokio::sync::watch::Sender::new(ws.head);
        let engine = Engine {
            waiters: Arc::default(),
            root,
            store,
            inner: Mutex::new(Inner {
                ws,
                checkpointed,
                ..Inner::default()
            }),
            queue: Mutex::new(Queue::default()),
            answered: Condvar::new(),
            head_tx,
        };
        let unclean = engine.store.begin_session()?;
        engine.reconcile_all(unclean);
        Ok(engine)
    }

    /// A clean stop: leaves a checkpoint, so the next start replays
    /// nothing, and marks the session ended, so the next start does not
    /// look for files a power loss damaged.
    pub fn stop(&self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "could not write a checkpoint at shutdown");
        }
        if !self.store.failed()
            && let Err(e) = self.store.end_session()
        {
            tracing::warn!(error = %e, "could not mark the clean stop");
        }
    }

    /// Writes a projection checkpoint at the current head.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.write_checkpoint(&mut inner)?;
        self.store.flush()
    }

    fn write_checkpoint(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let version = inner.ws.head;
        // After a failed flush the projection may hold what the log lost.
        if version == 0 || version == inner.checkpointed || self.store.failed() {
            return Ok(());
        }
        replay::put_checkpoint(&self.store, self.store.head_hash(), inner.ws.clone())?;
        inner.checkpointed = version;
        Ok(())
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Notebook `path` as it was right after version `version`, read from
    /// the log alone (no import, no file access; §10 `at_version`).
    pub fn notebook_at(&self, path: &str, version: u64) -> Result<NotebookState, ToolError> {
        self.notebook_at_arg(path, version, "at_version")
    }

    /// [`Engine::notebook_at`], a version beyond the head refused naming
    /// the argument `arg` that gave it.
    pub fn notebook_at_arg(
        &self,
        path: &str,
        version: u64,
        arg: &str,
    ) -> Result<NotebookState, ToolError> {
        let head = self.with_workspace(|ws| ws.head);
        if version > head {
            return Err(ToolError::invalid(
                arg,
                format!("a version up to the log's head, {head}"),
                format!("version {version} is beyond the log's head ({head})"),
            )
            .with("head", head));
        }
        let np = self.root.resolve(path)?;
        let first = self
            .store
            .notebook_versions(&np.rel, 0, 1)
            .map_err(store_error)?
            .first()
            .copied();
        let missing = || {
            let hint = match first {
                Some(f) => format!("its first event is version {f}"),
                None => "the log has no such notebook".to_owned(),
            };
            ToolError::not_found(
                "notebook",
                format!(
                    "notebook {} did not exist at version {version}; {hint}",
                    quote(&np.rel)
                ),
            )
            .with("path", np.rel.clone())
        };
        if first.is_none_or(|f| f > version) {
            return Err(missing());
        }
        replay::notebook_at(&self.store, &np.rel, version)
            .map_err(store_error)?
            .ok_or_else(missing)
    }

    /// A place to long-poll, or `None` when [`MAX_WAITERS`] already wait.
    pub fn wait_slot(&self) -> Option<WaitSlot> {
        let mut n = self.waiters.load(Ordering::SeqCst);
        loop {
            if n >= MAX_WAITERS {
                return None;
            }
            match self
                .waiters
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(WaitSlot(self.waiters.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Wakes on every commit (after its flush): long-poll readers wait here.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    /// Runs `f` on the projection as it is (no file sync).
    pub fn with_workspace<T>(&self, f: impl FnOnce(&Workspace) -> T) -> T {
        f(&self.lock().ws)
    }

    /// A copy of the whole projection (tests and audit).
    pub fn workspace(&self) -> Workspace {
        self.lock().ws.clone()
    }

    /// Runs a read against the notebook's current state (importing it or
    /// taking in an outside change first, if needed; the answer comes
    /// after that event is durable).
    pub fn read<T>(
        &self,
        path: &str,
        f: impl FnOnce(&NotebookState) -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        let np = self.root.resolve(path)?;
        self.locked(|inner| {
            self.sync(inner, &np)?;
            let nb = inner
                .ws
                .notebook(&np.rel)
                .ok_or_else(|| ToolError::internal("notebook vanished from the projection"))?;
            f(nb)
        })
    }

    /// Runs a write of tool `operation`: `plan` sees the current state, the
    /// path and the time the event will carry (lock checks use it, §8.5),
    /// and returns the changes; an empty plan commits nothing and answers
    /// `changed: false`. A `locked` refusal is put on record (§8.5). The
    /// planner may run on another caller's thread (in its batch), hence
    /// `Send + 'static`.
    pub fn write<P>(
        &self,
        path: &str,
        actor: &Actor,
        presence: Presence,
        operation: &'static str,
        plan: P,
    ) -> Answer
    where
        P: FnOnce(Option<&NotebookState>, &NotebookPath, i64) -> Result<Plan, ToolError>
            + Send
            + 'static,
    {
        let np = self.root.resolve(path)?;
        let actor = actor.clone();
        self.submit(Box::new(move |engine, inner| {
            engine.run_write(inner, &np, &actor, presence, operation, plan)
        }))
    }

    fn run_write(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        actor: &Actor,
        presence: Presence,
        operation: &'static str,
        plan: impl FnOnce(Option<&NotebookState>, &NotebookPath, i64) -> Result<Plan, ToolError>,
    ) -> Answer {
        if let Some(rid) = &actor.request_id
            && let Some(prev) = self.replayed(inner, &actor.client_name, rid)?
        {
            return Ok(prev);
        }
        match presence {
            Presence::Existing => self.sync(inner, np)?,
            Presence::Create => {
                // A create staged earlier in the batch has no file yet.
                if np.abs.exists() || inner.unwritten.contains_key(&np.rel) {
                    return Err(ToolError::new(
                        Code::Exists,
                        format!(
                            "notebook {} already exists; edit it with the cell tools or pick another path",
                            quote(&np.rel)
                        ),
                    )
                    .with("path", np.rel.clone()));
                }
            }
        }
        let nb = inner.ws.notebook(&np.rel);
        let now = now_ms().max(inner.ws.head_timestamp_ms);
        let plan = match plan(nb, np, now) {
            Ok(p) => p,
            Err(e) if e.code == Code::Locked => {
                return Err(self.reject(inner, np, actor, operation, now, e));
            }
            Err(e) => return Err(e),
        };
        self.finish(inner, std::slice::from_ref(np), actor, plan, now)
    }

    /// A write over two notebooks (copy or move from `src` to `dest`, which
    /// may be the same): both are synced, the planner sees both, and the
    /// result is one event in both feeds.
    pub fn write_pair<P>(
        &self,
        src: &str,
        dest: &str,
        actor: &Actor,
        operation: &'static str,
        plan: P,
    ) -> Answer
    where
        P: FnOnce(
                &NotebookState,
                &NotebookState,
                &NotebookPath,
                &NotebookPath,
                i64,
            ) -> Result<Plan, ToolError>
            + Send
            + 'static,
    {
        let s = self.root.resolve(src)?;
        let d = self.root.resolve(dest)?;
        let actor = actor.clone();
        self.submit(Box::new(move |engine, inner| {
            engine.run_write_pair(inner, s, d, &actor, operation, plan)
        }))
    }

    fn run_write_pair(
        &self,
        inner: &mut Inner,
        s: NotebookPath,
        d: NotebookPath,
        actor: &Actor,
        operation: &'static str,
        plan: impl FnOnce(
            &NotebookState,
            &NotebookState,
            &NotebookPath,
            &NotebookPath,
            i64,
        ) -> Result<Plan, ToolError>,
    ) -> Answer {
        if let Some(rid) = &actor.request_id
            && let Some(prev) = self.replayed(inner, &actor.client_name, rid)?
        {
            return Ok(prev);
        }
        self.sync(inner, &s)?;
        if d.rel != s.rel {
            self.sync(inner, &d)?;
        }
        let missing = || ToolError::internal("notebook state missing after sync");
        let now = now_ms().max(inner.ws.head_timestamp_ms);
        let planned = {
            let sn = inner.ws.notebook(&s.rel).ok_or_else(missing)?;
            let dn = inner.ws.notebook(&d.rel).ok_or_else(missing)?;
            plan(sn, dn, &s, &d, now)
        };
        let plan = match planned {
            Ok(p) => p,
            Err(e) if e.code == Code::Locked => {
                return Err(self.reject(inner, &s, actor, operation, now, e));
            }
            Err(e) => return Err(e),
        };
        let nps = if d.rel == s.rel { vec![s] } else { vec![s, d] };
        self.finish(inner, &nps, actor, plan, now)
    }
}

impl Engine {
    /// Renames notebook `from` to `to` (§10): `from` is synced, `to` must
    /// be free on disk and in the log (so every path keeps one history);
    /// the planner sees `from`'s state, both paths and the event's time. The
    /// event names both paths; the new file is written from the state like
    /// any write and the old one removed once the batch is durable.
    pub fn rename<P>(&self, from: &str, to: &str, actor: &Actor, plan: P) -> Answer
    where
        P: FnOnce(&NotebookState, &NotebookPath, &NotebookPath, i64) -> Result<Plan, ToolError>
            + Send
            + 'static,
    {
        let s = self.root.resolve(from)?;
        let d = self.root.resolve(to)?;
        let actor = actor.clone();
        self.submit(Box::new(move |engine, inner| {
            engine.run_rename(inner, s, d, &actor, plan)
        }))
    }

    fn run_rename(
        &self,
        inner: &mut Inner,
        s: NotebookPath,
        d: NotebookPath,
        actor: &Actor,
        plan: impl FnOnce(&NotebookState, &NotebookPath, &NotebookPath, i64) -> Result<Plan, ToolError>,
    ) -> Answer {
        if let Some(rid) = &actor.request_id
            && let Some(prev) = self.replayed(inner, &actor.client_name, rid)?
        {
            return Ok(prev);
        }
        self.sync(inner, &s)?;
        if d.rel == s.rel {
            return Err(ToolError::invalid(
                "new_path",
                "a path other than path",
                format!("new_path is the notebook's own path {}", quote(&s.rel)),
            ));
        }
        let known = inner.ws.notebook(&d.rel).is_some()
            || !self
                .store
                .notebook_versions(&d.rel, 0, 1)
                .map_err(store_error)?
                .is_empty();
        if d.abs.exists() || inner.unwritten.contains_key(&d.rel) || known {
            let why = if known && !d.abs.exists() {
                "has a history in the log (its file was removed); pick a path the log has never seen"
            } else {
                "already exists; pick another path or remove that file first"
            };
            return Err(
                ToolError::new(Code::Exists, format!("{} {why}", quote(&d.rel)))
                    .with("path", d.rel.clone()),
            );
        }
        let now = now_ms().max(inner.ws.head_timestamp_ms);
        let planned = {
            let nb = inner
                .ws
                .notebook(&s.rel)
                .ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
            plan(nb, &s, &d, now)
        };
        let plan = match planned {
            Ok(p) => p,
            Err(e) if e.code == "locked" => {
                return Err(self.reject(inner, &s, actor, "rename_notebook", now, e));
            }
            Err(e) => return Err(e),
        };
        let answer = self.finish(inner, &[s.clone(), d.clone()], actor, plan, now)?;
        // The cells' rendered texts serve the new file; the old one goes
        // once the batch is durable.
        if let Some(cache) = inner.renders.remove(&s.rel) {
            inner.renders.insert(d.rel.clone(), cache);
        }
        inner.removals.push(s);
        Ok(answer)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cells `changes` touch, each once, in first-touched order.
pub fn changed_cells(changes: &[crate::events::Change]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for c in changes {
        if let Some(id) = c.cell_id()
            && !ids.iter().any(|x| x == id)
        {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// An event by the server or an outside program, writing no file itself.
fn plain_event(
    client: &str,
    operation: &str,
    np: &NotebookPath,
    cell_ids: Vec<String>,
    summary: String,
    changes: Vec<crate::events::Change>,
) -> Event {
    Event {
        version: 0,
        timestamp_ms: 0,
        client_name: client.to_owned(),
        operation: operation.to_owned(),
        paths: vec![np.rel.clone()],
        cell_ids,
        overrode_locks: Vec::new(),
        request_id: None,
        result: String::new(),
        summary: summary.chars().take(200).collect(),
        changes,
        files: Vec::new(),
    }
}

fn outside_event(
    operation: &str,
    np: &NotebookPath,
    cell_ids: Vec<String>,
    summary: String,
    changes: Vec<crate::events::Change>,
    before: Option<Option<Hash>>,
    after: Hash,
) -> Event {
    Event {
        version: 0,
        timestamp_ms: 0,
        client_name: CLIENT_EXTERNAL.to_owned(),
        operation: operation.to_owned(),
        paths: vec![np.rel.clone()],
        cell_ids,
        overrode_locks: Vec::new(),
        request_id: None,
        result: String::new(),
        summary,
        changes,
        files: vec![FileWrite {
            path: np.rel.clone(),
            before: before.flatten(),
            after,
            written: false,
        }],
    }
}

pub fn invalid_notebook(path: &str, e: ipynb::InvalidNotebook) -> ToolError {
    let mut err = ToolError::new(
        Code::InvalidNotebook,
        format!(
            "{} is not a valid Jupyter notebook: {}; fix the file (it was left untouched)",
            quote(path),
            e.reason
        ),
    )
    .with("reason", e.reason.clone());
    if let Some(l) = e.line {
        err = err.with("line", l);
    }
    if let Some(c) = e.column {
        err = err.with("column", c);
    }
    err
}

/// The answer once a flush has failed: the projection may hold events the
/// disk does not, so nothing is read or written any more (the server
/// stops and the next owner replays the log).
fn storage_failed() -> ToolError {
    ToolError::new(
        Code::Unavailable,
        "the log could not be flushed to disk, so this server stops serving; retry (with the same request_id for a write) once another server has taken over",
    )
    .with("retryable", true)
}

fn store_error(e: StoreError) -> ToolError {
    ToolError::internal(format!(
        "the log could not record the change ({e}); nothing was changed"
    ))
}
