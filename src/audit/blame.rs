//! `nbledger blame P`: for every line of every cell's current source, the
//! version, time and client that last wrote that line.
//!
//! The notebook's events are folded with the server's projection (for
//! the cells, their order and sources) while a side table follows each
//! cell's lines: every source change is diffed line by line against the
//! previous source, lines the diff keeps keep their author, lines it
//! inserts or replaces belong to the event (§8.10). An import's lines
//! belong to its client, `external`, like any outside change. A move or a
//! type change that leaves the source alone keeps every line's author; a
//! deleted cell keeps its lines' authors and gets them back if it returns
//! under its id (recovery, or an outside edit that restores it).
//!
//! A cell copied or moved in from another notebook brings its lines'
//! authors: the source notebook is folded the same way up to just before
//! the move, and the cell's table continues from there.

use std::collections::HashMap;
use std::io::Write;

use serde_json::json;
use similar::{DiffOp, TextDiff};

use super::text::{Paint, escape, json_line, lines, rfc3339_ms, strip_eol};
use super::{Audit, AuditError};
use crate::error::quote;
use crate::events::Change;
use crate::projections::Workspace;

/// Who last wrote one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub version: u64,
    pub timestamp_ms: i64,
    pub client_name: String,
}

/// One line of a cell's current source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlameLine {
    /// The line without its ending.
    pub text: String,
    /// Index into [`Blame::authors`].
    pub author: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellBlame {
    pub cell_id: String,
    pub index: usize,
    pub cell_type: String,
    pub lines: Vec<BlameLine>,
}

/// The blame of a whole notebook at the head of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blame {
    pub path: String,
    pub current_version: u64,
    /// Every event of the notebook, in version order; lines point here.
    pub authors: Vec<Author>,
    pub cells: Vec<CellBlame>,
}

/// The authors of `new`'s lines, given those of `old`'s: lines the line
/// diff keeps keep theirs, the others get `author`.
fn carry(old: &str, old_authors: &[usize], new: &str, author: usize) -> Vec<usize> {
    let diff = TextDiff::from_lines(old, new);
    let mut out = Vec::with_capacity(diff.new_len());
    for op in diff.ops() {
        match *op {
            DiffOp::Equal { old_index, len, .. } => {
                for k in old_index..old_index + len {
                    out.push(old_authors.get(k).copied().unwrap_or(author));
                }
            }
            DiffOp::Insert { new_len, .. } | DiffOp::Replace { new_len, .. } => {
                out.extend(std::iter::repeat_n(author, new_len));
            }
            DiffOp::Delete { .. } => {}
        }
    }
    out
}

/// Each live cell's line authors in notebook `path` after the events of
/// it up to `until`, with its folded state. `authors` collects every event
/// seen (shared across notebooks when a cell came from another one).
struct Lines {
    ws: Workspace,
    live: HashMap<String, Vec<usize>>,
}

fn attribute(
    audit: &Audit,
    path: &str,
    until: u64,
    authors: &mut Vec<Author>,
) -> Result<Lines, AuditError> {
    let mut versions = audit.store().notebook_versions(path, 0, usize::MAX)?;
    versions.retain(|v| *v <= until);
    let mut ws = Workspace::default();
    // Per live cell: the author of each line of its source.
    let mut live: HashMap<String, Vec<usize>> = HashMap::new();
    // Per deleted cell: its last source and its lines' authors.
    let mut gone: HashMap<String, (String, Vec<usize>)> = HashMap::new();
    // A renamed notebook's lines keep the authors of its earlier life.
    if let Some((old, renamed_at)) = crate::replay::lineage(audit.store(), path)?.pop()
        && renamed_at <= until
    {
        let before = attribute(audit, &old, renamed_at - 1, authors)?;
        ws = before.ws;
        live = before.live;
    }
    for rec in audit.records_at(versions) {
        let event = rec?.event;
        let me = authors.len();
        authors.push(Author {
            version: event.version,
            timestamp_ms: event.timestamp_ms,
            client_name: event.client_name.clone(),
        });
        for change in event.changes.iter().filter(|c| c.path() == path) {
            match change {
                Change::CellInserted { cell, .. } => {
                    let a = match gone.remove(&cell.id) {
                        Some((src, a)) => carry(&src, &a, &cell.source, me),
                        None => vec![me; lines(&cell.source).len()],
                    };
                    live.insert(cell.id.clone(), a);
                }
                Change::CellCopied {
                    cell,
                    from_path,
                    from_id,
                    ..
                }
                | Change::CellMovedIn {
                    cell,
                    from_path,
                    from_id,
                    ..
                } => {
                    // The lines keep the authors they had in the source.
                    let before = attribute(audit, from_path, event.version - 1, authors)?;
                    let src = before.ws.notebook(from_path).and_then(|nb| {
                        nb.position(from_id)
                            .map(|i| nb.cells[i].cell.source.clone())
                    });
                    let a = match (src, before.live.get(from_id)) {
                        (Some(src), Some(a)) => carry(&src, a, &cell.source, me),
                        _ => vec![me; lines(&cell.source).len()],
                    };
                    live.insert(cell.id.clone(), a);
                }
                Change::SourceSet {
                    cell_id,
                    before,
                    after,
                    ..
                } => {
                    let old = live.remove(cell_id).unwrap_or_default();
                    live.insert(cell_id.clone(), carry(before, &old, after, me));
                }
                Change::CellReplaced { before, after, .. } if before.source != after.source => {
                    let old = live.remove(&after.id).unwrap_or_default();
                    live.insert(
                        after.id.clone(),
                        carry(&before.source, &old, &after.source, me),
                    );
                }
                Change::CellDeleted { cell, .. } => {
                    if let Some(a) = live.remove(&cell.id) {
                        gone.insert(cell.id.clone(), (cell.source.clone(), a));
                    }
                }
                Change::CellMovedOut { cell_id, .. } => {
                    live.remove(cell_id);
                }
                Change::CellReplaced { .. }
                | Change::CellMoved { .. }
                | Change::NotebookCreated { .. }
                | Change::HeaderSet { .. }
                | Change::LockAcquired { .. }
                | Change::LockReleased { .. }
                | Change::SnapshotTaken { .. }
                | Change::Rejected { .. }
                | Change::RunStarted { .. }
                | Change::RunOutputs { .. }
                | Change::RunFinished { .. }
                | Change::KernelAction { .. }
                | Change::SnapshotDeleted { .. }
                | Change::NotebookRenamed { .. } => {}
            }
        }
        ws.apply_to_notebooks(&event);
    }
    Ok(Lines { ws, live })
}

/// Blames notebook `path` (a key in the log) at the head.
pub fn blame(audit: &Audit, path: &str) -> Result<Blame, AuditError> {
    let mut authors: Vec<Author> = Vec::new();
    let Lines { mut ws, live } = attribute(audit, path, u64::MAX, &mut authors)?;
    let nb = ws
        .notebooks
        .remove(path)
        .ok_or_else(|| AuditError::NotFound(format!("the log has no notebook {}", quote(path))))?;
    let mut cells = Vec::with_capacity(nb.cells.len());
    for (index, c) in nb.cells.iter().enumerate() {
        let src_lines = lines(&c.cell.source);
        let a = live.get(&c.cell.id).map(Vec::as_slice).unwrap_or_default();
        if a.len() != src_lines.len() {
            return Err(AuditError::Fault(format!(
                "blame lost track of the lines of cell {} ({} lines, {} attributed); please report this",
                c.cell.id,
                src_lines.len(),
                a.len()
            )));
        }
        cells.push(CellBlame {
            cell_id: c.cell.id.clone(),
            index,
            cell_type: c.cell.cell_type.as_str().to_owned(),
            lines: src_lines
                .iter()
                .zip(a)
                .map(|(l, &author)| BlameLine {
                    text: strip_eol(l).to_owned(),
                    author,
                })
                .collect(),
        });
    }
    Ok(Blame {
        path: path.to_owned(),
        current_version: nb.current_version,
        authors,
        cells,
    })
}

/// Prints the blame of notebook `path` (as given).
pub fn run(
    audit: &Audit,
    path: &str,
    json: bool,
    paint: Paint,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let key = audit.notebook(path)?;
    let b = blame(audit, &key)?;
    if json {
        for c in &b.cells {
            for (i, l) in c.lines.iter().enumerate() {
                let a = &b.authors[l.author];
                let v = json!({
                    "cell_id": c.cell_id,
                    "index": c.index,
                    "line": i + 1,
                    "text": l.text,
                    "version": a.version,
                    "client_name": a.client_name,
                    "timestamp": rfc3339_ms(a.timestamp_ms),
                });
                writeln!(out, "{}", json_line(&v))?;
            }
        }
        out.flush()?;
        return Ok(());
    }
    // Column widths over the whole notebook, so every line lines up.
    let used = b
        .cells
        .iter()
        .flat_map(|c| c.lines.iter().map(|l| l.author));
    let (mut vw, mut cw) = (0, 0);
    for k in used {
        let a = &b.authors[k];
        vw = vw.max(format!("v{}", a.version).len());
        cw = cw.max(escape(&a.client_name).chars().count());
    }
    let nw = b
        .cells
        .iter()
        .map(|c| c.lines.len().to_string().len())
        .max()
        .unwrap_or(1);
    writeln!(
        out,
        "{} at v{}: {} cells",
        escape(&b.path),
        b.current_version,
        b.cells.len()
    )?;
    for c in &b.cells {
        let empty = if c.lines.is_empty() { "  (empty)" } else { "" };
        writeln!(
            out,
            "cell {}  index {}  {}{empty}",
            escape(&c.cell_id),
            c.index,
            escape(&c.cell_type)
        )?;
        for (i, l) in c.lines.iter().enumerate() {
            let a = &b.authors[l.author];
            let version = format!("{:<vw$}", format!("v{}", a.version));
            let client = escape(&a.client_name);
            let pad = cw.saturating_sub(client.chars().count());
            let mut row = format!(
                "  {}  {client}{:pad$}  {}  {:>nw$}",
                paint.version(&version),
                "",
                paint.dim(&rfc3339_ms(a.timestamp_ms)),
                i + 1,
            );
            // An empty line ends at its number: no trailing blanks.
            if !l.text.is_empty() {
                row.push_str("  ");
                row.push_str(&escape(&l.text));
            }
            writeln!(out, "{row}")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_keeps_untouched_lines_and_gives_changed_ones_to_the_writer() {
        let old = "a\nb\nc\n";
        let new = "a\nB\nc\nd\n";
        assert_eq!(carry(old, &[1, 2, 3], new, 9), vec![1, 9, 3, 9]);
        // Deleting lines keeps the rest.
        assert_eq!(carry(old, &[1, 2, 3], "a\nc\n", 9), vec![1, 3]);
        // A missing final newline makes the last line a different line.
        assert_eq!(carry("a\nb", &[1, 2], "a\nb\n", 9), vec![1, 9]);
        assert!(carry(old, &[1, 2, 3], "", 9).is_empty());
    }
}
