//! Snapshot, diff and restore through the real binary.

mod common;

use common::{call, cells, connect, create, file_json};
use serde_json::{Value, json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn ids_of(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["cell_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn snapshot_diff_restore_round_trip_and_restore_the_backup() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 2", "c = 3", "d = 4"]).await;
    let snap = call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "before-parallel-work", "description": "start"}),
    )
    .await
    .ok();
    assert_eq!(snap["cell_count"], 4);
    let hash = snap["snapshot_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);
    let before_file = file_json(dir.path(), "n.ipynb");

    // Equal content, equal hash.
    let again = call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "same"}),
    )
    .await
    .ok();
    assert_eq!(again["snapshot_hash"], hash.as_str());
    let r = call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "same"}),
    )
    .await;
    assert_eq!(r.code(), "exists");
    assert_eq!(r.error()["snapshot_hash"], hash.as_str());
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "same", "overwrite": true}),
    )
    .await
    .ok();

    // Work: modify b, delete c, add e, retype d, and move a to the end
    // (through an outside reorder, as a person would).
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "b = 20\nb += 1"}),
    )
    .await
    .ok();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": ids[2]}),
    )
    .await
    .ok();
    let e = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "e = 5", "after_cell_id": ids[1]}),
    )
    .await
    .ok();
    let e = e["cell_id"].as_str().unwrap().to_owned();
    call(
        &c,
        "change_cell_type",
        json!({"path": "n.ipynb", "cell_id": ids[3], "cell_type": "markdown"}),
    )
    .await
    .ok();
    let mut f = file_json(dir.path(), "n.ipynb");
    let first = f["cells"].as_array_mut().unwrap().remove(0);
    f["cells"].as_array_mut().unwrap().push(first);
    std::fs::write(
        dir.path().join("n.ipynb"),
        serde_json::to_string_pretty(&f).unwrap(),
    )
    .unwrap();

    let d = call(
        &c,
        "diff_snapshot",
        json!({"path": "n.ipynb", "name": "before-parallel-work"}),
    )
    .await
    .ok();
    assert_eq!(ids_of(&d, "added"), vec![e.clone()]);
    assert_eq!(d["added"][0]["source"], "e = 5");
    assert_eq!(ids_of(&d, "deleted"), vec![ids[2].clone()]);
    assert_eq!(d["deleted"][0]["source"], "c = 3");
    let modified = d["modified"].as_array().unwrap();
    assert_eq!(modified.len(), 2);
    let mb = modified.iter().find(|m| m["cell_id"] == ids[1]).unwrap();
    assert_eq!(mb["changed"], json!(["source"]));
    let diff = mb["diff"].as_str().unwrap();
    assert!(
        diff.contains("-b = 2") && diff.contains("+b = 20") && diff.contains("+b += 1"),
        "{diff}"
    );
    let md = modified.iter().find(|m| m["cell_id"] == ids[3]).unwrap();
    assert!(
        md["changed"]
            .as_array()
            .unwrap()
            .contains(&json!("cell_type"))
    );
    assert_eq!(md["diff"], "", "source did not change");
    assert_eq!(
        d["moved"],
        json!([{"cell_id": ids[0], "from_index": 0, "to_index": 3}])
    );
    assert_eq!(d["unchanged"], 0);

    // Restore: one event, backup first, content exactly as at the snapshot.
    let current = call(&c, "get_notebook_outline", json!({"path": "n.ipynb"}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap();
    let r = call(
        &c,
        "restore_snapshot",
        json!({"path": "n.ipynb", "name": "before-parallel-work"}),
    )
    .await
    .ok();
    assert_eq!(r["backup_snapshot"], format!("pre-restore-{current}"));
    assert_eq!(r["cell_count"], 4);
    assert_eq!(r["version"].as_u64().unwrap(), current + 1, "one event");
    let restored = file_json(dir.path(), "n.ipynb");
    assert_eq!(restored["cells"], before_file["cells"]);
    let d = call(
        &c,
        "diff_snapshot",
        json!({"path": "n.ipynb", "name": "before-parallel-work"}),
    )
    .await
    .ok();
    assert_eq!(d["unchanged"], 4);
    // The cell added after the snapshot was deleted, recoverably.
    call(&c, "recover_cell", json!({"path": "n.ipynb", "cell_id": e}))
        .await
        .ok();
    call(&c, "delete_cell", json!({"path": "n.ipynb", "cell_id": e}))
        .await
        .ok();

    // Restoring the automatic backup brings the work back.
    let backup = r["backup_snapshot"].as_str().unwrap().to_owned();
    let list = call(&c, "list_snapshots", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let names: Vec<&str> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before-parallel-work", "same", backup.as_str()]);
    assert!(
        list["snapshots"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(list["snapshots"][0]["description"], "start");
    call(
        &c,
        "restore_snapshot",
        json!({"path": "n.ipynb", "name": backup}),
    )
    .await
    .ok();
    let now: Vec<(String, String, String)> = cells(&c, "n.ipynb").await;
    let srcs: Vec<&str> = now.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(srcs, ["b = 20\nb += 1", "e = 5", "d = 4", "a = 1"]);
    assert_eq!(now[2].1, "markdown");
    assert_eq!(now[1].0, e, "ids come back too");
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn restore_respects_locks_and_snapshot_arguments_are_checked() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "s1"}),
    )
    .await
    .ok();
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "changed"}),
    )
    .await
    .ok();
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "restore_snapshot",
        json!({"path": "n.ipynb", "name": "s1", "client_name": "bob"}),
    )
    .await;
    assert_eq!(r.code(), "locked");
    assert_eq!(cells(&c, "n.ipynb").await[0].2, "changed");
    // A lock on a cell the restore does not touch does not stop it.
    call(
        &c,
        "unlock_cells",
        json!({"path": "n.ipynb", "client_name": "alice"}),
    )
    .await
    .ok();
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[1], "client_name": "alice"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "restore_snapshot",
        json!({"path": "n.ipynb", "name": "s1", "client_name": "bob"}),
    )
    .await
    .ok();
    assert!(r.get("overrode_lock").is_none());
    assert_eq!(cells(&c, "n.ipynb").await[0].2, "a");

    for (args, code) in [
        (
            json!({"path": "n.ipynb", "name": "pre-restore-1"}),
            "invalid_argument",
        ),
        (
            json!({"path": "n.ipynb", "name": "has space"}),
            "invalid_argument",
        ),
        (json!({"path": "n.ipynb", "name": ""}), "invalid_argument"),
        (
            json!({"path": "n.ipynb", "name": "x".repeat(129)}),
            "invalid_argument",
        ),
    ] {
        assert_eq!(
            call(&c, "snapshot_notebook", args.clone()).await.code(),
            code,
            "{args}"
        );
    }
    let r = call(
        &c,
        "diff_snapshot",
        json!({"path": "n.ipynb", "name": "nope"}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    assert!(
        r.error()["available"]
            .as_array()
            .unwrap()
            .contains(&json!("s1"))
    );
    assert_eq!(
        call(
            &c,
            "restore_snapshot",
            json!({"path": "n.ipynb", "name": "nope"})
        )
        .await
        .code(),
        "not_found"
    );
    c.cancel().await.unwrap();
}

/// A restore onto the snapshot's own content appends nothing and takes no
/// backup: the result says `changed: false` and has no `backup_snapshot`
/// (its schema says a string, so it is left out rather than null).
#[tokio::test]
async fn restoring_the_current_content_changes_nothing_and_names_no_backup() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    create(&c, "n.ipynb", &["a = 1"]).await;
    let snap = call(
        &c,
        "snapshot_notebook",
        json!({"path": "n.ipynb", "name": "s"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "restore_snapshot",
        json!({"path": "n.ipynb", "name": "s"}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(r["current_version"], snap["version"], "{r}");
    assert_eq!(r["cell_count"], 1, "{r}");
    assert!(r.get("backup_snapshot").is_none(), "{r}");
    assert!(r.get("version").is_none(), "{r}");
    let listed = call(&c, "list_snapshots", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 1, "{listed}");
    c.cancel().await.unwrap();
}
