//! `update_cell_metadata` and `update_notebook_metadata` (§10): shallow
//! merges (a `null` value removes its key) or whole replacements, and cell
//! tags added or removed as a set that keeps its order. Each is one event
//! like any write: locks and `expected_version` apply to the cell.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::common::{check_locks, find_cell, to_map};
use super::edit::{check_expected, editable, existing};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::ToolError;
use crate::events::{Change, Header};
use crate::notebook::object_text;

/// Largest cell or notebook metadata object, as compact JSON (§10).
pub const MAX_METADATA_BYTES: u64 = 64 << 10;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CellMetadataArgs {
    pub path: String,
    pub cell_id: Option<String>,
    pub index: Option<i64>,
    /// Merged into the cell's metadata (a `null` value removes the key), or
    /// the whole new metadata with `replace`.
    pub metadata: Option<Map<String, Value>>,
    /// Appended to `metadata.tags` in order, skipping ones already there.
    pub add_tags: Option<Vec<String>>,
    /// Removed from `metadata.tags`; removing the last drops `tags`.
    pub remove_tags: Option<Vec<String>>,
    #[schemars(extend("default" = false))]
    pub replace: Option<bool>,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CellMetadataOut {
    pub cell_id: String,
    pub metadata: Map<String, Value>,
    pub version: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NotebookMetadataArgs {
    pub path: String,
    /// Merged into the notebook's metadata (a `null` value removes the
    /// key), or the whole new metadata with `replace`.
    pub metadata: Map<String, Value>,
    #[schemars(extend("default" = false))]
    pub replace: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NotebookMetadataOut {
    pub metadata: Map<String, Value>,
    pub version: u64,
}

fn parse_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// `current` with `update` merged in (or replacing it), keys whose value
/// is `null` removed.
fn merged(
    current: &Map<String, Value>,
    update: &Map<String, Value>,
    replace: bool,
) -> Map<String, Value> {
    let mut out = if replace { Map::new() } else { current.clone() };
    for (k, v) in update {
        if v.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Adds and removes tags, keeping existing ones in order and new ones in
/// the order given, without duplicates.
fn retag(meta: &mut Map<String, Value>, add: &[String], remove: &[String]) {
    if add.is_empty() && remove.is_empty() {
        return;
    }
    let mut tags: Vec<String> = match meta.get("tags") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    for t in add {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags.retain(|t| !remove.contains(t));
    if tags.is_empty() {
        meta.remove("tags");
    } else {
        meta.insert("tags".into(), json!(tags));
    }
}

fn check_size(text: &str) -> Result<(), ToolError> {
    let n = text.len() as u64;
    if n > MAX_METADATA_BYTES {
        return Err(ToolError::too_large(
            "the metadata (bytes)",
            MAX_METADATA_BYTES,
            n,
        ));
    }
    Ok(())
}

fn check_tags(name: &str, tags: &[String]) -> Result<(), ToolError> {
    if tags
        .iter()
        .any(|t| t.is_empty() || t.chars().any(char::is_control))
    {
        return Err(ToolError::invalid(
            name,
            "non-empty tags without control characters",
            format!(
                "{name} holds an empty tag or one with control characters; pass plain tag names"
            ),
        ));
    }
    Ok(())
}

pub fn update_cell_metadata(
    engine: &Engine,
    a: CellMetadataArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let add = a.add_tags.clone().unwrap_or_default();
    let remove = a.remove_tags.clone().unwrap_or_default();
    check_tags("add_tags", &add)?;
    check_tags("remove_tags", &remove)?;
    let replace = a.replace.unwrap_or(false);
    if a.metadata.is_none() && add.is_empty() && remove.is_empty() {
        return Err(ToolError::invalid(
            "metadata",
            "metadata, add_tags or remove_tags",
            "nothing to change: pass metadata (merged, or whole with replace: true), add_tags or remove_tags",
        ));
    }
    let who = actor.clone();
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "update_cell_metadata",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let i = find_cell(nb, "cell_id", a.cell_id.as_deref(), a.index)?;
            editable(nb, i)?;
            let before = nb.cells[i].cell.clone();
            let id = before.id.clone();
            let current = parse_object(&before.metadata);
            let mut meta = match &a.metadata {
                Some(update) => merged(&current, update, replace),
                None => current.clone(),
            };
            retag(&mut meta, &add, &remove);
            let text = object_text(&meta);
            let changes = if meta == current {
                Vec::new()
            } else {
                let overrode = check_locks(
                    nb,
                    std::slice::from_ref(&id),
                    &who,
                    a.force.unwrap_or(false),
                    now,
                )?;
                check_expected(nb, i, a.expected_version)?;
                check_size(&text)?;
                let mut after = (*before).clone();
                after.metadata = text;
                return Ok(Plan {
                    operation: "update_cell_metadata",
                    overrode_locks: overrode,
                    summary: format!("metadata of cell {id} updated ({} keys)", meta.len()),
                    changes: vec![Change::CellReplaced {
                        path: np.rel.clone(),
                        before,
                        after: Arc::new(after),
                    }],
                    cell_ids: vec![id.clone()],
                    result: Box::new(move |version, _| {
                        to_map(&CellMetadataOut {
                            cell_id: id,
                            metadata: meta,
                            version,
                        })
                    }),
                });
            };
            Ok(Plan {
                operation: "update_cell_metadata",
                overrode_locks: Vec::new(),
                summary: String::new(),
                changes,
                cell_ids: vec![id.clone()],
                result: Box::new(move |version, _| {
                    to_map(&CellMetadataOut {
                        cell_id: id,
                        metadata: meta,
                        version,
                    })
                }),
            })
        },
    )?;
    let summary = match res.get("changed") {
        Some(Value::Bool(false)) => "metadata already so; nothing changed".to_owned(),
        _ => format!(
            "metadata of cell {} updated",
            res["cell_id"].as_str().unwrap_or("")
        ),
    };
    Ok((summary, res))
}

pub fn update_notebook_metadata(
    engine: &Engine,
    a: NotebookMetadataArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let replace = a.replace.unwrap_or(false);
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "update_notebook_metadata",
        move |nb, np, _now| {
            let nb = existing(nb)?;
            let current = parse_object(&nb.header.metadata);
            let meta = merged(&current, &a.metadata, replace);
            let text = object_text(&meta);
            let mut changes = Vec::new();
            if meta != current {
                check_size(&text)?;
                let after = Header {
                    metadata: text,
                    ..nb.header.clone()
                };
                changes.push(Change::HeaderSet {
                    path: np.rel.clone(),
                    before: nb.header.clone(),
                    after,
                });
            }
            Ok(Plan {
                operation: "update_notebook_metadata",
                overrode_locks: Vec::new(),
                summary: format!("notebook metadata updated ({} keys)", meta.len()),
                changes,
                cell_ids: Vec::new(),
                result: Box::new(move |version, _| {
                    to_map(&NotebookMetadataOut {
                        metadata: meta,
                        version,
                    })
                }),
            })
        },
    )?;
    let summary = match res.get("changed") {
        Some(Value::Bool(false)) => "metadata already so; nothing changed".to_owned(),
        _ => "notebook metadata updated".to_owned(),
    };
    Ok((summary, res))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_merge_sets_and_a_null_removes_keys() {
        let cur = obj(json!({"a": 1, "b": 2}));
        let m = merged(&cur, &obj(json!({"b": null, "c": 3})), false);
        assert_eq!(Value::Object(m), json!({"a": 1, "c": 3}));
        let m = merged(&cur, &obj(json!({"z": 9, "y": null})), true);
        assert_eq!(Value::Object(m), json!({"z": 9}));
    }

    #[test]
    fn tags_keep_their_order_append_new_ones_and_vanish_when_empty() {
        let mut m = obj(json!({"tags": ["b", "a"]}));
        retag(&mut m, &["a".into(), "c".into(), "c".into()], &[]);
        assert_eq!(m["tags"], json!(["b", "a", "c"]));
        retag(&mut m, &[], &["b".into(), "a".into(), "c".into()]);
        assert!(!m.contains_key("tags"));
    }
}
