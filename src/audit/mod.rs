//! The offline audit command line (contract §5, §8.10): `log`, `history`,
//! `blame`, `show --at`, `runs`, `verify` and `export`, one file per command.
//!
//! Everything here reads the log through [`Store`] and rebuilds state with
//! the server's own fold ([`crate::projections::Workspace::apply`]) and
//! file rendering ([`crate::notebook::render_file`]). It never opens the
//! [`crate::engine::Engine`]: opening it reconciles files with the log,
//! which may append events and rewrite notebooks, and an audit must
//! change nothing. The only file the audit writes is `show -o FILE`.
//!
//! Each command has the same shape: a pure-ish library function that
//! computes the answer from the store (what the tests and benchmarks
//! call), and a `run` that prints it as text or JSON Lines to a writer.

pub mod blame;
pub mod export;
pub mod history;
pub mod log;
pub mod runs;
pub mod show;
pub mod text;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::error::quote;
use crate::paths::Root;
use crate::store::{Record, Store, StoreError};

/// Why an audit command stopped, and its exit code (§8.9).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Bad arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    /// What was asked for is not in the log (a notebook, a cell, a
    /// notebook at a version before it existed): exit 1.
    #[error("{0}")]
    NotFound(String),
    /// The log cannot be read as it should: exit 1.
    #[error("{0}")]
    Fault(String),
    /// The store cannot be opened (another process holds it): exit 4.
    #[error("{0}")]
    Unavailable(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl AuditError {
    /// The process exit code for this error. A closed pipe (`| head`) is
    /// not a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::Usage(_) => 2,
            AuditError::NotFound(_) | AuditError::Fault(_) => 1,
            AuditError::Unavailable(_) => 4,
            AuditError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            AuditError::Output(_) => 1,
        }
    }
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> AuditError {
        match e {
            StoreError::InUse(dir) => AuditError::Unavailable(format!(
                "the log in {dir} is held by a process that does not answer on its socket \
                 (a server starting or stopping, or an older nbledger); retry in a moment"
            )),
            other => AuditError::Fault(format!(
                "the log cannot be read: {other}; `nbledger verify` names the first bad event"
            )),
        }
    }
}

/// An opened log and the workspace it belongs to.
pub struct Audit {
    store: Store,
    root: PathBuf,
    data: PathBuf,
    /// The private copy `store` reads, removed when the audit ends.
    _copy: Option<tempfile::TempDir>,
}

impl Audit {
    /// Opens the log for reading. `root` and `data` are the `--root` and
    /// `--data` arguments: `data` defaults to `ROOT/.nbledger`; `root`
    /// defaults to the root the log records when only `--data` is given,
    /// else to the current directory. A `--root` that differs from the
    /// recorded one is a usage error, as it is for `serve`.
    pub fn open(root: Option<&Path>, data: Option<&Path>) -> Result<Audit, AuditError> {
        let cwd = || std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let data: PathBuf = match (data, root) {
            (Some(d), _) => d.to_owned(),
            (None, Some(r)) => r.join(".nbledger"),
            (None, None) => cwd().join(".nbledger"),
        };
        if !data.join("log").exists() {
            return Err(AuditError::Usage(format!(
                "there is no nbledger log in {}; pass the --root (or --data) of a workspace nbledger has served",
                data.display()
            )));
        }
        let (store, copy) = private_copy(&data)?;
        let recorded = store.recorded_root()?;
        let root: PathBuf = match (root, &recorded) {
            (Some(r), _) => {
                let canon = r.canonicalize().map_err(|e| {
                    AuditError::Usage(format!("root {} cannot be used: {e}", r.display()))
                })?;
                if let Some(rec) = &recorded
                    && Path::new(rec) != canon
                {
                    return Err(AuditError::Usage(format!(
                        "this log belongs to root {rec}, not {}; pass --root {rec} or leave --root out",
                        canon.display()
                    )));
                }
                canon
            }
            (None, Some(rec)) if Path::new(rec).is_dir() => PathBuf::from(rec),
            (None, _) => cwd(),
        };
        Ok(Audit {
            store,
            root,
            data,
            _copy: Some(copy),
        })
    }

    /// An audit over an already opened store (tests, benchmarks).
    pub fn with_store(store: Store, root: &Path, data: &Path) -> Audit {
        Audit {
            store,
            root: root.to_owned(),
            data: data.to_owned(),
            _copy: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The workspace whose files `verify` compares.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a notebook argument to its key in the log: the key itself,
    /// or any spelling the server accepts (`./a.ipynb`, an absolute path
    /// inside the root, a symlink inside the root).
    pub fn notebook(&self, input: &str) -> Result<String, AuditError> {
        if self.known(input)? {
            return Ok(input.to_owned());
        }
        if let Ok(root) = Root::new(&self.root, &self.data)
            && let Ok(np) = root.resolve(input)
            && self.known(&np.rel)?
        {
            return Ok(np.rel);
        }
        Err(AuditError::NotFound(format!(
            "the log has no notebook {}; `nbledger log` lists the notebooks it has",
            quote(input)
        )))
    }

    fn known(&self, path: &str) -> Result<bool, AuditError> {
        Ok(!self.store.notebook_versions(path, 0, 1)?.is_empty())
    }

    /// The records after `since` up to `until` (inclusive), oldest first:
    /// of one notebook (through its index) or of the whole log.
    pub fn records(
        &self,
        notebook: Option<&str>,
        since: u64,
        until: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<Record, AuditError>> + '_>, AuditError> {
        let until = until.min(self.store.head());
        match notebook {
            Some(path) => {
                let mut versions = self.store.notebook_versions(path, since, usize::MAX)?;
                versions.retain(|&v| v <= until);
                Ok(Box::new(self.records_at(versions)))
            }
            None => Ok(Box::new(
                self.store
                    .records(since.saturating_add(1))
                    .take_while(move |r| r.as_ref().map_or(true, |r| r.event.version <= until))
                    .map(|r| r.map_err(AuditError::from)),
            )),
        }
    }

    /// Record `version`, which the indexes say exists.
    pub fn record(&self, version: u64) -> Result<Record, AuditError> {
        self.store.get(version)?.ok_or_else(|| missing(version))
    }

    /// The records of `versions` (ascending, as the indexes list them), in
    /// order, read the cheapest way ([`Store::records_at`]).
    pub fn records_at(
        &self,
        versions: Vec<u64>,
    ) -> impl Iterator<Item = Result<Record, AuditError>> + '_ {
        self.store.records_at(versions).map(|r| match r? {
            (_, Some(rec)) => Ok(rec),
            (v, None) => Err(missing(v)),
        })
    }

    /// Refuses a version past the head (as `since_version` is, §8.4).
    pub fn check_version(&self, flag: &str, v: u64) -> Result<(), AuditError> {
        let head = self.store.head();
        if v > head {
            return Err(AuditError::Usage(format!(
                "{flag} {v} is past the head of the log ({head})"
            )));
        }
        Ok(())
    }
}

/// The log as of now, copied into a temporary folder (§8.9: an audit
/// never blocks a server). Through the owner's socket when a server runs;
/// else straight from the store, which is held only while copying.
fn private_copy(data: &Path) -> Result<(Store, tempfile::TempDir), AuditError> {
    let unavailable = |e: &dyn std::fmt::Display| AuditError::Unavailable(e.to_string());
    let copy = tempfile::Builder::new()
        .prefix("nbledger-audit-")
        .tempdir()
        .map_err(|e| unavailable(&e))?;
    let into = copy.path().join("log");
    for _ in 0..2 {
        if let Some(store) =
            crate::hub::copy_from_owner(data, &into).map_err(|e| unavailable(&e))?
        {
            return Ok((store, copy));
        }
        match Store::open(data) {
            Ok(real) => {
                let store = real.copy_files(&into)?;
                return Ok((store, copy));
            }
            // An owner may have started between the two tries.
            Err(StoreError::InUse(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::InUse(data.display().to_string()).into())
}

/// A record the indexes name is not in the log.
fn missing(version: u64) -> AuditError {
    AuditError::Fault(format!(
        "record {version} is missing from the log; `nbledger verify` reports the damage"
    ))
}
