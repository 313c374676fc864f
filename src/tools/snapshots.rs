//! Named snapshots: take, list, diff against, restore. A snapshot is an
//! event like any other (content-addressed, so equal content is stored
//! once); a restore is a forward event that first saves the current state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use similar::TextDiff;

use super::common::{check_locks, to_map};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{Code, ToolError, quote};
use crate::events::{Cell, Change, Header, codec::hex};
use crate::notebook::{header_with_ids, snapshot_hash, transform};
use crate::projections::{NotebookState, Snapshot};
use crate::time::rfc3339;

/// Names the server keeps for itself (the automatic backup of a restore).
const RESERVED: &str = "pre-restore-";

fn check_name(name: &str, arg: &str) -> Result<(), ToolError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(ToolError::invalid(
            arg,
            "1-128 characters of A-Z a-z 0-9 . _ -",
            format!(
                "snapshot name {} is not usable; use 1-128 characters of letters, digits, . _ -",
                quote(name)
            ),
        ));
    }
    Ok(())
}

fn unknown(nb: &NotebookState, name: &str) -> ToolError {
    let available: Vec<&String> = nb.snapshots.keys().take(50).collect();
    ToolError::not_found(
        "snapshot",
        format!(
            "no snapshot named {} for this notebook; list them with list_snapshots",
            quote(name)
        ),
    )
    .with("available", json!(available))
}

pub(super) fn live_cells(nb: &NotebookState) -> Vec<Arc<Cell>> {
    nb.cells.iter().map(|c| c.cell.clone()).collect()
}

// ---------------------------------------------------------------- take

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SnapshotArgs {
    pub path: String,
    /// 1-128 of A-Za-z0-9._- (pre-restore-* is the server's).
    pub name: String,
    pub description: Option<String>,
    #[schemars(extend("default" = false))]
    pub overwrite: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotOut {
    pub name: String,
    pub snapshot_hash: String,
    pub version: u64,
    pub cell_count: usize,
}

pub fn snapshot_notebook(
    engine: &Engine,
    a: SnapshotArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    check_name(&a.name, "name")?;
    if a.name.starts_with(RESERVED) {
        return Err(ToolError::invalid(
            "name",
            "a name not starting with pre-restore-",
            "names starting with pre-restore- are reserved for restore_snapshot's automatic backups; pick another",
        ));
    }
    if a.description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(ToolError::invalid(
            "description",
            "at most 1000 characters",
            "description is longer than 1000 characters",
        ));
    }
    let shown = quote(&a.name);
    let res = engine.write(&a.path, actor, Presence::Existing, "snapshot_notebook", move |nb, np, _now| {
        let nb = nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
        if let Some(old) = nb.snapshots.get(&a.name)
            && !a.overwrite.unwrap_or(false)
        {
            return Err(ToolError::new(
                Code::Exists,
                format!("a snapshot named {} exists (version {}); pass overwrite: true to replace it", quote(&a.name), old.version),
            )
            .with("name", a.name.clone())
            .with("snapshot_hash", hex(&old.hash))
            .with("version", old.version));
        }
        let cells = live_cells(nb);
        let hash = snapshot_hash(&nb.header, &cells);
        let count = cells.len();
        let name = a.name.clone();
        Ok(Plan {
            operation: "snapshot_notebook",
            overrode_locks: Vec::new(),
            summary: format!("snapshot {} of {count} cells", quote(&a.name)),
            changes: vec![Change::SnapshotTaken {
                path: np.rel.clone(),
                name: a.name.clone(),
                hash,
                description: a.description.clone(),
                header: nb.header.clone(),
                cells,
            }],
            cell_ids: Vec::new(),
            result: Box::new(move |version, _| {
                to_map(&SnapshotOut {
                    name,
                    snapshot_hash: hex(&hash),
                    version,
                    cell_count: count,
                })
            }),
        })
    })?;
    Ok((format!("snapshot {shown} taken"), res))
}

// ---------------------------------------------------------------- list

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListSnapshotsArgs {
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotEntry {
    pub name: String,
    pub snapshot_hash: String,
    pub version: u64,
    pub created_at: String,
    pub client_name: String,
    pub cell_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListSnapshotsOut {
    pub snapshots: Vec<SnapshotEntry>,
}

pub fn list_snapshots(
    engine: &Engine,
    a: ListSnapshotsArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let snapshots = engine.read(&a.path, |nb| {
        let mut list: Vec<SnapshotEntry> = nb
            .snapshots
            .iter()
            .map(|(name, s)| SnapshotEntry {
                name: name.clone(),
                snapshot_hash: hex(&s.hash),
                version: s.version,
                created_at: rfc3339(s.created_at),
                client_name: s.client_name.clone(),
                cell_count: s.cells.len(),
                description: s.description.clone(),
            })
            .collect();
        list.sort_by_key(|s| s.version);
        Ok(list)
    })?;
    Ok((
        format!("{} snapshot(s)", snapshots.len()),
        to_map(&ListSnapshotsOut { snapshots }),
    ))
}

// ---------------------------------------------------------------- diff

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DiffArgs {
    pub path: String,
    pub name: String,
    /// At most 50.
    #[schemars(extend("default" = 3))]
    pub context_lines: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Added {
    pub cell_id: String,
    pub index: usize,
    pub source: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    pub cell_id: String,
    pub source: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Modified {
    pub cell_id: String,
    pub changed: Vec<String>,
    pub diff: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Moved {
    pub cell_id: String,
    pub from_index: usize,
    pub to_index: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffOut {
    pub name: String,
    pub snapshot_version: u64,
    pub current_version: u64,
    pub added: Vec<Added>,
    pub deleted: Vec<Deleted>,
    pub modified: Vec<Modified>,
    pub moved: Vec<Moved>,
    pub unchanged: usize,
}

/// Compares a snapshot (`from`) with the current cells (`to`) by cell id
/// (§8.6): `moved` is the smallest set of common cells whose removal makes
/// both orders equal, keeping cells earlier in snapshot order on ties.
pub fn diff(
    from: &[Arc<Cell>],
    to: &[Arc<Cell>],
    context: usize,
) -> (Vec<Added>, Vec<Deleted>, Vec<Modified>, Vec<Moved>, usize) {
    diff_labelled(from, to, context, ("snapshot", "current"))
}

/// [`diff`], the unified diffs' headers naming each side `labels`.
pub fn diff_labelled(
    from: &[Arc<Cell>],
    to: &[Arc<Cell>],
    context: usize,
    labels: (&str, &str),
) -> (Vec<Added>, Vec<Deleted>, Vec<Modified>, Vec<Moved>, usize) {
    let to_ids: HashSet<&str> = to.iter().map(|c| c.id.as_str()).collect();
    let from_pos: HashMap<&str, usize> = from
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let added = to
        .iter()
        .enumerate()
        .filter(|(_, c)| !from_pos.contains_key(c.id.as_str()))
        .map(|(i, c)| Added {
            cell_id: c.id.clone(),
            index: i,
            source: c.source.clone(),
        })
        .collect();
    let deleted = from
        .iter()
        .filter(|c| !to_ids.contains(c.id.as_str()))
        .map(|c| Deleted {
            cell_id: c.id.clone(),
            source: c.source.clone(),
        })
        .collect();

    // Common cells in each order, then the longest common subsequence.
    let a: Vec<&str> = from
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| to_ids.contains(id))
        .collect();
    let b: Vec<&str> = to
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| from_pos.contains_key(id))
        .collect();
    let kept = lcs_keep_earlier(&a, &b);
    let to_pos: HashMap<&str, usize> = to
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let moved: Vec<Moved> = a
        .iter()
        .filter(|id| !kept.contains(*id))
        .map(|id| Moved {
            cell_id: (*id).to_owned(),
            from_index: from_pos[id],
            to_index: to_pos[id],
        })
        .collect();

    let by_id: HashMap<&str, &Arc<Cell>> = to.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut modified = Vec::new();
    let mut unchanged = 0;
    for old in from.iter().filter(|c| to_ids.contains(c.id.as_str())) {
        let new = by_id[old.id.as_str()];
        // §8.6 names five fields: a new execution_count is part of the
        // outputs, and keys a snapshot does not hold are not compared.
        let mut changed: Vec<&str> = Vec::new();
        for f in crate::projections::history::changed_fields(old, new) {
            let f = if f == "execution_count" { "outputs" } else { f };
            if f != "other" && !changed.contains(&f) {
                changed.push(f);
            }
        }
        if changed.is_empty() {
            if kept.contains(old.id.as_str()) {
                unchanged += 1;
            }
            continue;
        }
        let diff = if old.source == new.source {
            String::new()
        } else {
            TextDiff::from_lines(&old.source, &new.source)
                .unified_diff()
                .context_radius(context)
                .header(
                    &format!("{} ({})", old.id, labels.0),
                    &format!("{} ({})", new.id, labels.1),
                )
                .to_string()
        };
        modified.push(Modified {
            cell_id: old.id.clone(),
            changed: changed.into_iter().map(str::to_owned).collect(),
            diff,
        });
    }
    (added, deleted, modified, moved, unchanged)
}

/// The ids of a longest common subsequence of `a` and `b` (both hold the
/// same ids); on ties the one keeping earlier elements of `a`.
fn lcs_keep_earlier<'a>(a: &[&'a str], b: &[&'a str]) -> HashSet<&'a str> {
    crate::notebook::lcs(a, b, |x, y| x == y)
        .into_iter()
        .map(|(i, _)| a[i])
        .collect()
}

pub fn diff_snapshot(
    engine: &Engine,
    a: DiffArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let context = a.context_lines.unwrap_or(3).min(50) as usize;
    let out = engine.read(&a.path, |nb| {
        let snap = nb
            .snapshots
            .get(&a.name)
            .ok_or_else(|| unknown(nb, &a.name))?;
        let (added, deleted, modified, moved, unchanged) =
            diff(&snap.cells, &live_cells(nb), context);
        Ok(DiffOut {
            name: a.name.clone(),
            snapshot_version: snap.version,
            current_version: nb.current_version,
            added,
            deleted,
            modified,
            moved,
            unchanged,
        })
    })?;
    let summary = format!(
        "since {}: {} added, {} deleted, {} modified, {} moved, {} unchanged",
        quote(&out.name),
        out.added.len(),
        out.deleted.len(),
        out.modified.len(),
        out.moved.len(),
        out.unchanged
    );
    Ok((summary, to_map(&out)))
}

// ---------------------------------------------------------------- restore

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RestoreArgs {
    pub path: String,
    pub name: String,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RestoreOut {
    pub version: u64,
    pub backup_snapshot: String,
    pub cell_count: usize,
}

pub fn restore_snapshot(
    engine: &Engine,
    a: RestoreArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let who = actor.clone();
    let shown = quote(&a.name);
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "restore_snapshot",
        move |nb, np, now| {
            let nb = nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
            let snap: &Snapshot = nb
                .snapshots
                .get(&a.name)
                .ok_or_else(|| unknown(nb, &a.name))?;
            let current = live_cells(nb);
            // Locks: every cell the restore would change, delete or move (§7).
            let (_, deleted, modified, moved, _) = diff(&snap.cells, &current, 0);
            let mut touched: Vec<String> = deleted.iter().map(|d| d.cell_id.clone()).collect();
            touched.extend(modified.iter().map(|m| m.cell_id.clone()));
            touched.extend(moved.iter().map(|m| m.cell_id.clone()));
            // Cells added since the snapshot are deleted by the restore too.
            let in_snap: HashSet<&str> = snap.cells.iter().map(|c| c.id.as_str()).collect();
            touched.extend(
                current
                    .iter()
                    .filter(|c| !in_snap.contains(c.id.as_str()))
                    .map(|c| c.id.clone()),
            );
            let overrode = check_locks(nb, &touched, &who, a.force.unwrap_or(false), now)?;

            // A snapshot taken while the notebook said 4.0-4.4 comes back
            // with its cells' ids, so as 4.5; saying so here keeps a restore
            // that changes nothing an empty plan.
            let target_header: Header = if snap.cells.is_empty() {
                snap.header.clone()
            } else {
                header_with_ids(&snap.header)
            };
            let restore = transform(
                nb,
                &target_header,
                &snap.cells,
                Some((&who.client_name, now)),
            );
            if restore.is_empty() {
                return Ok(Plan {
                    operation: "restore_snapshot",
                    overrode_locks: Vec::new(),
                    summary: String::new(),
                    changes: Vec::new(),
                    cell_ids: Vec::new(),
                    // No backup was taken: the field is left out (its
                    // schema says string, so null would break it).
                    result: Box::new(|_, nb| to_map(&json!({"cell_count": nb.cells.len()}))),
                });
            }
            let backup = format!("{RESERVED}{}", nb.current_version);
            let mut changes = vec![Change::SnapshotTaken {
                path: np.rel.clone(),
                name: backup.clone(),
                hash: snapshot_hash(&nb.header, &current),
                description: Some(format!("automatic backup before restoring {}", a.name)),
                header: nb.header.clone(),
                cells: current,
            }];
            let cell_ids = crate::engine::changed_cells(&restore);
            changes.extend(restore);
            let count = snap.cells.len();
            let name = a.name.clone();
            Ok(Plan {
                operation: "restore_snapshot",
                overrode_locks: overrode,
                summary: format!("restored {} ({count} cells); backup {backup}", quote(&name)),
                changes,
                cell_ids,
                result: Box::new(move |version, _| {
                    to_map(&RestoreOut {
                        version,
                        backup_snapshot: backup,
                        cell_count: count,
                    })
                }),
            })
        },
    )?;
    Ok((format!("restored {shown}"), res))
}

// ---------------------------------------------------------------- delete

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteSnapshotArgs {
    pub path: String,
    pub name: String,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteSnapshotOut {
    pub name: String,
    pub version: u64,
}

pub fn delete_snapshot(
    engine: &Engine,
    a: DeleteSnapshotArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    check_name(&a.name, "name")?;
    let shown = quote(&a.name);
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "delete_snapshot",
        move |nb, np, _now| {
            let nb = nb.ok_or_else(|| ToolError::internal("notebook state missing after sync"))?;
            if !nb.snapshots.contains_key(&a.name) {
                return Err(unknown(nb, &a.name));
            }
            let name = a.name.clone();
            Ok(Plan {
                operation: "delete_snapshot",
                overrode_locks: Vec::new(),
                summary: format!("snapshot {} deleted", quote(&a.name)),
                changes: vec![Change::SnapshotDeleted {
                    path: np.rel.clone(),
                    name: a.name.clone(),
                }],
                cell_ids: Vec::new(),
                result: Box::new(move |version, _| to_map(&DeleteSnapshotOut { name, version })),
            })
        },
    )?;
    Ok((format!("snapshot {shown} deleted"), res))
}
