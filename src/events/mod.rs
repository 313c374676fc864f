//! Events: immutable, past-tense facts. Plain data, no I/O.
//!
//! An [`Event`] is what one tool call did. Its [`Change`]s are the smallest
//! facts a projection folds (a cell inserted, a source set, a cell deleted
//! with everything needed to bring it back). Open-ended Jupyter JSON
//! (metadata, outputs, attachments) is carried as JSON text, never as
//! `serde_json::Value`, because the on-disk codec (bincode 1) cannot decode
//! self-describing values.
//!
//! The bytes on disk are defined in [`codec`], which owns schema versions.

pub mod codec;

use std::sync::Arc;

/// A blake3 digest.
pub type Hash = [u8; 32];

/// The kind of a notebook cell.
///
/// `Other` is a type from a newer nbformat minor that this build does not
/// know (e.g. `test4plus.ipynb`). Such a cell is kept exactly as read (its
/// keys live in `Cell::extra`) and can be moved or deleted, never edited.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CellType {
    Code,
    Markdown,
    Raw,
    Other(String),
}

impl CellType {
    pub fn as_str(&self) -> &str {
        match self {
            CellType::Code => "code",
            CellType::Markdown => "markdown",
            CellType::Raw => "raw",
            CellType::Other(s) => s,
        }
    }

    /// A type a tool may create or convert to.
    pub fn parse(s: &str) -> Option<CellType> {
        match s {
            "code" => Some(CellType::Code),
            "markdown" => Some(CellType::Markdown),
            "raw" => Some(CellType::Raw),
            _ => None,
        }
    }

    /// Any type found in a file.
    pub fn from_file(s: &str) -> CellType {
        CellType::parse(s).unwrap_or_else(|| CellType::Other(s.to_owned()))
    }
}

/// A whole cell: everything needed to write it back to the file exactly.
///
/// JSON-valued fields hold compact JSON text. `outputs` and
/// `execution_count` are `None` for markdown and raw cells; `extra` holds
/// unknown per-cell keys (a JSON object, `{}` when none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cell {
    pub id: String,
    pub cell_type: CellType,
    pub source: String,
    pub metadata: String,
    pub outputs: Option<String>,
    pub execution_count: Option<String>,
    pub attachments: Option<String>,
    pub extra: String,
}

impl Cell {
    /// A new cell as a tool creates it: empty metadata, no outputs.
    pub fn new(id: String, cell_type: CellType, source: String, metadata: Option<String>) -> Cell {
        let code = cell_type == CellType::Code;
        Cell {
            id,
            cell_type,
            source,
            metadata: metadata.unwrap_or_else(|| "{}".to_owned()),
            outputs: code.then(|| "[]".to_owned()),
            execution_count: code.then(|| "null".to_owned()),
            attachments: None,
            extra: "{}".to_owned(),
        }
    }

    /// The same cell with another type. A code cell turned into markdown or
    /// raw loses outputs and execution_count (as Jupyter does); a cell
    /// becoming code gains empty ones. Attachments only live on markdown
    /// and raw cells in nbformat, so they are dropped when becoming code.
    pub fn with_type(&self, cell_type: CellType) -> Cell {
        let mut cell = self.clone();
        let code = cell_type == CellType::Code;
        cell.cell_type = cell_type;
        if code {
            cell.outputs.get_or_insert_with(|| "[]".to_owned());
            cell.execution_count
                .get_or_insert_with(|| "null".to_owned());
            cell.attachments = None;
        } else {
            cell.outputs = None;
            cell.execution_count = None;
        }
        cell
    }
}

/// Notebook-level content other than cells.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub nbformat: u64,
    pub nbformat_minor: u64,
    /// JSON object text.
    pub metadata: String,
    /// Unknown top-level keys, JSON object text.
    pub extra: String,
}

/// What the file on disk was made to hold by this event.
///
/// `before` is the content hash the file had when the event was built
/// (`None` if there was no file); `after` is the hash of the bytes the event
/// wrote, or of the bytes it observed when `written` is false (an import
/// that left the file alone). Start-up uses this record to finish a write
/// that was in flight when the process died (§8.8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileWrite {
    pub path: String,
    pub before: Option<Hash>,
    pub after: Hash,
    pub written: bool,
}

/// One fact about one notebook. Applying the changes of an event in order
/// to the state before it gives the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The notebook starts to exist in the log (import or create), or
    /// exists again after its file was removed.
    NotebookCreated { path: String, header: Header },
    /// Notebook metadata or format fields changed (outside edit, restore).
    HeaderSet {
        path: String,
        before: Header,
        after: Header,
    },
    /// A cell appears at `index` (counted in the state before this change).
    CellInserted {
        path: String,
        index: u32,
        cell: Arc<Cell>,
    },
    /// Only the source of a cell changed.
    SourceSet {
        path: String,
        cell_id: String,
        before: String,
        after: String,
    },
    /// Anything else about a cell changed (type, metadata, outputs...); the
    /// whole cell before and after, id unchanged.
    CellReplaced {
        path: String,
        before: Arc<Cell>,
        after: Arc<Cell>,
    },
    /// A cell is removed. It keeps everything needed to recover it: the
    /// whole cell, where it was, and the live cell that preceded it.
    CellDeleted {
        path: String,
        index: u32,
        after_cell_id: Option<String>,
        cell: Arc<Cell>,
    },
    /// A cell changes position within the notebook.
    CellMoved {
        path: String,
        cell_id: String,
        from: u32,
        to: u32,
    },
    /// `owner` holds the cell until `expires_at` (ms). A renewal repeats
    /// the original `acquired_at` with a later `expires_at`.
    LockAcquired {
        path: String,
        cell_id: String,
        owner: String,
        acquired_at: i64,
        expires_at: i64,
    },
    /// The lock is gone: released by its owner, forced by someone else, or
    /// taken with the cell's deletion.
    LockReleased {
        path: String,
        cell_id: String,
        owner: String,
        forced: bool,
    },
    /// A named snapshot of the whole notebook (§8.6). The cells' large
    /// texts are content-addressed in the store, so a snapshot of unchanged
    /// content costs references only. Taking a name again replaces it.
    SnapshotTaken {
        path: String,
        name: String,
        hash: Hash,
        description: Option<String>,
        header: Header,
        cells: Vec<Arc<Cell>>,
    },
    /// A copy of another cell lands at `index` under a new id.
    CellCopied {
        path: String,
        index: u32,
        cell: Arc<Cell>,
        from_path: String,
        from_id: String,
    },
    /// A cell leaves this notebook for another (it is not deleted: its id
    /// now lives at `to_path` as `to_id`).
    CellMovedOut {
        path: String,
        cell_id: String,
        index: u32,
        to_path: String,
        to_id: String,
    },
    /// A cell arrives from another notebook, whole; `cell.id` differs from
    /// `from_id` only if the id was taken here.
    CellMovedIn {
        path: String,
        index: u32,
        cell: Arc<Cell>,
        from_path: String,
        from_id: String,
    },
    /// A write refused because of another owner's lock (§3, §8.5): it
    /// changes nothing, but the attempt is on record. The event's
    /// `operation` is the refused tool.
    Rejected {
        path: String,
        cell_id: String,
        holder: String,
        acquired_at: i64,
        expires_at: i64,
    },
    /// A run was accepted (§9): the source that will run (the cell's when
    /// the call was accepted, `source_version` its `last_version` then) on
    /// the notebook's kernel. The event's client is who ran it.
    RunStarted {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        source: String,
        source_version: u64,
        kernel_name: String,
    },
    /// A run's whole outputs so far (nbformat JSON array text), committed
    /// while it goes on. They land on its cell only if this is the cell's
    /// newest accepted run.
    RunOutputs {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        outputs: String,
        execution_count: Option<u64>,
        truncated: bool,
    },
    /// A run ended: `status` is `ok`, `error`, `interrupted`,
    /// `kernel_died` or `aborted`; `outputs` are its final ones.
    RunFinished {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        status: String,
        execution_count: Option<u64>,
        started_at: Option<i64>,
        duration_ms: Option<u64>,
        outputs: String,
        truncated: bool,
        reason: Option<String>,
    },
    /// Something happened to the notebook's kernel (`action`: the
    /// operation, e.g. `interrupt_kernel`): on record, no content changes.
    KernelAction {
        path: String,
        kernel_name: String,
        action: String,
        run_ids: Vec<String>,
    },
    /// A named snapshot is removed (`delete_snapshot`); its content stays
    /// in the log at the version that took it.
    SnapshotDeleted { path: String, name: String },
    /// The notebook at `path` now lives at `to` (`rename_notebook`): its
    /// whole state (cells, deleted cells, locks, snapshots) moves with it.
    NotebookRenamed { path: String, to: String },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::NotebookCreated { path, .. }
            | Change::HeaderSet { path, .. }
            | Change::CellInserted { path, .. }
            | Change::SourceSet { path, .. }
            | Change::CellReplaced { path, .. }
            | Change::CellDeleted { path, .. }
            | Change::CellMoved { path, .. }
            | Change::LockAcquired { path, .. }
            | Change::LockReleased { path, .. }
            | Change::SnapshotTaken { path, .. }
            | Change::CellCopied { path, .. }
            | Change::CellMovedOut { path, .. }
            | Change::CellMovedIn { path, .. }
            | Change::Rejected { path, .. }
            | Change::RunStarted { path, .. }
            | Change::RunOutputs { path, .. }
            | Change::RunFinished { path, .. }
            | Change::KernelAction { path, .. }
            | Change::SnapshotDeleted { path, .. }
            | Change::NotebookRenamed { path, .. } => path,
        }
    }

    /// The cell this change is about, if any.
    pub fn cell_id(&self) -> Option<&str> {
        match self {
            Change::NotebookCreated { .. }
            | Change::HeaderSet { .. }
            | Change::SnapshotTaken { .. }
            | Change::SnapshotDeleted { .. }
            | Change::NotebookRenamed { .. }
            | Change::KernelAction { .. } => None,
            Change::RunStarted { cell_id, .. }
            | Change::RunOutputs { cell_id, .. }
            | Change::RunFinished { cell_id, .. } => cell_id.as_deref(),
            Change::CellInserted { cell, .. }
            | Change::CellDeleted { cell, .. }
            | Change::CellCopied { cell, .. }
            | Change::CellMovedIn { cell, .. } => Some(&cell.id),
            Change::CellReplaced { after, .. } => Some(&after.id),
            Change::SourceSet { cell_id, .. }
            | Change::CellMoved { cell_id, .. }
            | Change::LockAcquired { cell_id, .. }
            | Change::LockReleased { cell_id, .. }
            | Change::CellMovedOut { cell_id, .. }
            | Change::Rejected { cell_id, .. } => Some(cell_id),
        }
    }
}

impl Event {
    /// A refused attempt kept for the audit trail: it changes no notebook.
    pub fn is_rejected(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::Rejected { .. }))
    }
}

/// One committed tool call (or outside change) with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Global, gap-free, starting at 1.
    pub version: u64,
    /// Milliseconds since the Unix epoch, UTC; never decreasing along versions.
    pub timestamp_ms: i64,
    pub client_name: String,
    /// The tool that made the event, or `import` / `external_change`.
    pub operation: String,
    /// Notebook paths (relative to the root) the event belongs to.
    pub paths: Vec<String>,
    /// Cells the event affected, in a meaningful order for the operation.
    pub cell_ids: Vec<String>,
    /// `(cell_id, owner)` for each lock this event was forced past.
    pub overrode_locks: Vec<(String, String)>,
    /// Client-chosen idempotency key (§8.1).
    pub request_id: Option<String>,
    /// The tool result as JSON text, so a retried request gets the first
    /// answer back from the log itself.
    pub result: String,
    /// One line for feeds and `log`; never a whole source.
    pub summary: String,
    pub changes: Vec<Change>,
    pub files: Vec<FileWrite>,
}

/// Operation names that are not tools.
pub const OP_IMPORT: &str = "import";
pub const OP_EXTERNAL: &str = "external_change";
/// The client name of changes that came from outside the server.
pub const CLIENT_EXTERNAL: &str = "external";
/// The server's own corrections: a write kept over an outside save that
/// landed during it, and a file repaired from the log after a power loss.
pub const OP_KEEP_WRITE: &str = "keep_write";
pub const OP_REPAIR_FILE: &str = "repair_file";
/// The client name of events the server makes on its own (§8.8).
pub const CLIENT_SERVER: &str = "nbledger";
/// The server's own records of runs (§9.2): progress and end of a run,
/// carrying the client that accepted it, and a kernel that stopped without
/// being asked (death, owner stop).
pub const OP_RUN_OUTPUTS: &str = "run_outputs";
pub const OP_RUN_FINISHED: &str = "run_finished";
pub const OP_KERNEL_STOPPED: &str = "kernel_stopped";
