//! `serve --http`: both protocol eras on one server, the bearer token,
//! Host and Origin checks, and the loopback rule (contract §6, §8.11).

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::call;
use serde_json::json;

use common::{TOKEN, http_client as client, http_server as start};

/// One raw HTTP/1.1 request (an `initialize` POST, or a bodyless GET for
/// refusals: a server that refuses before reading a body closes with data
/// unread, and the reset can swallow its answer); returns the response head.
fn raw(url: &str, post: bool, headers: &[(&str, &str)]) -> String {
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest.split_once('/').unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    let body = if post { body } else { "" };
    let mut req = format!(
        "{} /{path} HTTP/1.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n",
        if post { "POST" } else { "GET" },
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {hostport}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while head.len() < 512 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                head.extend_from_slice(format!("<read error: {e}>").as_bytes());
                break;
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocol_eras_share_one_log_and_locks_cross_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start(dir.path(), Some(TOKEN));
    let old = client(&url, "legacy-agent", false).await;
    let new = client(&url, "modern-agent", true).await;

    let created = call(
        &old,
        "create_notebook",
        json!({"path": "n.ipynb", "cells": [{"source": "a"}]}),
    )
    .await
    .ok();
    assert_eq!(
        created["client_name"], "legacy-agent",
        "the declared name from the handshake"
    );
    let id = created["cell_ids"][0].as_str().unwrap().to_owned();
    let r = call(
        &new,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "b"}),
    )
    .await
    .ok();
    assert_eq!(
        r["client_name"], "modern-agent",
        "the declared name from per-request metadata"
    );
    assert_eq!(r["version"], 2);

    // A lock taken on one connection binds the other: identity is the name.
    call(
        &new,
        "lock_cells",
        json!({"path": "n.ipynb", "cell_id": id, "client_name": "alice"}),
    )
    .await
    .ok();
    let refused = call(
        &old,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "c", "client_name": "bob"}),
    )
    .await;
    assert_eq!(refused.code(), "locked");
    call(
        &old,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "c", "client_name": "alice"}),
    )
    .await
    .ok();
    let feed = call(&new, "get_notebook_changes", json!({"path": "n.ipynb"}))
        .await
        .ok();
    let clients: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_name"].as_str().unwrap())
        .collect();
    assert_eq!(clients, ["legacy-agent", "modern-agent", "alice", "alice"]);
    old.cancel().await.unwrap();
    new.cancel().await.unwrap();
    server.kill().unwrap();
    let _ = server.wait();
}

#[tokio::test]
async fn token_host_and_origin_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start(dir.path(), Some(TOKEN));
    let none = raw(&url, false, &[]);
    assert!(none.starts_with("http/1.1 401"), "{none}");
    assert!(none.contains("www-authenticate: bearer"), "{none}");
    let wrong = raw(&url, false, &[("authorization", "Bearer nope")]);
    assert!(wrong.starts_with("http/1.1 401"), "{wrong}");
    let auth = format!("Bearer {TOKEN}");
    let ok = raw(&url, true, &[("authorization", &auth)]);
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    let host = raw(
        &url,
        false,
        &[("authorization", &auth), ("host", "evil.example")],
    );
    assert!(
        host.starts_with("http/1.1 403"),
        "DNS-rebinding Host refused: {host}"
    );
    let origin = raw(
        &url,
        false,
        &[("authorization", &auth), ("origin", "http://evil.example")],
    );
    assert!(
        origin.starts_with("http/1.1 403"),
        "foreign Origin refused: {origin}"
    );
    server.kill().unwrap();
    let _ = server.wait();

    // Loopback without a token serves; off loopback without one refuses.
    let (mut open, url) = start(dir.path(), None);
    assert!(raw(&url, true, &[]).starts_with("http/1.1 200"));
    open.kill().unwrap();
    let _ = open.wait();
    let out = Command::new(common::bin())
        .args(["serve", "--http", "0.0.0.0:0", "--root"])
        .arg(dir.path())
        .env_remove("NBLEDGER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
}

#[test]
fn a_server_whose_stderr_nobody_reads_still_answers() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(common::bin())
        .args(["serve", "--http", "127.0.0.1:0", "--root"])
        .arg(dir.path())
        .env("NBLEDGER_LOG", "info")
        .env_remove("NBLEDGER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving MCP at") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0);
    }
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    // From now on every log line the server writes fails with EPIPE.
    drop(err);
    for _ in 0..3 {
        let head = raw(&url, true, &[]);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let head = raw(&url, false, &[("host", "evil.example")]);
        assert!(head.starts_with("http/1.1 403"), "{head}");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
