//! Runs beyond `execute_cell` (§9.1, §9.2) on real ipykernel kernels:
//! `execute_code`, `execute: true` on the editing tools, and progress
//! notifications while a call waits, from the owner and from an attached
//! process.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, call, create, file_json};
use rmcp::handler::client::ClientHandler;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation,
    ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::process::Command;

const HANG: Duration = Duration::from_secs(180);

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn text_of(run: &Value) -> String {
    run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| {
            o["text"]
                .as_str()
                .or_else(|| o["data"]["text/plain"].as_str())
        })
        .collect()
}

#[tokio::test]
async fn execute_code_shares_the_kernel_touches_no_cell_and_is_on_record() {
    let dir = tmp();
    let c = common::connect_kernels(dir.path(), "agent").await;
    let ids = create(&c, "n.ipynb", &["x = 20"]).await;
    call(
        &c,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let before = file_json(dir.path(), "n.ipynb");

    let r = call(
        &c,
        "execute_code",
        json!({"path": "n.ipynb", "code": "print(x * 2)\nx + 2"}),
    )
    .await
    .ok();
    let run = &r["run"];
    assert_eq!(run["status"], "ok", "{r}");
    assert!(run.get("cell_id").is_none(), "{run}");
    assert_eq!(run["source"], "print(x * 2)\nx + 2");
    assert_eq!(text_of(run), "40\n22");
    assert_eq!(run["client_name"], "agent");
    assert_eq!(file_json(dir.path(), "n.ipynb"), before, "no cell changed");

    // An error is a run that says so, not a refusal.
    let e = call(
        &c,
        "execute_code",
        json!({"path": "n.ipynb", "code": "1/0"}),
    )
    .await
    .ok();
    assert_eq!(e["run"]["status"], "error");

    let feed = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": r["version"].as_u64().unwrap() - 1}),
    )
    .await
    .ok();
    let first = &feed["changes"][0];
    assert_eq!(first["operation"], "execute_code");
    assert_eq!(first["cell_ids"], json!([]));
    let listed = call(&c, "list_runs", json!({"path": "n.ipynb"})).await.ok();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 3);

    // Refusals change nothing.
    let head = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .clone();
    for (args, code) in [
        (json!({"path": "n.ipynb", "code": ""}), "invalid_argument"),
        (
            json!({"path": "n.ipynb", "code": "1", "timeout_s": 0}),
            "invalid_argument",
        ),
        (json!({"path": "gone.ipynb", "code": "1"}), "not_found"),
    ] {
        let e = call(&c, "execute_code", args).await;
        assert_eq!(e.code(), code, "{e:?}");
    }
    let after = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(after["current_version"], head);
}

#[tokio::test]
async fn execute_true_runs_what_the_edit_wrote() {
    let dir = tmp();
    let c = common::connect_kernels(dir.path(), "agent").await;
    create(&c, "n.ipynb", &[]).await;

    let ins = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "y = 5\ny * 3", "execute": true}),
    )
    .await
    .ok();
    let id = ins["cell_id"].as_str().unwrap().to_owned();
    assert_eq!(ins["runs"][0]["status"], "ok", "{ins}");
    assert_eq!(ins["runs"][0]["cell_id"], id);
    assert_eq!(text_of(&ins["runs"][0]), "15");
    let file = file_json(dir.path(), "n.ipynb");
    assert_eq!(
        file["cells"][0]["outputs"][0]["data"]["text/plain"],
        json!(["15"])
    );

    let upd = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "y * 4", "execute": true}),
    )
    .await
    .ok();
    assert_eq!(text_of(&upd["runs"][0]), "20", "{upd}");
    assert!(upd["runs"][0]["source_version"].as_u64().unwrap() >= upd["version"].as_u64().unwrap());

    // A batch runs its code cells in order, skipping the markdown one.
    let batch = call(
        &c,
        "batch_insert_cells",
        json!({"path": "n.ipynb", "execute": true, "request_id": "b-1", "cells": [
            {"source": "z = y + 1"},
            {"source": "# notes", "cell_type": "markdown"},
            {"source": "z"}
        ]}),
    )
    .await
    .ok();
    let runs = batch["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{batch}");
    assert_eq!(runs[0]["cell_id"], batch["cell_ids"][0]);
    assert_eq!(runs[1]["cell_id"], batch["cell_ids"][2]);
    assert_eq!(text_of(&runs[1]), "6");

    // A retry with the same request_id neither writes nor runs again.
    let again = call(
        &c,
        "batch_insert_cells",
        json!({"path": "n.ipynb", "execute": true, "request_id": "b-1", "cells": [
            {"source": "z = y + 1"},
            {"source": "# notes", "cell_type": "markdown"},
            {"source": "z"}
        ]}),
    )
    .await
    .ok();
    assert_eq!(again["cell_ids"], batch["cell_ids"]);
    assert_eq!(again["runs"][1]["run_id"], runs[1]["run_id"]);
    let listed = call(&c, "list_runs", json!({"path": "n.ipynb"})).await.ok();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 4);

    // Nothing that cannot run is written.
    let head = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .clone();
    let e = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "# t", "cell_type": "markdown", "execute": true}),
    )
    .await;
    assert_eq!(e.code(), "invalid_argument", "{e:?}");
    let md = batch["cell_ids"][1].as_str().unwrap();
    let e = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": md, "source": "# u", "execute": true}),
    )
    .await;
    assert_eq!(e.code(), "invalid_argument", "{e:?}");
    let e = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "1", "execute": true, "timeout_s": 0.5}),
    )
    .await;
    assert_eq!(e.code(), "invalid_argument", "{e:?}");
    let after = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(after["current_version"], head);
}

/// A client that counts the progress notifications it hears. (rmcp's
/// client sends a progress token with every request, as a client may.)
#[derive(Clone)]
struct Counting {
    heard: Arc<AtomicUsize>,
}

impl ClientHandler for Counting {
    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.heard.fetch_add(1, Ordering::SeqCst);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("progress", "0.1"),
        )
    }
}

async fn counting_client(root: &Path) -> (RunningService<RoleClient, Counting>, Arc<AtomicUsize>) {
    let mut cmd = Command::new(common::bin());
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .env("JUPYTER_PATH", common::kernel_venv().join("share/jupyter"));
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nbledger");
    let heard = Arc::new(AtomicUsize::new(0));
    let client = Counting {
        heard: heard.clone(),
    }
    .serve(transport)
    .await
    .expect("MCP handshake");
    (client, heard)
}

async fn sleep_run(c: &RunningService<RoleClient, Counting>, id: &str) -> Value {
    let params = CallToolRequestParams::new("execute_cell").with_arguments(
        json!({"path": "n.ipynb", "cell_id": id})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let r = tokio::time::timeout(HANG, c.call_tool(params))
        .await
        .expect("execute_cell hung")
        .expect("execute_cell");
    r.structured_content.expect("structured content")
}

#[tokio::test]
async fn a_waiting_execute_cell_reports_progress_from_the_owner_and_an_attached_process() {
    let dir = tmp();
    // The first process owns the store; the later ones attach to it.
    let (direct, heard_direct) = counting_client(dir.path()).await;
    let writer: Client = common::connect_kernels(dir.path(), "writer").await;
    let ids = create(&writer, "n.ipynb", &["import time; time.sleep(5); 'done'"]).await;
    let (attached, heard_attached) = counting_client(dir.path()).await;

    let r = sleep_run(&direct, &ids[0]).await;
    assert_eq!(r["runs"][0]["status"], "ok", "{r}");
    let r = sleep_run(&attached, &ids[0]).await;
    assert_eq!(r["runs"][0]["status"], "ok", "{r}");
    // 5 s of waiting at a report every 2 s: two each, whatever the load.
    assert!(heard_direct.load(Ordering::SeqCst) >= 2);
    assert!(heard_attached.load(Ordering::SeqCst) >= 2);
}

fn audit(root: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nbledger");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn the_audit_says_who_ran_what_how_it_ended_and_what_it_printed() {
    let dir = tmp();
    let c = common::connect_kernels(dir.path(), "alice").await;
    let ids = create(&c, "n.ipynb", &["print('hello <b>')", "1/0"]).await;
    let ran = call(
        &c,
        "execute_cell",
        json!({"path": "n.ipynb", "all": true, "stop_on_error": false}),
    )
    .await
    .ok();
    assert_eq!(ran["runs"][1]["status"], "error");
    call(
        &c,
        "execute_code",
        json!({"path": "n.ipynb", "code": "21 * 2", "client_name": "bob"}),
    )
    .await
    .ok();

    // Beside the running server, as every audit command works.
    let text = audit(dir.path(), &["runs", "--notebook", "n.ipynb"]);
    let heads: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(heads.len(), 3, "{text}");
    assert!(
        heads[0].contains("bob") && heads[0].contains("code") && heads[0].contains(" ok [3]"),
        "{text}"
    );
    assert!(
        heads[1].contains(&ids[1]) && heads[1].contains(" error [2]"),
        "{text}"
    );
    assert!(
        heads[2].contains("alice") && heads[2].contains(&ids[0]),
        "{text}"
    );
    assert!(text.contains("| hello <b>"), "{text}");
    assert!(
        text.contains("| ZeroDivisionError: division by zero"),
        "{text}"
    );
    assert!(text.contains("| 42"), "{text}");

    let json_lines: Vec<Value> = audit(dir.path(), &["runs", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(json_lines.len(), 3);
    assert_eq!(json_lines[2]["run_id"], ran["runs"][0]["run_id"]);
    assert_eq!(json_lines[2]["outputs"][0]["text"], json!(["hello <b>\n"]));
    assert!(json_lines[0].get("cell_id").is_none());

    let history = audit(dir.path(), &["history", "n.ipynb", &ids[1]]);
    let run_id = ran["runs"][1]["run_id"].as_str().unwrap();
    assert!(
        history.contains(&format!("run {run_id} started")),
        "{history}"
    );
    assert!(
        history.contains(&format!("run {run_id} error [2]")),
        "{history}"
    );
    let log = audit(dir.path(), &["log", "--notebook", "n.ipynb"]);
    for op in ["execute_cell", "run_finished", "execute_code"] {
        assert!(log.contains(op), "{op} missing from log:\n{log}");
    }
}

#[tokio::test]
async fn a_clean_owner_handover_during_a_run_ends_it_on_record_and_the_next_owner_runs_on() {
    let dir = tmp();
    let owner = common::connect_kernels(dir.path(), "alice").await;
    let ids = create(
        &owner,
        "n.ipynb",
        &["import time\ntime.sleep(300)", "40 + 2"],
    )
    .await;
    let other = common::connect_kernels(dir.path(), "bob").await;
    let r = call(
        &owner,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "timeout_s": 1}),
    )
    .await
    .ok();
    let run_id = r["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert!(
        matches!(r["runs"][0]["status"].as_str(), Some("running" | "queued")),
        "{r}"
    );
    // Closing its client stops the owner cleanly: it shuts its kernel down
    // and the attached process takes the store over.
    owner.cancel().await.expect("stop the owner");

    let end = tokio::time::timeout(HANG, async {
        loop {
            let got = call(
                &other,
                "get_run",
                json!({"run_id": run_id, "wait_ms": 5000}),
            )
            .await;
            if !got.is_error
                && !matches!(
                    got.value["run"]["status"].as_str(),
                    Some("running" | "queued")
                )
            {
                return got.value["run"].clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the run never ended on record");
    assert!(
        matches!(
            end["status"].as_str(),
            Some("interrupted" | "kernel_died" | "aborted")
        ),
        "{end}"
    );
    let again = call(
        &other,
        "execute_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1]}),
    )
    .await
    .ok();
    assert_eq!(again["runs"][0]["status"], "ok", "{again}");
    assert_eq!(again["runs"][0]["execution_count"], 1, "a fresh kernel");
    assert_eq!(text_of(&again["runs"][0]), "42");
}
