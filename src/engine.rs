//! The engine runs a tool call against the log: it brings the notebook's
//! file and the log into agreement, lets the tool plan its changes against
//! the current state, and commits them as one event.
//!
//! A write goes: lock → sync the file (import / take in an outside change)
//! → plan → fold the event into a trial copy of the notebook → render the
//! file from per-cell cached bytes → write the hidden temp file → append the
//! event (durable) → rename the temp file over the notebook → install the
//! trial state. Anything that fails before the append leaves no trace; the
//! event records the file's hash before and after, so start-up can finish a
//! rename a crash interrupted (§8.8).
//!
//! One mutex serialises calls. That keeps the version order, the file order
//! and the state order identical, which is what makes replay exact.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use crate::error::{ToolError, quote};
use crate::events::{CLIENT_EXTERNAL, Cell, Event, FileWrite, Hash, OP_EXTERNAL, OP_IMPORT};
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
}

pub struct Engine {
    root: Root,
    store: Store,
    inner: Mutex<Inner>,
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
        let mut inner = Inner::default();
        if let Some(cp) = load_checkpoint(&store) {
            inner.checkpointed = cp.version;
            inner.ws = cp.workspace;
        }
        for rec in store.records(inner.ws.head + 1) {
            inner.ws.apply(&rec?.event);
        }
        let head_tx = tokio::sync::watch::Sender::new(inner.ws.head);
        let engine = Engine {
            root,
            store,
            inner: Mutex::new(inner),
            head_tx,
        };
        engine.reconcile_all();
        Ok(engine)
    }

    /// Writes a projection checkpoint at the current head.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        self.write_checkpoint(&mut inner)?;
        self.store.flush()
    }

    fn write_checkpoint(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let version = inner.ws.head;
        if version == 0 || version == inner.checkpointed {
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
        f(&self.inner.lock().ws)
    }

    /// A copy of the whole projection (tests and audit).
    pub fn workspace(&self) -> Workspace {
        self.inner.lock().ws.clone()
    }

    /// Finishes writes a crash interrupted and takes in outside changes
    /// made while no server ran (§8.8).
    fn reconcile_all(&self) {
        let mut inner = self.inner.lock();
        let paths: Vec<String> = inner.ws.notebooks.keys().cloned().collect();
        for rel in paths {
            let np = NotebookPath {
                abs: self.root.path().join(&rel),
                rel: rel.clone(),
            };
            let _ = fs::remove_file(temp_path(&np.abs));
            let Some(nb) = inner.ws.notebook(&rel).cloned() else {
                continue;
            };
            let Some(file) = nb.file.clone() else {
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
                        if let Err(e) = self.rewrite_from_log(&mut inner, &np) {
                            tracing::warn!(path = %rel, error = %e, "could not finish an interrupted write");
                        }
                        continue;
                    }
                    if let Err(e) = self.sync(&mut inner, &np) {
                        tracing::warn!(path = %rel, error = %e, "notebook on disk could not be taken in");
                    }
                }
                Err(_) if file.written && file.before.is_none() => {
                    // A create whose file never landed.
                    if let Err(e) = self.rewrite_from_log(&mut inner, &np) {
                        tracing::warn!(path = %rel, error = %e, "could not finish an interrupted create");
                    }
                }
                Err(_) => {}
            }
        }
    }

    fn rewrite_from_log(&self, inner: &mut Inner, np: &NotebookPath) -> Result<(), ToolError> {
        let Some(nb) = inner.ws.notebook(&np.rel).cloned() else {
            return Ok(());
        };
        let (file, cache) = render(&nb, inner.renders.get(&np.rel));
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
    /// taking in an outside change first, if needed).
    pub fn read<T>(
        &self,
        path: &str,
        f: impl FnOnce(&NotebookState) -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        let np = self.root.resolve(path)?;
        let mut inner = self.inner.lock();
        self.sync(&mut inner, &np)?;
        let nb = inner
            .ws
            .notebook(&np.rel)
            .ok_or_else(|| ToolError::internal("notebook vanished from the projection"))?;
        f(nb)
    }

    /// Runs a write of tool `operation`: `plan` sees the current state, the
    /// path and the time the event will carry (lock checks use it, §8.5),
    /// and returns the changes; an empty plan commits nothing and answers
    /// `changed: false`. A `locked` refusal is put on record (§8.5).
    pub fn write(
        &self,
        path: &str,
        actor: &Actor,
        presence: Presence,
        operation: &'static str,
        plan: impl FnOnce(Option<&NotebookState>, &NotebookPath, i64) -> Result<Plan, ToolError>,
    ) -> Result<Map<String, Value>, ToolError> {
        let np = self.root.resolve(path)?;
        let mut inner = self.inner.lock();
        if let Some(rid) = &actor.request_id
            && let Some(prev) = self.replayed(&inner, &actor.client_name, rid)?
        {
            return Ok(prev);
        }
        match presence {
            Presence::Existing => self.sync(&mut inner, &np)?,
            Presence::Create => {
                if np.abs.exists() {
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
        let plan = match plan(nb, &np, now) {
            Ok(p) => p,
            Err(e) if e.code == "locked" => {
                return Err(self.reject(&mut inner, &np, actor, operation, now, e));
            }
            Err(e) => return Err(e),
        };
        self.finish(&mut inner, std::slice::from_ref(&np), actor, plan, now)
    }

    /// A write over two notebooks (copy or move from `src` to `dest`, which
    /// may be the same): both are synced, the planner sees both, and the
    /// result is one event in both feeds.
    pub fn write_pair(
        &self,
        src: &str,
        dest: &str,
        actor: &Actor,
        operation: &'static str,
        plan: impl FnOnce(
            &NotebookState,
            &NotebookState,
            &NotebookPath,
            &NotebookPath,
            i64,
        ) -> Result<Plan, ToolError>,
    ) -> Result<Map<String, Value>, ToolError> {
        let s = self.root.resolve(src)?;
        let d = self.root.resolve(dest)?;
        let mut inner = self.inner.lock();
        if let Some(rid) = &actor.request_id
            && let Some(prev) = self.replayed(&inner, &actor.client_name, rid)?
        {
            return Ok(prev);
        }
        self.sync(&mut inner, &s)?;
        if d.rel != s.rel {
            self.sync(&mut inner, &d)?;
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
                return Err(self.reject(&mut inner, &s, actor, operation, now, e));
            }
            Err(e) => return Err(e),
        };
        let nps = if d.rel == s.rel { vec![s] } else { vec![s, d] };
        self.finish(&mut inner, &nps, actor, plan, now)
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
            changes: plan.changes,
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

    /// The stored result of an earlier call with the same request_id.
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
        let rec = self.store.get(version).map_err(internal)?;
        Ok(rec
            .filter(|r| r.event.timestamp_ms >= now_ms() - REQUEST_TTL_MS)
            .and_then(|r| match serde_json::from_str(&r.event.result) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            }))
    }

    /// Folds `event` into a trial copy of the notebook, writes the file's
    /// temp sibling (when `write_file`), appends the event, renames the file
    /// and installs the trial state. `result` builds the answer stored in
    /// the event.
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

    /// [`Engine::commit`] for an event over several notebooks (a copy or
    /// move between two): each file gets its temp sibling before the one
    /// append, and is swapped in after it. `result` sees the last notebook.
    fn commit_many(
        &self,
        inner: &mut Inner,
        nps: &[NotebookPath],
        mut event: Event,
        timestamp_ms: i64,
        write_file: bool,
        result: impl FnOnce(u64, &NotebookState) -> Map<String, Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        let version = inner.ws.head + 1;
        // Times never decrease along versions (§8.5).
        let timestamp_ms = timestamp_ms.max(inner.ws.head_timestamp_ms);
        event.version = version;
        event.timestamp_ms = timestamp_ms;

        let mut trial = Workspace::default();
        for np in nps {
            if let Some(nb) = inner.ws.notebook(&np.rel) {
                trial.notebooks.insert(np.rel.clone(), nb.clone());
            }
        }
        // Fold once without file info to render, then record the files.
        trial.apply_to_notebooks(&event);
        let missing = || ToolError::internal("event did not create its notebook");
        let mut temps: Vec<(PathBuf, Hash, RenderCache)> = Vec::new();
        if write_file {
            for np in nps {
                let nb = trial.notebooks.get(&np.rel).ok_or_else(missing)?;
                let (file, cache) = render(nb, inner.renders.get(&np.rel));
                let written = write_temp(&np.abs, &file);
                let (tmp, after) = match written {
                    Ok(w) => w,
                    Err(e) => {
                        for (t, _, _) in &temps {
                            let _ = fs::remove_file(t);
                        }
                        return Err(e);
                    }
                };
                event.files.push(FileWrite {
                    path: np.rel.clone(),
                    before: inner.disk.get(&np.rel).map(|(_, h)| *h),
                    after,
                    written: true,
                });
                temps.push((tmp, after, cache));
            }
        }
        let last = nps.last().ok_or_else(missing)?;
        let answer = result(version, trial.notebooks.get(&last.rel).ok_or_else(missing)?);
        event.result = Value::Object(answer.clone()).to_string();
        for f in &event.files {
            if let Some(nb) = trial.notebooks.get_mut(&f.path) {
                nb.file = Some(f.clone());
            }
        }

        if let Err(e) = self.store.append(&event) {
            for (t, _, _) in &temps {
                let _ = fs::remove_file(t);
            }
            return Err(store_error(e));
        }
        for (np, (tmp, after, cache)) in nps.iter().zip(temps) {
            // The event is durable; a failed swap is healed at start-up
            // from the event's file record.
            if let Err(e) = replace(&tmp, &np.abs) {
                tracing::error!(path = %np.rel, error = %e, "rename after commit failed");
            }
            self.mark_disk(inner, np, after);
            inner.renders.insert(np.rel.clone(), cache);
        }
        // Installing the trial notebooks plus the global fold is exactly
        // `Workspace::apply(&event)`, without refolding the notebooks.
        for (path, nb) in trial.notebooks {
            inner.ws.notebooks.insert(path, nb);
        }
        inner.ws.apply_global(&event);
        // Only now, after the flush, may a long-poll see it (§8.9).
        self.head_tx.send_replace(inner.ws.head);
        if inner.ws.head - inner.checkpointed >= CHECKPOINT_EVERY
            && let Err(e) = self.write_checkpoint(inner)
        {
            tracing::warn!(error = %e, "could not write a projection checkpoint");
        }
        Ok(answer)
    }

    /// Brings notebook `np` and the log into agreement (§3, §8.8): imports
    /// a notebook the log has never seen, takes in a file changed outside.
    fn sync(&self, inner: &mut Inner, np: &NotebookPath) -> Result<(), ToolError> {
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
        let inner = self.inner.lock();
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

fn store_error(e: StoreError) -> ToolError {
    ToolError::internal(format!(
        "the log could not record the change ({e}); nothing was changed"
    ))
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
