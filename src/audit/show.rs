//! `nbledger show P --at V [-o FILE]`: the notebook as it was right after
//! version V, as a valid .ipynb in the server's own layout.
//!
//! The state is the server's fold of the notebook's events up to V (found
//! through the notebook index, so other notebooks' events cost nothing),
//! rendered by the same code that writes the files. It equals in content
//! the file as it was then; the bytes can differ for a file the server
//! imported without rewriting.

use std::io::Write;
use std::path::Path;

use super::{Audit, AuditError};
use crate::error::quote;
use crate::notebook::render_file;
use crate::projections::NotebookState;

/// What `--at` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Version(u64),
    /// A snapshot name: the notebook exactly as that snapshot holds it.
    Snapshot(String),
}

impl At {
    pub fn parse(s: &str) -> At {
        match s.trim().parse::<u64>() {
            Ok(v) => At::Version(v),
            Err(_) => At::Snapshot(s.to_owned()),
        }
    }
}

/// The version `at` stands for.
pub fn resolve_at(audit: &Audit, at: &At) -> Result<u64, AuditError> {
    match at {
        At::Version(v) => {
            audit.check_version("--at", *v)?;
            Ok(*v)
        }
        At::Snapshot(name) => Err(AuditError::Usage(format!(
            "--at {} is a snapshot name, not a version",
            quote(name)
        ))),
    }
}

/// The state of notebook `path` (a key in the log) right after version
/// `v`: the newest event ≤ v that touched it (see [`crate::replay::notebook_at`]).
pub fn notebook_at(audit: &Audit, path: &str, v: u64) -> Result<NotebookState, AuditError> {
    let store = audit.store();
    let versions = store.notebook_versions(path, 0, usize::MAX)?;
    let first = versions.first().copied();
    let not_yet = || {
        AuditError::NotFound(match first {
            Some(f) => format!(
                "notebook {} did not exist at version {v}; its first event is version {f}",
                quote(path)
            ),
            None => format!("the log has no notebook {}", quote(path)),
        })
    };
    if first.is_none_or(|f| f > v) {
        return Err(not_yet());
    }
    crate::replay::notebook_at(store, path, v)?.ok_or_else(not_yet)
}

/// Writes the notebook at `at` to `out_file`, or to `out`.
pub fn run(
    audit: &Audit,
    path: &str,
    at: &At,
    out_file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let key = audit.notebook(path)?;
    let nb = match at {
        // The snapshot's own content: a `pre-restore-*` backup shares its
        // version with the restore, so the state after that version would
        // be the restored one, not the backup.
        At::Snapshot(name) => {
            let mut nb = notebook_at(audit, &key, audit.store().head())?;
            let snap = nb.snapshots.get(name).cloned().ok_or_else(|| {
                let names: Vec<&String> = nb.snapshots.keys().take(50).collect();
                AuditError::NotFound(format!(
                    "notebook {} has no snapshot {}; it has: {names:?}",
                    quote(&key),
                    quote(name)
                ))
            })?;
            nb.header = snap.header;
            nb.cells = snap
                .cells
                .into_iter()
                .map(|cell| crate::projections::LiveCell {
                    cell,
                    last_version: snap.version,
                })
                .collect();
            nb
        }
        At::Version(_) => notebook_at(audit, &key, resolve_at(audit, at)?)?,
    };
    let bytes = render_file(&nb);
    match out_file {
        Some(file) => std::fs::write(file, &bytes)
            .map_err(|e| AuditError::Usage(format!("cannot write {}: {e}", file.display())))?,
        None => {
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}
