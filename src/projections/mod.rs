//! Projections: state as a pure fold over events. No I/O, no clocks.
//!
//! [`Workspace::apply`] is the only way state changes, live or in replay,
//! so replaying the log from version 1 gives exactly the live state (a
//! property test checks it). Cells are shared `Arc`s: cloning a notebook to
//! try a change costs one pointer per cell, not its content.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::events::{Cell, Change, Event, FileWrite, Header};

pub mod checkpoint;
pub mod history;

/// How long a request_id is remembered (§8.1).
pub const REQUEST_TTL_MS: i64 = 24 * 3600 * 1000;

/// A live cell and the newest event that changed its content (§8.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCell {
    pub cell: Arc<Cell>,
    pub last_version: u64,
}

/// A cell lock (§8.5). It holds for an event at time `t` iff
/// `acquired_at <= t < expires_at`; expiry is not an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub owner: String,
    pub acquired_at: i64,
    pub expires_at: i64,
    /// The event that took or last renewed it.
    pub version: u64,
}

impl Lock {
    pub fn holds_at(&self, t: i64) -> bool {
        self.acquired_at <= t && t < self.expires_at
    }
}

/// A named snapshot: the notebook's content when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub hash: crate::events::Hash,
    pub version: u64,
    pub created_at: i64,
    pub client_name: String,
    pub description: Option<String>,
    pub header: Header,
    pub cells: Vec<Arc<Cell>>,
}

/// What is known of a cell that is no longer in its notebook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedCell {
    pub cell: Arc<Cell>,
    pub version: u64,
    pub index: u32,
    pub after_cell_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotebookState {
    pub path: String,
    pub header: Header,
    pub cells: Vec<LiveCell>,
    /// Ids no longer live, with their last removal.
    pub deleted: HashMap<String, DeletedCell>,
    /// The newest event that touched this notebook.
    pub current_version: u64,
    /// The newest event that changed its content (what the file must hold).
    pub content_version: u64,
    /// The last file content the log put on (or observed on) disk.
    pub file: Option<FileWrite>,
    /// Locks by cell id (possibly expired: compare with a time).
    pub locks: BTreeMap<String, Lock>,
    /// Refusals already on record: (client, cell, lock's acquired_at) →
    /// version, so a retry loop against one lock leaves one record.
    pub rejected: HashMap<(String, String, i64), u64>,
    /// Named snapshots.
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Cells moved to another notebook: id → (path, id there).
    pub moved_out: BTreeMap<String, (String, String)>,
}

impl NotebookState {
    fn new(path: &str, header: Header) -> NotebookState {
        NotebookState {
            path: path.to_owned(),
            header,
            cells: Vec::new(),
            deleted: HashMap::new(),
            current_version: 0,
            content_version: 0,
            file: None,
            locks: BTreeMap::new(),
            rejected: HashMap::new(),
            snapshots: BTreeMap::new(),
            moved_out: BTreeMap::new(),
        }
    }

    /// The lock on `cell_id` that holds at time `t`, if any.
    pub fn lock_at(&self, cell_id: &str, t: i64) -> Option<&Lock> {
        self.locks.get(cell_id).filter(|l| l.holds_at(t))
    }

    /// Index of the live cell with exactly this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.cells.iter().position(|c| c.cell.id == id)
    }

    /// Whether `id` is taken by a live or deleted cell (new ids must not be).
    pub fn id_taken(&self, id: &str) -> bool {
        self.position(id).is_some()
            || self.deleted.contains_key(id)
            || self.moved_out.contains_key(id)
    }

    fn apply_change(&mut self, change: &Change, version: u64) {
        match change {
            Change::NotebookCreated { header, .. } => self.header = header.clone(),
            Change::HeaderSet { after, .. } => self.header = after.clone(),
            Change::CellInserted { index, cell, .. }
            | Change::CellCopied { index, cell, .. }
            | Change::CellMovedIn { index, cell, .. } => {
                let at = (*index as usize).min(self.cells.len());
                self.deleted.remove(&cell.id);
                self.moved_out.remove(&cell.id);
                self.cells.insert(
                    at,
                    LiveCell {
                        cell: cell.clone(),
                        last_version: version,
                    },
                );
            }
            Change::SourceSet { cell_id, after, .. } => {
                if let Some(i) = self.position(cell_id) {
                    let live = &mut self.cells[i];
                    let mut cell = (*live.cell).clone();
                    cell.source = after.clone();
                    live.cell = Arc::new(cell);
                    live.last_version = version;
                }
            }
            Change::CellReplaced { after, .. } => {
                if let Some(i) = self.position(&after.id) {
                    self.cells[i] = LiveCell {
                        cell: after.clone(),
                        last_version: version,
                    };
                }
            }
            Change::CellDeleted {
                index,
                after_cell_id,
                cell,
                ..
            } => {
                if let Some(i) = self.position(&cell.id) {
                    self.cells.remove(i);
                }
                self.deleted.insert(
                    cell.id.clone(),
                    DeletedCell {
                        cell: cell.clone(),
                        version,
                        index: *index,
                        after_cell_id: after_cell_id.clone(),
                    },
                );
            }
            Change::CellMoved { cell_id, to, .. } => {
                if let Some(i) = self.position(cell_id) {
                    let live = self.cells.remove(i);
                    let at = (*to as usize).min(self.cells.len());
                    self.cells.insert(at, live);
                }
            }
            Change::LockAcquired {
                cell_id,
                owner,
                acquired_at,
                expires_at,
                ..
            } => {
                self.locks.insert(
                    cell_id.clone(),
                    Lock {
                        owner: owner.clone(),
                        acquired_at: *acquired_at,
                        expires_at: *expires_at,
                        version,
                    },
                );
            }
            Change::LockReleased { cell_id, .. } => {
                self.locks.remove(cell_id);
            }
            Change::CellMovedOut {
                cell_id,
                to_path,
                to_id,
                ..
            } => {
                if let Some(i) = self.position(cell_id) {
                    self.cells.remove(i);
                }
                self.moved_out
                    .insert(cell_id.clone(), (to_path.clone(), to_id.clone()));
            }
            // Need the event's client and time; folded in `apply_to_notebooks`.
            Change::Rejected { .. } | Change::SnapshotTaken { .. } => {}
        }
    }
}

/// Every notebook the log knows, as of `head`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub notebooks: BTreeMap<String, NotebookState>,
    pub head: u64,
    pub head_timestamp_ms: i64,
    /// (client_name, request_id) → version, for requests of the last 24 h
    /// of log time, so a retried write returns its first answer.
    pub requests: HashMap<(String, String), u64>,
    /// The same keys in log order, to forget them deterministically.
    request_order: VecDeque<(i64, (String, String))>,
}

impl Workspace {
    /// Folds one event. Events must come in version order.
    pub fn apply(&mut self, event: &Event) {
        self.apply_to_notebooks(event);
        self.apply_global(event);
    }

    /// The part of [`Workspace::apply`] that changes notebooks. A writer
    /// folds an event into a trial copy of the notebooks it touches with
    /// this, then installs them and calls [`Workspace::apply_global`].
    pub fn apply_to_notebooks(&mut self, event: &Event) {
        for change in &event.changes {
            let path = change.path();
            if let Change::NotebookCreated { header, .. } = change {
                self.notebooks
                    .entry(path.to_owned())
                    .or_insert_with(|| NotebookState::new(path, header.clone()));
            }
            if let Some(nb) = self.notebooks.get_mut(path) {
                nb.apply_change(change, event.version);
                match change {
                    Change::Rejected {
                        cell_id,
                        acquired_at,
                        ..
                    } => {
                        let key = (event.client_name.clone(), cell_id.clone(), *acquired_at);
                        nb.rejected.entry(key).or_insert(event.version);
                    }
                    Change::SnapshotTaken {
                        name,
                        hash,
                        description,
                        header,
                        cells,
                        ..
                    } => {
                        nb.snapshots.insert(
                            name.clone(),
                            Snapshot {
                                hash: *hash,
                                version: event.version,
                                created_at: event.timestamp_ms,
                                client_name: event.client_name.clone(),
                                description: description.clone(),
                                header: header.clone(),
                                cells: cells.clone(),
                            },
                        );
                    }
                    Change::LockAcquired { .. } | Change::LockReleased { .. } => {}
                    _ => nb.content_version = event.version,
                }
            }
        }
        // A refused attempt is on record but is not a change of the notebook.
        if !event.is_rejected() {
            for path in &event.paths {
                if let Some(nb) = self.notebooks.get_mut(path) {
                    nb.current_version = event.version;
                }
            }
        }
        for file in &event.files {
            if let Some(nb) = self.notebooks.get_mut(&file.path) {
                nb.file = Some(file.clone());
            }
        }
    }

    /// The part of [`Workspace::apply`] that is not about one notebook.
    pub fn apply_global(&mut self, event: &Event) {
        if let Some(rid) = &event.request_id {
            let key = (event.client_name.clone(), rid.clone());
            self.requests.insert(key.clone(), event.version);
            self.request_order.push_back((event.timestamp_ms, key));
        }
        while let Some((ts, _)) = self.request_order.front() {
            if *ts >= event.timestamp_ms - REQUEST_TTL_MS {
                break;
            }
            if let Some((_, key)) = self.request_order.pop_front() {
                self.requests.remove(&key);
            }
        }
        self.head = event.version;
        self.head_timestamp_ms = event.timestamp_ms;
    }

    /// The state of one notebook, if the log has it.
    pub fn notebook(&self, path: &str) -> Option<&NotebookState> {
        self.notebooks.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CellType;

    fn header() -> Header {
        Header {
            nbformat: 4,
            nbformat_minor: 5,
            metadata: "{}".into(),
            extra: "{}".into(),
        }
    }

    fn cell(id: &str, src: &str) -> Arc<Cell> {
        Arc::new(Cell::new(id.into(), CellType::Code, src.into(), None))
    }

    fn ev(version: u64, changes: Vec<Change>) -> Event {
        Event {
            version,
            timestamp_ms: version as i64,
            client_name: "t".into(),
            operation: "x".into(),
            paths: vec!["n.ipynb".into()],
            cell_ids: vec![],
            overrode_locks: vec![],
            request_id: None,
            result: String::new(),
            summary: String::new(),
            changes,
            files: vec![],
        }
    }

    fn ids(ws: &Workspace) -> Vec<String> {
        ws.notebook("n.ipynb")
            .unwrap()
            .cells
            .iter()
            .map(|c| c.cell.id.clone())
            .collect()
    }

    #[test]
    fn fold_inserts_sets_moves_and_deletes() {
        let p = "n.ipynb".to_string();
        let mut ws = Workspace::default();
        ws.apply(&ev(
            1,
            vec![
                Change::NotebookCreated {
                    path: p.clone(),
                    header: header(),
                },
                Change::CellInserted {
                    path: p.clone(),
                    index: 0,
                    cell: cell("a", "1"),
                },
                Change::CellInserted {
                    path: p.clone(),
                    index: 1,
                    cell: cell("b", "2"),
                },
            ],
        ));
        ws.apply(&ev(
            2,
            vec![Change::SourceSet {
                path: p.clone(),
                cell_id: "a".into(),
                before: "1".into(),
                after: "one".into(),
            }],
        ));
        ws.apply(&ev(
            3,
            vec![Change::CellMoved {
                path: p.clone(),
                cell_id: "b".into(),
                from: 1,
                to: 0,
            }],
        ));
        assert_eq!(ids(&ws), vec!["b", "a"]);
        let nb = ws.notebook(&p).unwrap();
        assert_eq!(nb.cells[1].cell.source, "one");
        assert_eq!(nb.cells[1].last_version, 2);
        // A move is not a content change.
        assert_eq!(nb.cells[0].last_version, 1);
        assert_eq!(nb.current_version, 3);

        ws.apply(&ev(
            4,
            vec![Change::CellDeleted {
                path: p.clone(),
                index: 0,
                after_cell_id: None,
                cell: cell("b", "2"),
            }],
        ));
        assert_eq!(ids(&ws), vec!["a"]);
        let nb = ws.notebook(&p).unwrap();
        assert!(nb.id_taken("b"));
        assert_eq!(nb.deleted["b"].version, 4);
    }
}
