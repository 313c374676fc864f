//! The kernels of a store owner, one per notebook path.
//!
//! A kernel starts on the first run for its notebook, from a kernelspec
//! name, in the notebook's folder; later runs queue on it whatever name
//! they carry (only a restart changes the kernelspec). Calls for one
//! notebook take its slot in turn (a fair lock), so runs submitted from
//! several tasks keep the order in which they called.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::KernelError;
use super::kernel::{Kernel, KernelOptions, KernelPlace, KernelState, KernelStatus};
use super::process::{Orphan, clean_orphans};
use super::run::{RunHandle, RunRequest};
use super::spec::{JupyterDirs, KernelSpec, KernelSpecInfo, KernelSpecs};

/// How a manager finds kernelspecs, where it keeps kernel files, and the
/// options of each kernel.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Folder for connection, pid and log files (the store's data folder
    /// or a sub-folder of it).
    pub data_dir: PathBuf,
    pub dirs: JupyterDirs,
    pub options: KernelOptions,
}

/// A kernel in [`KernelManager::list`].
#[derive(Debug, Clone)]
pub struct KernelEntry {
    pub notebook: PathBuf,
    pub status: KernelStatus,
}

/// The answer to [`KernelManager::run`]: which kernel took the run and how
/// many runs were ahead of it.
#[derive(Debug, Clone)]
pub struct RunAccepted {
    pub kernel_name: String,
    /// Queued runs plus the running one ahead of this run when it was queued.
    pub ahead: usize,
    /// Whether this call started the kernel.
    pub started: bool,
    /// The run's place in its kernel's queue order (1, 2, 3…): runs execute
    /// in this order.
    pub seq: u64,
}

/// One notebook's kernel. `turn` orders the calls that start, queue on
/// or restart it; `kernel` can be read without waiting for a turn (list,
/// interrupt).
#[derive(Debug, Default)]
struct SlotInner {
    turn: Mutex<()>,
    kernel: parking_lot::Mutex<Option<Kernel>>,
}

type Slot = Arc<SlotInner>;

impl SlotInner {
    fn current(&self) -> Option<Kernel> {
        self.kernel.lock().clone().filter(Kernel::is_open)
    }
}

/// Owns the kernels by notebook path.
#[derive(Debug)]
pub struct KernelManager {
    config: ManagerConfig,
    slots: parking_lot::Mutex<HashMap<PathBuf, Slot>>,
}

impl KernelManager {
    pub fn new(config: ManagerConfig) -> KernelManager {
        KernelManager {
            config,
            slots: Default::default(),
        }
    }

    /// The kernelspecs there are now (the folders are read on each call, as
    /// Jupyter does, so a kernel installed while we run is found).
    pub fn kernelspecs(&self) -> Vec<KernelSpecInfo> {
        KernelSpecs::discover(&self.config.dirs).list()
    }

    /// The kernelspec called `name`, or the list of those there are.
    pub fn find_spec(&self, name: &str) -> Result<KernelSpec, KernelError> {
        Ok(KernelSpecs::discover(&self.config.dirs).find(name)?.clone())
    }

    /// Kills kernels left by a crashed owner (their pid files are in the
    /// data folder). Call at start-up, before the first run.
    pub async fn clean_orphans(&self) -> Vec<Orphan> {
        clean_orphans(&self.config.data_dir).await
    }

    fn slot(&self, notebook: &Path) -> Slot {
        self.slots
            .lock()
            .entry(notebook.to_owned())
            .or_default()
            .clone()
    }

    fn place(&self, notebook: &Path) -> KernelPlace {
        let cwd = match notebook.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        KernelPlace {
            data_dir: self.config.data_dir.clone(),
            cwd,
            key: notebook.to_string_lossy().into_owned(),
        }
    }

    async fn start(&self, notebook: &Path, kernel_name: &str) -> Result<Kernel, KernelError> {
        let spec = self.find_spec(kernel_name)?;
        Kernel::start(spec, self.place(notebook), self.config.options.clone()).await
    }

    /// Queues `run` on the notebook's kernel, starting it from
    /// `kernel_name` if there is none (or it died). Errors: the kernelspec
    /// is unknown, or the kernel failed to start (with its stderr).
    pub async fn run(
        &self,
        notebook: &Path,
        kernel_name: &str,
        run: RunRequest,
    ) -> Result<RunAccepted, KernelError> {
        let slot = self.slot(notebook);
        let _turn = slot.turn.lock().await;
        let mut started = false;
        let kernel = match slot.current() {
            Some(k) if k.status().state == KernelState::Dead => {
                // Restarted here rather than by the run, so a failure to
                // start is this call's error.
                k.restart(None).await?;
                started = true;
                k
            }
            Some(k) => k,
            None => {
                let k = self.start(notebook, kernel_name).await?;
                *slot.kernel.lock() = Some(k.clone());
                started = true;
                k
            }
        };
        let status = kernel.status();
        let ahead = status.queued + usize::from(status.running.is_some());
        let seq = kernel
            .submit(run)
            .map_err(|_| KernelError::NotRunning(notebook.to_owned()))?;
        Ok(RunAccepted {
            kernel_name: status.kernel_name,
            ahead,
            started,
            seq,
        })
    }

    /// Starts the notebook's kernel from `kernel_name` unless one runs
    /// (a dead one is restarted), so a failure to start can refuse a call
    /// before it accepts any run.
    pub async fn ensure(
        &self,
        notebook: &Path,
        kernel_name: &str,
    ) -> Result<KernelStatus, KernelError> {
        let slot = self.slot(notebook);
        let _turn = slot.turn.lock().await;
        let kernel = match slot.current() {
            Some(k) if k.status().state == KernelState::Dead => {
                k.restart(None).await?;
                k
            }
            Some(k) => k,
            None => {
                let k = self.start(notebook, kernel_name).await?;
                *slot.kernel.lock() = Some(k.clone());
                k
            }
        };
        Ok(kernel.status())
    }

    /// The notebook's kernel's status, if one is open.
    pub fn status(&self, notebook: &Path) -> Option<KernelStatus> {
        let slot = self.slots.lock().get(notebook).cloned()?;
        Some(slot.current()?.status())
    }

    /// [`KernelManager::run`] with a fresh run id and a [`RunHandle`] to follow it.
    pub async fn run_code(
        &self,
        notebook: &Path,
        kernel_name: &str,
        code: impl Into<String>,
    ) -> Result<RunHandle, KernelError> {
        let (request, handle) = RunRequest::channel(code);
        self.run(notebook, kernel_name, request).await?;
        Ok(handle)
    }

    fn open(&self, notebook: &Path) -> Result<Slot, KernelError> {
        self.slots
            .lock()
            .get(notebook)
            .cloned()
            .ok_or_else(|| KernelError::NotRunning(notebook.to_owned()))
    }

    /// Interrupts the notebook's running run; returns its id (`None` when
    /// nothing was running). It does not wait for a turn: an interrupt
    /// must not queue behind a caller starting or restarting the kernel.
    pub async fn interrupt(&self, notebook: &Path) -> Result<Option<String>, KernelError> {
        let kernel = self
            .open(notebook)?
            .current()
            .ok_or_else(|| KernelError::NotRunning(notebook.to_owned()))?;
        Ok(kernel.interrupt().await)
    }

    /// Restarts the notebook's kernel, with another kernelspec if
    /// `kernel_name` is given (then it also starts one if none runs).
    pub async fn restart(
        &self,
        notebook: &Path,
        kernel_name: Option<&str>,
    ) -> Result<KernelStatus, KernelError> {
        let spec = kernel_name.map(|n| self.find_spec(n)).transpose()?;
        let slot = self.slot(notebook);
        let _turn = slot.turn.lock().await;
        let kernel = match (slot.current(), spec) {
            (Some(k), spec) => {
                k.restart(spec).await?;
                k
            }
            (None, Some(spec)) => {
                let k =
                    Kernel::start(spec, self.place(notebook), self.config.options.clone()).await?;
                *slot.kernel.lock() = Some(k.clone());
                k
            }
            (None, None) => return Err(KernelError::NotRunning(notebook.to_owned())),
        };
        Ok(kernel.status())
    }

    /// Shuts the notebook's kernel down; returns the ids of the runs that
    /// ended (the running one `interrupted`, queued ones `aborted`).
    pub async fn shutdown(&self, notebook: &Path) -> Result<Vec<String>, KernelError> {
        let slot = self.open(notebook)?;
        let _turn = slot.turn.lock().await;
        let kernel = slot.kernel.lock().take();
        self.slots.lock().remove(notebook);
        match kernel.filter(Kernel::is_open) {
            Some(k) => Ok(k.shutdown().await),
            None => Err(KernelError::NotRunning(notebook.to_owned())),
        }
    }

    /// The kernel of the notebook at `from` (if any) now belongs to the
    /// notebook at `to`: a renamed notebook keeps its kernel and variables.
    pub fn rekey(&self, from: &Path, to: &Path) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.remove(from) {
            slots.insert(to.to_owned(), slot);
        }
    }

    /// Every kernel not shut down, by notebook path.
    pub fn list(&self) -> Vec<KernelEntry> {
        let slots: Vec<(PathBuf, Slot)> = self
            .slots
            .lock()
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        let mut entries: Vec<KernelEntry> = slots
            .into_iter()
            .filter_map(|(notebook, slot)| {
                let status = slot.current()?.status();
                (status.state != KernelState::Stopped).then_some(KernelEntry { notebook, status })
            })
            .collect();
        entries.sort_by(|a, b| a.notebook.cmp(&b.notebook));
        entries
    }

    /// Shuts every kernel down at once (each ladder waits on its own), for
    /// a clean stop of the owner.
    pub async fn shutdown_all(&self) {
        let slots: Vec<Slot> = self.slots.lock().drain().map(|(_, s)| s).collect();
        let mut stops = tokio::task::JoinSet::new();
        for slot in slots {
            if let Some(kernel) = slot.kernel.lock().take() {
                stops.spawn(async move { kernel.shutdown().await });
            }
        }
        while stops.join_next().await.is_some() {}
    }
}
