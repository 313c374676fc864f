//! kill -9 during a burst of writes loses no returned write, and the log,
//! the projection and the file agree after restart.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{cells, connect, file_sources, try_call};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_returned_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let c = connect(root, "setup").await;
        common::create(&c, "n.ipynb", &["counter = 0"]).await;
        c.cancel().await.unwrap();
    }
    // Every write that returned: inserted cell id → source; and the newest
    // returned value of the counter cell.
    let mut inserted: HashMap<String, String> = HashMap::new();
    let mut counter_floor = 0u64;
    let mut versions = Vec::new();
    for (round, kill_after_ms) in [40u64, 90, 15].into_iter().enumerate() {
        let (client, mut child) = common::connect_child(root, "crasher").await;
        let counter_id = cells(&client, "n.ipynb").await[0].0.clone();
        let writer = async {
            let mut done = Vec::new();
            for i in 0..10_000u64 {
                let k = round as u64 * 100_000 + i;
                let r = if i % 2 == 0 {
                    try_call(
                        &client,
                        "insert_cell",
                        json!({"path": "n.ipynb", "source": format!("cell {k}")}),
                    )
                    .await
                } else {
                    try_call(&client, "update_cell", json!({"path": "n.ipynb", "cell_id": counter_id, "source": format!("counter = {k}")}))
                        .await
                };
                // The first call after the kill fails: its fate is unknown,
                // so it is not counted as returned.
                let Ok(r) = r else { break };
                assert!(!r.is_error, "write refused: {}", r.value);
                done.push((i, k, r.value));
            }
            done
        };
        let kill = async {
            tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
            child.start_kill().expect("SIGKILL");
        };
        // The writer stops at the first failed call after the kill.
        let (done, _) = tokio::join!(tokio::time::timeout(Duration::from_secs(30), writer), kill);
        let done = done.expect("writer finished");
        for (i, k, v) in done {
            versions.push(v["version"].as_u64().unwrap());
            if i % 2 == 0 {
                inserted.insert(
                    v["cell_id"].as_str().unwrap().to_owned(),
                    format!("cell {k}"),
                );
            } else {
                counter_floor = counter_floor.max(k);
            }
        }
        let _ = child.wait().await;
    }
    assert!(
        !inserted.is_empty(),
        "some writes returned before the kills"
    );

    let c = connect(root, "checker").await;
    let now = cells(&c, "n.ipynb").await;
    let by_id: HashMap<&str, &str> = now
        .iter()
        .map(|(id, _, s)| (id.as_str(), s.as_str()))
        .collect();
    for (id, source) in &inserted {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(&source.as_str()),
            "returned insert {id} lost"
        );
    }
    let counter: u64 = now[0].2.trim_start_matches("counter = ").parse().unwrap();
    assert!(
        counter >= counter_floor,
        "counter went back: {counter} < {counter_floor}"
    );
    // Versions returned are distinct and the file matches the state.
    let mut sorted = versions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), versions.len());
    let sources: Vec<String> = now.iter().map(|c| c.2.clone()).collect();
    assert_eq!(file_sources(root, "n.ipynb"), sources);
    c.cancel().await.unwrap();
}
