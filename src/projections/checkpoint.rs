//! The checkpoint format: a serialised [`Workspace`] at a version, tied to
//! the log by the hash of that version's record. The store keeps these
//! bytes opaque; a checkpoint is a cache, never the truth, so anything
//! that does not decode as this build's is ignored and the log replayed.

use serde::{Deserialize, Serialize};

use super::Workspace;
use crate::events::Hash;

/// Bumped whenever the projection types change shape: an older checkpoint
/// is then ignored and the log replayed in full.
pub const CHECKPOINT_FORMAT: u32 = 2;

/// A snapshot of the projection at `version`, proven to belong to a log by
/// the hash of record `version`.
#[derive(Serialize, Deserialize)]
pub struct Checkpoint {
    format: u32,
    build: String,
    pub version: u64,
    pub hash: Hash,
    pub workspace: Workspace,
}

/// What stored checkpoint bytes are to this build.
pub enum Decoded {
    /// This build's format.
    Ours(Checkpoint),
    /// Written by another build or format, or not decodable: why.
    Foreign(String),
}

impl Checkpoint {
    /// This build's checkpoint of `workspace`, whose head is record
    /// `workspace.head` with hash `hash`.
    pub fn new(hash: Hash, workspace: Workspace) -> Checkpoint {
        Checkpoint {
            format: CHECKPOINT_FORMAT,
            build: env!("CARGO_PKG_VERSION").to_owned(),
            version: workspace.head,
            hash,
            workspace,
        }
    }

    pub fn encode(&self) -> Option<Vec<u8>> {
        bincode::serialize(self).ok()
    }

    pub fn decode(bytes: &[u8]) -> Decoded {
        let cp: Checkpoint = match bincode::deserialize(bytes) {
            Ok(cp) => cp,
            Err(_) => {
                return Decoded::Foreign(
                    "it does not decode with this build's checkpoint format".into(),
                );
            }
        };
        if cp.format != CHECKPOINT_FORMAT || cp.build != env!("CARGO_PKG_VERSION") {
            return Decoded::Foreign(format!(
                "it was written by nbledger {} (format {})",
                cp.build, cp.format
            ));
        }
        Decoded::Ours(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_other_bytes_are_foreign() {
        let ws = Workspace::default();
        let bytes = Checkpoint::new([7; 32], ws).encode().unwrap();
        match Checkpoint::decode(&bytes) {
            Decoded::Ours(cp) => assert_eq!((cp.version, cp.hash), (0, [7; 32])),
            Decoded::Foreign(why) => panic!("{why}"),
        }
        assert!(matches!(Checkpoint::decode(b"xyz"), Decoded::Foreign(_)));
    }
}
