//! `replace_in_notebook` (§10): regex replace over cells as one event over
//! exactly the cells it changes, all or nothing under locks and
//! `expected_version`, with dry runs that append nothing.

mod common;

use common::{Client, call, connect, create, file_sources};
use serde_json::{Value, json};

async fn head(c: &Client, path: &str) -> u64 {
    call(c, "get_notebook_content", json!({"path": path}))
        .await
        .ok()["current_version"]
        .as_u64()
        .unwrap()
}

async fn feed_since(c: &Client, path: &str, since: u64) -> Vec<Value> {
    call(
        c,
        "get_notebook_changes",
        json!({"path": path, "since_version": since}),
    )
    .await
    .ok()["changes"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_over_exactly_the_changed_cells_with_capture_groups() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(
        &c,
        "n.ipynb",
        &["df_old = load()\nprint(df_old)", "x = 1", "old_df = df_old"],
    )
    .await;
    let before = head(&c, "n.ipynb").await;
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": r"df_(?P<s>old)\b", "replacement": "frame_${s}_$s"}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], true);
    assert_eq!(r["replaced"], 3);
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0]["cell_id"], ids[0].as_str());
    assert_eq!(cells[0]["count"], 2);
    assert_eq!(cells[1]["cell_id"], ids[2].as_str());
    let diff = cells[0]["diff"].as_str().unwrap();
    assert!(diff.contains("-df_old = load()"), "{diff}");
    assert!(diff.contains("+frame_old_old = load()"), "{diff}");
    assert_eq!(
        file_sources(root, "n.ipynb"),
        [
            "frame_old_old = load()\nprint(frame_old_old)",
            "x = 1",
            "old_df = frame_old_old"
        ]
    );
    let feed = feed_since(&c, "n.ipynb", before).await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0]["operation"], "replace_in_notebook");
    assert_eq!(feed[0]["cell_ids"], json!([ids[0], ids[2]]));
    assert_eq!(feed[0]["version"], r["version"]);
    // The history of a changed cell shows its before and after.
    let h = call(
        &c,
        "get_cell_history",
        json!({"path": "n.ipynb", "cell_id": ids[2]}),
    )
    .await
    .ok();
    let last = h["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["source_before"], "old_df = df_old");
    assert_eq!(last["source_after"], "old_df = frame_old_old");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_case_budget_and_line_anchors_narrow_what_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "n.ipynb", &["Foo foo\nfoo", "foo", "foo"]).await;
    call(
        &c,
        "change_cell_type",
        json!({"path": "n.ipynb", "cell_id": ids[1], "cell_type": "markdown"}),
    )
    .await
    .ok();
    // Case-sensitive by default; `^` matches at each line start.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "^foo", "replacement": "bar", "cell_type": "code"}),
    )
    .await
    .ok();
    assert_eq!(r["replaced"], 2);
    assert_eq!(
        file_sources(root, "n.ipynb"),
        ["Foo foo\nbar", "foo", "bar"]
    );
    // case_sensitive: false and a budget of 2 in notebook order.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "foo", "replacement": "q", "case_sensitive": false, "max_replacements": 2}),
    )
    .await
    .ok();
    assert_eq!(r["replaced"], 2);
    assert_eq!(file_sources(root, "n.ipynb"), ["q q\nbar", "foo", "bar"]);
    // cell_id narrows to one cell.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "foo|bar", "replacement": "z", "cell_id": ids[1]}),
    )
    .await
    .ok();
    assert_eq!(r["cells"][0]["cell_id"], ids[1].as_str());
    assert_eq!(file_sources(root, "n.ipynb"), ["q q\nbar", "z", "bar"]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_or_no_match_changes_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a = 1", "b = 2"]).await;
    let v = head(&c, "n.ipynb").await;
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": r"(\w) = (\d)", "replacement": "$2 = $1", "dry_run": true}),
    )
    .await
    .ok();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["changed"], false);
    assert_eq!(r["current_version"], v);
    assert_eq!(r["replaced"], 2);
    assert!(r.get("version").is_none());
    assert!(r["cells"][1]["diff"].as_str().unwrap().contains("+2 = b"));
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "nowhere", "replacement": "x"}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false);
    assert_eq!(r["replaced"], 0);
    assert_eq!(r["cells"], json!([]));
    // A match whose replacement is itself changes nothing either.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "a", "replacement": "a", "cell_id": ids[0]}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false);
    assert!(feed_since(&c, "n.ipynb", v).await.is_empty());
    assert_eq!(file_sources(root, "n.ipynb"), ["a = 1", "b = 2"]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_changed_cells_are_checked_for_locks_and_versions_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "n.ipynb", &["x", "y", "x"]).await;
    call(
        &c,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_ids": [ids[1]], "client_name": "holder"}),
    )
    .await
    .ok();
    // The locked cell does not match: the call goes through.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "x", "replacement": "x1", "client_name": "me"}),
    )
    .await
    .ok();
    assert_eq!(r["replaced"], 2);
    let v = r["version"].as_u64().unwrap();
    // A match in the locked cell refuses the whole call.
    let args =
        json!({"path": "n.ipynb", "pattern": "[xy]", "replacement": "w", "client_name": "me"});
    let refused = call(&c, "replace_in_notebook", args.clone()).await;
    assert_eq!(refused.code(), "locked");
    assert_eq!(refused.error()["locks"][0]["cell_id"], ids[1].as_str());
    assert_eq!(file_sources(root, "n.ipynb"), ["x1", "y", "x1"]);
    let mut forced = args;
    forced["force"] = json!(true);
    let r = call(&c, "replace_in_notebook", forced).await.ok();
    assert_eq!(r["overrode_lock"], "holder");
    assert_eq!(file_sources(root, "n.ipynb"), ["w1", "w", "w1"]);
    // expected_version: a stale token fails only when a changed cell moved on.
    let r = call(
        &c,
        "replace_in_notebook",
        json!({"path": "n.ipynb", "pattern": "w", "replacement": "v", "cell_ids": [ids[0]], "expected_version": v}),
    )
    .await;
    assert_eq!(r.code(), "version_conflict");
    assert_eq!(file_sources(root, "n.ipynb"), ["w1", "w", "w1"]);
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = connect(root, "agent-a").await;
    let ids = create(&c, "n.ipynb", &["x"]).await;
    let bad = |extra: Value| {
        let mut a = json!({"path": "n.ipynb", "pattern": "x", "replacement": "y"});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let r = call(&c, "replace_in_notebook", bad(json!({"pattern": "(x"}))).await;
    assert_eq!(r.code(), "invalid_argument");
    assert_eq!(r.error()["argument"], "pattern");
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("not a valid regex")
    );
    let r = call(&c, "replace_in_notebook", bad(json!({"pattern": "(?=x)"}))).await;
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("look-around")
    );
    for extra in [
        json!({"cell_type": "prose"}),
        json!({"max_replacements": 0}),
        json!({"cell_ids": []}),
        json!({"cell_ids": [ids[0]], "cell_id": ids[0]}),
    ] {
        let r = call(&c, "replace_in_notebook", bad(extra.clone())).await;
        assert_eq!(r.code(), "invalid_argument", "{extra}");
    }
    let r = call(
        &c,
        "replace_in_notebook",
        bad(json!({"pattern": "x".repeat(1001)})),
    )
    .await;
    assert_eq!(r.code(), "too_large");
    let r = call(
        &c,
        "replace_in_notebook",
        bad(json!({"cell_ids": ["ffffffff"]})),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    let r = call(
        &c,
        "replace_in_notebook",
        bad(json!({"path": "none.ipynb"})),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    let r = call(
        &c,
        "replace_in_notebook",
        bad(json!({"path": "../out.ipynb"})),
    )
    .await;
    assert_eq!(r.code(), "outside_root");
    c.cancel().await.unwrap();
}
