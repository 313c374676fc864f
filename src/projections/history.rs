//! What one event did to one cell: the single interpretation behind the
//! `get_cell_history` tool and the audit's `history` (and anything else
//! that lists a cell's life). Pure: events in, entries out.

use crate::events::{Cell, Change, Event};

/// A lock an event took or released on the cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockNote {
    Taken { owner: String, expires_at: i64 },
    Released { owner: String, forced: bool },
}

/// A run of the cell an event accepted, updated or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNote {
    pub run_id: String,
    /// `started` for the acceptance, `running` for outputs on the way,
    /// else the run's final status (`ok`, `error`, ...).
    pub status: String,
    pub duration_ms: Option<u64>,
    pub execution_count: Option<u64>,
}

/// What an event did to the cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The cell appeared (create, insert, import, outside change).
    Created,
    /// A deleted cell came back under its id.
    Recovered,
    /// Its type, source, metadata, outputs or attachments changed.
    Modified,
    /// Only its position changed.
    Moved,
    Deleted,
    /// A write refused with `locked` named it.
    Rejected,
    /// Named by an event that changed nothing about it (a lock, say).
    Noted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Recovered => "recovered",
            Action::Modified => "modified",
            Action::Moved => "moved",
            Action::Deleted => "deleted",
            Action::Rejected => "rejected",
            Action::Noted => "noted",
        }
    }
}

/// One event in the life of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: u64,
    pub timestamp_ms: i64,
    pub client_name: String,
    pub operation: String,
    pub path: String,
    pub cell_id: String,
    pub action: Action,
    /// For `Modified`: which of `cell_type`, `source`, `metadata`,
    /// `outputs`, `execution_count`, `attachments`, `other` changed.
    pub changed: Vec<&'static str>,
    pub rejected: bool,
    pub overrode_lock: Option<String>,
    pub source_before: Option<String>,
    pub source_after: Option<String>,
    pub cell_type_before: Option<String>,
    pub cell_type_after: Option<String>,
    pub index_before: Option<u32>,
    pub index_after: Option<u32>,
    /// `(path, cell_id)` at the other end of a move or copy.
    pub moved_from: Option<(String, String)>,
    pub moved_to: Option<(String, String)>,
    pub copied_from: Option<(String, String)>,
    /// A lock taken or released by the event.
    pub lock: Option<LockNote>,
    /// A run of the cell the event accepted, updated or ended.
    pub run: Option<RunNote>,
}

/// The fields of a whole-cell replacement that differ.
pub fn changed_fields(a: &Cell, b: &Cell) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.cell_type != b.cell_type {
        out.push("cell_type");
    }
    if a.source != b.source {
        out.push("source");
    }
    if a.metadata != b.metadata {
        out.push("metadata");
    }
    if a.outputs != b.outputs {
        out.push("outputs");
    }
    if a.execution_count != b.execution_count {
        out.push("execution_count");
    }
    if a.attachments != b.attachments {
        out.push("attachments");
    }
    if a.extra != b.extra {
        out.push("other");
    }
    out
}

/// What `event` did to cell `id` of notebook `path`. `was_deleted` says
/// whether the cell was deleted before this event (an insert of it is then
/// a recovery).
pub fn entry(event: &Event, path: &str, id: &str, was_deleted: bool) -> Entry {
    let mut e = Entry {
        version: event.version,
        timestamp_ms: event.timestamp_ms,
        client_name: event.client_name.clone(),
        operation: event.operation.clone(),
        path: path.to_owned(),
        cell_id: id.to_owned(),
        action: Action::Noted,
        changed: Vec::new(),
        rejected: event.is_rejected(),
        overrode_lock: event
            .overrode_locks
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, owner)| owner.clone()),
        source_before: None,
        source_after: None,
        cell_type_before: None,
        cell_type_after: None,
        index_before: None,
        index_after: None,
        moved_from: None,
        moved_to: None,
        copied_from: None,
        lock: None,
        run: None,
    };
    let (mut inserted, mut deleted, mut moved) = (false, false, false);
    let note = |e: &mut Entry, field: &'static str| {
        if !e.changed.contains(&field) {
            e.changed.push(field);
        }
    };
    for change in event
        .changes
        .iter()
        .filter(|c| c.path() == path && c.cell_id() == Some(id))
    {
        match change {
            Change::CellInserted { index, cell, .. } => {
                inserted = true;
                e.index_after = Some(*index);
                e.source_after = Some(cell.source.clone());
                e.cell_type_after = Some(cell.cell_type.as_str().to_owned());
            }
            Change::SourceSet { before, after, .. } => {
                note(&mut e, "source");
                e.source_before.get_or_insert_with(|| before.clone());
                e.source_after = Some(after.clone());
            }
            Change::CellReplaced { before, after, .. } => {
                for f in changed_fields(before, after) {
                    note(&mut e, f);
                }
                if before.source != after.source {
                    e.source_before.get_or_insert_with(|| before.source.clone());
                    e.source_after = Some(after.source.clone());
                }
                if before.cell_type != after.cell_type {
                    e.cell_type_before
                        .get_or_insert_with(|| before.cell_type.as_str().to_owned());
                    e.cell_type_after = Some(after.cell_type.as_str().to_owned());
                }
            }
            Change::CellDeleted { index, cell, .. } => {
                deleted = true;
                e.index_before = Some(*index);
                e.source_before = Some(cell.source.clone());
                e.cell_type_before = Some(cell.cell_type.as_str().to_owned());
            }
            Change::CellMoved { from, to, .. } => {
                moved = true;
                e.index_before.get_or_insert(*from);
                e.index_after = Some(*to);
            }
            Change::CellCopied {
                index,
                cell,
                from_path,
                from_id,
                ..
            } => {
                inserted = true;
                e.index_after = Some(*index);
                e.source_after = Some(cell.source.clone());
                e.cell_type_after = Some(cell.cell_type.as_str().to_owned());
                e.copied_from = Some((from_path.clone(), from_id.clone()));
            }
            Change::CellMovedIn {
                index,
                cell,
                from_path,
                from_id,
                ..
            } => {
                moved = true;
                e.index_after = Some(*index);
                e.source_after = Some(cell.source.clone());
                e.moved_from = Some((from_path.clone(), from_id.clone()));
            }
            Change::CellMovedOut {
                index,
                to_path,
                to_id,
                ..
            } => {
                moved = true;
                e.index_before = Some(*index);
                e.moved_to = Some((to_path.clone(), to_id.clone()));
            }
            Change::LockAcquired {
                owner, expires_at, ..
            } => {
                e.lock = Some(LockNote::Taken {
                    owner: owner.clone(),
                    expires_at: *expires_at,
                });
            }
            Change::LockReleased { owner, forced, .. } => {
                e.lock = Some(LockNote::Released {
                    owner: owner.clone(),
                    forced: *forced,
                });
            }
            // A run's outputs land on the cell (its source does not change).
            Change::RunOutputs {
                run_id,
                execution_count,
                ..
            } => {
                note(&mut e, "outputs");
                e.run = Some(RunNote {
                    run_id: run_id.clone(),
                    status: "running".into(),
                    duration_ms: None,
                    execution_count: *execution_count,
                });
            }
            Change::RunFinished {
                run_id,
                status,
                duration_ms,
                execution_count,
                ..
            } => {
                note(&mut e, "outputs");
                e.run = Some(RunNote {
                    run_id: run_id.clone(),
                    status: status.clone(),
                    duration_ms: *duration_ms,
                    execution_count: *execution_count,
                });
            }
            Change::RunStarted { run_id, .. } => {
                e.run = Some(RunNote {
                    run_id: run_id.clone(),
                    status: "started".into(),
                    duration_ms: None,
                    execution_count: None,
                });
            }
            Change::NotebookCreated { .. }
            | Change::HeaderSet { .. }
            | Change::SnapshotTaken { .. }
            | Change::Rejected { .. }
            | Change::KernelAction { .. }
            | Change::SnapshotDeleted { .. }
            | Change::NotebookRenamed { .. } => {}
        }
    }
    e.action = if inserted && was_deleted {
        Action::Recovered
    } else if inserted {
        Action::Created
    } else if deleted {
        Action::Deleted
    } else if !e.changed.is_empty() {
        Action::Modified
    } else if moved {
        Action::Moved
    } else if e.rejected {
        Action::Rejected
    } else {
        Action::Noted
    };
    e
}
