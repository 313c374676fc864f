//! Copying and moving cells, within a notebook or between two, as one
//! event visible in both notebooks' feeds (§8.3).

use std::collections::HashSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{check_locks, find_cell, id_of, to_map};
use crate::engine::{Actor, Engine, Plan};
use crate::error::ToolError;
use crate::events::{Cell, Change};
use crate::notebook::fresh_id;
use crate::paths::NotebookPath;
use crate::projections::NotebookState;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TransferArgs {
    pub source_path: String,
    /// Default: source_path.
    pub dest_path: Option<String>,
    pub cell_ids: Option<Vec<String>>,
    pub cell_id: Option<String>,
    pub dest_cell_id: Option<String>,
    /// The first landed cell's index, counted without the moved cells.
    pub dest_index: Option<i64>,
    /// move_cells only.
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Mapping {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TransferOut {
    pub cell_ids: Vec<String>,
    pub mapping: Vec<Mapping>,
    pub version: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Copy,
    Move,
}

/// The source cells, resolved and checked: live, each once.
fn sources(nb: &NotebookState, a: &TransferArgs) -> Result<Vec<usize>, ToolError> {
    let ids: Vec<String> = match (&a.cell_ids, &a.cell_id) {
        (Some(ids), None) => ids.clone(),
        (None, Some(id)) => vec![id.clone()],
        (Some(ids), Some(id)) => ids
            .iter()
            .cloned()
            .chain(std::iter::once(id.clone()))
            .collect(),
        (None, None) => {
            return Err(ToolError::invalid(
                "cell_ids",
                "a non-empty list of cell ids",
                "say which cells with cell_ids",
            ));
        }
    };
    if ids.is_empty() {
        return Err(ToolError::invalid(
            "cell_ids",
            "a non-empty list of cell ids",
            "cell_ids is empty",
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        let i = find_cell(nb, "cell_ids", Some(id), None)?;
        if out.contains(&i) {
            return Err(ToolError::invalid(
                "cell_ids",
                "each cell once",
                format!("cell {} is listed twice", nb.cells[i].cell.id),
            ));
        }
        out.push(i);
    }
    Ok(out)
}

/// Where the first landed cell goes in `remaining` (the destination's
/// cells, without moved ones when moving within one notebook).
fn landing(
    dest: &NotebookState,
    remaining: &[Arc<Cell>],
    a: &TransferArgs,
    moving: &HashSet<String>,
) -> Result<usize, ToolError> {
    match (&a.dest_cell_id, a.dest_index) {
        (Some(_), Some(_)) => Err(ToolError::invalid(
            "dest_index",
            "either dest_cell_id or dest_index",
            "give either dest_cell_id or dest_index, not both",
        )),
        (Some(anchor), None) => {
            let i = id_of(dest, anchor)?;
            let id = &dest.cells[i].cell.id;
            if moving.contains(id) {
                return Err(ToolError::invalid(
                    "dest_cell_id",
                    "a cell that is not being moved",
                    format!(
                        "dest_cell_id {id} is one of the cells being moved; anchor on another cell"
                    ),
                ));
            }
            Ok(remaining
                .iter()
                .position(|c| &c.id == id)
                .map_or(remaining.len(), |p| p + 1))
        }
        (None, Some(i)) => {
            if i < 0 || i as usize > remaining.len() {
                return Err(ToolError::not_found(
                    "cell",
                    format!(
                        "dest_index {i} is past the end: {} cells remain; use {} for the end",
                        remaining.len(),
                        remaining.len()
                    ),
                )
                .with("cell_count", remaining.len()));
            }
            Ok(i as usize)
        }
        (None, None) => Ok(remaining.len()),
    }
}

fn plan(
    kind: Kind,
    a: &TransferArgs,
    (src, sp): (&NotebookState, &NotebookPath),
    (dest, dp): (&NotebookState, &NotebookPath),
    actor: &Actor,
    now: i64,
) -> Result<Plan, ToolError> {
    let picked = sources(src, a)?;
    let cells: Vec<Arc<Cell>> = picked.iter().map(|&i| src.cells[i].cell.clone()).collect();
    let from_ids: Vec<String> = cells.iter().map(|c| c.id.clone()).collect();
    let same = sp.rel == dp.rel;
    let overrode = match kind {
        // Copy checks no locks; move checks them in the source only (§8.3).
        Kind::Copy => Vec::new(),
        Kind::Move => check_locks(src, &from_ids, actor, a.force.unwrap_or(false), now)?,
    };
    let moving: HashSet<String> = if kind == Kind::Move && same {
        from_ids.iter().cloned().collect()
    } else {
        HashSet::new()
    };
    let remaining: Vec<Arc<Cell>> = dest
        .cells
        .iter()
        .map(|c| c.cell.clone())
        .filter(|c| !moving.contains(&c.id))
        .collect();
    let at = landing(dest, &remaining, a, &moving)?;
    super::common::check_count(cells.len())?;

    let mut changes = Vec::new();
    let mut mapping = Vec::with_capacity(cells.len());
    let mut taken: Vec<String> = Vec::new();
    let mut new_id = |wanted: Option<&str>| -> String {
        match wanted {
            Some(id) if !dest.id_taken(id) && !taken.iter().any(|t| t == id) => {
                taken.push(id.to_owned());
                id.to_owned()
            }
            _ => {
                let id = fresh_id(&|c| dest.id_taken(c) || taken.iter().any(|t| t == c));
                taken.push(id.clone());
                id
            }
        }
    };
    match (kind, same) {
        (Kind::Copy, _) => {
            for (k, cell) in cells.iter().enumerate() {
                let id = new_id(None);
                mapping.push(Mapping {
                    from: cell.id.clone(),
                    to: id.clone(),
                });
                changes.push(Change::CellCopied {
                    path: dp.rel.clone(),
                    index: (at + k) as u32,
                    cell: Arc::new(Cell {
                        id,
                        ..(**cell).clone()
                    }),
                    from_path: sp.rel.clone(),
                    from_id: cell.id.clone(),
                });
            }
        }
        (Kind::Move, true) => {
            // Reorder: the target is remaining[..at] + moved + remaining[at..].
            // Each moved cell goes right after its anchor (the remaining cell
            // before the landing point, then the cell placed before it), so
            // cells not yet placed never skew the positions.
            let mut order: Vec<String> = src.cells.iter().map(|c| c.cell.id.clone()).collect();
            let mut anchor: Option<String> = at.checked_sub(1).map(|p| remaining[p].id.clone());
            for id in &from_ids {
                let from = order.iter().position(|c| c == id).unwrap_or(0);
                let item = order.remove(from);
                let to = anchor
                    .as_ref()
                    .and_then(|a| order.iter().position(|c| c == a))
                    .map_or(0, |p| p + 1);
                order.insert(to, item);
                if from != to {
                    changes.push(Change::CellMoved {
                        path: sp.rel.clone(),
                        cell_id: id.clone(),
                        from: from as u32,
                        to: to as u32,
                    });
                }
                anchor = Some(id.clone());
                mapping.push(Mapping {
                    from: id.clone(),
                    to: id.clone(),
                });
            }
        }
        (Kind::Move, false) => {
            let mut order: Vec<String> = src.cells.iter().map(|c| c.cell.id.clone()).collect();
            let mut arrivals = Vec::new();
            for cell in &cells {
                let to_id = new_id(Some(&cell.id));
                let index = order.iter().position(|c| c == &cell.id).unwrap_or(0);
                order.remove(index);
                if let Some(lock) = src.lock_at(&cell.id, now) {
                    // The lock follows the cell, even to a new id (§8.5).
                    changes.push(Change::LockReleased {
                        path: sp.rel.clone(),
                        cell_id: cell.id.clone(),
                        owner: lock.owner.clone(),
                        forced: false,
                    });
                    arrivals.push((to_id.clone(), lock.clone()));
                } else if src.locks.contains_key(&cell.id) {
                    changes.push(Change::LockReleased {
                        path: sp.rel.clone(),
                        cell_id: cell.id.clone(),
                        owner: src.locks[&cell.id].owner.clone(),
                        forced: false,
                    });
                }
                changes.push(Change::CellMovedOut {
                    path: sp.rel.clone(),
                    cell_id: cell.id.clone(),
                    index: index as u32,
                    to_path: dp.rel.clone(),
                    to_id: to_id.clone(),
                });
                mapping.push(Mapping {
                    from: cell.id.clone(),
                    to: to_id,
                });
            }
            for (k, (cell, m)) in cells.iter().zip(&mapping).enumerate() {
                changes.push(Change::CellMovedIn {
                    path: dp.rel.clone(),
                    index: (at + k) as u32,
                    cell: Arc::new(Cell {
                        id: m.to.clone(),
                        ..(**cell).clone()
                    }),
                    from_path: sp.rel.clone(),
                    from_id: cell.id.clone(),
                });
            }
            for (to_id, lock) in arrivals {
                changes.push(Change::LockAcquired {
                    path: dp.rel.clone(),
                    cell_id: to_id,
                    owner: lock.owner,
                    acquired_at: lock.acquired_at,
                    expires_at: lock.expires_at,
                });
            }
        }
    }
    let operation = if kind == Kind::Copy {
        "copy_cells"
    } else {
        "move_cells"
    };
    let verb = if kind == Kind::Copy {
        "copied"
    } else {
        "moved"
    };
    let summary: String = format!(
        "{verb} {} cell(s) from {} to {} at {at}",
        cells.len(),
        sp.rel,
        dp.rel
    )
    .chars()
    .take(200)
    .collect();
    let to_ids: Vec<String> = mapping.iter().map(|m| m.to.clone()).collect();
    Ok(Plan {
        operation,
        overrode_locks: overrode,
        summary,
        changes,
        cell_ids: from_ids,
        result: Box::new(move |version, _| {
            to_map(&TransferOut {
                cell_ids: to_ids,
                mapping,
                version,
            })
        }),
    })
}

fn run(
    kind: Kind,
    engine: &Engine,
    a: TransferArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    if kind == Kind::Copy && a.force.is_some() {
        return Err(ToolError::invalid(
            "force",
            "no force: copies check no locks",
            "copy_cells takes no force: copies never touch locked cells",
        ));
    }
    let dest = a.dest_path.clone().unwrap_or_else(|| a.source_path.clone());
    let op = if kind == Kind::Copy {
        "copy_cells"
    } else {
        "move_cells"
    };
    let source = a.source_path.clone();
    let who = actor.clone();
    let res = engine.write_pair(&source, &dest, actor, op, move |src, dst, sp, dp, now| {
        plan(kind, &a, (src, sp), (dst, dp), &who, now)
    })?;
    let n = res["cell_ids"].as_array().map_or(0, Vec::len);
    let verb = if kind == Kind::Copy {
        "copied"
    } else {
        "moved"
    };
    Ok((format!("{verb} {n} cell(s)"), res))
}

pub fn copy_cells(
    engine: &Engine,
    a: TransferArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    run(Kind::Copy, engine, a, actor)
}

pub fn move_cells(
    engine: &Engine,
    a: TransferArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    run(Kind::Move, engine, a, actor)
}
