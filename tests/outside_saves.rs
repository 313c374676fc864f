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

/// A server whose `before_swap` pause point the test can hold, and the
/// folder through which it does.
async fn paused_server(root: &std::path::Path) -> (common::Client, tempfile::TempDir) {
    use rmcp::ServiceExt;
    use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
    let pause = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .env("NBLEDGER_PAUSE_DIR", pause.path());
    let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("agent", "0.1"),
    );
    (config.serve(transport).await.unwrap(), pause)
}

/// Runs `update` with the server held between its check of the file and
/// the swap of its new file, during which `save` changes the file.
async fn write_racing_a_save(
    c: &common::Client,
    pause: &std::path::Path,
    update: serde_json::Value,
    save: impl FnOnce(),
) -> serde_json::Value {
    std::fs::write(pause.join("before_swap.arm"), b"").unwrap();
    let call = call(c, "update_cell", update);
    let hold = async {
        while !pause.join("before_swap.paused").exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        save();
        std::fs::write(pause.join("before_swap.resume"), b"").unwrap();
    };
    let (r, ()) = tokio::join!(call, hold);
    r.ok()
}

fn edit_file(root: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut nb: serde_json::Value = serde_json::from_slice(&file_bytes(root, "n.ipynb")).unwrap();
    f(&mut nb);
    serde_json::to_vec_pretty(&nb).unwrap()
}

async fn changes_after(c: &common::Client, v: u64) -> Vec<serde_json::Value> {
    call(
        c,
        "get_notebook_changes",
        json!({"path": "n.ipynb", "since_version": v}),
    )
    .await
    .ok()["changes"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_landing_between_check_and_swap_is_taken_in_after_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (c, pause) = paused_server(root).await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 2", "c = 3"]).await;
    // The person edits cell b and adds a cell, saving in place.
    let saved = edit_file(root, |nb| {
        nb["cells"][1]["source"] = json!("b = 'person'");
        let mut extra = nb["cells"][2].clone();
        extra["id"] = json!("personal");
        extra["source"] = json!("d = 4");
        nb["cells"].as_array_mut().unwrap().push(extra);
    });
    let r = write_racing_a_save(
        &c,
        pause.path(),
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "a = 'agent'"}),
        || std::fs::write(root.join("n.ipynb"), &saved).unwrap(),
    )
    .await;
    let v = r["version"].as_u64().unwrap();
    let want = ["a = 'agent'", "b = 'person'", "c = 3", "d = 4"];
    assert_eq!(common::file_sources(root, "n.ipynb"), want);
    let now: Vec<String> = common::cells(&c, "n.ipynb")
        .await
        .into_iter()
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(now, want);
    let after = changes_after(&c, v).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["operation"], "external_change");
    assert_eq!(after[0]["client_name"], "external");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_both_changed_keeps_the_write_and_the_save_stays_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (c, pause) = paused_server(root).await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 2"]).await;
    // The person saves by rename (as editors do) with both cells changed.
    let saved = edit_file(root, |nb| {
        nb["cells"][0]["source"] = json!("a = 'person'");
        nb["cells"][1]["source"] = json!("b = 'person'");
    });
    let r = write_racing_a_save(
        &c,
        pause.path(),
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "a = 'agent'"}),
        || {
            std::fs::write(root.join(".n.ipynb~"), &saved).unwrap();
            std::fs::rename(root.join(".n.ipynb~"), root.join("n.ipynb")).unwrap();
        },
    )
    .await;
    let v = r["version"].as_u64().unwrap();
    assert_eq!(
        common::file_sources(root, "n.ipynb"),
        ["a = 'agent'", "b = 'person'"]
    );
    let after = changes_after(&c, v).await;
    let ops: Vec<(&str, &str)> = after
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["client_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [("external_change", "external"), ("keep_write", "nbledger")]
    );
    // The person's version of cell a is in its history, between the two.
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": ids[0]}),
    )
    .await
    .ok();
    let afters: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["source_after"].as_str())
        .collect();
    assert_eq!(
        afters,
        ["a = 1", "a = 'agent'", "a = 'person'", "a = 'agent'"]
    );
    // Nothing left aside: the save was taken in whole.
    let aside: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("nbledger-"))
        .collect();
    assert!(aside.is_empty(), "{aside:?}");
    c.cancel().await.unwrap();
}
