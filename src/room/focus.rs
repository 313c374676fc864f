//! The human-focus guard (§12): a cell a person edited in the last
//! [`FOCUS`], or has the cursor in (JupyterLab's awareness `cursors`), is
//! locked by `jupyter:<user name>` through ordinary lock events with a
//! short expiry, renewed while the focus lasts. Agents then get `locked`,
//! a forced write is recorded as any, and `list_locks` shows it; a lock
//! held by someone else is left alone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use yrs::Transact;

use super::peer::{Joined, Peer};
use super::ydoc;
use crate::engine::{Actor, Plan, Presence};
use crate::error::ToolError;
use crate::events::Change;
use crate::time::now_ms;

/// A cell edited this recently is locked for agents.
pub const FOCUS: Duration = Duration::from_secs(3);
/// How long a focus lock lasts past its last renewal.
const FOCUS_TTL_MS: i64 = 5000;

pub const OP_JUPYTER_FOCUS: &str = "jupyter_focus";

impl Peer {
    /// Keeps a lock by the person on each cell edited in the last
    /// [`FOCUS`] (renewed before it lapses), unless someone else holds it.
    pub(super) async fn focus(&self, j: &mut Joined) -> anyhow::Result<()> {
        let now = Instant::now();
        let t = now_ms();
        let Some(view) = self.view() else {
            return Ok(());
        };
        // Cells edited lately, and cells a person's cursor is in.
        let mut focused: Vec<(String, String)> = j
            .edits
            .iter()
            .filter(|(_, e)| now.duration_since(e.last) <= FOCUS)
            .map(|(id, e)| (id.clone(), e.who.clone()))
            .collect();
        focused.extend(self.cursors(j));
        let mut want: HashMap<String, Vec<Change>> = HashMap::new();
        let mut seen = HashSet::new();
        for (id, who) in &focused {
            if !seen.insert(id.clone()) || !view.cells.iter().any(|c| c.id == *id) {
                continue;
            }
            let acquired_at = match view.locks.get(id).filter(|l| l.holds_at(t)) {
                Some(l) if l.owner != *who => continue,
                Some(l) if l.expires_at - t > FOCUS_TTL_MS / 2 => continue,
                Some(l) => l.acquired_at,
                None => t,
            };
            want.entry(who.clone())
                .or_default()
                .push(Change::LockAcquired {
                    path: self.path.clone(),
                    cell_id: id.clone(),
                    owner: who.clone(),
                    acquired_at,
                    expires_at: t + FOCUS_TTL_MS,
                });
        }
        for (who, changes) in want {
            self.write_locks(&who, changes).await?;
        }
        Ok(())
    }

    /// `(cell, person)` for each cell a person's cursor is in, from the
    /// room's awareness (`cursors[].anchor`, as JupyterLab's editor sets it).
    fn cursors(&self, j: &Joined) -> Vec<(String, String)> {
        let ours = j.doc.client_id();
        let txn = j.doc.transact();
        let mut out = Vec::new();
        for (id, state) in j.awareness.iter() {
            if id == ours {
                continue;
            }
            let Some(v) = state
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            else {
                continue;
            };
            let Some(cursors) = v["cursors"].as_array() else {
                continue;
            };
            let who = self.person(j, &[id]);
            for c in cursors {
                if let Some(cell) = ydoc::cell_at(&txn, &j.cells, &c["anchor"]) {
                    out.push((cell, who.clone()));
                }
            }
        }
        out
    }

    async fn write_locks(&self, who: &str, changes: Vec<Change>) -> anyhow::Result<()> {
        let actor = Actor {
            client_name: who.to_owned(),
            request_id: None,
            named: true,
        };
        let engine = self.engine.clone();
        let path = self.path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            engine.write(
                &path,
                &actor,
                Presence::Existing,
                OP_JUPYTER_FOCUS,
                move |nb, _, _| {
                    let nb = nb.ok_or_else(|| ToolError::internal("notebook missing"))?;
                    let cell_ids = crate::engine::changed_cells(&changes);
                    Ok(Plan {
                        operation: OP_JUPYTER_FOCUS,
                        summary: format!(
                            "{} is editing {} in JupyterLab",
                            actor_name(&changes),
                            nb.path
                        ),
                        cell_ids,
                        overrode_locks: Vec::new(),
                        changes,
                        result: Box::new(|_, _| Map::new()),
                    })
                },
            )
        })
        .await?;
        answer.map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(())
    }
}

fn actor_name(changes: &[Change]) -> String {
    match changes.first() {
        Some(Change::LockAcquired { owner, .. }) => owner.clone(),
        _ => String::new(),
    }
}
