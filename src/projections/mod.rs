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

/// A run as the log knows it (§9.1): accepted by an `execute_cell`
/// event, followed by its outputs and its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub path: String,
    pub cell_id: Option<String>,
    pub client_name: String,
    /// `queued` until outputs or its end are on record (the live status
    /// `running` is the run service's to tell), then the final status.
    pub status: String,
    pub source: String,
    pub source_version: u64,
    pub kernel_name: String,
    pub execution_count: Option<u64>,
    /// nbformat outputs, JSON array text.
    pub outputs: String,
    pub truncated: bool,
    /// The event that accepted the run.
    pub version: u64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
}

impl RunRecord {
    pub fn is_final(&self) -> bool {
        !matches!(self.status.as_str(), "queued" | "running")
    }
}

/// The newest run accepted for a cell, and the event whose outputs of it
/// the cell holds (§8.4: outputs from runs set this, not `last_version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellRun {
    pub run_id: String,
    pub source_version: u64,
    pub outputs_version: Option<u64>,
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
    /// By cell id: its newest accepted run.
    pub cell_runs: BTreeMap<String, CellRun>,
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
            cell_runs: BTreeMap::new(),
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

    /// A run's outputs land on its cell if the cell is live, still code,
    /// and this is its newest accepted run; `last_version` stays (§8.4).
    fn land_outputs(
        &mut self,
        cell_id: &str,
        run_id: &str,
        outputs: &str,
        execution_count: Option<u64>,
        version: u64,
    ) {
        let Some(run) = self.cell_runs.get_mut(cell_id) else {
            return;
        };
        if run.run_id != run_id {
            return;
        }
        let Some(i) = self.cells.iter().position(|c| c.cell.id == cell_id) else {
            return;
        };
        let live = &mut self.cells[i];
        if live.cell.cell_type != crate::events::CellType::Code {
            return;
        }
        let mut cell = (*live.cell).clone();
        cell.outputs = Some(outputs.to_owned());
        cell.execution_count =
            Some(execution_count.map_or_else(|| "null".into(), |n| n.to_string()));
        live.cell = Arc::new(cell);
        run.outputs_version = Some(version);
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
            Change::CellReplaced { before, after, .. } => {
                // Outputs from elsewhere (cleared, edited outside) are no
                // longer the run's.
                if before.outputs != after.outputs {
                    self.cell_runs.remove(&after.id);
                }
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
            Change::SnapshotDeleted { name, .. } => {
                self.snapshots.remove(name);
            }
            // Moved between keys by `Workspace::apply_to_notebooks`.
            Change::NotebookRenamed { .. } => {}
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
            Change::RunStarted {
                run_id,
                cell_id: Some(cell_id),
                source_version,
                ..
            } => {
                self.cell_runs.insert(
                    cell_id.clone(),
                    CellRun {
                        run_id: run_id.clone(),
                        source_version: *source_version,
                        outputs_version: None,
                    },
                );
            }
            Change::RunOutputs {
                run_id,
                cell_id: Some(cell_id),
                outputs,
                execution_count,
                ..
            } => self.land_outputs(cell_id, run_id, outputs, *execution_count, version),
            // A run that never started leaves the cell's outputs alone.
            Change::RunFinished {
                run_id,
                cell_id: Some(cell_id),
                outputs,
                execution_count,
                started_at: Some(_),
                ..
            } => self.land_outputs(cell_id, run_id, outputs, *execution_count, version),
            // Need the event's client and time; folded in `apply_to_notebooks`.
            Change::Rejected { .. }
            | Change::SnapshotTaken { .. }
            | Change::RunStarted { .. }
            | Change::RunOutputs { .. }
            | Change::RunFinished { .. }
            | Change::KernelAction { .. } => {}
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
    /// Every run on record, by run id.
    pub runs: BTreeMap<String, RunRecord>,
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
            if let Change::NotebookRenamed { to, .. } = change {
                if let Some(mut nb) = self.notebooks.remove(path) {
                    nb.path = to.clone();
                    self.notebooks.insert(to.clone(), nb);
                }
                continue;
            }
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
                    Change::LockAcquired { .. }
                    | Change::LockReleased { .. }
                    | Change::RunStarted { .. }
                    | Change::KernelAction { .. }
                    | Change::SnapshotDeleted { .. } => {}
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
        for change in &event.changes {
            self.apply_run(event, change);
        }
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

    fn apply_run(&mut self, event: &Event, change: &Change) {
        match change {
            // A notebook's runs answer to its new path (§10).
            Change::NotebookRenamed { path, to } => {
                for run in self.runs.values_mut().filter(|r| r.path == *path) {
                    run.path = to.clone();
                }
            }
            Change::RunStarted {
                path,
                run_id,
                cell_id,
                source,
                source_version,
                kernel_name,
            } => {
                self.runs.insert(
                    run_id.clone(),
                    RunRecord {
                        run_id: run_id.clone(),
                        path: path.clone(),
                        cell_id: cell_id.clone(),
                        client_name: event.client_name.clone(),
                        status: "queued".into(),
                        source: source.clone(),
                        source_version: *source_version,
                        kernel_name: kernel_name.clone(),
                        execution_count: None,
                        outputs: "[]".into(),
                        truncated: false,
                        version: event.version,
                        queued_at: event.timestamp_ms,
                        started_at: None,
                        finished_at: None,
                        duration_ms: None,
                        reason: None,
                    },
                );
            }
            Change::RunOutputs {
                run_id,
                outputs,
                execution_count,
                truncated,
                ..
            } => {
                if let Some(run) = self.runs.get_mut(run_id) {
                    run.outputs = outputs.clone();
                    run.execution_count = execution_count.or(run.execution_count);
                    run.truncated = *truncated;
                }
            }
            Change::RunFinished {
                run_id,
                status,
                execution_count,
                started_at,
                duration_ms,
                outputs,
                truncated,
                reason,
                ..
            } => {
                if let Some(run) = self.runs.get_mut(run_id) {
                    run.status = status.clone();
                    run.execution_count = execution_count.or(run.execution_count);
                    run.started_at = *started_at;
                    run.duration_ms = *duration_ms;
                    run.finished_at = Some(event.timestamp_ms);
                    if started_at.is_some() || run.outputs == "[]" {
                        run.outputs = outputs.clone();
                        run.truncated = *truncated;
                    }
                    run.reason = reason.clone();
                }
            }
            _ => {}
        }
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

    #[test]
    fn run_outputs_land_on_their_cell_without_changing_last_version() {
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
            ],
        ));
        let started = |run: &str| Change::RunStarted {
            path: p.clone(),
            run_id: run.into(),
            cell_id: Some("a".into()),
            source: "1".into(),
            source_version: 1,
            kernel_name: "python3".into(),
        };
        let finished = |run: &str, out: &str| Change::RunFinished {
            path: p.clone(),
            run_id: run.into(),
            cell_id: Some("a".into()),
            status: "ok".into(),
            execution_count: Some(1),
            started_at: Some(2),
            duration_ms: Some(1),
            outputs: out.into(),
            truncated: false,
            reason: None,
        };
        ws.apply(&ev(2, vec![started("r1")]));
        ws.apply(&ev(3, vec![started("r2")]));
        assert_eq!(ws.runs["r1"].status, "queued");
        // An older run's end is on record but does not cover the newer run's cell.
        ws.apply(&ev(4, vec![finished("r1", "[1]")]));
        let nb = ws.notebook(&p).unwrap();
        assert_eq!(nb.cells[0].cell.outputs.as_deref(), Some("[]"));
        assert_eq!(ws.runs["r1"].status, "ok");
        assert_eq!(ws.runs["r1"].finished_at, Some(4));
        ws.apply(&ev(5, vec![finished("r2", "[2]")]));
        let nb = ws.notebook(&p).unwrap();
        assert_eq!(nb.cells[0].cell.outputs.as_deref(), Some("[2]"));
        assert_eq!(nb.cells[0].cell.execution_count.as_deref(), Some("1"));
        assert_eq!(nb.cells[0].last_version, 1);
        assert_eq!(nb.cell_runs["a"].outputs_version, Some(5));
        assert_eq!(nb.cell_runs["a"].run_id, "r2");
    }
}
