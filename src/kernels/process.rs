//! Kernel processes: launching one with a fresh connection file, signalling
//! its process group, stopping it, and cleaning up kernels a crashed owner
//! left behind.
//!
//! Each kernel has three files in the data folder, named by a random id:
//! `kernel-ID.json` (connection info with the HMAC key), `kernel-ID.pid`
//! (what an orphan sweep needs) and `kernel-ID.log` (the kernel's stdout
//! and stderr, so a failed start can say why). All are mode 0600; the key
//! never reaches the log.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use jupyter_protocol::{ConnectionInfo, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::KernelError;
use super::spec::{KernelSpec, expand_env};

/// What the pid file records: enough to find and safely kill an orphan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidRecord {
    pub id: String,
    /// The kernel's pid, which is also its process group id.
    pub pid: i32,
    /// Who asked for it (a notebook path).
    pub key: String,
    pub kernel_name: String,
    pub connection_file: PathBuf,
    /// The process that launched it.
    pub owner_pid: u32,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
}

/// A launched kernel process. Dropping it kills the process group if it
/// is still there and removes its files, so a kernel never outlives its
/// owner's handle except when the owner itself dies (then see
/// [`clean_orphans`]).
#[derive(Debug)]
pub struct KernelProcess {
    pub record: PidRecord,
    pub connection: ConnectionInfo,
    log_file: PathBuf,
    pid_file: PathBuf,
    exit: watch::Receiver<Option<String>>,
}

/// Ids of kernels this process runs, so an orphan sweep never takes them.
fn live_ids() -> &'static Mutex<HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

impl KernelProcess {
    /// Writes a fresh connection file (random free ports on 127.0.0.1, a
    /// random key) and the pid file into `data_dir`, and starts the kernel
    /// in `cwd` in its own process group, stdin closed, stdout and stderr
    /// into its log file.
    pub async fn launch(
        spec: &KernelSpec,
        data_dir: &Path,
        cwd: &Path,
        key: &str,
    ) -> Result<KernelProcess, KernelError> {
        let fail = |reason: String| KernelError::StartFailed {
            kernel_name: spec.name.clone(),
            reason,
            stderr_tail: String::new(),
        };
        if spec.argv.is_empty() {
            return Err(fail("its kernelspec has an empty argv".into()));
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", data_dir.display())))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let connection_file = data_dir.join(format!("kernel-{id}.json"));
        let pid_file = data_dir.join(format!("kernel-{id}.pid"));
        let log_file = data_dir.join(format!("kernel-{id}.log"));

        // The listeners hold the ports until the kernel is spawned, so no
        // other process (or concurrent launch) takes them in between.
        let (ports, listeners) =
            jupyter_zmq_client::peek_ports_with_listeners(IpAddr::V4(Ipv4Addr::LOCALHOST), 5)
                .await
                .map_err(|e| fail(format!("no free ports: {e}")))?;
        let connection = ConnectionInfo {
            ip: "127.0.0.1".into(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some(spec.name.clone()),
        };
        let write_json = |path: &Path, json: Vec<u8>| -> std::io::Result<()> {
            let mut f = private_file(path)?;
            f.write_all(&json)?;
            f.sync_all()
        };
        let conn_json = serde_json::to_vec_pretty(&connection).unwrap_or_default();
        write_json(&connection_file, conn_json)
            .map_err(|e| fail(format!("cannot write {}: {e}", connection_file.display())))?;
        let log = private_file(&log_file)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| fail(format!("cannot create {}: {e}", log_file.display())))?;

        let argv = spec.command(&connection_file);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.0))
            .stderr(Stdio::from(log.1))
            .process_group(0)
            // ipykernel exits by itself when this process goes away.
            .env("JPY_PARENT_PID", std::process::id().to_string());
        for (k, v) in &spec.env {
            cmd.env(k, expand_env(v, |name| std::env::var(name).ok()));
        }
        let spawned = cmd.spawn();
        drop(listeners);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&connection_file);
                let _ = std::fs::remove_file(&log_file);
                return Err(fail(format!("cannot run {}: {e}", argv[0])));
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        let record = PidRecord {
            id: id.clone(),
            pid,
            key: key.to_owned(),
            kernel_name: spec.name.clone(),
            connection_file: connection_file.clone(),
            owner_pid: std::process::id(),
            started_at_ms: now_ms(),
        };
        if let Ok(mut live) = live_ids().lock() {
            live.insert(id);
        }
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("lost: {e}"),
            };
            let _ = tx.send(Some(how));
        });
        let process = KernelProcess {
            record,
            connection,
            log_file,
            pid_file,
            exit,
        };
        let record_json = serde_json::to_vec_pretty(&process.record).unwrap_or_default();
        if let Err(e) = write_json(&process.pid_file, record_json) {
            // Without a pid file a crash would leave an orphan nobody finds.
            return Err(fail(format!(
                "cannot write {}: {e}",
                process.pid_file.display()
            )));
        }
        Ok(process)
    }

    pub fn pid(&self) -> i32 {
        self.record.pid
    }

    /// How the process exited (`exit status: 1`, `signal: 9 (SIGKILL)`), or
    /// `None` while it runs.
    pub fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Waits until the process exits; returns how.
    pub async fn wait_exit(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(how) => how.clone().unwrap_or_default(),
            Err(_) => "lost".into(),
        }
    }

    /// A handle that resolves when the process exits, for `select!`.
    pub fn exit_watch(&self) -> watch::Receiver<Option<String>> {
        self.exit.clone()
    }

    /// Sends `signal` to the kernel's whole process group (its children too).
    pub fn signal(&self, signal: i32) -> bool {
        signal_group(self.record.pid, signal)
    }

    /// The end of the kernel's stdout and stderr (about the last 4 KiB,
    /// from a line start), for a start-up failure.
    pub fn output_tail(&self) -> String {
        tail_of(&self.log_file, 4096)
    }

    /// SIGTERM to the group, then SIGKILL if it has not exited after
    /// `grace`. Returns how it exited.
    pub async fn terminate(&self, grace: Duration) -> String {
        if let Some(how) = self.exited() {
            self.signal(libc::SIGKILL); // children it may have left
            return how;
        }
        self.signal(libc::SIGTERM);
        if let Ok(how) = tokio::time::timeout(grace, self.wait_exit()).await {
            self.signal(libc::SIGKILL);
            return how;
        }
        self.signal(libc::SIGKILL);
        tokio::time::timeout(Duration::from_secs(5), self.wait_exit())
            .await
            .unwrap_or_else(|_| "did not exit after SIGKILL".into())
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        // Whatever is left of the group goes with its handle.
        self.signal(libc::SIGKILL);
        for f in [&self.record.connection_file, &self.pid_file, &self.log_file] {
            let _ = std::fs::remove_file(f);
        }
        if let Ok(mut live) = live_ids().lock() {
            live.remove(&self.record.id);
        }
    }
}

/// Keeps a process alive across a simulated crash in tests: its handle is
/// leaked, so nothing kills it or removes its files.
#[doc(hidden)]
pub fn leak_for_test(process: KernelProcess) -> PidRecord {
    let record = process.record.clone();
    if let Ok(mut live) = live_ids().lock() {
        live.remove(&record.id);
    }
    std::mem::forget(process);
    record
}

/// `kill(-pgid, signal)`, refusing the pids that would hit more than one
/// kernel's group (0, 1 and negatives).
pub fn signal_group(pgid: i32, signal: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill has no memory effects; a negative pid names a group.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

fn tail_of(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = f.take(max).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match (start > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_owned(),
        _ => text,
    }
}

/// A kernel a crashed owner left behind, as [`clean_orphans`] found it.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    pub pid: i32,
    pub key: String,
    pub kernel_name: String,
    /// Whether it was still running and was killed (else only its files were stale).
    pub killed: bool,
}

/// Kills the kernels whose pid files are in `data_dir` but whose owner is
/// gone, and removes their files. A kernel of a live owner (another
/// process, or this one) is left alone, and a pid whose command line does
/// not name its connection file is a reused pid and is never signalled.
pub async fn clean_orphans(data_dir: &Path) -> Vec<Orphan> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let live = live_ids().lock().map(|l| l.clone()).unwrap_or_default();
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let Some(record) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<PidRecord>(&b).ok())
        else {
            continue;
        };
        let ours = record.owner_pid == std::process::id();
        if live.contains(&record.id) || (!ours && process_alive(record.owner_pid as i32)) {
            continue;
        }
        let running = is_kernel(&record);
        if running {
            signal_group(record.pid, libc::SIGTERM);
        }
        found.push((record, running, path));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while found.iter().any(|(r, running, _)| *running && is_kernel(r))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut orphans = Vec::new();
    for (record, running, pid_file) in found {
        if running {
            signal_group(record.pid, libc::SIGKILL);
        }
        let log = record.connection_file.with_extension("log");
        for f in [&record.connection_file, &pid_file, &log] {
            let _ = std::fs::remove_file(f);
        }
        tracing::info!(pid = record.pid, key = %record.key, killed = running, "orphaned kernel cleaned");
        orphans.push(Orphan {
            pid: record.pid,
            key: record.key,
            kernel_name: record.kernel_name,
            killed: running,
        });
    }
    orphans
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the pid exists.
    pid > 1 && unsafe { libc::kill(pid, 0) == 0 } && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether `record.pid` is still that kernel: alive, and its command line
/// names its connection file (so a reused pid is never killed).
fn is_kernel(record: &PidRecord) -> bool {
    if !process_alive(record.pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", record.pid)) else {
        return false;
    };
    let wanted = record.connection_file.to_string_lossy();
    cmdline
        .split(|&b| b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(wanted.as_ref()))
}
