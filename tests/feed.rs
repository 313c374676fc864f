//! Change feed (paging, long-poll), cell history and recovery, through the
//! real binary.

mod common;

use std::time::Duration;

use common::{call, cells, connect, create, file_json};
use serde_json::{Value, json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test]
async fn feed_pages_cover_every_version_once_in_order() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    create(&c, "other.ipynb", &["x"]).await;
    let mut mine = vec![1u64];
    for i in 0..300 {
        // Interleave another notebook's events: holes in this feed, not loss.
        if i % 10 == 0 {
            call(
                &c,
                "insert_cell",
                json!({"path": "other.ipynb", "source": format!("o{i}")}),
            )
            .await
            .ok();
        }
        let r = call(
            &c,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": ids[i % 2], "source": format!("v{i}")}),
        )
        .await
        .ok();
        mine.push(r["version"].as_u64().unwrap());
    }
    // A refused attempt takes a version but is not a change.
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "owner"}),
    )
    .await
    .ok();
    mine.push(mine.last().unwrap() + 1);
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "no", "client_name": "intruder"}),
    )
    .await;
    assert_eq!(r.code(), "locked");
    let rejected = r.error()["rejected_version"].as_u64().unwrap();

    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        let page = call(
            &c,
            "get_notebook_changes",
            json!({"path": "n.ipynb", "since_version": since, "limit": 37}),
        )
        .await
        .ok();
        let changes = page["changes"].as_array().unwrap();
        assert!(changes.len() <= 37);
        for ch in changes {
            seen.push(ch["version"].as_u64().unwrap());
            assert!(ch["timestamp"].as_str().unwrap().ends_with('Z'));
            assert!(ch["summary"].as_str().unwrap().chars().count() <= 200);
        }
        since = page["next_since_version"].as_u64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            assert_eq!(since, page["current_version"].as_u64().unwrap());
            break;
        }
        assert_eq!(since, *seen.last().unwrap());
    }
    assert_eq!(seen, mine, "every change exactly once, ascending");
    assert!(!seen.contains(&rejected));
    let first = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "limit": 2}),
    )
    .await
    .ok();
    assert_eq!(first["changes"][0]["operation"], "create_notebook");
    assert_eq!(first["changes"][1]["client_name"], "agent-a");
    assert_eq!(first["changes"][1]["cell_ids"], json!([ids[0]]));

    let r = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": 100_000}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    assert!(r.error()["head"].as_u64().unwrap() >= rejected);
    // Limits beyond the maximum are clamped, not refused.
    call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "limit": 5000, "wait_ms": 999_999}),
    )
    .await
    .ok();
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_a_write_to_its_notebook_only() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a"]).await;
    create(&c, "other.ipynb", &["x"]).await;
    let head = call(&c, "get_notebook_changes", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap();

    // Nothing arrives: returns empty after the wait.
    let r = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": head, "wait_ms": 150}),
    )
    .await
    .ok();
    assert!(r["changes"].as_array().unwrap().is_empty());
    assert_eq!(r["waited"], true);

    // A write to another notebook does not end the wait; one to this
    // notebook does, and the same connection stays usable meanwhile.
    let poll = call(
        &c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": head, "wait_ms": 30_000}),
    );
    let writes = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(
            &c,
            "insert_cell",
            json!({"path": "other.ipynb", "source": "noise"}),
        )
        .await
        .ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&c, "update_cell", json!({"path": "n.ipynb", "cell_id": ids[0], "source": "new", "client_name": "agent-b"})).await.ok()
    };
    let (polled, written) = tokio::join!(poll, writes);
    let polled = polled.ok();
    let changes = polled["changes"].as_array().unwrap();
    assert_eq!(
        changes.len(),
        1,
        "woke with exactly the write to this notebook: {polled}"
    );
    assert_eq!(changes[0]["version"], written["version"]);
    assert_eq!(changes[0]["client_name"], "agent-b");
    assert_eq!(polled["waited"], true);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn history_lists_every_event_of_a_cell_in_order() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["first", "other"]).await;
    let cell = &ids[0];
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": cell, "source": "second"}),
    )
    .await
    .ok();
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "not this cell"}),
    )
    .await
    .ok();
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": cell, "client_name": "alice"}),
    )
    .await
    .ok();
    assert_eq!(
        call(
            &c,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": cell, "source": "x", "client_name": "bob"})
        )
        .await
        .code(),
        "locked"
    );
    call(&c, "update_cell", json!({"path": "n.ipynb", "cell_id": cell, "source": "third", "client_name": "bob", "force": true})).await.ok();
    call(&c, "change_cell_type", json!({"path": "n.ipynb", "cell_id": cell, "cell_type": "markdown", "client_name": "alice"})).await.ok();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": cell, "client_name": "alice"}),
    )
    .await
    .ok();

    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": &cell[..5]}),
    )
    .await
    .ok();
    assert_eq!(h["cell_id"], *cell);
    assert_eq!(h["deleted"], true);
    let ops: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "create_notebook",
            "update_cell",
            "lock_cells",
            "update_cell",
            "update_cell",
            "change_cell_type",
            "delete_cell"
        ]
    );
    let e = &h["entries"];
    assert_eq!(e[0]["source_after"], "first");
    assert_eq!(e[1]["source_before"], "first");
    assert_eq!(e[1]["source_after"], "second");
    assert_eq!(e[3]["rejected"], true);
    assert_eq!(e[3]["client_name"], "bob");
    assert_eq!(e[4]["overrode_lock"], "alice");
    assert_eq!(e[4]["source_after"], "third");
    assert_eq!(e[5]["cell_type_before"], "code");
    assert_eq!(e[5]["cell_type_after"], "markdown");
    assert_eq!(e[6]["source_before"], "third");
    let versions: Vec<u64> = e
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_u64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]));

    // limit keeps the most recent; before_version pages back.
    let h2 = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": cell, "limit": 2}),
    )
    .await
    .ok();
    assert_eq!(h2["has_more"], true);
    assert_eq!(h2["entries"][1]["operation"], "delete_cell");
    let h3 = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": cell, "before_version": versions[2]}),
    )
    .await
    .ok();
    assert_eq!(h3["entries"].as_array().unwrap().len(), 2);
    assert_eq!(h3["has_more"], false);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn recover_brings_back_the_whole_cell_in_its_place() {
    let dir = tmp();
    let nb = json!({"cells": [
        {"cell_type": "markdown", "id": "head0001", "metadata": {}, "source": ["# T"]},
        {"cell_type": "code", "execution_count": 3, "id": "plot0001", "metadata": {"tags": ["keep"]},
         "outputs": [{"name": "stdout", "output_type": "stream", "text": ["42\n"]}], "source": ["print(42)"]},
        {"cell_type": "code", "execution_count": null, "id": "tail0001", "metadata": {}, "outputs": [], "source": ["end"]}
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(
        dir.path().join("n.ipynb"),
        serde_json::to_string_pretty(&nb).unwrap(),
    )
    .unwrap();
    let c = connect(dir.path(), "agent-a").await;
    let original = file_json(dir.path(), "n.ipynb")["cells"][1].clone();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": "plot0001"}),
    )
    .await
    .ok();
    call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "new first", "index": 0}),
    )
    .await
    .ok();

    let r = call(
        &c,
        "recover_cell",
        json!({"path": "n.ipynb", "cell_id": "plot"}),
    )
    .await
    .ok();
    assert_eq!(r["cell_id"], "plot0001");
    assert_eq!(r["index"], 2, "after its former predecessor head0001");
    let f = file_json(dir.path(), "n.ipynb");
    assert_eq!(
        f["cells"][2], original,
        "type, source, metadata, outputs, count all back"
    );
    let r = call(
        &c,
        "recover_cell",
        json!({"path": "n.ipynb", "cell_id": "plot0001"}),
    )
    .await;
    assert_eq!(r.code(), "not_deleted");
    assert_eq!(
        call(
            &c,
            "recover_cell",
            json!({"path": "n.ipynb", "cell_id": "nope0000"})
        )
        .await
        .code(),
        "not_found"
    );

    // Predecessor deleted too: the cell goes after the nearest live one.
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": "tail0001"}),
    )
    .await
    .ok();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": "plot0001"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "recover_cell",
        json!({"path": "n.ipynb", "cell_id": "tail0001"}),
    )
    .await
    .ok();
    assert_eq!(r["index"], 2, "after head0001, since plot0001 is deleted");
    // An explicit place wins.
    let r = call(
        &c,
        "recover_cell",
        json!({"path": "n.ipynb", "cell_id": "plot0001", "index": 0}),
    )
    .await
    .ok();
    assert_eq!(r["index"], 0);
    let ids: Vec<String> = cells(&c, "n.ipynb")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(ids[0], "plot0001");
    assert_eq!(ids[2..], ["head0001".to_string(), "tail0001".to_string()]);
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": "plot0001"}),
    )
    .await
    .ok();
    let ops: Vec<Value> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].clone())
        .collect();
    assert_eq!(
        ops,
        [
            json!("import"),
            json!("delete_cell"),
            json!("recover_cell"),
            json!("delete_cell"),
            json!("recover_cell")
        ]
    );
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_path_the_feed_covers_every_notebook_and_wakes_on_any() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = common::connect(root, "watcher").await;
    common::create(&c, "a.ipynb", &["a"]).await;
    common::create(&c, "sub/b.ipynb", &["b"]).await;
    let all = common::call(&c, "get_notebook_changes", json!({}))
        .await
        .ok();
    assert!(all.get("path").is_none(), "{all}");
    let paths: Vec<&str> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["paths"][0].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.ipynb", "sub/b.ipynb"]);
    let head = all["current_version"].as_u64().unwrap();
    assert_eq!(all["next_since_version"], head);
    // Paging: one at a time, nothing skipped.
    let first = common::call(&c, "get_notebook_changes", json!({"limit": 1}))
        .await
        .ok();
    assert_eq!(first["has_more"], true);
    assert_eq!(first["changes"].as_array().unwrap().len(), 1);
    // A long-poll on every notebook wakes on a write to either.
    let other = common::connect(root, "writer").await;
    let wait = common::call(
        &c,
        "get_notebook_changes",
        json!({"since_version": head, "wait_ms": 20000}),
    );
    let write = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        common::call(
            &other,
            "insert_cell",
            json!({"path": "sub/b.ipynb", "source": "new"}),
        )
        .await
        .ok()
    };
    let (woke, wrote) = tokio::join!(wait, write);
    let woke = woke.ok();
    assert_eq!(woke["waited"], true);
    assert_eq!(woke["changes"][0]["version"], wrote["version"]);
    assert_eq!(woke["changes"][0]["paths"][0], "sub/b.ipynb");
    other.cancel().await.unwrap();
    c.cancel().await.unwrap();
}
