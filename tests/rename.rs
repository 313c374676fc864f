//! `rename_notebook` (§10): the file moves and the notebook's whole life
//! answers to the new path (history, feed, locks, snapshots); the audit
//! shows the rename under either path; existing paths and others' locks
//! refuse it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{call, connect, create, file_sources};
use serde_json::{Value, json};

fn cli(root: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_and_its_whole_life_move_to_the_new_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "old.ipynb", &["x = 1", "y = 2"]).await;
    let edited = call(
        &c,
        "update_cell",
        json!({"path": "old.ipynb", "cell_id": ids[0], "source": "x = 10"}),
    )
    .await
    .ok();
    let before = edited["version"].as_u64().unwrap();
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "old.ipynb", "name": "s1"}),
    )
    .await
    .ok();
    call(
        &c,
        "lock_cells",
        json!({"path": "old.ipynb", "cell_ids": [ids[1]]}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "rename_notebook",
        json!({"path": "old.ipynb", "new_path": "sub/new.ipynb"}),
    )
    .await
    .ok();
    assert_eq!(r["path"], "old.ipynb");
    assert_eq!(r["new_path"], "sub/new.ipynb");
    assert_eq!(r["changed"], true);
    let v = r["version"].as_u64().unwrap();
    assert!(!root.join("old.ipynb").exists());
    assert_eq!(file_sources(root, "sub/new.ipynb"), ["x = 10", "y = 2"]);

    // The feed of the new path holds the notebook's whole life, the
    // rename last, naming both paths.
    let feed = call(&c, "get_notebook_changes", json!({"path": "sub/new.ipynb"}))
        .await
        .ok();
    let changes = feed["changes"].as_array().unwrap();
    let ops: Vec<&str> = changes
        .iter()
        .map(|x| x["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "create_notebook",
            "update_cell",
            "snapshot_notebook",
            "lock_cells",
            "rename_notebook"
        ]
    );
    assert_eq!(changes[4]["paths"], json!(["old.ipynb", "sub/new.ipynb"]));
    assert_eq!(feed["current_version"], v);
    // History, snapshots and locks answer to the new path.
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "sub/new.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries[0]["operation"], "create_notebook");
    assert_eq!(entries[0]["path"], "old.ipynb");
    assert_eq!(entries[1]["source_after"], "x = 10");
    let snaps = call(&c, "list_snapshots", json!({"path": "sub/new.ipynb"}))
        .await
        .ok();
    assert_eq!(snaps["snapshots"][0]["name"], "s1");
    let locks = call(&c, "list_locks", json!({"path": "sub/new.ipynb"}))
        .await
        .ok();
    assert_eq!(locks["locks"][0]["cell_id"], ids[1].as_str());
    assert_eq!(locks["locks"][0]["path"], "sub/new.ipynb");
    // The past reads through the rename; the old path is gone.
    let past = call(
        &c,
        "get_notebook_content",
        json!({"path": "sub/new.ipynb", "at_version": v}),
    )
    .await
    .ok();
    assert_eq!(past["cells"][0]["source"], "x = 10");
    let d = call(
        &c,
        "diff_notebooks",
        json!({"path": "old.ipynb", "version": before, "other_path": "sub/new.ipynb"}),
    )
    .await
    .ok();
    assert_eq!(d["unchanged"], 2, "{d}");
    let gone = call(&c, "get_notebook_content", json!({"path": "old.ipynb"})).await;
    assert_eq!(gone.code(), "not_found");
    // Writes go on under the new path.
    call(
        &c,
        "update_cell",
        json!({"path": "sub/new.ipynb", "cell_id": ids[0], "source": "x = 11"}),
    )
    .await
    .ok();
    c.cancel().await.unwrap();

    // The audit: the rename under either path; show before and after.
    for p in ["old.ipynb", "sub/new.ipynb"] {
        let (code, out) = cli(root, &["log", "--notebook", p]);
        assert_eq!(code, 0);
        assert!(out.contains("rename_notebook"), "{p}: {out}");
    }
    let at = v.to_string();
    let (code, out) = cli(root, &["show", "sub/new.ipynb", "--at", &at]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("x = 10"), "{out}");
    let (code, _) = cli(
        root,
        &["show", "sub/new.ipynb", "--at", &(v - 1).to_string()],
    );
    assert_eq!(code, 1);
    let (code, out) = cli(root, &["show", "old.ipynb", "--at", &(v - 1).to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("x = 10"), "{out}");
    let (code, _) = cli(root, &["show", "old.ipynb", "--at", &at]);
    assert_eq!(code, 1);
    let (code, out) = cli(root, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"kind\":\"notebook_renamed\""));
    // Blame keeps the authors of lines written before the rename.
    let (code, out) = cli(root, &["blame", "sub/new.ipynb", "--json"]);
    assert_eq!(code, 0, "{out}");
    let y: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["text"] == "y = 2")
        .expect("the line y = 2");
    assert!(y["version"].as_u64().unwrap() < before, "{y}");
    let (code, out) = cli(root, &["history", "sub/new.ipynb", &ids[0], "--json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().count() >= 3, "{out}");
    assert!(out.contains("x = 10"), "{out}");
    let (code, out) = cli(root, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_paths_and_others_locks_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "a.ipynb", &["x"]).await;
    create(&c, "b.ipynb", &["y"]).await;
    let r = call(
        &c,
        "rename_notebook",
        json!({"path": "a.ipynb", "new_path": "b.ipynb"}),
    )
    .await;
    assert_eq!(r.code(), "exists");
    assert_eq!(r.error()["path"], "b.ipynb");
    // A path the log knows, whose file was removed, is taken too.
    std::fs::remove_file(root.join("b.ipynb")).unwrap();
    let r = call(
        &c,
        "rename_notebook",
        json!({"path": "a.ipynb", "new_path": "b.ipynb"}),
    )
    .await;
    assert_eq!(r.code(), "exists");
    for (new_path, code) in [
        ("a.ipynb", "invalid_argument"),
        ("c.txt", "invalid_argument"),
        ("../c.ipynb", "outside_root"),
    ] {
        let r = call(
            &c,
            "rename_notebook",
            json!({"path": "a.ipynb", "new_path": new_path}),
        )
        .await;
        assert_eq!(r.code(), code, "{new_path}");
    }
    let r = call(
        &c,
        "rename_notebook",
        json!({"path": "none.ipynb", "new_path": "z.ipynb"}),
    )
    .await;
    assert_eq!(r.code(), "not_found");

    call(
        &c,
        "lock_cells",
        json!({"path": "a.ipynb", "cell_ids": [ids[0]], "client_name": "holder"}),
    )
    .await
    .ok();
    let args = json!({"path": "a.ipynb", "new_path": "c.ipynb", "client_name": "me"});
    let r = call(&c, "rename_notebook", args.clone()).await;
    assert_eq!(r.code(), "locked");
    assert!(r.error()["rejected_version"].as_u64().is_some());
    assert!(root.join("a.ipynb").exists() && !root.join("c.ipynb").exists());
    let mut forced = args;
    forced["force"] = json!(true);
    let r = call(&c, "rename_notebook", forced).await.ok();
    assert_eq!(r["overrode_lock"], "holder");
    // The lock moved with the notebook, still the holder's.
    let locks = call(&c, "list_locks", json!({})).await.ok();
    let held: Vec<(Value, Value)> = locks["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["path"].clone(), l["owner"].clone()))
        .collect();
    assert_eq!(held, [(json!("c.ipynb"), json!("holder"))]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_and_runs_follow_the_notebook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = common::connect_kernels(root, "agent-a").await;
    let ids = create(&c, "k.ipynb", &["a = 41"]).await;
    let ran = call(
        &c,
        "execute_cell",
        json!({"path": "k.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    assert_eq!(ran["runs"][0]["status"], "ok", "{ran}");
    call(
        &c,
        "rename_notebook",
        json!({"path": "k.ipynb", "new_path": "k2.ipynb"}),
    )
    .await
    .ok();
    let kernels = call(&c, "list_kernels", json!({})).await.ok();
    assert_eq!(kernels["kernels"][0]["path"], "k2.ipynb", "{kernels}");
    // Same kernel, same variables.
    let ins = call(
        &c,
        "insert_cell",
        json!({"path": "k2.ipynb", "source": "print(a + 1)"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "execute_cell",
        json!({"path": "k2.ipynb", "cell_id": ins["cell_id"]}),
    )
    .await
    .ok();
    assert_eq!(r["runs"][0]["outputs"][0]["text"], "42\n", "{r}");
    let runs = call(&c, "list_runs", json!({"path": "k2.ipynb"}))
        .await
        .ok();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    call(&c, "shutdown_kernel", json!({"path": "k2.ipynb"}))
        .await
        .ok();
    c.cancel().await.unwrap();
}
