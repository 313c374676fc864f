//! `revert_cell` (§10): a cell's type, source and metadata set back to what
//! they were right after any version, as one new event (its outputs stay).
//! The past state comes from the log through the engine's one replay path.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{check_locks, find_cell, to_map};
use super::edit::{check_expected, editable, existing};
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{ToolError, quote};
use crate::events::{CellType, Change};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RevertArgs {
    pub path: String,
    pub cell_id: String,
    /// The version right after which the cell's content is taken back.
    pub to_version: u64,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RevertOut {
    pub cell_id: String,
    pub version: u64,
}

pub fn revert_cell(
    engine: &Engine,
    a: RevertArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let then = engine.notebook_at(&a.path, a.to_version)?;
    let who = actor.clone();
    let to = a.to_version;
    let res = engine.write(
        &a.path,
        actor,
        Presence::Existing,
        "revert_cell",
        move |nb, np, now| {
            let nb = existing(nb)?;
            let i = find_cell(nb, "cell_id", Some(&a.cell_id), None)?;
            editable(nb, i)?;
            let before = nb.cells[i].cell.clone();
            let id = before.id.clone();
            let Some(old) = then.position(&id).map(|j| then.cells[j].cell.clone()) else {
                return Err(ToolError::not_found(
                    "cell",
                    format!(
                        "cell {id} did not exist in {} at version {to}; get_cell_history lists the versions it did",
                        quote(&np.rel)
                    ),
                )
                .with("cell_id", id.clone()));
            };
            if matches!(old.cell_type, CellType::Other(_)) {
                return Err(ToolError::invalid(
                    "to_version",
                    "a version where the cell was code, markdown or raw",
                    format!("cell {id} had a type from a newer nbformat at version {to}"),
                ));
            }
            // Type, source and metadata as then; outputs as now (§10).
            let mut after = before.with_type(old.cell_type.clone());
            after.source = old.source.clone();
            after.metadata = old.metadata.clone();
            if old.cell_type != CellType::Code {
                after.attachments = old.attachments.clone();
            }
            let changes = if after == *before {
                Vec::new()
            } else {
                vec![Change::CellReplaced {
                    path: np.rel.clone(),
                    before: before.clone(),
                    after: Arc::new(after),
                }]
            };
            let overrode = if changes.is_empty() {
                Vec::new()
            } else {
                let o = check_locks(
                    nb,
                    std::slice::from_ref(&id),
                    &who,
                    a.force.unwrap_or(false),
                    now,
                )?;
                check_expected(nb, i, a.expected_version)?;
                o
            };
            Ok(Plan {
                operation: "revert_cell",
                overrode_locks: overrode,
                summary: format!("reverted cell {id} to its content at version {to}"),
                changes,
                cell_ids: vec![id.clone()],
                result: Box::new(move |version, _| {
                    to_map(&RevertOut {
                        cell_id: id,
                        version,
                    })
                }),
            })
        },
    )?;
    let summary = match res.get("changed") {
        Some(Value::Bool(false)) => {
            format!("the cell already is as at version {to}; nothing changed")
        }
        _ => format!(
            "cell {} reverted to version {to}",
            res["cell_id"].as_str().unwrap_or("")
        ),
    };
    Ok((summary, res))
}
