//! Toolsets (`serve --toolsets`, `NBLEDGER_TOOLSETS`): a process lists and
//! runs only the tools of its sets, refuses the others naming the set that
//! has them, and processes with different sets share one store.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::{Client, call, connect_with, create};
use serde_json::{Value, json};

const LEAN: [&str; 18] = [
    "list_notebooks",
    "get_notebook_content",
    "get_notebook_outline",
    "search_notebook",
    "create_notebook",
    "insert_cell",
    "batch_insert_cells",
    "update_cell",
    "batch_update_cells",
    "delete_cell",
    "change_cell_type",
    "lock_cells",
    "unlock_cells",
    "list_locks",
    "get_notebook_changes",
    "get_cell_history",
    "recover_cell",
    "revert_cell",
];

/// Calls a tool the server does not list. The answer must be a refusal
/// (`isError`), never a JSON-RPC error; its `error` object is returned.
async fn call_unlisted(c: &Client, tool: &str, args: Value) -> Value {
    let args = args.as_object().cloned().unwrap_or_default();
    let result = c
        .call_tool(rmcp::model::CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: JSON-RPC failure instead of a refusal: {e}"));
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.expect("structuredContent")["error"].clone()
}

async fn names(c: &Client) -> BTreeSet<String> {
    c.list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test]
async fn a_lean_server_lists_only_its_sets_and_refuses_the_rest_naming_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect_with(dir.path(), "agent-a", &["--toolsets", "read,edit,collab"]).await;
    let want: BTreeSet<String> = LEAN.iter().map(|s| s.to_string()).collect();
    assert_eq!(names(&c).await, want);

    create(&c, "n.ipynb", &["x = 1"]).await;
    let refused = call_unlisted(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "s"}),
    )
    .await;
    assert_eq!(refused["code"], json!("invalid_argument"));
    assert_eq!(refused["toolset"], json!("snapshots"));
    assert_eq!(refused["enabled"], json!(["read", "edit", "collab"]));
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("snapshots") && message.contains("--toolsets"),
        "{message}"
    );
    // Refused before anything ran: no snapshot event in the feed.
    let feed = call(&c, "get_notebook_changes", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(feed["current_version"], json!(1), "{feed}");
    // A name no set has stays an unknown tool, not a toolset refusal.
    let unknown = c
        .call_tool(rmcp::model::CallToolRequestParams::new("no_such_tool"))
        .await;
    let toolset = unknown
        .ok()
        .and_then(|r| r.structured_content)
        .map(|v| v["error"]["toolset"].clone());
    assert!(toolset.as_ref().is_none_or(Value::is_null), "{toolset:?}");
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn the_environment_chooses_the_toolsets_when_the_flag_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.args(["serve", "--root"])
        .arg(dir.path())
        .env("NBLEDGER_TOOLSETS", "transfer")
        .stderr(Stdio::null());
    let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
        .spawn()
        .unwrap();
    use rmcp::ServiceExt;
    let c = rmcp::model::ClientConfig::default()
        .serve(transport)
        .await
        .unwrap();
    let want: BTreeSet<String> = ["copy_cells", "move_cells"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names(&c).await, want);
    c.cancel().await.unwrap();
}

#[test]
fn an_unknown_toolset_refuses_to_start_and_lists_the_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["serve", "--toolsets", "read,locks", "--root"])
        .arg(dir.path())
        .env_remove("NBLEDGER_TOOLSETS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown toolset \"locks\""), "{err}");
    for set in [
        "read",
        "edit",
        "collab",
        "snapshots",
        "transfer",
        "runs",
        "notebooks",
    ] {
        assert!(err.contains(set), "{set} missing from: {err}");
    }
    assert!(out.stdout.is_empty(), "stdout is the MCP channel");
    assert!(
        !dir.path().join(".nbledger").exists(),
        "nothing was opened or created"
    );
}

#[tokio::test]
async fn processes_with_different_toolsets_share_one_store_and_each_refuses_by_its_own() {
    let dir = tempfile::tempdir().unwrap();
    // The first process owns the store and lists only reading tools; the
    // second attaches and lists everything: the owner still runs its calls.
    let owner = connect_with(dir.path(), "reader", &["--toolsets", "read"]).await;
    let wide = connect_with(dir.path(), "writer", &[]).await;
    assert_eq!(names(&owner).await.len(), 4);
    assert!(names(&wide).await.contains("snapshot_notebook"));

    create(&wide, "n.ipynb", &["x = 1"]).await;
    let snap = call(
        &wide,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "s1"}),
    )
    .await
    .ok();
    assert_eq!(snap["version"], json!(2));
    let read = call(&owner, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(read["current_version"], json!(2));
    let refused = call_unlisted(&owner, "list_snapshots", json!({"path": "n.ipynb"})).await;
    assert_eq!(refused["code"], json!("invalid_argument"));
    assert_eq!(refused["toolset"], json!("snapshots"));

    // A third, lean and attached, refuses locally what the owner would run.
    let lean = connect_with(dir.path(), "lean", &["--toolsets", "edit"]).await;
    let refused = call_unlisted(&lean, "get_notebook_outline", json!({"path": "n.ipynb"})).await;
    assert_eq!(refused["toolset"], json!("read"));
    let upd = call(
        &lean,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "y = 2"}),
    )
    .await
    .ok();
    assert_eq!(upd["version"], json!(3));
    for c in [lean, wide, owner] {
        c.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_both_protocol_eras_see_only_the_servers_toolsets() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = common::http_server_with(
        dir.path(),
        Some(common::TOKEN),
        &["--toolsets", "read,edit"],
    );
    for modern in [false, true] {
        let c = common::http_client(&url, "http-agent", modern).await;
        let listed = names(&c).await;
        assert_eq!(listed.len(), 11, "{listed:?}");
        assert!(listed.contains("update_cell") && !listed.contains("lock_cells"));
        let refused = call_unlisted(
            &c,
            "lock_cells",
            json!({"path": "n.ipynb", "cell_id": "abcd"}),
        )
        .await;
        assert_eq!(refused["toolset"], json!("collab"));
        c.cancel().await.unwrap();
    }
    server.kill().unwrap();
    let _ = server.wait();
}
