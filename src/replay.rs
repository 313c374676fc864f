//! The one replay path: the newest valid projection checkpoint, then the
//! records after it, folded with `Workspace::apply`. Start-up, rollback
//! after a failed batch, and the audit's past states (`show --at`) all come
//! through here; the checkpoint's format is
//! [`crate::projections::checkpoint`], the store keeps its bytes opaque.
//! (`blame` folds every event of a notebook itself: line authorship is not
//! in checkpoints.)

use crate::events::{Change, Event, Hash};
use crate::projections::checkpoint::{Checkpoint, Decoded};
use crate::projections::{NotebookState, Workspace};
use crate::store::{Store, StoreError};

/// The projection as the log has it: the stored checkpoint, if usable,
/// then the records after it; and the version of that checkpoint. On a
/// record that cannot be read, the fold so far and the error.
pub fn workspace(store: &Store) -> (Workspace, u64, Result<(), StoreError>) {
    let (mut ws, checkpointed) = match load_checkpoint(store) {
        Some(cp) => (cp.workspace, cp.version),
        None => (Workspace::default(), 0),
    };
    for rec in store.records(ws.head + 1) {
        match rec {
            Ok(rec) => ws.apply(&rec.event),
            Err(e) => return (ws, checkpointed, Err(e)),
        }
    }
    (ws, checkpointed, Ok(()))
}

/// Notebook `path` (a key in the log) right after version `v`: its state
/// in the checkpoint when that is at or before `v`, then its own events up
/// to `v` (read through the notebook index, so a notebook's past costs its
/// own events, not the log's). `None` if it did not exist at `v`.
pub fn notebook_at(store: &Store, path: &str, v: u64) -> Result<Option<NotebookState>, StoreError> {
    let mut ws = Workspace::default();
    let mut from = 0;
    if let Some(cp) = load_checkpoint(store)
        && cp.version <= v
    {
        from = cp.version;
        if let Some(nb) = cp.workspace.notebooks.get(path) {
            ws.notebooks.insert(path.to_owned(), nb.clone());
        }
    }
    let todo = store
        .notebook_versions(path, from, usize::MAX)?
        .into_iter()
        .take_while(|&x| x <= v)
        .collect();
    for rec in store.records_at(todo) {
        let (version, rec) = rec?;
        let rec = rec.ok_or(StoreError::Missing(version))?;
        // A rename into `path` brings the notebook's earlier life, read
        // the same way under its former path.
        if let Some(old) = renamed_from(&rec.event, path)
            && !ws.notebooks.contains_key(old)
            && let Some(before) = notebook_at(store, old, version - 1)?
        {
            ws.notebooks.insert(old.to_owned(), before);
        }
        ws.apply_to_notebooks(&rec.event);
    }
    Ok(ws.notebooks.remove(path))
}

/// The path `event` renamed to `path`, if it did.
fn renamed_from<'a>(event: &'a Event, path: &str) -> Option<&'a str> {
    event.changes.iter().find_map(|c| match c {
        Change::NotebookRenamed { path: old, to } if to == path => Some(old.as_str()),
        _ => None,
    })
}

/// The earlier paths of notebook `path`, oldest first, each with the
/// version of the rename that left it. A renamed notebook's first event
/// under a path is the rename into it (a rename never lands on a path the
/// log knows), so each step costs one index lookup and one record.
pub fn lineage(store: &Store, path: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    let mut at = path.to_owned();
    while let Some(&first) = store.notebook_versions(&at, 0, 1)?.first() {
        let Some(rec) = store.get(first)? else { break };
        let Some(old) = renamed_from(&rec.event, &at) else {
            break;
        };
        at = old.to_owned();
        out.push((at.clone(), first));
    }
    out.reverse();
    Ok(out)
}

/// Versions of the events of notebook `path` over its whole life (its
/// earlier paths' events up to each rename, then its own), after `after`,
/// oldest first, at most `limit`.
pub fn life_versions(
    store: &Store,
    path: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for (old, until) in lineage(store, path)? {
        if out.len() >= limit || until <= after {
            continue;
        }
        let vs = store.notebook_versions(&old, after, limit - out.len())?;
        // The rename itself is listed under the new path.
        out.extend(vs.into_iter().take_while(|&v| v < until));
    }
    if out.len() < limit {
        out.extend(store.notebook_versions(path, after, limit - out.len())?);
    }
    Ok(out)
}

/// What the audit command line learns of the stored projection checkpoint.
pub enum StoredCheckpoint {
    /// None was ever written (or it was cleared).
    Absent,
    /// Written by another build or checkpoint format, or not decodable: the
    /// server ignores it and replays the log.
    Foreign(String),
    /// One this build would load if its hash matches record `version`.
    At {
        version: u64,
        hash: Hash,
        workspace: Box<Workspace>,
    },
}

/// The stored checkpoint as it is, for `verify` to compare with a replay.
pub fn stored_checkpoint(store: &Store) -> Result<StoredCheckpoint, StoreError> {
    let Some(bytes) = store.checkpoint()? else {
        return Ok(StoredCheckpoint::Absent);
    };
    if bytes.is_empty() {
        return Ok(StoredCheckpoint::Absent);
    }
    Ok(match Checkpoint::decode(&bytes) {
        Decoded::Foreign(why) => StoredCheckpoint::Foreign(why),
        Decoded::Ours(cp) => StoredCheckpoint::At {
            version: cp.version,
            hash: cp.hash,
            workspace: Box::new(cp.workspace),
        },
    })
}

/// The stored checkpoint, if it is of this build's format and of this log
/// (its hash matches the record at its version). Anything else: `None`, and
/// the log is replayed from the start.
pub fn load_checkpoint(store: &Store) -> Option<Checkpoint> {
    let bytes = store.checkpoint().ok()??;
    let Decoded::Ours(cp) = Checkpoint::decode(&bytes) else {
        return None;
    };
    if cp.version > store.head() {
        return None;
    }
    let rec = store.get(cp.version).ok()??;
    (rec.hash == cp.hash && cp.workspace.head == cp.version).then_some(cp)
}

/// Writes `ws` as the stored checkpoint (tied to the head's hash `hash`).
pub fn put_checkpoint(store: &Store, hash: Hash, ws: Workspace) -> Result<(), StoreError> {
    match Checkpoint::new(hash, ws).encode() {
        Some(bytes) => store.put_checkpoint(&bytes),
        None => Ok(()),
    }
}
