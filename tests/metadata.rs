//! `update_cell_metadata` and `update_notebook_metadata` (§10): merges,
//! replacements and tags, as events like any write, in the file, under
//! the lock and compare-and-swap rules.

mod common;

use common::{call, connect, create, file_json};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_metadata_merges_replaces_and_tags_into_the_file_and_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "n.ipynb", &["x = 1", "y = 2"]).await;
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "metadata": {"collapsed": true, "owner": "a"}, "add_tags": ["b", "a", "b"]}),
    )
    .await
    .ok();
    assert_eq!(
        r["metadata"],
        json!({"collapsed": true, "owner": "a", "tags": ["b", "a"]})
    );
    let v1 = r["version"].as_u64().unwrap();
    // A null removes a key; tags keep their order and new ones go last.
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "metadata": {"owner": null}, "add_tags": "c", "remove_tags": ["b"]}),
    )
    .await
    .ok();
    assert_eq!(
        r["metadata"],
        json!({"collapsed": true, "tags": ["a", "c"]})
    );
    let nb = file_json(root, "n.ipynb");
    assert_eq!(
        nb["cells"][0]["metadata"],
        json!({"collapsed": true, "tags": ["a", "c"]})
    );
    // The same again changes nothing and appends nothing.
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "add_tags": ["a"]}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false);
    // Removing the last tags drops the key; replace drops the rest.
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "metadata": {"fresh": 1}, "replace": true}),
    )
    .await
    .ok();
    assert_eq!(r["metadata"], json!({"fresh": 1}));
    // A stale expected_version is refused: metadata counts for last_version.
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "metadata": {"k": 2}, "expected_version": v1 - 1}),
    )
    .await;
    assert_eq!(r.code(), "version_conflict");
    let feed = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": v1 - 1}),
    )
    .await
    .ok();
    let ops: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["update_cell_metadata"; 3]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_locked_by_another_agent_needs_force_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent").await;
    let ids = create(&c, "n.ipynb", &["x = 1"]).await;
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "holder"}),
    )
    .await
    .ok();
    let args =
        json!({"path": "n.ipynb", "cell_id": ids[0], "add_tags": ["t"], "client_name": "other"});
    let r = call(&c, "update_cell_metadata", args.clone()).await;
    assert_eq!(r.code(), "locked");
    let mut forced = args.clone();
    forced["force"] = json!(true);
    let r = call(&c, "update_cell_metadata", forced).await.ok();
    assert_eq!(r["overrode_lock"], "holder");
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    let big = "x".repeat(70_000);
    let r = call(
        &c,
        "update_cell_metadata",
        json!({"path": "n.ipynb", "cell_id": ids[0], "metadata": {"big": big}, "client_name": "holder"}),
    )
    .await;
    assert_eq!(r.code(), "too_large");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notebook_metadata_merges_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent").await;
    create(&c, "n.ipynb", &["x = 1"]).await;
    let r = call(
        &c,
        "update_notebook_metadata",
        json!({"path": "n.ipynb", "metadata": {"language_info": {"name": "python"}, "authors": ["a"]}}),
    )
    .await
    .ok();
    assert_eq!(r["metadata"]["authors"], json!(["a"]));
    assert!(
        r["metadata"]["kernelspec"].is_object(),
        "merge keeps the rest"
    );
    assert_eq!(
        file_json(root, "n.ipynb")["metadata"]["authors"],
        json!(["a"])
    );
    let r = call(
        &c,
        "update_notebook_metadata",
        json!({"path": "n.ipynb", "metadata": {"authors": null}}),
    )
    .await
    .ok();
    assert!(r["metadata"].get("authors").is_none());
    let r = call(
        &c,
        "update_notebook_metadata",
        json!({"path": "n.ipynb", "metadata": {"only": 1}, "replace": true}),
    )
    .await
    .ok();
    assert_eq!(r["metadata"], json!({"only": 1}));
    assert_eq!(file_json(root, "n.ipynb")["metadata"], json!({"only": 1}));
    c.cancel().await.unwrap();
}
