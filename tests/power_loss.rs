//! After a power loss a notebook file may read back empty, cut short,
//! zero-filled or older than the log (files are not fsynced; the log is).
//! Start-up after an unclean stop repairs such a file from the log and
//! records the repair; a person's broken file is left alone (§8.8).

mod common;

use std::path::Path;
use std::process::Command;

use common::{call, connect_child, create};
use serde_json::{Value, json};

/// A server on `root` that is killed (an unclean stop) once `f` is done.
async fn serve_then_kill<T>(root: &Path, f: impl AsyncFnOnce(&common::Client) -> T) -> T {
    let (c, mut child) = connect_child(root, "agent").await;
    let out = f(&c).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    out
}

fn backups(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".nbledger-damaged-"))
        .collect()
}

async fn last_change(c: &common::Client) -> Value {
    let r = call(
        c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": 0, "limit": 1000}),
    )
    .await
    .ok();
    r["changes"].as_array().unwrap().last().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_after_an_unclean_stop_are_repaired_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = root.join("n.ipynb");
    let (older, latest) = serve_then_kill(root, async |c| {
        let ids = create(c, "n.ipynb", &["a = 1", "b = 2", "c = 3"]).await;
        let older = std::fs::read(&path).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let src = format!("x{i} = 'written before the power loss'");
            call(
                c,
                "update_cell",
                json!({"path": "n.ipynb", "cell_id": id, "source": src}),
            )
            .await
            .ok();
        }
        (older, std::fs::read(&path).unwrap())
    })
    .await;
    let n = latest.len();
    let mut zero_run = latest.clone();
    zero_run[n / 3..2 * n / 3].fill(0);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("empty", Vec::new(), false),
        ("one byte", latest[..1].to_vec(), false),
        ("half", latest[..n / 2].to_vec(), false),
        ("all but the last byte", latest[..n - 1].to_vec(), false),
        ("zero-filled", vec![0; n], true),
        ("zero-filled half", vec![0; n / 2], true),
        ("a zero run inside", zero_run, true),
        ("the file of an earlier version", older, true),
    ];
    for (what, damaged, kept) in cases {
        std::fs::write(&path, &damaged).unwrap();
        let before = backups(root).len();
        serve_then_kill(root, async |c| {
            let r = call(c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
            assert!(!r.is_error, "{what}: {}", r.value);
            assert_eq!(
                r.value["cells"][2]["source"], "x2 = 'written before the power loss'",
                "{what}"
            );
            let change = last_change(c).await;
            assert_eq!(change["operation"], "repair_file", "{what}: {change}");
            assert_eq!(change["client_name"], "nbledger", "{what}");
        })
        .await;
        assert_eq!(
            std::fs::read(&path).unwrap(),
            latest,
            "{what}: file repaired"
        );
        let added = backups(root).len() - before;
        assert_eq!(added, usize::from(kept), "{what}: damaged bytes kept aside");
    }
    let verify = Command::new(common::bin())
        .args(["verify", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_that_is_not_damage_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = root.join("n.ipynb");
    let latest = serve_then_kill(root, async |c| {
        create(c, "n.ipynb", &["a = 1"]).await;
        std::fs::read(&path).unwrap()
    })
    .await;
    // A person's unresolved merge, after an unclean stop: not the log's.
    let text = String::from_utf8(latest.clone()).unwrap();
    let merge = text.replacen("\"a = 1\"", "<<<<<<< HEAD\n\"a = 1\"", 1);
    std::fs::write(&path, &merge).unwrap();
    serve_then_kill(root, async |c| {
        let r = call(c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
        assert_eq!(r.code(), "invalid_notebook");
    })
    .await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), merge);
    assert!(backups(root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_stop_an_emptied_file_is_an_outside_edit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (c, mut child) = connect_child(root, "agent").await;
    create(&c, "n.ipynb", &["a = 1"]).await;
    // Closing stdin stops the server cleanly.
    c.cancel().await.unwrap();
    assert!(child.wait().await.unwrap().success());
    // A clean stop leaves no doubt about the files: someone emptied it.
    std::fs::write(root.join("n.ipynb"), b"").unwrap();
    let (c, mut child) = connect_child(root, "agent").await;
    let r = call(&c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
    assert_eq!(r.code(), "invalid_notebook");
    c.cancel().await.unwrap();
    child.wait().await.unwrap();
    assert_eq!(std::fs::read(root.join("n.ipynb")).unwrap(), b"");
    assert!(backups(root).is_empty());
}
