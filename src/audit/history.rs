//! `nbledger history P CELL`: the life of one cell, one entry per event
//! that touched it, oldest first: creation, every source change with a
//! unified diff, type and other content changes, moves, deletion,
//! recovery, forced locks and refused writes.
//!
//! The cell index (`by_cell`) lists every event of a cell, deleted cells
//! included, so a history costs as many reads as the cell has events. Each
//! entry is computed from the event's own changes by
//! [`crate::projections::history::entry`], which `get_cell_history` shares.
//!
//! Seam: moves between notebooks, copies and lock events do not exist yet.
//! When they do, a move-in entry should carry `moved_from` (the source
//! notebook and id) and the history should continue with the cell's
//! earlier life in the source notebook (§7); lock events already show as
//! `noted`, forced writes as `FORCED over`, refused ones as `REJECTED`.

use std::io::Write;

use serde_json::{Map, Value, json};
use similar::{ChangeTag, TextDiff};

use super::text::{Paint, escape, json_line, rfc3339_ms, strip_eol};
use super::{Audit, AuditError};
use crate::error::quote;
pub use crate::projections::history::{Action, Entry, LockNote, RunNote, entry};

/// A cell's whole history.
#[derive(Debug, Clone)]
pub struct History {
    pub path: String,
    pub cell_id: String,
    pub entries: Vec<Entry>,
}

impl History {
    /// Whether the cell is deleted after its last event.
    pub fn deleted(&self) -> bool {
        self.entries
            .last()
            .is_some_and(|e| e.action == Action::Deleted)
    }
}

/// Resolves `cell` among every id notebook `path` ever had: exactly, then
/// as a unique prefix of at least 4 characters (§8.3), deleted ids included.
pub fn resolve_cell(audit: &Audit, path: &str, cell: &str) -> Result<String, AuditError> {
    let store = audit.store();
    let life = life(audit, path)?;
    for (p, _) in &life {
        if !store.cell_versions_rev(p, cell, u64::MAX, 1)?.is_empty() {
            return Ok(cell.to_owned());
        }
    }
    let not_found = || {
        AuditError::NotFound(format!(
            "notebook {} never had a cell {}",
            quote(path),
            quote(cell)
        ))
    };
    if cell.chars().count() < 4 {
        return Err(AuditError::NotFound(format!(
            "notebook {} never had a cell {} (a prefix needs at least 4 characters)",
            quote(path),
            quote(cell)
        )));
    }
    let mut ids = Vec::new();
    for (p, _) in &life {
        ids.extend(store.cell_ids_with_prefix(p, cell, 11)?);
    }
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Err(not_found()),
        1 => Ok(ids.into_iter().next().unwrap_or_default()),
        n => Err(AuditError::Usage(format!(
            "cell prefix {} is ambiguous in {}: it matches {}{}; give more characters",
            quote(cell),
            quote(path),
            ids.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
            if n > 10 { ", …" } else { "" }
        ))),
    }
}

/// The paths notebook `path` had, oldest first, each with the version
/// before which its events are its own (the rename that left it).
fn life(audit: &Audit, path: &str) -> Result<Vec<(String, u64)>, AuditError> {
    let mut out = crate::replay::lineage(audit.store(), path)?;
    out.push((path.to_owned(), u64::MAX));
    Ok(out)
}

/// The history of cell `cell_id` (already resolved) of notebook `path`.
pub fn history(audit: &Audit, path: &str, cell_id: &str) -> Result<History, AuditError> {
    let mut entries = Vec::new();
    let mut deleted = false;
    // A renamed notebook's earlier life first, under its former paths.
    for (p, until) in life(audit, path)? {
        let mut versions = audit
            .store()
            .cell_versions_rev(&p, cell_id, until, usize::MAX)?;
        versions.reverse();
        for rec in audit.records_at(versions) {
            let rec = rec?;
            let e = entry(&rec.event, &p, cell_id, deleted);
            match e.action {
                Action::Deleted => deleted = true,
                Action::Created | Action::Recovered => deleted = false,
                _ => {}
            }
            entries.push(e);
        }
    }
    Ok(History {
        path: path.to_owned(),
        cell_id: cell_id.to_owned(),
        entries,
    })
}

/// One line of a unified diff, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    File(String),
    Hunk(String),
    Context(String),
    Added(String),
    Removed(String),
    NoNewline,
}

/// The unified diff (3 lines of context) from `before` to `after`.
pub fn unified(before: &str, after: &str, old_label: &str, new_label: &str) -> Vec<DiffLine> {
    let diff = TextDiff::from_lines(before, after);
    let mut out = Vec::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        if out.is_empty() {
            out.push(DiffLine::File(format!("--- {old_label}")));
            out.push(DiffLine::File(format!("+++ {new_label}")));
        }
        out.push(DiffLine::Hunk(hunk.header().to_string()));
        for change in hunk.iter_changes() {
            let text = strip_eol(change.value()).to_owned();
            out.push(match change.tag() {
                ChangeTag::Equal => DiffLine::Context(text),
                ChangeTag::Insert => DiffLine::Added(text),
                ChangeTag::Delete => DiffLine::Removed(text),
            });
            if change.missing_newline() {
                out.push(DiffLine::NoNewline);
            }
        }
    }
    out
}

/// The diff as plain unified-diff text (for `--json`).
fn unified_text(lines: &[DiffLine]) -> String {
    let mut s = String::new();
    for l in lines {
        match l {
            DiffLine::File(t) | DiffLine::Hunk(t) => s.push_str(t),
            DiffLine::Context(t) => {
                s.push(' ');
                s.push_str(t);
            }
            DiffLine::Added(t) => {
                s.push('+');
                s.push_str(t);
            }
            DiffLine::Removed(t) => {
                s.push('-');
                s.push_str(t);
            }
            DiffLine::NoNewline => s.push_str("\\ No newline at end of file"),
        }
        s.push('\n');
    }
    s
}

/// The diff an entry shows, with `last_source_version` the version that
/// set the source it starts from.
fn entry_diff(e: &Entry, last_source_version: Option<u64>) -> Vec<DiffLine> {
    let here = format!("{}@v{}", e.cell_id, e.version);
    let there = |v: Option<u64>| match v {
        Some(v) => format!("{}@v{v}", e.cell_id),
        None => "/dev/null".to_owned(),
    };
    match e.action {
        // A cell that appears (or comes back) shows its whole source.
        Action::Created | Action::Recovered => unified(
            "",
            e.source_after.as_deref().unwrap_or(""),
            "/dev/null",
            &here,
        ),
        Action::Modified => match (&e.source_before, &e.source_after) {
            (Some(b), Some(a)) => unified(b, a, &there(last_source_version), &here),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The text after the operation column: what happened, in words.
fn describe(e: &Entry) -> String {
    let idx = |i: Option<u32>| i.map_or("?".to_owned(), |i| i.to_string());
    if let Some(run) = &e.run {
        return describe_run(run);
    }
    match e.action {
        Action::Created | Action::Recovered => format!(
            "{} ({} cell at index {})",
            e.action.as_str(),
            e.cell_type_after.as_deref().unwrap_or("?"),
            idx(e.index_after)
        ),
        Action::Modified => {
            let mut s = format!("modified: {}", e.changed.join(", "));
            if let (Some(b), Some(a)) = (&e.cell_type_before, &e.cell_type_after) {
                s.push_str(&format!(" ({b} -> {a})"));
            }
            if let (Some(b), Some(a)) = (e.index_before, e.index_after) {
                s.push_str(&format!("; moved from index {b} to {a}"));
            }
            s
        }
        Action::Moved => match (&e.moved_from, &e.moved_to) {
            (Some((p, c)), _) => format!(
                "moved in from {} ({c}) to index {}",
                escape(p),
                idx(e.index_after)
            ),
            (_, Some((p, c))) => format!(
                "moved out to {} ({c}) from index {}",
                escape(p),
                idx(e.index_before)
            ),
            _ => format!(
                "moved from index {} to {}",
                idx(e.index_before),
                idx(e.index_after)
            ),
        },
        Action::Deleted => format!("deleted (was at index {})", idx(e.index_before)),
        Action::Rejected => "write refused".to_owned(),
        Action::Noted => match &e.lock {
            Some(LockNote::Taken { owner, expires_at }) => {
                format!(
                    "locked by {} until {}",
                    escape(owner),
                    rfc3339_ms(*expires_at)
                )
            }
            Some(LockNote::Released {
                owner,
                forced: true,
            }) => {
                format!("lock of {} forced open", escape(owner))
            }
            Some(LockNote::Released { owner, .. }) => format!("lock of {} released", escape(owner)),
            None => "named by the event".to_owned(),
        },
    }
}

/// A run's line: `run 0190… started`, `run 0190… ok [3] in 12 ms`.
fn describe_run(run: &RunNote) -> String {
    let mut s = format!("run {} {}", run.run_id, run.status);
    if let Some(n) = run.execution_count {
        s.push_str(&format!(" [{n}]"));
    }
    if let Some(ms) = run.duration_ms {
        s.push_str(&format!(" in {ms} ms"));
    }
    s
}

/// An entry as JSON: the `get_cell_history` entry fields (contract §4)
/// plus `cell_id`, `action`, `changed`, `index_before`/`index_after` and,
/// for source changes, `diff` (unified, 3 lines of context).
pub fn entry_json(e: &Entry, last_source_version: Option<u64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("version".into(), json!(e.version));
    m.insert("timestamp".into(), json!(rfc3339_ms(e.timestamp_ms)));
    m.insert("client_name".into(), json!(e.client_name));
    m.insert("operation".into(), json!(e.operation));
    m.insert("path".into(), json!(e.path));
    m.insert("cell_id".into(), json!(e.cell_id));
    m.insert("action".into(), json!(e.action.as_str()));
    if !e.changed.is_empty() {
        m.insert("changed".into(), json!(e.changed));
    }
    if e.rejected {
        m.insert("rejected".into(), json!(true));
    }
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    opt(&mut m, "overrode_lock", &e.overrode_lock);
    for (key, v) in [
        ("moved_from", &e.moved_from),
        ("moved_to", &e.moved_to),
        ("copied_from", &e.copied_from),
    ] {
        if let Some((p, c)) = v {
            m.insert(key.into(), json!({"path": p, "cell_id": c}));
        }
    }
    opt(&mut m, "source_before", &e.source_before);
    opt(&mut m, "source_after", &e.source_after);
    opt(&mut m, "cell_type_before", &e.cell_type_before);
    opt(&mut m, "cell_type_after", &e.cell_type_after);
    if let Some(i) = e.index_before {
        m.insert("index_before".into(), json!(i));
    }
    if let Some(i) = e.index_after {
        m.insert("index_after".into(), json!(i));
    }
    if let Some(run) = &e.run {
        let mut r = Map::new();
        r.insert("run_id".into(), json!(run.run_id));
        r.insert("status".into(), json!(run.status));
        if let Some(n) = run.execution_count {
            r.insert("execution_count".into(), json!(n));
        }
        if let Some(ms) = run.duration_ms {
            r.insert("duration_ms".into(), json!(ms));
        }
        m.insert("run".into(), Value::Object(r));
    }
    let diff = entry_diff(e, last_source_version);
    if !diff.is_empty() {
        m.insert("diff".into(), json!(unified_text(&diff)));
    }
    m
}

/// Prints the history of `cell` in notebook `path` (both as given).
pub fn run(
    audit: &Audit,
    path: &str,
    cell: &str,
    json: bool,
    paint: Paint,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let key = audit.notebook(path)?;
    let id = resolve_cell(audit, &key, cell)?;
    let h = history(audit, &key, &id)?;
    if !json {
        let status = match h.entries.last() {
            Some(last) if h.deleted() => format!("deleted at v{}", last.version),
            _ => "live".to_owned(),
        };
        writeln!(
            out,
            "cell {} of {}: {} events, {status}",
            escape(&h.cell_id),
            escape(&h.path),
            h.entries.len()
        )?;
    }
    // The version whose source a diff starts from.
    let mut source_version: Option<u64> = None;
    for e in &h.entries {
        if json {
            writeln!(
                out,
                "{}",
                json_line(&Value::Object(entry_json(e, source_version)))
            )?;
        } else {
            write_entry(out, e, source_version, paint)?;
        }
        if e.source_after.is_some() {
            source_version = Some(e.version);
        }
    }
    out.flush()?;
    Ok(())
}

fn write_entry(
    out: &mut dyn Write,
    e: &Entry,
    source_version: Option<u64>,
    paint: Paint,
) -> Result<(), AuditError> {
    let mut line = format!(
        "{}  {}  {}  {}  {}  {}",
        paint.version(&format!("v{}", e.version)),
        rfc3339_ms(e.timestamp_ms),
        escape(&e.client_name),
        escape(&e.operation),
        escape(&e.path),
        describe(e)
    );
    if let Some(owner) = &e.overrode_lock {
        line.push_str("  ");
        line.push_str(&paint.alert(&format!("FORCED over {}", escape(owner))));
    }
    if e.rejected {
        line.push_str("  ");
        line.push_str(&paint.alert("REJECTED"));
    }
    writeln!(out, "{line}")?;
    for d in entry_diff(e, source_version) {
        let shown = match &d {
            DiffLine::File(t) => paint.dim(&escape(t)),
            DiffLine::Hunk(t) => paint.dim(t),
            DiffLine::Context(t) => format!(" {}", escape(t)),
            DiffLine::Added(t) => paint.added(&format!("+{}", escape(t))),
            DiffLine::Removed(t) => paint.removed(&format!("-{}", escape(t))),
            DiffLine::NoNewline => paint.dim("\\ No newline at end of file"),
        };
        writeln!(out, "    {shown}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::{Cell, CellType, Change, Event};

    fn ev(version: u64, op: &str, changes: Vec<Change>) -> Event {
        Event {
            version,
            timestamp_ms: version as i64,
            client_name: "c".into(),
            operation: op.into(),
            paths: vec!["n.ipynb".into()],
            cell_ids: vec!["a".into()],
            overrode_locks: vec![("a".into(), "owner".into())],
            request_id: None,
            result: String::new(),
            summary: String::new(),
            changes,
            files: vec![],
        }
    }

    fn cell(src: &str) -> Arc<Cell> {
        Arc::new(Cell::new("a".into(), CellType::Code, src.into(), None))
    }

    #[test]
    fn an_outside_move_and_edit_is_one_modified_entry() {
        let e = entry(
            &ev(
                3,
                "external_change",
                vec![
                    Change::CellMoved {
                        path: "n.ipynb".into(),
                        cell_id: "a".into(),
                        from: 0,
                        to: 2,
                    },
                    Change::SourceSet {
                        path: "n.ipynb".into(),
                        cell_id: "a".into(),
                        before: "x\n".into(),
                        after: "y\n".into(),
                    },
                ],
            ),
            "n.ipynb",
            "a",
            false,
        );
        assert_eq!(e.action, Action::Modified);
        assert_eq!(e.changed, vec!["source"]);
        assert_eq!((e.index_before, e.index_after), (Some(0), Some(2)));
        assert_eq!(e.overrode_lock.as_deref(), Some("owner"));
        assert_eq!(describe(&e), "modified: source; moved from index 0 to 2");
    }

    #[test]
    fn a_type_change_names_both_types_and_an_insert_after_delete_is_a_recovery() {
        let before = cell("x");
        let after = Arc::new(before.with_type(CellType::Markdown));
        let e = entry(
            &ev(
                2,
                "change_cell_type",
                vec![Change::CellReplaced {
                    path: "n.ipynb".into(),
                    before,
                    after,
                }],
            ),
            "n.ipynb",
            "a",
            false,
        );
        assert_eq!(e.changed, vec!["cell_type", "outputs", "execution_count"]);
        assert_eq!(e.cell_type_before.as_deref(), Some("code"));
        assert_eq!(e.cell_type_after.as_deref(), Some("markdown"));
        let ins = Change::CellInserted {
            path: "n.ipynb".into(),
            index: 0,
            cell: cell("x"),
        };
        assert_eq!(
            entry(
                &ev(5, "recover_cell", vec![ins.clone()]),
                "n.ipynb",
                "a",
                true
            )
            .action,
            Action::Recovered
        );
        assert_eq!(
            entry(&ev(5, "insert_cell", vec![ins]), "n.ipynb", "a", false).action,
            Action::Created
        );
    }

    #[test]
    fn a_rejected_event_is_rejected() {
        let refused = Change::Rejected {
            path: "n.ipynb".into(),
            cell_id: "a".into(),
            holder: "owner".into(),
            acquired_at: 1,
            expires_at: 2,
        };
        let e = entry(&ev(4, "update_cell", vec![refused]), "n.ipynb", "a", false);
        assert_eq!(e.action, Action::Rejected);
        assert!(e.rejected);
    }

    #[test]
    fn unified_diff_has_headers_hunks_and_no_newline_marker() {
        let d = unified("a\nb\n", "a\nc", "x@v1", "x@v2");
        assert_eq!(
            d,
            vec![
                DiffLine::File("--- x@v1".into()),
                DiffLine::File("+++ x@v2".into()),
                DiffLine::Hunk("@@ -1,2 +1,2 @@".into()),
                DiffLine::Context("a".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Added("c".into()),
                DiffLine::NoNewline,
            ]
        );
        assert!(unified("same\n", "same\n", "a", "b").is_empty());
    }
}
