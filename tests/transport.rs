//! A message too large for the transport never leaves a client waiting
//! (contract §8.12): over stdio it is answered for its id, or, when its id
//! cannot be read, the session ends with a line on stderr. (HTTP: see
//! tests/http.rs; between processes: tests/multiprocess.rs.)

mod common;

use std::time::Duration;

use common::{RawStdio, call, connect_child, try_call};
use serde_json::{Value, json};

/// A mebibyte over the 16 MiB one stdio line may hold.
const OVER: usize = 17 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_update_cell_over_stdio_is_refused_too_large_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (client, _server) = connect_child(dir.path(), "agent").await;
    let ids = common::create(&client, "n.ipynb", &["x = 1"]).await;
    let huge = "a".repeat(20_000_000);
    let sent = try_call(
        &client,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": huge}),
    );
    // Only a hang reaches this bound: it turns one into a failure.
    let out = tokio::time::timeout(Duration::from_secs(120), sent)
        .await
        .expect("an answer for the call, not silence")
        .expect("a tool result");
    assert_eq!(out.code(), "too_large");
    let message = out.error()["message"].as_str().unwrap();
    assert!(message.contains("update_cell"), "{message}");
    assert!(message.contains("send less at once"), "{message}");
    assert_eq!(out.error()["limit"], json!(16 << 20));
    assert!(out.error()["actual"].as_u64().unwrap() > 20_000_000);
    // Nothing was done, and the same session goes on.
    let r = call(
        &client,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], json!(2));
    assert_eq!(common::file_sources(dir.path(), "n.ipynb"), ["x = 2"]);
}

#[test]
fn an_oversized_request_is_answered_for_its_id_wherever_the_id_sits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RawStdio::start(dir.path(), "raw");
    // The id after 17 MiB of params, on a method that is not a tool call:
    // a JSON-RPC error for that id.
    let late = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/list","params":{{"cursor":"{}"}},"id":"late-id"}}"#,
        "c".repeat(OVER)
    );
    assert!(server.send(&late));
    let answer = server.recv().expect("an answer, not the end of output");
    assert_eq!(answer["id"], "late-id", "{answer:.300}");
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["data"]["code"], "too_large");
    // A tool call: refused like any call over a limit, as a tool result.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "create_notebook",
        "arguments": {"path": "big.ipynb", "cells": [{"source": "s".repeat(OVER)}]}}});
    assert!(server.send(&call.to_string()));
    let answer = server.recv().expect("an answer, not the end of output");
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"],
        "too_large"
    );
    // The session goes on, and nothing was created.
    let listed = server.call(8, "list_notebooks", json!({}));
    assert_eq!(
        listed["result"]["structuredContent"]["notebooks"],
        json!([])
    );
    assert!(!dir.path().join("big.ipynb").exists());
    let (status, _) = server.finish();
    assert!(status.success());
}

#[test]
fn an_oversized_line_whose_id_cannot_be_read_ends_the_session_with_a_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RawStdio::start(dir.path(), "raw");
    let listed = server.call(1, "list_notebooks", json!({}));
    assert!(listed["result"].is_object());
    // Not a JSON-RPC object at all: there is no id to answer.
    let garbage = format!("[{}1]", "1,".repeat(OVER / 2));
    server.send(&garbage);
    let next: Option<Value> = server.recv();
    assert_eq!(next, None, "end of output, not silence");
    let (_, stderr) = server.finish();
    assert!(
        stderr.contains("closing the session") && stderr.contains("cannot be answered"),
        "{stderr}"
    );
}
