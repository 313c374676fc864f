//! nbledger inside JupyterLab's collaboration rooms (§12), on with
//! `serve --jupyter URL` and off otherwise.
//!
//! - `wire`: the transport (the session request, the room websocket,
//!   y-websocket framing);
//! - `ydoc`: jupyter_ydoc's notebook schema on a `yrs` document, both ways;
//! - `peer`: one notebook's room: join, sync, reconcile the log and the
//!   room, coalesce a person's typing, the focus guard, fall back to the
//!   file and rejoin.
//!
//! This module: the owner watches the log and joins the room of every
//! notebook an event touches, one [`peer::Peer`] task each, all stopped
//! (each flushing its room's last edits to the log and handing the file
//! back to the engine) before the engine stops.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Engine;

pub mod focus;
pub mod peer;
pub mod wire;
pub mod ydoc;

pub use wire::Jupyter;

/// Joins the room of each notebook the log's events touch from now on,
/// until `stop`. The peers run on `tracker`.
pub fn start(engine: Arc<Engine>, jupyter: Jupyter, stop: CancellationToken, tracker: TaskTracker) {
    let peers = tracker.clone();
    tracker.spawn(async move {
        let mut head = engine.subscribe();
        let mut seen = *head.borrow_and_update();
        let mut joined: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = head.changed() => if changed.is_err() { return },
            }
            let now = *head.borrow_and_update();
            for v in seen + 1..=now {
                let Ok(Some(record)) = engine.store().get(v) else {
                    continue;
                };
                for path in record.event.paths {
                    if !path.ends_with(".ipynb") || !joined.insert(path.clone()) {
                        continue;
                    }
                    let peer = peer::Peer {
                        engine: engine.clone(),
                        jupyter: jupyter.clone(),
                        path,
                    };
                    peers.spawn(peer.run(stop.clone()));
                }
            }
            seen = now;
        }
    });
}
