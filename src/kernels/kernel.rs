//! One kernel and its FIFO queue of runs, driven by a single task.
//!
//! The task owns the process, the sockets and the queue, so the order of
//! runs, interrupts, restarts and deaths is simply the order it handles
//! them in. Runs go to the kernel one at a time: the next request is sent
//! only when the previous run has its `execute_reply` and its `idle` status
//! (so its outputs are complete). A kernel that died is started afresh by
//! the next run; a kernel that never answers is declared dead by the
//! heartbeat, and every wait on the task is bounded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use jupyter_protocol::{ExecuteRequest, InterruptRequest, ShutdownRequest};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::KernelError;
use super::boot::{Live, boot};
use super::outputs::{OutputLimits, Outputs};
use super::run::{OutputsUpdate, RunEnd, RunEvent, RunRequest, RunStatus};
use super::spec::{InterruptMode, KernelSpec};
use super::wire::{Channel, Heartbeat, Incoming, reply_status};

/// Timings and limits of a kernel.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// From launch to a `kernel_info_reply`; past it the start failed.
    pub startup_timeout: Duration,
    /// Each step of the shutdown ladder (request, SIGTERM) waits this long.
    pub shutdown_grace: Duration,
    /// Outputs so far are reported at most this often while a run goes on.
    pub progress_interval: Duration,
    pub heartbeat: Heartbeat,
    pub limits: OutputLimits,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            startup_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(3),
            progress_interval: Duration::from_secs(1),
            heartbeat: Heartbeat::default(),
            limits: OutputLimits::default(),
        }
    }
}

/// Where a kernel runs and what it is for.
#[derive(Debug, Clone)]
pub struct KernelPlace {
    /// Folder for its connection, pid and log files.
    pub data_dir: PathBuf,
    /// Its working folder (the notebook's folder).
    pub cwd: PathBuf,
    /// Who it is for (a notebook path), recorded in its pid file.
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelState {
    Starting,
    Idle,
    Busy,
    Restarting,
    /// Died; the next run starts a fresh kernel.
    Dead,
    /// Shut down; the handle is finished.
    Stopped,
}

/// A kernel as `list_kernels` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStatus {
    pub kernel_name: String,
    pub state: KernelState,
    /// Milliseconds since the Unix epoch when the current process started.
    pub started_at_ms: i64,
    pub execution_count: Option<u64>,
    /// Runs waiting, not counting the one running.
    pub queued: usize,
    /// The id of the run in the kernel now.
    pub running: Option<String>,
    pub pid: i32,
}

enum Command {
    Run(RunRequest),
    Interrupt(oneshot::Sender<Option<String>>),
    Restart(
        Option<Box<KernelSpec>>,
        oneshot::Sender<Result<(), KernelError>>,
    ),
    Shutdown(oneshot::Sender<Vec<String>>),
}

/// The handle of one kernel. Dropping every handle shuts the kernel down.
#[derive(Debug, Clone)]
pub struct Kernel {
    key: PathBuf,
    /// Runs submitted so far: a run's number is its place in the queue order.
    submitted: Arc<AtomicU64>,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<KernelStatus>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Run(_) => "Run",
            Command::Interrupt(_) => "Interrupt",
            Command::Restart(..) => "Restart",
            Command::Shutdown(_) => "Shutdown",
        })
    }
}

impl Kernel {
    /// Launches the kernel and waits for its `kernel_info` handshake (at
    /// most `startup_timeout`); a start-up failure carries the end of the
    /// kernel's stderr.
    pub async fn start(
        spec: KernelSpec,
        place: KernelPlace,
        options: KernelOptions,
    ) -> Result<Kernel, KernelError> {
        let live = boot(&spec, &place, &options).await?;
        let key = PathBuf::from(&place.key);
        let (commands, rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(status_of(&spec, Some(&live), KernelState::Idle));
        let driver = Driver {
            spec,
            place,
            options,
            live: Some(live),
            queue: VecDeque::new(),
            active: None,
            commands: rx,
            status: status_tx,
            execution_count: None,
            state: KernelState::Idle,
        };
        tokio::spawn(driver.drive());
        Ok(Kernel {
            key,
            submitted: Arc::default(),
            commands,
            status,
        })
    }

    /// Queues a run (FIFO) and returns its number in this kernel's queue
    /// order (1, 2, 3…; callers that submit concurrently must serialise
    /// their calls for the numbers to match the order). `Err` gives the
    /// request back when the kernel was shut down.
    pub fn submit(&self, run: RunRequest) -> Result<u64, RunRequest> {
        match self.commands.send(Command::Run(run)) {
            Ok(()) => Ok(self.submitted.fetch_add(1, Ordering::SeqCst) + 1),
            Err(mpsc::error::SendError(Command::Run(run))) => Err(run),
            Err(_) => Ok(0),
        }
    }

    /// Interrupts the run in the kernel (SIGINT to its process group, or an
    /// `interrupt_request` when its kernelspec says `message`); returns its
    /// id. Queued runs stay queued.
    pub async fn interrupt(&self) -> Option<String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Interrupt(tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Stops the kernel and starts a fresh one (with `spec` if given): the
    /// running run ends `interrupted`, queued ones `aborted`.
    pub async fn restart(&self, spec: Option<KernelSpec>) -> Result<(), KernelError> {
        let (tx, rx) = oneshot::channel();
        let gone = || KernelError::NotRunning(self.key.clone());
        self.commands
            .send(Command::Restart(spec.map(Box::new), tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Shuts the kernel down (request, SIGTERM, SIGKILL); the running run
    /// ends `interrupted`, queued ones `aborted`. Returns their ids.
    pub async fn shutdown(&self) -> Vec<String> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub fn status(&self) -> KernelStatus {
        self.status.borrow().clone()
    }

    /// Whether the handle still takes runs (not shut down).
    pub fn is_open(&self) -> bool {
        !self.commands.is_closed()
    }
}

fn status_of(spec: &KernelSpec, live: Option<&Live>, state: KernelState) -> KernelStatus {
    KernelStatus {
        kernel_name: spec.name.clone(),
        state,
        started_at_ms: live.map_or(0, |l| l.process.record.started_at_ms),
        execution_count: None,
        queued: 0,
        running: None,
        pid: live.map_or(0, |l| l.process.pid()),
    }
}

/// The run in the kernel now.
struct Active {
    request: RunRequest,
    msg_id: String,
    outputs: Outputs,
    started: Instant,
    started_at: SystemTime,
    reply: Option<(String, Option<String>)>,
    reply_at: Option<Instant>,
    idle: bool,
    interrupted: bool,
    execution_count: Option<u64>,
    last_report: Instant,
    reported: u64,
}

impl Active {
    fn report(&mut self, now: Instant) {
        let changed = self.outputs.changed_since(self.reported);
        self.reported = self.outputs.revision();
        self.last_report = now;
        self.request.sink.event(RunEvent::Outputs(OutputsUpdate {
            outputs: Arc::new(self.outputs.to_nbformat()),
            changed,
            truncated: self.outputs.truncated(),
        }));
    }

    fn end(mut self, status: RunStatus, reason: Option<String>) -> String {
        self.request.sink.event(RunEvent::Finished(RunEnd {
            status,
            execution_count: self.execution_count,
            started_at: Some(self.started_at),
            duration: Some(self.started.elapsed()),
            outputs: Arc::new(self.outputs.to_nbformat()),
            truncated: self.outputs.truncated(),
            reason,
        }));
        self.request.id
    }
}

/// After its `execute_reply`, a run waits this long for its `idle` status
/// (which follows its last output) before ending anyway.
const IDLE_AFTER_REPLY: Duration = Duration::from_secs(2);

enum Wake {
    Command(Option<Command>),
    Incoming(Option<Incoming>),
    Exited(String),
    Tick,
}

struct Driver {
    spec: KernelSpec,
    place: KernelPlace,
    options: KernelOptions,
    live: Option<Live>,
    queue: VecDeque<RunRequest>,
    active: Option<Active>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<KernelStatus>,
    execution_count: Option<u64>,
    state: KernelState,
}

impl Driver {
    async fn drive(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.start_next().await;
            self.publish();
            let wake = {
                let (incoming, exit) = match self.live.as_mut() {
                    Some(l) => (Some(&mut l.incoming), Some(l.process.exit_watch())),
                    None => (None, None),
                };
                tokio::select! {
                    c = self.commands.recv() => Wake::Command(c),
                    i = recv_or_pending(incoming) => Wake::Incoming(i),
                    how = exited_or_pending(exit) => Wake::Exited(how),
                    _ = tick.tick() => Wake::Tick,
                }
            };
            match wake {
                Wake::Command(Some(command)) => {
                    if self.command(command).await {
                        return self.close("the kernel was shut down");
                    }
                }
                Wake::Command(None) => {
                    self.stop(RunStatus::Aborted, "the kernel's owner let it go")
                        .await;
                    return;
                }
                Wake::Incoming(Some(Incoming::Message {
                    channel,
                    msg_type,
                    parent,
                    content,
                })) => self.message(channel, &msg_type, parent.as_deref(), content),
                Wake::Incoming(Some(Incoming::HeartbeatLost(n))) => {
                    self.died(format!("its heartbeat went unanswered {n} times"))
                        .await
                }
                Wake::Incoming(None) => self.died("its connection closed".into()).await,
                Wake::Exited(how) => self.died(format!("its process exited ({how})")).await,
                Wake::Tick => self.tick(),
            }
        }
    }

    /// Handles one command; true when the kernel is to close for good.
    async fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Run(run) => self.queue.push_back(run),
            Command::Interrupt(reply) => {
                let _ = reply.send(self.interrupt().await);
            }
            Command::Restart(spec, reply) => {
                self.state = KernelState::Restarting;
                self.publish();
                self.stop(RunStatus::Interrupted, "the kernel was restarted")
                    .await;
                if let Some(spec) = spec {
                    self.spec = *spec;
                }
                self.execution_count = None;
                let booted = self.boot().await;
                let _ = reply.send(booted);
            }
            Command::Shutdown(reply) => {
                let ended = self
                    .stop(RunStatus::Interrupted, "the kernel was shut down")
                    .await;
                self.state = KernelState::Stopped;
                let _ = reply.send(ended);
                return true;
            }
        }
        false
    }

    async fn interrupt(&mut self) -> Option<String> {
        let (active, live) = (self.active.as_mut()?, self.live.as_mut()?);
        active.interrupted = true;
        let sent = match self.spec.interrupt_mode {
            InterruptMode::Message => live.wire.control(InterruptRequest {}).await.is_ok(),
            InterruptMode::Signal => false,
        };
        if !sent {
            live.process.signal(libc::SIGINT);
        }
        Some(active.request.id.clone())
    }

    /// Starts a fresh process for the current spec; on failure the kernel is dead.
    async fn boot(&mut self) -> Result<(), KernelError> {
        self.state = KernelState::Starting;
        self.publish();
        match boot(&self.spec, &self.place, &self.options).await {
            Ok(live) => {
                self.live = Some(live);
                self.state = KernelState::Idle;
                // Published before the caller hears back, so the status it
                // reads next is this one.
                self.publish();
                Ok(())
            }
            Err(e) => {
                self.state = KernelState::Dead;
                self.publish();
                Err(e)
            }
        }
    }

    /// Sends the next queued run, starting a fresh kernel first if the last
    /// one died.
    async fn start_next(&mut self) {
        if self.active.is_some() || self.queue.is_empty() {
            return;
        }
        if self.live.is_none()
            && let Err(e) = self.boot().await
        {
            let reason = e.to_string();
            for run in self.queue.drain(..) {
                let mut sink = run.sink;
                sink.event(RunEvent::Finished(RunEnd::not_run(
                    RunStatus::Aborted,
                    &reason,
                )));
            }
            return;
        }
        let skip = |r: &RunRequest| {
            r.skip
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        };
        while self.queue.front().is_some_and(skip) {
            let Some(skipped) = self.queue.pop_front() else {
                break;
            };
            let mut sink = skipped.sink;
            sink.event(RunEvent::Finished(RunEnd::not_run(
                RunStatus::Aborted,
                "an earlier cell of the same call failed (stop_on_error)",
            )));
        }
        let (Some(mut request), Some(live)) = (self.queue.pop_front(), self.live.as_mut()) else {
            return;
        };
        let execute = ExecuteRequest {
            code: std::mem::take(&mut request.code),
            silent: false,
            store_history: true,
            user_expressions: None,
            // input() fails at once with the kernel's own error.
            allow_stdin: false,
            // Our queue, not the kernel's, decides what runs after an error.
            stop_on_error: false,
        };
        let msg_id = match live.wire.shell(execute).await {
            Ok(id) => id,
            Err(e) => {
                self.queue.push_front(request);
                return self.died(format!("it did not take a request: {e}")).await;
            }
        };
        let started_at = SystemTime::now();
        request.sink.event(RunEvent::Started { started_at });
        let now = Instant::now();
        self.state = KernelState::Busy;
        self.active = Some(Active {
            request,
            msg_id,
            outputs: Outputs::with_limits(self.options.limits),
            started: now,
            started_at,
            reply: None,
            reply_at: None,
            idle: false,
            interrupted: false,
            execution_count: None,
            last_report: now,
            reported: 0,
        });
    }

    fn message(&mut self, channel: Channel, msg_type: &str, parent: Option<&str>, content: Value) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        // Output of an earlier run (a background thread) has no run to land on.
        if parent != Some(active.msg_id.as_str()) {
            return;
        }
        let count = content.get("execution_count").and_then(Value::as_u64);
        match (channel, msg_type) {
            (Channel::IoPub, "status") => {
                active.idle |=
                    content.get("execution_state").and_then(Value::as_str) == Some("idle");
            }
            (Channel::IoPub, "execute_input") => {
                if let Some(n) = count {
                    active.execution_count = Some(n);
                    active.request.sink.event(RunEvent::ExecutionCount(n));
                }
            }
            (Channel::IoPub, _) => {
                active.outputs.apply(msg_type, &content);
            }
            (Channel::Shell, "execute_reply") => {
                active.reply = Some(reply_status(&content));
                active.reply_at = Some(Instant::now());
                active.execution_count = count.or(active.execution_count);
            }
            (Channel::Shell, _) => {}
        }
        if active.reply.is_some() && active.idle {
            self.finish();
        } else {
            self.tick();
        }
    }

    /// Reports outputs that changed, and ends a run whose idle never came.
    fn tick(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let now = Instant::now();
        if active.reply_at.is_some_and(|t| now - t >= IDLE_AFTER_REPLY) {
            return self.finish();
        }
        if active.outputs.revision() != active.reported
            && now - active.last_report >= self.options.progress_interval
        {
            active.report(now);
        }
    }

    fn finish(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        self.state = KernelState::Idle;
        self.execution_count = active.execution_count.or(self.execution_count);
        let (status, ename) = active.reply.clone().unwrap_or_default();
        let status = match status.as_str() {
            "ok" => RunStatus::Ok,
            "aborted" => RunStatus::Aborted,
            _ if active.interrupted || ename.as_deref() == Some("KeyboardInterrupt") => {
                RunStatus::Interrupted
            }
            _ => RunStatus::Error,
        };
        // Published before the run's end is sent, so whoever sees the end
        // and then asks for the kernel's status sees the run's count.
        self.publish();
        active.end(status, None);
    }

    /// Ends the running run with `running` and the queued ones `aborted`;
    /// returns their ids.
    fn end_runs(&mut self, running: RunStatus, reason: &str) -> Vec<String> {
        let mut ended = Vec::new();
        if let Some(active) = self.active.take() {
            ended.push(active.end(running, Some(reason.to_owned())));
        }
        for run in self.queue.drain(..) {
            let mut sink = run.sink;
            sink.event(RunEvent::Finished(RunEnd::not_run(
                RunStatus::Aborted,
                reason,
            )));
            ended.push(run.id);
        }
        ended
    }

    /// The kernel died: its runs end, its process group is killed, and the
    /// next run starts a fresh one.
    async fn died(&mut self, reason: String) {
        let reason = format!("the kernel died: {reason}");
        tracing::warn!(key = %self.place.key, "{reason}");
        // Dead before the runs end: whoever sees them end and runs again
        // must find this kernel dead (and get a fresh one), not queue on it.
        self.state = KernelState::Dead;
        let live = self.live.take();
        self.end_runs(RunStatus::KernelDied, &reason);
        self.publish();
        if let Some(live) = live {
            live.process.terminate(self.options.shutdown_grace).await;
        }
    }

    /// The shutdown ladder: `shutdown_request` on control, then SIGTERM to
    /// the group, then SIGKILL, each step waiting `shutdown_grace`.
    async fn stop(&mut self, running: RunStatus, reason: &str) -> Vec<String> {
        let ended = self.end_runs(running, reason);
        if let Some(mut live) = self.live.take() {
            let grace = self.options.shutdown_grace;
            if live.process.exited().is_none() {
                let asked = live
                    .wire
                    .control(ShutdownRequest { restart: false })
                    .await
                    .is_ok();
                let exited = asked
                    && tokio::time::timeout(grace, live.process.wait_exit())
                        .await
                        .is_ok();
                if !exited {
                    live.process.terminate(grace).await;
                }
            }
            // Dropping the process kills what is left of its group.
        }
        self.state = KernelState::Dead;
        ended
    }

    /// After a shutdown: runs still in the channel end `aborted`, and later
    /// commands find the channel closed.
    fn close(mut self, reason: &str) {
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Run(run) = command {
                let mut sink = run.sink;
                sink.event(RunEvent::Finished(RunEnd::not_run(
                    RunStatus::Aborted,
                    reason,
                )));
            }
        }
        self.state = KernelState::Stopped;
        self.publish();
    }

    fn publish(&self) {
        let status = KernelStatus {
            execution_count: self.execution_count,
            queued: self.queue.len(),
            running: self.active.as_ref().map(|a| a.request.id.clone()),
            ..status_of(&self.spec, self.live.as_ref(), self.state)
        };
        self.status.send_replace(status);
    }
}

async fn recv_or_pending(
    incoming: Option<&mut mpsc::UnboundedReceiver<Incoming>>,
) -> Option<Incoming> {
    match incoming {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn exited_or_pending(exit: Option<watch::Receiver<Option<String>>>) -> String {
    if let Some(mut exit) = exit
        && let Ok(how) = exit.wait_for(Option::is_some).await
    {
        return how.clone().unwrap_or_default();
    }
    std::future::pending().await
}
