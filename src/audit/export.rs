//! `nbledger export --format jsonl [--notebook P]`: every event as one JSON
//! object per line, oldest first, for jq and pandas.
//!
//! # Fields (stable)
//!
//! Each line has the fields of `log --json`
//! ([`super::log::summary_json`]): `version`, `timestamp` (RFC 3339 UTC,
//! ms), `client_name`, `operation`, `paths`, `cell_ids`, `summary`,
//! `overrode_lock` and `overrode_locks: [{cell_id, owner}]` when a lock was
//! forced, `rejected: true` for a refused write, `hash` and `prev_hash`
//! (lowercase hex blake3; `prev_hash` of version 1 is 64 zeros, and each
//! line's `prev_hash` is the previous line's `hash` in a whole-log
//! export); then `request_id` (string or null) and `body`.
//!
//! # `body`, schema 1
//!
//! `{"schema": 1, "changes": [Change], "files": [File], "result": object | null}`
//!
//! - `result`: the tool's `structuredContent` as returned (`{}` for
//!   `import` and `external_change`, which answer no call; `null` when
//!   the event stored none).
//! - `File`: `{path, before: hex | null, after: hex, written: bool}` — the
//!   blake3 of the notebook file before and after the event; `written:
//!   false` when the server observed the file rather than wrote it.
//! - `Change` is one of (by `kind`):
//!   - `notebook_created`: `{kind, path, header: Header}`
//!   - `header_set`: `{kind, path, before: Header, after: Header}`
//!   - `cell_inserted`: `{kind, path, index, cell: Cell}` (index counted
//!     before the insert)
//!   - `source_set`: `{kind, path, cell_id, before, after}` (sources)
//!   - `cell_replaced`: `{kind, path, cell_id, before: Cell, after: Cell}`
//!   - `cell_deleted`: `{kind, path, index, after_cell_id: string | null,
//!     cell: Cell}` (the whole cell, for recovery)
//!   - `cell_moved`: `{kind, path, cell_id, from, to}` (within a notebook)
//!   - `cell_copied`: `{kind, path, index, cell: Cell, from_path, from_id}`
//!   - `cell_moved_out`: `{kind, path, cell_id, index, to_path, to_id}`
//!   - `cell_moved_in`: `{kind, path, index, cell: Cell, from_path, from_id}`
//!   - `lock_acquired`: `{kind, path, cell_id, owner, acquired_at, expires_at}`
//!     (times RFC 3339; a renewal repeats `acquired_at`)
//!   - `lock_released`: `{kind, path, cell_id, owner, forced}`
//!   - `snapshot_taken`: `{kind, path, name, snapshot_hash, description,
//!     header: Header, cells: [Cell]}`
//!   - `snapshot_deleted`: `{kind, path, name}` (the snapshot's content
//!     stays in the event that took it)
//!   - `notebook_renamed`: `{kind, path, to}` (the notebook at `path`
//!     lives at `to` from then on, with its whole state)
//!   - `rejected`: `{kind, path, cell_id, holder, lock_acquired_at,
//!     lock_expires_at}` (a write refused by that lock; changes nothing)
//! - `Header`: `{nbformat, nbformat_minor, metadata: object, extra: object}`
//!   (`extra`: unknown top-level keys of the file).
//! - `Cell`: `{id, cell_type, source, metadata: object}` plus `outputs:
//!   array` and `execution_count: number | null` for code cells,
//!   `attachments: object` when the cell has some, and `extra: object`
//!   (unknown per-cell keys).
//!
//! Changes apply in order; applying them to the notebook before the event
//! gives the notebook after it. Which kinds each operation makes:
//!
//! | operation | changes |
//! |---|---|
//! | `import` (client `external`) | `notebook_created`, then `cell_inserted` per cell |
//! | `external_change` (client `external`) | `header_set`?, `cell_deleted`*, `cell_inserted`*, `cell_moved`*, `source_set`* / `cell_replaced`* |
//! | `keep_write` (client `nbledger`) | as `external_change`: a write set back over the outside save just before it, in the cells both changed |
//! | `repair_file` (client `nbledger`) | none: the file was rewritten from the log after an unclean stop (`files` names its damaged and repaired hashes) |
//! | `create_notebook` | `cell_deleted`* (the path had an earlier history), `notebook_created`, `cell_inserted`* |
//! | `insert_cell`, `batch_insert_cells` | `cell_inserted`+ |
//! | `update_cell`, `batch_update_cells` | `source_set`+ |
//! | `delete_cell` | `cell_deleted`+ (back to front) |
//! | `change_cell_type` | `cell_replaced` |
//! | `update_cell_metadata`, `revert_cell` | `cell_replaced` |
//! | `update_notebook_metadata` | `header_set` |
//! | `replace_in_notebook` | `source_set`+ (exactly the cells it changed, in notebook order) |
//! | `delete_cell` of a locked cell | `lock_released` before its `cell_deleted` |
//! | `recover_cell` | `cell_inserted` (the deleted cell, same id) |
//! | `lock_cells` / `unlock_cells` | `lock_acquired`+ / `lock_released`+ |
//! | `snapshot_notebook` | `snapshot_taken` |
//! | `delete_snapshot` | `snapshot_deleted` |
//! | `rename_notebook` | `header_set`? (ids need 4.5), `notebook_renamed`; `paths` are `[old, new]` |
//! | `restore_snapshot` | `snapshot_taken` (`pre-restore-<version>`), then as `external_change` |
//! | `copy_cells` | `cell_copied`+ |
//! | `move_cells` | `cell_moved`+ within a notebook; across: `lock_released`*, `cell_moved_out`+, `cell_moved_in`+, `lock_acquired`* |
//! | any write refused with `locked` | `rejected`+ (operation is the refused tool; `rejected: true`) |
//!
//! A change to this shape gets a new schema number; fields are only ever
//! added within a schema.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::log::summary_json;
use super::text::{hex, json_line};
use super::{Audit, AuditError};
use crate::events::{Cell, Change, Event, FileWrite, Header};
use crate::store::Record;
use crate::time::rfc3339;

/// The schema number of `body`.
pub const EXPORT_SCHEMA: u32 = 1;

/// Export formats (only JSON Lines today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
}

/// JSON text from the log, parsed; text that is not JSON stays a string.
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn header_json(h: &Header) -> Value {
    json!({
        "nbformat": h.nbformat,
        "nbformat_minor": h.nbformat_minor,
        "metadata": parsed(&h.metadata),
        "extra": parsed(&h.extra),
    })
}

fn cell_json(c: &Cell) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(c.id));
    m.insert("cell_type".into(), json!(c.cell_type.as_str()));
    m.insert("source".into(), json!(c.source));
    m.insert("metadata".into(), parsed(&c.metadata));
    if let Some(o) = &c.outputs {
        m.insert("outputs".into(), parsed(o));
    }
    if let Some(e) = &c.execution_count {
        m.insert("execution_count".into(), parsed(e));
    }
    if let Some(a) = &c.attachments {
        m.insert("attachments".into(), parsed(a));
    }
    m.insert("extra".into(), parsed(&c.extra));
    Value::Object(m)
}

fn change_json(c: &Change) -> Value {
    match c {
        Change::NotebookCreated { path, header } => json!({
            "kind": "notebook_created",
            "path": path,
            "header": header_json(header),
        }),
        Change::HeaderSet {
            path,
            before,
            after,
        } => json!({
            "kind": "header_set",
            "path": path,
            "before": header_json(before),
            "after": header_json(after),
        }),
        Change::CellInserted { path, index, cell } => json!({
            "kind": "cell_inserted",
            "path": path,
            "index": index,
            "cell": cell_json(cell),
        }),
        Change::SourceSet {
            path,
            cell_id,
            before,
            after,
        } => json!({
            "kind": "source_set",
            "path": path,
            "cell_id": cell_id,
            "before": before,
            "after": after,
        }),
        Change::CellReplaced {
            path,
            before,
            after,
        } => json!({
            "kind": "cell_replaced",
            "path": path,
            "cell_id": after.id,
            "before": cell_json(before),
            "after": cell_json(after),
        }),
        Change::CellDeleted {
            path,
            index,
            after_cell_id,
            cell,
        } => json!({
            "kind": "cell_deleted",
            "path": path,
            "index": index,
            "after_cell_id": after_cell_id,
            "cell": cell_json(cell),
        }),
        Change::CellMoved {
            path,
            cell_id,
            from,
            to,
        } => json!({
            "kind": "cell_moved",
            "path": path,
            "cell_id": cell_id,
            "from": from,
            "to": to,
        }),
        Change::LockAcquired {
            path,
            cell_id,
            owner,
            acquired_at,
            expires_at,
        } => json!({
            "kind": "lock_acquired",
            "path": path,
            "cell_id": cell_id,
            "owner": owner,
            "acquired_at": rfc3339(*acquired_at),
            "expires_at": rfc3339(*expires_at),
        }),
        Change::LockReleased {
            path,
            cell_id,
            owner,
            forced,
        } => json!({
            "kind": "lock_released",
            "path": path,
            "cell_id": cell_id,
            "owner": owner,
            "forced": forced,
        }),
        Change::RunStarted {
            path,
            run_id,
            cell_id,
            source,
            source_version,
            kernel_name,
        } => json!({
            "kind": "run_started",
            "path": path,
            "run_id": run_id,
            "cell_id": cell_id,
            "source": source,
            "source_version": source_version,
            "kernel_name": kernel_name,
        }),
        Change::RunOutputs {
            path,
            run_id,
            cell_id,
            outputs,
            execution_count,
            truncated,
        } => json!({
            "kind": "run_outputs",
            "path": path,
            "run_id": run_id,
            "cell_id": cell_id,
            "outputs": serde_json::from_str::<Value>(outputs).unwrap_or(Value::Null),
            "execution_count": execution_count,
            "truncated": truncated,
        }),
        Change::RunFinished {
            path,
            run_id,
            cell_id,
            status,
            execution_count,
            started_at,
            duration_ms,
            outputs,
            truncated,
            reason,
        } => json!({
            "kind": "run_finished",
            "path": path,
            "run_id": run_id,
            "cell_id": cell_id,
            "status": status,
            "execution_count": execution_count,
            "started_at": started_at.map(rfc3339),
            "duration_ms": duration_ms,
            "outputs": serde_json::from_str::<Value>(outputs).unwrap_or(Value::Null),
            "truncated": truncated,
            "reason": reason,
        }),
        Change::SnapshotDeleted { path, name } => json!({
            "kind": "snapshot_deleted",
            "path": path,
            "name": name,
        }),
        Change::NotebookRenamed { path, to } => json!({
            "kind": "notebook_renamed",
            "path": path,
            "to": to,
        }),
        Change::KernelAction {
            path,
            kernel_name,
            action,
            run_ids,
        } => json!({
            "kind": "kernel_action",
            "path": path,
            "kernel_name": kernel_name,
            "action": action,
            "run_ids": run_ids,
        }),
        Change::Rejected {
            path,
            cell_id,
            holder,
            acquired_at,
            expires_at,
        } => json!({
            "kind": "rejected",
            "path": path,
            "cell_id": cell_id,
            "holder": holder,
            "lock_acquired_at": rfc3339(*acquired_at),
            "lock_expires_at": rfc3339(*expires_at),
        }),
        Change::SnapshotTaken {
            path,
            name,
            hash,
            description,
            header,
            cells,
        } => json!({
            "kind": "snapshot_taken",
            "path": path,
            "name": name,
            "snapshot_hash": hex(hash),
            "description": description,
            "header": header_json(header),
            "cells": cells.iter().map(|c| cell_json(c)).collect::<Vec<_>>(),
        }),
        Change::CellCopied {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => json!({
            "kind": "cell_copied",
            "path": path,
            "index": index,
            "cell": cell_json(cell),
            "from_path": from_path,
            "from_id": from_id,
        }),
        Change::CellMovedOut {
            path,
            cell_id,
            index,
            to_path,
            to_id,
        } => json!({
            "kind": "cell_moved_out",
            "path": path,
            "cell_id": cell_id,
            "index": index,
            "to_path": to_path,
            "to_id": to_id,
        }),
        Change::CellMovedIn {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => json!({
            "kind": "cell_moved_in",
            "path": path,
            "index": index,
            "cell": cell_json(cell),
            "from_path": from_path,
            "from_id": from_id,
        }),
    }
}

fn file_json(f: &FileWrite) -> Value {
    json!({
        "path": f.path,
        "before": f.before.as_ref().map(hex),
        "after": hex(&f.after),
        "written": f.written,
    })
}

/// The `body` of an event (schema [`EXPORT_SCHEMA`]).
pub fn body_json(e: &Event) -> Value {
    let result = if e.result.is_empty() {
        Value::Null
    } else {
        parsed(&e.result)
    };
    json!({
        "schema": EXPORT_SCHEMA,
        "changes": e.changes.iter().map(change_json).collect::<Vec<_>>(),
        "files": e.files.iter().map(file_json).collect::<Vec<_>>(),
        "result": result,
    })
}

/// One exported line's object.
pub fn record_json(rec: &Record) -> Value {
    let mut m = summary_json(rec);
    m.insert("request_id".into(), json!(rec.event.request_id));
    m.insert("body".into(), body_json(&rec.event));
    Value::Object(m)
}

/// Writes every event (of one notebook, or all) as JSON Lines.
pub fn run(
    audit: &Audit,
    format: Format,
    notebook: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let Format::Jsonl = format;
    let key = notebook.map(|p| audit.notebook(p)).transpose()?;
    for rec in audit.records(key.as_deref(), 0, u64::MAX)? {
        writeln!(out, "{}", json_line(&record_json(&rec?)))?;
    }
    out.flush()?;
    Ok(())
}
