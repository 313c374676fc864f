//! Confining notebook paths to the workspace root (contract §2, §8.8).
//!
//! A path is normalised lexically, then resolved from the canonical root one
//! component at a time so that a symlink anywhere on the way is followed and
//! checked: a link inside the root is fine (the notebook is keyed by its
//! target), a link that leaves the root is `outside_root`.

use std::path::{Component, Path, PathBuf};

use crate::error::{Code, ToolError, quote};

#[derive(Debug, Clone)]
pub struct Root {
    root: PathBuf,
    data: PathBuf,
}

/// A notebook path inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotebookPath {
    /// Relative to the root, `/`-separated: the notebook's key in the log.
    pub rel: String,
    pub abs: PathBuf,
}

const MAX_LINKS: usize = 40;

impl Root {
    /// `root` and `data` must exist; both are canonicalised.
    pub fn new(root: &Path, data: &Path) -> std::io::Result<Root> {
        Ok(Root {
            root: root.canonicalize()?,
            data: data.canonicalize()?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Resolves a user-given notebook path.
    pub fn resolve(&self, input: &str) -> Result<NotebookPath, ToolError> {
        check_text(input)?;
        if !input.ends_with(".ipynb") {
            return Err(ToolError::invalid(
                "path",
                "a path ending in .ipynb",
                format!(
                    "path {} is not a notebook; give a path ending in .ipynb",
                    quote(input)
                ),
            ));
        }
        let rel = self.resolve_any(input)?;
        if !rel.ends_with(".ipynb") {
            return Err(ToolError::invalid(
                "path",
                "a path ending in .ipynb",
                format!(
                    "path {} links to a file that is not a .ipynb notebook",
                    quote(input)
                ),
            ));
        }
        Ok(NotebookPath {
            abs: self.root.join(&rel),
            rel,
        })
    }

    /// Resolves a folder (for `list_notebooks`); "" is the root.
    pub fn resolve_dir(&self, input: &str) -> Result<(String, PathBuf), ToolError> {
        check_text(input)?;
        if input.is_empty() || input == "." {
            return Ok((String::new(), self.root.clone()));
        }
        let rel = self.resolve_any(input)?;
        Ok((rel.clone(), self.root.join(rel)))
    }

    fn resolve_any(&self, input: &str) -> Result<String, ToolError> {
        let outside = || {
            ToolError::new(
                Code::OutsideRoot,
                format!(
                    "path {} is outside the workspace root {}; use a path relative to the root",
                    quote(input),
                    self.root.display()
                ),
            )
        };
        let given = Path::new(input);
        let relative: PathBuf = if given.is_absolute() {
            // An absolute path is fine when it names something inside the root.
            let lexical = normalise(given).ok_or_else(outside)?;
            match lexical.strip_prefix(&self.root) {
                Ok(r) => r.to_path_buf(),
                Err(_) => {
                    let parent_canon = lexical
                        .parent()
                        .and_then(|p| p.canonicalize().ok())
                        .ok_or_else(outside)?;
                    let rest = parent_canon
                        .strip_prefix(&self.root)
                        .map_err(|_| outside())?;
                    rest.join(lexical.file_name().ok_or_else(outside)?)
                }
            }
        } else {
            normalise(given).ok_or_else(outside)?
        };

        // Walk from the canonical root, following links as we go.
        let mut pending: Vec<std::ffi::OsString> = relative
            .components()
            .rev()
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut cur = self.root.clone();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if !cur.pop() || !cur.starts_with(&self.root) {
                    return Err(outside());
                }
                continue;
            }
            let next = cur.join(&part);
            match std::fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(outside());
                    }
                    let target = std::fs::read_link(&next).map_err(|_| outside())?;
                    if target.is_absolute() {
                        cur = PathBuf::from("/");
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::RootDir | Component::Prefix(_) => {}
                            Component::CurDir => {}
                            other => pending.push(other.as_os_str().to_owned()),
                        }
                    }
                }
                _ => cur = next,
            }
            if !cur.starts_with(&self.root) && pending.iter().all(|p| p != "..") {
                // Only reject once no later `..` could bring us back; a
                // plain component can never re-enter.
                return Err(outside());
            }
        }
        if !cur.starts_with(&self.root) {
            return Err(outside());
        }
        if cur.starts_with(&self.data) {
            return Err(ToolError::invalid(
                "path",
                "a path outside the data folder",
                format!(
                    "path {} is inside nbledger's data folder, which holds no notebooks",
                    quote(input)
                ),
            ));
        }
        let rel = cur.strip_prefix(&self.root).map_err(|_| outside())?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Ok(parts.join("/"))
    }
}

fn check_text(input: &str) -> Result<(), ToolError> {
    if input.chars().any(|c| c.is_control()) {
        return Err(ToolError::invalid(
            "path",
            "a path without control characters",
            format!("path {} contains control characters", quote(input)),
        ));
    }
    Ok(())
}

/// Folds `.` and `a/..` lexically; `None` if `..` would climb above the start.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                out.pop();
                depth -= 1;
            }
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(".nbledger");
        std::fs::create_dir_all(&data).unwrap();
        let root = Root::new(dir.path(), &data).unwrap();
        (dir, root)
    }

    #[test]
    fn relative_paths_are_normalised() {
        let (_d, root) = setup();
        assert_eq!(root.resolve("a/./b/../c.ipynb").unwrap().rel, "a/c.ipynb");
        assert_eq!(root.resolve("x.ipynb").unwrap().rel, "x.ipynb");
    }

    #[test]
    fn escapes_are_outside_root() {
        let (d, root) = setup();
        for p in ["../x.ipynb", "a/../../x.ipynb", "/etc/x.ipynb"] {
            assert_eq!(root.resolve(p).unwrap_err().code, "outside_root", "{p}");
        }
        let inside = format!("{}/sub/n.ipynb", d.path().canonicalize().unwrap().display());
        assert_eq!(root.resolve(&inside).unwrap().rel, "sub/n.ipynb");
    }

    #[test]
    fn symlinks_are_followed_and_checked() {
        let (d, root) = setup();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        assert_eq!(
            root.resolve("out/x.ipynb").unwrap_err().code,
            "outside_root"
        );
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("alias")).unwrap();
        assert_eq!(root.resolve("alias/x.ipynb").unwrap().rel, "real/x.ipynb");
    }

    #[test]
    fn bad_names_are_invalid_arguments() {
        let (_d, root) = setup();
        assert_eq!(root.resolve("x.txt").unwrap_err().code, "invalid_argument");
        assert_eq!(
            root.resolve("a\nb.ipynb").unwrap_err().code,
            "invalid_argument"
        );
        assert_eq!(
            root.resolve(".nbledger/x.ipynb").unwrap_err().code,
            "invalid_argument"
        );
    }
}
