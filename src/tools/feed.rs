//! Reading the log: the change feed of a notebook and the history of a
//! cell. Both are index range scans, so their cost does not grow with the
//! rest of the log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{CellAt, Overridden, id_any, to_map};
use super::transfer::Mapping;
use crate::engine::Engine;
use crate::error::ToolError;
use crate::events::{Change, Event};
use crate::store::Record;
use crate::time::rfc3339;

/// Most entries one call returns (§8.12).
pub const MAX_LIMIT: u64 = 1000;
/// Longest a call may wait for a change (§4).
pub const MAX_WAIT_MS: u64 = 60_000;
fn overrode(event: &Event, cell: Option<&str>) -> (Option<String>, Option<Vec<Overridden>>) {
    let mine: Vec<&(String, String)> = event
        .overrode_locks
        .iter()
        .filter(|(c, _)| cell.is_none_or(|x| x == c))
        .collect();
    match mine.as_slice() {
        [] => (None, None),
        [(_, owner)] => (Some(owner.clone()), None),
        many => (
            None,
            Some(
                many.iter()
                    .map(|(c, o)| Overridden {
                        cell_id: c.clone(),
                        owner: o.clone(),
                    })
                    .collect(),
            ),
        ),
    }
}

// ---------------------------------------------------------------- changes

#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ChangesArgs {
    /// Omit for the feed of every notebook (each change names its paths).
    pub path: Option<String>,
    /// List changes after it: the current_version or next_since_version you got last.
    #[schemars(extend("default" = 0))]
    pub since_version: Option<u64>,
    /// At most 1000.
    #[schemars(extend("default" = 100))]
    pub limit: Option<u64>,
    /// If nothing is new, wait up to this long (at most 60000) for a change.
    #[schemars(extend("default" = 0))]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChangeEntry {
    pub version: u64,
    pub timestamp: String,
    pub client_name: String,
    pub operation: String,
    pub paths: Vec<String>,
    pub cell_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Vec<Mapping>>,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrode_lock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrode_locks: Option<Vec<Overridden>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChangesOut {
    /// Absent for the feed of every notebook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub current_version: u64,
    pub changes: Vec<ChangeEntry>,
    pub has_more: bool,
    pub next_since_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited: Option<bool>,
}

fn entry(event: &Event) -> ChangeEntry {
    let (overrode_lock, overrode_locks) = overrode(event, None);
    // Copies and moves say which id became which.
    let mapping: Vec<Mapping> = event
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::CellCopied { cell, from_id, .. }
            | Change::CellMovedIn { cell, from_id, .. } => Some(Mapping {
                from: from_id.clone(),
                to: cell.id.clone(),
            }),
            Change::CellMoved { cell_id, .. } => Some(Mapping {
                from: cell_id.clone(),
                to: cell_id.clone(),
            }),
            _ => None,
        })
        .collect();
    ChangeEntry {
        version: event.version,
        timestamp: rfc3339(event.timestamp_ms),
        client_name: event.client_name.clone(),
        operation: event.operation.clone(),
        paths: event.paths.clone(),
        cell_ids: event.cell_ids.clone(),
        mapping: (!mapping.is_empty()).then_some(mapping),
        summary: event.summary.chars().take(200).collect(),
        overrode_lock,
        overrode_locks,
    }
}

/// One consistent read of the feed (§8.4): the changes after
/// `since_version` and the notebook's `current_version`, under the engine's
/// lock. Rejected attempts are not changes and are skipped.
pub fn changes(engine: &Engine, a: &ChangesArgs) -> Result<ChangesOut, ToolError> {
    let since = a.since_version.unwrap_or(0);
    let limit = a.limit.unwrap_or(100).clamp(1, MAX_LIMIT) as usize;
    let head = engine.store().head();
    if since > head {
        return Err(ToolError::invalid(
            "since_version",
            format!("a version up to the log's head {head}"),
            format!("since_version {since} is after the newest version {head}; pass a version you were given"),
        )
        .with("head", head));
    }
    let Some(path) = &a.path else {
        // The published head: everything up to it is flushed (§8.9).
        let durable = *engine.subscribe().borrow();
        return every_notebook(engine, since, limit, durable.min(head));
    };
    engine.read(path, |nb| {
        let store = engine.store();
        let mut found: Vec<ChangeEntry> = Vec::new();
        let mut after = since;
        'scan: loop {
            // Over the notebook's whole life, earlier paths included.
            let batch = crate::replay::life_versions(store, &nb.path, after, limit + 1)
                .map_err(|e| ToolError::internal(e.to_string()))?;
            for &v in &batch {
                let rec = store
                    .get(v)
                    .map_err(|e| ToolError::internal(e.to_string()))?
                    .ok_or_else(|| {
                        ToolError::internal(format!("indexed version {v} is missing"))
                    })?;
                after = v;
                if rec.event.is_rejected() {
                    continue;
                }
                found.push(entry(&rec.event));
                if found.len() > limit {
                    break 'scan;
                }
            }
            if batch.len() <= limit {
                break;
            }
        }
        let has_more = found.len() > limit;
        found.truncate(limit);
        let next_since_version = match (has_more, found.last()) {
            (true, Some(last)) => last.version,
            _ => nb.current_version,
        };
        Ok(ChangesOut {
            path: Some(nb.path.clone()),
            current_version: nb.current_version,
            changes: found,
            has_more,
            next_since_version,
            waited: None,
        })
    })
}

/// The feed of every notebook up to `head` (read once, so the changes and
/// `current_version` agree): every event but refused attempts, in order.
fn every_notebook(
    engine: &Engine,
    since: u64,
    limit: usize,
    head: u64,
) -> Result<ChangesOut, ToolError> {
    let mut found: Vec<ChangeEntry> = Vec::new();
    for rec in engine.store().records(since + 1) {
        let rec = rec.map_err(|e| ToolError::internal(e.to_string()))?;
        if rec.event.version > head {
            break;
        }
        if rec.event.is_rejected() {
            continue;
        }
        found.push(entry(&rec.event));
        if found.len() > limit {
            break;
        }
    }
    let has_more = found.len() > limit;
    found.truncate(limit);
    let next_since_version = match (has_more, found.last()) {
        (true, Some(last)) => last.version,
        _ => head,
    };
    Ok(ChangesOut {
        path: None,
        current_version: head,
        changes: found,
        has_more,
        next_since_version,
        waited: None,
    })
}

pub fn changes_summary(out: &ChangesOut) -> String {
    format!(
        "{} change(s) in {} after the given version; current_version {}{}",
        out.changes.len(),
        out.path.as_deref().unwrap_or("every notebook"),
        out.current_version,
        if out.has_more {
            " (more: call again with since_version=next_since_version)"
        } else {
            ""
        }
    )
}

// ---------------------------------------------------------------- history

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HistoryArgs {
    pub path: String,
    pub cell_id: String,
    /// At most 1000.
    #[schemars(extend("default" = 20))]
    pub limit: Option<u64>,
    /// Only entries before it, to page back.
    pub before_version: Option<u64>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct HistoryEntry {
    pub version: u64,
    pub timestamp: String,
    pub client_name: String,
    pub operation: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrode_lock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_type_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_type_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<CellAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<CellAt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<CellAt>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryOut {
    pub path: String,
    pub cell_id: String,
    pub deleted: bool,
    pub entries: Vec<HistoryEntry>,
    pub has_more: bool,
}

/// What one event did to one cell, as a history entry (the audit's
/// `history` reads the same [`crate::projections::history::entry`]).
pub fn history_entry(rec: &Record, path: &str, cell: &str) -> HistoryEntry {
    let e = crate::projections::history::entry(&rec.event, path, cell, false);
    let at = |p: Option<(String, String)>| p.map(|(path, cell_id)| CellAt { path, cell_id });
    HistoryEntry {
        version: e.version,
        timestamp: rfc3339(e.timestamp_ms),
        client_name: e.client_name,
        operation: e.operation,
        path: e.path,
        rejected: e.rejected.then_some(true),
        overrode_lock: e.overrode_lock,
        source_before: e.source_before,
        source_after: e.source_after,
        cell_type_before: e.cell_type_before,
        cell_type_after: e.cell_type_after,
        moved_from: at(e.moved_from),
        moved_to: at(e.moved_to),
        copied_from: at(e.copied_from),
    }
}

pub fn get_cell_history(
    engine: &Engine,
    a: HistoryArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let limit = a.limit.unwrap_or(20).clamp(1, MAX_LIMIT) as usize;
    let before = a.before_version.unwrap_or(u64::MAX);
    let out = engine.read(&a.path, |nb| {
        let cell = id_any(nb, &a.cell_id)?;
        let store = engine.store();
        let internal = |e: crate::store::StoreError| ToolError::internal(e.to_string());
        // Newest first, following a moved cell back into the notebook it
        // came from (§7: its earlier life shows with that notebook's path).
        let mut newest_first: Vec<HistoryEntry> = Vec::new();
        let (mut path, mut id, mut until) = (nb.path.clone(), cell.clone(), before);
        let mut has_more = false;
        loop {
            let want = limit - newest_first.len();
            let versions = store
                .cell_versions_rev(&path, &id, until, want + 1)
                .map_err(internal)?;
            let mut origin = None;
            for (k, &v) in versions.iter().enumerate() {
                if k == want {
                    has_more = true;
                    break;
                }
                let rec = store.get(v).map_err(internal)?.ok_or_else(|| {
                    ToolError::internal(format!("indexed version {v} is missing"))
                })?;
                let entry = history_entry(&rec, &path, &id);
                origin = entry
                    .moved_from
                    .as_ref()
                    .map(|m| (m.path.clone(), m.cell_id.clone(), v));
                newest_first.push(entry);
                if origin.is_some() {
                    break;
                }
            }
            match origin {
                Some((p, c, v)) if !has_more && newest_first.len() < limit => {
                    (path, id, until) = (p, c, v);
                }
                Some(_) if newest_first.len() >= limit => {
                    has_more = true;
                    break;
                }
                // A renamed notebook's earlier life, under its former path.
                None if !has_more && newest_first.len() < limit => {
                    match crate::replay::lineage(store, &path)
                        .map_err(internal)?
                        .pop()
                    {
                        Some((old, renamed_at)) => {
                            until = until.min(renamed_at);
                            path = old;
                        }
                        None => break,
                    }
                }
                _ => break,
            }
        }
        newest_first.reverse();
        let entries = newest_first;
        Ok(HistoryOut {
            path: nb.path.clone(),
            deleted: nb.position(&cell).is_none(),
            cell_id: cell,
            entries,
            has_more,
        })
    })?;
    let summary = format!(
        "{} event(s) of cell {}{}",
        out.entries.len(),
        out.cell_id,
        if out.has_more {
            " (older ones: pass before_version)"
        } else {
            ""
        }
    );
    Ok((summary, to_map(&out)))
}
