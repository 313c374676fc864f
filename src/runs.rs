//! Running cells (§9): the store owner's bridge between its kernels and
//! the log.
//!
//! A call is accepted by one `execute_cell` event (a `RunStarted` per
//! cell, with the source that will run), then handed to the notebook's
//! kernel in the same order. What each run reports reaches the log through
//! the engine like every write: its outputs at most once per second
//! (`run_outputs`) and its end (`run_finished`), each by the client that
//! accepted the run. The run table is projection state, so reads answer
//! from the log; only "running since" is this service's to tell, because a
//! run's start is not an event.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::engine::{Actor, Engine, Plan, Presence};
use crate::error::{Code, ToolError, quote};
use crate::events::{Change, OP_RUN_FINISHED, OP_RUN_OUTPUTS};
use crate::kernels::{
    JupyterDirs, KernelError, KernelManager, KernelOptions, KernelStatus, ManagerConfig, RunEnd,
    RunEvent, RunRequest, RunSink, RunStatus,
};
use crate::projections::{NotebookState, RunRecord};

/// The kernelspec a notebook without `metadata.kernelspec.name` runs on.
pub const DEFAULT_KERNEL: &str = "python3";

/// Which cells a call runs.
#[derive(Debug, Clone)]
pub enum Pick {
    Cells(Vec<String>),
    /// Every code cell, in order.
    All,
    /// Code of the caller's own, on the notebook's kernel, touching no
    /// cell (`execute_code`).
    Code(String),
}

impl Pick {
    /// The operation that accepts this pick's runs.
    pub fn operation(&self) -> &'static str {
        match self {
            Pick::Code(_) => "execute_code",
            Pick::Cells(_) | Pick::All => "execute_cell",
        }
    }
}

/// What `execute_cell` accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The engine's answer (version, client_name, overrode_lock…).
    pub answer: Map<String, Value>,
    pub run_ids: Vec<String>,
    pub kernel: KernelStatus,
}

pub struct Runner {
    engine: Arc<Engine>,
    kernels: KernelManager,
    /// Per notebook, held from accepting a call to handing its runs to the
    /// kernel, so the kernel's order is the log's order.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Runs in a kernel now → when they started (ms).
    running: Mutex<HashMap<String, i64>>,
    /// Runs this owner handed to a kernel: a retried request must not run
    /// them twice.
    submitted: Mutex<HashSet<String>>,
    followers: TaskTracker,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The kernel room's errors as the contract words them (§9.2).
pub fn kernel_error(e: KernelError) -> ToolError {
    match &e {
        KernelError::UnknownKernel(u) => {
            let names: Vec<Value> = u.available.iter().map(|n| json!(n)).collect();
            ToolError::not_found("kernelspec", format!("{e}; set the notebook's kernelspec with restart_kernel kernel_name, or install the kernel"))
                .with("kernelspecs", names)
        }
        KernelError::StartFailed { stderr_tail, .. } => ToolError::new(
            Code::Unavailable,
            format!("{e}; fix the kernel's environment, then run again"),
        )
        .with("stderr_tail", stderr_tail.clone()),
        KernelError::NotRunning(_) => {
            ToolError::not_found("kernel", format!("{e}; run a cell to start one"))
        }
    }
}

/// `metadata.kernelspec.name` of a notebook, or the default.
pub fn kernel_name_of(nb: &NotebookState) -> String {
    serde_json::from_str::<Value>(&nb.header.metadata)
        .ok()
        .and_then(|m| m["kernelspec"]["name"].as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_KERNEL.to_owned())
}

/// Sends a run's events to its follower; on an unsuccessful end, marks the
/// rest of its call to be skipped (`stop_on_error`) before the kernel takes
/// its next run.
struct Forward {
    tx: mpsc::UnboundedSender<RunEvent>,
    stop: Option<Arc<AtomicBool>>,
}

impl RunSink for Forward {
    fn event(&mut self, event: RunEvent) {
        if let (RunEvent::Finished(end), Some(stop)) = (&event, &self.stop)
            && end.status != RunStatus::Ok
        {
            stop.store(true, Ordering::SeqCst);
        }
        let _ = self.tx.send(event);
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ToolError::internal("the call failed inside the server; retry"))?
}

fn server_actor(client: &str) -> Actor {
    Actor {
        client_name: client.to_owned(),
        request_id: None,
        named: true,
    }
}

impl Runner {
    /// Kernel files go in `data_dir`; kernelspecs are found as Jupyter
    /// finds them from this process's environment.
    pub fn new(engine: Arc<Engine>, data_dir: PathBuf) -> Runner {
        Runner::with_config(
            engine,
            ManagerConfig {
                data_dir,
                dirs: JupyterDirs::from_env(),
                options: KernelOptions::default(),
            },
        )
    }

    pub fn with_config(engine: Arc<Engine>, config: ManagerConfig) -> Runner {
        Runner {
            engine,
            kernels: KernelManager::new(config),
            gates: Default::default(),
            running: Default::default(),
            submitted: Default::default(),
            followers: TaskTracker::new(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn kernels(&self) -> &KernelManager {
        &self.kernels
    }

    /// At start-up: kills kernels a crashed owner left, and ends on record
    /// the runs they had (`kernel_died`): no kernel holds them any more.
    pub async fn recover(&self) {
        let orphans = self.kernels.clean_orphans().await;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "killed kernels left by a crashed owner"
            );
        }
        let open: Vec<RunRecord> = self.engine.with_workspace(|ws| {
            ws.runs
                .values()
                .filter(|r| !r.is_final())
                .cloned()
                .collect()
        });
        for run in open {
            let end = RunEnd {
                status: RunStatus::KernelDied,
                execution_count: run.execution_count,
                started_at: None,
                duration: None,
                outputs: Arc::new(Vec::new()),
                truncated: run.truncated,
                reason: Some("the owner running its kernel stopped before it ended".into()),
            };
            let engine = self.engine.clone();
            let outputs = run.outputs.clone();
            let written = blocking(move || finish(&engine, &run, &end, None, Some(outputs))).await;
            if let Err(e) = written {
                tracing::warn!(error = %e.message, "could not record a run left by a crashed owner");
            }
        }
    }

    /// A clean stop: shuts every kernel down and waits until the ends of
    /// their runs are in the log.
    pub async fn shutdown(&self) {
        self.kernels.shutdown_all().await;
        self.followers.close();
        self.followers.wait().await;
    }

    fn gate(&self, path: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.gates
            .lock()
            .entry(path.to_owned())
            .or_default()
            .clone()
    }

    /// When a run in a kernel now started (ms).
    pub fn running_since(&self, run_id: &str) -> Option<i64> {
        self.running.lock().get(run_id).copied()
    }

    /// Accepts `pick` of `path` as runs (one `execute_cell` event) and
    /// queues them on the notebook's kernel, started first if needed.
    pub async fn execute(
        self: &Arc<Self>,
        path: &str,
        actor: Actor,
        pick: Pick,
        force: bool,
        stop_on_error: bool,
    ) -> Result<Accepted, ToolError> {
        let np = self.engine.root().resolve(path)?;
        let engine = self.engine.clone();
        let p = path.to_owned();
        let wanted = blocking(move || engine.read(&p, |nb| Ok(kernel_name_of(nb)))).await?;
        let gate = self.gate(&np.rel);
        let _turn = gate.lock().await;
        // Started before anything is accepted, so a kernel that cannot
        // start refuses the call instead of leaving runs on record.
        let status = self
            .kernels
            .ensure(&np.abs, &wanted)
            .await
            .map_err(kernel_error)?;
        let kernel_name = status.kernel_name.clone();
        let engine = self.engine.clone();
        let p = path.to_owned();
        let answer = blocking(move || {
            let who = actor.clone();
            engine.write(
                &p,
                &actor,
                Presence::Existing,
                pick.operation(),
                move |nb, np, now| plan_execute(nb, np, &who, now, pick, force, kernel_name),
            )
        })
        .await?;
        let run_ids: Vec<String> = answer
            .get("run_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let stop = stop_on_error.then(|| Arc::new(AtomicBool::new(false)));
        for id in &run_ids {
            let record = self.engine.with_workspace(|ws| ws.runs.get(id).cloned());
            let Some(record) = record else { continue };
            // A retried request answers its first acceptance: its runs
            // are already in a kernel or over.
            if record.is_final() || !self.submitted.lock().insert(id.clone()) {
                continue;
            }
            self.submit(&np.abs, record, stop.clone()).await;
        }
        let kernel = self.kernels.status(&np.abs).unwrap_or(status);
        Ok(Accepted {
            answer,
            run_ids,
            kernel,
        })
    }

    async fn submit(
        self: &Arc<Self>,
        abs: &std::path::Path,
        record: RunRecord,
        stop: Option<Arc<AtomicBool>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut request = RunRequest::new(
            record.run_id.clone(),
            record.source.clone(),
            Forward {
                tx,
                stop: stop.clone(),
            },
        );
        request.skip = stop;
        let this = self.clone();
        let follower = record.clone();
        self.followers
            .spawn(async move { this.follow(follower, rx).await });
        if let Err(e) = self.kernels.run(abs, &record.kernel_name, request).await {
            // The request and its sink are gone with the error: end the
            // run on record here.
            let end = RunEnd {
                status: RunStatus::Aborted,
                execution_count: None,
                started_at: None,
                duration: None,
                outputs: Arc::new(Vec::new()),
                truncated: false,
                reason: Some(e.to_string()),
            };
            let engine = self.engine.clone();
            let _ = blocking(move || finish(&engine, &record, &end, None, None)).await;
        }
    }

    /// Records what one run reports, in order, until its end.
    async fn follow(&self, run: RunRecord, mut rx: mpsc::UnboundedReceiver<RunEvent>) {
        let mut count = None;
        while let Some(event) = rx.recv().await {
            let engine = self.engine.clone();
            let written = match event {
                RunEvent::Started { started_at } => {
                    self.running
                        .lock()
                        .insert(run.run_id.clone(), ms(started_at));
                    continue;
                }
                RunEvent::ExecutionCount(n) => {
                    count = Some(n);
                    continue;
                }
                RunEvent::Outputs(update) => {
                    let r = run.clone();
                    let outputs = Value::Array((*update.outputs).clone()).to_string();
                    let truncated = update.truncated;
                    blocking(move || record_outputs(&engine, &r, outputs, count, truncated)).await
                }
                RunEvent::Finished(end) => {
                    let r = run.clone();
                    let done = blocking(move || finish(&engine, &r, &end, count, None)).await;
                    self.running.lock().remove(&run.run_id);
                    if let Err(e) = done {
                        tracing::warn!(run = %run.run_id, error = %e.message, "could not record a run's end");
                    }
                    return;
                }
            };
            if let Err(e) = written {
                tracing::warn!(run = %run.run_id, error = %e.message, "could not record a run's outputs");
            }
        }
        self.running.lock().remove(&run.run_id);
    }

    /// Interrupts the run in the notebook's kernel; records the call.
    pub async fn interrupt(
        &self,
        path: &str,
        actor: Actor,
    ) -> Result<(Vec<String>, u64), ToolError> {
        let np = self.engine.root().resolve(path)?;
        let status = self
            .kernels
            .status(&np.abs)
            .ok_or_else(|| kernel_error(KernelError::NotRunning(np.rel.clone().into())))?;
        let ids: Vec<String> = self
            .kernels
            .interrupt(&np.abs)
            .await
            .map_err(kernel_error)?
            .into_iter()
            .collect();
        let version = self
            .record_action(
                path,
                actor,
                "interrupt_kernel",
                status.kernel_name,
                ids.clone(),
                None,
            )
            .await?;
        Ok((ids, version))
    }

    /// Restarts the notebook's kernel (starting one if `kernel_name` is
    /// given or the notebook names one); a new name goes in its metadata.
    pub async fn restart(
        &self,
        path: &str,
        actor: Actor,
        kernel_name: Option<String>,
    ) -> Result<(KernelStatus, u64), ToolError> {
        let np = self.engine.root().resolve(path)?;
        let spec = match &kernel_name {
            Some(n) => Some(self.kernels.find_spec(n).map_err(kernel_error)?),
            None => None,
        };
        let name = match (&kernel_name, self.kernels.status(&np.abs)) {
            (Some(n), _) => Some(n.clone()),
            (None, Some(_)) => None,
            (None, None) => {
                let engine = self.engine.clone();
                let p = path.to_owned();
                Some(blocking(move || engine.read(&p, |nb| Ok(kernel_name_of(nb)))).await?)
            }
        };
        let status = self
            .kernels
            .restart(&np.abs, name.as_deref())
            .await
            .map_err(kernel_error)?;
        let metadata = spec.map(
            |s| json!({"name": s.name, "display_name": s.display_name, "language": s.language}),
        );
        let version = self
            .record_action(
                path,
                actor,
                "restart_kernel",
                status.kernel_name.clone(),
                Vec::new(),
                metadata,
            )
            .await?;
        Ok((status, version))
    }

    /// Shuts the notebook's kernel down; its runs end on record.
    pub async fn shutdown_kernel(&self, path: &str, actor: Actor) -> Result<u64, ToolError> {
        let np = self.engine.root().resolve(path)?;
        let status = self
            .kernels
            .status(&np.abs)
            .ok_or_else(|| kernel_error(KernelError::NotRunning(np.rel.clone().into())))?;
        let ids = self.kernels.shutdown(&np.abs).await.map_err(kernel_error)?;
        self.record_action(
            path,
            actor,
            "shutdown_kernel",
            status.kernel_name,
            ids,
            None,
        )
        .await
    }

    async fn record_action(
        &self,
        path: &str,
        actor: Actor,
        action: &'static str,
        kernel_name: String,
        run_ids: Vec<String>,
        kernelspec: Option<Value>,
    ) -> Result<u64, ToolError> {
        let engine = self.engine.clone();
        let p = path.to_owned();
        let answer = blocking(move || {
            engine.write(&p, &actor, Presence::Existing, action, move |nb, np, _| {
                let nb = nb.ok_or_else(|| ToolError::internal("notebook missing after sync"))?;
                let mut changes = Vec::new();
                if let Some(spec) = kernelspec {
                    let mut meta: Map<String, Value> =
                        serde_json::from_str(&nb.header.metadata).unwrap_or_default();
                    if meta.get("kernelspec") != Some(&spec) {
                        meta.insert("kernelspec".into(), spec);
                        let mut after = nb.header.clone();
                        after.metadata = Value::Object(meta).to_string();
                        changes.push(Change::HeaderSet {
                            path: np.rel.clone(),
                            before: nb.header.clone(),
                            after,
                        });
                    }
                }
                changes.push(Change::KernelAction {
                    path: np.rel.clone(),
                    kernel_name: kernel_name.clone(),
                    action: action.to_owned(),
                    run_ids,
                });
                Ok(Plan {
                    operation: action,
                    changes,
                    cell_ids: Vec::new(),
                    summary: format!("{action} ({kernel_name})"),
                    overrode_locks: Vec::new(),
                    result: Box::new(|_, _| Map::new()),
                })
            })
        })
        .await?;
        Ok(answer.get("version").and_then(Value::as_u64).unwrap_or(0))
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_execute(
    nb: Option<&NotebookState>,
    np: &crate::paths::NotebookPath,
    actor: &Actor,
    now: i64,
    pick: Pick,
    force: bool,
    kernel_name: String,
) -> Result<Plan, ToolError> {
    let nb = nb.ok_or_else(|| ToolError::internal("notebook missing after sync"))?;
    let positions: Vec<usize> = match pick {
        Pick::Code(code) => return Ok(plan_code(nb, np, code, kernel_name)),
        Pick::All => nb
            .cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.cell.cell_type == crate::events::CellType::Code)
            .map(|(i, _)| i)
            .collect(),
        Pick::Cells(ids) => ids
            .iter()
            .map(|id| crate::tools::common::id_of(nb, id))
            .collect::<Result<_, _>>()?,
    };
    if positions.is_empty() {
        return Err(ToolError::invalid(
            "all",
            "a notebook with code cells",
            format!(
                "{} has no code cell to run; insert one first",
                quote(&np.rel)
            ),
        ));
    }
    for &i in &positions {
        let cell = &nb.cells[i].cell;
        if cell.cell_type != crate::events::CellType::Code {
            return Err(ToolError::invalid(
                "cell_id",
                "a code cell",
                format!(
                    "cell {} is a {} cell: only code cells run; change_cell_type it to code first",
                    cell.id,
                    cell.cell_type.as_str()
                ),
            )
            .with("cell_id", cell.id.clone()));
        }
    }
    let ids: Vec<String> = positions
        .iter()
        .map(|&i| nb.cells[i].cell.id.clone())
        .collect();
    let overrode = crate::tools::common::check_locks(nb, &ids, actor, force, now)?;
    let mut run_ids = Vec::new();
    let changes = positions
        .iter()
        .map(|&i| {
            let live = &nb.cells[i];
            let run_id = uuid::Uuid::now_v7().simple().to_string();
            run_ids.push(run_id.clone());
            Change::RunStarted {
                path: np.rel.clone(),
                run_id,
                cell_id: Some(live.cell.id.clone()),
                source: live.cell.source.clone(),
                source_version: live.last_version,
                kernel_name: kernel_name.clone(),
            }
        })
        .collect();
    let summary = match ids.as_slice() {
        [one] => format!("run {one} on {kernel_name}"),
        many => format!("run {} cells on {kernel_name}", many.len()),
    };
    Ok(Plan {
        operation: "execute_cell",
        changes,
        cell_ids: ids,
        summary,
        overrode_locks: overrode,
        result: Box::new(move |_, _| {
            let mut m = Map::new();
            m.insert("run_ids".into(), json!(run_ids));
            m
        }),
    })
}

/// `execute_code`'s acceptance: one run with no cell, so no lock is
/// asked for and no cell's outputs change. Its `source_version` is the
/// notebook's version the code was accepted at.
fn plan_code(
    nb: &NotebookState,
    np: &crate::paths::NotebookPath,
    code: String,
    kernel_name: String,
) -> Plan {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let lines = code.lines().count();
    let summary = format!("run {lines} line(s) of code on {kernel_name}");
    let ids = vec![run_id.clone()];
    Plan {
        operation: "execute_code",
        changes: vec![Change::RunStarted {
            path: np.rel.clone(),
            run_id,
            cell_id: None,
            source: code,
            source_version: nb.current_version,
            kernel_name,
        }],
        cell_ids: Vec::new(),
        summary,
        overrode_locks: Vec::new(),
        result: Box::new(move |_, _| {
            let mut m = Map::new();
            m.insert("run_ids".into(), json!(ids));
            m
        }),
    }
}

fn record_outputs(
    engine: &Engine,
    run: &RunRecord,
    outputs: String,
    execution_count: Option<u64>,
    truncated: bool,
) -> Result<(), ToolError> {
    let r = run.clone();
    engine.write(
        &run.path,
        &server_actor(&run.client_name),
        Presence::Existing,
        OP_RUN_OUTPUTS,
        move |_, np, _| {
            Ok(Plan {
                operation: OP_RUN_OUTPUTS,
                changes: vec![Change::RunOutputs {
                    path: np.rel.clone(),
                    run_id: r.run_id.clone(),
                    cell_id: r.cell_id.clone(),
                    outputs,
                    execution_count,
                    truncated,
                }],
                cell_ids: r.cell_id.iter().cloned().collect(),
                summary: format!("outputs of run {}", r.run_id),
                overrode_locks: Vec::new(),
                result: Box::new(|_, _| Map::new()),
            })
        },
    )?;
    Ok(())
}

/// Records a run's end. `kept` replaces the end's outputs (a run ended by
/// recovery keeps what the log had).
fn finish(
    engine: &Engine,
    run: &RunRecord,
    end: &RunEnd,
    count: Option<u64>,
    kept: Option<String>,
) -> Result<(), ToolError> {
    let r = run.clone();
    let outputs = kept.unwrap_or_else(|| Value::Array((*end.outputs).clone()).to_string());
    let status = end.status.as_str().to_owned();
    let change = Change::RunFinished {
        path: String::new(),
        run_id: r.run_id.clone(),
        cell_id: r.cell_id.clone(),
        status: status.clone(),
        execution_count: end.execution_count.or(count),
        started_at: end.started_at.map(ms),
        duration_ms: end.duration.map(|d| d.as_millis() as u64),
        outputs,
        truncated: end.truncated,
        reason: end.reason.clone(),
    };
    let operation = OP_RUN_FINISHED;
    engine.write(
        &run.path,
        &server_actor(&run.client_name),
        Presence::Existing,
        operation,
        move |_, np, _| {
            let mut change = change;
            if let Change::RunFinished { path, .. } = &mut change {
                *path = np.rel.clone();
            }
            Ok(Plan {
                operation,
                changes: vec![change],
                cell_ids: r.cell_id.iter().cloned().collect(),
                summary: format!("run {} {status}", r.run_id),
                overrode_locks: Vec::new(),
                result: Box::new(|_, _| Map::new()),
            })
        },
    )?;
    Ok(())
}
