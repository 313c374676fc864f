//! `execute: true` on `insert_cell`, `batch_insert_cells` and
//! `update_cell` (§9.1): the write happens exactly as the tool alone does
//! it, then the code cells it wrote run as `execute_cell` runs them, and
//! the result gains `runs`. Two events, in that order: the edit, then the
//! acceptance of its runs.
//!
//! Everything that can be refused without writing (a bad timeout, a
//! non-code cell) is refused before the write. A run refused after the
//! write (a kernel that cannot start, a lock taken in between) says the
//! write landed and at which version, so nothing returned is ambiguous.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::runs::{self, Shape};
use crate::engine::Actor;
use crate::error::ToolError;
use crate::events::CellType;
use crate::runs::{Pick, Runner};

/// An editing tool's result with `execute: true` (the schema of the
/// three tools' results): the write's own fields, then `runs` as
/// `execute_cell` returns them (kept loose here: one full run schema per
/// tool would cost every agent's context).
#[derive(Debug, Serialize, JsonSchema)]
pub struct WithRuns<T> {
    #[serde(flatten)]
    pub written: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<Map<String, Value>>>,
}

/// How the written cells run.
#[derive(Debug, Clone, Copy)]
pub struct After {
    timeout: Duration,
    shape: Shape,
    force: bool,
}

/// `None` unless `execute` is true. A bad `timeout_s` refuses the call
/// before anything is written.
pub fn options(
    execute: Option<bool>,
    timeout_s: Option<f64>,
    max_output_chars: Option<u64>,
    include_images: Option<bool>,
    force: bool,
) -> Result<Option<After>, ToolError> {
    if !execute.unwrap_or(false) {
        return Ok(None);
    }
    Ok(Some(After {
        timeout: runs::timeout(timeout_s)?,
        shape: runs::shape(max_output_chars, include_images),
        force,
    }))
}

/// Refuses `execute: true` when none of the cells is code, before the
/// write.
pub fn some_code(types: &[CellType]) -> Result<(), ToolError> {
    if types.contains(&CellType::Code) {
        return Ok(());
    }
    let kind = types.first().map_or("empty", |t| t.as_str());
    Err(ToolError::invalid(
        "execute",
        "execute: true with at least one code cell",
        format!("a {kind} cell does not run; drop execute or write a code cell"),
    ))
}

/// The code cells among `ids`, whose types are `types` in the same order.
pub fn code_ids(ids: &[String], types: &[CellType]) -> Vec<String> {
    ids.iter()
        .zip(types)
        .filter(|(_, t)| **t == CellType::Code)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The actor of the runs' acceptance: the writer, with a request id of
/// its own (derived from the write's), so a retried call finds both its
/// write and its runs instead of answering the write's result twice.
pub fn runs_actor(writer: &Actor) -> Actor {
    Actor {
        request_id: writer.request_id.as_ref().map(|r| format!("{r}#execute")),
        ..writer.clone()
    }
}

/// Runs `ids` (cells the call just wrote) and adds their runs to the
/// write's answer. With no ids the answer gains an empty `runs`.
pub async fn run_written(
    runner: &Arc<Runner>,
    path: &str,
    who: Actor,
    ids: Vec<String>,
    after: After,
    stop: &CancellationToken,
    written: (String, Map<String, Value>),
) -> Result<(String, Map<String, Value>), ToolError> {
    let (summary, mut out) = written;
    if ids.is_empty() {
        out.insert("runs".into(), json!([]));
        return Ok((summary, out));
    }
    let deadline = tokio::time::Instant::now() + after.timeout;
    let version = out.get("version").cloned().unwrap_or(Value::Null);
    let accepted = runner
        .execute(
            path,
            runs_actor(&who),
            Pick::Cells(ids.clone()),
            after.force,
            true,
        )
        .await
        .map_err(|e| {
            let message = format!(
                "the write landed at version {version}, but its cells did not run: {}",
                e.message
            );
            ToolError { message, ..e }
                .with("version", version.clone())
                .with("cell_ids", json!(ids))
        })?;
    runs::wait_final(runner.engine(), &accepted.run_ids, deadline, stop).await;
    let ran = runs::runs_of(runner, &accepted.run_ids, after.shape);
    let statuses = ran
        .iter()
        .map(|r| r.status.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    out.insert("runs".into(), serde_json::to_value(ran).unwrap_or_default());
    Ok((format!("{summary}; ran: {statuses}"), out))
}
