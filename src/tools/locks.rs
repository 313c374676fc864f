//! Cell locks: lock, unlock, list. Locks coordinate cooperating agents;
//! they are not access control (anyone may pass `force`, and the log says
//! who did).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{self, find_cell, locked, to_map};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{ToolError, quote};
use crate::events::Change;
use crate::projections::{Lock, NotebookState};
use crate::time::now_ms;
use crate::time::rfc3339;

/// Longest lock lease, in seconds (one day).
pub const MAX_TTL_S: u64 = 86_400;

#[derive(Debug, Serialize, JsonSchema)]
pub struct LockOut {
    pub cell_id: String,
    pub owner: String,
    pub acquired_at: String,
    pub expires_at: String,
    pub expires_in_s: i64,
}

impl LockOut {
    fn of(cell_id: &str, l: &Lock, now: i64) -> LockOut {
        LockOut {
            cell_id: cell_id.to_owned(),
            owner: l.owner.clone(),
            acquired_at: rfc3339(l.acquired_at),
            expires_at: rfc3339(l.expires_at),
            expires_in_s: (l.expires_at - now).max(0) / 1000,
        }
    }
}

/// `client_name` with its alias `owner` (§8.1): both given must agree.
pub fn owner_name(
    client_name: Option<String>,
    owner: Option<String>,
) -> Result<Option<String>, ToolError> {
    match (client_name, owner) {
        (Some(c), Some(o)) if c != o => Err(ToolError::invalid(
            "owner",
            "the same value as client_name, or only one of them",
            format!(
                "client_name {} and owner {} differ; owner is an alias, give one",
                quote(&c),
                quote(&o)
            ),
        )),
        (c, o) => Ok(c.or(o)),
    }
}

/// `anonymous` cannot lock: nobody could tell its locks apart (§8.1).
pub fn require_name(actor: &Actor) -> Result<(), ToolError> {
    if actor.client_name == "anonymous" {
        return Err(ToolError::invalid(
            "client_name",
            "a name unique to you",
            "locks need an owner: pass a client_name unique to you on every call (anonymous cannot lock)",
        ));
    }
    Ok(())
}

fn cell_list(cell_ids: Option<Vec<String>>, cell_id: Option<String>) -> Option<Vec<String>> {
    match (cell_ids, cell_id) {
        (Some(mut ids), Some(one)) => {
            ids.push(one);
            Some(ids)
        }
        (ids, one) => ids.or(one.map(|o| vec![o])),
    }
}

/// Resolves ids (exact or prefix) to live cells' full ids, in order, once each.
fn resolve(nb: &NotebookState, ids: &[String]) -> Result<Vec<String>, ToolError> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let i = find_cell(nb, "cell_ids", Some(id), None)?;
        let full = nb.cells[i].cell.id.clone();
        if !out.contains(&full) {
            out.push(full);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- lock

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LockArgs {
    pub path: String,
    pub cell_ids: Option<Vec<String>>,
    pub cell_id: Option<String>,
    pub client_name: Option<String>,
    /// Alias of client_name.
    pub owner: Option<String>,
    #[schemars(range(min = 1, max = 86400), extend("default" = 600))]
    pub ttl_seconds: Option<u64>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LocksOut {
    pub locks: Vec<LockOut>,
    pub version: u64,
}

pub fn lock_cells(
    engine: &Engine,
    a: LockArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    require_name(actor)?;
    let ttl = a.ttl_seconds.unwrap_or(600);
    if !(1..=MAX_TTL_S).contains(&ttl) {
        return Err(ToolError::invalid(
            "ttl_seconds",
            "1 to 86400",
            format!("ttl_seconds {ttl} is out of range; give 1 to 86400 seconds"),
        ));
    }
    let Some(ids) = cell_list(a.cell_ids, a.cell_id).filter(|v| !v.is_empty()) else {
        return Err(ToolError::invalid(
            "cell_ids",
            "a non-empty list of cell ids",
            "say which cells to lock with cell_ids",
        ));
    };
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "lock_cells",
        move |nb, np, now| {
            let nb = nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
            let cells = resolve(nb, &ids)?;
            let held: Vec<(&str, &Lock)> = cells
                .iter()
                .filter_map(|c| {
                    nb.lock_at(c, now)
                        .filter(|l| l.owner != who.client_name)
                        .map(|l| (c.as_str(), l))
                })
                .collect();
            if !held.is_empty() {
                return Err(locked(&held, &who, now, "lock other cells"));
            }
            common::check_count(cells.len())?;
            let expires_at = now + (ttl as i64) * 1000;
            let changes: Vec<Change> = cells
                .iter()
                .map(|c| Change::LockAcquired {
                    path: np.rel.clone(),
                    cell_id: c.clone(),
                    owner: who.client_name.clone(),
                    // A renewal keeps when the lock was first taken (§8.5).
                    acquired_at: nb.lock_at(c, now).map_or(now, |l| l.acquired_at),
                    expires_at,
                })
                .collect();
            let out: Vec<LockOut> = changes
                .iter()
                .filter_map(|ch| match ch {
                    Change::LockAcquired {
                        cell_id,
                        owner,
                        acquired_at,
                        expires_at,
                        ..
                    } => Some(LockOut::of(
                        cell_id,
                        &Lock {
                            owner: owner.clone(),
                            acquired_at: *acquired_at,
                            expires_at: *expires_at,
                            version: 0,
                        },
                        now,
                    )),
                    _ => None,
                })
                .collect();
            Ok(Plan {
                operation: "lock_cells",
                overrode_locks: Vec::new(),
                summary: format!("locked {} for {ttl} s", cells.join(", "))
                    .chars()
                    .take(200)
                    .collect(),
                changes,
                cell_ids: cells,
                result: Box::new(move |version, _| {
                    to_map(&LocksOut {
                        locks: out,
                        version,
                    })
                }),
            })
        },
    )?;
    let n = res["locks"].as_array().map_or(0, Vec::len);
    Ok((format!("locked {n} cell(s) for {ttl} s"), res))
}

// ---------------------------------------------------------------- unlock

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UnlockArgs {
    pub path: String,
    /// Default: every cell you hold in the notebook.
    pub cell_ids: Option<Vec<String>>,
    pub cell_id: Option<String>,
    pub client_name: Option<String>,
    /// Alias of client_name.
    pub owner: Option<String>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UnlockOut {
    pub released: Vec<String>,
    pub not_locked: Vec<String>,
    pub version: Option<u64>,
}

pub fn unlock_cells(
    engine: &Engine,
    a: UnlockArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let force = a.force.unwrap_or(false);
    let ids = cell_list(a.cell_ids, a.cell_id);
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "unlock_cells",
        move |nb, np, now| {
            let nb = nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
            let cells: Vec<String> = match &ids {
                Some(ids) => {
                    let mut out = Vec::new();
                    for id in ids {
                        // A lock can outlive nothing but live cells; unknown
                        // ids are reported like any other.
                        let i = find_cell(nb, "cell_ids", Some(id), None)?;
                        out.push(nb.cells[i].cell.id.clone());
                    }
                    out
                }
                None => nb
                    .locks
                    .iter()
                    .filter(|(_, l)| l.holds_at(now) && l.owner == who.client_name)
                    .map(|(c, _)| c.clone())
                    .collect(),
            };
            let mut released = Vec::new();
            let mut not_locked = Vec::new();
            let mut others: Vec<(&str, &Lock)> = Vec::new();
            for c in &cells {
                match nb.lock_at(c, now) {
                    Some(l) if l.owner == who.client_name => {
                        released.push((c.clone(), l.owner.clone(), false))
                    }
                    Some(l) if force => released.push((c.clone(), l.owner.clone(), true)),
                    Some(l) => others.push((c.as_str(), l)),
                    None => not_locked.push(c.clone()),
                }
            }
            if !others.is_empty() {
                return Err(locked(
                    &others,
                    &who,
                    now,
                    "pass force: true to release it anyway (recorded)",
                ));
            }
            let overrode: Vec<(String, String)> = released
                .iter()
                .filter(|r| r.2)
                .map(|(c, o, _)| (c.clone(), o.clone()))
                .collect();
            let changes: Vec<Change> = released
                .iter()
                .map(|(c, o, forced)| Change::LockReleased {
                    path: np.rel.clone(),
                    cell_id: c.clone(),
                    owner: o.clone(),
                    forced: *forced,
                })
                .collect();
            let ids: Vec<String> = released.iter().map(|r| r.0.clone()).collect();
            let out_released = ids.clone();
            Ok(Plan {
                operation: "unlock_cells",
                overrode_locks: overrode,
                summary: format!("unlocked {}", ids.join(", "))
                    .chars()
                    .take(200)
                    .collect(),
                changes,
                cell_ids: ids,
                result: Box::new(move |version, _| {
                    to_map(&UnlockOut {
                        released: out_released,
                        not_locked,
                        version: Some(version),
                    })
                }),
            })
        },
    )?;
    let n = res["released"].as_array().map_or(0, Vec::len);
    Ok((format!("released {n} lock(s)"), res))
}

// ---------------------------------------------------------------- list

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListLocksArgs {
    /// Default: every notebook.
    pub path: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListedLock {
    pub path: String,
    pub cell_id: String,
    pub owner: String,
    pub acquired_at: String,
    pub expires_at: String,
    pub expires_in_s: i64,
    pub version: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListLocksOut {
    pub locks: Vec<ListedLock>,
}

fn listed(nb: &NotebookState, now: i64) -> Vec<ListedLock> {
    nb.locks
        .iter()
        .filter(|(_, l)| l.holds_at(now))
        .map(|(c, l)| ListedLock {
            path: nb.path.clone(),
            cell_id: c.clone(),
            owner: l.owner.clone(),
            acquired_at: rfc3339(l.acquired_at),
            expires_at: rfc3339(l.expires_at),
            expires_in_s: (l.expires_at - now).max(0) / 1000,
            version: l.version,
        })
        .collect()
}

pub fn list_locks(
    engine: &Engine,
    a: ListLocksArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    // Expiry is not an event: the clock decides what is still held.
    let now = now_ms();
    let locks = match &a.path {
        Some(p) => engine.read(p, |nb| Ok(listed(nb, now)))?,
        None => engine.with_workspace(|ws| {
            ws.notebooks
                .values()
                .flat_map(|nb| listed(nb, now))
                .collect()
        }),
    };
    Ok((
        format!("{} lock(s) held", locks.len()),
        to_map(&ListLocksOut { locks }),
    ))
}
