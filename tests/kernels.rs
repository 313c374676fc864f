//! The kernel room against real ipykernel 7.4.0 kernels.
//!
//! `tests/kernel/setup.sh` installs them into a virtualenv at
//! `target/kernelenv` (or `$NBLEDGER_KERNELENV`) on first use. These tests
//! never skip: without Python 3 and pip they fail and say how to set up.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nbledger::kernels::{
    JupyterDirs, KernelError, KernelManager, KernelOptions, KernelProcess, KernelSpecs,
    KernelState, ManagerConfig, RunEnd, RunEvent, RunHandle, RunRequest, RunStatus, clean_orphans,
    process, strip_ansi,
};
use serde_json::{Value, json};

/// A guard against a hang, not a timing assertion: every run here ends in
/// seconds, and a broken one should fail instead of blocking the suite.
const HANG: Duration = Duration::from_secs(180);

fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = std::process::Command::new("bash")
            .arg(repo.join("tests/kernel/setup.sh"))
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "tests/kernel/setup.sh failed ({status:?}): the kernel tests need Python 3.10+ with \
             venv and pip (python3, or set PYTHON) to install ipykernel into target/kernelenv; \
             on Debian/Ubuntu: apt-get install python3-venv python3-pip"
        );
        let venv = std::env::var_os("NBLEDGER_KERNELENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/kernelenv"));
        assert!(
            venv.join("share/jupyter/kernels/python3/kernel.json")
                .is_file(),
            "no python3 kernelspec in {}: run tests/kernel/setup.sh",
            venv.display()
        );
        venv
    })
}

fn dirs(extra: &[&Path]) -> JupyterDirs {
    let mut path: Vec<PathBuf> = extra.iter().map(|p| p.to_path_buf()).collect();
    path.push(venv().join("share/jupyter"));
    JupyterDirs {
        jupyter_path: Some(std::env::join_paths(path).expect("paths without ':'")),
        ..JupyterDirs::default()
    }
}

/// Kernels running at once across this file's tests. Each test starts one
/// or two Python processes; all of them at once on a two-core machine
/// starve the kernels' start-up and heartbeats, which tests nothing.
const KERNEL_SLOTS: usize = 3;

static SLOTS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

/// A place among [`KERNEL_SLOTS`], held for a test's whole run.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= KERNEL_SLOTS {
            used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

struct Bench {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manager: KernelManager,
    notebook: PathBuf,
    /// Last, so it is freed after the manager's kernels are gone.
    _slot: Slot,
}

fn bench_with(options: KernelOptions, extra: &[&Path]) -> Bench {
    let slot = Slot::take();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_owned();
    std::fs::create_dir_all(root.join("nb")).expect("notebook folder");
    let manager = KernelManager::new(ManagerConfig {
        data_dir: root.join("data/kernels"),
        dirs: dirs(extra),
        options,
    });
    Bench {
        _slot: slot,
        notebook: root.join("nb/test.ipynb"),
        _tmp: tmp,
        root,
        manager,
    }
}

fn bench() -> Bench {
    bench_with(KernelOptions::default(), &[])
}

impl Bench {
    async fn submit(&self, code: &str) -> RunHandle {
        self.manager
            .run_code(&self.notebook, "python3", code)
            .await
            .expect("the python3 kernel starts")
    }

    async fn run(&self, code: &str) -> RunEnd {
        let end = finish(self.submit(code).await).await;
        assert!(end.status.is_final());
        end
    }
}

async fn finish(handle: RunHandle) -> RunEnd {
    match handle.finish_within(HANG).await {
        Ok(end) => end,
        Err(h) => panic!("run {} did not finish", h.id),
    }
}

/// Waits until the run has been sent to the kernel.
async fn started(handle: &mut RunHandle) {
    while let Some(event) = tokio::time::timeout(HANG, handle.next())
        .await
        .expect("no hang")
    {
        if matches!(event, RunEvent::Started { .. }) {
            return;
        }
    }
    panic!("the run ended before it started");
}

fn text(output: &Value) -> String {
    nbledger::ipynb::join_multiline(&output["text"]).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernelspecs_are_found_through_every_jupyter_path_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let spec_dir = other.join("kernels/extra");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(
        spec_dir.join("kernel.json"),
        r#"{"argv":["x","{connection_file}"],"display_name":"Extra","language":"r","interrupt_mode":"message"}"#,
    )
    .unwrap();
    let specs = KernelSpecs::discover(&dirs(&[&tmp.path().join("empty"), &other]));
    let names: Vec<String> = specs.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["extra", "python3", "python3-bare"]);
    let python = specs.find("python3").unwrap();
    assert_eq!(
        (python.display_name.as_str(), python.language.as_str()),
        ("Python 3 (ipykernel)", "python")
    );

    // By the Python-prefix rule alone, too.
    let by_prefix = KernelSpecs::discover(&JupyterDirs {
        python_prefixes: vec![venv().to_owned()],
        ..JupyterDirs::default()
    });
    assert!(by_prefix.find("python3").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kernelspec_lists_those_there_are() {
    let b = bench();
    let (request, _handle) = RunRequest::channel("1");
    let err = b
        .manager
        .run(&b.notebook, "julia-9", request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
    let KernelError::UnknownKernel(unknown) = err else {
        panic!("{err}")
    };
    assert_eq!(unknown.available, ["python3", "python3-bare"]);
    assert!(
        unknown
            .to_string()
            .contains("there are: python3, python3-bare")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_python_kernelspec_runs_the_interpreter_that_owns_it() {
    let b = bench();
    let handle = b
        .manager
        .run_code(
            &b.notebook,
            "python3-bare",
            "import sys, os; print(sys.prefix); print(os.getcwd())",
        )
        .await
        .expect("the bare kernelspec starts on the venv's python");
    let end = finish(handle).await;
    assert_eq!(end.status, RunStatus::Ok);
    let printed = text(&end.outputs[0]);
    let mut lines = printed.lines();
    assert_eq!(
        Path::new(lines.next().unwrap_or("")).canonicalize().ok(),
        venv().canonicalize().ok()
    );
    // The kernel runs in the notebook's folder.
    assert_eq!(
        Path::new(lines.next().unwrap_or("")).canonicalize().ok(),
        b.root.join("nb").canonicalize().ok()
    );
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_execute_result_come_back_as_nbformat_outputs() {
    let b = bench();
    let end = b
        .run("import sys\nprint('a')\nprint('b')\nsys.stderr.write('warn\\n')\n40 + 2")
        .await;
    assert_eq!(end.status, RunStatus::Ok);
    assert_eq!(end.execution_count, Some(1));
    assert_eq!(end.outputs.len(), 3, "{:?}", end.outputs);
    assert_eq!(
        end.outputs[0],
        json!({"name": "stdout", "output_type": "stream", "text": ["a\n", "b\n"]})
    );
    assert_eq!(end.outputs[1]["name"], "stderr");
    assert_eq!(
        end.outputs[2],
        json!({"data": {"text/plain": ["42"]}, "execution_count": 1, "metadata": {}, "output_type": "execute_result"})
    );
    assert!(end.duration.is_some());
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_data_carries_an_image() {
    let b = bench();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let code = format!(
        "from IPython.display import display, Image\nimport base64\ndisplay(Image(data=base64.b64decode('{png}')))"
    );
    let end = b.run(&code).await;
    assert_eq!(end.status, RunStatus::Ok);
    let out = &end.outputs[0];
    assert_eq!(out["output_type"], "display_data");
    assert_eq!(
        out["data"]["image/png"].as_str().map(str::trim_end),
        Some(png)
    );
    assert!(out["data"]["text/plain"].is_array());
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_ends_the_run_with_its_traceback() {
    let b = bench();
    let end = b.run("def f():\n    return 1/0\nf()").await;
    assert_eq!(end.status, RunStatus::Error);
    let err = &end.outputs[0];
    assert_eq!(
        (err["output_type"].as_str(), err["ename"].as_str()),
        (Some("error"), Some("ZeroDivisionError"))
    );
    let traceback: Vec<&str> = err["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let joined = traceback.join("\n");
    assert!(
        joined.contains('\u{1b}'),
        "the file keeps ANSI colours: {joined}"
    );
    let plain = strip_ansi(&joined);
    assert!(
        !plain.contains('\u{1b}') && plain.contains("ZeroDivisionError"),
        "{plain}"
    );
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_output_wait_and_update_display_data_behave_as_in_jupyter() {
    let b = bench();
    let code = "from IPython.display import display, clear_output\n\
                for i in range(5):\n    clear_output(wait=True)\n    print(f'step {i}')\n\
                h = display('0%', display_id=True)\n\
                for p in (10, 50, 100):\n    h.update(f'{p}%')\n";
    let end = b.run(code).await;
    assert_eq!(end.status, RunStatus::Ok);
    assert_eq!(end.outputs.len(), 2, "{:?}", end.outputs);
    assert_eq!(text(&end.outputs[0]), "step 4\n");
    assert_eq!(end.outputs[1]["data"]["text/plain"], json!(["'100%'"]));
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_bar_of_many_ticks_stays_one_small_output() {
    let b = bench();
    let code = "import sys\nfor i in range(3000):\n    sys.stderr.write(f'\\r{i:5d}/3000 ' + '#' * (i // 300))\n    sys.stderr.flush()\nsys.stderr.write('\\n');";
    let end = b.run(code).await;
    assert_eq!(end.status, RunStatus::Ok);
    assert_eq!(end.outputs.len(), 1, "{:?}", end.outputs);
    assert_eq!(
        text(&end.outputs[0]),
        format!(" 2999/3000 {}\n", "#".repeat(9))
    );
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_fails_at_once_with_the_kernels_error() {
    let b = bench();
    let end = b.run("input('name? ')").await;
    assert_eq!(end.status, RunStatus::Error);
    assert_eq!(
        end.outputs.last().map(|o| o["ename"].clone()),
        Some(json!("StdinNotImplementedError"))
    );
    b.manager.shutdown_all().await;
}

/// Runs a long sleep on `kernel_name`, interrupts it, and checks the run
/// queued behind it still runs.
async fn interrupt_a_long_sleep(b: &Bench, kernel_name: &str) {
    let submit = |code: &'static str| b.manager.run_code(&b.notebook, kernel_name, code);
    let mut sleeping = submit("import time\nprint('going to sleep', flush=True)\ntime.sleep(60)")
        .await
        .expect("the kernel starts");
    let after = submit("'after'").await.expect("queued");
    started(&mut sleeping).await;
    // SIGINT before Python installed its handler would kill a kernel; the
    // print proves the code is running.
    loop {
        match tokio::time::timeout(HANG, sleeping.next())
            .await
            .expect("no hang")
        {
            Some(RunEvent::Outputs(_)) => break,
            Some(_) => continue,
            None => panic!("ended before its first output"),
        }
    }
    let interrupted = b.manager.interrupt(&b.notebook).await.unwrap();
    assert_eq!(interrupted.as_deref(), Some(sleeping.id.as_str()));
    let end = finish(sleeping).await;
    assert_eq!(end.status, RunStatus::Interrupted);
    assert_eq!(
        end.outputs.last().map(|o| o["ename"].clone()),
        Some(json!("KeyboardInterrupt"))
    );
    assert_eq!(finish(after).await.status, RunStatus::Ok);
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_by_signal_stops_a_long_sleep_and_the_queue_goes_on() {
    interrupt_a_long_sleep(&bench(), "python3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_by_message_on_the_control_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kernels/py-message");
    std::fs::create_dir_all(&dir).unwrap();
    let mut spec: Value = serde_json::from_slice(
        &std::fs::read(venv().join("share/jupyter/kernels/python3/kernel.json")).unwrap(),
    )
    .unwrap();
    spec["interrupt_mode"] = json!("message");
    std::fs::write(dir.join("kernel.json"), spec.to_string()).unwrap();
    let b = bench_with(KernelOptions::default(), &[tmp.path()]);
    interrupt_a_long_sleep(&b, "py-message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_forgets_the_kernels_state() {
    let b = bench();
    assert_eq!(b.run("x = 41").await.status, RunStatus::Ok);
    assert_eq!(
        b.run("x + 1").await.outputs[0]["data"]["text/plain"],
        json!(["42"])
    );
    let listed = b.manager.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status.execution_count, Some(2));
    let status = b.manager.restart(&b.notebook, None).await.unwrap();
    assert_eq!(status.state, KernelState::Idle);
    let end = b.run("x").await;
    assert_eq!(end.status, RunStatus::Error);
    assert_eq!(end.outputs[0]["ename"], "NameError");
    assert_eq!(end.execution_count, Some(1));
    b.manager.shutdown_all().await;
    assert!(b.manager.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_ends_the_run_kernel_died_and_aborts_the_queue() {
    let b = bench();
    let crash = b.submit("import os\nos._exit(1)").await;
    let queued = b.submit("'never'").await;
    let end = finish(crash).await;
    assert_eq!(end.status, RunStatus::KernelDied);
    assert!(end.reason.unwrap_or_default().contains("exited"));
    let end = finish(queued).await;
    assert_eq!(end.status, RunStatus::Aborted);
    assert!(end.started_at.is_none());
    // The next run starts a fresh kernel.
    let end = b.run("'alive'").await;
    assert_eq!(end.status, RunStatus::Ok);
    assert_eq!(end.execution_count, Some(1));
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_kernel_is_declared_dead_by_its_heartbeat() {
    let options = KernelOptions {
        heartbeat: nbledger::kernels::Heartbeat {
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(700),
            misses: 3,
        },
        ..KernelOptions::default()
    };
    let b = bench_with(options, &[]);
    let end = b
        .run("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)")
        .await;
    assert_eq!(end.status, RunStatus::KernelDied);
    assert!(end.reason.unwrap_or_default().contains("heartbeat"));
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_that_fails_to_start_reports_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_dir = tmp.path().join("kernels/broken");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let python = venv().join("bin/python");
    let spec = json!({
        "argv": [python, "-c", "import sys; sys.stderr.write('boom: no kernel here\\n'); sys.exit(3)", "{connection_file}"],
        "display_name": "Broken", "language": "python"
    });
    std::fs::write(spec_dir.join("kernel.json"), spec.to_string()).unwrap();
    let b = bench_with(KernelOptions::default(), &[tmp.path()]);
    let (request, _handle) = RunRequest::channel("1");
    let err = b
        .manager
        .run(&b.notebook, "broken", request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable");
    let KernelError::StartFailed {
        stderr_tail,
        reason,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(stderr_tail.contains("boom: no kernel here"), "{err}");
    assert!(reason.contains("exited"), "{reason}");
    assert!(err.to_string().contains("boom"));
    assert!(b.manager.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_past_8_mib_keeps_head_and_tail() {
    let b = bench();
    let code = "import sys\nfor i in range(10 * 1024):\n    sys.stdout.write(f'{i:07d} ' + 'x' * 1015 + '\\n')\n";
    let end = b.run(code).await;
    assert_eq!(end.status, RunStatus::Ok);
    assert!(end.truncated);
    assert_eq!(end.outputs.len(), 1);
    let out = text(&end.outputs[0]);
    assert!(out.starts_with("0000000 xxx"), "{}", &out[..40]);
    assert!(out.ends_with(&format!("{:07} {}\n", 10 * 1024 - 1, "x".repeat(1015))));
    assert!(out.contains("bytes of output dropped"));
    assert!(out.len() <= 2 * 1024 * 1024 + 200, "{}", out.len());
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_several_tasks_execute_in_queue_order() {
    let b = std::sync::Arc::new(bench());
    b.run("order = []").await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..12 {
        let b = b.clone();
        tasks.spawn(async move {
            let (request, handle) = RunRequest::channel(format!("order.append({task})"));
            let accepted = b
                .manager
                .run(&b.notebook, "python3", request)
                .await
                .unwrap();
            (accepted.seq, task, handle)
        });
    }
    let mut submitted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        submitted.push(joined.unwrap());
    }
    submitted.sort_by_key(|(seq, _, _)| *seq);
    let want: Vec<i64> = submitted.iter().map(|(_, task, _)| *task).collect();
    for (_, _, handle) in submitted {
        assert_eq!(finish(handle).await.status, RunStatus::Ok);
    }
    let end = b.run("order").await;
    let got: Vec<i64> = serde_json::from_str(
        end.outputs[0]["data"]["text/plain"][0]
            .as_str()
            .unwrap_or("[]"),
    )
    .unwrap();
    assert_eq!(got, want);
    b.manager.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_the_running_run_and_aborts_the_queue() {
    let b = bench();
    let mut running = b.submit("import time\ntime.sleep(60)").await;
    let queued = b.submit("1").await;
    started(&mut running).await;
    let ended = b.manager.shutdown(&b.notebook).await.unwrap();
    assert_eq!(ended, [running.id.clone(), queued.id.clone()]);
    assert_eq!(finish(running).await.status, RunStatus::Interrupted);
    assert_eq!(finish(queued).await.status, RunStatus::Aborted);
    assert!(b.manager.list().is_empty());
    assert!(matches!(
        b.manager.shutdown(&b.notebook).await,
        Err(KernelError::NotRunning(_))
    ));
    let leftovers: Vec<_> = std::fs::read_dir(b.root.join("data/kernels"))
        .unwrap()
        .collect();
    assert!(
        leftovers.is_empty(),
        "connection, pid and log files are removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_left_by_a_crashed_owner_are_killed_from_their_pid_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let specs = KernelSpecs::discover(&dirs(&[]));
    let spec = specs.find("python3").unwrap();
    let kernel = KernelProcess::launch(spec, &data, tmp.path(), "/nb/orphan.ipynb")
        .await
        .unwrap();
    let pid_file = data.join(format!("kernel-{}.pid", kernel.record.id));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pid_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let conn_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&kernel.record.connection_file)
            .unwrap()
            .permissions(),
    );
    assert_eq!(conn_mode & 0o777, 0o600);
    // The owner "crashes": nothing kills the kernel or removes its files.
    let record = process::leak_for_test(kernel);
    let orphans = clean_orphans(&data).await;
    assert_eq!(orphans.len(), 1);
    assert_eq!((orphans[0].pid, orphans[0].killed), (record.pid, true));
    assert_eq!(orphans[0].key, "/nb/orphan.ipynb");
    let gone = async {
        while std::fs::read_to_string(format!("/proc/{}/stat", record.pid))
            .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG, gone)
        .await
        .expect("the orphan is gone");
    assert!(!pid_file.exists());
    assert!(clean_orphans(&data).await.is_empty());
}
