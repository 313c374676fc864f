//! Tools that change notebooks: create, insert, update, delete, retype.
//! Each validates its arguments against the current state, plans the
//! changes, and lets the engine commit them as one event.

use std::collections::HashSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::common::{self, check_locks, check_source, find_cell, placement, to_map};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{Code, ToolError, quote};
use crate::events::{Cell, CellType, Change, Header};
use crate::notebook::{fresh_id, object_text, predecessor};
use crate::projections::NotebookState;

/// A new cell.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct CellSpec {
    pub source: String,
    #[schemars(extend("enum" = ["code", "markdown", "raw"], "default" = "code"))]
    pub cell_type: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

impl CellSpec {
    /// The cell's type: an argument check, made before anything else.
    fn kind(&self, arg: &str) -> Result<CellType, ToolError> {
        common::cell_type(arg, self.cell_type.as_deref())
    }

    fn build(&self, id: String, t: CellType) -> Cell {
        let meta = self.metadata.as_ref().map(object_text);
        Cell::new(id, t, self.source.clone(), meta)
    }
}

/// Checks every spec's type (arguments come first, §8.2).
fn kinds(specs: &[CellSpec]) -> Result<Vec<CellType>, ToolError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| s.kind(&format!("cells[{i}].cell_type")))
        .collect()
}

/// Size limits come last among the checks (§8.2).
fn check_sizes<'a>(n: usize, sources: impl Iterator<Item = &'a str>) -> Result<(), ToolError> {
    common::check_count(n)?;
    for s in sources {
        check_source(s)?;
    }
    Ok(())
}

/// Ids for `n` new cells, unique among the notebook's live and deleted ids.
fn new_ids(nb: Option<&NotebookState>, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(n);
    for _ in 0..n {
        let id = fresh_id(&|c| ids.iter().any(|x| x == c) || nb.is_some_and(|nb| nb.id_taken(c)));
        ids.push(id);
    }
    ids
}

/// `lock: true` on an insert (§10): the lease in ms, after the checks
/// `lock_cells` makes (a name to own it, a ttl in range).
fn lease(lock: Option<bool>, ttl: Option<u64>, actor: &Actor) -> Result<Option<i64>, ToolError> {
    if !lock.unwrap_or(false) {
        return Ok(None);
    }
    super::locks::require_name(actor)?;
    let ttl = ttl.unwrap_or(600);
    if !(1..=super::locks::MAX_TTL_S).contains(&ttl) {
        return Err(ToolError::invalid(
            "ttl_seconds",
            "1 to 86400",
            format!("ttl_seconds {ttl} is out of range; give 1 to 86400 seconds"),
        ));
    }
    Ok(Some(ttl as i64 * 1000))
}

/// The locks that make new cells `ids` the caller's from their first event.
fn new_cell_locks(path: &str, ids: &[String], owner: &str, now: i64, lease: i64) -> Vec<Change> {
    ids.iter()
        .map(|id| Change::LockAcquired {
            path: path.to_owned(),
            cell_id: id.clone(),
            owner: owner.to_owned(),
            acquired_at: now,
            expires_at: now + lease,
        })
        .collect()
}

pub(super) fn existing(nb: Option<&NotebookState>) -> Result<&NotebookState, ToolError> {
    nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))
}

/// Cells of a type this build does not know are kept whole but not edited:
/// their content lives in fields nbledger would not write back.
pub(super) fn editable(nb: &NotebookState, i: usize) -> Result<(), ToolError> {
    let cell = &nb.cells[i].cell;
    if let CellType::Other(t) = &cell.cell_type {
        return Err(ToolError::invalid(
            "cell_id",
            "a code, markdown or raw cell",
            format!(
                "cell {} has type {} from a newer nbformat; nbledger keeps it as is but cannot edit it (it can be moved or deleted)",
                cell.id,
                quote(t)
            ),
        ));
    }
    Ok(())
}

/// `expected_version` is a compare-and-swap token (§8.4).
pub(super) fn check_expected(
    nb: &NotebookState,
    i: usize,
    expected: Option<u64>,
) -> Result<(), ToolError> {
    let live = &nb.cells[i];
    match expected {
        Some(e) if e < live.last_version => Err(ToolError::new(
            Code::VersionConflict,
            format!(
                "cell {} changed at version {} after your expected_version {e}; re-read it, merge, and retry with expected_version {}",
                live.cell.id, live.last_version, live.last_version
            ),
        )
        .with("current", json!({"last_version": live.last_version, "source": live.cell.source}))),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- create

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateArgs {
    pub path: String,
    pub cells: Option<Vec<CellSpec>>,
    #[schemars(extend("default" = "python3"))]
    pub kernel_name: Option<String>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateOut {
    pub path: String,
    pub cell_ids: Vec<String>,
    pub version: u64,
}

pub fn create_notebook(
    engine: &Engine,
    a: CreateArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let specs = a.cells.unwrap_or_default();
    let types = kinds(&specs)?;
    let kernel = a.kernel_name.unwrap_or_else(|| "python3".to_owned());
    if kernel.is_empty() || kernel.chars().count() > 128 || kernel.chars().any(char::is_control) {
        return Err(ToolError::invalid(
            "kernel_name",
            "a kernel name such as python3",
            "kernel_name must be 1-128 printable characters",
        ));
    }
    let n_cells = specs.len();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Create,
        "create_notebook",
        move |prior, np, _now| {
            let path = np.rel.clone();
            let mut changes = Vec::new();
            // A path whose file was removed keeps its history: its old cells
            // are deleted (recoverable) and the notebook starts again.
            if let Some(old) = prior {
                let mut order: Vec<Arc<Cell>> = old.cells.iter().map(|c| c.cell.clone()).collect();
                while let Some(cell) = order.pop() {
                    let index = order.len();
                    changes.push(Change::CellDeleted {
                        path: path.clone(),
                        index: index as u32,
                        after_cell_id: predecessor(&order, index),
                        cell,
                    });
                }
            }
            let display = if kernel == "python3" {
                "Python 3 (ipykernel)".to_owned()
            } else {
                kernel.clone()
            };
            let mut kernelspec = json!({"display_name": display, "name": kernel});
            let mut metadata = Map::new();
            if kernel.starts_with("python") {
                kernelspec["language"] = json!("python");
                metadata.insert("language_info".into(), json!({"name": "python"}));
            }
            metadata.insert("kernelspec".into(), kernelspec);
            changes.push(Change::NotebookCreated {
                path: path.clone(),
                header: Header {
                    nbformat: 4,
                    nbformat_minor: 5,
                    metadata: object_text(&metadata),
                    extra: "{}".to_owned(),
                },
            });
            check_sizes(specs.len(), specs.iter().map(|s| s.source.as_str()))?;
            let ids = new_ids(prior, specs.len());
            for (i, ((spec, id), t)) in specs.iter().zip(&ids).zip(&types).enumerate() {
                changes.push(Change::CellInserted {
                    path: path.clone(),
                    index: i as u32,
                    cell: Arc::new(spec.build(id.clone(), t.clone())),
                });
            }
            let out_ids = ids.clone();
            Ok(Plan {
                operation: "create_notebook",
                overrode_locks: Vec::new(),
                changes,
                cell_ids: ids,
                summary: format!("created {} with {} cells", path, specs.len()),
                result: Box::new(move |version, _| {
                    to_map(&CreateOut {
                        path,
                        cell_ids: out_ids,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((
        format!(
            "created {} ({} cells)",
            res["path"].as_str().unwrap_or(""),
            n_cells
        ),
        res,
    ))
}

// ---------------------------------------------------------------- insert

#[derive(Debug, Deserialize, JsonSchema)]
pub struct InsertArgs {
    pub path: String,
    pub source: String,
    #[schemars(extend("enum" = ["code", "markdown", "raw"], "default" = "code"))]
    pub cell_type: Option<String>,
    pub index: Option<i64>,
    pub after_cell_id: Option<String>,
    pub before_cell_id: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    /// Lock the new cell to you in the same event (needs a client_name).
    #[schemars(extend("default" = false))]
    pub lock: Option<bool>,
    /// With lock: 1–86400.
    #[schemars(extend("default" = 600))]
    pub ttl_seconds: Option<u64>,
    /// Then run the written code cells as execute_cell does (timeout_s, max_output_chars, include_images): the result adds runs.
    #[schemars(extend("default" = false))]
    pub execute: Option<bool>,
    #[schemars(extend("default" = 30))]
    pub timeout_s: Option<f64>,
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InsertOut {
    pub cell_id: String,
    pub index: usize,
    pub version: u64,
}

pub fn insert_cell(
    engine: &Engine,
    a: InsertArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let spec = CellSpec {
        source: a.source,
        cell_type: a.cell_type,
        metadata: a.metadata,
    };
    let t = spec.kind("cell_type")?;
    let lease = lease(a.lock, a.ttl_seconds, actor)?;
    let owner = actor.client_name.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "insert_cell",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let at = placement(
                nb,
                a.index,
                a.after_cell_id.as_deref(),
                a.before_cell_id.as_deref(),
            )?;
            check_source(&spec.source)?;
            let id = new_ids(Some(nb), 1).remove(0);
            let cell = Arc::new(spec.build(id.clone(), t));
            let mut summary = format!("inserted {} cell {} at {}", cell.cell_type.as_str(), id, at);
            let mut changes = vec![Change::CellInserted {
                path: np.rel.clone(),
                index: at as u32,
                cell,
            }];
            if let Some(lease) = lease {
                changes.extend(new_cell_locks(
                    &np.rel,
                    std::slice::from_ref(&id),
                    &owner,
                    now,
                    lease,
                ));
                summary.push_str(&format!(", locked to {owner}"));
            }
            Ok(Plan {
                operation: "insert_cell",
                overrode_locks: Vec::new(),
                changes,
                cell_ids: vec![id.clone()],
                summary,
                result: Box::new(move |version, _| {
                    to_map(&InsertOut {
                        cell_id: id,
                        index: at,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((
        format!(
            "inserted cell {} at index {}",
            res["cell_id"].as_str().unwrap_or(""),
            res["index"]
        ),
        res,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BatchInsertArgs {
    pub path: String,
    pub cells: Vec<CellSpec>,
    pub index: Option<i64>,
    pub after_cell_id: Option<String>,
    pub before_cell_id: Option<String>,
    /// Lock the new cells to you in the same event (needs a client_name).
    #[schemars(extend("default" = false))]
    pub lock: Option<bool>,
    /// With lock: 1–86400.
    #[schemars(extend("default" = 600))]
    pub ttl_seconds: Option<u64>,
    /// Then run the written code cells as execute_cell does (timeout_s, max_output_chars, include_images): the result adds runs.
    #[schemars(extend("default" = false))]
    pub execute: Option<bool>,
    #[schemars(extend("default" = 30))]
    pub timeout_s: Option<f64>,
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct IdsOut {
    pub cell_ids: Vec<String>,
    pub version: u64,
}

pub fn batch_insert_cells(
    engine: &Engine,
    a: BatchInsertArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let types = kinds(&a.cells)?;
    if a.cells.is_empty() {
        return Err(ToolError::invalid(
            "cells",
            "a non-empty list of cells",
            "cells is empty; give at least one {source, cell_type}",
        ));
    }
    let n_cells = a.cells.len();
    let lease = lease(a.lock, a.ttl_seconds, actor)?;
    let owner = actor.client_name.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "batch_insert_cells",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let at = placement(
                nb,
                a.index,
                a.after_cell_id.as_deref(),
                a.before_cell_id.as_deref(),
            )?;
            check_sizes(a.cells.len(), a.cells.iter().map(|s| s.source.as_str()))?;
            let ids = new_ids(Some(nb), a.cells.len());
            let mut changes = Vec::with_capacity(ids.len());
            for (k, ((spec, id), t)) in a.cells.iter().zip(&ids).zip(&types).enumerate() {
                changes.push(Change::CellInserted {
                    path: np.rel.clone(),
                    index: (at + k) as u32,
                    cell: Arc::new(spec.build(id.clone(), t.clone())),
                });
            }
            if let Some(lease) = lease {
                changes.extend(new_cell_locks(&np.rel, &ids, &owner, now, lease));
            }
            let out = ids.clone();
            Ok(Plan {
                operation: "batch_insert_cells",
                overrode_locks: Vec::new(),
                changes,
                cell_ids: ids,
                summary: format!("inserted {} cells at {}", a.cells.len(), at),
                result: Box::new(move |version, _| {
                    to_map(&IdsOut {
                        cell_ids: out,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((format!("inserted {n_cells} cells"), res))
}

// ---------------------------------------------------------------- update

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateArgs {
    pub path: String,
    pub cell_id: Option<String>,
    pub index: Option<i64>,
    pub source: String,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    /// Then run the written code cells as execute_cell does (timeout_s, max_output_chars, include_images): the result adds runs.
    #[schemars(extend("default" = false))]
    pub execute: Option<bool>,
    #[schemars(extend("default" = 30))]
    pub timeout_s: Option<f64>,
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UpdateOut {
    pub cell_id: String,
    pub index: usize,
    pub version: u64,
}

pub fn update_cell(
    engine: &Engine,
    a: UpdateArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "update_cell",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let i = find_cell(nb, "cell_id", a.cell_id.as_deref(), a.index)?;
            editable(nb, i)?;
            let id = nb.cells[i].cell.id.clone();
            let overrode = check_locks(
                nb,
                std::slice::from_ref(&id),
                &who,
                a.force.unwrap_or(false),
                now,
            )?;
            check_expected(nb, i, a.expected_version)?;
            check_source(&a.source)?;
            let cell = &nb.cells[i].cell;
            let id = cell.id.clone();
            let changes = if cell.source == a.source {
                Vec::new()
            } else {
                vec![Change::SourceSet {
                    path: np.rel.clone(),
                    cell_id: id.clone(),
                    before: cell.source.clone(),
                    after: a.source.clone(),
                }]
            };
            Ok(Plan {
                operation: "update_cell",
                overrode_locks: overrode,
                changes,
                cell_ids: vec![id.clone()],
                summary: format!("set source of {id} ({} lines)", a.source.lines().count()),
                result: Box::new(move |version, nb| {
                    let index = nb.position(&id).unwrap_or(i);
                    to_map(&UpdateOut {
                        cell_id: id,
                        index,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((
        format!("updated cell {}", res["cell_id"].as_str().unwrap_or("")),
        res,
    ))
}

/// One item of batch_update_cells.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct UpdateItem {
    pub cell_id: Option<String>,
    pub index: Option<i64>,
    pub source: String,
    pub expected_version: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BatchUpdateArgs {
    pub path: String,
    pub updates: Vec<UpdateItem>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

pub fn batch_update_cells(
    engine: &Engine,
    a: BatchUpdateArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    if a.updates.is_empty() {
        return Err(ToolError::invalid(
            "updates",
            "a non-empty list",
            "updates is empty; give at least one {cell_id, source}",
        ));
    }
    let n_updates = a.updates.len();
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "batch_update_cells",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let mut seen = HashSet::new();
            let mut positions = Vec::with_capacity(a.updates.len());
            for (k, u) in a.updates.iter().enumerate() {
                let i = find_cell(nb, &format!("updates[{k}]"), u.cell_id.as_deref(), u.index)?;
                editable(nb, i)?;
                if !seen.insert(i) {
                    return Err(ToolError::invalid(
                        &format!("updates[{k}]"),
                        "each cell at most once",
                        format!(
                            "cell {} appears twice in updates; merge the two",
                            nb.cells[i].cell.id
                        ),
                    ));
                }
                positions.push(i);
            }
            let targets: Vec<String> = positions
                .iter()
                .map(|&i| nb.cells[i].cell.id.clone())
                .collect();
            let overrode = check_locks(nb, &targets, &who, a.force.unwrap_or(false), now)?;
            for (u, &i) in a.updates.iter().zip(&positions) {
                check_expected(nb, i, u.expected_version)?;
            }
            check_sizes(a.updates.len(), a.updates.iter().map(|u| u.source.as_str()))?;
            let mut changes = Vec::new();
            let ids: Vec<String> = positions
                .iter()
                .map(|&i| nb.cells[i].cell.id.clone())
                .collect();
            for (u, &i) in a.updates.iter().zip(&positions) {
                let cell = &nb.cells[i].cell;
                if cell.source != u.source {
                    changes.push(Change::SourceSet {
                        path: np.rel.clone(),
                        cell_id: cell.id.clone(),
                        before: cell.source.clone(),
                        after: u.source.clone(),
                    });
                }
            }
            let out = ids.clone();
            Ok(Plan {
                operation: "batch_update_cells",
                overrode_locks: overrode,
                summary: format!("set source of {} cells", changes.len()),
                changes,
                cell_ids: ids,
                result: Box::new(move |version, _| {
                    to_map(&IdsOut {
                        cell_ids: out,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((format!("updated {n_updates} cells"), res))
}

// ---------------------------------------------------------------- delete

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteArgs {
    pub path: String,
    pub cell_id: Option<String>,
    pub index: Option<i64>,
    pub cell_ids: Option<Vec<String>>,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteOut {
    pub deleted: Vec<String>,
    pub version: u64,
}

pub fn delete_cell(
    engine: &Engine,
    a: DeleteArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let given = a.cell_id.is_some() as u8 + a.index.is_some() as u8 + a.cell_ids.is_some() as u8;
    if given != 1 {
        return Err(ToolError::invalid(
            "cell_id",
            "exactly one of cell_id, index, cell_ids",
            "say which cells to delete with exactly one of cell_id, index or cell_ids",
        ));
    }
    if a.cell_ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(ToolError::invalid(
            "cell_ids",
            "a non-empty list",
            "cell_ids is empty",
        ));
    }
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "delete_cell",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let mut positions: Vec<usize> = match (&a.cell_ids, &a.cell_id) {
                (Some(ids), _) => ids
                    .iter()
                    .map(|id| find_cell(nb, "cell_ids", Some(id), None))
                    .collect::<Result<_, _>>()?,
                (None, id) => vec![find_cell(nb, "cell_id", id.as_deref(), a.index)?],
            };
            positions.sort_unstable();
            positions.dedup();
            let targets: Vec<String> = positions
                .iter()
                .map(|&i| nb.cells[i].cell.id.clone())
                .collect();
            let overrode = check_locks(nb, &targets, &who, a.force.unwrap_or(false), now)?;
            for &i in &positions {
                check_expected(nb, i, a.expected_version)?;
            }
            common::check_count(positions.len())?;
            let mut order: Vec<Arc<Cell>> = nb.cells.iter().map(|c| c.cell.clone()).collect();
            let mut changes = Vec::new();
            let ids: Vec<String> = positions
                .iter()
                .map(|&i| nb.cells[i].cell.id.clone())
                .collect();
            for &i in positions.iter().rev() {
                let cell = order.remove(i);
                // A deleted cell's lock goes with it, in the same event (§8.5).
                if let Some(lock) = nb.locks.get(&cell.id) {
                    changes.push(Change::LockReleased {
                        path: np.rel.clone(),
                        cell_id: cell.id.clone(),
                        owner: lock.owner.clone(),
                        forced: lock.holds_at(now) && lock.owner != who.client_name,
                    });
                }
                changes.push(Change::CellDeleted {
                    path: np.rel.clone(),
                    index: i as u32,
                    after_cell_id: predecessor(&order, i),
                    cell,
                });
            }
            let out = ids.clone();
            Ok(Plan {
                operation: "delete_cell",
                overrode_locks: overrode,
                summary: format!("deleted {}", ids.join(", "))
                    .chars()
                    .take(200)
                    .collect(),
                changes,
                cell_ids: ids,
                result: Box::new(move |version, _| {
                    to_map(&DeleteOut {
                        deleted: out,
                        version,
                    })
                }),
            })
        },
    )?;
    let n = res["deleted"].as_array().map_or(0, Vec::len);
    Ok((
        format!("deleted {n} cell(s); recover_cell brings one back"),
        res,
    ))
}

// ---------------------------------------------------------------- retype

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChangeTypeArgs {
    pub path: String,
    pub cell_id: Option<String>,
    pub index: Option<i64>,
    #[schemars(extend("enum" = ["code", "markdown", "raw"]))]
    pub cell_type: String,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChangeTypeOut {
    pub cell_id: String,
    pub version: u64,
}

pub fn change_cell_type(
    engine: &Engine,
    a: ChangeTypeArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let t: CellType = common::cell_type("cell_type", Some(&a.cell_type))?;
    let who = actor.clone();
    let shown = quote(t.as_str());
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "change_cell_type",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let i = find_cell(nb, "cell_id", a.cell_id.as_deref(), a.index)?;
            editable(nb, i)?;
            let before = nb.cells[i].cell.clone();
            let overrode = check_locks(
                nb,
                std::slice::from_ref(&before.id),
                &who,
                a.force.unwrap_or(false),
                now,
            )?;
            check_expected(nb, i, a.expected_version)?;
            let id = before.id.clone();
            let changes = if before.cell_type == t {
                Vec::new()
            } else {
                vec![Change::CellReplaced {
                    path: np.rel.clone(),
                    after: Arc::new(before.with_type(t.clone())),
                    before: before.clone(),
                }]
            };
            Ok(Plan {
                operation: "change_cell_type",
                overrode_locks: overrode,
                summary: format!(
                    "changed {id} from {} to {}",
                    before.cell_type.as_str(),
                    t.as_str()
                ),
                changes,
                cell_ids: vec![id.clone()],
                result: Box::new(move |version, _| {
                    to_map(&ChangeTypeOut {
                        cell_id: id,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((
        format!(
            "cell {} is now {}",
            res["cell_id"].as_str().unwrap_or(""),
            shown
        ),
        res,
    ))
}

// ---------------------------------------------------------------- recover

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RecoverArgs {
    pub path: String,
    pub cell_id: String,
    pub index: Option<i64>,
    pub after_cell_id: Option<String>,
    pub before_cell_id: Option<String>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

/// Where a recovered cell goes by default (§8.3): after the nearest cell
/// that preceded it at deletion and is still live, else first. A deleted
/// predecessor leads to its own predecessor at its deletion.
fn default_place(nb: &NotebookState, id: &str) -> usize {
    let mut seen = HashSet::new();
    let mut next = nb.deleted.get(id).and_then(|d| d.after_cell_id.clone());
    while let Some(p) = next {
        if let Some(i) = nb.position(&p) {
            return i + 1;
        }
        if !seen.insert(p.clone()) {
            break;
        }
        next = nb.deleted.get(&p).and_then(|d| d.after_cell_id.clone());
    }
    0
}

pub fn recover_cell(
    engine: &Engine,
    a: RecoverArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "recover_cell",
        move |nb, np, _now| {
            let nb = existing(nb)?;
            let id = common::id_any(nb, &a.cell_id)?;
            if let Some(i) = nb.position(&id) {
                return Err(ToolError::new(
                    Code::NotDeleted,
                    format!("cell {id} is not deleted (it is at index {i}); nothing to recover"),
                )
                .with("cell_id", id)
                .with("index", i));
            }
            let explicit =
                a.index.is_some() || a.after_cell_id.is_some() || a.before_cell_id.is_some();
            let at = if explicit {
                placement(
                    nb,
                    a.index,
                    a.after_cell_id.as_deref(),
                    a.before_cell_id.as_deref(),
                )?
            } else {
                default_place(nb, &id)
            };
            let cell = nb
                .deleted
                .get(&id)
                .map(|d| d.cell.clone())
                .ok_or_else(|| ToolError::internal("deleted cell vanished"))?;
            Ok(Plan {
                operation: "recover_cell",
                overrode_locks: Vec::new(),
                summary: format!("recovered {id} at {at}"),
                changes: vec![Change::CellInserted {
                    path: np.rel.clone(),
                    index: at as u32,
                    cell,
                }],
                cell_ids: vec![id.clone()],
                result: Box::new(move |version, _| {
                    to_map(&InsertOut {
                        cell_id: id,
                        index: at,
                        version,
                    })
                }),
            })
        },
    )?;
    Ok((
        format!(
            "recovered cell {} at index {}",
            res["cell_id"].as_str().unwrap_or(""),
            res["index"]
        ),
        res,
    ))
}
