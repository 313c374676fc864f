//! `rename_notebook` (§10): the file moves and the notebook's whole life
//! with it (history, feed, locks, snapshots, runs answer to the new path),
//! as one event naming both paths. The engine writes the new file and
//! removes the old one; the adapter moves the notebook's kernel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{check_locks, to_map};
use crate::engine::{Actor, Engine, Plan};
use crate::error::{ToolError, quote};
use crate::events::Change;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RenameArgs {
    pub path: String,
    /// Missing folders are created.
    pub new_path: String,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RenameOut {
    pub path: String,
    pub new_path: String,
    pub version: u64,
}

pub fn rename_notebook(
    engine: &Engine,
    a: RenameArgs,
    actor: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    // Outputs in flight would land on a path that is gone (§9.2).
    let rel = engine.root().resolve(&a.path)?.rel;
    let open: Vec<String> = engine.with_workspace(|ws| {
        ws.runs
            .values()
            .filter(|r| r.path == rel && !r.is_final())
            .map(|r| r.run_id.clone())
            .collect()
    });
    if !open.is_empty() {
        return Err(ToolError::invalid(
            "path",
            "a notebook with no run queued or running",
            format!(
                "{} has runs queued or running ({}); wait for them (get_run wait_ms) or interrupt_kernel, then rename",
                quote(&rel),
                open.join(", ")
            ),
        ));
    }
    let who = actor.clone();
    let force = a.force.unwrap_or(false);
    let res = engine.rename(&a.path, &a.new_path, actor, move |nb, from, to, now| {
        let held: Vec<String> = nb.locks.keys().cloned().collect();
        let overrode = check_locks(nb, &held, &who, force, now)?;
        let (old, new) = (from.rel.clone(), to.rel.clone());
        Ok(Plan {
            operation: "rename_notebook",
            overrode_locks: overrode,
            summary: format!("renamed {} to {}", quote(&old), quote(&new)),
            changes: vec![Change::NotebookRenamed {
                path: old.clone(),
                to: new.clone(),
            }],
            cell_ids: Vec::new(),
            result: Box::new(move |version, _| {
                to_map(&RenameOut {
                    path: old,
                    new_path: new,
                    version,
                })
            }),
        })
    })?;
    let summary = format!(
        "renamed {} to {}",
        res["path"].as_str().unwrap_or(""),
        res["new_path"].as_str().unwrap_or("")
    );
    Ok((summary, res))
}
