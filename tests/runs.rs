//! Running cells through the real binary on real ipykernel 7.4.0 kernels
//! (§9): results, the file, the feed, errors, timeouts, interrupts,
//! restarts, queue order across clients, locks and replay.
//!
//! The kernel comes from `tests/kernel/setup.sh` (a virtualenv in
//! `target/kernelenv`), found by the server through `JUPYTER_PATH`. These
//! tests never skip: without Python 3 and pip they fail and say so.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Client, call, create, file_json};
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use serde_json::{Value, json};

/// A guard against a hang, not a timing assertion.
const HANG: Duration = Duration::from_secs(180);

async fn connect(root: &Path, name: &str) -> Client {
    common::connect_kernels(root, name).await
}

async fn run(c: &Client, args: Value) -> Value {
    tokio::time::timeout(HANG, call(c, "execute_cell", args))
        .await
        .expect("execute_cell hung")
        .ok()
}

async fn follow(c: &Client, run_id: &str) -> Value {
    let r = tokio::time::timeout(
        HANG,
        call(c, "get_run", json!({"run_id": run_id, "wait_ms": 60000})),
    )
    .await
    .expect("get_run hung")
    .ok();
    r["run"].clone()
}

fn text_of(run: &Value) -> String {
    run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["text"].as_str())
        .collect()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test]
async fn a_cell_runs_and_its_outputs_reach_the_result_the_file_and_the_feed() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["print(6 * 7)", "'x' * 3"]).await;
    let before = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let r = run(&c, json!({"path": "n.ipynb", "cell_id": ids[0]})).await;
    let run0 = &r["runs"][0];
    assert_eq!(run0["status"], "ok", "{r}");
    assert_eq!(run0["cell_id"], ids[0]);
    assert_eq!(run0["source"], "print(6 * 7)");
    assert_eq!(text_of(run0), "42\n");
    assert_eq!(run0["execution_count"], 1);
    assert_eq!(r["kernel"]["kernel_name"], "python3");
    let accepted = r["version"].as_u64().unwrap();

    let file = file_json(dir.path(), "n.ipynb");
    let cell = &file["cells"][0];
    assert_eq!(cell["execution_count"], 1);
    assert_eq!(cell["outputs"][0]["output_type"], "stream");
    assert_eq!(cell["outputs"][0]["name"], "stdout");
    assert_eq!(cell["outputs"][0]["text"], json!(["42\n"]));
    assert_eq!(file["nbformat"], 4);
    assert!(file["nbformat_minor"].as_u64().unwrap() >= 5);
    nbledger::ipynb::parse(&std::fs::read(dir.path().join("n.ipynb")).unwrap())
        .expect("the written file parses as nbformat");

    let all = run(&c, json!({"path": "n.ipynb", "all": true})).await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 2);
    let result = &all["runs"][1]["outputs"][0];
    assert_eq!(result["output_type"], "execute_result");
    assert_eq!(result["data"]["text/plain"], "'xxx'");

    // Outputs from runs leave last_version alone (§8.4) and say which run.
    let after = call(
        &c,
        "get_notebook_content",
        json!({"path": "n.ipynb", "include_outputs": true}),
    )
    .await
    .ok();
    for i in 0..2 {
        assert_eq!(
            after["cells"][i]["last_version"],
            before["cells"][i]["last_version"]
        );
        assert!(after["cells"][i]["outputs_version"].as_u64().unwrap() > accepted);
        assert_eq!(after["cells"][i]["run_id"], all["runs"][i]["run_id"]);
        assert!(after["cells"][i].get("stale").is_none());
    }
    // An expected_version read before the run still passes.
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "'y'",
               "expected_version": before["current_version"]}),
    )
    .await
    .ok();
    let stale = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(stale["cells"][1]["stale"], true);

    let feed = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": 0}),
    )
    .await
    .ok();
    let ops: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"execute_cell"), "{ops:?}");
    assert!(ops.contains(&"run_finished"), "{ops:?}");
    let history = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let cell_ops: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert!(
        cell_ops.contains(&"execute_cell") && cell_ops.contains(&"run_finished"),
        "{cell_ops:?}"
    );

    let listed = call(&c, "list_runs", json!({"path": "n.ipynb"})).await.ok();
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[2]["run_id"], run0["run_id"], "newest first");
    assert!(runs[0].get("outputs").is_none());
    let kernels = call(&c, "list_kernels", json!({})).await.ok();
    assert_eq!(kernels["kernels"][0]["path"], "n.ipynb");
    assert!(
        kernels["kernelspecs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "python3")
    );
}

#[tokio::test]
async fn an_error_ends_error_with_a_plain_traceback_and_stops_the_call() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["1 / 0", "print('after')"]).await;
    let r = run(&c, json!({"path": "n.ipynb", "cell_ids": ids})).await;
    assert_eq!(r["runs"][0]["status"], "error", "{r}");
    let err = &r["runs"][0]["outputs"][0];
    assert_eq!(err["output_type"], "error");
    assert_eq!(err["ename"], "ZeroDivisionError");
    let tb: String = err["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(tb.contains("ZeroDivisionError") && !tb.contains('\u{1b}'));
    assert_eq!(r["runs"][1]["status"], "aborted");

    let r = run(
        &c,
        json!({"path": "n.ipynb", "cell_ids": ids, "stop_on_error": false}),
    )
    .await;
    assert_eq!(r["runs"][0]["status"], "error");
    assert_eq!(r["runs"][1]["status"], "ok");
    assert_eq!(text_of(&r["runs"][1]), "after\n");
}

#[tokio::test]
async fn a_run_past_its_timeout_goes_on_and_get_run_follows_it() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(
        &c,
        "n.ipynb",
        &["import time\nprint('start', flush=True)\ntime.sleep(4)\nprint('done')"],
    )
    .await;
    let r = run(
        &c,
        json!({"path": "n.ipynb", "cell_id": ids[0], "timeout_s": 1}),
    )
    .await;
    let status = r["runs"][0]["status"].as_str().unwrap();
    assert!(status == "running" || status == "queued", "{r}");
    let end = follow(&c, r["runs"][0]["run_id"].as_str().unwrap()).await;
    assert_eq!(end["status"], "ok");
    assert_eq!(text_of(&end), "start\ndone\n");
    assert!(end["duration_ms"].as_u64().is_some());
}

#[tokio::test]
async fn interrupt_ends_the_running_run_and_restart_forgets_state() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(
        &c,
        "n.ipynb",
        &["x = 5", "import time\ntime.sleep(120)", "print(x)"],
    )
    .await;
    run(&c, json!({"path": "n.ipynb", "cell_id": ids[0]})).await;
    let r = run(
        &c,
        json!({"path": "n.ipynb", "cell_id": ids[1], "timeout_s": 1}),
    )
    .await;
    let run_id = r["runs"][0]["run_id"].as_str().unwrap().to_owned();
    // The run may still be on its way into the kernel: interrupt until it
    // is the one interrupted.
    let mut interrupted = Value::Null;
    for _ in 0..100 {
        interrupted = call(&c, "interrupt_kernel", json!({"path": "n.ipynb"}))
            .await
            .ok();
        if interrupted["interrupted"] == json!([run_id]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(interrupted["interrupted"], json!([run_id]));
    assert_eq!(follow(&c, &run_id).await["status"], "interrupted");
    let kept = run(&c, json!({"path": "n.ipynb", "cell_id": ids[2]})).await;
    assert_eq!(text_of(&kept["runs"][0]), "5\n", "an interrupt keeps state");

    let restarted = call(&c, "restart_kernel", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(restarted["kernel"]["kernel_name"], "python3");
    let forgot = run(&c, json!({"path": "n.ipynb", "cell_id": ids[2]})).await;
    assert_eq!(forgot["runs"][0]["status"], "error");
    assert_eq!(forgot["runs"][0]["outputs"][0]["ename"], "NameError");

    call(&c, "shutdown_kernel", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let kernels = call(&c, "list_kernels", json!({})).await.ok();
    assert_eq!(kernels["kernels"], json!([]));
    assert_eq!(
        call(&c, "interrupt_kernel", json!({"path": "n.ipynb"}))
            .await
            .code(),
        "not_found"
    );
}

#[tokio::test]
async fn runs_from_two_clients_run_in_the_order_they_were_accepted() {
    let dir = tmp();
    let a = connect(dir.path(), "alice").await;
    let ids = create(&a, "n.ipynb", &["import time\ntime.sleep(1)\n'a'", "'b'"]).await;
    // Started first, so neither call pays for the kernel's start.
    run(&a, json!({"path": "n.ipynb", "cell_id": ids[1]})).await;
    let b = connect(dir.path(), "bob").await;
    let (ra, rb) = tokio::join!(
        run(&a, json!({"path": "n.ipynb", "cell_id": ids[0]})),
        run(&b, json!({"path": "n.ipynb", "cell_id": ids[1]})),
    );
    let (ra, rb) = (&ra["runs"][0], &rb["runs"][0]);
    assert_eq!(ra["status"], "ok");
    assert_eq!(rb["status"], "ok");
    assert_eq!(ra["client_name"], "alice");
    assert_eq!(rb["client_name"], "bob");
    let va = call(&a, "get_run", json!({"run_id": ra["run_id"]}))
        .await
        .ok();
    let vb = call(&a, "get_run", json!({"run_id": rb["run_id"]}))
        .await
        .ok();
    let order = |r: &Value| r["run"]["queued_at"].as_str().unwrap().to_owned();
    let (ca, cb) = (
        ra["execution_count"].as_u64(),
        rb["execution_count"].as_u64(),
    );
    // Whichever was accepted first ran first.
    if order(&va) < order(&vb) {
        assert!(ca < cb, "{ra} {rb}");
    } else if order(&vb) < order(&va) {
        assert!(cb < ca, "{ra} {rb}");
    }
    assert_ne!(ca, cb);
}

#[tokio::test]
async fn a_locked_cell_is_refused_unless_forced() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["print(1)"]).await;
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice"}),
    )
    .await
    .ok();
    let refused = call(
        &c,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "bob"}),
    )
    .await;
    assert_eq!(refused.code(), "locked");
    let forced = run(
        &c,
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "bob", "force": true}),
    )
    .await;
    assert_eq!(forced["runs"][0]["status"], "ok");
    assert_eq!(forced["overrode_lock"], "alice");
    // The lock holder runs its own cell freely.
    let own = run(
        &c,
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice"}),
    )
    .await;
    assert_eq!(own["runs"][0]["status"], "ok");
}

#[tokio::test]
async fn arguments_and_kernelspecs_are_checked() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["1"]).await;
    let md = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "# t", "cell_type": "markdown"}),
    )
    .await
    .ok();
    let e = call(
        &c,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "timeout_s": 0.5}),
    )
    .await;
    assert_eq!(e.code(), "invalid_argument");
    let e = call(
        &c,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": md["cell_id"]}),
    )
    .await;
    assert_eq!(e.code(), "invalid_argument");
    let e = call(&c, "execute_cell", json!({"path": "n.ipynb"})).await;
    assert_eq!(e.code(), "invalid_argument");
    let e = call(&c, "get_run", json!({"run_id": "nope"})).await;
    assert_eq!(e.code(), "not_found");

    call(
        &c,
        "create_notebook",
        json!({"path": "other.ipynb", "cells": [{"source": "1"}], "kernel_name": "no-such-kernel"}),
    )
    .await
    .ok();
    let e = call(
        &c,
        "execute_cell",
        json!({"path": "other.ipynb", "all": true}),
    )
    .await;
    assert_eq!(e.code(), "not_found");
    assert!(
        e.error()["kernelspecs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "python3"),
        "{}",
        e.value
    );
    let listed = call(&c, "list_runs", json!({"path": "other.ipynb"}))
        .await
        .ok();
    assert_eq!(listed["runs"], json!([]), "a refused call accepts no run");

    let cleared = call(&c, "clear_outputs", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(cleared["cleared"], json!([]));
}

#[tokio::test]
async fn outputs_and_runs_survive_a_restart_of_the_server() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["print('kept')"]).await;
    let r = run(&c, json!({"path": "n.ipynb", "cell_id": ids[0]})).await;
    let run_id = r["runs"][0]["run_id"].as_str().unwrap().to_owned();
    c.cancel().await.expect("clean stop");

    let c = connect(dir.path(), "agent").await;
    let back = follow(&c, &run_id).await;
    assert_eq!(back["status"], "ok");
    assert_eq!(text_of(&back), "kept\n");
    let content = call(
        &c,
        "get_notebook_content",
        json!({"path": "n.ipynb", "include_outputs": true}),
    )
    .await
    .ok();
    assert_eq!(content["cells"][0]["outputs"][0]["text"], "kept\n");
    assert_eq!(content["cells"][0]["run_id"], run_id);

    let cleared = call(&c, "clear_outputs", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(cleared["cleared"], json!([ids[0]]));
    let file = file_json(dir.path(), "n.ipynb");
    assert_eq!(file["cells"][0]["outputs"], json!([]));
    assert_eq!(file["cells"][0]["execution_count"], Value::Null);
}

/// A server whose process the test can kill, finding the test kernel.
async fn connect_killable(root: &Path) -> (Client, tokio::process::Child) {
    let mut child = tokio::process::Command::new(common::bin())
        .arg("serve")
        .arg("--root")
        .arg(root)
        .env("JUPYTER_PATH", common::kernel_venv().join("share/jupyter"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn nbledger");
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("agent", "0.1"),
    )
    .serve((stdout, stdin))
    .await
    .expect("handshake");
    (client, child)
}

#[tokio::test]
async fn the_next_owner_ends_a_crashed_owners_runs_as_kernel_died() {
    let dir = tmp();
    let (c, mut child) = connect_killable(dir.path()).await;
    let ids = create(
        &c,
        "n.ipynb",
        &["print('kept')", "import time\ntime.sleep(300)", "1"],
    )
    .await;
    let done = run(&c, json!({"path": "n.ipynb", "cell_id": ids[0]})).await;
    let done = done["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let r = run(
        &c,
        json!({"path": "n.ipynb", "cell_ids": [ids[1], ids[2]], "timeout_s": 1}),
    )
    .await;
    let first = r["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let second = r["runs"][1]["run_id"].as_str().unwrap().to_owned();
    child.kill().await.expect("kill the owner");
    drop(c);

    let c = connect(dir.path(), "agent").await;
    for id in [&first, &second] {
        let end = follow(&c, id).await;
        assert_eq!(end["status"], "kernel_died", "{end}");
        assert!(end["reason"].is_string());
    }
    // No checkpoint after a kill: the finished run and its outputs come
    // back by replaying the log.
    let kept = follow(&c, &done).await;
    assert_eq!(kept["status"], "ok");
    assert_eq!(text_of(&kept), "kept\n");
    let content = call(
        &c,
        "get_notebook_content",
        json!({"path": "n.ipynb", "include_outputs": true}),
    )
    .await
    .ok();
    assert_eq!(content["cells"][0]["outputs"][0]["text"], "kept\n");
    assert_eq!(content["cells"][0]["run_id"], done);
    let kernels = call(&c, "list_kernels", json!({})).await.ok();
    assert_eq!(kernels["kernels"], json!([]));
    // The notebook's kernel starts afresh on the next run.
    let again = run(&c, json!({"path": "n.ipynb", "cell_id": ids[2]})).await;
    assert_eq!(again["runs"][0]["status"], "ok");
    assert_eq!(again["runs"][0]["execution_count"], 1);
}

#[tokio::test]
async fn restart_with_another_kernelspec_records_it_and_a_deleted_cell_stays_deleted() {
    let dir = tmp();
    let c = connect(dir.path(), "agent").await;
    let ids = create(
        &c,
        "n.ipynb",
        &[
            "import time\ntime.sleep(2)\nprint('late')",
            "import sys\nprint(sys.prefix)",
        ],
    )
    .await;
    let r = call(
        &c,
        "restart_kernel",
        json!({"path": "n.ipynb", "kernel_name": "python3-bare"}),
    )
    .await
    .ok();
    assert_eq!(r["kernel"]["kernel_name"], "python3-bare");
    let file = file_json(dir.path(), "n.ipynb");
    assert_eq!(file["metadata"]["kernelspec"]["name"], "python3-bare");
    let r = run(&c, json!({"path": "n.ipynb", "cell_id": ids[1]})).await;
    assert_eq!(r["kernel"]["kernel_name"], "python3-bare");
    assert_eq!(r["runs"][0]["kernel_name"], "python3-bare");

    // Deleted while it runs: the run ends on record, the cell stays gone.
    let r = run(
        &c,
        json!({"path": "n.ipynb", "cell_id": ids[0], "timeout_s": 1}),
    )
    .await;
    let run_id = r["runs"][0]["run_id"].as_str().unwrap().to_owned();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let end = follow(&c, &run_id).await;
    assert_eq!(end["status"], "ok");
    assert_eq!(text_of(&end), "late\n");
    let left = common::cells(&c, "n.ipynb").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, ids[1]);
}
