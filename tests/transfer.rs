//! copy_cells and move_cells, within and across notebooks.

mod common;

use common::{call, cells, connect, create, file_json};
use serde_json::{Value, json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn write_nb(dir: &std::path::Path, name: &str, cells: Value) {
    let nb = json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(dir.join(name), serde_json::to_string_pretty(&nb).unwrap()).unwrap();
}

fn code(id: &str, src: &str) -> Value {
    json!({"cell_type": "code", "execution_count": 1, "id": id, "metadata": {"tags": [id]},
           "outputs": [{"name": "stdout", "output_type": "stream", "text": [format!("{src}\n")]}], "source": [src]})
}

async fn feed_versions(c: &common::Client, path: &str) -> Vec<u64> {
    call(c, "get_notebook_changes", json!({"path": path}))
        .await
        .ok()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn copy_and_move_across_notebooks_are_one_event_in_both_feeds() {
    let dir = tmp();
    write_nb(
        dir.path(),
        "src.ipynb",
        json!([
            code("aaaa0001", "a"),
            code("bbbb0001", "b"),
            code("cccc0001", "c")
        ]),
    );
    write_nb(
        dir.path(),
        "dst.ipynb",
        json!([code("dddd0001", "d"), code("bbbb0001", "clash")]),
    );
    let c = connect(dir.path(), "agent-a").await;
    let original_a = file_json(dir.path(), "src.ipynb")["cells"][0].clone();

    // Copy: new ids, whole content, after dest_cell_id.
    let r = call(
        &c,
        "copy_cells",
        json!({"source_path": "src.ipynb", "dest_path": "dst.ipynb",
        "cell_ids": ["aaaa0001", "cccc0001"], "dest_cell_id": "dddd0001"}),
    )
    .await
    .ok();
    let copies: Vec<String> = r["cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(r["mapping"][0]["from"], "aaaa0001");
    assert_eq!(r["mapping"][0]["to"], copies[0].as_str());
    assert!(
        copies
            .iter()
            .all(|id| id.len() == 8 && id != "aaaa0001" && id != "cccc0001")
    );
    let copy_version = r["version"].as_u64().unwrap();
    let dst = file_json(dir.path(), "dst.ipynb");
    let mut copied = dst["cells"][1].clone();
    assert_eq!(copied["id"], copies[0].as_str());
    copied["id"] = json!("aaaa0001");
    assert_eq!(copied, original_a, "metadata, outputs, count all copied");
    assert_eq!(dst["cells"][2]["source"], json!(["c"]));
    assert_eq!(
        cells(&c, "src.ipynb").await.len(),
        3,
        "a copy leaves the source alone"
    );

    // Move: keeps ids unless taken in the destination; the lock follows.
    call(
        &c,
        "lock_cells",
        json!({"path": "src.ipynb", "cell_ids": ["bbbb0001", "cccc0001"], "client_name": "alice"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "move_cells",
        json!({"source_path": "src.ipynb", "dest_path": "dst.ipynb",
        "cell_ids": ["bbbb0001", "cccc0001"], "dest_index": 0, "client_name": "alice"}),
    )
    .await
    .ok();
    let moved_ids: Vec<&str> = r["cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_ne!(moved_ids[0], "bbbb0001", "bbbb0001 is taken in dst: new id");
    assert_eq!(moved_ids[1], "cccc0001");
    let move_version = r["version"].as_u64().unwrap();
    let src_ids: Vec<String> = cells(&c, "src.ipynb")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(src_ids, ["aaaa0001"]);
    let dst_cells = cells(&c, "dst.ipynb").await;
    assert_eq!(dst_cells[0].0, moved_ids[0]);
    assert_eq!(dst_cells[0].2, "b");
    let locks = call(&c, "list_locks", json!({})).await.ok();
    let held: Vec<(String, String)> = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_owned(),
                l["cell_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        held.contains(&("dst.ipynb".into(), moved_ids[0].to_owned())),
        "{held:?}"
    );
    assert!(held.contains(&("dst.ipynb".into(), "cccc0001".into())));
    assert!(held.iter().all(|(p, _)| p == "dst.ipynb"));

    // One event, in both feeds.
    for path in ["src.ipynb", "dst.ipynb"] {
        let v = feed_versions(&c, path).await;
        assert!(
            v.contains(&copy_version) && v.contains(&move_version),
            "{path}: {v:?}"
        );
    }
    let feed = call(
        &c,
        "get_notebook_changes",
        json!({"path": "dst.ipynb", "since_version": move_version - 1}),
    )
    .await
    .ok();
    assert_eq!(
        feed["changes"][0]["paths"],
        json!(["src.ipynb", "dst.ipynb"])
    );
    assert_eq!(
        feed["changes"][0]["mapping"][1],
        json!({"from": "cccc0001", "to": "cccc0001"})
    );

    // The moved cell's history continues from its life in the source.
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "dst.ipynb", "cell_id": moved_ids[0]}),
    )
    .await
    .ok();
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries[0]["operation"], "import");
    assert_eq!(entries[0]["path"], "src.ipynb");
    let mv = entries
        .iter()
        .find(|e| e["operation"] == "move_cells")
        .unwrap();
    assert_eq!(mv["path"], "dst.ipynb");
    assert_eq!(
        mv["moved_from"],
        json!({"path": "src.ipynb", "cell_id": "bbbb0001"})
    );
    // The source names where it went.
    let r = call(
        &c,
        "update_cell",
        json!({"path": "src.ipynb", "cell_id": "bbbb0001", "source": "x"}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    assert_eq!(
        r.error()["moved_to"],
        json!({"path": "dst.ipynb", "cell_id": moved_ids[0]})
    );
    // Its life in the source ends with the move, which names where it went.
    let hs = call(
        &c,
        "get_cell_history",
        json!({"path": "src.ipynb", "cell_id": "bbbb0001"}),
    )
    .await
    .ok();
    let last = hs["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["moved_to"],
        json!({"path": "dst.ipynb", "cell_id": moved_ids[0]})
    );
    let hc = call(
        &c,
        "get_cell_history",
        json!({"path": "dst.ipynb", "cell_id": copies[0]}),
    )
    .await
    .ok();
    assert_eq!(
        hc["entries"][0]["copied_from"],
        json!({"path": "src.ipynb", "cell_id": "aaaa0001"})
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn moves_within_a_notebook_reorder_and_check_locks() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b", "c", "d"]).await;
    // [a b c d] move [d, a] to index 1 of the remaining [b c]: [b d a c].
    let r = call(
        &c,
        "move_cells",
        json!({"source_path": "n.ipynb", "cell_ids": [ids[3], ids[0]], "dest_index": 1}),
    )
    .await
    .ok();
    assert_eq!(
        r["mapping"],
        json!([{"from": ids[3], "to": ids[3]}, {"from": ids[0], "to": ids[0]}])
    );
    let srcs: Vec<String> = cells(&c, "n.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(srcs, ["b", "d", "a", "c"]);
    // After a cell, by id.
    call(
        &c,
        "move_cells",
        json!({"source_path": "n.ipynb", "cell_id": ids[1], "dest_cell_id": ids[2]}),
    )
    .await
    .ok();
    let srcs: Vec<String> = cells(&c, "n.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(srcs, ["d", "a", "c", "b"]);
    // A copy inside one notebook.
    call(
        &c,
        "copy_cells",
        json!({"source_path": "n.ipynb", "cell_id": ids[0], "dest_index": 0}),
    )
    .await
    .ok();
    assert_eq!(cells(&c, "n.ipynb").await[0].2, "a");

    assert_eq!(
        call(
            &c,
            "move_cells",
            json!({"source_path": "n.ipynb", "cell_ids": [ids[0]], "dest_cell_id": ids[0]})
        )
        .await
        .code(),
        "invalid_argument"
    );
    assert_eq!(
        call(
            &c,
            "move_cells",
            json!({"source_path": "n.ipynb", "cell_ids": [ids[0]], "dest_index": 9})
        )
        .await
        .code(),
        "not_found"
    );
    assert_eq!(
        call(
            &c,
            "copy_cells",
            json!({"source_path": "n.ipynb", "cell_ids": [ids[0]], "dest_path": "missing.ipynb"})
        )
        .await
        .code(),
        "not_found"
    );
    assert_eq!(
        call(
            &c,
            "move_cells",
            json!({"source_path": "n.ipynb", "cell_ids": [ids[0], ids[0]]})
        )
        .await
        .code(),
        "invalid_argument"
    );

    // Moving another agent's locked cell is refused unless forced; copying is not.
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[2], "client_name": "alice"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "move_cells",
        json!({"source_path": "n.ipynb", "cell_id": ids[2], "dest_index": 0, "client_name": "bob"}),
    )
    .await;
    assert_eq!(r.code(), "locked");
    call(
        &c,
        "copy_cells",
        json!({"source_path": "n.ipynb", "cell_id": ids[2], "client_name": "bob"}),
    )
    .await
    .ok();
    let r = call(&c, "move_cells", json!({"source_path": "n.ipynb", "cell_id": ids[2], "dest_index": 0, "client_name": "bob", "force": true})).await.ok();
    assert_eq!(r["overrode_lock"], "alice");
    let locks = call(&c, "list_locks", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(
        locks["locks"].as_array().unwrap().len(),
        1,
        "copies are never locked; the lock stays"
    );
    c.cancel().await.unwrap();
}
