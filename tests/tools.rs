//! Every core tool and error code, driven through the real binary over MCP.

mod common;

use common::{call, cells, connect, create, file_json, file_sources};
use serde_json::{Value, json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test]
async fn tools_are_listed_with_schemas_and_annotations() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let tools = c.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| &*t.name).collect();
    for want in [
        "list_notebooks",
        "create_notebook",
        "get_notebook_content",
        "get_notebook_outline",
        "search_notebook",
        "insert_cell",
        "batch_insert_cells",
        "update_cell",
        "batch_update_cells",
        "delete_cell",
        "change_cell_type",
    ] {
        assert!(names.contains(&want), "missing tool {want}");
    }
    for t in &tools {
        let ann = t.annotations.as_ref().expect("annotations");
        // Only tools that run arbitrary code reach outside (§8.13).
        let runs_code = t.name == "execute_cell" || t.name == "execute_code";
        assert_eq!(ann.open_world_hint, Some(runs_code), "{}", t.name);
        let out = t.output_schema.as_ref().expect("output schema");
        assert!(
            out["properties"].get("error").is_some(),
            "{} error in schema",
            t.name
        );
        assert!(t.description.as_ref().is_some_and(|d| d.len() > 40));
    }
    let get = |n: &str| {
        tools
            .iter()
            .find(|t| t.name == n)
            .unwrap()
            .annotations
            .clone()
            .unwrap()
    };
    assert_eq!(get("get_notebook_content").read_only_hint, Some(true));
    assert_eq!(get("update_cell").destructive_hint, Some(true));
    assert_eq!(get("update_cell").idempotent_hint, Some(true));
    assert_eq!(get("insert_cell").destructive_hint, Some(false));
    assert_eq!(get("execute_cell").destructive_hint, Some(true));
    for read in ["get_run", "list_runs", "list_kernels"] {
        assert_eq!(get(read).read_only_hint, Some(true), "{read}");
    }
    assert_eq!(get("clear_outputs").idempotent_hint, Some(true));
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn create_edit_and_read_round_trip_to_the_file() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let r = call(
        &c,
        "create_notebook",
        json!({"path": "sub/a.ipynb", "cells": [
            {"source": "# Title", "cell_type": "markdown"},
            {"source": "x = 1"},
        ]}),
    )
    .await
    .ok();
    assert_eq!(r["path"], "sub/a.ipynb");
    assert_eq!(r["version"], 1);
    assert_eq!(r["client_name"], "agent-a");
    let ids: Vec<String> = r["cell_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter()
            .all(|i| i.len() == 8 && i.chars().all(|c| c.is_ascii_hexdigit()))
    );

    // Insert after a cell by id.
    let r = call(
        &c,
        "insert_cell",
        json!({"path": "sub/a.ipynb", "source": "y = 2", "after_cell_id": ids[0]}),
    )
    .await
    .ok();
    assert_eq!(r["index"], 1);
    assert_eq!(r["version"], 2);
    let y = r["cell_id"].as_str().unwrap().to_owned();

    // Update by a 4+ character prefix.
    let r = call(
        &c,
        "update_cell",
        json!({"path": "sub/a.ipynb", "cell_id": &ids[1][..6], "source": "x = 10\nprint(x)"}),
    )
    .await
    .ok();
    assert_eq!(r["cell_id"], ids[1]);
    assert_eq!(r["index"], 2);
    assert_eq!(r["version"], 3);

    // Same source again: no event.
    let r = call(
        &c,
        "update_cell",
        json!({"path": "sub/a.ipynb", "cell_id": ids[1], "source": "x = 10\nprint(x)"}),
    )
    .await
    .ok();
    assert_eq!(r["changed"], false);
    assert_eq!(r["current_version"], 3);

    let r = call(
        &c,
        "batch_insert_cells",
        json!({"path": "sub/a.ipynb", "before_cell_id": ids[0], "cells": [
            {"source": "first"}, {"source": "second", "cell_type": "raw"}
        ]}),
    )
    .await
    .ok();
    assert_eq!(r["version"], 4);
    assert_eq!(r["cell_ids"].as_array().unwrap().len(), 2);

    let r = call(
        &c,
        "batch_update_cells",
        json!({"path": "sub/a.ipynb", "updates": [
            {"cell_id": y, "source": "y = 3"}, {"index": 0, "source": "FIRST"}
        ]}),
    )
    .await
    .ok();
    assert_eq!(r["version"], 5);

    let r = call(
        &c,
        "change_cell_type",
        json!({"path": "sub/a.ipynb", "index": 0, "cell_type": "markdown"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], 6);

    let got = cells(&c, "sub/a.ipynb").await;
    let sources: Vec<&str> = got.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(
        sources,
        vec!["FIRST", "second", "# Title", "y = 3", "x = 10\nprint(x)"]
    );
    let types: Vec<&str> = got.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(types, vec!["markdown", "raw", "markdown", "code", "code"]);

    // The file on disk holds exactly that, in Jupyter's layout.
    assert_eq!(file_sources(dir.path(), "sub/a.ipynb"), sources);
    let f = file_json(dir.path(), "sub/a.ipynb");
    assert_eq!(f["nbformat"], 4);
    assert_eq!(f["nbformat_minor"], 5);
    assert_eq!(f["metadata"]["kernelspec"]["name"], "python3");
    assert!(
        f["cells"][0].get("outputs").is_none(),
        "markdown cell has no outputs"
    );
    assert_eq!(f["cells"][4]["source"], json!(["x = 10\n", "print(x)"]));
    let text = std::fs::read_to_string(dir.path().join("sub/a.ipynb")).unwrap();
    assert!(text.starts_with("{\n \"cells\": [\n  {\n"));
    assert!(text.ends_with("}\n"));

    let r = call(
        &c,
        "delete_cell",
        json!({"path": "sub/a.ipynb", "cell_ids": [ids[0].clone(), y.clone()]}),
    )
    .await
    .ok();
    assert_eq!(r["deleted"].as_array().unwrap().len(), 2);
    assert_eq!(r["version"], 7);
    assert_eq!(cells(&c, "sub/a.ipynb").await.len(), 3);

    // Outline and search.
    let o = call(&c, "get_notebook_outline", json!({"path": "sub/a.ipynb"}))
        .await
        .ok();
    assert_eq!(o["current_version"], 7);
    assert_eq!(o["cells"][0]["preview"], "FIRST");
    let s = call(
        &c,
        "search_notebook",
        json!({"path": "sub/a.ipynb", "pattern": "print\\((\\w)\\)"}),
    )
    .await
    .ok();
    let m = &s["matches"][0];
    assert_eq!(m["line"], 2);
    assert_eq!(m["column"], 1);
    assert_eq!(m["in"], "source");
    assert_eq!(m["text"], "print(x)");

    let l = call(&c, "list_notebooks", json!({})).await.ok();
    assert_eq!(
        l["notebooks"],
        json!([{"path": "sub/a.ipynb", "cell_count": 3, "current_version": 7, "imported": true}])
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn every_error_code_is_a_tool_result_and_changes_nothing() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    std::fs::write(dir.path().join("broken.ipynb"), "{\"cells\": [").unwrap();
    let before = std::fs::read(dir.path().join("n.ipynb")).unwrap();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": "zzzzzzzz", "source": "x"}),
            "not_found",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 9, "source": "x"}),
            "not_found",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 0, "cell_id": ids[0], "source": "x"}),
            "invalid_argument",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "source": "x"}),
            "invalid_argument",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 0, "source": "x", "bogus": 1}),
            "invalid_argument",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 0}),
            "invalid_argument",
        ),
        (
            "update_cell",
            json!({"path": "../out.ipynb", "index": 0, "source": "x"}),
            "outside_root",
        ),
        (
            "update_cell",
            json!({"path": "/etc/x.ipynb", "index": 0, "source": "x"}),
            "outside_root",
        ),
        (
            "update_cell",
            json!({"path": "missing.ipynb", "index": 0, "source": "x"}),
            "not_found",
        ),
        (
            "update_cell",
            json!({"path": "broken.ipynb", "index": 0, "source": "x"}),
            "invalid_notebook",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 0, "source": "x", "client_name": "external"}),
            "invalid_argument",
        ),
        (
            "update_cell",
            json!({"path": "n.ipynb", "index": 0, "source": "x".repeat((1 << 20) + 1)}),
            "too_large",
        ),
        // Checks run in order: arguments, then not_found, then limits (§8.2).
        (
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": "zzzzzzzz", "source": "x".repeat((1 << 20) + 1)}),
            "not_found",
        ),
        (
            "insert_cell",
            json!({"path": "missing.ipynb", "source": "x", "cell_type": "python"}),
            "invalid_argument",
        ),
        (
            "get_notebook_content",
            json!({"path": "n.ipynb", "cell_id": "zzzzzzzz"}),
            "not_found",
        ),
        (
            "insert_cell",
            json!({"path": "n.ipynb", "source": "x", "cell_type": "python"}),
            "invalid_argument",
        ),
        (
            "insert_cell",
            json!({"path": "n.ipynb", "source": "x", "index": 1, "after_cell_id": ids[0]}),
            "invalid_argument",
        ),
        (
            "insert_cell",
            json!({"path": "n.ipynb", "source": "x", "index": 5}),
            "not_found",
        ),
        ("create_notebook", json!({"path": "n.ipynb"}), "exists"),
        (
            "create_notebook",
            json!({"path": "n.txt"}),
            "invalid_argument",
        ),
        (
            "search_notebook",
            json!({"path": "n.ipynb", "pattern": "(?=a)"}),
            "invalid_argument",
        ),
        (
            "search_notebook",
            json!({"path": "n.ipynb", "pattern": "("}),
            "invalid_argument",
        ),
        (
            "change_cell_type",
            json!({"path": "n.ipynb", "index": 0, "cell_type": "nope"}),
            "invalid_argument",
        ),
        (
            "delete_cell",
            json!({"path": "n.ipynb"}),
            "invalid_argument",
        ),
        (
            "batch_update_cells",
            json!({"path": "n.ipynb", "updates": [{"index": 0, "source": "x"}, {"cell_id": "nonexist", "source": "y"}]}),
            "not_found",
        ),
        (
            "batch_update_cells",
            json!({"path": "n.ipynb", "updates": [{"index": 0, "source": "x"}, {"index": 0, "source": "y"}]}),
            "invalid_argument",
        ),
    ];
    for (tool, args, code) in cases {
        let r = call(&c, tool, args.clone()).await;
        assert_eq!(r.code(), code, "{tool} {args}");
        let e = r.error();
        assert!(
            e["message"].as_str().unwrap().len() > 10,
            "message says what to do: {e}"
        );
        assert!(
            r.text.starts_with("error "),
            "text block starts with a summary line"
        );
    }
    // Nothing changed: same file, version still 1.
    assert_eq!(std::fs::read(dir.path().join("n.ipynb")).unwrap(), before);
    let o = call(&c, "get_notebook_outline", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(o["current_version"], 1);

    // Details sit beside code and message.
    let r = call(
        &c,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "x", "nope": true}),
    )
    .await;
    assert_eq!(r.error()["argument"], "nope");
    assert!(
        r.error()["allowed"]
            .as_array()
            .unwrap()
            .contains(&json!("after_cell_id"))
    );
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "index": 7, "source": "x"}),
    )
    .await;
    assert_eq!(r.error()["cell_count"], 2);
    let r = call(&c, "get_notebook_content", json!({"path": "broken.ipynb"})).await;
    assert_eq!(r.code(), "invalid_notebook");
    assert!(r.error()["line"].is_number());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("broken.ipynb")).unwrap(),
        "{\"cells\": ["
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn compare_and_swap_refuses_stale_writes() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    let v1 = 1;
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "A", "client_name": "agent-b"}),
    )
    .await
    .ok();
    // Another cell's token is still fine.
    call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "B", "expected_version": v1}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "mine", "expected_version": v1}),
    )
    .await;
    assert_eq!(r.code(), "version_conflict");
    assert_eq!(
        r.error()["current"],
        json!({"last_version": 2, "source": "A"})
    );
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "mine", "expected_version": "3"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], 4);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn ambiguous_prefix_lists_candidates() {
    let dir = tmp();
    // Two ids sharing a prefix, written by hand.
    let nb = json!({"cells": [
        {"cell_type": "code", "execution_count": null, "id": "abcd0001", "metadata": {}, "outputs": [], "source": "one"},
        {"cell_type": "code", "execution_count": null, "id": "abcd0002", "metadata": {}, "outputs": [], "source": "two"}
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(
        dir.path().join("n.ipynb"),
        serde_json::to_string_pretty(&nb).unwrap(),
    )
    .unwrap();
    let c = connect(dir.path(), "agent-a").await;
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": "abcd", "source": "x"}),
    )
    .await;
    assert_eq!(r.code(), "ambiguous_cell_id");
    let cands = r.error()["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[0]["preview"], "one");
    // A prefix shorter than 4 characters is not used for matching.
    assert_eq!(
        call(
            &c,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": "abc", "source": "x"})
        )
        .await
        .code(),
        "not_found"
    );
    // Deleted cells are named as such.
    call(
        &c,
        "delete_cell",
        json!({"path": "n.ipynb", "cell_id": "abcd0002"}),
    )
    .await
    .ok();
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": "abcd0002", "source": "x"}),
    )
    .await;
    assert_eq!(r.code(), "not_found");
    assert_eq!(r.error()["deleted"], true);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn tolerant_arguments_from_misbehaving_clients() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b", "c"]).await;
    let r = call(&c, "delete_cell", json!({"path": "n.ipynb", "cell_ids": serde_json::to_string(&ids[..2]).unwrap(), "force": "false"})).await.ok();
    assert_eq!(r["deleted"].as_array().unwrap().len(), 2);
    let r = call(&c, "batch_insert_cells", json!({"path": "n.ipynb", "cells": "[{\"source\": \"z\", \"metadata\": \"{\\\"tags\\\": [\\\"t\\\"]}\"}]", "index": "0"})).await.ok();
    assert_eq!(r["version"], 3);
    let f = file_json(dir.path(), "n.ipynb");
    assert_eq!(f["cells"][0]["metadata"], json!({"tags": ["t"]}));
    let r = call(
        &c,
        "get_notebook_content",
        json!({"path": "n.ipynb", "cell_ids": ids[2], "include_outputs": "true", "start": null}),
    )
    .await
    .ok();
    assert_eq!(r["cells"].as_array().unwrap().len(), 1);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_versions_history_and_ids() {
    let dir = tmp();
    let ids = {
        let c = connect(dir.path(), "agent-a").await;
        let ids = create(&c, "n.ipynb", &["a"]).await;
        call(
            &c,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": ids[0], "source": "b"}),
        )
        .await
        .ok();
        c.cancel().await.unwrap();
        ids
    };
    let c = connect(dir.path(), "agent-b").await;
    let r = call(&c, "get_notebook_content", json!({"path": "n.ipynb"}))
        .await
        .ok();
    assert_eq!(r["current_version"], 2);
    assert_eq!(r["cells"][0]["cell_id"], ids[0]);
    assert_eq!(r["cells"][0]["last_version"], 2);
    let r = call(&c, "insert_cell", json!({"path": "n.ipynb", "source": "c"}))
        .await
        .ok();
    assert_eq!(r["version"], 3, "versions continue after restart");
    assert_eq!(r["client_name"], "agent-b", "declared client name is used");
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn outside_edits_are_taken_in_before_writes() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "n.ipynb", &["a", "b"]).await;
    // A person edits the file in JupyterLab: changes cell b, adds a cell.
    let mut f = file_json(dir.path(), "n.ipynb");
    f["cells"][1]["source"] = json!(["changed outside"]);
    let extra =
        json!({"cell_type": "markdown", "id": "person01", "metadata": {}, "source": ["note"]});
    f["cells"].as_array_mut().unwrap().push(extra);
    std::fs::write(
        dir.path().join("n.ipynb"),
        serde_json::to_string_pretty(&f).unwrap(),
    )
    .unwrap();
    // Agent writes cell a: the outside change is kept, not overwritten.
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "A"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], 3, "the outside change took version 2");
    assert_eq!(
        file_sources(dir.path(), "n.ipynb"),
        vec!["A", "changed outside", "note"]
    );
    let got = cells(&c, "n.ipynb").await;
    assert_eq!(got[2].0, "person01");
    // CAS sees the outside change as a newer version of cell b.
    let r = call(
        &c,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[1], "source": "x", "expected_version": 1}),
    )
    .await;
    assert_eq!(r.code(), "version_conflict");
    assert_eq!(r.error()["current"]["last_version"], 2);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn request_id_makes_retries_safe() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    create(&c, "n.ipynb", &["a"]).await;
    let args = json!({"path": "n.ipynb", "source": "x", "request_id": "r-1"});
    let first = call(&c, "insert_cell", args.clone()).await.ok();
    let again = call(&c, "insert_cell", args).await.ok();
    assert_eq!(first, again);
    assert_eq!(cells(&c, "n.ipynb").await.len(), 2);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn reads_page_large_outputs_and_omit_images() {
    let dir = tmp();
    let png = "iVBORw0KGgo".repeat(1000);
    let mut cells_json = Vec::new();
    for i in 0..40 {
        cells_json.push(json!({
            "cell_type": "code", "execution_count": i, "id": format!("cell{i:04}"), "metadata": {},
            "outputs": [
                {"name": "stdout", "output_type": "stream", "text": ["line one\n", "x".repeat(10_000)]},
                {"data": {"image/png": png, "text/plain": ["<Figure>"]}, "metadata": {}, "output_type": "display_data"}
            ],
            "source": format!("plot({i})")
        }));
    }
    let nb = json!({"cells": cells_json, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(
        dir.path().join("big.ipynb"),
        serde_json::to_string(&nb).unwrap(),
    )
    .unwrap();
    let c = connect(dir.path(), "agent-a").await;
    let r = call(&c, "get_notebook_content", json!({"path": "big.ipynb", "include_outputs": true, "max_output_chars": 0, "include_images": true})).await.ok();
    assert_eq!(r["truncated"], true);
    let next = r["next_start"].as_u64().unwrap();
    assert!(next > 0 && next < 40);
    assert_eq!(r["cells"].as_array().unwrap().len() as u64, next);
    let r = call(
        &c,
        "get_notebook_content",
        json!({"path": "big.ipynb", "include_outputs": true, "cell_ids": ["cell0003"]}),
    )
    .await
    .ok();
    let outs = &r["cells"][0]["outputs"];
    assert_eq!(outs[0]["text"].as_str().unwrap().chars().count(), 2000);
    assert_eq!(outs[0]["truncated_chars"], 10_009 - 2000);
    assert!(
        outs[1]["data"]["image/png"]["omitted_bytes"]
            .as_u64()
            .unwrap()
            > 8000
    );
    assert_eq!(outs[1]["data"]["text/plain"], "<Figure>");
    let s = call(
        &c,
        "search_notebook",
        json!({"path": "big.ipynb", "pattern": "figure", "search_in": "outputs", "max_results": 5}),
    )
    .await
    .ok();
    assert_eq!(s["matches"].as_array().unwrap().len(), 5);
    assert_eq!(s["truncated"], true);
    assert_eq!(s["matches"][0]["in"], "output");
    assert_eq!(s["matches"][0]["output_index"], 1);
    c.cancel().await.unwrap();
}

/// §8.8: a file written with cell ids says nbformat_minor ≥ 5. The raise is
/// in the log (the insert's own event), so a restart replays the same
/// header, finds the file as the log wrote it, and `verify` agrees.
#[tokio::test]
async fn an_empty_old_notebook_that_gains_a_cell_is_written_as_4_5() {
    let dir = tmp();
    std::fs::write(
        dir.path().join("old.ipynb"),
        r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 0}"#,
    )
    .unwrap();
    let c = connect(dir.path(), "agent-a").await;
    let ins = call(
        &c,
        "insert_cell",
        json!({"path": "old.ipynb", "source": "x"}),
    )
    .await
    .ok();
    let file = file_json(dir.path(), "old.ipynb");
    assert_eq!(file["nbformat_minor"], 5, "{file}");
    assert_eq!(file["cells"][0]["id"], ins["cell_id"]);
    c.cancel().await.unwrap();

    let c = connect(dir.path(), "agent-a").await;
    let r = call(&c, "get_notebook_content", json!({"path": "old.ipynb"}))
        .await
        .ok();
    assert_eq!(
        r["current_version"], ins["version"],
        "no outside change seen"
    );
    c.cancel().await.unwrap();
    let verify = std::process::Command::new(common::bin())
        .args(["verify", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// Writes `bytes` as an outside save that settled a while ago (so that no
/// rule for files still being written applies to it).
fn save_settled(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// §8.8: a cell id not matching `^[A-Za-z0-9_-]{1,64}$` fails nbformat's
/// schema, so the file is `invalid_notebook`, whether the log has never
/// seen it (import) or knew it (an outside change): reads and writes are
/// refused, nothing is appended and the file is left as it is.
#[tokio::test]
async fn malformed_cell_ids_make_the_file_invalid_on_import_and_on_an_outside_change() {
    let dir = tmp();
    let c = connect(dir.path(), "agent-a").await;
    let ids = create(&c, "known.ipynb", &["a", "b"]).await;
    let known = dir.path().join("known.ipynb");
    let good = std::fs::read(&known).unwrap();
    let malformed = [
        json!("$illegal_chars"),
        json!(""),
        json!("a".repeat(65)),
        json!("with space"),
        json!("é"),
        json!(7),
        Value::Null,
    ];
    for (k, bad) in malformed.iter().enumerate() {
        let mut f: Value = serde_json::from_slice(&good).unwrap();
        f["cells"][1]["id"] = bad.clone();
        let text = serde_json::to_string_pretty(&f).unwrap();
        let new = format!("new{k}.ipynb");
        save_settled(&dir.path().join(&new), text.as_bytes());
        save_settled(&known, text.as_bytes());
        for path in [new.as_str(), "known.ipynb"] {
            for (tool, args) in [
                ("get_notebook_content", json!({"path": path})),
                ("insert_cell", json!({"path": path, "source": "x"})),
                (
                    "update_cell",
                    json!({"path": path, "index": 0, "source": "x"}),
                ),
            ] {
                let r = call(&c, tool, args).await;
                assert_eq!(r.code(), "invalid_notebook", "{tool} {path} id {bad}");
                let reason = r.error()["reason"].as_str().unwrap();
                assert!(reason.contains("invalid id"), "{tool} {path}: {reason}");
            }
            assert_eq!(
                std::fs::read_to_string(dir.path().join(path)).unwrap(),
                text,
                "{path} was changed"
            );
        }
        // The good file back: the log takes up where it was.
        save_settled(&known, &good);
        let got: Vec<String> = cells(&c, "known.ipynb")
            .await
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(got, ids);
    }
    let listed = call(&c, "list_notebooks", json!({})).await.ok();
    for nb in listed["notebooks"].as_array().unwrap() {
        let want = if nb["path"] == "known.ipynb" { 1 } else { 0 };
        assert_eq!(nb["current_version"], want, "{nb}");
        assert_eq!(nb["imported"], want == 1, "{nb}");
    }
    c.cancel().await.unwrap();
}
