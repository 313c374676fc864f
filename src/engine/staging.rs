//! Staging: a planned call becomes an event with the next version and a
//! time, folded into the projection at once (so the next job of the batch
//! plans against it) and kept for the batch's append; its answer is built
//! and stored in it for `request_id` retries. Staging an event is not
//! committing it: that is the writer's append.

use serde_json::{Map, Value, json};

use super::*;
use crate::events::{Change, Event};

impl Engine {
    /// Commits a plan over `nps` (or answers `changed: false` for an empty
    /// one) and shapes the result every write shares.
    pub(super) fn finish(
        &self,
        inner: &mut Inner,
        nps: &[NotebookPath],
        actor: &Actor,
        plan: Plan,
        now: i64,
    ) -> Result<Map<String, Value>, ToolError> {
        let last = nps
            .last()
            .ok_or_else(|| ToolError::internal("a write without a notebook"))?;
        if plan.changes.is_empty() {
            let nb = inner.ws.notebook(&last.rel);
            let current = nb.map_or(0, |n| n.current_version);
            let mut result = match nb {
                Some(nb) => (plan.result)(current, nb),
                None => Map::new(),
            };
            result.remove("version");
            result.insert("changed".into(), json!(false));
            result.insert("current_version".into(), json!(current));
            result.insert("client_name".into(), json!(actor.client_name));
            return Ok(result);
        }
        let paths: Vec<&str> = nps.iter().map(|np| np.rel.as_str()).collect();
        let changes = notebook::raise_minor_for_ids(&inner.ws, &paths, plan.changes);
        let event = Event {
            version: 0,
            timestamp_ms: 0,
            client_name: actor.client_name.clone(),
            operation: plan.operation.to_owned(),
            paths: nps.iter().map(|np| np.rel.clone()).collect(),
            cell_ids: plan.cell_ids,
            overrode_locks: plan.overrode_locks,
            request_id: actor.request_id.clone(),
            result: String::new(),
            summary: plan.summary,
            changes,
            files: Vec::new(),
        };
        let make = plan.result;
        let client = actor.client_name.clone();
        let overrode = event.overrode_locks.clone();
        self.commit_many(inner, nps, event, now, true, move |version, nb| {
            let mut r = make(version, nb);
            r.insert("version".into(), json!(version));
            r.insert("changed".into(), json!(true));
            r.insert("client_name".into(), json!(client));
            // A forced write says whose lock it went past (§4 Locks).
            match overrode.as_slice() {
                [] => {}
                [(_, owner)] => {
                    r.insert("overrode_lock".into(), json!(owner));
                }
                many => {
                    let list: Vec<Value> = many
                        .iter()
                        .map(|(c, o)| json!({"cell_id": c, "owner": o}))
                        .collect();
                    r.insert("overrode_locks".into(), Value::Array(list));
                }
            }
            r
        })
    }

    /// Records a write refused with `locked` as a `rejected` event (unless
    /// this client's refusal on the same lock acquisition is already on
    /// record) and returns the error carrying `rejected_version`.
    pub(super) fn reject(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        actor: &Actor,
        operation: &'static str,
        now: i64,
        err: ToolError,
    ) -> ToolError {
        let Some(nb) = inner.ws.notebook(&np.rel) else {
            return err;
        };
        let held: Vec<(String, crate::projections::Lock)> = err
            .details
            .get("locks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l["cell_id"].as_str())
            .filter_map(|id| nb.lock_at(id, now).map(|l| (id.to_owned(), l.clone())))
            .collect();
        let mut earlier = 0;
        let mut changes = Vec::new();
        for (cell_id, lock) in &held {
            let key = (actor.client_name.clone(), cell_id.clone(), lock.acquired_at);
            match nb.rejected.get(&key) {
                Some(&v) => earlier = earlier.max(v),
                None => changes.push(crate::events::Change::Rejected {
                    path: np.rel.clone(),
                    cell_id: cell_id.clone(),
                    holder: lock.owner.clone(),
                    acquired_at: lock.acquired_at,
                    expires_at: lock.expires_at,
                }),
            }
        }
        if changes.is_empty() {
            return if earlier > 0 {
                err.with("rejected_version", earlier)
            } else {
                err
            };
        }
        let holders: Vec<String> = held
            .iter()
            .map(|(c, l)| format!("{c} by {}", l.owner))
            .collect();
        let event = Event {
            version: 0,
            timestamp_ms: 0,
            client_name: actor.client_name.clone(),
            operation: operation.to_owned(),
            paths: vec![np.rel.clone()],
            cell_ids: held.iter().map(|(c, _)| c.clone()).collect(),
            overrode_locks: Vec::new(),
            request_id: None,
            result: String::new(),
            summary: format!("{operation} refused: locked ({})", holders.join(", "))
                .chars()
                .take(200)
                .collect(),
            changes,
            files: Vec::new(),
        };
        match self.commit(inner, np, event, now, false, |_, _| Map::new()) {
            Ok(_) => err.with("rejected_version", inner.ws.head),
            Err(e) => {
                tracing::warn!(error = %e, "could not record a rejected write");
                err
            }
        }
    }

    /// The stored result of an earlier call with the same request_id
    /// (possibly staged earlier in this batch).
    pub(super) fn replayed(
        &self,
        inner: &Inner,
        client: &str,
        rid: &str,
    ) -> Result<Option<Map<String, Value>>, ToolError> {
        let key = (client.to_owned(), rid.to_owned());
        let Some(&version) = inner.ws.requests.get(&key) else {
            return Ok(None);
        };
        let first_staged = inner.staged.first().map_or(u64::MAX, |e| e.version);
        let (timestamp_ms, result) = if version >= first_staged {
            match inner.staged.get((version - first_staged) as usize) {
                Some(e) => (e.timestamp_ms, e.result.clone()),
                None => return Ok(None),
            }
        } else {
            match self.store.get(version).map_err(internal)? {
                Some(r) => (r.event.timestamp_ms, r.event.result),
                None => return Ok(None),
            }
        };
        if timestamp_ms < now_ms() - REQUEST_TTL_MS {
            return Ok(None);
        }
        Ok(match serde_json::from_str(&result) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
    }

    /// Stages `event` on notebook `np` (see [`Engine::commit_many`]).
    pub(super) fn commit(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        event: Event,
        timestamp_ms: i64,
        write_file: bool,
        result: impl FnOnce(u64, &NotebookState) -> Map<String, Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        self.commit_many(
            inner,
            std::slice::from_ref(np),
            event,
            timestamp_ms,
            write_file,
            result,
        )
    }

    /// Stages `event` over `nps`: gives it the next version and a time no
    /// earlier than the head's, folds it into the projection and keeps it
    /// for the batch's append. `result` builds the answer from the last
    /// notebook; it is stored in the event (for request_id retries). With
    /// `write_file`, the batch writes each notebook's file before its
    /// append and swaps it in after.
    pub(super) fn commit_many(
        &self,
        inner: &mut Inner,
        nps: &[NotebookPath],
        mut event: Event,
        timestamp_ms: i64,
        write_file: bool,
        result: impl FnOnce(u64, &NotebookState) -> Map<String, Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        let missing = || ToolError::internal("event did not create its notebook");
        let last = nps.last().ok_or_else(missing)?;
        let creates = |rel: &str| {
            event.changes.iter().any(|c| match c {
                Change::NotebookCreated { path, .. } => path.as_str() == rel,
                Change::NotebookRenamed { to, .. } => to.as_str() == rel,
                _ => false,
            })
        };
        if nps
            .iter()
            .any(|np| inner.ws.notebook(&np.rel).is_none() && !creates(&np.rel))
        {
            return Err(missing());
        }
        let version = inner.ws.head + 1;
        event.version = version;
        // Times never decrease along versions (§8.5).
        event.timestamp_ms = timestamp_ms.max(inner.ws.head_timestamp_ms);
        // Jupyter alone writes a roomed notebook's file (§12).
        let files: Vec<&NotebookPath> = nps
            .iter()
            .filter(|np| write_file && !inner.roomed.contains(&np.rel))
            .collect();
        if write_file {
            for np in &files {
                if !inner.unwritten.contains_key(&np.rel)
                    && let Some(nb) = inner.ws.notebook(&np.rel)
                {
                    let cells = nb.cells.iter().map(|c| c.cell.clone()).collect();
                    inner
                        .bases
                        .insert(np.rel.clone(), (nb.header.clone(), cells));
                }
            }
        }
        inner.ws.apply(&event);
        let index = inner.staged.len();
        inner.staged.push(event);
        if write_file {
            for np in files {
                inner
                    .unwritten
                    .insert(np.rel.clone(), (np.abs.clone(), index));
            }
            // A notebook renamed away has no file of its own to write.
            let ws = &inner.ws;
            inner.unwritten.retain(|rel, _| ws.notebook(rel).is_some());
        }
        let answer = result(version, inner.ws.notebook(&last.rel).ok_or_else(missing)?);
        inner.staged[index].result = Value::Object(answer.clone()).to_string();
        Ok(answer)
    }
}
