//! One notebook's room: nbledger as a Yjs peer beside the people in it.
//!
//! The peer keeps `base`, the content the log and the room last agreed on,
//! and reconciles by state, three ways, so nothing depends on seeing every
//! message exactly once:
//! - the log moved from `base` (an agent wrote): the change goes into the
//!   room as one transaction with origin [`ydoc::ORIGIN`] (the source as its
//!   smallest text edit), and `base` follows the log;
//! - the room moved from `base` (a person typed): once the cell has been
//!   quiet for [`PAUSE`] (at most [`MAX_HOLD`] after the first keystroke,
//!   or at once when Jupyter saves or the room closes), it is written to
//!   the log by `jupyter:<user name>`, and `base` follows;
//! - both moved (an agent forced a write on the cell the person types in):
//!   the person's text is written first, then the agent's write is kept
//!   (`keep_write` by `nbledger`), and the room gets the agent's text.
//!
//! A cell a person edited in the last [`FOCUS`] is locked by
//! `jupyter:<user name>` through ordinary lock events (short expiry, renewed
//! while typing), so agents get `locked`, `force` is recorded, and
//! `list_locks` shows it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use yrs::block::ClientID;
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Array, ArrayRef, Doc, MapRef, ReadTxn, Transact, Update};

use super::wire::{self, Jupyter, Socket};
use super::ydoc::{self, RoomCell};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::ToolError;
use crate::events::{CLIENT_SERVER, Cell, Header, OP_KEEP_WRITE};
use crate::notebook;

/// A cell quiet this long has its edits written to the log.
pub const PAUSE: Duration = Duration::from_millis(1000);
/// A cell typed in without a pause is written at least this often.
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// How often the room is looked at when nothing arrives.
const TICK: Duration = Duration::from_millis(100);
/// How often nbledger renews its awareness entry (JupyterLab: 15 s; a
/// peer that joins later learns who is there from the next renewal).
const PRESENCE: Duration = Duration::from_secs(5);
/// How long joining waits for the room's first sync.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// How long a freshly joined room may take to catch up with the file.
const CATCH_UP: Duration = Duration::from_millis(2500);
/// How many earlier versions of a notebook a stale room is compared with.
const STALE_LOOKBACK: usize = 20;

pub const OP_JUPYTER_EDIT: &str = "jupyter_edit";

/// What the log and the room last agreed on.
pub(super) struct Base {
    header: Header,
    order: Vec<String>,
    pub(super) cells: HashMap<String, Arc<Cell>>,
}

impl Base {
    fn of(view: &LogView) -> Base {
        Base {
            header: view.header.clone(),
            order: view.cells.iter().map(|c| c.id.clone()).collect(),
            cells: view
                .cells
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
        }
    }
}

/// A person's edits to one cell not yet in the log.
pub(super) struct Edit {
    pub(super) first: Instant,
    pub(super) last: Instant,
    pub(super) who: String,
    /// The Yjs clients whose updates made them: `who` is named again from
    /// the room's awareness before use, as a person's entry may arrive
    /// after their first keystrokes.
    pub(super) clients: Vec<ClientID>,
}

/// A joined room.
pub(super) struct Joined {
    pub(super) ws: Socket,
    pub(super) doc: Doc,
    pub(super) cells: ArrayRef,
    pub(super) meta: MapRef,
    pub(super) awareness: Awareness,
    pub(super) base: Base,
    /// The room's cells as last processed, to tell which cells an incoming
    /// update touched.
    pub(super) seen: Vec<RoomCell>,
    pub(super) edits: HashMap<String, Edit>,
    /// The log version `base` was last compared with.
    pub(super) log_version: u64,
    /// The file's mtime, to notice Jupyter's saves.
    pub(super) saved: Option<SystemTime>,
}

/// The log's view of the notebook.
pub(super) struct LogView {
    version: u64,
    header: Header,
    pub(super) cells: Vec<Arc<Cell>>,
    pub(super) locks: HashMap<String, crate::projections::Lock>,
}

pub struct Peer {
    pub engine: Arc<Engine>,
    pub jupyter: Jupyter,
    /// The notebook, relative to the root (the log's key and Jupyter's path).
    pub path: String,
}

impl Peer {
    /// Stays in the room until `stop`: joins, serves, and after a failure
    /// falls back to the file and rejoins with backoff.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.join(&stop).await {
                Ok(mut j) => {
                    backoff = Duration::from_millis(500);
                    let ended = self.serve(&mut j, &stop).await;
                    if let Err(e) = &ended {
                        tracing::warn!(path = %self.path, error = %e, "left the Jupyter room; back to the file");
                    }
                    // Whatever the room had goes to the log before the file
                    // is the engine's again.
                    if let Err(e) = self.take_room(&mut j, true).await {
                        tracing::warn!(path = %self.path, error = %e, "could not record the room's last edits");
                    }
                    self.leave().await;
                }
                Err(e) => {
                    tracing::debug!(path = %self.path, error = %e, "could not join the Jupyter room");
                    self.leave().await;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
    }

    async fn leave(&self) {
        let engine = self.engine.clone();
        let path = self.path.clone();
        let left = tokio::task::spawn_blocking(move || engine.leave_room(&path)).await;
        if let Ok(Err(e)) = left {
            tracing::warn!(path = %self.path, error = %e, "could not hand the file back");
        }
    }

    /// Opens the session and the room, syncs, and agrees on a base.
    async fn join(&self, stop: &CancellationToken) -> anyhow::Result<Joined> {
        // The engine stops writing the file first, so the room loads a
        // file that already holds every write the log has.
        let engine = self.engine.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || engine.enter_room(&path))
            .await?
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let session = self.jupyter.session(&self.path).await?;
        let ws = self.jupyter.connect(&session).await?;
        let doc = ydoc::new_doc();
        let cells = doc.get_or_insert_array("cells");
        let meta = doc.get_or_insert_map("meta");
        let mut awareness = Awareness::new(doc.clone());
        awareness.set_local_state(json!({"user": {
            "username": "nbledger", "name": "nbledger",
            "display_name": "nbledger (agents)", "initials": "NB", "color": "#6a5acd"
        }}))?;
        let mut j = Joined {
            ws,
            doc,
            cells,
            meta,
            awareness,
            base: Base {
                header: Header {
                    nbformat: 4,
                    nbformat_minor: 5,
                    metadata: "{}".into(),
                    extra: "{}".into(),
                },
                order: Vec::new(),
                cells: HashMap::new(),
            },
            seen: Vec::new(),
            edits: HashMap::new(),
            log_version: 0,
            saved: None,
        };
        let sv = j.doc.transact().state_vector();
        wire::send(&mut j.ws, Message::Sync(SyncMessage::SyncStep1(sv))).await?;
        let update = j.awareness.update()?;
        wire::send(&mut j.ws, Message::Awareness(update)).await?;
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        let mut synced = false;
        while !synced {
            let msgs = tokio::select! {
                _ = stop.cancelled() => anyhow::bail!("stopping"),
                _ = tokio::time::sleep_until(deadline) => anyhow::bail!("the room did not sync in time"),
                m = wire::recv(&mut j.ws) => m.ok_or_else(|| anyhow::anyhow!("the room closed while joining"))??,
            };
            for m in msgs {
                synced |= matches!(m, Message::Sync(SyncMessage::SyncStep2(_)));
                self.on_message(&mut j, m, false).await?;
            }
        }
        // Base = the log. The room may still be loading the file's newest
        // write: give it a moment to agree before taking any difference for
        // a person's edit.
        let view = self
            .view()
            .ok_or_else(|| anyhow::anyhow!("notebook not in the log"))?;
        j.base = Base::of(&view);
        j.log_version = view.version;
        tracing::debug!(path = %self.path, version = view.version, "room synced");
        let until = tokio::time::Instant::now() + CATCH_UP;
        while !self.agrees(&j, &view) && tokio::time::Instant::now() < until {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                m = wire::recv(&mut j.ws) => {
                    for m in m.ok_or_else(|| anyhow::anyhow!("the room closed while joining"))?? {
                        self.on_message(&mut j, m, false).await?;
                    }
                }
            }
        }
        self.mark_stale(&mut j, &view).await;
        j.seen = ydoc::read_cells(&j.doc.transact(), &j.cells);
        j.saved = self.file_mtime();
        tracing::info!(path = %self.path, "joined the Jupyter room");
        Ok(j)
    }

    /// A room cell that still differs from the log after the catch-up
    /// wait but equals that cell at one of the notebook's last
    /// [`STALE_LOOKBACK`] versions is a room loaded from an older file, not
    /// a person's edit: its base is set to the room's, so the log's
    /// newer content goes into the room.
    async fn mark_stale(&self, j: &mut Joined, view: &LogView) {
        let room = ydoc::read_cells(&j.doc.transact(), &j.cells);
        let differing: Vec<RoomCell> = room
            .into_iter()
            .filter(|r| {
                j.base
                    .cells
                    .get(&r.id)
                    .is_some_and(|b| ydoc::normal_of(b) != r.json)
            })
            .collect();
        if differing.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        let path = self.path.clone();
        let head = view.version;
        let older = tokio::task::spawn_blocking(move || {
            let versions = engine
                .store()
                .notebook_versions(&path, 0, usize::MAX)
                .unwrap_or_default();
            let mut older: Vec<Arc<Cell>> = Vec::new();
            for v in versions
                .into_iter()
                .rev()
                .filter(|v| *v < head)
                .take(STALE_LOOKBACK)
            {
                if let Ok(nb) = engine.notebook_at(&path, v) {
                    older.extend(nb.cells.iter().map(|c| c.cell.clone()));
                }
            }
            older
        })
        .await
        .unwrap_or_default();
        tracing::debug!(path = %self.path, version = view.version, differing = differing.len(), older = older.len(), first = %differing[0].json, log = %j.base.cells.get(&differing[0].id).map(|c| ydoc::normal_of(c)).unwrap_or_default(), "room differs from the log after joining");
        for r in differing {
            if older
                .iter()
                .any(|c| c.id == r.id && ydoc::normal_of(c) == r.json)
                && let Some(b) = j.base.cells.get(&r.id)
            {
                let stale = Arc::new(ydoc::cell_from_room(Some(b), &r));
                j.base.cells.insert(r.id.clone(), stale);
                j.log_version = 0;
            }
        }
    }

    fn agrees(&self, j: &Joined, view: &LogView) -> bool {
        let room = ydoc::read_cells(&j.doc.transact(), &j.cells);
        room.len() == view.cells.len()
            && room
                .iter()
                .zip(&view.cells)
                .all(|(r, c)| r.json == ydoc::normal_of(c))
    }

    /// The room's life after joining; returns when it closes or `stop`.
    async fn serve(&self, j: &mut Joined, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut head = self.engine.subscribe();
        let mut tick = tokio::time::interval(TICK);
        let mut presence = tokio::time::interval(PRESENCE);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                m = wire::recv(&mut j.ws) => {
                    let msgs = m.ok_or_else(|| anyhow::anyhow!("the room closed"))??;
                    for m in msgs {
                        self.on_message(j, m, true).await?;
                    }
                }
                _ = head.changed() => self.push_log(j).await?,
                _ = tick.tick() => {
                    self.push_log(j).await?;
                    let saved = self.file_mtime();
                    let save = saved != j.saved;
                    j.saved = saved;
                    self.name_editors(j);
                    self.take_room(j, save).await?;
                    self.focus(j).await?;
                }
                _ = presence.tick() => {
                    let state = j.awareness.local_state_raw();
                    if let Some(s) = state {
                        j.awareness.set_local_state_raw(s);
                    }
                    let update = j.awareness.update()?;
                    wire::send(&mut j.ws, Message::Awareness(update)).await?;
                }
            }
        }
    }

    fn file_mtime(&self) -> Option<SystemTime> {
        let abs = self.engine.root().path().join(&self.path);
        std::fs::metadata(abs).and_then(|m| m.modified()).ok()
    }

    async fn on_message(&self, j: &mut Joined, m: Message, track: bool) -> anyhow::Result<()> {
        match m {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = j.doc.transact().encode_state_as_update_v1(&sv);
                wire::send(&mut j.ws, Message::Sync(SyncMessage::SyncStep2(diff))).await?;
            }
            Message::Sync(SyncMessage::SyncStep2(u)) | Message::Sync(SyncMessage::Update(u)) => {
                let update = Update::decode_v1(&u)?;
                let clients: Vec<ClientID> = update
                    .state_vector_lower()
                    .iter()
                    .map(|(c, _)| *c)
                    .collect();
                j.doc.transact_mut_with("room").apply_update(update)?;
                if track {
                    self.track(j, &clients);
                }
            }
            Message::Awareness(u) => {
                j.awareness.apply_update(u)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Notes which cells an incoming update changed, and who changed them.
    fn track(&self, j: &mut Joined, clients: &[ClientID]) {
        let now = ydoc::read_cells(&j.doc.transact(), &j.cells);
        let before: HashMap<&str, &Value> =
            j.seen.iter().map(|c| (c.id.as_str(), &c.json)).collect();
        let who = self.person(j, clients);
        let at = Instant::now();
        for c in &now {
            if before.get(c.id.as_str()) != Some(&&c.json) {
                let e = j.edits.entry(c.id.clone()).or_insert(Edit {
                    first: at,
                    last: at,
                    who: who.clone(),
                    clients: clients.to_vec(),
                });
                e.last = at;
                e.who = who.clone();
                e.clients = clients.to_vec();
            }
        }
        j.seen = now;
    }

    /// Names each pending edit's author again (see [`Edit::clients`]).
    fn name_editors(&self, j: &mut Joined) {
        let names: Vec<(String, String)> = j
            .edits
            .iter()
            .map(|(id, e)| (id.clone(), self.person(j, &e.clients)))
            .collect();
        for (id, who) in names {
            if let Some(e) = j.edits.get_mut(&id) {
                e.who = who;
            }
        }
    }

    /// The Jupyter user behind `clients` (awareness and document share
    /// client ids), else the one person in the room, else `unknown`.
    pub(super) fn person(&self, j: &Joined, clients: &[ClientID]) -> String {
        let ours = j.doc.client_id();
        let name_of = |state: &str| -> Option<String> {
            let v: Value = serde_json::from_str(state).ok()?;
            let u = &v["user"];
            u["username"]
                .as_str()
                .or(u["name"].as_str())
                .map(str::to_owned)
        };
        let people: Vec<(ClientID, String)> = j
            .awareness
            .iter()
            .filter(|(id, _)| *id != ours)
            .filter_map(|(id, s)| Some((id, name_of(s.data.as_deref()?)?)))
            .collect();
        let name = clients
            .iter()
            .find_map(|c| {
                people
                    .iter()
                    .find(|(id, _)| id == c)
                    .map(|(_, n)| n.clone())
            })
            .or_else(|| (people.len() == 1).then(|| people[0].1.clone()))
            .unwrap_or_else(|| "unknown".to_owned());
        format!("jupyter:{name}")
    }

    pub(super) fn view(&self) -> Option<LogView> {
        self.engine.with_workspace(|ws| {
            let nb = ws.notebook(&self.path)?;
            Some(LogView {
                version: nb.current_version,
                header: nb.header.clone(),
                cells: nb.cells.iter().map(|c| c.cell.clone()).collect(),
                locks: nb
                    .locks
                    .iter()
                    .map(|(k, l)| (k.clone(), l.clone()))
                    .collect(),
            })
        })
    }

    /// The log → the room: what agents wrote since `base`.
    async fn push_log(&self, j: &mut Joined) -> anyhow::Result<()> {
        let Some(view) = self.view() else {
            return Ok(());
        };
        if view.version == j.log_version {
            return Ok(());
        }
        // Most new versions (locks, runs elsewhere, the person's own
        // edits) change nothing here: say so without reading the room.
        let same = view.header == j.base.header
            && view.cells.len() == j.base.order.len()
            && view.cells.iter().zip(&j.base.order).all(|(c, id)| {
                c.id == *id
                    && j.base
                        .cells
                        .get(id)
                        .is_some_and(|b| Arc::ptr_eq(b, c) || b == c)
            });
        if same {
            j.log_version = view.version;
            return Ok(());
        }
        let room = ydoc::read_cells(&j.doc.transact(), &j.cells);
        let room_by_id: HashMap<&str, &RoomCell> =
            room.iter().map(|c| (c.id.as_str(), c)).collect();
        // Cells both sides changed: the person's text goes on record first.
        let conflicts: Vec<(Arc<Cell>, RoomCell)> = view
            .cells
            .iter()
            .filter_map(|c| {
                let b = j.base.cells.get(&c.id)?;
                let r = room_by_id.get(c.id.as_str())?;
                let agent = b != c;
                let person = r.json != ydoc::normal_of(b);
                (agent && person && r.json != ydoc::normal_of(c)).then(|| (c.clone(), (*r).clone()))
            })
            .collect();
        for (agent_cell, person_cell) in &conflicts {
            self.record_conflict(j, &view, agent_cell, person_cell)
                .await?;
        }
        let view = if conflicts.is_empty() {
            view
        } else {
            match self.view() {
                Some(v) => v,
                None => return Ok(()),
            }
        };
        let mut txn = j.doc.transact_mut_with(ydoc::ORIGIN);
        if view.header != j.base.header {
            ydoc::set_header(&mut txn, &j.meta, &view.header);
        }
        let in_log: HashMap<&str, &Arc<Cell>> =
            view.cells.iter().map(|c| (c.id.as_str(), c)).collect();
        // Deleted by an agent.
        for id in j.base.order.clone() {
            if in_log.contains_key(id.as_str()) {
                continue;
            }
            let ids = room_ids(&txn, &j.cells);
            if let Some(i) = ids.iter().position(|x| *x == id) {
                j.cells.remove(&mut txn, i as u32);
            }
            j.base.cells.remove(&id);
            j.edits.remove(&id);
        }
        // Inserted or changed by an agent.
        for (i, c) in view.cells.iter().enumerate() {
            let ids = room_ids(&txn, &j.cells);
            match j.base.cells.get(&c.id) {
                Some(b) if b == c => continue,
                _ => {}
            }
            match ids.iter().position(|x| *x == c.id) {
                Some(at) => {
                    let now = ydoc::read_cells(&txn, &j.cells);
                    if let Some(rc) = now.get(at) {
                        ydoc::update_cell(&mut txn, &j.cells, at as u32, rc, c);
                    }
                }
                None => {
                    let after = i
                        .checked_sub(1)
                        .and_then(|p| ids.iter().position(|x| *x == view.cells[p].id));
                    let at = after.map_or(0, |p| p + 1) as u32;
                    j.cells.insert(&mut txn, at, ydoc::cell_prelim(c));
                }
            }
            j.base.cells.insert(c.id.clone(), c.clone());
        }
        // Moved by an agent: put the room in the log's order, unless the
        // room holds cells the log has not seen yet.
        let log_order: Vec<String> = view.cells.iter().map(|c| c.id.clone()).collect();
        let ids = room_ids(&txn, &j.cells);
        if log_order != j.base.order && ids.len() == log_order.len() && ids != log_order {
            for (i, id) in log_order.iter().enumerate() {
                let ids = room_ids(&txn, &j.cells);
                if ids[i] == *id {
                    continue;
                }
                if let Some(from) = ids.iter().position(|x| x == id) {
                    j.cells.remove(&mut txn, from as u32);
                    j.cells
                        .insert(&mut txn, i as u32, ydoc::cell_prelim(&view.cells[i]));
                }
            }
        }
        j.base.order = log_order;
        j.base.header = view.header.clone();
        let update = txn.encode_update_v1();
        drop(txn);
        j.log_version = view.version;
        j.seen = ydoc::read_cells(&j.doc.transact(), &j.cells);
        if update.len() > 2 {
            wire::send_update(&mut j.ws, update).await?;
        }
        Ok(())
    }

    /// An agent forced a write on a cell the person had unrecorded edits
    /// in: the person's text is recorded, then the agent's write is kept.
    async fn record_conflict(
        &self,
        j: &mut Joined,
        view: &LogView,
        agent: &Arc<Cell>,
        person: &RoomCell,
    ) -> anyhow::Result<()> {
        let who = j
            .edits
            .get(&agent.id)
            .map_or_else(|| self.person(j, &[]), |e| e.who.clone());
        let theirs = Arc::new(ydoc::cell_from_room(Some(agent), person));
        let mut cells = view.cells.clone();
        if let Some(c) = cells.iter_mut().find(|c| c.id == agent.id) {
            *c = theirs;
        }
        self.write_cells(
            &who,
            OP_JUPYTER_EDIT,
            view,
            view.header.clone(),
            cells.clone(),
        )
        .await?;
        let after = self
            .view()
            .ok_or_else(|| anyhow::anyhow!("notebook vanished"))?;
        let mut kept = after.cells.clone();
        if let Some(c) = kept.iter_mut().find(|c| c.id == agent.id) {
            *c = agent.clone();
        }
        self.write_cells(
            CLIENT_SERVER,
            OP_KEEP_WRITE,
            &after,
            after.header.clone(),
            kept,
        )
        .await?;
        j.edits.remove(&agent.id);
        Ok(())
    }

    /// Writes the notebook as `header` + `cells` by `client`, if the log is
    /// still at `view.version` (else nothing: the next look redoes it).
    async fn write_cells(
        &self,
        client: &str,
        operation: &'static str,
        view: &LogView,
        header: Header,
        cells: Vec<Arc<Cell>>,
    ) -> anyhow::Result<bool> {
        let actor = Actor {
            client_name: client.to_owned(),
            request_id: None,
            named: true,
        };
        let version = view.version;
        let who = client.to_owned();
        let engine = self.engine.clone();
        let path = self.path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            engine.write(
                &path,
                &actor,
                Presence::Existing,
                operation,
                move |nb, _, now| {
                    let nb = nb.ok_or_else(|| ToolError::internal("notebook missing"))?;
                    if nb.current_version != version {
                        return Err(ToolError::new(
                            crate::error::Code::VersionConflict,
                            "the log moved on",
                        ));
                    }
                    let changes = notebook::transform(nb, &header, &cells, Some((&who, now)));
                    let cell_ids = crate::engine::changed_cells(&changes);
                    let overrode_locks = cell_ids
                        .iter()
                        .filter_map(|c| {
                            nb.lock_at(c, now)
                                .filter(|l| l.owner != who)
                                .map(|l| (c.clone(), l.owner.clone()))
                        })
                        .collect();
                    Ok(Plan {
                        operation,
                        summary: format!("{operation} of {} by {who}", nb.path),
                        cell_ids,
                        overrode_locks,
                        changes,
                        result: Box::new(|_, _| Map::new()),
                    })
                },
            )
        })
        .await?;
        match answer {
            Ok(_) => Ok(true),
            Err(e) if e.code == crate::error::Code::VersionConflict => Ok(false),
            Err(e) => anyhow::bail!("{}", e.message),
        }
    }

    /// The room → the log: the person's edits to cells now quiet (all of
    /// them when `all`: a save, or leaving).
    async fn take_room(&self, j: &mut Joined, all: bool) -> anyhow::Result<()> {
        let room = ydoc::read_cells(&j.doc.transact(), &j.cells);
        let room_meta = ydoc::read_metadata(&j.doc.transact(), &j.meta);
        let now = Instant::now();
        let ready = |id: &str| match j.edits.get(id) {
            None => true,
            Some(e) => {
                all || now.duration_since(e.last) >= PAUSE
                    || now.duration_since(e.first) >= MAX_HOLD
            }
        };
        // One writer per event: the first ready editor's cells this round.
        let who = room
            .iter()
            .filter(|c| ready(&c.id))
            .find_map(|c| {
                let changed = j
                    .base
                    .cells
                    .get(&c.id)
                    .is_none_or(|b| ydoc::normal_of(b) != c.json);
                changed.then(|| j.edits.get(&c.id).map(|e| e.who.clone()))
            })
            .flatten()
            .unwrap_or_else(|| self.person(j, &[]));
        let mine = |id: &str| ready(id) && j.edits.get(id).is_none_or(|e| e.who == who);
        let mut edit = PersonEdit::default();
        for rc in &room {
            let base = j.base.cells.get(&rc.id);
            let changed = base.is_none_or(|b| ydoc::normal_of(b) != rc.json);
            if changed && !mine(&rc.id) {
                if base.is_some() {
                    edit.order.push(rc.id.clone());
                }
                continue;
            }
            edit.order.push(rc.id.clone());
            if changed {
                edit.base.insert(rc.id.clone(), base.cloned());
                edit.taken.insert(
                    rc.id.clone(),
                    Arc::new(ydoc::cell_from_room(base.map(|b| &**b), rc)),
                );
            }
        }
        for (id, b) in &j.base.cells {
            if !room.iter().any(|r| r.id == *id) {
                edit.base.insert(id.clone(), Some(b.clone()));
            }
        }
        if let Some(m) = &room_meta
            && !ydoc::same_metadata(&j.base.header, Some(m))
        {
            edit.header = Some((j.base.header.clone(), ydoc::header_with(&j.base.header, m)));
        }
        if edit.taken.is_empty()
            && edit.header.is_none()
            && edit.base.is_empty()
            && edit.order == j.base.order
        {
            return Ok(());
        }
        let Some((header, cells)) = self.write_person(&who, edit.clone()).await? else {
            return Ok(());
        };
        // `base` follows the person's cells only: whatever agents wrote
        // meanwhile still goes into the room through `push_log`.
        for id in edit.base.keys() {
            match cells.iter().find(|c| c.id == *id) {
                Some(c) => j.base.cells.insert(id.clone(), c.clone()),
                None => j.base.cells.remove(id),
            };
            j.edits.remove(id);
        }
        j.base.order = cells
            .iter()
            .filter(|c| j.base.cells.contains_key(&c.id))
            .map(|c| c.id.clone())
            .collect();
        if edit.header.is_some() {
            j.base.header = header;
        }
        Ok(())
    }

    /// Writes a person's edit on top of the log as it is now: their cells
    /// (taken, inserted, deleted), their order, their header change, and
    /// every other cell as the log has it, including agents' writes since
    /// `base`. Refused (`None`, retried next tick) when an agent changed
    /// one of the same cells meanwhile: that is `push_log`'s conflict.
    async fn write_person(
        &self,
        who: &str,
        edit: PersonEdit,
    ) -> anyhow::Result<Option<(Header, Vec<Arc<Cell>>)>> {
        let actor = Actor {
            client_name: who.to_owned(),
            request_id: None,
            named: true,
        };
        let who = who.to_owned();
        let engine = self.engine.clone();
        let path = self.path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let out = std::sync::Arc::new(parking_lot::Mutex::new(None));
            let put = out.clone();
            let r = engine.write(
                &path,
                &actor,
                Presence::Existing,
                OP_JUPYTER_EDIT,
                move |nb, _, now| {
                    let nb = nb.ok_or_else(|| ToolError::internal("notebook missing"))?;
                    let stale = || {
                        ToolError::new(
                            crate::error::Code::VersionConflict,
                            "an agent changed the same cells",
                        )
                    };
                    let current: HashMap<&str, &Arc<Cell>> = nb
                        .cells
                        .iter()
                        .map(|c| (c.cell.id.as_str(), &c.cell))
                        .collect();
                    for (id, b) in &edit.base {
                        if current.get(id.as_str()).copied() != b.as_ref() {
                            return Err(stale());
                        }
                    }
                    let header = match &edit.header {
                        Some((b, _)) if *b != nb.header => return Err(stale()),
                        Some((_, h)) => h.clone(),
                        None => nb.header.clone(),
                    };
                    // The person's order, with cells agents added since placed
                    // after their predecessor in the log.
                    let mut ids: Vec<String> = edit
                        .order
                        .iter()
                        .filter(|id| {
                            current.contains_key(id.as_str()) || edit.taken.contains_key(*id)
                        })
                        .cloned()
                        .collect();
                    for (k, c) in nb.cells.iter().enumerate() {
                        let id = &c.cell.id;
                        if ids.contains(id) || edit.base.contains_key(id) {
                            continue;
                        }
                        let at = k
                            .checked_sub(1)
                            .and_then(|p| ids.iter().position(|x| *x == nb.cells[p].cell.id))
                            .map_or(0, |p| p + 1);
                        ids.insert(at, id.clone());
                    }
                    let cells: Vec<Arc<Cell>> = ids
                        .iter()
                        .filter_map(|id| {
                            edit.taken
                                .get(id)
                                .or_else(|| current.get(id.as_str()).copied())
                                .cloned()
                        })
                        .collect();
                    let changes = notebook::transform(nb, &header, &cells, Some((&who, now)));
                    let cell_ids = crate::engine::changed_cells(&changes);
                    let overrode_locks = cell_ids
                        .iter()
                        .filter_map(|c| {
                            nb.lock_at(c, now)
                                .filter(|l| l.owner != who)
                                .map(|l| (c.clone(), l.owner.clone()))
                        })
                        .collect();
                    *put.lock() = Some((header, cells));
                    Ok(Plan {
                        operation: OP_JUPYTER_EDIT,
                        summary: format!("{OP_JUPYTER_EDIT} of {} by {who}", nb.path),
                        cell_ids,
                        overrode_locks,
                        changes,
                        result: Box::new(|_, _| Map::new()),
                    })
                },
            );
            let written = out.lock().take();
            r.map(|_| written)
        })
        .await?;
        match answer {
            Ok(written) => Ok(written),
            Err(e) if e.code == crate::error::Code::VersionConflict => Ok(None),
            Err(e) => anyhow::bail!("{}", e.message),
        }
    }
}

/// A person's edit as `take_room` found it.
#[derive(Clone, Default)]
struct PersonEdit {
    /// The room's order of the cells the log should hold.
    order: Vec<String>,
    /// The person's new content of each cell they changed or inserted.
    taken: HashMap<String, Arc<Cell>>,
    /// What the log held for each cell the person changed, inserted
    /// (`None`) or deleted: the write applies only while that is so.
    base: HashMap<String, Option<Arc<Cell>>>,
    /// (log header it was based on, new header) when the person changed it.
    header: Option<(Header, Header)>,
}

fn room_ids<T: ReadTxn>(txn: &T, cells: &ArrayRef) -> Vec<String> {
    ydoc::read_cells(txn, cells)
        .into_iter()
        .map(|c| c.id)
        .collect()
}
