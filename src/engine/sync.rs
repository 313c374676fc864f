//! Keeping each notebook's file and the log in agreement (§3, §8.8): the
//! first touch imports a file, a changed file is taken in as an outside
//! change (after waiting out a save in progress), a save the write's swap
//! displaced is merged in after the write, and start-up finishes
//! interrupted writes and repairs files a power loss damaged.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Map;

use super::*;
use crate::events::{
    CLIENT_EXTERNAL, CLIENT_SERVER, Hash, OP_EXTERNAL, OP_IMPORT, OP_KEEP_WRITE, OP_REPAIR_FILE,
};
use crate::files::{Swap, render, replace, temp_path, write_temp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    ctime_ns: i128,
}

impl Stamp {
    /// Same inode, size and mtime: the same bytes, unless someone wrote
    /// them back with the mtime forged. (A rename changes ctime, so ctime
    /// cannot be compared across the swap.)
    pub(super) fn same_file_content(&self, other: &Stamp) -> bool {
        self.ino == other.ino && self.size == other.size && self.mtime_ns == other.mtime_ns
    }

    pub(super) fn of(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ino: m.ino(),
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// What a settled read of a notebook file found.
pub(super) enum Settled {
    /// The bytes the log already knows.
    Known(Stamp, Hash),
    Parsed(Stamp, Hash, ipynb::RawNotebook),
}

/// A file that fails to parse and was modified this recently may be a save
/// in progress: Jupyter saves by truncating and rewriting in place, so a
/// reader can land between the two (§8.8).
pub(super) const SETTLE_RECENT: Duration = Duration::from_secs(2);

/// How long such a file is re-read before the answer says it is being written.
pub(super) const SETTLE_WAIT: Duration = Duration::from_millis(500);

pub(super) const SETTLE_STEP: Duration = Duration::from_millis(20);

/// Reads and parses `np`'s file (stat `stamp` taken just before). A file
/// that does not parse but was modified in the last two seconds is read
/// again until it parses or [`SETTLE_WAIT`] passes.
pub(super) fn read_settled(
    np: &NotebookPath,
    mut stamp: Stamp,
    known: Option<Hash>,
) -> Result<Settled, ToolError> {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let bytes = fs::read(&np.abs).map_err(internal)?;
        let hash = *blake3::hash(&bytes).as_bytes();
        if known == Some(hash) {
            return Ok(Settled::Known(stamp, hash));
        }
        let err = match ipynb::parse(&bytes) {
            Ok(raw) => return Ok(Settled::Parsed(stamp, hash, raw)),
            Err(e) => e,
        };
        if !looks_partial(&bytes) {
            return Err(invalid_notebook(&np.rel, err));
        }
        let meta = fs::metadata(&np.abs).map_err(internal)?;
        let age = meta.modified().ok().map(|m| {
            SystemTime::now()
                .duration_since(m)
                .unwrap_or(Duration::ZERO)
        });
        if age.is_none_or(|a| a >= SETTLE_RECENT) {
            return Err(invalid_notebook(&np.rel, err));
        }
        if Instant::now() >= deadline {
            return Err(being_written(&np.rel, err));
        }
        std::thread::sleep(SETTLE_STEP);
        stamp = Stamp::of(&fs::metadata(&np.abs).map_err(internal)?);
    }
}

/// Whether `bytes` could be a notebook cut short by a save in progress:
/// empty, or JSON that ends too early. (Valid JSON that is not a notebook,
/// or a syntax error mid-file, is not waited for.)
pub(super) fn looks_partial(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_whitespace())
        || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err_and(|e| e.is_eof())
}

/// A file still partial after the settle wait: someone is saving it.
pub(super) fn being_written(path: &str, e: ipynb::InvalidNotebook) -> ToolError {
    let reason = e.reason.clone();
    let mut err = invalid_notebook(path, e)
        .with("being_written", true)
        .with("retryable", true);
    err.message = format!(
        "{} is being written by another program and is not complete yet ({reason}); retry in a moment",
        quote(path)
    );
    err
}

/// An outside save the swap displaced: the bytes now under `tmp` when they
/// are not the file the batch checked (`expect`). A save still being
/// written in place (through a descriptor opened before the swap) is
/// given [`SETTLE_WAIT`] to complete.
pub(super) fn displaced_save(tmp: &Path, expect: Option<(Stamp, Hash)>) -> Option<Vec<u8>> {
    let meta = fs::metadata(tmp).ok()?;
    if let Some((stamp, _)) = expect
        && Stamp::of(&meta).same_file_content(&stamp)
    {
        return None;
    }
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let bytes = fs::read(tmp).ok()?;
        if expect.is_some_and(|(_, h)| *blake3::hash(&bytes).as_bytes() == h) {
            return None;
        }
        if ipynb::parse(&bytes).is_ok() || Instant::now() >= deadline {
            return Some(bytes);
        }
        std::thread::sleep(SETTLE_STEP);
    }
}

/// A displaced outside save taken in after the write that displaced it.
pub(super) struct LateSave {
    pub(super) np: NotebookPath,
    pub(super) bytes: Vec<u8>,
    pub(super) base: Option<notebook::Content>,
}

/// Keeps `bytes` (an outside save that could not be taken in) beside the
/// notebook as a hidden file, so nothing that reached the disk is lost.
pub(super) fn keep_aside(np: &NotebookPath, bytes: &[u8], why: &str) -> Option<PathBuf> {
    let name = np
        .abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = np
        .abs
        .with_file_name(format!(".{name}.nbledger-{why}-{}", now_ms()));
    match fs::write(&aside, bytes) {
        Ok(()) => {
            tracing::warn!(path = %np.rel, kept = %aside.display(), "file content kept aside");
            Some(aside)
        }
        Err(e) => {
            tracing::error!(path = %np.rel, error = %e, "file content could not be kept aside");
            None
        }
    }
}

pub(super) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl Engine {
    /// Finishes writes a crash interrupted, repairs files a power loss
    /// damaged (after an `unclean` stop) and takes in outside changes made
    /// while no server ran (§8.8).
    pub(super) fn reconcile_all(&self, unclean: bool) {
        let reconciled = self.locked(|inner| {
            let paths: Vec<String> = inner.ws.notebooks.keys().cloned().collect();
            for rel in paths {
                let np = NotebookPath {
                    abs: self.root.path().join(&rel),
                    rel: rel.clone(),
                };
                let _ = fs::remove_file(temp_path(&np.abs));
                let Some(file) = inner.ws.notebook(&rel).and_then(|nb| nb.file.clone()) else {
                    continue;
                };
                match fs::read(&np.abs) {
                    Ok(bytes) => {
                        let hash = *blake3::hash(&bytes).as_bytes();
                        if hash == file.after {
                            continue;
                        }
                        if file.written && Some(hash) == file.before {
                            // The event committed but the rename never happened.
                            if let Err(e) = self.rewrite_from_log(inner, &np) {
                                tracing::warn!(path = %rel, error = %e, "could not finish an interrupted write");
                            }
                            continue;
                        }
                        if unclean && let Some(damage) = self.damage(inner, &np, &bytes, hash) {
                            if let Err(e) = self.repair(inner, &np, &bytes, damage) {
                                tracing::warn!(path = %rel, error = %e, "could not repair a damaged notebook");
                            }
                            continue;
                        }
                        if let Err(e) = self.sync(inner, &np) {
                            tracing::warn!(path = %rel, error = %e, "notebook on disk could not be taken in");
                        }
                    }
                    Err(_) if file.written && file.before.is_none() => {
                        // A create whose file never landed.
                        if let Err(e) = self.rewrite_from_log(inner, &np) {
                            tracing::warn!(path = %rel, error = %e, "could not finish an interrupted create");
                        }
                    }
                    Err(_) => {}
                }
            }
            Ok(())
        });
        if let Err(e) = reconciled {
            tracing::warn!(error = %e, "outside changes could not be recorded");
        }
    }

    /// How a file the log wrote was damaged by a power loss, if it was.
    pub(super) fn damage(
        &self,
        inner: &Inner,
        np: &NotebookPath,
        bytes: &[u8],
        hash: Hash,
    ) -> Option<notebook::repair::Damage> {
        let nb = inner.ws.notebook(&np.rel)?;
        let latest = notebook::render_file(nb);
        let older = || -> Option<u64> {
            let versions = self.store.notebook_versions(&np.rel, 0, usize::MAX).ok()?;
            versions.into_iter().rev().find(|&v| {
                self.store.get(v).ok().flatten().is_some_and(|r| {
                    r.event
                        .files
                        .iter()
                        .any(|f| f.path == np.rel && f.written && f.after == hash)
                })
            })
        };
        notebook::repair::classify(bytes, &latest, None)
            .or_else(|| notebook::repair::classify(bytes, &latest, older()))
    }

    /// Rewrites a damaged file from the log, recording the repair as a
    /// `repair_file` event by the server (§8.8).
    pub(super) fn repair(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        bytes: &[u8],
        damage: notebook::repair::Damage,
    ) -> Result<(), ToolError> {
        let aside = if damage.keep_aside() {
            Some(keep_aside(np, bytes, "damaged").ok_or_else(|| {
                internal("the damaged file could not be kept aside, so it was left as it is")
            })?)
        } else {
            None
        };
        let meta = fs::metadata(&np.abs).map_err(internal)?;
        inner.disk.insert(
            np.rel.clone(),
            (Stamp::of(&meta), *blake3::hash(bytes).as_bytes()),
        );
        let mut summary = format!(
            "repaired {} from the log after an unclean stop (the file was {})",
            np.rel,
            damage.describe()
        );
        if let Some(name) = aside.as_ref().and_then(|p| p.file_name()) {
            summary.push_str(&format!(
                "; its bytes are kept in {}",
                name.to_string_lossy()
            ));
        }
        let event = plain_event(
            CLIENT_SERVER,
            OP_REPAIR_FILE,
            np,
            Vec::new(),
            summary,
            Vec::new(),
        );
        tracing::warn!(path = %np.rel, damage = %damage.describe(), "repairing a notebook file from the log");
        self.commit(inner, np, event, now_ms(), true, |_, _| Map::new())?;
        Ok(())
    }

    /// Writes a notebook's file from its durable state (no event).
    pub(super) fn rewrite_from_log(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
    ) -> Result<(), ToolError> {
        let Some(nb) = inner.ws.notebook(&np.rel) else {
            return Ok(());
        };
        let (file, cache) = render(nb, inner.renders.get(&np.rel));
        let (tmp, hash) = write_temp(&np.abs, &file)?;
        if replace(&tmp, &np.abs).map_err(internal)? == Swap::Exchanged {
            let _ = fs::remove_file(&tmp);
        }
        inner.renders.insert(np.rel.clone(), cache);
        self.mark_disk(inner, np, hash);
        Ok(())
    }

    /// Brings notebook `np` and the log into agreement (§3, §8.8): imports
    /// a notebook the log has never seen, takes in a file changed outside.
    pub(super) fn sync(&self, inner: &mut Inner, np: &NotebookPath) -> Result<(), ToolError> {
        // A write staged in this batch has not reached the file: the file
        // is behind the state, and diffing it would record an outside
        // change undoing the staged edits. The batch's own write comes next.
        if inner.unwritten.contains_key(&np.rel) {
            return Ok(());
        }
        // In a room the file is Jupyter's save of the room, whose edits
        // reach the log through the room (§12): never an outside change.
        if inner.roomed.contains(&np.rel) && inner.ws.notebook(&np.rel).is_some() {
            return Ok(());
        }
        let meta = match fs::metadata(&np.abs) {
            Ok(m) => m,
            Err(_) => {
                let known = inner.ws.notebook(&np.rel).is_some();
                let hint = if known {
                    "its file was removed outside nbledger; its history is kept, and create_notebook on this path continues it"
                } else {
                    "check the path with list_notebooks, or create it with create_notebook"
                };
                return Err(ToolError::not_found(
                    "notebook",
                    format!("no notebook at {}; {hint}", quote(&np.rel)),
                )
                .with("path", np.rel.clone()));
            }
        };
        if !meta.is_file() {
            return Err(ToolError::new(
                crate::error::Code::InvalidNotebook,
                format!("{} is not a regular file", quote(&np.rel)),
            )
            .with("reason", "not a regular file"));
        }
        let stamp = Stamp::of(&meta);
        if inner.disk.get(&np.rel).is_some_and(|(s, _)| *s == stamp) {
            return Ok(());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ToolError::too_large(
                "the notebook file (bytes)",
                MAX_FILE_BYTES,
                meta.len(),
            ));
        }
        let known_hash = inner.disk.get(&np.rel).map(|(_, h)| *h).or_else(|| {
            inner
                .ws
                .notebook(&np.rel)
                .and_then(|nb| nb.file.as_ref().map(|f| f.after))
        });
        let (stamp, hash, raw) = match read_settled(np, stamp, known_hash)? {
            Settled::Known(stamp, hash) => {
                inner.disk.insert(np.rel.clone(), (stamp, hash));
                return Ok(());
            }
            Settled::Parsed(stamp, hash, raw) => (stamp, hash, raw),
        };
        match inner.ws.notebook(&np.rel).cloned() {
            Some(old) => {
                let changes = notebook::diff_outside(&old, &raw);
                if changes.is_empty() {
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                    return Ok(());
                }
                let cell_ids = changed_cells(&changes);
                let summary = format!("outside change to {} ({} changes)", np.rel, changes.len());
                // Locks do not stop an outside change, but it is recorded as
                // overriding the ones it touched (§8.8).
                let now = now_ms().max(inner.ws.head_timestamp_ms);
                let overrode: Vec<(String, String)> = cell_ids
                    .iter()
                    .filter_map(|c| old.lock_at(c, now).map(|l| (c.clone(), l.owner.clone())))
                    .collect();
                let mut event = outside_event(
                    OP_EXTERNAL,
                    np,
                    cell_ids,
                    summary,
                    changes,
                    Some(known_hash),
                    hash,
                );
                event.overrode_locks = overrode;
                self.commit(inner, np, event, now, false, |_, _| Map::new())?;
                inner.disk.insert(np.rel.clone(), (stamp, hash));
            }
            None => {
                let imp = notebook::import(&np.rel, &raw, None);
                let cell_ids = changed_cells(&imp.changes);
                let mut summary = format!("imported {} ({} cells)", np.rel, raw.cells.len());
                if !imp.reassigned.is_empty() {
                    let which: Vec<String> = imp
                        .reassigned
                        .iter()
                        .map(|(i, old)| format!("cell {i} (was {})", quote(old)))
                        .collect();
                    summary.push_str(&format!(
                        "; new ids for duplicate ids: {}",
                        which.join(", ")
                    ));
                    summary = summary.chars().take(200).collect();
                }
                let mut event =
                    outside_event(OP_IMPORT, np, cell_ids, summary, imp.changes, None, hash);
                if imp.rewrite {
                    // The file lacked ids: written once as 4.5 with them.
                    // Its current bytes are the write's `before`.
                    event.files.clear();
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                    self.commit(inner, np, event, now_ms(), true, |_, _| Map::new())?;
                } else {
                    self.commit(inner, np, event, now_ms(), false, |_, _| Map::new())?;
                    inner.disk.insert(np.rel.clone(), (stamp, hash));
                }
            }
        }
        Ok(())
    }

    /// Stages, for each displaced outside save, its changes on top of the
    /// state (see [`notebook::merge_late_save`]): an `external_change` with
    /// the outside version of every cell, then, if both sides changed some
    /// cells, a `keep_write` by the server setting those back to the write.
    /// Returns the saves staged, to keep aside if their append fails.
    pub(super) fn stage_late_saves(
        &self,
        inner: &mut Inner,
        late: Vec<LateSave>,
    ) -> Vec<(NotebookPath, Vec<u8>)> {
        let mut staged = Vec::new();
        for l in late {
            let (Some(base), Some(ours)) = (&l.base, inner.ws.notebook(&l.np.rel).cloned()) else {
                keep_aside(&l.np, &l.bytes, "displaced");
                continue;
            };
            let raw = match ipynb::parse(&l.bytes) {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::warn!(path = %l.np.rel, error = %e, "a displaced outside save does not parse");
                    keep_aside(&l.np, &l.bytes, "displaced");
                    continue;
                }
            };
            let Some(merge) = notebook::merge_late_save(base, &ours, &raw) else {
                continue;
            };
            let now = now_ms().max(inner.ws.head_timestamp_ms);
            let changes = notebook::transform(&ours, &merge.taken_in.0, &merge.taken_in.1, None);
            let cell_ids = changed_cells(&changes);
            let overrode: Vec<(String, String)> = cell_ids
                .iter()
                .filter_map(|c| ours.lock_at(c, now).map(|lk| (c.clone(), lk.owner.clone())))
                .collect();
            let mut event = plain_event(
                CLIENT_EXTERNAL,
                OP_EXTERNAL,
                &l.np,
                cell_ids,
                format!(
                    "outside save to {} during version {}'s write ({} changes)",
                    l.np.rel,
                    ours.current_version,
                    changes.len()
                ),
                changes,
            );
            event.overrode_locks = overrode;
            let ext = match self.commit(inner, &l.np, event, now, true, |_, _| Map::new()) {
                Ok(_) => inner.ws.head,
                Err(e) => {
                    tracing::warn!(path = %l.np.rel, error = %e, "could not stage a displaced outside save");
                    keep_aside(&l.np, &l.bytes, "displaced");
                    continue;
                }
            };
            if !merge.conflicts.is_empty()
                && let Some(now_nb) = inner.ws.notebook(&l.np.rel).cloned()
            {
                let changes = notebook::transform(
                    &now_nb,
                    &merge.merged.0,
                    &merge.merged.1,
                    Some((CLIENT_SERVER, now)),
                );
                let summary = format!(
                    "kept version {}'s write to {} over the outside save of version {ext}",
                    ours.current_version,
                    plural(merge.conflicts.len(), "cell")
                );
                let event = plain_event(
                    CLIENT_SERVER,
                    OP_KEEP_WRITE,
                    &l.np,
                    merge.conflicts.clone(),
                    summary,
                    changes,
                );
                if let Err(e) = self.commit(inner, &l.np, event, now, true, |_, _| Map::new()) {
                    tracing::warn!(path = %l.np.rel, error = %e, "could not stage keep_write");
                }
            }
            staged.push((l.np, l.bytes));
        }
        staged
    }
}
