//! Kernelspec discovery: the kernels Jupyter would find, by the same rules.
//!
//! Jupyter looks in `<dir>/kernels/<name>/kernel.json` for each data folder
//! of its path: every `JUPYTER_PATH` entry, the user data folder, the
//! Python prefix's `share/jupyter`, then the system folders; the first
//! folder holding a name wins. `jupyter-zmq-client` reads only one
//! `JUPYTER_PATH` entry and no Python prefix, so the path is built here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The inputs of Jupyter's data path, read from the environment by
/// [`JupyterDirs::from_env`] or given explicitly (tests, embedding).
#[derive(Debug, Clone, Default)]
pub struct JupyterDirs {
    /// `JUPYTER_PATH`: a `:`-separated list, searched first.
    pub jupyter_path: Option<OsString>,
    /// `JUPYTER_DATA_DIR`, else `$HOME/.local/share/jupyter`.
    pub user_data_dir: Option<PathBuf>,
    /// Python prefixes (`sys.prefix`, a virtualenv's included) whose
    /// `share/jupyter` is searched, in order.
    pub python_prefixes: Vec<PathBuf>,
    /// Search the Python prefixes before the user folder (jupyter_core's
    /// `JUPYTER_PREFER_ENV_PATH`, on by default inside a virtualenv).
    pub prefer_env: bool,
    /// The system folders (`/usr/local/share/jupyter`, `/usr/share/jupyter`).
    pub system: Vec<PathBuf>,
}

impl JupyterDirs {
    /// Jupyter's path for this process: its environment, and the prefix of
    /// the `python3` on `PATH` (asked once, bounded by a short timeout).
    pub fn from_env() -> JupyterDirs {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let user_data_dir = env("JUPYTER_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share/jupyter")));
        let mut python_prefixes = Vec::new();
        let mut in_env = false;
        for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
            if let Some(p) = env(var) {
                in_env = true;
                python_prefixes.push(PathBuf::from(p));
            }
        }
        for python in ["python3", "python"] {
            if let Some(p) = python_prefix(python) {
                python_prefixes.push(p);
                break;
            }
        }
        python_prefixes.dedup();
        let prefer_env = match env("JUPYTER_PREFER_ENV_PATH") {
            Some(v) => !matches!(
                v.to_str().map(str::to_ascii_lowercase).as_deref(),
                Some("0" | "false" | "no" | "off")
            ),
            None => in_env,
        };
        JupyterDirs {
            jupyter_path: env("JUPYTER_PATH"),
            user_data_dir,
            python_prefixes,
            prefer_env,
            system: vec![
                "/usr/local/share/jupyter".into(),
                "/usr/share/jupyter".into(),
            ],
        }
    }

    /// The data folders in search order, without duplicates.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(path) = &self.jupyter_path {
            dirs.extend(std::env::split_paths(path).filter(|p| !p.as_os_str().is_empty()));
        }
        let prefixes = self.python_prefixes.iter().map(|p| p.join("share/jupyter"));
        if self.prefer_env {
            dirs.extend(prefixes);
            dirs.extend(self.user_data_dir.clone());
        } else {
            dirs.extend(self.user_data_dir.clone());
            dirs.extend(prefixes);
        }
        dirs.extend(self.system.iter().cloned());
        let mut seen = Vec::new();
        dirs.retain(|d| {
            let new = !seen.contains(d);
            seen.push(d.clone());
            new
        });
        dirs
    }
}

/// `sys.prefix` of the interpreter `python` on `PATH`, or `None` if there is
/// none or it does not answer within two seconds.
fn python_prefix(python: &str) -> Option<PathBuf> {
    let mut child = Command::new(python)
        .args(["-c", "import sys; sys.stdout.write(sys.prefix)"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let prefix = String::from_utf8(out.stdout).ok()?;
    (!prefix.is_empty()).then(|| PathBuf::from(prefix))
}

/// How a kernel is interrupted (`interrupt_mode` in kernel.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    /// SIGINT to the kernel's process group (the default).
    Signal,
    /// `interrupt_request` on the control channel.
    Message,
}

/// What `list_kernels` shows of a kernelspec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelSpecInfo {
    pub name: String,
    pub display_name: String,
    pub language: String,
    pub interrupt_mode: InterruptMode,
}

/// A kernelspec as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    pub name: String,
    pub display_name: String,
    pub language: String,
    pub interrupt_mode: InterruptMode,
    /// The command as written; see [`KernelSpec::command`].
    pub argv: Vec<String>,
    /// Extra environment for the kernel (values with `${VAR}` expanded at launch).
    pub env: BTreeMap<String, String>,
    /// The folder holding kernel.json (Jupyter's `resource_dir`).
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct KernelJson {
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    interrupt_mode: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl KernelSpec {
    fn read(name: &str, dir: &Path) -> Option<KernelSpec> {
        let bytes = std::fs::read(dir.join("kernel.json")).ok()?;
        let json: KernelJson = match serde_json::from_slice(&bytes) {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!("skipping kernelspec {}: {e}", dir.display());
                return None;
            }
        };
        Some(KernelSpec {
            name: name.to_owned(),
            display_name: json.display_name.unwrap_or_else(|| name.to_owned()),
            language: json.language.unwrap_or_default(),
            interrupt_mode: match json.interrupt_mode.as_deref() {
                Some("message") => InterruptMode::Message,
                _ => InterruptMode::Signal,
            },
            argv: json.argv,
            env: json.env,
            dir: dir.to_owned(),
        })
    }

    pub fn info(&self) -> KernelSpecInfo {
        KernelSpecInfo {
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            language: self.language.clone(),
            interrupt_mode: self.interrupt_mode,
        }
    }

    /// The argv to launch with: `{connection_file}` and `{resource_dir}`
    /// filled in, and a bare `python`/`python3` resolved to the interpreter
    /// that owns the kernelspec (see [`KernelSpec::interpreter`]).
    pub fn command(&self, connection_file: &Path) -> Vec<String> {
        let conn = connection_file.to_string_lossy();
        let res = self.dir.to_string_lossy();
        let mut argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                a.replace("{connection_file}", &conn)
                    .replace("{resource_dir}", &res)
            })
            .collect();
        if let Some(first) = argv.first_mut()
            && let Some(python) = self.interpreter()
        {
            *first = python.to_string_lossy().into_owned();
        }
        argv
    }

    /// For a kernelspec whose argv starts with a bare `python` or `python3`
    /// (ipykernel's own), the interpreter of the prefix the kernelspec lives
    /// in: `PREFIX/share/jupyter/kernels/NAME` → `PREFIX/bin/python`. Without
    /// it the first `python` on `PATH` would run, which may lack ipykernel.
    pub fn interpreter(&self) -> Option<PathBuf> {
        let first = self.argv.first()?;
        if first != "python" && first != "python3" {
            return None;
        }
        let kernels = self.dir.parent()?;
        let jupyter = kernels.parent()?;
        let share = jupyter.parent()?;
        if kernels.file_name()? != "kernels"
            || jupyter.file_name()? != "jupyter"
            || share.file_name()? != "share"
        {
            return None;
        }
        let bin = share.parent()?.join("bin");
        [first.as_str(), "python3", "python"]
            .iter()
            .map(|n| bin.join(n))
            .find(|p| is_executable(p))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// No kernelspec by that name: what was asked, what there is, where we looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKernel {
    pub name: String,
    pub available: Vec<String>,
    pub searched: Vec<PathBuf>,
}

impl fmt::Display for UnknownKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.available.is_empty() {
            write!(
                f,
                "no kernelspec named '{}': none is installed (searched ",
                self.name
            )?;
            let dirs: Vec<String> = self
                .searched
                .iter()
                .map(|d| d.join("kernels").display().to_string())
                .collect();
            write!(
                f,
                "{}; install one with `python -m ipykernel install --user`)",
                dirs.join(", ")
            )
        } else {
            write!(
                f,
                "no kernelspec named '{}'; there are: {}",
                self.name,
                self.available.join(", ")
            )
        }
    }
}

impl std::error::Error for UnknownKernel {}

/// The kernelspecs found on a search path; the first folder holding a name wins.
#[derive(Debug, Clone, Default)]
pub struct KernelSpecs {
    specs: BTreeMap<String, KernelSpec>,
    searched: Vec<PathBuf>,
}

impl KernelSpecs {
    /// Reads every `<dir>/kernels/*/kernel.json` (unreadable ones are skipped).
    pub fn discover(dirs: &JupyterDirs) -> KernelSpecs {
        let searched = dirs.data_dirs();
        let mut specs = BTreeMap::new();
        for data_dir in &searched {
            let Ok(entries) = std::fs::read_dir(data_dir.join("kernels")) else {
                continue;
            };
            let mut found: Vec<(String, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().into_string().ok()?.to_lowercase(), e.path())))
                .collect();
            found.sort();
            for (name, dir) in found {
                if specs.contains_key(&name) {
                    continue;
                }
                if let Some(spec) = KernelSpec::read(&name, &dir) {
                    specs.insert(name, spec);
                }
            }
        }
        KernelSpecs { specs, searched }
    }

    /// Every kernelspec, by name.
    pub fn list(&self) -> Vec<KernelSpecInfo> {
        self.specs.values().map(KernelSpec::info).collect()
    }

    /// The kernelspec called `name` (names are case-insensitive, as in Jupyter).
    pub fn find(&self, name: &str) -> Result<&KernelSpec, UnknownKernel> {
        self.specs
            .get(&name.to_lowercase())
            .ok_or_else(|| UnknownKernel {
                name: name.to_owned(),
                available: self.specs.keys().cloned().collect(),
                searched: self.searched.clone(),
            })
    }

    /// The data folders searched, in order.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }
}

/// `value` with each `${NAME}` replaced by that environment variable (left
/// as is when unset), as jupyter_client expands kernelspec `env` values.
pub(crate) fn expand_env(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_spec(data_dir: &Path, name: &str, json: &str) -> PathBuf {
        let dir = data_dir.join("kernels").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kernel.json"), json).unwrap();
        dir
    }

    fn only(dirs: Vec<PathBuf>) -> JupyterDirs {
        JupyterDirs {
            jupyter_path: Some(std::env::join_paths(dirs).unwrap()),
            ..JupyterDirs::default()
        }
    }

    #[test]
    fn every_jupyter_path_entry_is_searched_and_the_first_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_spec(
            &a,
            "one",
            r#"{"argv":["x"],"display_name":"One A","language":"python"}"#,
        );
        write_spec(
            &b,
            "one",
            r#"{"argv":["x"],"display_name":"One B","language":"python"}"#,
        );
        write_spec(
            &b,
            "Two",
            r#"{"argv":["x"],"display_name":"Two","language":"r","interrupt_mode":"message"}"#,
        );
        write_spec(&b, "broken", "{not json");
        let specs = KernelSpecs::discover(&only(vec![a, b]));
        let list = specs.list();
        assert_eq!(
            list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(list[0].display_name, "One A");
        assert_eq!(list[1].interrupt_mode, InterruptMode::Message);
        assert_eq!(specs.find("TWO").map(|s| s.language.as_str()), Ok("r"));
    }

    #[test]
    fn an_unknown_name_lists_the_kernelspecs_there_are() {
        let tmp = tempfile::tempdir().unwrap();
        write_spec(
            tmp.path(),
            "python3",
            r#"{"argv":["python"],"display_name":"P","language":"python"}"#,
        );
        let specs = KernelSpecs::discover(&only(vec![tmp.path().to_owned()]));
        let err = specs.find("julia-1.10").unwrap_err();
        assert_eq!(err.available, ["python3"]);
        assert_eq!(
            err.to_string(),
            "no kernelspec named 'julia-1.10'; there are: python3"
        );
    }

    #[test]
    fn search_order_follows_jupyter() {
        let dirs = JupyterDirs {
            jupyter_path: Some("/p1:/p2::/p1".into()),
            user_data_dir: Some("/home/u/.local/share/jupyter".into()),
            python_prefixes: vec!["/venv".into()],
            prefer_env: false,
            system: vec![
                "/usr/local/share/jupyter".into(),
                "/usr/share/jupyter".into(),
            ],
        };
        let want = [
            "/p1",
            "/p2",
            "/home/u/.local/share/jupyter",
            "/venv/share/jupyter",
            "/usr/local/share/jupyter",
            "/usr/share/jupyter",
        ];
        assert_eq!(
            dirs.data_dirs(),
            want.iter().map(PathBuf::from).collect::<Vec<_>>()
        );
        let env_first = JupyterDirs {
            prefer_env: true,
            ..dirs
        };
        assert_eq!(
            env_first.data_dirs()[2],
            PathBuf::from("/venv/share/jupyter")
        );
    }

    #[test]
    fn bare_python_resolves_to_the_prefix_that_owns_the_kernelspec() {
        use std::os::unix::fs::PermissionsExt;
        let prefix = tempfile::tempdir().unwrap();
        let bin = prefix.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("python"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("python"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let data = prefix.path().join("share/jupyter");
        write_spec(
            &data,
            "py",
            r#"{"argv":["python","-m","ipykernel_launcher","-f","{connection_file}","{resource_dir}"],"display_name":"P","language":"python"}"#,
        );
        let specs = KernelSpecs::discover(&JupyterDirs {
            python_prefixes: vec![prefix.path().to_owned()],
            ..JupyterDirs::default()
        });
        let spec = specs.find("py").unwrap();
        let argv = spec.command(Path::new("/data/k.json"));
        assert_eq!(argv[0], bin.join("python").to_string_lossy());
        assert_eq!(argv[4], "/data/k.json");
        assert_eq!(argv[5], spec.dir.to_string_lossy());
    }

    #[test]
    fn a_kernelspec_outside_a_prefix_keeps_its_argv() {
        let tmp = tempfile::tempdir().unwrap();
        write_spec(
            tmp.path(),
            "py",
            r#"{"argv":["python","-f","{connection_file}"],"display_name":"P","language":"python"}"#,
        );
        let specs = KernelSpecs::discover(&only(vec![tmp.path().to_owned()]));
        assert_eq!(
            specs.find("py").unwrap().command(Path::new("/c.json")),
            ["python", "-f", "/c.json"]
        );
    }

    #[test]
    fn env_values_expand_variables() {
        let look = |k: &str| (k == "HOME").then(|| "/h".to_owned());
        assert_eq!(
            expand_env("${HOME}/lib:${NOPE}:$X${", look),
            "/h/lib:${NOPE}:$X${"
        );
    }
}
