//! Outside programs saving a notebook while nbledger serves it: a save in
//! progress is waited for, not reported as a broken notebook (§8.8).

mod common;

use std::time::{Duration, SystemTime};

use common::{call, connect, create};
use serde_json::json;

/// A complete notebook file's bytes, as the server wrote it.
fn file_bytes(root: &std::path::Path, path: &str) -> Vec<u8> {
    std::fs::read(root.join(path)).expect("notebook file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_in_progress_is_read_once_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let c = connect(&root, "reader").await;
    create(&c, "n.ipynb", &["a = 1", "b = 2"]).await;
    let full = file_bytes(&root, "n.ipynb");
    // An outside save that changes a cell, caught half-way: truncated in
    // place, rewritten in two steps as Jupyter does.
    let mut edited: serde_json::Value = serde_json::from_slice(&full).unwrap();
    edited["cells"][1]["source"] = json!(["b = 3"]);
    let edited = serde_json::to_vec_pretty(&edited).unwrap();
    std::fs::write(root.join("n.ipynb"), &edited[..edited.len() / 2]).unwrap();
    let finisher = {
        let root = root.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            std::fs::write(root.join("n.ipynb"), &edited).unwrap();
        })
    };
    let r = call(&c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
    finisher.join().unwrap();
    let r = r.ok();
    assert_eq!(
        r["cells"][1]["source"], "b = 3",
        "the completed save is read"
    );
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_stays_partial_says_it_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "reader").await;
    create(&c, "n.ipynb", &["a = 1"]).await;
    let full = file_bytes(root, "n.ipynb");
    std::fs::write(root.join("n.ipynb"), &full[..full.len() / 2]).unwrap();
    let r = call(&c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
    assert_eq!(r.code(), "invalid_notebook");
    assert_eq!(r.error()["being_written"], true);
    let msg = r.error()["message"].as_str().unwrap();
    assert!(
        msg.contains("being written") && msg.contains("retry"),
        "{msg}"
    );
    // A write is refused the same way and changes nothing.
    let w = call(&c, "insert_cell", json!({"path": "n.ipynb", "source": "x"})).await;
    assert_eq!(w.code(), "invalid_notebook");
    assert_eq!(file_bytes(root, "n.ipynb"), &full[..full.len() / 2]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_broken_long_ago_is_invalid_at_once_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "reader").await;
    create(&c, "n.ipynb", &["a = 1"]).await;
    let full = file_bytes(root, "n.ipynb");
    let broken = &full[..full.len() / 2];
    std::fs::write(root.join("n.ipynb"), broken).unwrap();
    let old = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(root.join("n.ipynb"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let r = call(&c, "get_notebook_content", json!({"path": "n.ipynb"})).await;
    assert_eq!(r.code(), "invalid_notebook");
    assert!(r.error().get("being_written").is_none(), "{}", r.value);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("fix the file"),
        "{}",
        r.value
    );
    assert_eq!(file_bytes(root, "n.ipynb"), broken);
    c.cancel().await.unwrap();
}
