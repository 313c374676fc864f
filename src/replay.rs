//! The one replay path: the newest valid projection checkpoint, then the
//! records after it, folded with `Workspace::apply`. Start-up, rollback
//! after a failed batch, and the audit's past states all come through here.

use crate::events::Hash;
use crate::projections::Workspace;
use crate::store::{Store, StoreError};

/// A snapshot of the projection at `version`, proven to belong to this log
/// by the hash of record `version`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Checkpoint {
    format: u32,
    build: String,
    pub(crate) version: u64,
    hash: Hash,
    pub(crate) workspace: Workspace,
}

/// Bumped whenever the projection types change shape: an older checkpoint
/// is then ignored and the log replayed in full.
pub(crate) const CHECKPOINT_FORMAT: u32 = 1;

impl Checkpoint {
    /// This build's checkpoint of `workspace`, whose head is record
    /// `workspace.head` with hash `hash`.
    pub(crate) fn new(hash: Hash, workspace: Workspace) -> Checkpoint {
        Checkpoint {
            format: CHECKPOINT_FORMAT,
            build: env!("CARGO_PKG_VERSION").to_owned(),
            version: workspace.head,
            hash,
            workspace,
        }
    }
}

/// The projection as the log has it: the stored checkpoint, if usable,
/// then the records after it; and the version of that checkpoint. On a
/// record that cannot be read, the fold so far and the error.
pub(crate) fn replay(store: &Store) -> (Workspace, u64, Result<(), StoreError>) {
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

/// What the audit command line learns of the stored projection checkpoint.
pub(crate) enum StoredCheckpoint {
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
pub(crate) fn stored_checkpoint(store: &Store) -> Result<StoredCheckpoint, StoreError> {
    let Some(bytes) = store.checkpoint()? else {
        return Ok(StoredCheckpoint::Absent);
    };
    if bytes.is_empty() {
        return Ok(StoredCheckpoint::Absent);
    }
    let cp: Checkpoint = match bincode::deserialize(&bytes) {
        Ok(cp) => cp,
        Err(_) => {
            return Ok(StoredCheckpoint::Foreign(
                "it does not decode with this build's checkpoint format".into(),
            ));
        }
    };
    if cp.format != CHECKPOINT_FORMAT || cp.build != env!("CARGO_PKG_VERSION") {
        return Ok(StoredCheckpoint::Foreign(format!(
            "it was written by nbledger {} (format {})",
            cp.build, cp.format
        )));
    }
    Ok(StoredCheckpoint::At {
        version: cp.version,
        hash: cp.hash,
        workspace: Box::new(cp.workspace),
    })
}

/// The stored checkpoint, if it is of this build's format and of this log
/// (its hash matches the record at its version). Anything else: `None`, and
/// the log is replayed from the start.
pub(crate) fn load_checkpoint(store: &Store) -> Option<Checkpoint> {
    let bytes = store.checkpoint().ok()??;
    let cp: Checkpoint = bincode::deserialize(&bytes).ok()?;
    if cp.format != CHECKPOINT_FORMAT
        || cp.build != env!("CARGO_PKG_VERSION")
        || cp.version > store.head()
    {
        return None;
    }
    let rec = store.get(cp.version).ok()??;
    (rec.hash == cp.hash && cp.workspace.head == cp.version).then_some(cp)
}
