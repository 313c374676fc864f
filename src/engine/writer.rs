//! Running writes as batches: the writer queue, the leader, durability
//! and rollback.
//!
//! One mutex serialises the engine. That keeps the version order, the file
//! order and the state order identical, which is what makes replay exact.
//! Concurrent writers share one flush and one file write per notebook by
//! group commit (LevelDB's writer queue): a write is a job pushed on a
//! queue. If no caller is leading, the pusher becomes the leader: it takes
//! the mutex and runs every queued job as one batch, then answers them all
//! and wakes their callers, who wait on a condition variable rather than on
//! the mutex (so an answered caller never waits behind the next batch's
//! flush). A job is therefore either run by a leader, which answers it
//! before stepping down, or still queued when its own caller finds nobody
//! leading and leads. A new leader first yields the CPU a few times while
//! fewer jobs are queued than the last batch ran, so that steady writers
//! share one batch instead of splitting into two that alternate.
//!
//! Invariants of a batch:
//! - Each job runs against the state the jobs before it staged: staging
//!   folds the event right away with the same `Workspace::apply` replay
//!   uses, in version order.
//! - Nothing staged leaves the mutex before its flush (§8.9): answers, the
//!   watch-channel head and file renames come after it, and every holder
//!   (a read too: a first read imports) makes what it staged durable
//!   before unlocking. No reader ever sees a staged state.
//! - A notebook's file is written once per batch, from its final state;
//!   the batch's last event that writes it carries the `FileWrite` (before
//!   = the file before the batch), earlier ones carry none for it, so the
//!   fold ends with the same `nb.file` live and in replay.
//! - While a notebook has a staged write its file is behind the state: it
//!   is not synced (an outside-change diff would record a bogus change
//!   undoing the staged edits), and creating it again fails with `exists`.
//! - If a temp file or the append fails, the whole batch is dropped: the
//!   projection is rebuilt from the log, and every job that staged an
//!   event or ran after one was staged answers `internal` (nothing was
//!   changed; retry).

use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::sync::{LateSave, displaced_save, keep_aside};
use super::*;
use crate::events::{Event, FileWrite, Hash};
use crate::files::{Swap, render, replace, temp_path, write_temp};

/// The most jobs one batch runs: bounds how long a leader works for
/// others (and the transaction's size); the rest wait for the next batch.
pub(super) const MAX_BATCH: usize = 256;

/// How many times a new leader yields the CPU while the queue is shorter
/// than the last batch (see [`Engine::gather`]).
pub(super) const GATHER_YIELDS: usize = 16;

/// A write waiting for the engine's mutex; whichever caller holds it runs
/// the job in its batch.
pub(super) type Job = Box<dyn FnOnce(&Engine, &mut Inner) -> Answer + Send>;

/// Where a job's answer is left for its caller, filled under the mutex
/// once the batch is durable.
pub(super) type Slot = Arc<Mutex<Option<Answer>>>;

/// Writes waiting for a batch, and whether a caller is running batches.
#[derive(Default)]
pub(super) struct Queue {
    /// Oldest first.
    pub(super) jobs: Vec<(Job, Slot)>,
    leading: bool,
    /// How many jobs the last batch ran.
    last_batch: usize,
}

/// The caller running batches. Stepping down (also by unwinding) wakes
/// every waiting caller: the answered ones return, and one whose job is
/// still queued leads next.
pub(super) struct Leader<'a>(&'a Engine);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        queue.leading = false;
        self.0.answered.notify_all();
    }
}

/// Replaces every answer that depended on a dropped batch with `error`.
pub(super) fn withdraw(answers: &mut [(Slot, Answer, bool)], error: &ToolError) {
    for (_, answer, provisional) in answers.iter_mut().filter(|a| a.2) {
        *answer = Err(error.clone());
        *provisional = false;
    }
}

/// A notebook's file written for a batch, waiting for the append.
pub(super) struct Temp {
    /// What the file held when the batch checked it (stat and hash).
    expect: Option<(Stamp, Hash)>,
    /// The notebook's content then.
    base: Option<notebook::Content>,
    np: NotebookPath,
    /// Index of the batch's last event that writes this notebook.
    last: usize,
    tmp: PathBuf,
    after: Hash,
    cache: RenderCache,
}

pub(super) fn remove_temps(temps: &[Temp]) {
    for t in temps {
        let _ = fs::remove_file(&t.tmp);
    }
}

/// How many times in a row a batch takes in saves its own swaps displaced
/// before it keeps the next one aside (an outside writer saving faster
/// than the server can write would otherwise hold the engine forever).
pub(super) const LATE_ROUNDS: usize = 8;

impl Engine {
    /// Takes the mutex. Staged events are only ever left behind by a
    /// holder that panicked mid-batch; they are dropped here so that
    /// nobody reads a state the log does not have.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        if !inner.staged.is_empty() || !inner.unwritten.is_empty() {
            tracing::error!("dropping a batch a failed call left staged");
            self.abandon(&mut inner);
        }
        inner
    }

    /// Runs `f` under the mutex and makes whatever it staged durable
    /// before unlocking.
    pub(super) fn locked<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        if self.store.failed() {
            return Err(storage_failed());
        }
        let mut inner = self.lock();
        let out = f(&mut inner);
        self.make_durable(&mut inner)?;
        out
    }

    /// Queues `job` and returns its answer once it has run in a durable
    /// batch, led by this caller or by another.
    pub(super) fn submit(&self, job: Job) -> Answer {
        if self.store.failed() {
            return Err(storage_failed());
        }
        let slot = Slot::default();
        let mut queue = self.queue.lock();
        queue.jobs.push((job, slot.clone()));
        loop {
            if let Some(answer) = slot.lock().take() {
                return answer;
            }
            if !queue.leading {
                queue.leading = true;
                drop(queue);
                let leader = Leader(self);
                let ran = self.lead(&slot);
                drop(leader);
                if !ran {
                    // Only a leader that panicked mid-batch drops a job unrun.
                    return Err(internal("the call was lost to a failure of another call"));
                }
                queue = self.queue.lock();
                continue;
            }
            self.answered.wait(&mut queue);
        }
    }

    /// Runs queued jobs in batches under the mutex until `slot` is
    /// answered; false if its job is no longer queued and unanswered.
    pub(super) fn lead(&self, slot: &Slot) -> bool {
        let mut inner = self.lock();
        self.gather();
        loop {
            let batch: Vec<(Job, Slot)> = {
                let mut queue = self.queue.lock();
                let n = queue.jobs.len().min(MAX_BATCH);
                queue.last_batch = n;
                queue.jobs.drain(..n).collect()
            };
            if batch.is_empty() {
                return false;
            }
            self.run_batch(&mut inner, batch);
            if slot.lock().is_some() {
                return true;
            }
            // Wake the callers answered so far; this one leads on.
            let _queue = self.queue.lock();
            self.answered.notify_all();
        }
    }

    /// Gives the callers the last batch answered a chance to queue again
    /// before a batch is drained. Without it, steady writers split into two
    /// halves whose batches alternate, each waiting out the other's flush,
    /// and a batch holds half of them. It yields and never sleeps: a lone
    /// writer (whose last batch was itself) does not wait at all.
    pub(super) fn gather(&self) {
        for _ in 0..GATHER_YIELDS {
            let queue = self.queue.lock();
            if queue.jobs.len() >= queue.last_batch {
                return;
            }
            drop(queue);
            std::thread::yield_now();
        }
    }

    /// Runs `batch` in order, makes the events it staged durable with one
    /// append, and only then leaves each job's answer in its slot.
    pub(super) fn run_batch(&self, inner: &mut Inner, batch: Vec<(Job, Slot)>) {
        // Each answer, and whether it depends on staged events (so that
        // it is withdrawn if they never become durable).
        let mut answers: Vec<(Slot, Answer, bool)> = Vec::with_capacity(batch.len());
        for (job, slot) in batch {
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(self, &mut *inner)));
            match ran {
                Ok(answer) => {
                    // A job that staged nothing and saw nothing staged
                    // answered from the log alone.
                    let provisional = !inner.staged.is_empty();
                    answers.push((slot, answer, provisional));
                }
                Err(_) => {
                    // The projection may be half-changed: start again from
                    // the log, and withdraw what depended on the batch.
                    tracing::error!("a write panicked; its batch is dropped");
                    self.abandon(inner);
                    let lost = internal("the call failed with an internal error");
                    withdraw(&mut answers, &lost);
                    answers.push((slot, Err(lost), false));
                }
            }
        }
        if let Err(e) = self.make_durable(inner) {
            withdraw(&mut answers, &e);
        }
        for (slot, answer, _) in answers {
            *slot.lock() = Some(answer);
        }
    }

    /// Makes the staged events durable: each notebook they write is
    /// rendered once, from its final state, into its temp file; the events
    /// are appended in one transaction with one flush; then the files are
    /// swapped in and the head is published. If anything fails before the
    /// append succeeds, the log is unchanged and the staged events are
    /// dropped.
    pub(super) fn make_durable(&self, inner: &mut Inner) -> Result<(), ToolError> {
        let mut late = self.append_and_swap(inner)?;
        // The answers above are durable whatever happens below: a failure
        // here only keeps the displaced files aside.
        for _ in 0..LATE_ROUNDS {
            if late.is_empty() {
                return Ok(());
            }
            let kept = self.stage_late_saves(inner, late);
            late = match self.append_and_swap(inner) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "an outside save displaced by a write could not be recorded");
                    for (np, bytes) in kept {
                        keep_aside(&np, &bytes, "displaced");
                    }
                    return Ok(());
                }
            };
        }
        for l in late {
            tracing::warn!(path = %l.np.rel, "outside saves keep landing during writes; the last one is kept aside");
            keep_aside(&l.np, &l.bytes, "displaced");
        }
        Ok(())
    }

    /// Writes the staged events' files to temp files, appends the events
    /// (durable), swaps the files in and publishes the head. Returns the
    /// outside saves the swaps displaced (§8.8).
    pub(super) fn append_and_swap(&self, inner: &mut Inner) -> Result<Vec<LateSave>, ToolError> {
        if inner.staged.is_empty() {
            return Ok(Vec::new());
        }
        let unwritten = std::mem::take(&mut inner.unwritten);
        let mut bases = std::mem::take(&mut inner.bases);
        let mut temps: Vec<Temp> = Vec::with_capacity(unwritten.len());
        for (rel, (abs, last)) in unwritten {
            let written = match inner.ws.notebook(&rel) {
                Some(nb) => {
                    let (file, cache) = render(nb, inner.renders.get(&rel));
                    write_temp(&abs, &file).map(|(tmp, after)| (tmp, after, cache))
                }
                None => Err(ToolError::internal("a staged notebook is missing")),
            };
            match written {
                Ok((tmp, after, cache)) => temps.push(Temp {
                    expect: inner.disk.get(&rel).copied(),
                    base: bases.remove(&rel),
                    np: NotebookPath { abs, rel },
                    last,
                    tmp,
                    after,
                    cache,
                }),
                Err(e) => {
                    remove_temps(&temps);
                    self.abandon(inner);
                    return Err(e);
                }
            }
        }
        for t in &temps {
            let file = FileWrite {
                path: t.np.rel.clone(),
                before: inner.disk.get(&t.np.rel).map(|(_, h)| *h),
                after: t.after,
                written: true,
            };
            if let Some(nb) = inner.ws.notebooks.get_mut(&t.np.rel) {
                nb.file = Some(file.clone());
            }
            inner.staged[t.last].files.push(file);
        }
        for Event { paths, files, .. } in &mut inner.staged {
            if files.len() > 1 {
                // As the event names its notebooks: source, then destination.
                files.sort_by_key(|f| paths.iter().position(|p| *p == f.path));
            }
        }
        if let Err(e) = self.store.append_batch(&inner.staged) {
            remove_temps(&temps);
            if let StoreError::NotDurable(_) = e {
                // The batch may be on disk or not, and the projection holds
                // it: answer "unknown" and serve nothing more (see
                // `storage_failed`); the next owner replays what is stored.
                inner.staged.clear();
                return Err(storage_failed().with("outcome", "unknown"));
            }
            self.abandon(inner);
            return Err(store_error(e));
        }
        inner.staged.clear();
        crate::pause::point("before_swap");
        let mut late = Vec::new();
        for t in temps {
            let written = fs::metadata(&t.tmp).ok().map(|m| Stamp::of(&m));
            // The events are durable; a failed swap is healed at start-up
            // from the event's file record.
            match replace(&t.tmp, &t.np.abs) {
                Ok(Swap::Exchanged) => {
                    if let Some(bytes) = displaced_save(&t.tmp, t.expect) {
                        late.push(LateSave {
                            np: t.np.clone(),
                            bytes,
                            base: t.base.clone(),
                        });
                    }
                    let _ = fs::remove_file(&t.tmp);
                }
                Ok(Swap::Renamed) => {}
                Err(e) => {
                    tracing::error!(path = %t.np.rel, error = %e, "rename after commit failed")
                }
            }
            self.mark_written(inner, &t.np, t.after, written);
            inner.renders.insert(t.np.rel, t.cache);
        }
        // Notebooks renamed away: their new files are in place.
        for np in std::mem::take(&mut inner.removals) {
            if let Err(e) = fs::remove_file(&np.abs) {
                tracing::warn!(path = %np.rel, error = %e, "could not remove a renamed notebook's old file");
            }
            inner.disk.remove(&np.rel);
        }
        // Only now, after the flush, may a long-poll see them (§8.9).
        self.head_tx.send_replace(inner.ws.head);
        if inner.ws.head - inner.checkpointed >= CHECKPOINT_EVERY
            && let Err(e) = self.write_checkpoint(inner)
        {
            tracing::warn!(error = %e, "could not write a projection checkpoint");
        }
        Ok(late)
    }

    /// Drops every staged event: the projection is rebuilt from the log
    /// (as at start-up), and what was seen of the files is forgotten, so an
    /// outside change the dropped batch had taken in is seen again.
    pub(super) fn abandon(&self, inner: &mut Inner) {
        for (abs, _) in std::mem::take(&mut inner.unwritten).values() {
            let _ = fs::remove_file(temp_path(abs));
        }
        inner.staged.clear();
        inner.bases.clear();
        inner.removals.clear();
        inner.renders.clear();
        inner.disk.clear();
        let (ws, _, replayed) = replay::workspace(&self.store);
        if let Err(e) = replayed {
            // Stopping short of the head keeps every later append refused
            // (its version is taken), which beats serving a state the log
            // does not have.
            tracing::error!(error = %e, "the log could not be replayed after a failed batch");
        }
        inner.ws = ws;
    }

    /// Records the file just swapped in, whose temp file had stat `written`
    /// before the swap: its stamp is trusted only if it is still that
    /// inode, size and mtime, so a save landing right after the swap is
    /// hashed (and taken in) by the next sync rather than missed.
    pub(super) fn mark_written(
        &self,
        inner: &mut Inner,
        np: &NotebookPath,
        hash: Hash,
        written: Option<Stamp>,
    ) {
        match (fs::metadata(&np.abs), written) {
            (Ok(m), Some(w)) if Stamp::of(&m).same_file_content(&w) => {
                inner.disk.insert(np.rel.clone(), (Stamp::of(&m), hash));
            }
            _ => {
                inner.disk.remove(&np.rel);
            }
        }
    }

    pub(super) fn mark_disk(&self, inner: &mut Inner, np: &NotebookPath, hash: Hash) {
        if let Ok(m) = fs::metadata(&np.abs) {
            inner.disk.insert(np.rel.clone(), (Stamp::of(&m), hash));
        }
    }
}
