//! Starting a kernel: launch its process, connect, and hold the first
//! request until a `kernel_info` handshake has gone both ways.
//!
//! Every step is bounded by the start-up timeout and raced against the
//! process exiting, so a kernel that cannot start fails fast with the end
//! of its stderr instead of hanging its caller.

use std::time::Duration;

use jupyter_protocol::KernelInfoRequest;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::KernelError;
use super::kernel::{KernelOptions, KernelPlace};
use super::process::KernelProcess;
use super::spec::KernelSpec;
use super::wire::{Channel, Heartbeat, Incoming, Wire};

/// A running kernel process with its sockets.
pub(crate) struct Live {
    pub process: KernelProcess,
    pub wire: Wire,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
}

pub(crate) async fn boot(
    spec: &KernelSpec,
    place: &KernelPlace,
    options: &KernelOptions,
) -> Result<Live, KernelError> {
    let process = KernelProcess::launch(spec, &place.data_dir, &place.cwd, &place.key).await?;
    let mut exit = process.exit_watch();
    let ready = tokio::time::timeout(options.startup_timeout, async {
        tokio::select! {
            r = handshake(&process, options.heartbeat) => r,
            how = exit.wait_for(Option::is_some) => Err(format!(
                "it exited during start-up ({})",
                how.map(|h| h.clone().unwrap_or_default()).unwrap_or_default()
            )),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "it did not answer kernel_info within {} s",
            options.startup_timeout.as_secs()
        ))
    });
    match ready {
        Ok((wire, incoming)) => Ok(Live {
            process,
            wire,
            incoming,
        }),
        Err(reason) => {
            // A kernel that fails often says why on stderr as it exits; the
            // handshake can give up first (a busy machine starts Python
            // slowly), so let it finish saying it before it is stopped.
            let _ = tokio::time::timeout(Duration::from_secs(2), process.wait_exit()).await;
            let reason = match process.exited() {
                Some(how) if !reason.starts_with("it exited") => {
                    format!("it exited during start-up ({how})")
                }
                _ => reason,
            };
            process.terminate(options.shutdown_grace).await;
            Err(KernelError::StartFailed {
                kernel_name: spec.name.clone(),
                reason,
                stderr_tail: process.output_tail(),
            })
        }
    }
}

/// Connects and repeats `kernel_info_request` until both a reply on shell
/// and a message on iopub came back: a request sent while the kernel's
/// sockets are still connecting is lost, and iopub messages published
/// before our subscription took are too.
async fn handshake(
    process: &KernelProcess,
    heartbeat: Heartbeat,
) -> Result<(Wire, mpsc::UnboundedReceiver<Incoming>), String> {
    // The pure-Rust ZeroMQ client fails a connect outright (a reset) when
    // the kernel has not bound its ports yet; keep trying while it lives
    // (the caller's start-up timeout bounds this).
    let mut pause = Duration::from_millis(50);
    let (mut wire, mut incoming) = loop {
        match Wire::connect(&process.connection, heartbeat).await {
            Ok(w) => break w,
            Err(e) if process.exited().is_some() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "kernel sockets not ready yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    };
    let (mut replied, mut iopub) = (false, false);
    let mut wait = Duration::from_millis(200);
    loop {
        wire.shell(KernelInfoRequest {}).await?;
        let deadline = Instant::now() + wait;
        while let Ok(message) = tokio::time::timeout_at(deadline, incoming.recv()).await {
            match message {
                Some(Incoming::Message {
                    channel: Channel::Shell,
                    msg_type,
                    ..
                }) => {
                    replied |= msg_type == "kernel_info_reply";
                }
                Some(Incoming::Message {
                    channel: Channel::IoPub,
                    ..
                }) => iopub = true,
                Some(Incoming::HeartbeatLost(_)) => return Err("its heartbeat stopped".into()),
                None => return Err("its sockets closed".into()),
            }
            if replied && iopub {
                return Ok((wire, incoming));
            }
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}
