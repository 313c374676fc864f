//! The multi-agent workflow of issue 3, end to end through the real binary:
//! two named agents (alice, bob) share one notebook set. Until several
//! server processes can share a store (issue 4), both talk to one server,
//! concurrently, each under its own client_name.

mod common;

use common::{Client, call, cells, connect, create, file_json};
use serde_json::{Value, json};

async fn feed(c: &Client, path: &str, since: u64) -> Value {
    call(
        c,
        "get_notebook_changes",
        json!({"path": path, "since_version": since, "limit": 1000}),
    )
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_snapshot_lock_edit_integrate_poll_conflict_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let c = connect(dir.path(), "harness").await;
    let ids = create(
        &c,
        "analysis.ipynb",
        &["load()", "clean()", "model()", "plot()"],
    )
    .await;
    create(&c, "report.ipynb", &["# Report"]).await;

    // 1. Setup: a snapshot, then each agent claims its cells.
    let snap = call(
        &c,
        "snapshot_notebook",
        json!({"path": "analysis.ipynb", "name": "before-parallel-work"}),
    )
    .await
    .ok();
    let snap_version = snap["version"].as_u64().unwrap();
    let (la, lb) = tokio::join!(
        call(
            &c,
            "lock_cells",
            json!({"path": "analysis.ipynb", "cell_ids": [ids[0], ids[1]], "owner": "alice"})
        ),
        call(
            &c,
            "lock_cells",
            json!({"path": "analysis.ipynb", "cell_ids": [ids[2], ids[3]], "owner": "bob"})
        ),
    );
    assert_eq!(la.ok()["locks"].as_array().unwrap().len(), 2);
    assert_eq!(lb.ok()["locks"].as_array().unwrap().len(), 2);

    // 2. Work, concurrently: each edits its own cells and inserts by id.
    let alice = async {
        let u = call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[1], "source": "clean(strict=True)", "client_name": "alice"})).await.ok();
        let i = call(&c, "insert_cell", json!({"path": "analysis.ipynb", "after_cell_id": ids[1], "source": "validate()", "client_name": "alice"})).await.ok();
        (u, i)
    };
    let bob = async {
        let u = call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[2], "source": "model(lr=0.1)", "client_name": "bob"})).await.ok();
        let i = call(&c, "insert_cell", json!({"path": "analysis.ipynb", "after_cell_id": ids[2], "source": "evaluate()", "client_name": "bob"})).await.ok();
        (u, i)
    };
    let ((au, ai), (bu, bi)) = tokio::join!(alice, bob);
    let validate = ai["cell_id"].as_str().unwrap().to_owned();
    let evaluate = bi["cell_id"].as_str().unwrap().to_owned();
    let srcs: Vec<String> = cells(&c, "analysis.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(
        srcs,
        [
            "load()",
            "clean(strict=True)",
            "validate()",
            "model(lr=0.1)",
            "evaluate()",
            "plot()"
        ],
        "no index collisions"
    );
    let mut versions = [&au, &ai, &bu, &bi].map(|r| r["version"].as_u64().unwrap());
    versions.sort();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "distinct versions"
    );

    // 3. Integration: copy and move into the report, one event each, in both feeds.
    let report_head = cells(&c, "report.ipynb").await[0].0.clone();
    let copy = call(
        &c,
        "copy_cells",
        json!({"source_path": "analysis.ipynb", "dest_path": "report.ipynb",
        "cell_ids": [ids[3]], "dest_cell_id": report_head, "client_name": "bob"}),
    )
    .await
    .ok();
    let mv = call(
        &c,
        "move_cells",
        json!({"source_path": "analysis.ipynb", "dest_path": "report.ipynb",
        "cell_ids": [evaluate.clone()], "client_name": "bob"}),
    )
    .await
    .ok();
    for v in [
        copy["version"].as_u64().unwrap(),
        mv["version"].as_u64().unwrap(),
    ] {
        for path in ["analysis.ipynb", "report.ipynb"] {
            let f = feed(&c, path, 0).await;
            assert!(
                f["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["version"] == v),
                "{v} in {path}"
            );
        }
    }
    let report: Vec<String> = cells(&c, "report.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(report, ["# Report", "plot()", "evaluate()"]);

    // 4. Validation: the feed since the snapshot, and the diff against it.
    let since = feed(&c, "analysis.ipynb", snap_version).await;
    let ops: Vec<&str> = since["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops.iter().filter(|o| **o == "lock_cells").count(), 2);
    assert!(ops.contains(&"copy_cells") && ops.contains(&"move_cells"));
    let clients: Vec<&str> = since["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client_name"].as_str().unwrap())
        .collect();
    assert!(clients.contains(&"alice") && clients.contains(&"bob"));
    let d = call(
        &c,
        "diff_snapshot",
        json!({"path": "analysis.ipynb", "name": "before-parallel-work"}),
    )
    .await
    .ok();
    let modified: Vec<&str> = d["modified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["cell_id"].as_str().unwrap())
        .collect();
    assert_eq!(modified.len(), 2);
    assert!(modified.contains(&ids[1].as_str()) && modified.contains(&ids[2].as_str()));
    assert_eq!(d["added"][0]["cell_id"], validate.as_str());

    // 5. Polling: alice remembers current_version and waits; bob writes.
    let mark = since["current_version"].as_u64().unwrap();
    let (polled, wrote) = tokio::join!(
        call(
            &c,
            "get_notebook_changes",
            json!({"path": "analysis.ipynb", "since_version": mark, "wait_ms": 30_000})
        ),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[2], "source": "model(lr=0.01)", "client_name": "bob"})).await.ok()
        }
    );
    let polled = polled.ok();
    assert_eq!(polled["changes"][0]["version"], wrote["version"]);
    assert_eq!(polled["changes"][0]["client_name"], "bob");

    // 6. Conflicts: bob on alice's locked cell is refused, then forces.
    let refused = call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[0], "source": "bob was here", "client_name": "bob"})).await;
    assert_eq!(refused.code(), "locked");
    assert_eq!(refused.error()["locks"][0]["owner"], "alice");
    let forced = call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[0], "source": "load(fast=True)", "client_name": "bob", "force": true})).await.ok();
    assert_eq!(forced["overrode_lock"], "alice");
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "analysis.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let last_two: Vec<&Value> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(2)
        .collect();
    assert_eq!(last_two[0]["overrode_lock"], "alice");
    assert_eq!(last_two[1]["rejected"], true);
    // Without locks the later write wins whole-cell.
    call(
        &c,
        "unlock_cells",
        json!({"path": "analysis.ipynb", "client_name": "alice"}),
    )
    .await
    .ok();
    call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[0], "source": "first", "client_name": "alice"})).await.ok();
    call(&c, "update_cell", json!({"path": "analysis.ipynb", "cell_id": ids[0], "source": "second", "client_name": "bob"})).await.ok();
    assert_eq!(cells(&c, "analysis.ipynb").await[0].2, "second");
    // A deleted cell comes back whole.
    call(
        &c,
        "delete_cell",
        json!({"path": "analysis.ipynb", "cell_id": validate, "client_name": "bob"}),
    )
    .await
    .ok();
    let back = call(
        &c,
        "recover_cell",
        json!({"path": "analysis.ipynb", "cell_id": validate, "client_name": "alice"}),
    )
    .await
    .ok();
    assert_eq!(back["index"], 2);

    // 7. Recovery: roll back, with the automatic backup saved first.
    let current = cells(&c, "analysis.ipynb").await;
    let before = call(
        &c,
        "get_notebook_outline",
        json!({"path": "analysis.ipynb"}),
    )
    .await
    .ok()["current_version"]
        .as_u64()
        .unwrap();
    let r = call(&c, "restore_snapshot", json!({"path": "analysis.ipynb", "name": "before-parallel-work", "client_name": "alice", "force": true})).await.ok();
    assert_eq!(r["backup_snapshot"], format!("pre-restore-{before}"));
    let srcs: Vec<String> = cells(&c, "analysis.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(srcs, ["load()", "clean()", "model()", "plot()"]);
    let d = call(
        &c,
        "diff_snapshot",
        json!({"path": "analysis.ipynb", "name": r["backup_snapshot"]}),
    )
    .await
    .ok();
    assert!(
        d["deleted"].as_array().unwrap().len() + d["modified"].as_array().unwrap().len() > 0,
        "the backup differs from the restored state"
    );
    let backup_cells = current.len();
    let list = call(&c, "list_snapshots", json!({"path": "analysis.ipynb"}))
        .await
        .ok();
    let backup = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == r["backup_snapshot"])
        .unwrap()
        .clone();
    assert_eq!(backup["cell_count"], backup_cells);
    // Every file written along the way is a valid notebook with ids.
    for path in ["analysis.ipynb", "report.ipynb"] {
        let f = file_json(dir.path(), path);
        assert_eq!(f["nbformat_minor"], 5);
        assert!(
            f["cells"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["id"].is_string())
        );
    }
    c.cancel().await.unwrap();
}
