//! Taking in a save that landed while a write was in flight (§8.8).
//!
//! The engine checks a file, commits its write, then swaps its new file in.
//! A program that saved the notebook between the check and the swap has its
//! file displaced by the swap: that file was based on the state the check
//! saw (`base`), while the log has since moved on (`ours`). Its changes
//! relative to `base` go on top of `ours`, matched by cell id; a cell both
//! sides changed keeps ours, and the outside version is first recorded (so
//! history can bring it back) and then set back to ours.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::events::{Cell, Header};
use crate::ipynb::RawNotebook;
use crate::projections::NotebookState;

use super::{header_of, outside_cells, render_cell};

/// A notebook's content: its header and cells in order.
pub type Content = (Header, Vec<Arc<Cell>>);

/// How a displaced outside save is taken in: two steps, so that the log
/// holds the outside version of every cell both sides changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LateSave {
    /// Ours with every change of the outside save on top; where both sides
    /// changed a cell (or the header), the outside version.
    pub taken_in: Content,
    /// The result: as `taken_in`, but ours wherever both sides changed.
    pub merged: Content,
    /// Cells both sides changed (ours kept), in the order of `taken_in`.
    pub conflicts: Vec<String>,
}

/// Whether two cells would be written to the file the same way.
fn same(a: &Arc<Cell>, b: &Arc<Cell>) -> bool {
    Arc::ptr_eq(a, b) || a == b || render_cell(a) == render_cell(b)
}

/// Three-way merge of `theirs` (a file based on `base`) onto `ours`.
/// `None` when the file holds nothing ours lacks.
pub fn merge_late_save(
    base: &Content,
    ours: &NotebookState,
    theirs: &RawNotebook,
) -> Option<LateSave> {
    let (base_header, base_cells) = base;
    let base_ids: HashSet<&str> = base_cells.iter().map(|c| c.id.as_str()).collect();
    let theirs_cells = outside_cells(
        base_cells,
        &|c| base_ids.contains(c) || ours.id_taken(c),
        theirs,
    );
    let ours_cells: Vec<Arc<Cell>> = ours.cells.iter().map(|c| c.cell.clone()).collect();
    let by_id = |cells: &[Arc<Cell>]| -> HashMap<String, Arc<Cell>> {
        cells.iter().map(|c| (c.id.clone(), c.clone())).collect()
    };
    let (b, t, o) = (by_id(base_cells), by_id(&theirs_cells), by_id(&ours_cells));

    // Per id: the cell in the result and in the taken-in step.
    let mut merged: HashMap<String, Arc<Cell>> = HashMap::new();
    let mut taken: HashMap<String, Arc<Cell>> = HashMap::new();
    let mut conflicts: HashSet<String> = HashSet::new();
    let ids: Vec<&String> = ours_cells
        .iter()
        .chain(&theirs_cells)
        .chain(base_cells)
        .map(|c| &c.id)
        .collect();
    for id in ids {
        if merged.contains_key(id) || taken.contains_key(id) || conflicts.contains(id) {
            continue;
        }
        let (bc, tc, oc) = (b.get(id), t.get(id), o.get(id));
        let changed = |x: Option<&Arc<Cell>>| match (x, bc) {
            (Some(x), Some(b)) => !same(x, b),
            (None, None) => false,
            _ => true,
        };
        let (they, we) = (changed(tc), changed(oc));
        let (final_cell, taken_cell) = if they && !we {
            (tc, tc)
        } else if they && we && !matches!((tc, oc), (Some(x), Some(y)) if same(x, y)) {
            conflicts.insert(id.clone());
            (oc, tc)
        } else {
            (oc, oc)
        };
        if let Some(c) = final_cell {
            merged.insert(id.clone(), c.clone());
        }
        if let Some(c) = taken_cell {
            taken.insert(id.clone(), c.clone());
        }
    }

    // Order: the outside save's order when ours kept base's, else ours,
    // with the other side's extra cells after their nearest predecessor.
    let ids_of =
        |cells: &[Arc<Cell>]| -> Vec<String> { cells.iter().map(|c| c.id.clone()).collect() };
    let (primary, secondary) = if ids_of(&ours_cells) == ids_of(base_cells) {
        (ids_of(&theirs_cells), ids_of(&ours_cells))
    } else {
        (ids_of(&ours_cells), ids_of(&theirs_cells))
    };
    let order = |present: &HashMap<String, Arc<Cell>>| -> Vec<Arc<Cell>> {
        let mut out: Vec<String> = primary
            .iter()
            .filter(|id| present.contains_key(*id))
            .cloned()
            .collect();
        let mut front = 0;
        for (i, id) in secondary.iter().enumerate() {
            if !present.contains_key(id) || out.contains(id) {
                continue;
            }
            let after = secondary[..i]
                .iter()
                .rev()
                .find_map(|p| out.iter().position(|x| x == p));
            match after {
                Some(at) => out.insert(at + 1, id.clone()),
                None => {
                    out.insert(front, id.clone());
                    front += 1;
                }
            }
        }
        // Cells only the base order knows (none today) are not dropped.
        for id in present.keys() {
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out.into_iter()
            .filter_map(|id| present.get(&id).cloned())
            .collect()
    };

    let theirs_header = header_of(theirs);
    let they_h = theirs_header != *base_header;
    let we_h = ours.header != *base_header;
    let taken_header = if they_h {
        theirs_header.clone()
    } else {
        ours.header.clone()
    };
    let merged_header = if they_h && !we_h {
        theirs_header
    } else {
        ours.header.clone()
    };

    let taken_cells = order(&taken);
    let unchanged = taken_header == ours.header
        && taken_cells.len() == ours_cells.len()
        && taken_cells
            .iter()
            .zip(&ours_cells)
            .all(|(a, b)| a.id == b.id && same(a, b));
    if unchanged {
        return None;
    }
    let conflicts = taken_cells
        .iter()
        .map(|c| c.id.clone())
        .chain(
            ours_cells
                .iter()
                .map(|c| c.id.clone())
                .filter(|id| !taken.contains_key(id)),
        )
        .filter(|id| conflicts.contains(id))
        .collect();
    Some(LateSave {
        taken_in: (taken_header, taken_cells),
        merged: (merged_header, order(&merged)),
        conflicts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{CellType, Change, Event};
    use crate::ipynb;
    use crate::projections::Workspace;

    fn cell(id: &str, src: &str) -> Arc<Cell> {
        Arc::new(Cell::new(id.into(), CellType::Code, src.into(), None))
    }

    fn header() -> Header {
        Header {
            nbformat: 4,
            nbformat_minor: 5,
            metadata: "{}".into(),
            extra: "{}".into(),
        }
    }

    /// A notebook state holding `cells`.
    fn state(cells: &[Arc<Cell>]) -> NotebookState {
        let mut changes = vec![Change::NotebookCreated {
            path: "n.ipynb".into(),
            header: header(),
        }];
        for (i, c) in cells.iter().enumerate() {
            changes.push(Change::CellInserted {
                path: "n.ipynb".into(),
                index: i as u32,
                cell: c.clone(),
            });
        }
        let mut ws = Workspace::default();
        ws.apply(&Event {
            version: 1,
            timestamp_ms: 1,
            client_name: "t".into(),
            operation: "create_notebook".into(),
            paths: vec!["n.ipynb".into()],
            cell_ids: vec![],
            overrode_locks: vec![],
            request_id: None,
            result: String::new(),
            summary: String::new(),
            changes,
            files: vec![],
        });
        ws.notebook("n.ipynb").unwrap().clone()
    }

    /// The file an outside program saves with `cells`.
    fn file(cells: &[Arc<Cell>]) -> RawNotebook {
        let texts: Vec<String> = cells.iter().map(|c| render_cell(c)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        ipynb::parse(&super::super::render(&header(), &refs)).unwrap()
    }

    fn sources(c: &[Arc<Cell>]) -> Vec<(&str, &str)> {
        c.iter()
            .map(|c| (c.id.as_str(), c.source.as_str()))
            .collect()
    }

    #[test]
    fn changes_to_other_cells_go_on_top_of_the_write() {
        let base = vec![cell("aaaa", "a"), cell("bbbb", "b"), cell("cccc", "c")];
        let ours = state(&[cell("aaaa", "A by agent"), base[1].clone(), base[2].clone()]);
        let theirs = file(&[
            base[0].clone(),
            cell("bbbb", "B by person"),
            cell("dddd", "new by person"),
            base[2].clone(),
        ]);
        let m = merge_late_save(&(header(), base), &ours, &theirs).unwrap();
        let want = vec![
            ("aaaa", "A by agent"),
            ("bbbb", "B by person"),
            ("dddd", "new by person"),
            ("cccc", "c"),
        ];
        assert_eq!(sources(&m.merged.1), want);
        assert_eq!(sources(&m.taken_in.1), want);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn a_cell_both_changed_keeps_the_write_after_recording_theirs() {
        let base = vec![cell("aaaa", "a"), cell("bbbb", "b")];
        let ours = state(&[cell("aaaa", "agent"), base[1].clone()]);
        let theirs = file(&[cell("aaaa", "person"), cell("bbbb", "b2")]);
        let m = merge_late_save(&(header(), base), &ours, &theirs).unwrap();
        assert_eq!(
            sources(&m.taken_in.1),
            vec![("aaaa", "person"), ("bbbb", "b2")]
        );
        assert_eq!(
            sources(&m.merged.1),
            vec![("aaaa", "agent"), ("bbbb", "b2")]
        );
        assert_eq!(m.conflicts, vec!["aaaa".to_owned()]);
    }

    #[test]
    fn deletions_on_either_side_hold_unless_the_other_side_changed_the_cell() {
        let base = vec![cell("aaaa", "a"), cell("bbbb", "b"), cell("cccc", "c")];
        // We deleted cccc and edited bbbb; they deleted bbbb and kept cccc.
        let ours = state(&[base[0].clone(), cell("bbbb", "agent")]);
        let theirs = file(&[base[0].clone(), base[2].clone()]);
        let m = merge_late_save(&(header(), base), &ours, &theirs).unwrap();
        assert_eq!(sources(&m.merged.1), vec![("aaaa", "a"), ("bbbb", "agent")]);
        // The outside deletion of the cell we edited is on record first.
        assert_eq!(sources(&m.taken_in.1), vec![("aaaa", "a")]);
        assert_eq!(m.conflicts, vec!["bbbb".to_owned()]);
    }

    #[test]
    fn an_identical_save_takes_nothing_in() {
        let base = vec![cell("aaaa", "a")];
        let ours = state(&[cell("aaaa", "agent")]);
        let theirs = file(&base);
        assert_eq!(merge_late_save(&(header(), base), &ours, &theirs), None);
    }

    #[test]
    fn cells_without_ids_in_the_save_match_base_by_content() {
        let base = vec![cell("aaaa", "a"), cell("bbbb", "b")];
        let ours = state(&[cell("aaaa", "agent"), base[1].clone()]);
        let mut theirs = file(&[base[0].clone(), cell("bbbb", "b"), cell("zzzz", "new")]);
        for c in &mut theirs.cells {
            c.id = None;
        }
        let m = merge_late_save(&(header(), base), &ours, &theirs).unwrap();
        let got = sources(&m.merged.1);
        assert_eq!(&got[..2], &[("aaaa", "agent"), ("bbbb", "b")]);
        assert_eq!(got[2].1, "new");
        assert!(m.conflicts.is_empty());
    }
}
