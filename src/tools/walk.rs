//! The directory walk behind `list_notebooks`: every notebook under a
//! folder, without importing any (§8.8: hidden folders and the data folder
//! skipped, directory symlinks not followed, at most 10,000 entries).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::{ToolError, quote};

/// Every notebook under `dir` (recursive, hidden folders and the data
/// folder skipped, directory symlinks not followed). Never imports.
pub fn notebooks(engine: &Engine, dir: &str) -> Result<Vec<Value>, ToolError> {
    let (rel, abs) = engine.root().resolve_dir(dir)?;
    if !abs.is_dir() {
        return Err(ToolError::not_found(
            "folder",
            format!("no folder {} in the workspace", quote(dir)),
        ));
    }
    let mut found = Vec::new();
    let mut budget = 10_000usize;
    walk(
        &abs,
        &rel,
        engine.root().data_dir(),
        &mut budget,
        &mut found,
    );
    found.sort();
    Ok(engine.with_workspace(|ws| {
        found
            .into_iter()
            .map(|(rel, abs)| match ws.notebook(&rel) {
                Some(nb) => json!({
                    "path": rel,
                    "cell_count": nb.cells.len(),
                    "current_version": nb.current_version,
                    "imported": true,
                }),
                None => json!({
                    "path": rel,
                    "cell_count": count_cells(&abs),
                    "current_version": 0,
                    "imported": false,
                }),
            })
            .collect()
    }))
}

fn walk(dir: &Path, rel: &str, data: &Path, budget: &mut usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if path.starts_with(data) {
                continue;
            }
            walk(&path, &child, data, budget, out);
        } else if name.ends_with(".ipynb") && (ft.is_file() || (ft.is_symlink() && path.is_file()))
        {
            out.push((child, path));
        }
    }
}

/// Counts cells without importing; `null` when the file is not a notebook.
fn count_cells(abs: &Path) -> Value {
    #[derive(serde::Deserialize)]
    struct Cells {
        cells: Vec<serde::de::IgnoredAny>,
    }
    fs::read(abs)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cells>(&b).ok())
        .map_or(Value::Null, |c| json!(c.cells.len()))
}
