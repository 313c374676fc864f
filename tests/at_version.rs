//! `get_notebook_content` with `at_version` (§10): any past state, read
//! from the log alone.

mod common;

use common::{call, connect, create};
use serde_json::{Value, json};

fn sources(r: &Value) -> Vec<&str> {
    r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_reads_as_it_was_after_any_version_without_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent").await;
    create(&c, "other.ipynb", &["o"]).await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 1"]).await;
    let created = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap();
    let v2 = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "a = 2"}),
    )
    .await
    .ok()["version"]
        .as_u64()
        .unwrap();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1]}),
    )
    .await
    .ok();
    let at = |v: u64| json!({"path": "n.ipynb", "at_version": v});
    let r = call(&c, "get_notebook_content", at(created)).await.ok();
    assert_eq!(sources(&r), ["a = 1", "b = 1"]);
    assert_eq!(r["current_version"], created);
    let r = call(&c, "get_notebook_content", at(v2)).await.ok();
    assert_eq!(sources(&r), ["a = 2", "b = 1"]);
    assert_eq!(r["cells"][0]["last_version"], v2);
    assert_eq!(r["cells"][1]["last_version"], created);
    // The past is in the log, not the file.
    std::fs::remove_file(root.join("n.ipynb")).unwrap();
    let r = call(&c, "get_notebook_content", at(v2)).await.ok();
    assert_eq!(sources(&r), ["a = 2", "b = 1"]);
    // Before it existed, and beyond the head.
    let r = call(&c, "get_notebook_content", at(1)).await;
    assert_eq!(r.code(), "not_found");
    let r = call(&c, "get_notebook_content", at(10_000)).await;
    assert_eq!(r.code(), "invalid_argument");
    assert!(r.error()["head"].is_number());
    c.cancel().await.unwrap();
}
