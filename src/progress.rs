//! MCP progress notifications while a call waits (§9.2): a caller that
//! sends a progress token with a call hears from the server at least every
//! few seconds until the answer, so clients that time out idle requests
//! keep waiting for a long run. The notifications come from the process
//! the caller talks to, whether it runs the call or forwards it, so a
//! forwarded call is followed the same way.

use std::future::Future;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{CallToolRequestParams, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};

/// How often a waiting call reports (the contract asks for at most 5 s).
pub const EVERY: Duration = Duration::from_secs(2);

/// The caller's progress token, from the request's `_meta`.
pub fn token(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<ProgressToken> {
    context
        .meta
        .get_progress_token()
        .or_else(|| request.meta.as_ref().and_then(|m| m.get_progress_token()))
}

/// Drives `work` to its end, telling `peer` every [`EVERY`] that `tool`
/// is still at it. A client that stops reading does not stall the call.
pub async fn reporting<F: Future>(
    peer: Peer<RoleServer>,
    token: ProgressToken,
    tool: &str,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + EVERY, EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut step = 0u64;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                step += 1;
                let mut note = ProgressNotificationParam::new(token.clone(), step as f64);
                note.message = Some(format!(
                    "{tool}: still working after {} s",
                    start.elapsed().as_secs()
                ));
                let _ = tokio::time::timeout(EVERY, peer.notify_progress(note)).await;
            }
        }
    }
}
