//! `nbledger verify`: is the log intact, and do the projections and the
//! files on disk agree with it? (§8.9)
//!
//! One pass over the `events` tree, in key order, checks for each record:
//! its key is the next version (no gap, nothing stored out of place), it
//! lies within the head the metadata records, it decodes, it says it is
//! that version, its `prev_hash` is the blake3 of the previous record's
//! bytes (32 zero bytes for version 1), every blob it references is
//! present and hashes to its name, and its time does not go backwards. The
//! entries it needs in the notebook and cell indexes are added to a digest
//! that must equal the digest of one sequential scan of each index after
//! the walk (so nothing is missing and nothing is extra; a mismatch is
//! then located and named). The event is folded with
//! the server's projection as it goes; at the version of the server's
//! stored projection checkpoint the fold must equal it. After the walk the
//! metadata's head hash must be the last record's hash. The first fault stops
//! the walk and is reported with its version.
//!
//! Then each notebook of the replayed state is rendered with the server's
//! code and compared, by content, with its file on disk (a file imported
//! without rewriting may differ in bytes, never in content).
//!
//! The chain catches corruption and naive edits, not someone who rewrites
//! the whole chain after the point they changed.

use std::cell::RefCell;
use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::text::hex;
use super::{Audit, AuditError};
use crate::events::Event;
use crate::events::Hash;
use crate::events::codec;
use crate::ipynb::{self, RawNotebook};
use crate::notebook::render_file;
use crate::projections::{NotebookState, Workspace};
use crate::replay::{StoredCheckpoint, stored_checkpoint};
use crate::store::{Index, Store, StoreError};

/// The first thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The bad event, when one can be named.
    pub version: Option<u64>,
    pub what: String,
}

/// A notebook whose file does not hold what the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Records checked and found sound (versions 1..=checked).
    pub checked: u64,
    pub head: u64,
    pub head_hash: Hash,
    pub fault: Option<Fault>,
    /// What became of the stored projection checkpoint.
    pub checkpoint: String,
    pub notebooks: usize,
    pub file_diffs: Vec<FileDiff>,
}

impl Report {
    /// 0 ok, 1 log fault, 3 only files differ (§8.9).
    pub fn exit_code(&self) -> u8 {
        if self.fault.is_some() {
            1
        } else if !self.file_diffs.is_empty() {
            3
        } else {
            0
        }
    }
}

fn fault(version: impl Into<Option<u64>>, what: impl Into<String>) -> Option<Fault> {
    Some(Fault {
        version: version.into(),
        what: what.into(),
    })
}

/// An order-independent digest of a set of index keys: their count and the
/// wrapping sum of a 128-bit hash of each. Comparing the digest of what
/// the events account for with that of one sequential scan of the index
/// replaces a random lookup per entry, which dominates on large logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct KeySum {
    count: u64,
    sum: u128,
}

impl KeySum {
    fn add(&mut self, key: &[u8]) {
        let h = blake3::hash(key);
        let mut low = [0u8; 16];
        low.copy_from_slice(&h.as_bytes()[..16]);
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(low));
    }
}

/// The index disagrees with the events: find the first event whose entry
/// is missing, else the first entry no event accounts for. (Only on a
/// damaged log; it reads the log again.)
fn locate_index_fault(store: &Store, index: Index) -> Result<Option<Fault>, AuditError> {
    for rec in store.records(1) {
        let event = rec?.event;
        for k in Store::index_keys(&event).of(index) {
            if !store.index_contains(index, k)? {
                let (_, what) = index.describe(k);
                return Ok(fault(event.version, format!("the {what} is missing")));
            }
        }
    }
    for k in store.index_entries(index) {
        let k = k?;
        let (version, what) = index.describe(&k);
        let accounted = match store.get(version)? {
            Some(rec) => Store::index_keys(&rec.event).of(index).contains(&k),
            None => false,
        };
        if !accounted {
            return Ok(fault(
                None,
                format!("the {what} at version {version} is not accounted for by that event"),
            ));
        }
    }
    Ok(fault(
        None,
        format!("the {index:?} index does not match the events"),
    ))
}

/// Record `key`'s `prev_hash` is not the hash of record `key - 1`.
fn broken_link(key: u64) -> Option<Fault> {
    fault(
        key - 1,
        format!(
            "its bytes do not hash to the prev_hash stored in version {key} \
             (the record was altered, or version {key}'s prev_hash was)"
        ),
    )
}

/// The first field in which two notebook states differ.
fn state_difference(a: &Workspace, b: &Workspace) -> String {
    for (path, x) in &a.notebooks {
        match b.notebooks.get(path) {
            None => return format!("the checkpoint lacks notebook {path}"),
            Some(y) if x != y => {
                let field = if x.header != y.header {
                    "header"
                } else if x.cells != y.cells {
                    "cells"
                } else if x.deleted != y.deleted {
                    "deleted cells"
                } else if x.file != y.file {
                    "file record"
                } else {
                    "versions"
                };
                return format!("notebook {path} differs in its {field}");
            }
            Some(_) => {}
        }
    }
    if let Some(p) = b.notebooks.keys().find(|p| !a.notebooks.contains_key(*p)) {
        return format!("the checkpoint has notebook {p}, which the log never created");
    }
    "the request_id memory differs".to_owned()
}

/// Walks the chain and replays; returns the fold and the fault, if any.
fn walk(audit: &Audit, report: &mut Report, bar: &ProgressBar) -> Result<Workspace, AuditError> {
    let store = audit.store();
    let cp = stored_checkpoint(store)?;
    report.checkpoint = match &cp {
        StoredCheckpoint::Absent => "no projection checkpoint is stored".to_owned(),
        StoredCheckpoint::Foreign(why) => {
            format!("the stored checkpoint is not this build's ({why}); the server ignores it")
        }
        StoredCheckpoint::At { version, .. } if *version > report.head => {
            format!("the stored checkpoint (v{version}) is past the head; the server ignores it")
        }
        StoredCheckpoint::At { version, .. } => {
            format!("the checkpoint at v{version} was not reached")
        }
    };
    let mut ws = Workspace::default();
    let mut prev: Hash = [0; 32];
    let mut expected: u64 = 1;
    let mut last_ts = i64::MIN;
    // Two stages on two threads: reading, decoding, hashing and the index
    // digest (per record, no shared state) on one; the chain, the order
    // and the fold (sequential by nature) on this one.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Checked>>(8);
    let mut read_error: Option<StoreError> = None;
    let (fault_found, want) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_and_decode(store, tx));
        let found = 'walk: {
            for item in rx.iter().flatten() {
                let Checked { key, hash, decoded } = item;
                let decoded = match decoded {
                    Err(e) => {
                        read_error = Some(e);
                        break 'walk None;
                    }
                    Ok(d) => d,
                };
                if key != expected {
                    break 'walk if key > expected {
                        fault(
                            expected,
                            format!(
                                "version {expected} is missing: the log goes from version {} to {key}",
                                expected - 1
                            ),
                        )
                    } else {
                        fault(
                            key,
                            format!("a record is stored under a malformed key for version {key}"),
                        )
                    };
                }
                if key > report.head {
                    break 'walk fault(
                        key,
                        format!(
                            "the record lies past the head ({}) the log's metadata records",
                            report.head
                        ),
                    );
                }
                let (event, prev_hash) = match decoded {
                    Decoded::Event(event, prev_hash) => (event, prev_hash),
                    Decoded::Broken { chained, what } => {
                        if key > 1 && chained.is_some_and(|p| p != prev) {
                            break 'walk broken_link(key);
                        }
                        break 'walk fault(key, what);
                    }
                };
                if event.version != key {
                    break 'walk fault(
                        key,
                        format!("its record says it is version {}", event.version),
                    );
                }
                if prev_hash != prev {
                    break 'walk if key == 1 {
                        fault(1, "its prev_hash is not 32 zero bytes")
                    } else {
                        broken_link(key)
                    };
                }
                if event.timestamp_ms < last_ts {
                    break 'walk fault(
                        key,
                        format!("its timestamp is earlier than version {}'s", key - 1),
                    );
                }
                ws.apply(&event);
                if let StoredCheckpoint::At {
                    version,
                    hash: cp_hash,
                    workspace,
                } = &cp
                    && *version == key
                {
                    report.checkpoint = if *cp_hash != hash {
                        format!(
                            "the stored checkpoint names v{version} with another hash (another log's); the server ignores it"
                        )
                    } else if ws != **workspace {
                        break 'walk fault(
                            key,
                            format!(
                                "the server's stored projection (checkpoint) at this version differs from the replay: {}",
                                state_difference(&ws, workspace)
                            ),
                        );
                    } else {
                        format!("replay matches the projection checkpoint at v{version}")
                    };
                }
                prev = hash;
                last_ts = event.timestamp_ms;
                report.checked = key;
                expected += 1;
                if key % 256 == 0 {
                    bar.set_position(key);
                }
            }
            None
        };
        // Stopping early drops the receiver, which stops the reader.
        drop(rx);
        let want = reader.join().unwrap_or_default();
        (found, want)
    });
    if let Some(e) = read_error {
        return Err(e.into());
    }
    report.fault = 'after: {
        if let Some(f) = fault_found {
            break 'after Some(f);
        }
        bar.set_position(report.checked);
        if report.checked < report.head {
            break 'after fault(
                report.checked + 1,
                format!(
                    "version {} is missing: the log's metadata says the head is {}, the last record is {}",
                    report.checked + 1,
                    report.head,
                    report.checked
                ),
            );
        }
        if prev != report.head_hash {
            break 'after fault(
                report.head,
                "its bytes do not hash to the head hash the log's metadata records (the record was altered)",
            );
        }
        for (i, index) in Index::ALL.into_iter().enumerate() {
            let mut have = KeySum::default();
            for k in store.index_entries(index) {
                have.add(&k?);
            }
            if have != want[i] {
                break 'after locate_index_fault(store, index)?;
            }
        }
        None
    };
    Ok(ws)
}

/// The first way in which `file` does not hold `log` (both parsed).
fn content_difference(log: &RawNotebook, file: &RawNotebook) -> Option<String> {
    if (log.nbformat, log.nbformat_minor) != (file.nbformat, file.nbformat_minor) {
        return Some(format!(
            "nbformat is {}.{} in the file, {}.{} in the log",
            file.nbformat, file.nbformat_minor, log.nbformat, log.nbformat_minor
        ));
    }
    if log.metadata != file.metadata {
        return Some("the notebook metadata differs".to_owned());
    }
    if log.extra != file.extra {
        return Some("the notebook's top-level fields differ".to_owned());
    }
    for (i, (a, b)) in log.cells.iter().zip(&file.cells).enumerate() {
        let id = a.id.as_deref().unwrap_or("?");
        let field = if a.id != b.id {
            return Some(format!(
                "cell {i} is {} in the file, {id} in the log",
                b.id.as_deref().unwrap_or("without id")
            ));
        } else if a.cell_type != b.cell_type {
            "type"
        } else if a.source != b.source {
            "source"
        } else if a.metadata != b.metadata {
            "metadata"
        } else if a.outputs != b.outputs {
            "outputs"
        } else if a.execution_count != b.execution_count {
            "execution_count"
        } else if a.attachments != b.attachments {
            "attachments"
        } else if a.extra != b.extra {
            "other fields"
        } else {
            continue;
        };
        return Some(format!("cell {i} ({id}) differs in its {field}"));
    }
    if log.cells.len() != file.cells.len() {
        return Some(format!(
            "the file has {} cells, the log {}",
            file.cells.len(),
            log.cells.len()
        ));
    }
    None
}

/// One record as the reader stage saw it.
struct Checked {
    key: u64,
    /// blake3 of the record's bytes (the next record's `prev_hash`).
    hash: Hash,
    decoded: Result<Decoded, StoreError>,
}

enum Decoded {
    Event(Box<Event>, Hash),
    /// The record does not decode; `chained` is its `prev_hash` when the
    /// envelope alone still reads (to tell a broken chain from a broken
    /// body).
    Broken {
        chained: Option<Hash>,
        what: String,
    },
}

/// The reader stage: every record in key order, decoded (blobs checked
/// against their names) and hashed, in batches; the digest of the index
/// entries the events account for is its result. Stops at a read error
/// (sent on) or when the walk stops listening.
fn read_and_decode(store: &Store, tx: std::sync::mpsc::SyncSender<Vec<Checked>>) -> [KeySum; 2] {
    const BATCH: usize = 512;
    let mut want = [KeySum::default(), KeySum::default()];
    let bad_blob: RefCell<Option<String>> = RefCell::new(None);
    let get_blob = |h: &Hash| -> Option<Vec<u8>> {
        let b = store.blob(h).ok().flatten()?;
        if blake3::hash(&b).as_bytes() != h {
            *bad_blob.borrow_mut() = Some(hex(h));
            return None;
        }
        Some(b)
    };
    let mut batch = Vec::with_capacity(BATCH);
    for item in store.raw_records() {
        let (key, bytes) = match item {
            Ok(kv) => kv,
            Err(e) => {
                batch.push(Checked {
                    key: 0,
                    hash: [0; 32],
                    decoded: Err(e),
                });
                break;
            }
        };
        let hash = *blake3::hash(&bytes).as_bytes();
        let decoded = match codec::decode(&bytes, &get_blob) {
            Ok((event, prev_hash)) => {
                let keys = Store::index_keys(&event);
                for (i, index) in Index::ALL.into_iter().enumerate() {
                    for k in keys.of(index) {
                        want[i].add(k);
                    }
                }
                Decoded::Event(Box::new(event), prev_hash)
            }
            Err(e) => Decoded::Broken {
                chained: codec::decode_head(&bytes).ok().map(|h| h.prev_hash),
                what: match bad_blob.borrow_mut().take() {
                    Some(h) => format!("blob {h} it references does not match its hash"),
                    None => format!("its record does not decode: {e}"),
                },
            },
        };
        batch.push(Checked {
            key,
            hash,
            decoded: Ok(decoded),
        });
        if batch.len() == BATCH
            && tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            return want;
        }
    }
    let _ = tx.send(batch);
    want
}

/// Compares one notebook's replayed state with its file.
fn check_file(audit: &Audit, nb: &NotebookState) -> Option<String> {
    let abs = audit.root().join(&nb.path);
    let bytes = match std::fs::read(&abs) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!(
                "the file is missing (removed outside nbledger); the log has it as of v{}",
                nb.content_version
            ));
        }
        Err(e) => return Some(format!("the file cannot be read: {e}")),
    };
    let log = match ipynb::parse(&render_file(nb)) {
        Ok(raw) => raw,
        Err(e) => {
            return Some(format!(
                "the log's state does not render as a notebook: {e}"
            ));
        }
    };
    let what = match ipynb::parse(&bytes) {
        Ok(file) => content_difference(&log, &file)?,
        Err(e) => format!("the file is not a valid notebook: {}", e.reason),
    };
    let hash = *blake3::hash(&bytes).as_bytes();
    let hint = match &nb.file {
        Some(f) if f.written && f.before == Some(hash) => {
            "a write was interrupted; the server finishes it when it starts"
        }
        _ => {
            "changed outside nbledger; the server takes it in as an external_change when it next touches the notebook"
        }
    };
    Some(format!("{what} ({hint})"))
}

/// Verifies the log and the files. `bar` shows progress (hidden when
/// stderr is not a terminal).
pub fn verify(audit: &Audit, bar: &ProgressBar) -> Result<Report, AuditError> {
    let store = audit.store();
    let mut report = Report {
        checked: 0,
        head: store.head(),
        head_hash: store.head_hash(),
        fault: None,
        checkpoint: String::new(),
        notebooks: 0,
        file_diffs: Vec::new(),
    };
    let ws = walk(audit, &mut report, bar)?;
    if report.fault.is_some() {
        return Ok(report);
    }
    report.notebooks = ws.notebooks.len();
    for nb in ws.notebooks.values() {
        if let Some(what) = check_file(audit, nb) {
            report.file_diffs.push(FileDiff {
                path: nb.path.clone(),
                what,
            });
        }
    }
    Ok(report)
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
pub fn progress_bar(len: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "verifying {wide_bar} {human_pos}/{human_len} events, {eta} left",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Runs `verify` and prints its report; returns the exit code.
pub fn run(audit: &Audit, out: &mut dyn Write) -> Result<u8, AuditError> {
    let bar = progress_bar(audit.store().head());
    let report = verify(audit, &bar)?;
    bar.finish_and_clear();
    write_report(&report, out)?;
    Ok(report.exit_code())
}

/// The report as text. The last line of a sound log is `head hash: HEX`.
pub fn write_report(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(f) = &r.fault {
        match f.version {
            Some(v) => writeln!(out, "FAULT at version {v}: {}", f.what)?,
            None => writeln!(out, "FAULT: {}", f.what)?,
        }
        match f.version {
            Some(v) => {
                let sound = if v > 1 {
                    format!("versions 1..{} check out", v - 1)
                } else {
                    "no version before it".to_owned()
                };
                writeln!(
                    out,
                    "{sound}; the log's head is {}; nothing after the fault was checked",
                    r.head
                )?;
            }
            None => writeln!(
                out,
                "the records of versions 1..{} and their hash chain check out; the files were not checked",
                r.head
            )?,
        }
        return out.flush();
    }
    let range = if r.head == 0 {
        "an empty log".to_owned()
    } else {
        format!("versions 1..{}", r.head)
    };
    writeln!(
        out,
        "log ok: {} events ({range}), hash chain intact, indexes complete; {}",
        r.head, r.checkpoint
    )?;
    if r.file_diffs.is_empty() {
        let n = r.notebooks;
        let what = if n == 1 {
            "notebook matches"
        } else {
            "notebooks match"
        };
        writeln!(out, "files ok: {n} {what} the log")?;
    } else {
        writeln!(
            out,
            "files differ: {} of {} notebooks",
            r.file_diffs.len(),
            r.notebooks
        )?;
        for d in &r.file_diffs {
            writeln!(out, "DIFFERS {}: {}", super::text::escape(&d.path), d.what)?;
        }
    }
    writeln!(out, "head hash: {}", hex(&r.head_hash))?;
    out.flush()
}
