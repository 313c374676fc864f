//! Running cells (§9): execute, follow and list runs, and the kernels'
//! lifecycle. The work is the owner's [`Runner`]; these adapters read
//! arguments, wait within the caller's limits and shape runs for agents
//! (outputs cut by the reading budgets, tracebacks without ANSI codes).

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::common::{self, to_map};
use super::read::shape_output;
use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{Code, ToolError};
use crate::events::{CellType, Change};
use crate::kernels::KernelStatus;
use crate::projections::RunRecord;
use crate::runs::{Pick, Runner};
use crate::time::rfc3339;

/// Longest `execute_cell` wait, in seconds (§9.1).
pub const MAX_TIMEOUT_S: f64 = 600.0;
/// Longest `get_run` wait (§9.1).
pub const MAX_WAIT_MS: u64 = 60_000;

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunOut {
    pub run_id: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
    pub client_name: String,
    /// queued, running, ok, error, interrupted, kernel_died or aborted.
    pub status: String,
    pub source: String,
    pub source_version: u64,
    pub kernel_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Value>>,
    pub queued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How runs are shown: output budgets, or no outputs at all.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub outputs: bool,
    pub max_chars: usize,
    pub images: bool,
}

pub fn run_out(r: &RunRecord, running_since: Option<i64>, shape: Shape) -> RunOut {
    let (status, started_at) = match running_since {
        Some(t) if !r.is_final() => ("running".to_owned(), Some(t)),
        _ => (r.status.clone(), r.started_at),
    };
    let outputs = shape.outputs.then(|| {
        match serde_json::from_str::<Value>(&r.outputs) {
            Ok(Value::Array(a)) => a,
            _ => Vec::new(),
        }
        .into_iter()
        .map(|o| shape_output(o, shape.max_chars, shape.images))
        .collect()
    });
    RunOut {
        run_id: r.run_id.clone(),
        path: r.path.clone(),
        cell_id: r.cell_id.clone(),
        client_name: r.client_name.clone(),
        status,
        source: r.source.clone(),
        source_version: r.source_version,
        kernel_name: r.kernel_name.clone(),
        execution_count: r.execution_count,
        outputs,
        queued_at: rfc3339(r.queued_at),
        started_at: started_at.map(rfc3339),
        finished_at: r.finished_at.map(rfc3339),
        duration_ms: r.duration_ms,
        truncated: r.truncated.then_some(true),
        reason: r.reason.clone(),
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct KernelOut {
    pub kernel_name: String,
    /// starting, idle, busy, restarting, dead or stopped.
    pub state: String,
}

impl KernelOut {
    fn of(s: &KernelStatus) -> KernelOut {
        KernelOut {
            kernel_name: s.kernel_name.clone(),
            state: state_name(s),
        }
    }
}

fn state_name(s: &KernelStatus) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until every run in `ids` is over, `deadline` passes or the server
/// stops. Each end is a commit, so waking on the head is enough.
pub(super) async fn wait_final(
    engine: &Engine,
    ids: &[String],
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
) {
    let mut heads = engine.subscribe();
    loop {
        heads.borrow_and_update();
        let done = engine.with_workspace(|ws| {
            ids.iter()
                .all(|id| ws.runs.get(id).is_none_or(RunRecord::is_final))
        });
        if done {
            return;
        }
        tokio::select! {
            woke = tokio::time::timeout_at(deadline, heads.changed()) => {
                if !matches!(woke, Ok(Ok(()))) {
                    return;
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

pub(super) fn runs_of(runner: &Runner, ids: &[String], shape: Shape) -> Vec<RunOut> {
    let records: Vec<RunRecord> = runner.engine().with_workspace(|ws| {
        ids.iter()
            .filter_map(|id| ws.runs.get(id).cloned())
            .collect()
    });
    records
        .iter()
        .map(|r| run_out(r, runner.running_since(&r.run_id), shape))
        .collect()
}

pub(super) fn shape(max: Option<u64>, images: Option<bool>) -> Shape {
    Shape {
        outputs: true,
        max_chars: max.unwrap_or(2000) as usize,
        images: images.unwrap_or(false),
    }
}

// ---------------------------------------------------------------- execute

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteArgs {
    pub path: String,
    pub cell_id: Option<String>,
    /// Run in this order, with nothing between them.
    pub cell_ids: Option<Vec<String>>,
    /// Every code cell, in order.
    #[schemars(extend("default" = false))]
    pub all: Option<bool>,
    /// At least 1, at most 600. Past it the runs go on: follow them with get_run wait_ms.
    #[schemars(extend("default" = 30))]
    pub timeout_s: Option<f64>,
    /// After a failed cell, the call's later cells end aborted.
    #[schemars(extend("default" = true))]
    pub stop_on_error: Option<bool>,
    /// 0: no limit.
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecuteOut {
    pub runs: Vec<RunOut>,
    /// The event that accepted the runs.
    pub version: u64,
    pub kernel: KernelOut,
}

fn pick(a: &ExecuteArgs) -> Result<Pick, ToolError> {
    let mut ids: Vec<String> = a.cell_ids.clone().unwrap_or_default();
    if let Some(one) = &a.cell_id {
        ids.push(one.clone());
    }
    match (a.all.unwrap_or(false), ids.is_empty()) {
        (true, true) => Ok(Pick::All),
        (false, false) => {
            common::check_count(ids.len())?;
            Ok(Pick::Cells(ids))
        }
        (true, false) => Err(ToolError::invalid(
            "all",
            "all: true or cell ids, not both",
            "give all: true or cell_id/cell_ids, not both",
        )),
        (false, true) => Err(ToolError::invalid(
            "cell_id",
            "cell_id, cell_ids or all: true",
            "say what to run: cell_id, cell_ids, or all: true for every code cell",
        )),
    }
}

pub fn timeout(t: Option<f64>) -> Result<Duration, ToolError> {
    let t = t.unwrap_or(30.0);
    if t.is_nan() || t < 1.0 {
        return Err(ToolError::invalid(
            "timeout_s",
            "a number of seconds from 1 to 600",
            format!("timeout_s {t} is below 1; pass at least 1 (the run goes on after a timeout)"),
        ));
    }
    Ok(Duration::from_secs_f64(t.min(MAX_TIMEOUT_S)))
}

pub async fn execute_cell(
    runner: &Arc<Runner>,
    a: ExecuteArgs,
    who: Actor,
    stop: &CancellationToken,
) -> Result<(String, Map<String, Value>), ToolError> {
    let limit = timeout(a.timeout_s)?;
    let pick = pick(&a)?;
    let deadline = tokio::time::Instant::now() + limit;
    let accepted = runner
        .execute(
            &a.path,
            who,
            pick,
            a.force.unwrap_or(false),
            a.stop_on_error.unwrap_or(true),
        )
        .await?;
    wait_final(runner.engine(), &accepted.run_ids, deadline, stop).await;
    let runs = runs_of(
        runner,
        &accepted.run_ids,
        shape(a.max_output_chars, a.include_images),
    );
    let kernel = runner
        .kernels()
        .status(&runner.engine().root().resolve(&a.path)?.abs)
        .unwrap_or(accepted.kernel);
    let version = accepted
        .answer
        .get("version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let summary = runs
        .iter()
        .map(|r| format!("{} {}", r.cell_id.as_deref().unwrap_or("-"), r.status))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = to_map(&ExecuteOut {
        runs,
        version,
        kernel: KernelOut::of(&kernel),
    });
    for key in ["client_name", "overrode_lock", "overrode_locks"] {
        if let Some(v) = accepted.answer.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok((format!("ran at version {version}: {summary}"), out))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExecuteCodeArgs {
    pub path: String,
    pub code: String,
    /// As for execute_cell.
    #[schemars(extend("default" = 30))]
    pub timeout_s: Option<f64>,
    /// 0: no limit.
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecuteCodeOut {
    pub run: RunOut,
    pub version: u64,
}

/// Runs code that is in no cell on the notebook's kernel (§9.1): on
/// record like a cell's run, touching no cell, needing no lock.
pub async fn execute_code(
    runner: &Arc<Runner>,
    a: ExecuteCodeArgs,
    who: Actor,
    stop: &CancellationToken,
) -> Result<(String, Map<String, Value>), ToolError> {
    let limit = timeout(a.timeout_s)?;
    common::check_source(&a.code)?;
    if a.code.trim().is_empty() {
        return Err(ToolError::invalid(
            "code",
            "code to run",
            "code is empty; pass the code to run",
        ));
    }
    let deadline = tokio::time::Instant::now() + limit;
    let accepted = runner
        .execute(&a.path, who, Pick::Code(a.code), false, false)
        .await?;
    wait_final(runner.engine(), &accepted.run_ids, deadline, stop).await;
    let run = runs_of(
        runner,
        &accepted.run_ids,
        shape(a.max_output_chars, a.include_images),
    )
    .pop()
    .ok_or_else(|| ToolError::internal("an accepted run is not on record"))?;
    let version = accepted
        .answer
        .get("version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let summary = format!("code ran at version {version}: {}", run.status);
    let mut out = to_map(&ExecuteCodeOut { run, version });
    if let Some(v) = accepted.answer.get("client_name") {
        out.insert("client_name".into(), v.clone());
    }
    Ok((summary, out))
}

// ---------------------------------------------------------------- get / list

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetRunArgs {
    pub run_id: String,
    /// Wait up to this long (at most 60000) for a queued or running run to end.
    #[schemars(extend("default" = 0))]
    pub wait_ms: Option<u64>,
    /// 0: no limit.
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GetRunOut {
    pub run: RunOut,
}

pub async fn get_run(
    runner: &Arc<Runner>,
    a: GetRunArgs,
    stop: &CancellationToken,
) -> Result<(String, Map<String, Value>), ToolError> {
    let ids = vec![a.run_id.clone()];
    let wait = Duration::from_millis(a.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    wait_final(
        runner.engine(),
        &ids,
        tokio::time::Instant::now() + wait,
        stop,
    )
    .await;
    let run = runs_of(runner, &ids, shape(a.max_output_chars, a.include_images))
        .pop()
        .ok_or_else(|| {
            ToolError::not_found(
                "run",
                format!(
                    "no run {} on record; list_runs shows the runs there are",
                    a.run_id
                ),
            )
        })?;
    Ok((
        format!("run {} {}", run.run_id, run.status),
        to_map(&GetRunOut { run }),
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListRunsArgs {
    pub path: Option<String>,
    pub cell_id: Option<String>,
    #[schemars(extend("enum" = ["queued", "running", "ok", "error", "interrupted", "kernel_died", "aborted"]))]
    pub status: Option<String>,
    /// Newest first; at most 1000.
    #[schemars(extend("default" = 20))]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListRunsOut {
    pub runs: Vec<RunOut>,
}

pub fn list_runs(
    runner: &Runner,
    a: ListRunsArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let path = match &a.path {
        Some(p) => Some(runner.engine().root().resolve(p)?.rel),
        None => None,
    };
    let limit = a.limit.unwrap_or(20).clamp(1, 1000) as usize;
    let mut records: Vec<RunRecord> = runner.engine().with_workspace(|ws| {
        ws.runs
            .values()
            .filter(|r| path.as_ref().is_none_or(|p| &r.path == p))
            .filter(|r| {
                a.cell_id
                    .as_ref()
                    .is_none_or(|c| r.cell_id.as_ref() == Some(c))
            })
            .cloned()
            .collect()
    });
    records.sort_by(|x, y| (y.version, &y.run_id).cmp(&(x.version, &x.run_id)));
    let no_outputs = Shape {
        outputs: false,
        max_chars: 0,
        images: false,
    };
    let runs: Vec<RunOut> = records
        .iter()
        .map(|r| run_out(r, runner.running_since(&r.run_id), no_outputs))
        .filter(|r| a.status.as_ref().is_none_or(|s| &r.status == s))
        .take(limit)
        .collect();
    Ok((
        format!("{} run(s)", runs.len()),
        to_map(&ListRunsOut { runs }),
    ))
}

// ---------------------------------------------------------------- kernels

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct KernelEntryOut {
    pub path: String,
    pub kernel_name: String,
    pub state: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// Runs waiting, not counting the one running.
    pub queued: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct KernelSpecOut {
    pub name: String,
    pub display_name: String,
    pub language: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListKernelsOut {
    pub kernels: Vec<KernelEntryOut>,
    pub kernelspecs: Vec<KernelSpecOut>,
}

pub fn list_kernels(runner: &Runner) -> Result<(String, Map<String, Value>), ToolError> {
    let root = runner.engine().root().path().to_path_buf();
    let kernels: Vec<KernelEntryOut> = runner
        .kernels()
        .list()
        .into_iter()
        .map(|e| KernelEntryOut {
            path: e
                .notebook
                .strip_prefix(&root)
                .unwrap_or(&e.notebook)
                .to_string_lossy()
                .replace('\\', "/"),
            kernel_name: e.status.kernel_name.clone(),
            state: state_name(&e.status),
            started_at: rfc3339(e.status.started_at_ms),
            execution_count: e.status.execution_count,
            queued: e.status.queued,
        })
        .collect();
    let kernelspecs = runner
        .kernels()
        .kernelspecs()
        .into_iter()
        .map(|s| KernelSpecOut {
            name: s.name,
            display_name: s.display_name,
            language: s.language,
        })
        .collect();
    let out = ListKernelsOut {
        kernels,
        kernelspecs,
    };
    Ok((
        format!("{} kernel(s) running", out.kernels.len()),
        to_map(&out),
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct KernelArgs {
    pub path: String,
    pub client_name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RestartArgs {
    pub path: String,
    /// Start this kernelspec instead (recorded in the notebook's metadata).
    pub kernel_name: Option<String>,
    pub client_name: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InterruptOut {
    /// The run that was interrupted (none when the kernel was idle).
    pub interrupted: Vec<String>,
    pub version: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RestartOut {
    pub kernel: KernelOut,
    pub version: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VersionOut {
    pub version: u64,
}

pub async fn interrupt_kernel(
    runner: &Runner,
    a: KernelArgs,
    who: Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let (interrupted, version) = runner.interrupt(&a.path, who).await?;
    Ok((
        format!("interrupted {} run(s)", interrupted.len()),
        to_map(&InterruptOut {
            interrupted,
            version,
        }),
    ))
}

pub async fn restart_kernel(
    runner: &Runner,
    a: RestartArgs,
    who: Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let (status, version) = runner.restart(&a.path, who, a.kernel_name).await?;
    Ok((
        format!("restarted {}", status.kernel_name),
        to_map(&RestartOut {
            kernel: KernelOut::of(&status),
            version,
        }),
    ))
}

pub async fn shutdown_kernel(
    runner: &Runner,
    a: KernelArgs,
    who: Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let version = runner.shutdown_kernel(&a.path, who).await?;
    Ok(("kernel shut down".into(), to_map(&VersionOut { version })))
}

// ---------------------------------------------------------------- clear

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClearArgs {
    pub path: String,
    /// Absent: every code cell.
    pub cell_ids: Option<Vec<String>>,
    pub expected_version: Option<u64>,
    #[schemars(extend("default" = false))]
    pub force: Option<bool>,
    pub client_name: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ClearOut {
    pub cleared: Vec<String>,
    pub version: u64,
}

pub fn clear_outputs(
    engine: &Engine,
    a: ClearArgs,
    who: &Actor,
) -> Result<(String, Map<String, Value>), ToolError> {
    let path = a.path.clone();
    let actor = who.clone();
    let answer = engine.write(&path, who, Presence::Existing, "clear_outputs", move |nb, np, now| {
        let nb = nb.ok_or_else(|| ToolError::internal("notebook missing after sync"))?;
        let positions: Vec<usize> = match &a.cell_ids {
            Some(ids) => ids
                .iter()
                .map(|id| common::id_of(nb, id))
                .collect::<Result<_, _>>()?,
            None => (0..nb.cells.len())
                .filter(|&i| nb.cells[i].cell.cell_type == CellType::Code)
                .collect(),
        };
        if let Some(expected) = a.expected_version
            && let Some(&i) = positions.iter().find(|&&i| nb.cells[i].last_version > expected)
        {
            let live = &nb.cells[i];
            return Err(ToolError::new(
                Code::VersionConflict,
                format!(
                    "cell {} changed at version {}, after expected_version {expected}; read it again and retry",
                    live.cell.id, live.last_version
                ),
            )
            .with("cell_id", live.cell.id.clone())
            .with("current_version", nb.current_version));
        }
        let ids: Vec<String> = positions
            .iter()
            .map(|&i| nb.cells[i].cell.id.clone())
            .filter(|id| {
                nb.position(id).is_some_and(|i| {
                    let c = &nb.cells[i].cell;
                    c.cell_type == CellType::Code
                        && (c.outputs.as_deref() != Some("[]")
                            || c.execution_count.as_deref() != Some("null"))
                })
            })
            .collect();
        let overrode = common::check_locks(nb, &ids, &actor, a.force.unwrap_or(false), now)?;
        let changes: Vec<Change> = ids
            .iter()
            .filter_map(|id| {
                let before = nb.cells[nb.position(id)?].cell.clone();
                let mut after = (*before).clone();
                after.outputs = Some("[]".into());
                after.execution_count = Some("null".into());
                Some(Change::CellReplaced {
                    path: np.rel.clone(),
                    before,
                    after: Arc::new(after),
                })
            })
            .collect();
        let cleared = ids.clone();
        Ok(Plan {
            operation: "clear_outputs",
            changes,
            summary: format!("cleared outputs of {} cell(s)", ids.len()),
            cell_ids: ids,
            overrode_locks: overrode,
            result: Box::new(move |_, _| {
                let mut m = Map::new();
                m.insert("cleared".into(), json!(cleared));
                m
            }),
        })
    })?;
    let mut out = answer;
    out.entry("cleared").or_insert_with(|| json!([]));
    if let Some(v) = out.remove("current_version") {
        out.insert("version".into(), v);
    }
    let n = out["cleared"].as_array().map_or(0, Vec::len);
    Ok((format!("cleared {n} cell(s)"), out))
}
