//! The engine's side of a JupyterLab room (§12): while nbledger is in a
//! notebook's room, Jupyter saves the file from the room, so the engine
//! neither writes that file nor takes its saves in as outside changes (the
//! person's edits reach the log through the room, by `jupyter:<name>`).
//! Leaving the room hands the file back to the engine (§8.8).

use std::fs;

use super::*;

impl Engine {
    /// Enters the room of `path`: the file is synced one last time (an
    /// import or an outside change is recorded as usual), then the engine
    /// stops writing and syncing it. Returns the notebook's state then.
    pub fn enter_room(&self, path: &str) -> Result<NotebookState, ToolError> {
        let np = self.root.resolve(path)?;
        self.locked(|inner| {
            self.sync(inner, &np)?;
            inner.roomed.insert(np.rel.clone());
            inner
                .ws
                .notebook(&np.rel)
                .cloned()
                .ok_or_else(|| ToolError::internal("notebook vanished from the projection"))
        })
    }

    /// Whether the engine leaves `path`'s file to a room.
    pub fn in_room(&self, path: &str) -> bool {
        self.lock().roomed.contains(path)
    }

    /// Leaves the room of `path` (Jupyter went away, or the room closed):
    /// the file is the engine's again. The log holds everything the room
    /// had (the room's side flushed its pending edits first), so a file
    /// whose content differs from the log (Jupyter had not saved the last
    /// writes yet) is rewritten from the log rather than taken in as an
    /// outside change that would undo them.
    pub fn leave_room(&self, path: &str) -> Result<(), ToolError> {
        let np = self.root.resolve(path)?;
        self.locked(|inner| {
            if !inner.roomed.remove(&np.rel) {
                return Ok(());
            }
            let Some(nb) = inner.ws.notebook(&np.rel) else {
                return Ok(());
            };
            let same = fs::read(&np.abs)
                .ok()
                .and_then(|b| ipynb::parse(&b).ok().map(|raw| (b, raw)))
                .filter(|(_, raw)| notebook::diff_outside(nb, raw).is_empty());
            match same {
                Some((bytes, _)) => {
                    // Jupyter's save of what the log holds: ours.
                    self.mark_disk(inner, &np, *blake3::hash(&bytes).as_bytes());
                    Ok(())
                }
                None => self.rewrite_from_log(inner, &np),
            }
        })
    }
}
