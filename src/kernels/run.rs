//! What a run is to its caller: the request (code and a sink), the events
//! it reports, and a channel-backed handle for callers that just wait.
//!
//! Every accepted run ends with exactly one [`RunEvent::Finished`], even
//! when it never started (restart, death or shutdown while it was queued:
//! `aborted`), so the engine can always record its end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// A run's status as the contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Ok,
    Error,
    Interrupted,
    KernelDied,
    Aborted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Interrupted => "interrupted",
            RunStatus::KernelDied => "kernel_died",
            RunStatus::Aborted => "aborted",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// The outputs so far: the whole list (nbformat objects, as in the file)
/// and which indices changed since the previous update, so a caller may
/// store only those.
#[derive(Debug, Clone)]
pub struct OutputsUpdate {
    pub outputs: Arc<Vec<Value>>,
    /// Indices changed since the last update of this run; every index after
    /// a clear (then `outputs` may also be shorter than before).
    pub changed: Vec<usize>,
    pub truncated: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub execution_count: Option<u64>,
    pub started_at: Option<SystemTime>,
    /// From the request reaching the kernel to its reply (None: never started).
    pub duration: Option<Duration>,
    pub outputs: Arc<Vec<Value>>,
    pub truncated: bool,
    /// Why, in one sentence, when the run did not complete in the kernel
    /// (`aborted`, `kernel_died`).
    pub reason: Option<String>,
}

impl RunEnd {
    pub(crate) fn not_run(status: RunStatus, reason: impl Into<String>) -> RunEnd {
        RunEnd {
            status,
            execution_count: None,
            started_at: None,
            duration: None,
            outputs: Arc::new(Vec::new()),
            truncated: false,
            reason: Some(reason.into()),
        }
    }
}

/// What a run reports, in this order: `Started` once (unless it never
/// starts), `Outputs` while outputs change (at most once per progress
/// interval), `Finished` once.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started {
        started_at: SystemTime,
    },
    /// The kernel's `execute_input` carried the count this run will have.
    ExecutionCount(u64),
    Outputs(OutputsUpdate),
    Finished(RunEnd),
}

/// Where a run's events go. Called on the kernel's own task: it must not
/// block (hand the event to a channel or a queue).
pub trait RunSink: Send + 'static {
    fn event(&mut self, event: RunEvent);
}

impl RunSink for mpsc::UnboundedSender<RunEvent> {
    fn event(&mut self, event: RunEvent) {
        // A caller that stopped listening does not stop the run.
        let _ = self.send(event);
    }
}

/// A run to queue: its caller-chosen id (returned by interrupt), the code,
/// and where its events go.
pub struct RunRequest {
    pub id: String,
    pub code: String,
    pub sink: Box<dyn RunSink>,
    /// When set by the time the run's turn comes, it ends `aborted`
    /// without reaching the kernel: a caller's `stop_on_error` sets it from
    /// an earlier run's sink, which the kernel calls before taking the
    /// next run, so no later run can slip through.
    pub skip: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RunRequest {
    pub fn new(id: impl Into<String>, code: impl Into<String>, sink: impl RunSink) -> RunRequest {
        RunRequest {
            id: id.into(),
            code: code.into(),
            sink: Box::new(sink),
            skip: None,
        }
    }

    /// A request with a fresh id whose events a [`RunHandle`] receives.
    pub fn channel(code: impl Into<String>) -> (RunRequest, RunHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = uuid::Uuid::now_v7().to_string();
        (
            RunRequest::new(id.clone(), code, tx),
            RunHandle { id, events: rx },
        )
    }
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("id", &self.id)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// The receiving end of [`RunRequest::channel`]. Every wait is either
/// bounded or cancellable (drop the future); dropping the handle does not
/// stop the run.
#[derive(Debug)]
pub struct RunHandle {
    pub id: String,
    events: mpsc::UnboundedReceiver<RunEvent>,
}

impl RunHandle {
    /// The next event; `None` once the run has finished and all was read.
    pub async fn next(&mut self) -> Option<RunEvent> {
        self.events.recv().await
    }

    /// Waits for the end, skipping progress. If the kernel's task vanished
    /// without finishing the run (it cannot, short of a panic), the run
    /// ends `kernel_died`.
    pub async fn finish(mut self) -> RunEnd {
        while let Some(event) = self.events.recv().await {
            if let RunEvent::Finished(end) = event {
                return end;
            }
        }
        RunEnd::not_run(
            RunStatus::KernelDied,
            "the kernel's task ended without finishing the run",
        )
    }

    /// [`RunHandle::finish`] bounded by `limit`; `Err(self)` to keep
    /// following the run after a timeout.
    pub async fn finish_within(self, limit: Duration) -> Result<RunEnd, RunHandle> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut this = self;
        loop {
            match tokio::time::timeout_at(deadline, this.events.recv()).await {
                Ok(Some(RunEvent::Finished(end))) => return Ok(end),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Ok(RunEnd::not_run(
                        RunStatus::KernelDied,
                        "the kernel's task ended without finishing the run",
                    ));
                }
                Err(_) => return Err(this),
            }
        }
    }
}
