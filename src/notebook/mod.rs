//! Between the file format ([`crate::ipynb`]) and events: turning a file
//! into the changes that import it or take in an outside edit, and turning
//! state back into file bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::events::{Cell, CellType, Change, Hash, Header};
use crate::ipynb::{self, RawCell, RawNotebook};
use crate::projections::{NotebookState, Workspace};

mod merge;
pub mod repair;
pub use merge::{Content, LateSave, merge_late_save};

/// Source of fresh cell ids: 8 lowercase hex characters (§8.3).
pub fn fresh_id(taken: &dyn Fn(&str) -> bool) -> String {
    loop {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        if !taken(&id) {
            return id;
        }
    }
}

/// Compact JSON with keys sorted at every level: the one text form of JSON
/// in events, so equal content always has equal text (and equal hashes).
pub fn json_text(v: &Value) -> String {
    serde_json::to_string(&sorted(v)).unwrap_or_else(|_| "null".to_owned())
}

pub fn object_text(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let sorted_map: Map<String, Value> = keys
        .into_iter()
        .map(|k| (k.clone(), sorted(&m[k])))
        .collect();
    serde_json::to_string(&sorted_map).unwrap_or_else(|_| "{}".to_owned())
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn parse_object(s: &str) -> Map<String, Value> {
    match serde_json::from_str(s) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

pub fn header_of(nb: &RawNotebook) -> Header {
    Header {
        nbformat: nb.nbformat,
        nbformat_minor: nb.nbformat_minor,
        metadata: object_text(&nb.metadata),
        extra: object_text(&nb.extra),
    }
}

/// A cell from the file; `cell_type` was validated by the parser.
pub fn cell_of(raw: &RawCell, id: String) -> Cell {
    Cell {
        id,
        cell_type: CellType::from_file(&raw.cell_type),
        source: raw.source.clone(),
        metadata: object_text(&raw.metadata),
        outputs: raw
            .outputs
            .as_ref()
            .map(|o| json_text(&Value::Array(o.clone()))),
        execution_count: raw.execution_count.as_ref().map(json_text),
        attachments: raw.attachments.as_ref().map(json_text),
        extra: object_text(&raw.extra),
    }
}

pub fn raw_of(cell: &Cell) -> RawCell {
    RawCell {
        id: Some(cell.id.clone()),
        cell_type: cell.cell_type.as_str().to_owned(),
        source: cell.source.clone(),
        metadata: parse_object(&cell.metadata),
        outputs: cell
            .outputs
            .as_deref()
            .map(|o| match serde_json::from_str(o) {
                Ok(Value::Array(a)) => a,
                _ => Vec::new(),
            }),
        execution_count: cell
            .execution_count
            .as_deref()
            .map(|e| serde_json::from_str(e).unwrap_or(Value::Null)),
        attachments: cell
            .attachments
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok()),
        extra: parse_object(&cell.extra),
    }
}

pub fn raw_header(h: &Header) -> RawNotebook {
    RawNotebook {
        nbformat: h.nbformat,
        nbformat_minor: h.nbformat_minor,
        metadata: parse_object(&h.metadata),
        extra: parse_object(&h.extra),
        cells: Vec::new(),
    }
}

/// The first nbformat 4 minor whose schema has cell ids.
pub const MINOR_WITH_IDS: u64 = 5;

/// `header` as a file whose cells have ids must say it: nbformat refuses an
/// `id` key below 4.5, and nbledger writes every cell with its id (§8.8).
pub fn header_with_ids(header: &Header) -> Header {
    let mut h = header.clone();
    if h.nbformat == 4 && h.nbformat_minor < MINOR_WITH_IDS {
        h.nbformat_minor = MINOR_WITH_IDS;
    }
    h
}

/// `changes` of an event that writes the files of `paths`, plus a header
/// change to 4.5 for each of them that the event leaves holding cells under
/// an older minor (an empty 4.0 notebook gaining a cell, a file saved
/// outside by an old tool). The raise is a change of the event itself, so
/// the log says what the file says and replay needs no rule of its own.
pub fn raise_minor_for_ids(
    ws: &Workspace,
    paths: &[&str],
    mut changes: Vec<Change>,
) -> Vec<Change> {
    for &path in paths {
        let nb = ws.notebook(path);
        let mut header = nb.map(|n| n.header.clone());
        let mut cells = nb.map_or(0, |n| n.cells.len());
        // After the event's last header change for `path`, else before its
        // first change: the header the raise starts from is then exact.
        let mut at = None;
        for (i, c) in changes.iter().enumerate().filter(|(_, c)| c.path() == path) {
            match c {
                Change::NotebookCreated { header: h, .. } | Change::HeaderSet { after: h, .. } => {
                    header = Some(h.clone());
                    at = Some(i + 1);
                }
                Change::CellInserted { .. }
                | Change::CellCopied { .. }
                | Change::CellMovedIn { .. } => cells += 1,
                Change::CellDeleted { .. } | Change::CellMovedOut { .. } => {
                    cells = cells.saturating_sub(1)
                }
                _ => {}
            }
            at.get_or_insert(i);
        }
        let Some(before) = header else { continue };
        let after = header_with_ids(&before);
        if cells > 0 && after != before {
            let at = at.unwrap_or(changes.len());
            changes.insert(
                at,
                Change::HeaderSet {
                    path: path.to_owned(),
                    before,
                    after,
                },
            );
        }
    }
    changes
}

/// The changes that bring a file into the log for the first time, and
/// whether the file must be rewritten (it lacked ids, or some were
/// duplicates). Older 4.x notebooks become 4.5 when they gain ids.
pub struct Import {
    pub changes: Vec<Change>,
    pub rewrite: bool,
    pub reassigned: Vec<(usize, String)>,
}

pub fn import(path: &str, raw: &RawNotebook, reuse: Option<&NotebookState>) -> Import {
    let mut header = header_of(raw);
    let mut seen: HashSet<String> = HashSet::new();
    let mut changes = Vec::new();
    let mut rewrite = false;
    let mut reassigned = Vec::new();
    let mut new_ids: Vec<String> = Vec::new();
    for (i, rc) in raw.cells.iter().enumerate() {
        let id = match &rc.id {
            Some(id) if !seen.contains(id) => id.clone(),
            other => {
                rewrite = true;
                let id = fresh_id(&|c| {
                    seen.contains(c)
                        || raw.cells.iter().any(|x| x.id.as_deref() == Some(c))
                        || reuse.is_some_and(|nb| nb.id_taken(c))
                });
                if let Some(old) = other {
                    reassigned.push((i, old.clone()));
                }
                id
            }
        };
        seen.insert(id.clone());
        new_ids.push(id);
    }
    if rewrite && header.nbformat_minor < 5 {
        header.nbformat_minor = 5;
    }
    changes.push(Change::NotebookCreated {
        path: path.to_owned(),
        header,
    });
    for (i, (rc, id)) in raw.cells.iter().zip(new_ids).enumerate() {
        changes.push(Change::CellInserted {
            path: path.to_owned(),
            index: i as u32,
            cell: Arc::new(cell_of(rc, id)),
        });
    }
    Import {
        changes,
        rewrite,
        reassigned,
    }
}

/// The changes that turn `old` into what the file now holds (§8.8): cells
/// are matched by id; cells without a usable id are matched to unmatched old
/// cells by LCS over (type, source); the rest are new. Removed cells are
/// deleted (recoverable).
pub fn diff_outside(old: &NotebookState, raw: &RawNotebook) -> Vec<Change> {
    let old_cells: Vec<Arc<Cell>> = old.cells.iter().map(|c| c.cell.clone()).collect();
    let cells = outside_cells(&old_cells, &|c| old.id_taken(c), raw);
    transform(old, &header_of(raw), &cells, None)
}

/// The cells of a file read from outside, with the ids they have in the
/// log: their own when unique, else the id of the unmatched `old` cell an
/// LCS over (type, source) pairs them with, else a fresh one not `taken`.
pub fn outside_cells(
    old: &[Arc<Cell>],
    taken: &dyn Fn(&str) -> bool,
    raw: &RawNotebook,
) -> Vec<Arc<Cell>> {
    // 1. Give every new cell an id: its own when unique and known or new,
    //    else an LCS match, else a fresh one.
    let mut ids: Vec<Option<String>> = Vec::with_capacity(raw.cells.len());
    let mut used: HashSet<String> = HashSet::new();
    for rc in &raw.cells {
        match &rc.id {
            // A known deleted id coming back from outside is that cell again.
            Some(id) if !used.contains(id) => {
                used.insert(id.clone());
                ids.push(Some(id.clone()));
            }
            _ => ids.push(None),
        }
    }
    let unmatched_old: Vec<&Arc<Cell>> = old.iter().filter(|c| !used.contains(&c.id)).collect();
    let pending: Vec<usize> = (0..raw.cells.len()).filter(|&i| ids[i].is_none()).collect();
    for (pi, oi) in lcs(&pending, &unmatched_old, |&i, c| {
        raw.cells[i].cell_type == c.cell_type.as_str() && raw.cells[i].source == c.source
    }) {
        let id = unmatched_old[oi].id.clone();
        used.insert(id.clone());
        ids[pending[pi]] = Some(id);
    }
    let final_ids: Vec<String> = ids
        .into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                let id = fresh_id(&|c| used.contains(c) || taken(c));
                used.insert(id.clone());
                id
            })
        })
        .collect();

    raw.cells
        .iter()
        .zip(final_ids)
        .map(|(rc, id)| Arc::new(cell_of(rc, id)))
        .collect()
}

/// The changes that turn `old` into exactly `header` + `cells` (ids
/// decide identity): header, deletions back to front (releasing their
/// locks, §8.5), then inserts and moves front to back with content changes.
/// A cell whose id was deleted comes back under that id. `actor` is whoever
/// makes the change, for marking lock releases as forced; `None` is an
/// outside change, which forces every lock it touches.
pub fn transform(
    old: &NotebookState,
    header: &Header,
    cells: &[Arc<Cell>],
    actor: Option<(&str, i64)>,
) -> Vec<Change> {
    let path = old.path.as_str();
    let mut changes = Vec::new();
    if *header != old.header {
        changes.push(Change::HeaderSet {
            path: path.to_owned(),
            before: old.header.clone(),
            after: header.clone(),
        });
    }
    let keep: HashSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    let mut order: Vec<Arc<Cell>> = old.cells.iter().map(|c| c.cell.clone()).collect();
    let mut i = order.len();
    while i > 0 {
        i -= 1;
        if !keep.contains(order[i].id.as_str()) {
            let cell = order.remove(i);
            if let Some(lock) = old.locks.get(&cell.id) {
                let forced = match actor {
                    Some((who, now)) => lock.holds_at(now) && lock.owner != who,
                    None => true,
                };
                changes.push(Change::LockReleased {
                    path: path.to_owned(),
                    cell_id: cell.id.clone(),
                    owner: lock.owner.clone(),
                    forced,
                });
            }
            changes.push(Change::CellDeleted {
                path: path.to_owned(),
                index: i as u32,
                after_cell_id: predecessor(&order, i),
                cell,
            });
        }
    }
    let by_id: HashMap<&str, &Arc<Cell>> = old
        .cells
        .iter()
        .map(|c| (c.cell.id.as_str(), &c.cell))
        .collect();
    for (target, cell) in cells.iter().enumerate() {
        match by_id.get(cell.id.as_str()) {
            None => {
                order.insert(target, cell.clone());
                changes.push(Change::CellInserted {
                    path: path.to_owned(),
                    index: target as u32,
                    cell: cell.clone(),
                });
            }
            Some(prev) => {
                let from = order.iter().position(|c| c.id == cell.id).unwrap_or(target);
                if from != target {
                    let c = order.remove(from);
                    order.insert(target, c);
                    changes.push(Change::CellMoved {
                        path: path.to_owned(),
                        cell_id: cell.id.clone(),
                        from: from as u32,
                        to: target as u32,
                    });
                }
                changes.extend(content_change(path, prev, (**cell).clone()));
            }
        }
    }
    changes
}

/// The canonical content of a notebook for snapshots (§8.6): header and
/// cells in order, code cells with `outputs` (multi-line strings joined, as
/// `get_notebook_content` gives them) and `execution_count`, markdown and
/// raw cells with neither, `attachments` only when present.
pub fn canonical(header: &Header, cells: &[Arc<Cell>]) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let cells: Vec<Value> = cells
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(c.id.clone()));
            m.insert(
                "cell_type".into(),
                Value::String(c.cell_type.as_str().to_owned()),
            );
            m.insert("source".into(), Value::String(c.source.clone()));
            m.insert("metadata".into(), parse(&c.metadata));
            if c.cell_type == CellType::Code {
                let outputs = match c.outputs.as_deref().map(parse) {
                    Some(Value::Array(a)) => a.into_iter().map(joined_output).collect(),
                    _ => Vec::new(),
                };
                m.insert("outputs".into(), Value::Array(outputs));
                m.insert(
                    "execution_count".into(),
                    c.execution_count
                        .as_deref()
                        .map(parse)
                        .unwrap_or(Value::Null),
                );
            }
            if let Some(a) = c.attachments.as_deref() {
                m.insert("attachments".into(), parse(a));
            }
            Value::Object(m)
        })
        .collect();
    let mut nb = Map::new();
    nb.insert("nbformat".into(), Value::from(header.nbformat));
    nb.insert("nbformat_minor".into(), Value::from(header.nbformat_minor));
    nb.insert("metadata".into(), parse(&header.metadata));
    nb.insert("cells".into(), Value::Array(cells));
    Value::Object(nb)
}

/// An output with its multi-line strings (`text`, MIME data) joined.
fn joined_output(mut o: Value) -> Value {
    if let Some(obj) = o.as_object_mut() {
        if let Some(t) = obj.get("text").and_then(ipynb::join_multiline) {
            obj.insert("text".into(), Value::String(t));
        }
        if let Some(Value::Object(data)) = obj.get_mut("data") {
            // JSON MIME types hold JSON values, not multi-line strings.
            for (_, v) in data.iter_mut().filter(|(m, _)| !m.ends_with("json")) {
                if let Some(s) = ipynb::join_multiline(v) {
                    *v = Value::String(s);
                }
            }
        }
    }
    o
}

/// `snapshot_hash`: blake3 of the RFC 8785 (JCS) form of [`canonical`].
pub fn snapshot_hash(header: &Header, cells: &[Arc<Cell>]) -> Hash {
    let bytes = serde_jcs::to_vec(&canonical(header, cells)).unwrap_or_default();
    *blake3::hash(&bytes).as_bytes()
}

/// The change that makes `before` into `after` (same id), if any.
pub fn content_change(path: &str, before: &Arc<Cell>, after: Cell) -> Option<Change> {
    if **before == after {
        return None;
    }
    let only_source = Cell {
        source: before.source.clone(),
        ..after.clone()
    } == **before;
    Some(if only_source {
        Change::SourceSet {
            path: path.to_owned(),
            cell_id: after.id.clone(),
            before: before.source.clone(),
            after: after.source,
        }
    } else {
        Change::CellReplaced {
            path: path.to_owned(),
            before: before.clone(),
            after: Arc::new(after),
        }
    })
}

/// The id of the live cell just before position `i` (after a removal at `i`).
pub fn predecessor(cells: &[Arc<Cell>], i: usize) -> Option<String> {
    i.checked_sub(1)
        .and_then(|p| cells.get(p))
        .map(|c| c.id.clone())
}

/// Longest common subsequence of `a` and `b` under `eq`, as index pairs;
/// among equally long ones, the one keeping earlier elements of `a` (the
/// rule §8.6 gives for `moved`). The one alignment of the code base:
/// outside changes match id-less cells with it, diffs find moves with it.
/// Quadratic, but bounded by the cell limit.
pub fn lcs<A, B>(a: &[A], b: &[B], eq: impl Fn(&A, &B) -> bool) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if eq(&a[i], &b[j]) {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if eq(&a[i], &b[j]) {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if t[i][j + 1] >= t[i + 1][j] {
            // On a tie, skip in `b`: earlier elements of `a` stay in play,
            // so among equally long alignments the one keeping them wins.
            j += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Renders a notebook's file bytes from per-cell texts.
pub fn render(header: &Header, cells: &[&str]) -> Vec<u8> {
    ipynb::render_notebook(&raw_header(header), cells)
}

/// The text around the cells of a file with this header (see
/// [`ipynb::render_frame`]).
pub fn render_frame(header: &Header) -> (String, String) {
    ipynb::render_frame(&raw_header(header))
}

pub fn render_cell(cell: &Cell) -> String {
    ipynb::render_cell(&raw_of(cell))
}

/// The whole file for a notebook state, byte for byte what the server
/// writes for it (the engine streams the same pieces from its cache).
pub fn render_file(nb: &NotebookState) -> Vec<u8> {
    let cells: Vec<String> = nb.cells.iter().map(|c| render_cell(&c.cell)).collect();
    let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
    render(&nb.header, &refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::projections::Workspace;

    const NB: &str = r##"{
 "cells": [
  {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
  {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], "source": "x = 1"},
  {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": "y = 2"}
 ],
 "metadata": {},
 "nbformat": 4,
 "nbformat_minor": 4
}"##;

    fn state_of(raw: &RawNotebook) -> NotebookState {
        let imp = import("n.ipynb", raw, None);
        let mut ws = Workspace::default();
        ws.apply(&event(1, imp.changes));
        ws.notebooks["n.ipynb"].clone()
    }

    fn event(version: u64, changes: Vec<Change>) -> Event {
        Event {
            version,
            timestamp_ms: 0,
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

    fn replay(old: &NotebookState, changes: Vec<Change>) -> NotebookState {
        let mut ws = Workspace::default();
        ws.notebooks.insert(old.path.clone(), old.clone());
        ws.apply(&event(old.current_version + 1, changes));
        ws.notebooks["n.ipynb"].clone()
    }

    #[test]
    fn import_backfills_ids_and_upgrades_to_4_5() {
        let raw = ipynb::parse(NB.as_bytes()).unwrap();
        let imp = import("n.ipynb", &raw, None);
        assert!(imp.rewrite);
        let st = state_of(&raw);
        assert_eq!(st.header.nbformat_minor, 5);
        assert_eq!(st.cells.len(), 3);
        for c in &st.cells {
            assert_eq!(c.cell.id.len(), 8);
            assert!(
                c.cell
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn outside_edit_without_ids_is_matched_by_content() {
        let raw = ipynb::parse(NB.as_bytes()).unwrap();
        let st = state_of(&raw);
        // The outside tool drops ids, removes the middle cell, edits the last
        // and adds one at the end.
        let mut edited = raw.clone();
        edited.cells.remove(1);
        edited.cells.push(edited.cells[1].clone());
        edited.cells[2].source = "z = 3".into();
        let changes = diff_outside(&st, &edited);
        let after = replay(&st, changes);
        let ids: Vec<&str> = after.cells.iter().map(|c| c.cell.id.as_str()).collect();
        assert_eq!(ids[0], st.cells[0].cell.id);
        assert_eq!(ids[1], st.cells[2].cell.id);
        assert!(!st.id_taken(ids[2]));
        assert!(after.deleted.contains_key(&st.cells[1].cell.id));
        assert_eq!(after.cells[2].cell.source, "z = 3");
    }

    #[test]
    fn outside_reorder_by_id_is_moves() {
        let raw = ipynb::parse(NB.as_bytes()).unwrap();
        let st = state_of(&raw);
        let mut file = raw.clone();
        for (rc, c) in file.cells.iter_mut().zip(&st.cells) {
            rc.id = Some(c.cell.id.clone());
        }
        file.cells.reverse();
        let changes = diff_outside(&st, &file);
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, Change::CellMoved { .. } | Change::HeaderSet { .. }))
        );
        let after = replay(&st, changes);
        let want: Vec<&str> = st.cells.iter().rev().map(|c| c.cell.id.as_str()).collect();
        let got: Vec<&str> = after.cells.iter().map(|c| c.cell.id.as_str()).collect();
        assert_eq!(got, want);
    }
    fn old_header(minor: u64) -> Header {
        Header {
            nbformat: 4,
            nbformat_minor: minor,
            metadata: "{}".into(),
            extra: "{}".into(),
        }
    }

    fn with_notebook(header: Header, cells: usize) -> Workspace {
        let mut changes = vec![Change::NotebookCreated {
            path: "n.ipynb".into(),
            header,
        }];
        for i in 0..cells {
            changes.push(Change::CellInserted {
                path: "n.ipynb".into(),
                index: i as u32,
                cell: Arc::new(Cell::new(
                    format!("c{i}"),
                    CellType::Code,
                    String::new(),
                    None,
                )),
            });
        }
        let mut ws = Workspace::default();
        ws.apply(&event(1, changes));
        ws
    }

    fn insert_one() -> Change {
        Change::CellInserted {
            path: "n.ipynb".into(),
            index: 0,
            cell: Arc::new(Cell::new("new1".into(), CellType::Code, "x".into(), None)),
        }
    }

    #[test]
    fn a_cell_entering_an_old_notebook_raises_it_to_4_5_first() {
        for minor in 0..5 {
            let ws = with_notebook(old_header(minor), 0);
            let changes = raise_minor_for_ids(&ws, &["n.ipynb"], vec![insert_one()]);
            assert_eq!(
                changes[0],
                Change::HeaderSet {
                    path: "n.ipynb".into(),
                    before: old_header(minor),
                    after: old_header(5),
                }
            );
            assert_eq!(changes[1], insert_one());
        }
    }

    #[test]
    fn any_write_of_an_old_notebook_with_cells_raises_it() {
        let ws = with_notebook(old_header(4), 2);
        let lock = Change::LockAcquired {
            path: "n.ipynb".into(),
            cell_id: "c0".into(),
            owner: "a".into(),
            acquired_at: 0,
            expires_at: 1,
        };
        let changes = raise_minor_for_ids(&ws, &["n.ipynb"], vec![lock.clone()]);
        assert!(
            matches!(&changes[0], Change::HeaderSet { after, .. } if after.nbformat_minor == 5)
        );
        assert_eq!(changes[1], lock);
    }

    #[test]
    fn the_raise_follows_the_events_own_header_change() {
        let ws = with_notebook(old_header(5), 1);
        let set = Change::HeaderSet {
            path: "n.ipynb".into(),
            before: old_header(5),
            after: old_header(2),
        };
        let changes = raise_minor_for_ids(&ws, &["n.ipynb"], vec![insert_one(), set.clone()]);
        assert_eq!(changes[..2], [insert_one(), set]);
        assert_eq!(
            changes[2],
            Change::HeaderSet {
                path: "n.ipynb".into(),
                before: old_header(2),
                after: old_header(5),
            }
        );
    }

    #[test]
    fn empty_new_or_future_notebooks_are_left_as_they_are() {
        // Left empty: no ids are written, and 4.0 stays valid.
        let ws = with_notebook(old_header(0), 1);
        let delete = Change::CellDeleted {
            path: "n.ipynb".into(),
            index: 0,
            after_cell_id: None,
            cell: ws.notebooks["n.ipynb"].cells[0].cell.clone(),
        };
        assert_eq!(
            raise_minor_for_ids(&ws, &["n.ipynb"], vec![delete.clone()]),
            [delete]
        );
        for minor in [5, 6, 42] {
            let ws = with_notebook(old_header(minor), 1);
            assert_eq!(
                raise_minor_for_ids(&ws, &["n.ipynb"], vec![insert_one()]),
                [insert_one()]
            );
        }
        // Another notebook's changes are not this one's.
        let ws = with_notebook(old_header(0), 0);
        assert_eq!(
            raise_minor_for_ids(&ws, &["other.ipynb"], vec![insert_one()]),
            [insert_one()]
        );
    }

    fn snap_cells(outputs: &str) -> Vec<Arc<Cell>> {
        let mut code = Cell::new(
            "c0de0001".into(),
            CellType::Code,
            "x = 1.5\nprint('é')".into(),
            Some("{\"tags\":[\"a\"]}".into()),
        );
        code.outputs = Some(outputs.into());
        code.execution_count = Some("3".into());
        let md = Cell::new(
            "d0c00001".into(),
            CellType::Markdown,
            "# Title 🚀".into(),
            None,
        );
        vec![Arc::new(code), Arc::new(md)]
    }

    fn snap_header() -> Header {
        Header {
            nbformat: 4,
            nbformat_minor: 5,
            metadata:
                "{\"kernelspec\":{\"name\":\"python3\",\"display_name\":\"Python 3\"},\"x\":1.0}"
                    .into(),
            extra: "{}".into(),
        }
    }

    /// Pins the canonical snapshot encoding (§8.6): if this changes, every
    /// stored snapshot hash would stop matching its content. The value was
    /// checked independently (Python json + blake3 over the same content).
    #[test]
    fn snapshot_hash_is_pinned() {
        let outputs = r#"[{"name":"stdout","output_type":"stream","text":["1.5\n","é\n"]}]"#;
        let h = snapshot_hash(&snap_header(), &snap_cells(outputs));
        assert_eq!(
            crate::events::codec::hex(&h),
            "8b644d301aeeb0d710f315709ce85a4d595b1d03f5eee21b659357bf478ffb12"
        );
        let canonical =
            serde_jcs::to_string(&canonical(&snap_header(), &snap_cells(outputs))).unwrap();
        // JCS: sorted keys, no spaces, 1.0 written as 1, output lines joined.
        assert!(canonical.starts_with(r#"{"cells":[{"cell_type":"code","execution_count":3,"id":"c0de0001","metadata":{"tags":["a"]},"outputs":[{"name":"stdout","output_type":"stream","text":"1.5\né\n"}]"#), "{canonical}");
        assert!(canonical.contains(r#""x":1}"#), "{canonical}");
    }

    #[test]
    fn equal_content_in_another_shape_has_the_same_hash() {
        let lines = r#"[{"name":"stdout","output_type":"stream","text":["a\n","b"]}]"#;
        let joined = r#"[{"name":"stdout","output_type":"stream","text":"a\nb"}]"#;
        assert_eq!(
            snapshot_hash(&snap_header(), &snap_cells(lines)),
            snapshot_hash(&snap_header(), &snap_cells(joined))
        );
        let other = r#"[{"name":"stdout","output_type":"stream","text":"a\nc"}]"#;
        assert_ne!(
            snapshot_hash(&snap_header(), &snap_cells(lines)),
            snapshot_hash(&snap_header(), &snap_cells(other))
        );
    }
}
