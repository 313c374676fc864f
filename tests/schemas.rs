//! Every tool's results, succeeding and refused, against its declared
//! outputSchema. The harness (`common::call`) checks each result of every
//! integration test; this one makes sure every tool is called both ways,
//! and reaches the result shapes that are rare elsewhere: nothing changed,
//! forced writes past one and several locks, outputs, paging, a long-poll,
//! and each kind of history entry.

mod common;

use std::collections::BTreeSet;

use common::{Client, Outcome, call};
use serde_json::{Value, json};

struct Calls<'a> {
    client: &'a Client,
    seen: BTreeSet<(String, bool)>,
}

impl Calls<'_> {
    async fn call(&mut self, tool: &str, args: Value) -> Outcome {
        let r = call(self.client, tool, args).await;
        self.seen.insert((tool.to_owned(), r.is_error));
        r
    }

    async fn ok(&mut self, tool: &str, args: Value) -> Value {
        self.call(tool, args).await.ok()
    }

    async fn refused(&mut self, tool: &str, args: Value, code: &str) -> Value {
        let r = self.call(tool, args).await;
        assert_eq!(r.code(), code, "{tool}: {}", r.value);
        r.value
    }
}

/// A notebook with outputs (text and an image) and sources large enough
/// that reading it whole is paged (§8.7).
fn rich_notebook() -> String {
    let big = "x".repeat(100_000);
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAAAAgAB4iG8MwAAAABJRU5ErkJggg==";
    let nb = json!({
        "cells": [
            {"cell_type": "code", "execution_count": 1, "id": "out00001", "metadata": {},
             "outputs": [
                 {"name": "stdout", "output_type": "stream", "text": ["hello\n", "world\n"]},
                 {"data": {"image/png": png, "text/plain": ["<Figure>"]}, "metadata": {}, "output_type": "display_data"},
                 {"ename": "ValueError", "evalue": "bad", "output_type": "error", "traceback": ["\u{1b}[31mValueError\u{1b}[0m: bad"]}
             ],
             "source": ["print('hello')"]},
            {"cell_type": "markdown", "id": "big00001", "metadata": {}, "source": big.clone()},
            {"cell_type": "markdown", "id": "big00002", "metadata": {}, "source": big.clone()},
            {"cell_type": "markdown", "id": "big00003", "metadata": {}, "source": big}
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5
    });
    serde_json::to_string(&nb).unwrap()
}

#[tokio::test]
async fn every_tool_answers_within_its_output_schema_succeeding_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rich.ipynb"), rich_notebook()).unwrap();
    let client = common::connect_kernels(dir.path(), "agent-a").await;
    let mut t = Calls {
        client: &client,
        seen: BTreeSet::new(),
    };
    let n = "n.ipynb";

    t.ok("list_notebooks", json!({})).await;
    t.refused(
        "list_notebooks",
        json!({"dir": "../elsewhere"}),
        "outside_root",
    )
    .await;

    let created = t
        .ok(
            "create_notebook",
            json!({"path": n, "cells": [
                {"source": "# Title\n\ntext", "cell_type": "markdown"},
                {"source": "a = 1"},
                {"source": "b = 2"},
                {"source": "c = 3"}
            ]}),
        )
        .await;
    let ids: Vec<String> = created["cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    t.refused("create_notebook", json!({"path": n}), "exists")
        .await;

    // Reads: outputs, images kept or omitted, paging of a large notebook.
    let rich = json!({"path": "rich.ipynb", "include_outputs": true, "max_output_chars": 3});
    let page = t.ok("get_notebook_content", rich).await;
    assert_eq!(page["truncated"], true, "{page}");
    t.ok(
        "get_notebook_content",
        json!({"path": "rich.ipynb", "include_outputs": true, "include_images": true, "start": page["next_start"]}),
    )
    .await;
    t.ok(
        "get_notebook_content",
        json!({"path": n, "cell_type": "code"}),
    )
    .await;
    t.refused(
        "get_notebook_content",
        json!({"path": "missing.ipynb"}),
        "not_found",
    )
    .await;
    t.ok("get_notebook_outline", json!({"path": n})).await;
    t.refused(
        "get_notebook_outline",
        json!({"path": "missing.ipynb"}),
        "not_found",
    )
    .await;
    t.ok(
        "search_notebook",
        json!({"path": "rich.ipynb", "pattern": "hello|bad", "search_in": "all"}),
    )
    .await;
    t.refused(
        "search_notebook",
        json!({"path": n, "pattern": "("}),
        "invalid_argument",
    )
    .await;

    // Cell edits, each also as a call that changes nothing.
    let ins = t
        .ok(
            "insert_cell",
            json!({"path": n, "source": "d = 4", "after_cell_id": ids[3]}),
        )
        .await;
    let d = ins["cell_id"].as_str().unwrap().to_owned();
    t.refused(
        "insert_cell",
        json!({"path": n, "source": "x", "cell_type": "sql"}),
        "invalid_argument",
    )
    .await;
    t.ok(
        "batch_insert_cells",
        json!({"path": n, "cells": [{"source": "e = 5"}, {"source": "## Part", "cell_type": "markdown"}]}),
    )
    .await;
    t.refused(
        "batch_insert_cells",
        json!({"path": "missing.ipynb", "cells": [{"source": "x"}]}),
        "not_found",
    )
    .await;
    t.ok(
        "update_cell",
        json!({"path": n, "cell_id": ids[1], "source": "a = 10"}),
    )
    .await;
    let same = t
        .ok(
            "update_cell",
            json!({"path": n, "cell_id": ids[1], "source": "a = 10"}),
        )
        .await;
    assert_eq!(same["changed"], false, "{same}");
    t.refused(
        "update_cell",
        json!({"path": n, "cell_id": ids[1], "source": "a = 11", "expected_version": 1}),
        "version_conflict",
    )
    .await;
    let updates =
        json!([{"cell_id": ids[2], "source": "b = 20"}, {"cell_id": ids[3], "source": "c = 30"}]);
    t.ok(
        "batch_update_cells",
        json!({"path": n, "updates": updates.clone()}),
    )
    .await;
    let same = t
        .ok("batch_update_cells", json!({"path": n, "updates": updates}))
        .await;
    assert_eq!(same["changed"], false, "{same}");
    t.refused(
        "batch_update_cells",
        json!({"path": n, "updates": [{"cell_id": "ffffffff", "source": "?"}]}),
        "not_found",
    )
    .await;
    t.ok(
        "change_cell_type",
        json!({"path": n, "cell_id": d, "cell_type": "raw"}),
    )
    .await;
    let same = t
        .ok(
            "change_cell_type",
            json!({"path": n, "cell_id": d, "cell_type": "raw"}),
        )
        .await;
    assert_eq!(same["changed"], false, "{same}");
    t.refused(
        "change_cell_type",
        json!({"path": n, "cell_id": d, "cell_type": "sql"}),
        "invalid_argument",
    )
    .await;

    // Locks held by two other agents; forced writes past one and past both;
    // a refusal that leaves a rejected event.
    t.ok(
        "lock_cells",
        json!({"path": n, "cell_ids": [ids[1]], "client_name": "agent-b"}),
    )
    .await;
    t.ok(
        "lock_cells",
        json!({"path": n, "cell_id": ids[2], "owner": "agent-c", "ttl_seconds": 60}),
    )
    .await;
    let held = t
        .refused(
            "lock_cells",
            json!({"path": n, "cell_ids": [ids[1]], "client_name": "agent-a"}),
            "locked",
        )
        .await;
    assert!(held["error"]["rejected_version"].is_u64(), "{held}");
    t.refused(
        "update_cell",
        json!({"path": n, "cell_id": ids[1], "source": "no"}),
        "locked",
    )
    .await;
    let one = t
        .ok(
            "update_cell",
            json!({"path": n, "cell_id": ids[1], "source": "a = 100", "force": true}),
        )
        .await;
    assert_eq!(one["overrode_lock"], "agent-b", "{one}");
    let both = t
        .ok(
            "batch_update_cells",
            json!({"path": n, "force": true, "updates": [
                {"cell_id": ids[1], "source": "a = 1000"},
                {"cell_id": ids[2], "source": "b = 2000"}
            ]}),
        )
        .await;
    assert_eq!(
        both["overrode_locks"].as_array().unwrap().len(),
        2,
        "{both}"
    );
    t.ok("list_locks", json!({})).await;
    t.ok("list_locks", json!({"path": n})).await;
    t.refused(
        "list_locks",
        json!({"path": n, "colour": "blue"}),
        "invalid_argument",
    )
    .await;
    t.refused(
        "unlock_cells",
        json!({"path": n, "cell_ids": [ids[1]], "client_name": "agent-a"}),
        "locked",
    )
    .await;
    t.ok(
        "unlock_cells",
        json!({"path": n, "cell_ids": [ids[1]], "client_name": "agent-b"}),
    )
    .await;
    let none = t
        .ok("unlock_cells", json!({"path": n, "client_name": "agent-b"}))
        .await;
    assert!(none.get("version").is_none(), "{none}");
    t.ok(
        "unlock_cells",
        json!({"path": n, "cell_ids": [ids[2]], "client_name": "agent-a", "force": true}),
    )
    .await;

    // Delete and recover, copy and move (across notebooks too).
    t.ok("delete_cell", json!({"path": n, "cell_id": d})).await;
    t.refused("delete_cell", json!({"path": n, "cell_id": d}), "not_found")
        .await;
    t.ok("recover_cell", json!({"path": n, "cell_id": d})).await;
    t.refused(
        "recover_cell",
        json!({"path": n, "cell_id": d}),
        "not_deleted",
    )
    .await;
    t.ok("create_notebook", json!({"path": "m.ipynb"})).await;
    t.ok(
        "copy_cells",
        json!({"source_path": n, "dest_path": "m.ipynb", "cell_ids": [ids[1], ids[2]]}),
    )
    .await;
    t.refused(
        "copy_cells",
        json!({"source_path": n, "cell_ids": ["ffffffff"]}),
        "not_found",
    )
    .await;
    t.ok(
        "move_cells",
        json!({"source_path": n, "dest_path": "m.ipynb", "cell_ids": [ids[3]], "dest_index": 0}),
    )
    .await;
    t.ok(
        "move_cells",
        json!({"source_path": n, "cell_ids": [d], "dest_index": 0}),
    )
    .await;
    t.refused(
        "move_cells",
        json!({"source_path": n, "cell_ids": [d], "dest_cell_id": d}),
        "invalid_argument",
    )
    .await;

    // Snapshots: take, list, diff, restore (with its backup), and a
    // restore that changes nothing.
    t.ok(
        "snapshot_notebook",
        json!({"path": n, "name": "s1", "description": "before the end"}),
    )
    .await;
    t.refused(
        "snapshot_notebook",
        json!({"path": n, "name": "s1"}),
        "exists",
    )
    .await;
    t.ok(
        "update_cell",
        json!({"path": n, "index": 0, "source": "# New"}),
    )
    .await;
    t.ok("delete_cell", json!({"path": n, "cell_id": ids[1]}))
        .await;
    t.ok("insert_cell", json!({"path": n, "source": "late"}))
        .await;
    t.ok("list_snapshots", json!({"path": n})).await;
    t.refused(
        "list_snapshots",
        json!({"path": "missing.ipynb"}),
        "not_found",
    )
    .await;
    t.ok(
        "diff_snapshot",
        json!({"path": n, "name": "s1", "context_lines": 1}),
    )
    .await;
    t.refused(
        "diff_snapshot",
        json!({"path": n, "name": "nope"}),
        "not_found",
    )
    .await;
    let restored = t
        .ok("restore_snapshot", json!({"path": n, "name": "s1"}))
        .await;
    assert!(restored["backup_snapshot"].is_string(), "{restored}");
    let again = t
        .ok("restore_snapshot", json!({"path": n, "name": "s1"}))
        .await;
    assert_eq!(again["changed"], false, "{again}");
    t.refused(
        "restore_snapshot",
        json!({"path": n, "name": "nope"}),
        "not_found",
    )
    .await;

    // The feed (with a long-poll that finds nothing) and histories that
    // hold every kind of entry: moved, copied, rejected, forced, deleted.
    let feed = t
        .ok("get_notebook_changes", json!({"path": n, "limit": 5}))
        .await;
    assert_eq!(feed["has_more"], true, "{feed}");
    let head = t.ok("get_notebook_changes", json!({"path": n})).await;
    t.ok(
        "get_notebook_changes",
        json!({"path": n, "since_version": head["current_version"], "wait_ms": 10}),
    )
    .await;
    t.ok("get_notebook_changes", json!({"path": "m.ipynb"}))
        .await;
    t.refused(
        "get_notebook_changes",
        json!({"path": n, "since_version": 1_000_000}),
        "invalid_argument",
    )
    .await;
    for (path, id) in [(n, &ids[1]), (n, &ids[2]), (n, &d), ("m.ipynb", &ids[3])] {
        t.ok("get_cell_history", json!({"path": path, "cell_id": id}))
            .await;
    }
    t.refused(
        "get_cell_history",
        json!({"path": n, "cell_id": "ffffffff"}),
        "not_found",
    )
    .await;

    // Running cells (§9), on the test kernel.
    let rids = common::create(&client, "runs.ipynb", &["print(1)"]).await;
    let ran = t
        .ok(
            "execute_cell",
            json!({"path": "runs.ipynb", "cell_id": rids[0]}),
        )
        .await;
    t.refused(
        "execute_cell",
        json!({"path": "runs.ipynb", "cell_id": rids[0], "timeout_s": 0}),
        "invalid_argument",
    )
    .await;
    t.ok(
        "execute_code",
        json!({"path": "runs.ipynb", "code": "x = 41\nx + 1"}),
    )
    .await;
    t.refused(
        "execute_code",
        json!({"path": "runs.ipynb", "code": "  "}),
        "invalid_argument",
    )
    .await;
    t.ok("get_run", json!({"run_id": ran["runs"][0]["run_id"]}))
        .await;
    t.refused("get_run", json!({"run_id": "nope"}), "not_found")
        .await;
    t.ok("list_runs", json!({"path": "runs.ipynb"})).await;
    t.refused("list_runs", json!({"limit": "many"}), "invalid_argument")
        .await;
    t.ok("list_kernels", json!({})).await;
    t.refused("list_kernels", json!({"path": "x"}), "invalid_argument")
        .await;
    t.ok("interrupt_kernel", json!({"path": "runs.ipynb"}))
        .await;
    t.ok("restart_kernel", json!({"path": "runs.ipynb"})).await;
    t.refused(
        "restart_kernel",
        json!({"path": "runs.ipynb", "kernel_name": "no-such-kernel"}),
        "not_found",
    )
    .await;
    t.ok("clear_outputs", json!({"path": "runs.ipynb"})).await;
    t.refused(
        "clear_outputs",
        json!({"path": "runs.ipynb", "cell_ids": ["ffffffff"]}),
        "not_found",
    )
    .await;
    t.ok("shutdown_kernel", json!({"path": "runs.ipynb"})).await;
    for tool in ["interrupt_kernel", "shutdown_kernel"] {
        t.refused(tool, json!({"path": "runs.ipynb"}), "not_found")
            .await;
    }
    t.ok(
        "update_cell_metadata",
        json!({"path": n, "cell_id": ids[1], "metadata": {"k": 1}, "add_tags": ["t"]}),
    )
    .await;
    t.ok(
        "update_cell_metadata",
        json!({"path": n, "cell_id": ids[1], "add_tags": ["t"]}),
    )
    .await;
    t.refused(
        "update_cell_metadata",
        json!({"path": n, "cell_id": "ffffffff", "add_tags": ["t"]}),
        "not_found",
    )
    .await;
    t.ok(
        "update_notebook_metadata",
        json!({"path": n, "metadata": {"k": 1}}),
    )
    .await;
    t.refused(
        "update_notebook_metadata",
        json!({"path": "nope.ipynb", "metadata": {"k": 1}}),
        "not_found",
    )
    .await;

    t.ok(
        "revert_cell",
        json!({"path": n, "cell_id": ids[1], "to_version": head["current_version"]}),
    )
    .await;
    t.refused(
        "revert_cell",
        json!({"path": n, "cell_id": ids[1], "to_version": 1_000_000}),
        "invalid_argument",
    )
    .await;

    t.ok(
        "replace_in_notebook",
        json!({"path": n, "pattern": "(x)", "replacement": "${1}y"}),
    )
    .await;
    t.ok(
        "replace_in_notebook",
        json!({"path": n, "pattern": "q", "replacement": "r", "dry_run": true}),
    )
    .await;
    t.refused(
        "replace_in_notebook",
        json!({"path": n, "pattern": "(", "replacement": ""}),
        "invalid_argument",
    )
    .await;
    t.ok(
        "diff_notebooks",
        json!({"path": n, "other_path": "m.ipynb"}),
    )
    .await;
    t.ok("diff_notebooks", json!({"path": n, "version": 1}))
        .await;
    t.refused(
        "diff_notebooks",
        json!({"path": n, "version": 1_000_000}),
        "invalid_argument",
    )
    .await;
    t.ok("snapshot_notebook", json!({"path": n, "name": "gone"}))
        .await;
    t.ok("delete_snapshot", json!({"path": n, "name": "gone"}))
        .await;
    t.refused(
        "delete_snapshot",
        json!({"path": n, "name": "gone"}),
        "not_found",
    )
    .await;

    common::create(&client, "to-rename.ipynb", &["r"]).await;
    t.ok(
        "rename_notebook",
        json!({"path": "to-rename.ipynb", "new_path": "renamed.ipynb"}),
    )
    .await;
    t.refused(
        "rename_notebook",
        json!({"path": "renamed.ipynb", "new_path": n}),
        "exists",
    )
    .await;

    // Each tool offered was called both ways.
    for tool in client.list_all_tools().await.unwrap() {
        for refused in [false, true] {
            assert!(
                t.seen.contains(&(tool.name.to_string(), refused)),
                "{} was never {} here",
                tool.name,
                if refused {
                    "refused"
                } else {
                    "called successfully"
                }
            );
        }
    }
    client.cancel().await.unwrap();
}
