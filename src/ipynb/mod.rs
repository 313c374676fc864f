//! Reading and writing Jupyter notebooks (nbformat 4.x).
//!
//! Two promises shape this module:
//!
//! * **Nothing another tool wrote is lost.** Unknown top-level and per-cell keys are
//!   kept verbatim in `extra`, metadata and outputs are stored as the JSON values
//!   that were read (a list of lines stays a list, a string stays a string), and
//!   notebooks from a newer minor version keep their minor version and their
//!   unknown cell and output types.
//! * **Files come out in Jupyter's exact layout**, byte for byte what Python's
//!   `nbformat.write` produces (`json.dumps(nb, sort_keys=True, indent=1,
//!   ensure_ascii=False) + "\n"`, every cell `source` split into lines), so that a
//!   round trip through nbledger leaves no spurious diff in version control.
//!
//! Validation ([`parse`]) is a hand-written subset of the nbformat 4.x JSON schema:
//! the structural rules for the notebook, cells and outputs, and the type rules
//! for the metadata keys the schema names. It refuses what Python's
//! `nbformat.validate` refuses on those points, and deliberately accepts unknown
//! keys (the schema's `additionalProperties: false`), missing cell ids and
//! duplicate cell ids, which the importer repairs or preserves instead.

use serde_json::{Map, Value};

mod parse;
mod render;
#[cfg(test)]
mod tests;
mod text;

pub use parse::parse;
pub use render::{render_cell, render_frame, render_notebook, render_notebook_full};
pub use text::{join_multiline, split_lines, valid_cell_id};

/// The newest nbformat 4 minor version whose schema this module knows.
///
/// A notebook with a larger minor comes from a future Jupyter: like nbformat, we
/// then accept cell and output types we do not know and pass them through untouched.
pub const KNOWN_MINOR: u64 = 5;

/// The cell types of nbformat 4.
pub const CELL_TYPES: [&str; 3] = ["code", "markdown", "raw"];

/// A notebook as read from disk, with everything needed to write it back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNotebook {
    pub nbformat: u64,
    pub nbformat_minor: u64,
    pub metadata: Map<String, Value>,
    /// Unknown top-level keys (anything but cells/metadata/nbformat/nbformat_minor), kept verbatim.
    pub extra: Map<String, Value>,
    pub cells: Vec<RawCell>,
}

/// One cell as read from disk.
///
/// A cell whose `cell_type` is not one of [`CELL_TYPES`] (accepted only in notebooks
/// whose minor version is newer than [`KNOWN_MINOR`]) is *opaque*: every key other
/// than `id`, `cell_type` and `metadata` stays in `extra` exactly as read, so it is
/// written back untouched; `source` then holds a read-only copy of its joined
/// source (empty if it has none) and is not written.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCell {
    /// `None` when the file has no id.
    pub id: Option<String>,
    /// "code" | "markdown" | "raw"; anything else is an opaque future cell (see above).
    pub cell_type: String,
    /// Joined: a list of lines is concatenated, a string kept.
    pub source: String,
    pub metadata: Map<String, Value>,
    /// `Some` for code cells (as read, shapes untouched), `None` otherwise.
    pub outputs: Option<Vec<Value>>,
    /// Code cells: `Some(Value::Null)` or `Some(number)`; `None` for non-code cells.
    pub execution_count: Option<Value>,
    /// Only when present in the file.
    pub attachments: Option<Value>,
    /// Unknown per-cell keys, kept verbatim.
    pub extra: Map<String, Value>,
}

impl RawCell {
    /// Whether this cell is one of the nbformat 4 cell types rather than an opaque
    /// cell from a future minor version.
    pub fn is_known_type(&self) -> bool {
        CELL_TYPES.contains(&self.cell_type.as_str())
    }
}

/// Why a file was refused as a notebook.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidNotebook {
    /// One clear sentence naming the problem; quotes no file content beyond a
    /// short key name or id (cut to 80 characters).
    pub reason: String,
    /// For JSON syntax errors: 1-based line.
    pub line: Option<usize>,
    /// For JSON syntax errors: 1-based column.
    pub column: Option<usize>,
}

impl InvalidNotebook {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            line: None,
            column: None,
        }
    }
}
