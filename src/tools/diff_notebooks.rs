//! `diff_notebooks` (§10): two notebooks, or one at two versions, compared
//! as `diff_snapshot` compares (§8.6). Cells are matched by id, then the
//! rest by the one LCS over (cell_type, source); past states come from the
//! engine's one replay path, never a replay of the whole log.

use std::collections::HashSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::to_map;
use super::snapshots::{Added, Deleted, Modified, Moved, diff_labelled, live_cells};
use crate::engine::Engine;
use crate::error::ToolError;
use crate::events::Cell;
use crate::notebook::lcs;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DiffNotebooksArgs {
    pub path: String,
    /// Default: path.
    pub other_path: Option<String>,
    pub version: Option<u64>,
    pub other_version: Option<u64>,
    /// At most 50.
    #[schemars(extend("default" = 3))]
    pub context_lines: Option<u64>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Side {
    pub path: String,
    pub version: u64,
}

/// A cell of `from` matched to one of `to` by type and source, not by id.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Paired {
    pub from_cell_id: String,
    pub to_cell_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffNotebooksOut {
    pub from: Side,
    pub to: Side,
    pub added: Vec<Added>,
    pub deleted: Vec<Deleted>,
    pub modified: Vec<Modified>,
    pub moved: Vec<Moved>,
    pub unchanged: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_by_content: Vec<Paired>,
}

/// One side: its cells and where it was read.
fn side(
    engine: &Engine,
    path: &str,
    version: Option<u64>,
    arg: &str,
) -> Result<(Vec<Arc<Cell>>, Side), ToolError> {
    match version {
        Some(v) => {
            let nb = engine.notebook_at_arg(path, v, arg)?;
            Ok((
                live_cells(&nb),
                Side {
                    path: nb.path.clone(),
                    version: v,
                },
            ))
        }
        None => engine.read(path, |nb| {
            Ok((
                live_cells(nb),
                Side {
                    path: nb.path.clone(),
                    version: nb.current_version,
                },
            ))
        }),
    }
}

/// `from` with each cell whose id `to` lacks renamed to the `to` cell an
/// LCS over (cell_type, source) pairs it with, among cells of `to` whose
/// id `from` lacks; and those pairs.
fn align(from: &[Arc<Cell>], to: &[Arc<Cell>]) -> (Vec<Arc<Cell>>, Vec<Paired>) {
    let from_ids: HashSet<&str> = from.iter().map(|c| c.id.as_str()).collect();
    let to_ids: HashSet<&str> = to.iter().map(|c| c.id.as_str()).collect();
    let lone_from: Vec<usize> = (0..from.len())
        .filter(|&i| !to_ids.contains(from[i].id.as_str()))
        .collect();
    let lone_to: Vec<&Arc<Cell>> = to
        .iter()
        .filter(|c| !from_ids.contains(c.id.as_str()))
        .collect();
    let mut out = from.to_vec();
    let mut pairs = Vec::new();
    for (fi, ti) in lcs(&lone_from, &lone_to, |&i, c| {
        from[i].cell_type == c.cell_type && from[i].source == c.source
    }) {
        let i = lone_from[fi];
        let mut cell = (*from[i]).clone();
        cell.id = lone_to[ti].id.clone();
        pairs.push(Paired {
            from_cell_id: from[i].id.clone(),
            to_cell_id: cell.id.clone(),
        });
        out[i] = Arc::new(cell);
    }
    (out, pairs)
}

pub fn diff_notebooks(
    engine: &Engine,
    a: DiffNotebooksArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let context = a.context_lines.unwrap_or(3).min(50) as usize;
    let other = a.other_path.clone().unwrap_or_else(|| a.path.clone());
    let (from_cells, from) = side(engine, &a.path, a.version, "version")?;
    let (to_cells, to) = side(engine, &other, a.other_version, "other_version")?;
    let (aligned, matched_by_content) = align(&from_cells, &to_cells);
    let labels = (
        format!("{}@{}", from.path, from.version),
        format!("{}@{}", to.path, to.version),
    );
    let (added, deleted, modified, moved, unchanged) =
        diff_labelled(&aligned, &to_cells, context, (&labels.0, &labels.1));
    let out = DiffNotebooksOut {
        from,
        to,
        added,
        deleted,
        modified,
        moved,
        unchanged,
        matched_by_content,
    };
    let summary = format!(
        "{} → {}: {} added, {} deleted, {} modified, {} moved, {} unchanged",
        labels.0,
        labels.1,
        out.added.len(),
        out.deleted.len(),
        out.modified.len(),
        out.moved.len(),
        out.unchanged
    );
    Ok((summary, to_map(&out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CellType;

    fn cell(id: &str, source: &str) -> Arc<Cell> {
        Arc::new(Cell::new(id.into(), CellType::Code, source.into(), None))
    }

    #[test]
    fn ids_match_first_then_content_in_order() {
        let from = [cell("a", "x"), cell("b", "y"), cell("c", "z")];
        let to = [cell("a", "x2"), cell("q", "z"), cell("r", "new")];
        let (aligned, pairs) = align(&from, &to);
        let ids: Vec<&str> = aligned.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "q"]);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].from_cell_id, "c");
        let (added, deleted, modified, moved, unchanged) =
            diff_labelled(&aligned, &to, 3, ("f", "t"));
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].cell_id, "r");
        assert_eq!(deleted[0].cell_id, "b");
        assert_eq!(modified[0].cell_id, "a");
        assert!(moved.is_empty());
        assert_eq!(unchanged, 1);
    }
}
