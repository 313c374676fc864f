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
//! One mutex serialises the engine. That keeps the version order, the file
//! order and the state order identical, which is what makes replay exact.
//! Concurrent writers share one flush and one file write per notebook by
//! group commit (LevelDB's writer queue): a write is a job pushed on a
//! queue. If no caller is leading, the pusher becomes the leader: it takes
//! the mutex and runs every queued job as one batch, then answers them all
//! and wakes their callers, who wait on a condition variable rather than on
//! the mutex (so an answered caller never waits behind the next batch's
//! flush). A job is therefore either run by a leader, which answers it
//! before stepping down, or still queued when its own caller finds nobody
//! leading and leads. A new leader first yields the CPU a few times while
//! fewer jobs are queued than the last batch ran, so that steady writers
//! share one batch instead of splitting into two that alternate.
//!
//! Invariants of a batch:
//! - Each job runs against the state the jobs before it staged: staging
//!   folds the event right away with the same `Workspace::apply` replay
//!   uses, in version order.
//! - Nothing staged leaves the mutex before its flush (§8.9): answers, the
//!   watch-channel head and file renames come after it, and every holder
//!   (a read too: a first read imports) makes what it staged durable
//!   before unlocking. No reader ever sees a staged state.
//! - A notebook's file is written once per batch, from its final state;
//!   the batch's last event that writes it carries the `FileWrite` (before
//!   = the file before the batch), earlier ones carry none for it, so the
//!   fold ends with the same `nb.file` live and in replay.
//! - While a notebook has a staged write its file is behind the state: it
//!   is not synced (an outside-change diff would record a bogus change
//!   undoing the staged edits), and creating it again fails with `exists`.
//! - If a temp file or the append fails, the whole batch is dropped: the
//!   projection is rebuilt from the log, and every job that staged an
//!   event or ran after one was staged answers `internal` (nothing was
//!   changed; retry).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::{Map, Value, json};

use crate::error::{ToolError, quote};
use crate::events::{
    CLIENT_EXTERNAL, Cell, Change, Event, FileWrite, Hash, OP_EXTERNAL, OP_IMPORT,
};
use crate::ipynb;
use crate::notebook;
use crate::paths::{NotebookPath, Root};
use crate::projections::{NotebookState, Workspace};
use crate::store::{Store, StoreError};

/// Largest notebook file the server imports (§8.12).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
use crate::projections::REQUEST_TTL_MS;

/// A projection checkpoint is written every this many events (and at
/// shutdown), so start-up replays at most this many.
const CHECKPOINT_EVERY: u64 = 100_000;
/// Bumped whenever the projection types change shape: an older checkpoint
/// is then ignored and the log replayed in full.
const CHECKPOINT_FORMAT: u32 = 1;
/// The most jobs one batch runs: bounds how long a leader works for
/// others (and the transaction's size); the rest wait for the next batch.
const MAX_BATCH: usize = 256;
/// How many times a new leader yields the CPU while the queue is shorter
/// than the last batch (see [`Engine::gather`]).
const GATHER_YIELDS: usize = 16;

/// A snapshot of the projection at `version`, proven to belong to this log
/// by the hash of record `version`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Checkpoint {
    format: u32,
    build: String,
    pub(crate) version: u64,
    hash: Hash,
    pub(crate) workspace: Workspace,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ino: m.ino(),
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

type RenderCache = HashMap<String, (Arc<Cell>, Arc<str>)>;

type Answer = Result<Map<String, Value>, ToolError>;

/// A write waiting for the engine's mutex; whichever caller holds it runs
/// the job in its batch.
type Job = Box<dyn FnOnce(&Engine, &mut Inner) -> Answer + Send>;

/// Where a job's answer is left for its caller, filled under the mutex
/// once the batch is durable.
type Slot = Arc<Mutex<Option<Answer>>>;

/// Writes waiting for a batch, and whether a caller is running batches.
#[derive(Default)]
struct Queue {
    /// Oldest first.
    jobs: Vec<(Job, Slot)>,
    leading: bool,
    /// How many jobs the last batch ran.
    last_batch: usize,
}

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
}

pub struct Engine {
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

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

fn internal(e: impl std::fmt::Display) -> ToolError {
    ToolError::internal(format!("{e}; nothing was changed, the call can be retried"))
}

/// The projection as the log has it: the stored checkpoint, if usable,
/// then the records after it; and the version of that checkpoint. On a
/// record that cannot be read, the fold so far and the error.
fn replay(store: &Store) -> (Workspace, u64, Result<(), StoreError>) {
    let (mut ws, checkpointed) = match load_checkpoint(store) {
        Some(cp) => (cp.workspace, cp.version),
        None => (Workspace::default(), 0),
    };
    for rec in store.records(ws.head + 1) {
        match rec {
            Ok(rec) => ws.apply(&rec.event),
            Err(e) => return (ws, checkpointed, Err(e)),
        }
    }
    (ws, checkpointed, Ok(()))
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
        let (ws, checkpointed, replayed) = replay(&store);
        replayed?;
        let head_tx = tokio::sync::watch::Sender::new(ws.head);
        let engine = Engine {
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
        engine.reconcile_all();
        Ok(engine)
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
        let cp = Checkpoint {
            format: CHECKPOINT_FORMAT,
            build: env!("CARGO_PKG_VERSION").to_owned(),
            version,
            hash: self.store.head_hash(),
            workspace: inner.ws.clone(),
        };
        if let Ok(bytes) = bincode::serialize(&cp) {
            self.store.put_checkpoint(&bytes)?;
            inner.checkpointed = version;
        }
        Ok(())
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn store(&self) -> &Store {
        &self.store
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

    /// Takes the mutex. Staged events are only ever left behind by a
    /// holder that panicked mid-batch; they are dropped here so that
    /// nobody reads a state the log does not have.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        if !inner.staged.is_empty() || !inner.unwritten.is_empty() {
            tracing::error!("dropping a batch a failed call left staged");
            self.abandon(&mut inner);
        }
        inner
    }

    /// Runs `f` under the mutex and makes whatever it staged durable
    /// before unlocking.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        if self.store.failed() {
            return Err(storage_failed());
        }
        let mut inner = self.lock();
        let out = f(&mut inner);
        self.make_durable(&mut inner)?;
        out
    }

    /// Queues `job` and returns its answer once it has run in a durable
    /// batch, led by this caller or by another.
    fn submit(&self, job: Job) -> Answer {
        if self.store.failed() {
            return Err(storage_failed());
        }
        let slot = Slot::default();
        let mut queue = self.queue.lock();
        queue.jobs.push((job, slot.clone()));
        loop {
            if let Some(answer) = slot.lock().take() {
                return answer;
            }
            if !queue.leading {
                queue.leading = true;
                drop(queue);
                let leader = Leader(self);
                let ran = self.lead(&slot);
                drop(leader);
                if !ran {
                    // Only a leader that panicked mid-batch drops a job unrun.
                    return Err(internal("the call was lost to a failure of another call"));
                }
                queue = self.queue.lock();
                continue;
            }
            self.answered.wait(&mut queue);
        }
    }

    /// Runs queued jobs in batches under the mutex until `slot` is
    /// answered; false if its job is no longer queued and unanswered.
    fn lead(&self, slot: &Slot) -> bool {
        let mut inner = self.lock();
        self.gather();
        loop {
            let batch: Vec<(Job, Slot)> = {
                let mut queue = self.queue.lock();
                let n = queue.jobs.len().min(MAX_BATCH);
                queue.last_batch = n;
                queue.jobs.drain(..n).collect()
            };
            if batch.is_empty() {
                return false;
            }
            self.run_batch(&mut inner, batch);
            if slot.lock().is_some() {
                return true;
            }
            // Wake the callers answered so far; this one leads on.
            let _queue = self.queue.lock();
            self.answered.notify_all();
        }
    }

    /// Gives the callers the last batch answered a chance to queue again
    /// before a batch is drained. Without it, steady writers split into two
    /// halves whose batches alternate, each waiting out the other's flush,
    /// and a batch holds half of them. It yields and never sleeps: a lone
    /// writer (whose last batch was itself) does not wait at all.
    fn gather(&self) {
        for _ in 0..GATHER_YIELDS {
            let queue = self.queue.lock();
            if queue.jobs.len() >= queue.last_batch {
                return;
            }
            drop(queue);
            std::thread::yield_now();
        }
    }

    /// Runs `batch` in order, makes the events it staged durable with one
    /// append, and only then leaves each job's answer in its slot.
    fn run_batch(&self, inner: &mut Inner, batch: Vec<(Job, Slot)>) {
        // Each answer, and whether it depends on staged events (so that
        // it is withdrawn if they never become durable).
        let mut answers: Vec<(Slot, Answer, bool)> = Vec::with_capacity(batch.len());
        for (job, slot) in batch {
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(self, &mut *inner)));
            match ran {
                Ok(answer) => {
                    // A job that staged nothing and saw nothing staged
                    // answered from the log alone.
                    let provisional = !inner.staged.is_empty();
                    answers.push((slot, answer, provisional));
                }
                Err(_) => {
                    // The projection may be half-changed: start again from
                    // the log, and withdraw what depended on the batch.
                    tracing::error!("a write panicked; its batch is dropped");
                    self.abandon(inner);
                    let lost = internal("the call failed with an internal error");
                    withdraw(&mut answers, &lost);
                    answers.push((slot, Err(lost), false));
                }
            }
        }
        if let Err(e) = self.make_durable(inner) {
            withdraw(&mut answers, &e);
        }
        for (slot, answer, _) in answers {
            *slot.lock() = Some(answer);
        }
    }

    /// Makes the staged events durable: each notebook they write is
    /// rendered once, from its final state, into its temp file; the events
    /// are appended in one transaction with one flush; then the files are
    /// swapped in and the head is published. If anything fails before the
    /// append succeeds, the log is unchanged and the staged events are
    /// dropped.
    fn make_durable(&self, inner: &mut Inner) -> Result<(), ToolError> {
        if inner.staged.is_empty() {
            return Ok(());
        }
        let unwritten = std::mem::take(&mut inner.unwritten);
        let mut temps: Vec<Temp> = Vec::with_capacity(unwritten.len());
        for (rel, (abs, last)) in unwritten {
            let written = match inner.ws.notebook(&rel) {
                Some(nb) => {
                    let (file, cache) = render(nb, inner.renders.get(&rel));
                    write_temp(&abs, &file).map(|(tmp, after)| (tmp, after, cache))
                }
                None => Err(ToolError::internal("a staged notebook is missing")),
            };
            match written {
                Ok((tmp, after, cache)) => temps.push(Temp {
                    np: NotebookPath { abs, rel },
                    last,
                    tmp,
                    after,
                    cache,
                }),
                Err(e) => {
                    remove_temps(&temps);
                    self.abandon(inner);
                    return Err(e);
                }
            }
        }
        for t in &temps {
            let file = FileWrite {
                path: t.np.rel.clone(),
                before: inner.disk.get(&t.np.rel).map(|(_, h)| *h),
                after: t.after,
                written: true,
            };
            if let Some(nb) = inner.ws.notebooks.get_mut(&t.np.rel) {
                nb.file = Some(file.clone());
            }
            inner.staged[t.last].files.push(file);
        }
        for Event { paths, files, .. } in &mut inner.staged {
            if files.len() > 1 {
                // As the event names its notebooks: source, then destination.
                files.sort_by_key(|f| paths.iter().position(|p| *p == f.path));
            }
        }
        if let Err(e) = self.store.append_batch(&inner.staged) {
            remove_temps(&temps);
            if let StoreError::NotDurable(_) = e {
                // The batch may be on disk or not, and the projection holds
                // it: answer "unknown" and serve nothing more (see
                // `storage_failed`); the next owner replays what is stored.
                inner.staged.clear();
                return Err(storage_failed().with("outcome", "unknown"));
            }
            self.abandon(inner);
            return Err(store_error(e));
        }
        inner.staged.clear();
        for t in temps {
            // The events are durable; a failed swap is healed at start-up
            // from the event's file record.
            if let Err(e) = replace(&t.tmp, &t.np.abs) {
                tracing::error!(path = %t.np.rel, error = %e, "rename after commit failed");
            }
            self.mark_disk(inner, &t.np, t.after);
            inner.renders.insert(t.np.rel, t.cache);
        }
        // Only now, after the flush, may a long-poll see them (§8.9).
        self.head_tx.send_replace(inner.ws.head);
        if inner.ws.head - inner.checkpointed >= CHECKPOINT_EVERY
            && let Err(e) = self.write_checkpoint(inner)
        {
            tracing::warn!(error = %e, "could not write a projection checkpoint");
        }
        Ok(())
    }

    /// Drops every staged event: the projection is rebuilt from the log
    /// (as at start-up), and what was seen of the files is forgotten, so an
    /// outside change the dropped batch had taken in is seen again.
    fn abandon(&self, inner: &mut Inner) {
        for (abs, _) in std::mem::take(&mut inner.unwritten).values() {
            let _ = fs::remove_file(temp_path(abs));
        }
        inner.staged.clear();
        inner.renders.clear();
        inner.disk.clear();
        let (ws, _, replayed) = replay(&self.store);
        if let Err(e) = replayed {
            // Stopping short of the head keeps every later append refused
            // (its version is taken), which beats serving a state the log
            // does not have.
            tracing::error!(error = %e, "the log could not be replayed after a failed batch");
        }
        inner.ws = ws;
    }

    /// Finishes writes a crash interrupted and takes in outside changes
    /// made while no server ran (§8.8).
    fn reconcile_all(&self) {
        let reconciled = self.locked(|inner| {
            let paths: Vec<String> = inner.ws.notebooks.keys().cloned().collect();
            for rel in paths {
                let np = NotebookPath {
                    abs: self.root.path().join(&rel),
                    rel: rel.clone(),
                };
                let _ = fs::remove_file(temp_path(&np.abs));
                let Some(file) = inner.ws.notebook(&rel).and_then(|nb| nb.file.clone()) else {
                    continue;
                };
                match fs::read(&np.abs) {
                    Ok(bytes) => {
                        let hash = *blake3::hash(&bytes).as_bytes();
                        if hash == file.after {
                            continue;
                        }
                        if file.written && Some(hash) == file.before {
                            // The event committed but the rename never happened.
                            if let Err(e) = self.rewrite_from_log(inner, &np) {
                                tracing::warn!(path = %rel, error = %e, "could not finish an interrupted write");
                            }
                            continue;
                        }
                        if let Err(e) = self.sync(inner, &np) {
                            tracing::warn!(path = %rel, error = %e, "notebook on disk could not be taken in");
                        }
                    }
                    Err(_) if file.written && file.before.is_none() => {
                        // A create whose file never landed.
                        if let Err(e) = self.rewrite_from_log(inner, &np) {
                            tracing::warn!(path = %rel, error = %e, "could not finish an interrupted create");
                        }
                    }
                    Err(_) => {}
                }
            }
            Ok(())
        });
        if let Err(e) = reconciled {
            tracing::warn!(error = %e, "outside changes could not be recorded");
        }
    }

    /// Writes a notebook's file from its durable state (no event).
    fn rewrite_from_log(&self, inner: &mut Inner, np: &NotebookPath) -> Result<(), ToolError> {
        let Some(nb) = inner.ws.notebook(&np.rel) else {
            return Ok(());
        };
        let (file, cache) = render(nb, inner.renders.get(&np.rel));
        let (tmp, hash) = write_temp(&np.abs, &file)?;
        replace(&tmp, &np.abs).map_err(internal)?;
        inner.renders.insert(np.rel.clone(), cache);
        self.mark_disk(inner, np, hash);
        Ok(())
    }

    fn mark_disk(&self, inner: &mut Inner, np: &NotebookPath, hash: Hash) {
        if let Ok(m) = fs::metadata(&np.abs) {
            inner.disk.insert(np.rel.clone(), (Stamp::of(&m), hash));
        }
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
                        "exists",
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
            Err(e) if e.code == "locked" => {
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
            Err(e) if e.code == "locked" => {
                return Err(self.reject(inner, &s, actor, operation, now, e));
            }
            Err(e) => return Err(e),
        };
        let nps = if d.rel == s.rel { vec![s] } else { vec![s, d] };
        self.finish(inner, &nps, actor, plan, now)
    }

    /// Commits a plan over `nps` (or answers `changed: false` for an empty
    /// one) and shapes the result every write shares.
    fn finish(
        &self,
        inner: &mut Inner,
        nps: &[NotebookPath],
        actor: &Actor,
        plan: Plan,
        now: i64,
    ) -> Result<Map<String, Value>, ToolError> {
        let last = nps
            .last()
            .ok_or_else(|| ToolError::internal("a write without a notebook"))?;
        if plan.changes.is_empty() {
            let nb = inner.ws.notebook(&last.rel);
            let current = nb.map_or(0, |n| n.current_version);
            let mut result = match nb {
                Some(nb) => (plan.result)(current, nb),
                None => Map::new(),
            };
            result.remove("version");
            result.insert("changed".into(), json!(false));
            result.insert("current_version".into(), json!(current));
            result.insert("client_name".into(), json!(actor.client_name));
            return Ok(result);
        }
        let paths: Vec<&str> = nps.iter().map(|np| np.rel.as_str()).collect();
        let changes = notebook::raise_minor_for_ids(&inner.ws, &paths, plan.changes);
        let event = Event {
            version: 0,
            timestamp_ms: 0,
            client_name: actor.client_name.clone(),
            operation: plan.operation.to_owned(),
            paths: nps.iter().map(|np| np.rel.clone()).collect(),
            cell_ids: plan.cell_ids,
            overrode_locks: plan.overrode_locks,
            request_id: actor.request_id.clone(),
            result: String::new(),
            summary: plan.summary,
            changes,
            files: Vec::new(),
        };
        let make = plan.result;
        let client = actor.client_name.clone();
        let overrode = event.overrode_locks.clone();
        self.commit_many(inner, nps, event, now, true, move |version, nb| {
            let mut r = make(version, nb);
            r.insert("version".into(), json!(version));
            r.insert("changed".into(), json!(true));
            r.insert("client_name".into(), json!(client));
            // A forced write says whose lock it went past (§4 Locks).
            match overrode.as_slice() {
                [] => {}
                [(_, owner)] => {
                    r.insert("overrode_lock".into(), json!(owner));
                }
                many => {
                    let list: Vec<Value> = many
                        .iter()
                        .map(|(c, o)| json!({"cell_id": c, "owner": o}))
                        .collect();
                    r.insert("overrode_locks".into(), Value::Array(list));
                }
            }
            r
        })
    }

    /// Records a write refused with `locked` as a `rejected` event (unless
    /// this client's refusal on the same lock acquisition is already on
    /// record) and returns the error carrying `rejected_version`.
    fn reject(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        actor: &Actor,
        operation: &'static str,
        now: i64,
        err: ToolError,
    ) -> ToolError {
        let Some(nb) = inner.ws.notebook(&np.rel) else {
            return err;
        };
        let held: Vec<(String, crate::projections::Lock)> = err
            .details
            .get("locks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l["cell_id"].as_str())
            .filter_map(|id| nb.lock_at(id, now).map(|l| (id.to_owned(), l.clone())))
            .collect();
        let mut earlier = 0;
        let mut changes = Vec::new();
        for (cell_id, lock) in &held {
            let key = (actor.client_name.clone(), cell_id.clone(), lock.acquired_at);
            match nb.rejected.get(&key) {
                Some(&v) => earlier = earlier.max(v),
                None => changes.push(crate::events::Change::Rejected {
                    path: np.rel.clone(),
                    cell_id: cell_id.clone(),
                    holder: lock.owner.clone(),
                    acquired_at: lock.acquired_at,
                    expires_at: lock.expires_at,
                }),
            }
        }
        if changes.is_empty() {
            return if earlier > 0 {
                err.with("rejected_version", earlier)
            } else {
                err
            };
        }
        let holders: Vec<String> = held
            .iter()
            .map(|(c, l)| format!("{c} by {}", l.owner))
            .collect();
        let event = Event {
            version: 0,
            timestamp_ms: 0,
            client_name: actor.client_name.clone(),
            operation: operation.to_owned(),
            paths: vec![np.rel.clone()],
            cell_ids: held.iter().map(|(c, _)| c.clone()).collect(),
            overrode_locks: Vec::new(),
            request_id: None,
            result: String::new(),
            summary: format!("{operation} refused: locked ({})", holders.join(", "))
                .chars()
                .take(200)
                .collect(),
            changes,
            files: Vec::new(),
        };
        match self.commit(inner, np, event, now, false, |_, _| Map::new()) {
            Ok(_) => err.with("rejected_version", inner.ws.head),
            Err(e) => {
                tracing::warn!(error = %e, "could not record a rejected write");
                err
            }
        }
    }

    /// The stored result of an earlier call with the same request_id
    /// (possibly staged earlier in this batch).
    fn replayed(
        &self,
        inner: &Inner,
        client: &str,
        rid: &str,
    ) -> Result<Option<Map<String, Value>>, ToolError> {
        let key = (client.to_owned(), rid.to_owned());
        let Some(&version) = inner.ws.requests.get(&key) else {
            return Ok(None);
        };
        let first_staged = inner.staged.first().map_or(u64::MAX, |e| e.version);
        let (timestamp_ms, result) = if version >= first_staged {
            match inner.staged.get((version - first_staged) as usize) {
                Some(e) => (e.timestamp_ms, e.result.clone()),
                None => return Ok(None),
            }
        } else {
            match self.store.get(version).map_err(internal)? {
                Some(r) => (r.event.timestamp_ms, r.event.result),
                None => return Ok(None),
            }
        };
        if timestamp_ms < now_ms() - REQUEST_TTL_MS {
            return Ok(None);
        }
        Ok(match serde_json::from_str(&result) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
    }

    /// Stages `event` on notebook `np` (see [`Engine::commit_many`]).
    fn commit(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        event: Event,
        timestamp_ms: i64,
        write_file: bool,
        result: impl FnOnce(u64, &NotebookState) -> Map<String, Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        self.commit_many(
            inner,
            std::slice::from_ref(np),
            event,
            timestamp_ms,
            write_file,
            result,
        )
    }

    /// Stages `event` over `nps`: gives it the next version and a time no
    /// earlier than the head's, folds it into the projection and keeps it
    /// for the batch's append. `result` builds the answer from the last
    /// notebook; it is stored in the event (for request_id retries). With
    /// `write_file`, the batch writes each notebook's file before its
    /// append and swaps it in after.
    fn commit_many(
        &self,
        inner: &mut Inner,
        nps: &[NotebookPath],
        mut event: Event,
        timestamp_ms: i64,
        write_file: bool,
        result: impl FnOnce(u64, &NotebookState) -> Map<String, Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        let missing = || ToolError::internal("event did not create its notebook");
        let last = nps.last().ok_or_else(missing)?;
        let creates = |rel: &str| {
            event
                .changes
                .iter()
                .any(|c| matches!(c, Change::NotebookCreated { path, .. } if path.as_str() == rel))
        };
        if nps
            .iter()
            .any(|np| inner.ws.notebook(&np.rel).is_none() && !creates(&np.rel))
        {
            return Err(missing());
        }
        let version = inner.ws.head + 1;
        event.version = version;
        // Times never decrease along versions (§8.5).
        event.timestamp_ms = timestamp_ms.max(inner.ws.head_timestamp_ms);
        inner.ws.apply(&event);
        let index = inner.staged.len();
        inner.staged.push(event);
        if write_file {
            for np in nps {
                inner
                    .unwritten
                    .insert(np.rel.clone(), (np.abs.clone(), index));
            }
        }
        let answer = result(version, inner.ws.notebook(&last.rel).ok_or_else(missing)?);
        inner.staged[index].result = Value::Object(answer.clone()).to_string();
        Ok(answer)
    }

    /// Brings notebook `np` and the log into agreement (§3, §8.8): imports
    /// a notebook the log has never seen, takes in a file changed outside.
    fn sync(&self, inner: &mut Inner, np: &NotebookPath) -> Result<(), ToolError> {
        // A write staged in this batch has not reached the file: the file
        // is behind the state, and diffing it would record an outside
        // change undoing the staged edits. The batch's own write comes next.
        if inner.unwritten.contains_key(&np.rel) {
            return Ok(());
        }
        let meta = match fs::metadata(&np.abs) {
            Ok(m) => m,
            Err(_) => {
                let known = inner.ws.notebook(&np.rel).is_some();
                let hint = if known {
                    "its file was removed outside nbledger; its history is kept, and create_notebook on this path continues it"
                } else {
                    "check the path with list_notebooks, or create it with create_notebook"
                };
                return Err(ToolError::not_found(
                    "notebook",
                    format!("no notebook at {}; {hint}", quote(&np.rel)),
                )
                .with("path", np.rel.clone()));
            }
        };
        if !meta.is_file() {
            return Err(ToolError::new(
                "invalid_notebook",
                format!("{} is not a regular file", quote(&np.rel)),
            )
            .with("reason", "not a regular file"));
        }
        let stamp = Stamp::of(&meta);
        if inner.disk.get(&np.rel).is_some_and(|(s, _)| *s == stamp) {
            return Ok(());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ToolError::too_large(
                "the notebook file (bytes)",
                MAX_FILE_BYTES,
                meta.len(),
            ));
        }
        let bytes = fs::read(&np.abs).map_err(internal)?;
        let hash = *blake3::hash(&bytes).as_bytes();
        let known_hash = inner.disk.get(&np.rel).map(|(_, h)| *h).or_else(|| {
            inner
                .ws
                .notebook(&np.rel)
                .and_then(|nb| nb.file.as_ref().map(|f| f.after))
        });
        if known_hash == Some(hash) {
            inner.disk.insert(np.rel.clone(), (stamp, hash));
            return Ok(());
        }
        let raw = ipynb::parse(&bytes).map_err(|e| invalid_notebook(&np.rel, e))?;
        match inner.ws.notebook(&np.rel).cloned() {
            Some(old) => {
                let changes = notebook::diff_outside(&old, &raw);
                if changes.is_empty() {
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                    return Ok(());
                }
                let cell_ids = changed_cells(&changes);
                let summary = format!("outside change to {} ({} changes)", np.rel, changes.len());
                // Locks do not stop an outside change, but it is recorded as
                // overriding the ones it touched (§8.8).
                let now = now_ms().max(inner.ws.head_timestamp_ms);
                let overrode: Vec<(String, String)> = cell_ids
                    .iter()
                    .filter_map(|c| old.lock_at(c, now).map(|l| (c.clone(), l.owner.clone())))
                    .collect();
                let mut event = outside_event(
                    OP_EXTERNAL,
                    np,
                    cell_ids,
                    summary,
                    changes,
                    Some(known_hash),
                    hash,
                );
                event.overrode_locks = overrode;
                self.commit(inner, np, event, now, false, |_, _| Map::new())?;
                inner.disk.insert(np.rel.clone(), (stamp, hash));
            }
            None => {
                let imp = notebook::import(&np.rel, &raw, None);
                let cell_ids = changed_cells(&imp.changes);
                let mut summary = format!("imported {} ({} cells)", np.rel, raw.cells.len());
                if !imp.reassigned.is_empty() {
                    let which: Vec<String> = imp
                        .reassigned
                        .iter()
                        .map(|(i, old)| format!("cell {i} (was {})", quote(old)))
                        .collect();
                    summary.push_str(&format!(
                        "; new ids for duplicate ids: {}",
                        which.join(", ")
                    ));
                    summary = summary.chars().take(200).collect();
                }
                let mut event =
                    outside_event(OP_IMPORT, np, cell_ids, summary, imp.changes, None, hash);
                if imp.rewrite {
                    // The file lacked ids: written once as 4.5 with them.
                    // Its current bytes are the write's `before`.
                    event.files.clear();
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                    self.commit(inner, np, event, now_ms(), true, |_, _| Map::new())?;
                } else {
                    self.commit(inner, np, event, now_ms(), false, |_, _| Map::new())?;
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                }
            }
        }
        Ok(())
    }

    /// Every notebook under `dir` (recursive, hidden folders and the data
    /// folder skipped, directory symlinks not followed). Never imports.
    pub fn list_notebooks(&self, dir: &str) -> Result<Vec<Value>, ToolError> {
        let (rel, abs) = self.root.resolve_dir(dir)?;
        if !abs.is_dir() {
            return Err(ToolError::not_found(
                "folder",
                format!("no folder {} in the workspace", quote(dir)),
            ));
        }
        let mut found = Vec::new();
        let mut budget = 10_000usize;
        walk(&abs, &rel, self.root.data_dir(), &mut budget, &mut found);
        found.sort();
        let inner = self.lock();
        Ok(found
            .into_iter()
            .map(|(rel, abs)| match inner.ws.notebook(&rel) {
                Some(nb) => json!({
                    "path": rel,
                    "cell_count": nb.cells.len(),
                    "current_version": nb.current_version,
                    "imported": true,
                }),
                None => json!({
                    "path": rel,
                    "cell_count": count_cells(&abs),
                    "current_version": 0,
                    "imported": false,
                }),
            })
            .collect())
    }
}

/// What the audit command line learns of the stored projection checkpoint.
pub(crate) enum StoredCheckpoint {
    /// None was ever written (or it was cleared).
    Absent,
    /// Written by another build or checkpoint format, or not decodable: the
    /// server ignores it and replays the log.
    Foreign(String),
    /// One this build would load if its hash matches record `version`.
    At {
        version: u64,
        hash: Hash,
        workspace: Box<Workspace>,
    },
}

/// The stored checkpoint as it is, for `verify` to compare with a replay.
pub(crate) fn stored_checkpoint(store: &Store) -> Result<StoredCheckpoint, StoreError> {
    let Some(bytes) = store.checkpoint()? else {
        return Ok(StoredCheckpoint::Absent);
    };
    if bytes.is_empty() {
        return Ok(StoredCheckpoint::Absent);
    }
    let cp: Checkpoint = match bincode::deserialize(&bytes) {
        Ok(cp) => cp,
        Err(_) => {
            return Ok(StoredCheckpoint::Foreign(
                "it does not decode with this build's checkpoint format".into(),
            ));
        }
    };
    if cp.format != CHECKPOINT_FORMAT || cp.build != env!("CARGO_PKG_VERSION") {
        return Ok(StoredCheckpoint::Foreign(format!(
            "it was written by nbledger {} (format {})",
            cp.build, cp.format
        )));
    }
    Ok(StoredCheckpoint::At {
        version: cp.version,
        hash: cp.hash,
        workspace: Box::new(cp.workspace),
    })
}

/// The stored checkpoint, if it is of this build's format and of this log
/// (its hash matches the record at its version). Anything else: `None`, and
/// the log is replayed from the start.
pub(crate) fn load_checkpoint(store: &Store) -> Option<Checkpoint> {
    let bytes = store.checkpoint().ok()??;
    let cp: Checkpoint = bincode::deserialize(&bytes).ok()?;
    if cp.format != CHECKPOINT_FORMAT
        || cp.build != env!("CARGO_PKG_VERSION")
        || cp.version > store.head()
    {
        return None;
    }
    let rec = store.get(cp.version).ok()??;
    (rec.hash == cp.hash && cp.workspace.head == cp.version).then_some(cp)
}

impl Drop for Engine {
    /// A clean stop leaves a checkpoint, so the next start replays nothing.
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "could not write a checkpoint at shutdown");
        }
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
        "invalid_notebook",
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
        "unavailable",
        "the log could not be flushed to disk, so this server stops serving; retry (with the same request_id for a write) once another server has taken over",
    )
    .with("retryable", true)
}

fn store_error(e: StoreError) -> ToolError {
    ToolError::internal(format!(
        "the log could not record the change ({e}); nothing was changed"
    ))
}

/// The caller running batches. Stepping down (also by unwinding) wakes
/// every waiting caller: the answered ones return, and one whose job is
/// still queued leads next.
struct Leader<'a>(&'a Engine);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        queue.leading = false;
        self.0.answered.notify_all();
    }
}

/// Replaces every answer that depended on a dropped batch with `error`.
fn withdraw(answers: &mut [(Slot, Answer, bool)], error: &ToolError) {
    for (_, answer, provisional) in answers.iter_mut().filter(|a| a.2) {
        *answer = Err(error.clone());
        *provisional = false;
    }
}

/// A notebook's file written for a batch, waiting for the append.
struct Temp {
    np: NotebookPath,
    /// Index of the batch's last event that writes this notebook.
    last: usize,
    tmp: PathBuf,
    after: Hash,
    cache: RenderCache,
}

fn remove_temps(temps: &[Temp]) {
    for t in temps {
        let _ = fs::remove_file(&t.tmp);
    }
}

/// A notebook file as pieces: the frame and each cell's cached text.
/// Streaming the pieces into the file and the hasher avoids building (and
/// page-faulting in) a multi-megabyte buffer on every write.
struct Rendered {
    prefix: String,
    cells: Vec<Arc<str>>,
    suffix: String,
}

impl Rendered {
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let sep: &[u8] = b",\n";
        std::iter::once(self.prefix.as_bytes())
            .chain(self.cells.iter().enumerate().flat_map(move |(i, c)| {
                let lead: &[u8] = if i == 0 { b"" } else { sep };
                [lead, c.as_bytes()]
            }))
            .chain(std::iter::once(self.suffix.as_bytes()))
    }
}

/// Renders `nb`, re-encoding only cells whose `Arc` changed since `cache`.
fn render(nb: &NotebookState, cache: Option<&RenderCache>) -> (Rendered, RenderCache) {
    let mut next: RenderCache = HashMap::with_capacity(nb.cells.len());
    let mut cells: Vec<Arc<str>> = Vec::with_capacity(nb.cells.len());
    for live in &nb.cells {
        let text = match cache.and_then(|c| c.get(&live.cell.id)) {
            Some((cell, text)) if Arc::ptr_eq(cell, &live.cell) => text.clone(),
            _ => Arc::from(notebook::render_cell(&live.cell)),
        };
        next.insert(live.cell.id.clone(), (live.cell.clone(), text.clone()));
        cells.push(text);
    }
    let (prefix, suffix) = if cells.is_empty() {
        (
            String::from_utf8_lossy(&notebook::render(&nb.header, &[])).into_owned(),
            String::new(),
        )
    } else {
        notebook::render_frame(&nb.header)
    };
    (
        Rendered {
            prefix,
            cells,
            suffix,
        },
        next,
    )
}

/// Puts the written temp file in place of `target`, atomically for readers.
///
/// On Linux the two names are swapped with `renameat2(RENAME_EXCHANGE)` and
/// the old content (now under the temp name) is removed. A plain rename
/// over an existing file makes ext4 (`auto_da_alloc`) push the new file's
/// data to disk inside the call, which costs milliseconds for a
/// multi-megabyte notebook; the log, not the file, is what makes a write
/// durable, and start-up rewrites a file the log is ahead of.
fn replace(tmp: &Path, target: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (Ok(from), Ok(to)) = (
            CString::new(tmp.as_os_str().as_bytes()),
            CString::new(target.as_os_str().as_bytes()),
        ) else {
            return fs::rename(tmp, target);
        };
        // SAFETY: both are valid NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        // No target yet, or a filesystem without exchange: plain rename.
    }
    fs::rename(tmp, target)
}

pub fn temp_path(abs: &Path) -> PathBuf {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    abs.with_file_name(format!(".{name}.nbledger-tmp"))
}

/// Writes the hidden temp sibling of `abs` (keeping the target's permission
/// bits) and returns it with the blake3 of what was written. The bytes are
/// written out before the event commits so that a full disk refuses the
/// call with nothing committed.
fn write_temp(abs: &Path, file: &Rendered) -> Result<(PathBuf, Hash), ToolError> {
    let tmp = temp_path(abs);
    if let Some(parent) = abs.parent() {
        fs::create_dir_all(parent).map_err(internal)?;
    }
    // Hash and write in large blocks: blake3 is several times faster on
    // big inputs than on the ~5 KB cell texts one at a time.
    const BLOCK: usize = 256 << 10;
    let mut hasher = blake3::Hasher::new();
    let res = fs::File::create(&tmp).and_then(|mut f| {
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        for piece in file.pieces() {
            if buf.len() + piece.len() > BLOCK {
                hasher.update(&buf);
                f.write_all(&buf)?;
                buf.clear();
            }
            if piece.len() >= BLOCK {
                hasher.update(piece);
                f.write_all(piece)?;
            } else {
                buf.extend_from_slice(piece);
            }
        }
        hasher.update(&buf);
        f.write_all(&buf)
    });
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(internal(format!("writing the notebook failed: {e}")));
    }
    if let Ok(m) = fs::metadata(abs) {
        let _ = fs::set_permissions(&tmp, m.permissions());
    }
    Ok((tmp, *hasher.finalize().as_bytes()))
}

fn walk(dir: &Path, rel: &str, data: &Path, budget: &mut usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if path.starts_with(data) {
                continue;
            }
            walk(&path, &child, data, budget, out);
        } else if name.ends_with(".ipynb") && (ft.is_file() || (ft.is_symlink() && path.is_file()))
        {
            out.push((child, path));
        }
    }
}

/// Counts cells without importing; `null` when the file is not a notebook.
fn count_cells(abs: &Path) -> Value {
    #[derive(serde::Deserialize)]
    struct Cells {
        cells: Vec<serde::de::IgnoredAny>,
    }
    fs::read(abs)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cells>(&b).ok())
        .map_or(Value::Null, |c| json!(c.cells.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::edit::{self, CellSpec};

    type Call<'a> = Box<dyn FnOnce(&Engine) -> Answer + Send + 'a>;

    fn open(root: &Path) -> Engine {
        Engine::open(root, &root.join(".nbledger")).unwrap()
    }

    fn actor(rid: Option<&str>) -> Actor {
        Actor {
            client_name: "agent".into(),
            request_id: rid.map(str::to_owned),
            named: true,
        }
    }

    fn create(engine: &Engine, path: &str, sources: &[&str]) -> Answer {
        let cells = sources
            .iter()
            .map(|s| CellSpec {
                source: (*s).to_owned(),
                cell_type: None,
                metadata: None,
            })
            .collect();
        let args = edit::CreateArgs {
            path: path.into(),
            cells: Some(cells),
            kernel_name: None,
            client_name: None,
            request_id: None,
        };
        edit::create_notebook(engine, args, &actor(None)).map(|(_, m)| m)
    }

    fn update(engine: &Engine, path: &str, index: i64, source: &str, rid: Option<&str>) -> Answer {
        let args = edit::UpdateArgs {
            path: path.into(),
            cell_id: None,
            index: Some(index),
            source: source.into(),
            expected_version: None,
            force: None,
            client_name: None,
            request_id: None,
        };
        edit::update_cell(engine, args, &actor(rid)).map(|(_, m)| m)
    }

    fn insert(engine: &Engine, path: &str, source: &str) -> Answer {
        let args = edit::InsertArgs {
            path: path.into(),
            source: source.into(),
            cell_type: None,
            index: None,
            after_cell_id: None,
            before_cell_id: None,
            metadata: None,
            client_name: None,
            request_id: None,
        };
        edit::insert_cell(engine, args, &actor(None)).map(|(_, m)| m)
    }

    /// Runs `calls` as one batch, queued in this order: each runs on its
    /// own thread while the test holds the mutex (the first caller leads
    /// and waits for it), which it lets go once every job is queued.
    fn one_batch(engine: &Engine, calls: Vec<Call<'_>>) -> Vec<Answer> {
        std::thread::scope(|s| {
            let held = engine.inner.lock();
            let mut running = Vec::new();
            for (queued, call) in calls.into_iter().enumerate() {
                running.push(s.spawn(move || call(engine)));
                while engine.queue.lock().jobs.len() <= queued {
                    std::thread::yield_now();
                }
            }
            drop(held);
            running.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn version(answer: &Answer) -> u64 {
        answer.as_ref().unwrap()["version"].as_u64().unwrap()
    }

    fn events_after(engine: &Engine, head: u64) -> Vec<Event> {
        engine
            .store()
            .records(head + 1)
            .map(|r| r.unwrap().event)
            .collect()
    }

    /// Everything the log, the projection and the files must agree on.
    fn assert_consistent(engine: &Engine, root: &Path) {
        let live = engine.workspace();
        let mut replayed = Workspace::default();
        for rec in engine.store().records(1) {
            replayed.apply(&rec.unwrap().event);
        }
        assert_eq!(replayed, live, "replay differs from the live state");
        assert_eq!(live.head, engine.store().head());
        assert_eq!(*engine.subscribe().borrow(), live.head);
        for (rel, nb) in &live.notebooks {
            let Ok(bytes) = fs::read(root.join(rel)) else {
                continue;
            };
            assert_eq!(
                bytes,
                notebook::render_file(nb),
                "{rel} differs from its state"
            );
            let file = nb.file.as_ref().unwrap();
            assert_eq!(*blake3::hash(&bytes).as_bytes(), file.after, "{rel}");
            assert!(!temp_path(&root.join(rel)).exists());
        }
    }

    #[test]
    fn a_batch_appends_once_and_writes_each_file_once_from_its_last_event() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        create(&engine, "a.ipynb", &["a0", "a1", "a2", "a3"]).unwrap();
        create(&engine, "b.ipynb", &["b0", "b1"]).unwrap();
        let head = engine.store().head();
        let hash_of = |p: &str| *blake3::hash(&fs::read(root.join(p)).unwrap()).as_bytes();
        let (a_before, b_before) = (hash_of("a.ipynb"), hash_of("b.ipynb"));

        let plan: Vec<(&str, i64)> = vec![
            ("a.ipynb", 0),
            ("b.ipynb", 0),
            ("a.ipynb", 1),
            ("a.ipynb", 2),
        ];
        let calls: Vec<Call> = plan
            .iter()
            .map(|&(p, i)| {
                Box::new(move |e: &Engine| update(e, p, i, &format!("{p} {i} new"), None)) as Call
            })
            .collect();
        let answers = one_batch(&engine, calls);

        let versions: Vec<u64> = answers.iter().map(version).collect();
        assert_eq!(versions, (head + 1..=head + 4).collect::<Vec<_>>());
        let events = events_after(&engine, head);
        assert_eq!(events.len(), 4);
        // b's file record rides on its only event, a's on its last one.
        let files: Vec<Vec<(String, Option<Hash>, bool)>> = events
            .iter()
            .map(|e| {
                e.files
                    .iter()
                    .map(|f| (f.path.clone(), f.before, f.written))
                    .collect()
            })
            .collect();
        assert_eq!(
            files,
            vec![
                vec![],
                vec![("b.ipynb".to_owned(), Some(b_before), true)],
                vec![],
                vec![("a.ipynb".to_owned(), Some(a_before), true)],
            ]
        );
        assert_eq!(events[3].files[0].after, hash_of("a.ipynb"));
        let ws = engine.workspace();
        let sources: Vec<&str> = ws.notebooks["a.ipynb"]
            .cells
            .iter()
            .map(|c| c.cell.source.as_str())
            .collect();
        assert_eq!(
            sources,
            vec!["a.ipynb 0 new", "a.ipynb 1 new", "a.ipynb 2 new", "a3"]
        );
        assert_consistent(&engine, root);
    }

    #[test]
    fn a_notebook_created_in_a_batch_takes_edits_and_refuses_a_second_create() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        let calls: Vec<Call> = vec![
            Box::new(|e: &Engine| create(e, "c.ipynb", &["first"])),
            // No file yet: the staged create must count as the notebook.
            Box::new(|e: &Engine| insert(e, "c.ipynb", "second")),
            Box::new(|e: &Engine| create(e, "c.ipynb", &["again"])),
            Box::new(|e: &Engine| update(e, "c.ipynb", 0, "first, edited", None)),
        ];
        let answers = one_batch(&engine, calls);
        assert_eq!(version(&answers[0]), 1);
        assert_eq!(version(&answers[1]), 2);
        assert_eq!(answers[2].as_ref().unwrap_err().code, "exists");
        assert_eq!(version(&answers[3]), 3);
        let events = events_after(&engine, 0);
        assert_eq!(events.len(), 3);
        assert!(events[..2].iter().all(|e| e.files.is_empty()));
        assert_eq!(events[2].files[0].before, None);
        let ws = engine.workspace();
        let sources: Vec<&str> = ws.notebooks["c.ipynb"]
            .cells
            .iter()
            .map(|c| c.cell.source.as_str())
            .collect();
        assert_eq!(sources, vec!["first, edited", "second"]);
        assert_consistent(&engine, root);
    }

    #[test]
    fn a_request_id_repeated_within_a_batch_answers_its_first_result() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        create(&engine, "a.ipynb", &["x"]).unwrap();
        let head = engine.store().head();
        let calls: Vec<Call> = vec![
            Box::new(|e: &Engine| update(e, "a.ipynb", 0, "one", Some("r1"))),
            Box::new(|e: &Engine| update(e, "a.ipynb", 0, "two", Some("r1"))),
        ];
        let answers = one_batch(&engine, calls);
        assert_eq!(answers[0], answers[1]);
        assert_eq!(version(&answers[0]), head + 1);
        assert_eq!(engine.store().head(), head + 1);
        // And once durable, from the log.
        assert_eq!(
            update(&engine, "a.ipynb", 0, "three", Some("r1")),
            answers[0]
        );
        assert_eq!(
            engine.workspace().notebooks["a.ipynb"].cells[0].cell.source,
            "one"
        );
        assert_consistent(&engine, root);
    }

    #[test]
    fn a_failed_file_write_drops_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        create(&engine, "a.ipynb", &["a0"]).unwrap();
        create(&engine, "b.ipynb", &["b0"]).unwrap();
        let head = engine.store().head();
        // An outside edit of a, taken in by the batch (and dropped with it).
        let outside = fs::read_to_string(root.join("a.ipynb"))
            .unwrap()
            .replace("\"a0\"", "\"a0 outside\"");
        fs::write(root.join("a.ipynb"), &outside).unwrap();
        // b's temp file cannot be created.
        let blocker = temp_path(&root.join("b.ipynb"));
        fs::create_dir(&blocker).unwrap();

        let calls: Vec<Call> = vec![
            // Refused before anything is staged: keeps its own answer.
            Box::new(|e: &Engine| update(e, "b.ipynb", 9, "no such cell", None)),
            Box::new(|e: &Engine| update(e, "a.ipynb", 0, "a0 new", None)),
            Box::new(|e: &Engine| update(e, "b.ipynb", 0, "b0 new", None)),
            // Refused against a staged state: withdrawn with the batch.
            Box::new(|e: &Engine| update(e, "a.ipynb", 9, "no such cell", None)),
        ];
        let answers = one_batch(&engine, calls);
        assert_eq!(answers[0].as_ref().unwrap_err().code, "not_found");
        for a in &answers[1..] {
            let e = a.as_ref().unwrap_err();
            assert_eq!(e.code, "internal", "{e}");
            assert!(e.message.contains("can be retried"), "{e}");
        }
        assert_eq!(engine.store().head(), head);
        assert_eq!(engine.workspace().head, head);
        assert_eq!(fs::read_to_string(root.join("a.ipynb")).unwrap(), outside);
        assert!(!temp_path(&root.join("a.ipynb")).exists());

        fs::remove_dir(&blocker).unwrap();
        let v = version(&update(&engine, "a.ipynb", 0, "a0 new", None));
        // The outside edit is seen again and recorded before the write.
        let events = events_after(&engine, head);
        let ops: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
        assert_eq!(ops, vec![OP_EXTERNAL, "update_cell"]);
        assert_eq!(v, head + 2);
        version(&update(&engine, "b.ipynb", 0, "b0 new", None));
        assert_consistent(&engine, root);
    }

    #[test]
    fn a_notebook_with_a_staged_write_is_not_synced_within_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        create(&engine, "a.ipynb", &["a0"]).unwrap();
        let head = engine.store().head();
        let calls: Vec<Call> = vec![
            Box::new(|e: &Engine| update(e, "a.ipynb", 0, "staged", None)),
            // The file is still the pre-batch one; diffing it against the
            // staged state would record a change undoing "staged".
            Box::new(|e: &Engine| {
                e.submit(Box::new(|e, _| {
                    let abs = e.root.path().join("a.ipynb");
                    let text = fs::read_to_string(&abs).unwrap();
                    fs::write(&abs, text.replace("\"a0\"", "\"a0 outside\"")).unwrap();
                    Ok(Map::new())
                }))
            }),
            Box::new(|e: &Engine| insert(e, "a.ipynb", "after")),
        ];
        let answers = one_batch(&engine, calls);
        assert!(answers.iter().all(Result::is_ok));
        let ops: Vec<String> = events_after(&engine, head)
            .into_iter()
            .map(|e| e.operation)
            .collect();
        assert_eq!(ops, vec!["update_cell", "insert_cell"]);
        let ws = engine.workspace();
        let sources: Vec<&str> = ws.notebooks["a.ipynb"]
            .cells
            .iter()
            .map(|c| c.cell.source.as_str())
            .collect();
        assert_eq!(sources, vec!["staged", "after"]);
        assert_consistent(&engine, root);
    }

    #[test]
    fn a_failed_flush_answers_unknown_and_the_engine_serves_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let engine = open(root);
        create(&engine, "a.ipynb", &["x"]).unwrap();
        engine
            .store()
            .fail_flushes
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let e = update(&engine, "a.ipynb", 0, "y", Some("r1")).unwrap_err();
        assert_eq!(e.code, "unavailable");
        assert_eq!(e.details["outcome"], "unknown");
        assert_eq!(e.details["retryable"], true);
        assert!(engine.store().failed());
        // Neither writes nor reads: the projection may hold what the disk
        // does not.
        let e = update(&engine, "a.ipynb", 0, "z", None).unwrap_err();
        assert_eq!(e.code, "unavailable");
        assert!(e.details.get("outcome").is_none(), "nothing was tried");
        let e = engine.read("a.ipynb", |_| Ok(())).unwrap_err();
        assert_eq!(e.code, "unavailable");
        // The file was never swapped: it still holds the last durable state.
        let file = fs::read_to_string(root.join("a.ipynb")).unwrap();
        assert!(file.contains("\"x\""), "{file}");
    }
}
