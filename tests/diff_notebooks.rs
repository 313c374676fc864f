//! `diff_notebooks` (§10): one notebook at two versions, or two notebooks,
//! reported like `diff_snapshot`; cells matched by id, then by content.

mod common;

use common::{call, connect, create};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notebook_at_two_versions() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 2", "c = 3"]).await;
    let v0 = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap();
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "a = 10"}),
    )
    .await
    .ok();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1]}),
    )
    .await
    .ok();
    let ins = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "d = 4", "index": 0}),
    )
    .await
    .ok();
    let moved = call(
        &c,
        "move_cells",
        json!({"source_path": "n.ipynb", "cell_ids": [ids[2]], "dest_index": 0}),
    )
    .await
    .ok();
    let now = moved["version"].as_u64().unwrap();
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "n.ipynb", "version": v0}),
    )
    .await
    .ok();
    assert_eq!(r["from"], json!({"path": "n.ipynb", "version": v0}));
    assert_eq!(r["to"], json!({"path": "n.ipynb", "version": now}));
    assert_eq!(r["added"][0]["cell_id"], ins["cell_id"]);
    assert_eq!(r["added"][0]["index"], 1);
    assert_eq!(r["deleted"][0]["cell_id"], ids[1].as_str());
    assert_eq!(r["modified"][0]["cell_id"], ids[0].as_str());
    assert_eq!(r["modified"][0]["changed"], json!(["source"]));
    let d = r["modified"][0]["diff"].as_str().unwrap();
    assert!(d.contains("-a = 1") && d.contains("+a = 10"), "{d}");
    assert!(d.contains(&format!("n.ipynb@{v0}")), "{d}");
    // c moved ahead of a: the smallest set whose removal keeps the order.
    assert_eq!(r["moved"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["unchanged"], 0);
    assert!(r.get("matched_by_content").is_none());
    // Both versions given; the same state twice is all unchanged.
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "n.ipynb", "version": v0, "other_version": v0}),
    )
    .await
    .ok();
    assert_eq!(r["unchanged"], 3);
    assert_eq!(r["modified"], json!([]));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notebooks_match_by_id_then_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect(dir.path(), "agent-a").await;
    create(&c, "a.ipynb", &["same", "only in a", "moved"]).await;
    create(&c, "b.ipynb", &[]).await;
    let a_ids: Vec<String> = call(&c, "get_notebook_outline", json!({"path": "a.ipynb"}))
        .await
        .ok()["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["cell_id"].as_str().unwrap().to_owned())
        .collect();
    // A copy has new ids: its cells match by content.
    call(
        &c,
        "copy_cells",
        json!({"source_path": "a.ipynb", "dest_path": "b.ipynb", "cell_ids": [a_ids[0], a_ids[2]]}),
    )
    .await
    .ok();
    call(
        &c,
        "insert_cell",
        json!({"path": "b.ipynb", "source": "only in b"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "other_path": "b.ipynb"}),
    )
    .await
    .ok();
    assert_eq!(r["from"]["path"], "a.ipynb");
    assert_eq!(r["to"]["path"], "b.ipynb");
    assert_eq!(r["deleted"][0]["source"], "only in a");
    assert_eq!(r["added"][0]["source"], "only in b");
    let pairs = r["matched_by_content"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{r}");
    assert_eq!(pairs[0]["from_cell_id"], a_ids[0].as_str());
    assert_eq!(r["moved"], json!([]));
    assert_eq!(r["unchanged"], 2);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_beyond_the_head_or_before_the_notebook_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect(dir.path(), "agent-a").await;
    create(&c, "a.ipynb", &["x"]).await;
    let v = create(&c, "b.ipynb", &["y"]).await;
    assert_eq!(v.len(), 1);
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "version": 1_000_000}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    assert_eq!(r.error()["argument"], "version");
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "other_version": 1_000_000}),
    )
    .await;
    assert_eq!(r.error()["argument"], "other_version");
    // b.ipynb did not exist at version 1 (a.ipynb's creation).
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "other_path": "b.ipynb", "other_version": 1}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    let r = call(&c, "diff_notebooks", json!({"path": "none.ipynb"})).await;
    assert_eq!(r.code(), "not_found");
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "other_path": "/etc/x.ipynb"}),
    )
    .await;
    assert_eq!(r.code(), "outside_root");
    let r = call(
        &c,
        "diff_notebooks",
        json!({"path": "a.ipynb", "context_lines": "many"}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    c.cancel().await.unwrap();
}
