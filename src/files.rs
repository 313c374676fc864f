//! Writing notebook files: rendering from per-cell cached texts, the hidden
//! temp sibling written (and hashed) before the event commits, and the
//! atomic swap that puts it in place. Knows bytes and paths, not events.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ToolError;
use crate::events::{Cell, Hash};
use crate::notebook;
use crate::projections::NotebookState;

fn internal(e: impl std::fmt::Display) -> ToolError {
    ToolError::internal(format!("{e}; nothing was changed, the call can be retried"))
}

pub(crate) type RenderCache = HashMap<String, (Arc<Cell>, Arc<str>)>;

/// A notebook file as pieces: the frame and each cell's cached text.
/// Streaming the pieces into the file and the hasher avoids building (and
/// page-faulting in) a multi-megabyte buffer on every write.
pub(crate) struct Rendered {
    prefix: String,
    cells: Vec<Arc<str>>,
    suffix: String,
}

impl Rendered {
    pub(crate) fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let sep: &[u8] = b",\n";
        std::iter::once(self.prefix.as_bytes())
            .chain(self.cells.iter().enumerate().flat_map(move |(i, c)| {
                let lead: &[u8] = if i == 0 { b"" } else { sep };
                [lead, c.as_bytes()]
            }))
            .chain(std::iter::once(self.suffix.as_bytes()))
    }
}

/// Renders `nb`, re-encoding only cells whose `Arc` changed since `cache`.
pub(crate) fn render(nb: &NotebookState, cache: Option<&RenderCache>) -> (Rendered, RenderCache) {
    let mut next: RenderCache = HashMap::with_capacity(nb.cells.len());
    let mut cells: Vec<Arc<str>> = Vec::with_capacity(nb.cells.len());
    for live in &nb.cells {
        let text = match cache.and_then(|c| c.get(&live.cell.id)) {
            Some((cell, text)) if Arc::ptr_eq(cell, &live.cell) => text.clone(),
            _ => Arc::from(notebook::render_cell(&live.cell)),
        };
        next.insert(live.cell.id.clone(), (live.cell.clone(), text.clone()));
        cells.push(text);
    }
    let (prefix, suffix) = if cells.is_empty() {
        (
            String::from_utf8_lossy(&notebook::render(&nb.header, &[])).into_owned(),
            String::new(),
        )
    } else {
        notebook::render_frame(&nb.header)
    };
    (
        Rendered {
            prefix,
            cells,
            suffix,
        },
        next,
    )
}

/// Puts the written temp file in place of `target`, atomically for readers.
///
/// On Linux the two names are swapped with `renameat2(RENAME_EXCHANGE)` and
/// the old content (now under the temp name) is removed. A plain rename
/// over an existing file makes ext4 (`auto_da_alloc`) push the new file's
/// data to disk inside the call, which costs milliseconds for a
/// multi-megabyte notebook; the log, not the file, is what makes a write
/// durable, and start-up rewrites a file the log is ahead of.
pub(crate) fn replace(tmp: &Path, target: &Path) -> std::io::Result<Swap> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (Ok(from), Ok(to)) = (
            CString::new(tmp.as_os_str().as_bytes()),
            CString::new(target.as_os_str().as_bytes()),
        ) else {
            return fs::rename(tmp, target).map(|_| Swap::Renamed);
        };
        // SAFETY: both are valid NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(Swap::Exchanged);
        }
        // No target yet, or a filesystem without exchange: plain rename.
    }
    fs::rename(tmp, target).map(|_| Swap::Renamed)
}

/// How [`replace`] put a file in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    /// The names were exchanged: the file that was in place is now under
    /// the temp name, for the caller to check and remove.
    Exchanged,
    /// A plain rename: whatever was in place is gone.
    Renamed,
}

pub fn temp_path(abs: &Path) -> PathBuf {
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    abs.with_file_name(format!(".{name}.nbledger-tmp"))
}

/// Writes the hidden temp sibling of `abs` (keeping the target's permission
/// bits) and returns it with the blake3 of what was written. The bytes are
/// written out before the event commits so that a full disk refuses the
/// call with nothing committed.
pub(crate) fn write_temp(abs: &Path, file: &Rendered) -> Result<(PathBuf, Hash), ToolError> {
    let tmp = temp_path(abs);
    if let Some(parent) = abs.parent() {
        fs::create_dir_all(parent).map_err(internal)?;
    }
    // Hash and write in large blocks: blake3 is several times faster on
    // big inputs than on the ~5 KB cell texts one at a time.
    const BLOCK: usize = 256 << 10;
    let mut hasher = blake3::Hasher::new();
    let res = fs::File::create(&tmp).and_then(|mut f| {
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        for piece in file.pieces() {
            if buf.len() + piece.len() > BLOCK {
                hasher.update(&buf);
                f.write_all(&buf)?;
                buf.clear();
            }
            if piece.len() >= BLOCK {
                hasher.update(piece);
                f.write_all(piece)?;
            } else {
                buf.extend_from_slice(piece);
            }
        }
        hasher.update(&buf);
        f.write_all(&buf)
    });
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(internal(format!("writing the notebook failed: {e}")));
    }
    if let Ok(m) = fs::metadata(abs) {
        let _ = fs::set_permissions(&tmp, m.permissions());
    }
    Ok((tmp, *hasher.finalize().as_bytes()))
}
