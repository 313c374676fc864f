//! `revert_cell` (§10): one new event puts back a cell's type, source and
//! metadata from any version; outputs stay; locks and CAS apply.

mod common;

use common::{call, cells, connect, create};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_goes_back_to_any_version_as_one_new_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent").await;
    let ids = create(&c, "n.ipynb", &["x = 1", "y = 1"]).await;
    let v1 = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok()["version"]
        .as_u64()
        .unwrap();
    call(
        &c,
        "change_cell_type",
        json!({"path": "n.ipynb", "cell_id": ids[0], "cell_type": "markdown"}),
    )
    .await
    .ok();
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "# three"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "revert_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "to_version": v1}),
    )
    .await
    .ok();
    let reverted = r["version"].as_u64().unwrap();
    let now = cells(&c, "n.ipynb").await;
    assert_eq!(
        (now[0].1.as_str(), now[0].2.as_str()),
        ("code", "x = 2"),
        "type and source as at v1"
    );
    assert_eq!(now[1].2, "y = 1", "other cells untouched");
    // Again: nothing to change, nothing appended.
    let r = call(
        &c,
        "revert_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "to_version": v1}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false);
    assert_eq!(r["current_version"], reverted);
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let last = h["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["operation"], "revert_cell");
    assert_eq!(last["source_after"], "x = 2");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_without_the_cell_is_not_found_and_locks_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent").await;
    let ids = create(&c, "n.ipynb", &["x = 1"]).await;
    let created = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap();
    let new = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "later"}),
    )
    .await
    .ok()["cell_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &c,
        "revert_cell",
        json!({"path": "n.ipynb", "cell_id": new, "to_version": created}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    let r = call(
        &c,
        "revert_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "to_version": 99_999}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 5"}),
    )
    .await
    .ok();
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "holder"}),
    )
    .await
    .ok();
    let args = json!({"path": "n.ipynb", "cell_id": ids[0], "to_version": created, "client_name": "other"});
    assert_eq!(call(&c, "revert_cell", args.clone()).await.code(), "locked");
    let mut forced = args;
    forced["force"] = json!(true);
    let r = call(&c, "revert_cell", forced).await.ok();
    assert_eq!(r["overrode_lock"], "holder");
    c.cancel().await.unwrap();
}
