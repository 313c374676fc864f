//! `delete_snapshot` (§10): removing a named snapshot is an event in the
//! feed and the audit log; the content it named stays in the log.

mod common;

use common::{call, connect, create};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_snapshot_leaves_the_list_as_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    create(&c, "n.ipynb", &["x = 1"]).await;
    for name in ["keep", "drop"] {
        call(
            &c,
            "snapshot_notebook",
            json!({"path": "n.ipynb", "name": name}),
        )
        .await
        .ok();
    }
    let r = call(
        &c,
        "delete_snapshot",
        json!({"path": "n.ipynb", "name": "drop"}),
    )
    .await
    .ok();
    assert_eq!(r["name"], "drop");
    assert_eq!(r["changed"], true);
    assert_eq!(r["client_name"], "agent-a");
    let v = r["version"].as_u64().unwrap();
    let list = call(&c, "list_snapshots", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let names: Vec<&str> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
    let feed = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": v - 1}),
    )
    .await
    .ok();
    assert_eq!(feed["changes"][0]["operation"], "delete_snapshot");
    assert_eq!(feed["current_version"], v);
    // Gone now: diffing, restoring or deleting it again is not_found.
    for tool in ["delete_snapshot", "diff_snapshot", "restore_snapshot"] {
        let r = call(&c, tool, json!({"path": "n.ipynb", "name": "drop"})).await;
        assert_eq!(r.code(), "not_found", "{tool}");
        assert_eq!(r.error()["available"], json!(["keep"]));
    }
    // The name is free again.
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "drop"}),
    )
    .await
    .ok();
    c.cancel().await.unwrap();

    // The audit log shows it, and replay agrees with the stored state.
    let out = std::process::Command::new(common::bin())
        .args(["log", "--json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"operation\":\"delete_snapshot\""), "{text}");
    let out = std::process::Command::new(common::bin())
        .args(["export", "--format", "jsonl", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"kind\":\"snapshot_deleted\""), "{text}");
    let status = std::process::Command::new(common::bin())
        .args(["verify", "--root"])
        .arg(root)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect(dir.path(), "agent-a").await;
    create(&c, "n.ipynb", &["x"]).await;
    let r = call(
        &c,
        "delete_snapshot",
        json!({"path": "n.ipynb", "name": "no/slash"}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    let r = call(
        &c,
        "delete_snapshot",
        json!({"path": "none.ipynb", "name": "s"}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    let r = call(
        &c,
        "delete_snapshot",
        json!({"path": "../x.ipynb", "name": "s"}),
    )
    .await;
    assert_eq!(r.code(), "outside_root");
    c.cancel().await.unwrap();
}
