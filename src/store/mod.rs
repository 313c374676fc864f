//! The store knows bytes and order: an append-only log of event records in
//! sled, with one global gap-free version sequence, a blake3 hash chain,
//! secondary indexes and a content-addressed blob tree. It knows nothing
//! about notebooks beyond the paths and cell ids an event names.
//!
//! Trees:
//! - `events`: `be_u64(version)` → record bytes (see [`crate::events::codec`])
//! - `meta`: `head` → `be_u64`, `head_hash` → 32 bytes, `root` → the
//!   workspace the log belongs to, `checkpoint` → a projection snapshot
//! - `by_nb`: `path \0 be_u64(version)` → `` (events of a notebook)
//! - `by_cell`: `path \0 cell_id \0 be_u64(version)` → `` (events of a cell)
//! - `blobs`: blake3 → bytes
//!
//! Everything an append writes (one event, or a whole group-commit batch)
//! lives in one sled transaction, and the first version is checked against
//! `meta.head` inside it, so a crash can never leave a gap, a dangling index
//! entry, a missing blob or part of a batch. `append` and `append_batch`
//! return only after `flush()`: a returned version is durable.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::events::codec::{self, DecodeError, RecordHead};
use crate::events::{Event, Hash};

const HEAD: &[u8] = b"head";
const HEAD_HASH: &[u8] = b"head_hash";
const ROOT: &[u8] = b"root";
const CHECKPOINT: &[u8] = b"checkpoint";
/// Present while a server runs on the store; left behind by a crash or a
/// power loss.
const RUNNING: &[u8] = b"running";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the log in {0} is in use by another nbledger process; stop it or point --data elsewhere"
    )]
    InUse(String),
    #[error("the log's storage failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("event version {got} does not follow the head {head}; the log was not changed")]
    OutOfOrder { got: u64, head: u64 },
    #[error("event {version} cannot be read: {source}")]
    Decode {
        version: u64,
        #[source]
        source: DecodeError,
    },
    #[error(
        "this log belongs to root {recorded}, not {given}; use the matching --root or another --data"
    )]
    WrongRoot { recorded: String, given: String },
    /// The batch's transaction committed but the flush failed: whether it
    /// is on disk is unknown, and after a failed fsync the OS may have
    /// dropped the pages, so the store takes no more writes.
    #[error(
        "the log could not be flushed to disk ({0}); whether the last writes are stored is unknown"
    )]
    NotDurable(String),
    #[error("the log's storage failed earlier and takes no more writes; restart nbledger")]
    Failed,
    #[error("event {0} is missing from the log although its index names it; run nbledger verify")]
    Missing(u64),
}

/// The trees of a [`Store::dump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Part {
    Events = 0,
    Meta = 1,
    Notebooks = 2,
    Cells = 3,
    Blobs = 4,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Events,
        Part::Meta,
        Part::Notebooks,
        Part::Cells,
        Part::Blobs,
    ];

    pub fn from_u8(b: u8) -> Option<Part> {
        Part::ALL.get(usize::from(b)).copied()
    }
}

/// The version a stored checkpoint is at, read from its leading fields
/// (format, build, version) without decoding the projection.
fn checkpoint_version(bytes: &[u8]) -> Option<u64> {
    bincode::deserialize::<(u32, String, u64)>(bytes)
        .ok()
        .map(|(_, _, v)| v)
}

/// The secondary indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// `by_nb`: `path \0 be_u64(version)`.
    Notebooks,
    /// `by_cell`: `path \0 cell_id \0 be_u64(version)`.
    Cells,
}

impl Index {
    pub const ALL: [Index; 2] = [Index::Notebooks, Index::Cells];

    /// An index key for people: its version and what it names.
    pub fn describe(self, key: &[u8]) -> (u64, String) {
        let cut = key.len().saturating_sub(9);
        let what = String::from_utf8_lossy(&key[..cut]).replace('\0', " cell ");
        let kind = match self {
            Index::Notebooks => "notebook index",
            Index::Cells => "cell index",
        };
        (be_u64(key), format!("{kind} entry for {what}"))
    }
}

/// The entries one event puts in the secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKeys {
    pub notebooks: Vec<Vec<u8>>,
    pub cells: Vec<Vec<u8>>,
}

impl IndexKeys {
    pub fn of(&self, index: Index) -> &[Vec<u8>] {
        match index {
            Index::Notebooks => &self.notebooks,
            Index::Cells => &self.cells,
        }
    }
}

/// [`Store::records_at`] scans instead of seeking when the wanted versions
/// are at least one in this many of the range they span. (Measured: for
/// one version in ten, point reads beat the scan when the log is in cache
/// and tie with it when it is not.)
const DENSE_SPAN: u64 = 4;

/// One record of an append, encoded before its transaction (which sled
/// may run more than once).
struct Encoded {
    key: [u8; 8],
    bytes: Vec<u8>,
    hash: Hash,
    nb_keys: Vec<Vec<u8>>,
    cell_keys: Vec<Vec<u8>>,
}

/// The iterator of [`Store::records_at`].
pub struct RecordsAt<'a> {
    store: &'a Store,
    versions: Vec<u64>,
    next: usize,
    scan: Option<sled::Iter>,
    /// A record the scan read past (the wanted version before it is missing).
    pending: Option<(u64, sled::IVec)>,
}

impl Iterator for RecordsAt<'_> {
    type Item = Result<(u64, Option<Record>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let want = *self.versions.get(self.next)?;
        self.next += 1;
        let Some(scan) = &mut self.scan else {
            return Some(match self.store.raw(want) {
                Ok(Some(bytes)) => self.store.decode(want, &bytes).map(|r| (want, Some(r))),
                Ok(None) => Ok((want, None)),
                Err(e) => Err(e),
            });
        };
        loop {
            let (key, bytes) = match self.pending.take() {
                Some(p) => p,
                None => match scan.next() {
                    None => return Some(Ok((want, None))),
                    Some(Err(e)) => return Some(Err(e.into())),
                    Some(Ok((k, v))) => (be_u64(&k), v),
                },
            };
            if key < want {
                continue;
            }
            if key > want {
                self.pending = Some((key, bytes));
                return Some(Ok((want, None)));
            }
            return Some(self.store.decode(want, &bytes).map(|r| (want, Some(r))));
        }
    }
}

/// A stored record: its decoded event and the hashes that chain it.
#[derive(Debug, Clone)]
pub struct Record {
    pub event: Event,
    pub prev_hash: Hash,
    pub hash: Hash,
}

pub struct Store {
    dir: std::path::PathBuf,
    db: sled::Db,
    events: sled::Tree,
    meta: sled::Tree,
    by_nb: sled::Tree,
    by_cell: sled::Tree,
    blobs: sled::Tree,
    head: AtomicU64,
    head_hash: Mutex<Hash>,
    /// Set by a failed flush: every later append is refused (see
    /// [`StoreError::NotDurable`]).
    failed: std::sync::atomic::AtomicBool,
    /// Tests: make the next flushes fail.
    #[cfg(test)]
    pub(crate) fail_flushes: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (or creates) the log in `dir`, waiting up to 2 s for a
    /// previous owner that is just stopping.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_waiting(dir, std::time::Duration::from_secs(2))
    }

    /// Opens the log in `dir`, retrying sled's file lock for `wait`; past
    /// it, [`StoreError::InUse`] (another process owns the store).
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(e.into()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The log holds everyone's notebook content; keep it private.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let config = sled::Config::new()
            .path(dir.join("log"))
            .cache_capacity(128 << 20)
            // We flush on every commit ourselves; a timer flush would only
            // add background I/O.
            .flush_every_ms(None);
        // sled releases its file lock a little after the last handle drops,
        // so a previous owner that is just stopping gets a moment to go.
        let deadline = std::time::Instant::now() + wait;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse(dir.display().to_string()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(StoreError::Sled(e)),
            }
        };
        let store = Store {
            events: db.open_tree("events")?,
            meta: db.open_tree("meta")?,
            by_nb: db.open_tree("by_nb")?,
            by_cell: db.open_tree("by_cell")?,
            blobs: db.open_tree("blobs")?,
            head: AtomicU64::new(0),
            head_hash: Mutex::new([0; 32]),
            failed: Default::default(),
            #[cfg(test)]
            fail_flushes: Default::default(),
            dir: dir.to_path_buf(),
            db,
        };
        store.load_head()?;
        Ok(store)
    }

    /// Reads the head and its hash from `meta` into memory.
    fn load_head(&self) -> Result<(), StoreError> {
        let head = self.meta.get(HEAD)?.map(|v| be_u64(&v)).unwrap_or(0);
        let head_hash = self
            .meta
            .get(HEAD_HASH)?
            .and_then(|v| <Hash>::try_from(v.as_ref()).ok())
            .unwrap_or([0; 32]);
        self.head.store(head, Ordering::SeqCst);
        *self.head_hash.lock() = head_hash;
        Ok(())
    }

    /// The data folder this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the workspace root on first use; refuses a different one.
    pub fn bind_root(&self, root: &str) -> Result<(), StoreError> {
        match self.meta.get(ROOT)? {
            Some(recorded) if recorded.as_ref() != root.as_bytes() => Err(StoreError::WrongRoot {
                recorded: String::from_utf8_lossy(&recorded).into_owned(),
                given: root.to_owned(),
            }),
            Some(_) => Ok(()),
            None => {
                self.meta.insert(ROOT, root.as_bytes())?;
                self.db.flush()?;
                Ok(())
            }
        }
    }

    /// The newest durable version (0 for an empty log).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// The hash of the newest record (32 zero bytes for an empty log).
    pub fn head_hash(&self) -> Hash {
        *self.head_hash.lock()
    }

    /// Appends `event`, which must carry version `head + 1`, and makes it
    /// durable. Returns the record's hash. Callers serialise appends (the
    /// engine holds its lock); the transaction still refuses a wrong version
    /// so a bug cannot write a gap.
    pub fn append(&self, event: &Event) -> Result<Hash, StoreError> {
        let hashes = self.append_batch(std::slice::from_ref(event))?;
        Ok(hashes[0])
    }

    /// Appends consecutive events, the first carrying `head + 1`, in one
    /// transaction and makes them durable with one flush (group commit):
    /// after a crash or an error either all of them are in the log or none.
    /// None is visible through [`Store::head`] before the flush.
    pub fn append_batch(&self, events: &[Event]) -> Result<Vec<Hash>, StoreError> {
        if self.failed() {
            return Err(StoreError::Failed);
        }
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        for pair in events.windows(2) {
            if pair[1].version != pair[0].version + 1 {
                return Err(StoreError::OutOfOrder {
                    got: pair[1].version,
                    head: pair[0].version,
                });
            }
        }
        // Blobs are content-addressed and never change: one already stored
        // (or already queued by this batch) is not written again, so a
        // snapshot of unchanged content costs its references only.
        let mut new_blobs: Vec<(Hash, Vec<u8>)> = Vec::new();
        let mut queued: HashSet<Hash> = HashSet::new();
        let mut records = Vec::with_capacity(events.len());
        let mut prev = self.head_hash();
        for event in events {
            let bytes = codec::encode(event, &prev, &mut |b| {
                let h = *blake3::hash(b).as_bytes();
                if !queued.contains(&h) && !self.blobs.contains_key(h).unwrap_or(false) {
                    queued.insert(h);
                    new_blobs.push((h, b.to_vec()));
                }
                h
            });
            let hash = *blake3::hash(&bytes).as_bytes();
            let version = event.version;
            records.push(Encoded {
                key: version.to_be_bytes(),
                bytes,
                hash,
                nb_keys: event.paths.iter().map(|p| nb_key(p, version)).collect(),
                cell_keys: cell_index_keys(event),
            });
            prev = hash;
        }

        let first_version = first.version;
        let trees = (
            &self.events,
            &self.meta,
            &self.by_nb,
            &self.by_cell,
            &self.blobs,
        );
        let result = trees.transaction(|(events, meta, by_nb, by_cell, blobs)| {
            let head = meta.get(HEAD)?.map(|v| be_u64(&v)).unwrap_or(0);
            if first_version != head + 1 {
                return Err(ConflictableTransactionError::Abort(head));
            }
            for r in &records {
                events.insert(&r.key, r.bytes.as_slice())?;
                for k in &r.nb_keys {
                    by_nb.insert(k.as_slice(), &[])?;
                }
                for k in &r.cell_keys {
                    by_cell.insert(k.as_slice(), &[])?;
                }
            }
            for (h, b) in &new_blobs {
                blobs.insert(h, b.as_slice())?;
            }
            if let Some(last) = records.last() {
                meta.insert(HEAD, &last.key)?;
                meta.insert(HEAD_HASH, &last.hash)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(head)) => {
                return Err(StoreError::OutOfOrder {
                    got: first_version,
                    head,
                });
            }
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        if let Err(e) = self.flush_log() {
            self.failed.store(true, Ordering::SeqCst);
            return Err(StoreError::NotDurable(e.to_string()));
        }
        let hashes: Vec<Hash> = records.iter().map(|r| r.hash).collect();
        if let (Some(last), Some(hash)) = (events.last(), hashes.last()) {
            *self.head_hash.lock() = *hash;
            self.head.store(last.version, Ordering::SeqCst);
        }
        Ok(hashes)
    }

    /// Whether a flush failed: the store then takes no more writes.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn flush_log(&self) -> sled::Result<usize> {
        #[cfg(test)]
        if self.fail_flushes.load(Ordering::SeqCst) {
            return Err(sled::Error::Io(std::io::Error::other(
                "injected flush failure",
            )));
        }
        self.db.flush()
    }

    /// The raw bytes of record `version`.
    pub fn raw(&self, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.events.get(version.to_be_bytes())?.map(|v| v.to_vec()))
    }

    /// Reads and decodes record `version`.
    pub fn get(&self, version: u64) -> Result<Option<Record>, StoreError> {
        match self.raw(version)? {
            None => Ok(None),
            Some(bytes) => self.decode(version, &bytes).map(Some),
        }
    }

    /// Reads the envelope of record `version` without its body.
    pub fn head_of(&self, version: u64) -> Result<Option<RecordHead>, StoreError> {
        match self.raw(version)? {
            None => Ok(None),
            Some(bytes) => codec::decode_head(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode { version, source }),
        }
    }

    fn decode(&self, version: u64, bytes: &[u8]) -> Result<Record, StoreError> {
        let blobs = &self.blobs;
        let (event, prev_hash) =
            codec::decode(bytes, &|h| blobs.get(h).ok().flatten().map(|v| v.to_vec()))
                .map_err(|source| StoreError::Decode { version, source })?;
        Ok(Record {
            event,
            prev_hash,
            hash: *blake3::hash(bytes).as_bytes(),
        })
    }

    /// Every record from `from` (inclusive) up to the head, in order.
    pub fn records(&self, from: u64) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        let head = self.head();
        self.events
            .range(from.max(1).to_be_bytes()..)
            .map(move |kv| {
                let (k, v) = kv?;
                let version = be_u64(&k);
                self.decode(version, &v)
            })
            .take_while(move |r| r.as_ref().map_or(true, |r| r.event.version <= head))
    }

    /// Versions of events that belong to notebook `path`, after `after`,
    /// oldest first, at most `limit`. A range scan over the index: cost does
    /// not grow with the rest of the log.
    pub fn notebook_versions(
        &self,
        path: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let start = nb_key(path, after.saturating_add(1));
        let end = nb_key(path, u64::MAX);
        let mut out = Vec::new();
        for kv in self.by_nb.range(start..=end).take(limit) {
            let (k, _) = kv?;
            out.push(be_u64(&k[k.len() - 8..]));
        }
        Ok(out)
    }

    /// Versions of events that belong to notebook `path`, newest first,
    /// strictly before `before`, at most `limit` (the forensic view pages
    /// a notebook's timeline backwards through the index).
    pub fn notebook_versions_rev(
        &self,
        path: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let start = nb_key(path, 0);
        let end = nb_key(path, before);
        let mut out = Vec::new();
        for kv in self.by_nb.range(start..end).rev().take(limit) {
            let (k, _) = kv?;
            out.push(be_u64(&k[k.len() - 8..]));
        }
        Ok(out)
    }

    /// The envelopes of the records strictly before `before` (and at most
    /// the head), newest first, bodies left undecoded: what a filter on
    /// client, operation or time walks.
    pub fn heads_rev(
        &self,
        before: u64,
    ) -> impl Iterator<Item = Result<RecordHead, StoreError>> + '_ {
        let end = before.min(self.head().saturating_add(1));
        self.events
            .range(1u64.to_be_bytes()..end.to_be_bytes())
            .rev()
            .map(move |kv| {
                let (k, v) = kv?;
                let version = be_u64(&k);
                codec::decode_head(&v).map_err(|source| StoreError::Decode { version, source })
            })
    }

    /// Another handle on this open log, pinned at its durable head now:
    /// it reads what this one does up to that version and never writes.
    /// The owner's `serve --http` gives one to each page of the forensic
    /// view (§11), so a page reads one consistent log without a copy.
    pub fn reader(&self) -> Store {
        Store {
            dir: self.dir.clone(),
            db: self.db.clone(),
            events: self.events.clone(),
            meta: self.meta.clone(),
            by_nb: self.by_nb.clone(),
            by_cell: self.by_cell.clone(),
            blobs: self.blobs.clone(),
            head: AtomicU64::new(self.head()),
            head_hash: Mutex::new(self.head_hash()),
            failed: std::sync::atomic::AtomicBool::new(true),
            #[cfg(test)]
            fail_flushes: Default::default(),
        }
    }

    /// Versions of events that touched cell `cell_id` of `path`, newest
    /// first, strictly before `before`, at most `limit`.
    pub fn cell_versions_rev(
        &self,
        path: &str,
        cell_id: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let start = cell_key(path, cell_id, 0);
        let end = cell_key(path, cell_id, before);
        let mut out = Vec::new();
        for kv in self.by_cell.range(start..end).rev().take(limit) {
            let (k, _) = kv?;
            out.push(be_u64(&k[k.len() - 8..]));
        }
        Ok(out)
    }

    /// The root this log was bound to by [`Store::bind_root`], if any.
    /// Read-only, for the audit command line.
    pub fn recorded_root(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(ROOT)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A blob by its hash, as stored (the caller checks the content).
    pub fn blob(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(hash)?.map(|v| v.to_vec()))
    }

    /// The records of `versions` (ascending, distinct), in order, each with
    /// its version; `None` for a version whose record is missing. A dense
    /// set is read with one range scan that skips the other records
    /// without decoding them; a sparse one with point reads (a point read
    /// on a large log is a cache miss, a scan streams).
    pub fn records_at(&self, versions: Vec<u64>) -> RecordsAt<'_> {
        let scan = match (versions.first(), versions.last()) {
            (Some(&first), Some(&last))
                if last - first < (versions.len() as u64).saturating_mul(DENSE_SPAN) =>
            {
                Some(self.events.range(first.to_be_bytes()..=last.to_be_bytes()))
            }
            _ => None,
        };
        RecordsAt {
            store: self,
            versions,
            next: 0,
            scan,
            pending: None,
        }
    }

    /// Every record in the `events` tree as `(key, bytes)`, in key order,
    /// with no regard for the head: what `verify` walks to find gaps,
    /// strays and altered bytes. Keys that are not 8 bytes are returned as
    /// they are decoded by [`be_u64`] (their tail), so they show up as
    /// out-of-sequence versions.
    pub fn raw_records(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        self.events.iter().map(|kv| {
            let (k, v) = kv?;
            Ok((be_u64(&k), v.to_vec()))
        })
    }

    /// Distinct ids of cells of `path` whose id starts with `prefix`, in
    /// id order, at most `limit`. Deleted cells count: the index keeps
    /// every cell an event ever touched.
    pub fn cell_ids_with_prefix(
        &self,
        path: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut base = Vec::with_capacity(path.len() + 1);
        base.extend_from_slice(path.as_bytes());
        base.push(0);
        let mut start = base.clone();
        start.extend_from_slice(prefix.as_bytes());
        let mut out: Vec<String> = Vec::new();
        while out.len() < limit {
            let Some(kv) = self.by_cell.range(start.clone()..).next() else {
                break;
            };
            let (k, _) = kv?;
            let Some(rest) = k.strip_prefix(base.as_slice()) else {
                break;
            };
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                break;
            };
            let id = &rest[..end];
            if !id.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(String::from_utf8_lossy(id).into_owned());
            // Skip the rest of this cell's entries: they all start `id \0`.
            start = base.clone();
            start.extend_from_slice(id);
            start.push(1);
        }
        Ok(out)
    }

    /// The entries `event` puts in each secondary index (sorted, distinct).
    pub fn index_keys(event: &Event) -> IndexKeys {
        let mut notebooks: Vec<Vec<u8>> = event
            .paths
            .iter()
            .map(|p| nb_key(p, event.version))
            .collect();
        notebooks.sort();
        notebooks.dedup();
        IndexKeys {
            notebooks,
            cells: cell_index_keys(event),
        }
    }

    /// Every entry of one secondary index, in key order (for `verify`,
    /// which compares them with what the events account for).
    pub fn index_entries(
        &self,
        index: Index,
    ) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        self.index_tree(index)
            .iter()
            .keys()
            .map(|k| Ok(k?.to_vec()))
    }

    /// Whether an index holds `key`.
    pub fn index_contains(&self, index: Index, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.index_tree(index).contains_key(key)?)
    }

    fn index_tree(&self, index: Index) -> &sled::Tree {
        match index {
            Index::Notebooks => &self.by_nb,
            Index::Cells => &self.by_cell,
        }
    }

    /// Marks the store as served; true if the last server did not end
    /// cleanly (it crashed, or the machine lost power).
    pub fn begin_session(&self) -> Result<bool, StoreError> {
        let unclean = self.meta.insert(RUNNING, &[1u8])?.is_some();
        self.db.flush()?;
        Ok(unclean)
    }

    /// Marks a clean end of serving (see [`Store::begin_session`]).
    pub fn end_session(&self) -> Result<(), StoreError> {
        self.meta.remove(RUNNING)?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores an opaque projection checkpoint (a cache: never the truth).
    pub fn put_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(CHECKPOINT, bytes)?;
        Ok(())
    }

    /// The last stored checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(CHECKPOINT)?.map(|v| v.to_vec()))
    }

    /// Everything a reader needs of the log up to the durable head, as raw
    /// `(part, key, value)` entries (see [`Part`]); returns that head.
    /// Records and index entries past it are left out, and the checkpoint
    /// too when it is newer, so the copy is the log as of this call even
    /// while writers go on: everything up to the head is immutable.
    pub fn dump(
        &self,
        mut emit: impl FnMut(Part, &[u8], &[u8]) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::Sled(sled::Error::Io(e));
        let head = self.head();
        // A writer may have committed past the durable head already: then
        // the head's hash as the log stored it is the next record's
        // prev_hash. Never recomputed from the record, or a damaged head
        // record would go unnoticed by `verify` on the copy.
        let stored: (Option<sled::IVec>, Option<sled::IVec>) = self
            .meta
            .transaction(|m| {
                Ok::<_, ConflictableTransactionError<sled::Error>>((
                    m.get(HEAD)?,
                    m.get(HEAD_HASH)?,
                ))
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) | TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        let ahead = stored.0.as_ref().is_some_and(|h| be_u64(h) > head);
        let head_hash: Option<Vec<u8>> = if ahead {
            self.head_of(head + 1)?.map(|r| r.prev_hash.to_vec())
        } else {
            stored.1.map(|h| h.to_vec())
        };
        for kv in self.events.range(..=head.to_be_bytes()) {
            let (k, v) = kv?;
            emit(Part::Events, &k, &v).map_err(io)?;
        }
        for (part, tree) in [(Part::Notebooks, &self.by_nb), (Part::Cells, &self.by_cell)] {
            for kv in tree.iter() {
                let (k, v) = kv?;
                if be_u64(&k) <= head {
                    emit(part, &k, &v).map_err(io)?;
                }
            }
        }
        for kv in self.blobs.iter() {
            let (k, v) = kv?;
            emit(Part::Blobs, &k, &v).map_err(io)?;
        }
        for kv in self.meta.iter() {
            let (k, v) = kv?;
            match k.as_ref() {
                HEAD if ahead => emit(Part::Meta, HEAD, &head.to_be_bytes()),
                HEAD_HASH => match &head_hash {
                    Some(h) => emit(Part::Meta, HEAD_HASH, h),
                    None => Ok(()),
                },
                CHECKPOINT if checkpoint_version(&v).is_none_or(|cv| cv > head) => Ok(()),
                _ => emit(Part::Meta, &k, &v),
            }
            .map_err(io)?;
        }
        Ok(head)
    }

    /// Copies this store's files into `into` and opens the copy. Only for a
    /// store no one writes (its owner holds the lock and is idle): a file
    /// copy is many times faster than [`Store::dump`] + [`Store::from_dump`].
    pub fn copy_files(&self, into: &Path) -> Result<Store, StoreError> {
        fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
            std::fs::create_dir_all(to)?;
            for entry in std::fs::read_dir(from)? {
                let entry = entry?;
                let target = to.join(entry.file_name());
                if entry.file_type()?.is_dir() {
                    copy_dir(&entry.path(), &target)?;
                } else {
                    std::fs::copy(entry.path(), &target)?;
                }
            }
            Ok(())
        }
        self.db.flush()?;
        copy_dir(&self.dir.join("log"), &into.join("log"))
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
        Store::open_waiting(into, std::time::Duration::ZERO)
    }

    /// Builds a store in `dir` (which must not hold one) from the entries
    /// of a [`Store::dump`], and opens it.
    pub fn from_dump(
        dir: &Path,
        mut next: impl FnMut() -> std::io::Result<Option<(Part, Vec<u8>, Vec<u8>)>>,
    ) -> Result<Store, StoreError> {
        let io = |e: std::io::Error| StoreError::Sled(sled::Error::Io(e));
        let store = Store::open_waiting(dir, std::time::Duration::ZERO)?;
        {
            let mut batches: [sled::Batch; 5] = Default::default();
            let mut pending = 0usize;
            let flush = |batches: &mut [sled::Batch; 5]| -> Result<(), StoreError> {
                for (part, batch) in Part::ALL.iter().zip(batches.iter_mut()) {
                    store.tree(*part).apply_batch(std::mem::take(batch))?;
                }
                Ok(())
            };
            while let Some((part, k, v)) = next().map_err(io)? {
                batches[part as usize].insert(k, v);
                pending += 1;
                if pending == 50_000 {
                    flush(&mut batches)?;
                    pending = 0;
                }
            }
            flush(&mut batches)?;
        }
        store.load_head()?;
        Ok(store)
    }

    fn tree(&self, part: Part) -> &sled::Tree {
        match part {
            Part::Events => &self.events,
            Part::Meta => &self.meta,
            Part::Notebooks => &self.by_nb,
            Part::Cells => &self.by_cell,
            Part::Blobs => &self.blobs,
        }
    }

    /// Flushes and releases nothing but sled's buffers; used at shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[8 - n..].copy_from_slice(&b[b.len() - n..]);
    u64::from_be_bytes(a)
}

fn nb_key(path: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + 9);
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn cell_key(path: &str, cell_id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + cell_id.len() + 10);
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k.extend_from_slice(cell_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Every (notebook, cell) an event touched, for the cell index.
fn cell_index_keys(event: &Event) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = event
        .changes
        .iter()
        .filter_map(|c| c.cell_id().map(|id| cell_key(c.path(), id, event.version)))
        .collect();
    // Events without changes (a refused write, a lock) name their cells
    // in the envelope only.
    if let Some(path) = event.paths.first() {
        keys.extend(
            event
                .cell_ids
                .iter()
                .map(|id| cell_key(path, id, event.version)),
        );
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Change, Header};

    fn event(version: u64, path: &str) -> Event {
        Event {
            version,
            timestamp_ms: 1_000 + version as i64,
            client_name: "t".into(),
            operation: "create_notebook".into(),
            paths: vec![path.into()],
            cell_ids: vec![],
            overrode_locks: vec![],
            request_id: None,
            result: "{}".into(),
            summary: "s".into(),
            changes: vec![Change::NotebookCreated {
                path: path.into(),
                header: Header {
                    nbformat: 4,
                    nbformat_minor: 5,
                    metadata: "{}".into(),
                    extra: "{}".into(),
                },
            }],
            files: vec![],
        }
    }

    fn copy_of(s: &Store, into: &Path) -> Store {
        let mut entries = Vec::new();
        s.dump(|p, k, v| {
            entries.push((p, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        let mut it = entries.into_iter();
        Store::from_dump(into, || Ok(it.next())).unwrap()
    }

    #[test]
    fn a_reader_is_pinned_at_the_head_and_walks_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let events: Vec<Event> = (1..=6)
            .map(|v| event(v, if v % 2 == 0 { "a.ipynb" } else { "b.ipynb" }))
            .collect();
        s.append_batch(&events[..4]).unwrap();
        let r = s.reader();
        s.append_batch(&events[4..]).unwrap();
        assert_eq!(r.head(), 4);
        let heads: Vec<u64> = r.heads_rev(u64::MAX).map(|h| h.unwrap().version).collect();
        assert_eq!(heads, [4, 3, 2, 1], "nothing past the reader's head");
        let heads: Vec<u64> = s.heads_rev(4).map(|h| h.unwrap().version).collect();
        assert_eq!(heads, [3, 2, 1]);
        assert_eq!(
            s.notebook_versions_rev("a.ipynb", 7, 10).unwrap(),
            [6, 4, 2]
        );
        assert_eq!(s.notebook_versions_rev("a.ipynb", 4, 1).unwrap(), [2]);
        assert!(
            r.append(&event(7, "a.ipynb")).is_err(),
            "a reader never writes"
        );
    }

    #[test]
    fn a_dump_is_the_log_as_of_the_durable_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a")).unwrap();
        let mut hashes = Vec::new();
        for v in 1..=5 {
            hashes.push(
                s.append(&event(v, if v % 2 == 0 { "a.ipynb" } else { "b.ipynb" }))
                    .unwrap(),
            );
        }
        // A checkpoint's leading fields: format, build, version.
        let cp = bincode::serialize(&(1u32, "x".to_string(), 4u64, [7u8; 32])).unwrap();
        s.put_checkpoint(&cp).unwrap();
        let whole = copy_of(&s, &dir.path().join("b"));
        assert_eq!(whole.head(), 5);
        assert_eq!(whole.head_hash(), hashes[4]);
        assert_eq!(whole.checkpoint().unwrap(), Some(cp.clone()));
        assert_eq!(
            whole.notebook_versions("a.ipynb", 0, 10).unwrap(),
            vec![2, 4]
        );

        // Records 4 and 5 committed but not yet published as durable: the
        // copy stops at 3, with 3's hash as record 4 chains it.
        s.head.store(3, Ordering::SeqCst);
        let early = copy_of(&s, &dir.path().join("c"));
        assert_eq!(early.head(), 3);
        assert_eq!(early.head_hash(), hashes[2]);
        assert!(early.get(4).unwrap().is_none());
        assert_eq!(early.notebook_versions("a.ipynb", 0, 10).unwrap(), vec![2]);
        assert_eq!(
            early.checkpoint().unwrap(),
            None,
            "a checkpoint past the head is left out"
        );
        assert_eq!(checkpoint_version(&cp), Some(4));
    }

    #[test]
    fn versions_are_gap_free_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            for v in 1..=3 {
                s.append(&event(v, "a.ipynb")).unwrap();
            }
            assert!(matches!(
                s.append(&event(5, "a.ipynb")),
                Err(StoreError::OutOfOrder { got: 5, head: 3 })
            ));
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.head(), 3);
        let versions: Vec<u64> = s.records(1).map(|r| r.unwrap().event.version).collect();
        assert_eq!(versions, vec![1, 2, 3]);
    }

    #[test]
    fn a_batch_chains_and_flushes_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.append(&event(1, "a.ipynb")).unwrap();
        let batch: Vec<Event> = (2..=5).map(|v| event(v, "a.ipynb")).collect();
        let hashes = s.append_batch(&batch).unwrap();
        assert_eq!(s.head(), 5);
        assert_eq!(s.head_hash(), hashes[3]);
        let r3 = s.get(3).unwrap().unwrap();
        assert_eq!(r3.prev_hash, hashes[0]);
        assert!(s.append_batch(&[event(7, "a.ipynb")]).is_err());
        assert_eq!(s.head(), 5);
    }

    #[test]
    fn a_batch_with_a_wrong_version_writes_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.append(&event(1, "a.ipynb")).unwrap();
        let gap = [
            event(2, "a.ipynb"),
            event(3, "a.ipynb"),
            event(5, "a.ipynb"),
        ];
        assert!(matches!(
            s.append_batch(&gap),
            Err(StoreError::OutOfOrder { got: 5, head: 3 })
        ));
        let late = [event(3, "a.ipynb"), event(4, "a.ipynb")];
        assert!(matches!(
            s.append_batch(&late),
            Err(StoreError::OutOfOrder { got: 3, head: 1 })
        ));
        assert_eq!(s.head(), 1);
        assert!(s.get(2).unwrap().is_none());
        assert_eq!(s.notebook_versions("a.ipynb", 0, 100).unwrap(), vec![1]);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.head(), 1);
        assert_eq!(s.append_batch(&[event(2, "a.ipynb")]).unwrap().len(), 1);
    }

    #[test]
    fn records_chain_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h1 = s.append(&event(1, "a.ipynb")).unwrap();
        s.append(&event(2, "a.ipynb")).unwrap();
        let r1 = s.get(1).unwrap().unwrap();
        let r2 = s.get(2).unwrap().unwrap();
        assert_eq!(r1.prev_hash, [0; 32]);
        assert_eq!(r1.hash, h1);
        assert_eq!(r2.prev_hash, h1);
        assert_eq!(s.head_hash(), r2.hash);
    }

    #[test]
    fn notebook_index_is_a_range_scan_per_notebook() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for v in 1..=10 {
            let p = if v % 2 == 0 { "a.ipynb" } else { "b.ipynb" };
            s.append(&event(v, p)).unwrap();
        }
        assert_eq!(
            s.notebook_versions("a.ipynb", 0, 100).unwrap(),
            vec![2, 4, 6, 8, 10]
        );
        assert_eq!(s.notebook_versions("a.ipynb", 4, 2).unwrap(), vec![6, 8]);
        // A path that is a prefix of another must not see its events.
        s.append(&event(11, "a.ipynb.ipynb")).unwrap();
        assert_eq!(s.notebook_versions("a.ipynb", 8, 100).unwrap(), vec![10]);
    }

    #[test]
    fn records_at_reads_dense_and_sparse_sets_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let batch: Vec<Event> = (1..=100).map(|v| event(v, "a.ipynb")).collect();
        s.append_batch(&batch).unwrap();
        s.events.remove(50u64.to_be_bytes()).unwrap();
        let read = |vs: &[u64]| -> Vec<(u64, bool)> {
            s.records_at(vs.to_vec())
                .map(|r| {
                    let (v, rec) = r.unwrap();
                    if let Some(rec) = &rec {
                        assert_eq!(rec.event.version, v);
                    }
                    (v, rec.is_some())
                })
                .collect()
        };
        // Dense: one scan.
        let dense: Vec<u64> = (40..=60).filter(|v| v % 3 != 0).collect();
        let got = read(&dense);
        assert_eq!(got.len(), dense.len());
        assert!(got.iter().all(|&(v, ok)| ok == (v != 50)));
        // Sparse: point reads.
        assert_eq!(
            read(&[1, 50, 100]),
            vec![(1, true), (50, false), (100, true)]
        );
        // Past the last record, and nothing asked.
        assert_eq!(
            read(&[99, 100, 101]),
            vec![(99, true), (100, true), (101, false)]
        );
        assert!(read(&[]).is_empty());
    }

    #[test]
    fn second_open_is_reported_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        assert!(matches!(Store::open(dir.path()), Err(StoreError::InUse(_))));
    }

    #[test]
    fn a_different_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.bind_root("/a").unwrap();
        s.bind_root("/a").unwrap();
        assert!(matches!(
            s.bind_root("/b"),
            Err(StoreError::WrongRoot { .. })
        ));
    }
}
