//! Locks through the real binary: every write path, all-or-nothing,
//! renewal, expiry, forced overrides, release on delete, and the rejected
//! audit records.

mod common;

use common::{call, cells, connect, create};
use serde_json::{Value, json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

async fn version(c: &common::Client, path: &str) -> u64 {
    call(c, "get_notebook_outline", json!({"path": path}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn every_write_path_refuses_another_owners_lock() {
    let dir = tmp();
    let c = connect(dir.path(), "client").await;
    let ids = create(&c, "n.ipynb", &["a", "b", "c"]).await;
    let r = call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_ids": [ids[0]], "client_name": "alice"}),
    )
    .await
    .ok();
    assert_eq!(r["locks"][0]["owner"], "alice");
    assert_eq!(r["locks"][0]["cell_id"], ids[0]);
    assert!(r["locks"][0]["expires_in_s"].as_i64().unwrap() > 590);
    assert!(r["locks"][0]["expires_at"].as_str().unwrap().ends_with('Z'));
    let v = version(&c, "n.ipynb").await;
    let before = std::fs::read(dir.path().join("n.ipynb")).unwrap();

    let bob = |extra: Value| {
        let mut args = json!({"path": "n.ipynb", "client_name": "bob"});
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };
    let attempts = [
        (
            "update_cell",
            bob(json!({"cell_id": ids[0], "source": "x"})),
        ),
        (
            "batch_update_cells",
            bob(
                json!({"updates": [{"cell_id": ids[1], "source": "y"}, {"cell_id": ids[0], "source": "x"}]}),
            ),
        ),
        ("delete_cell", bob(json!({"cell_id": ids[0]}))),
        ("delete_cell", bob(json!({"cell_ids": [ids[2], ids[0]]}))),
        (
            "change_cell_type",
            bob(json!({"cell_id": ids[0], "cell_type": "markdown"})),
        ),
        ("unlock_cells", bob(json!({"cell_ids": [ids[0]]}))),
        ("lock_cells", bob(json!({"cell_ids": [ids[1], ids[0]]}))),
    ];
    let mut rejected = Vec::new();
    for (tool, args) in attempts {
        let r = call(&c, tool, args).await;
        assert_eq!(r.code(), "locked", "{tool}");
        let e = r.error();
        assert_eq!(e["locks"][0]["cell_id"], ids[0], "{tool}");
        assert_eq!(e["locks"][0]["owner"], "alice", "{tool}");
        assert!(e["locks"][0]["expires_at"].is_string());
        assert!(e["message"].as_str().unwrap().contains("alice"));
        rejected.push(e["rejected_version"].as_u64().expect("rejected_version"));
    }
    // The first refusal is on record; retries against the same lock by the
    // same client do not flood the log.
    assert!(rejected[0] > v);
    assert!(rejected.iter().all(|r| *r == rejected[0]), "{rejected:?}");
    // Nothing changed: file, cells, notebook version, other cells unlocked.
    assert_eq!(std::fs::read(dir.path().join("n.ipynb")).unwrap(), before);
    assert_eq!(
        version(&c, "n.ipynb").await,
        v,
        "a rejected attempt does not advance current_version"
    );
    let locks = call(&c, "list_locks", json!({})).await.ok();
    assert_eq!(
        locks["locks"].as_array().unwrap().len(),
        1,
        "all-or-nothing: bob took nothing"
    );

    // The owner writes freely; reads show the lock.
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "mine", "client_name": "alice"}),
    )
    .await
    .ok();
    let content = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(content["cells"][0]["locked_by"], "alice");
    assert!(content["cells"][1].get("locked_by").is_none());
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn forced_writes_succeed_keep_the_lock_and_say_whose_lock_they_overrode() {
    let dir = tmp();
    let c = connect(dir.path(), "client").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_ids": ids, "owner": "alice"}),
    )
    .await
    .ok();
    let r = call(&c, "update_cell", json!({"path": "n.ipynb", "cell_id": ids[0], "source": "forced", "force": true, "client_name": "bob"})).await.ok();
    assert_eq!(r["overrode_lock"], "alice");
    let r = call(
        &c,
        "batch_update_cells",
        json!({"path": "n.ipynb", "force": "true", "client_name": "bob",
        "updates": [{"cell_id": ids[0], "source": "f1"}, {"cell_id": ids[1], "source": "f2"}]}),
    )
    .await
    .ok();
    assert_eq!(
        r["overrode_locks"],
        json!([{"cell_id": ids[0], "owner": "alice"}, {"cell_id": ids[1], "owner": "alice"}])
    );
    let locks = call(&c, "list_locks", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(
        locks["locks"].as_array().unwrap().len(),
        2,
        "the locks stay with alice"
    );
    assert!(
        locks["locks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["owner"] == "alice")
    );
    // Forced unlock releases it.
    let r = call(
        &c,
        "unlock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[1], "client_name": "bob", "force": true}),
    )
    .await
    .ok();
    assert_eq!(r["released"], json!([ids[1]]));
    assert_eq!(r["overrode_lock"], "alice");
    assert_eq!(cells(&c, "n.ipynb").await[0].2, "f1");
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn renew_expire_unlock_and_delete_release() {
    let dir = tmp();
    let c = connect(dir.path(), "client").await;
    let ids = create(&c, "n.ipynb", &["a", "b", "c"]).await;
    let first = call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice", "ttl_seconds": 60}),
    )
    .await
    .ok();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let renewed = call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice", "ttl_seconds": 120}),
    )
    .await
    .ok();
    assert_eq!(
        renewed["locks"][0]["acquired_at"], first["locks"][0]["acquired_at"],
        "renewal keeps acquired_at"
    );
    assert!(renewed["locks"][0]["expires_at"].as_str() > first["locks"][0]["expires_at"].as_str());

    // A short lease expires by itself: no event, gone from list_locks.
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[1], "client_name": "alice", "ttl_seconds": 1}),
    )
    .await
    .ok();
    assert_eq!(
        call(
            &c,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": ids[1], "source": "x", "client_name": "bob"})
        )
        .await
        .code(),
        "locked"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "x", "client_name": "bob"}),
    )
    .await
    .ok();
    let held: Vec<Value> = call(&c, "list_locks", json!({})).await.ok()["locks"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["cell_id"], ids[0]);

    // Unlock lists what the caller did not hold.
    let r = call(
        &c,
        "unlock_cells",
        json!({"path": "n.ipynb", "cell_ids": [ids[0], ids[2]], "client_name": "alice"}),
    )
    .await
    .ok();
    assert_eq!(r["released"], json!([ids[0]]));
    assert_eq!(r["not_locked"], json!([ids[2]]));
    let r = call(
        &c,
        "unlock_cells",
        json!({"path": "n.ipynb", "client_name": "alice"}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false, "nothing to release: no event");

    // Deleting a locked cell (by its owner) releases the lock in that event.
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[2], "client_name": "alice"}),
    )
    .await
    .ok();
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": ids[2], "client_name": "alice"}),
    )
    .await
    .ok();
    assert!(
        call(&c, "list_locks", json!({})).await.ok()["locks"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn lock_arguments_are_checked() {
    let dir = tmp();
    let c = connect(dir.path(), "anonymous").await;
    let ids = create(&c, "n.ipynb", &["a"]).await;
    let cases = [
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "anonymous"}),
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "a", "owner": "b"}),
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "a", "ttl_seconds": 0}),
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "a", "ttl_seconds": 86401}),
        json!({"path": "n.ipynb", "client_name": "a"}),
    ];
    for args in cases {
        assert_eq!(
            call(&c, "lock_cells", args.clone()).await.code(),
            "invalid_argument",
            "{args}"
        );
    }
    assert_eq!(
        call(
            &c,
            "lock_cells",
            json!({"path": "n.ipynb", "cell_id": "nonexistent", "client_name": "a"})
        )
        .await
        .code(),
        "not_found"
    );
    // Without a client_name of its own, a refused caller is told to pass one.
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": ids[0], "client_name": "alice"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x"}),
    )
    .await;
    assert_eq!(r.code(), "locked");
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("client_name")
    );
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_inserted_with_lock_are_born_locked_in_the_same_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = common::connect(root, "agent").await;
    common::create(&c, "n.ipynb", &["x = 1"]).await;
    let one = common::call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "mine", "lock": true, "ttl_seconds": 120, "client_name": "a"}),
    )
    .await
    .ok();
    let many = common::call(
        &c,
        "batch_insert_cells",
        json!({"path": "n.ipynb", "cells": [{"source": "p"}, {"source": "q"}], "lock": true, "client_name": "a"}),
    )
    .await
    .ok();
    let locks = common::call(&c, "list_locks", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let held: Vec<(&str, &str, u64)> = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["cell_id"].as_str().unwrap(),
                l["owner"].as_str().unwrap(),
                l["version"].as_u64().unwrap(),
            )
        })
        .collect();
    let id = one["cell_id"].as_str().unwrap();
    assert!(
        held.contains(&(id, "a", one["version"].as_u64().unwrap())),
        "{held:?}"
    );
    for c2 in many["cell_ids"].as_array().unwrap() {
        assert!(
            held.contains(&(c2.as_str().unwrap(), "a", many["version"].as_u64().unwrap())),
            "{held:?}"
        );
    }
    // Nobody else can write them without force.
    let r = common::call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "theirs", "client_name": "b"}),
    )
    .await;
    assert_eq!(r.code(), "locked");
    // Locking needs a name, and a ttl in range; refused calls insert nothing.
    let r = common::call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "x", "lock": true, "client_name": "anonymous"}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    let r = common::call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "x", "lock": true, "ttl_seconds": 0, "client_name": "a"}),
    )
    .await;
    assert_eq!(r.code(), "invalid_argument");
    assert_eq!(common::cells(&c, "n.ipynb").await.len(), 4);
    c.cancel().await.unwrap();
}
