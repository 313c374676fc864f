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

/// One HTTP/1.1 exchange as the conformance suite makes it: every header
/// given by hand (Host included), the whole body sent, then the status,
/// the response head (lowercase) and the first JSON-RPC message of the
/// body (plain JSON or the `data:` of an SSE event), if any.
struct Exchange {
    status: u16,
    head: String,
    body: String,
    message: Option<serde_json::Value>,
}

fn exchange(url: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server that answers before reading the whole body may close on
    // the rest: what it answered is what the test looks at.
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(done) = parse_reply(&raw)
            && (done.message.is_some() || !done.head.contains("text/event-stream"))
        {
            return done;
        }
    }
    parse_reply(&raw).unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&raw)))
}

/// The reply in `raw` once its head and (for a sized body) whole body are in.
fn parse_reply(raw: &[u8]) -> Option<Exchange> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|l| l.trim().parse::<usize>().ok())
    {
        if body.len() < len {
            return None;
        }
    } else if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body);
    let message = if head.contains("text/event-stream") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
    } else {
        serde_json::from_str(&text).ok()
    };
    Some(Exchange {
        status,
        head,
        body: text.into_owned(),
        message,
    })
}

/// The chunks received so far, joined.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|h| usize::from_str_radix(h.trim(), 16).ok());
        let Some(size) = size.filter(|n| *n > 0) else {
            break;
        };
        let start = eol + 2;
        let Some(chunk) = raw.get(start..start + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    out
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conformance","version":"1"}}}"#;

/// A 2026-07-28 request: no session, everything in `_meta`.
fn modern(id: u64, method: &str, params: serde_json::Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "conformance", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The headers a 2026-07-28 request carries besides Host and Origin.
fn modern_headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        h.push(("mcp-name", n));
    }
    h
}

/// Initialize, initialized, then a tool call, all with `host` and
/// `origin`, in the 2025-11-25 era; panics unless every step succeeds.
fn legacy_session_works(url: &str, host: &str, origin: &str) {
    let base = [("host", host), ("origin", origin)];
    let init = exchange(url, &base, INITIALIZE);
    assert_eq!(init.status, 200, "initialize: {}", init.head);
    let message = init.message.expect("an initialize result");
    assert_eq!(message["result"]["protocolVersion"], "2025-11-25");
    let session = init
        .head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .trim()
        .to_owned();
    let mut with = base.to_vec();
    with.push(("mcp-session-id", &session));
    with.push(("mcp-protocol-version", "2025-11-25"));
    let note = exchange(
        url,
        &with,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(note.status, 202, "initialized: {}", note.head);
    let listed = exchange(
        url,
        &with,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_notebooks","arguments":{}}}"#,
    );
    assert_eq!(listed.status, 200, "tools/call: {}", listed.head);
    let message = listed.message.expect("a tools/call result");
    assert_eq!(
        message["result"]["structuredContent"]["notebooks"],
        json!([])
    );
}

/// Discovery, then a tool call, with `host` and `origin`, in the
/// 2026-07-28 era; panics unless both succeed.
fn modern_calls_work(url: &str, host: &str, origin: &str) {
    let mut with = vec![("host", host), ("origin", origin)];
    with.extend(modern_headers("server/discover", None));
    let found = exchange(url, &with, &modern(1, "server/discover", json!({})));
    assert_eq!(found.status, 200, "server/discover: {}", found.head);
    let message = found.message.expect("a discover result");
    assert!(
        message["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")),
        "{message}"
    );
    let mut with = vec![("host", host), ("origin", origin)];
    with.extend(modern_headers("tools/call", Some("list_notebooks")));
    let body = modern(
        2,
        "tools/call",
        json!({"name": "list_notebooks", "arguments": {}}),
    );
    let listed = exchange(url, &with, &body);
    assert_eq!(listed.status, 200, "tools/call: {}", listed.head);
    let message = listed.message.expect("a tools/call result");
    assert_eq!(
        message["result"]["structuredContent"]["notebooks"],
        json!([])
    );
}

/// The conformance suite's `localhost-host-valid-accepted`: a loopback
/// server is reached with its own Host and the matching Origin (a page it
/// serves, or a client that sends one), in both protocol eras.
#[test]
fn the_servers_own_origin_is_accepted_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start(dir.path(), None);
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .to_owned();
    for name in ["127.0.0.1", "localhost"] {
        let host = format!("{name}:{port}");
        let origin = format!("http://{host}");
        legacy_session_works(&url, &host, &origin);
        modern_calls_work(&url, &host, &origin);
    }
    server.kill().unwrap();
    let _ = server.wait();
}

/// The conformance suite's `localhost-host-rebinding-rejected`, and the
/// origins next to the server's own that are still foreign: another port,
/// another scheme. Refused with 403 in both eras, before anything runs.
#[test]
fn a_rebinding_host_or_a_foreign_origin_is_refused_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start(dir.path(), None);
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let own = format!("127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    let https = format!("https://{own}");
    let cases: [(&str, &str); 4] = [
        ("evil.example.com", "http://evil.example.com"),
        (&own, "http://evil.example.com"),
        (&own, &other_port),
        (&own, &https),
    ];
    let write = json!({"name": "create_notebook", "arguments": {"path": "pwned.ipynb"}});
    for (host, origin) in cases {
        let legacy = exchange(&url, &[("host", host), ("origin", origin)], INITIALIZE);
        assert_eq!(legacy.status, 403, "{host} / {origin}: {}", legacy.head);
        let mut with = vec![("host", host), ("origin", origin)];
        with.extend(modern_headers("tools/call", Some("create_notebook")));
        let modern_call = exchange(&url, &with, &modern(1, "tools/call", write.clone()));
        assert_eq!(
            modern_call.status, 403,
            "{host} / {origin}: {}",
            modern_call.head
        );
    }
    assert!(!dir.path().join("pwned.ipynb").exists());
    server.kill().unwrap();
    let _ = server.wait();
}

/// §8.12 over HTTP: a body over the 16 MiB message limit gets 413 with a
/// reason and what to do, never silence; one under it is served, however
/// much over rmcp's own 4 MiB default (its tool then judges its content).
#[test]
fn a_body_over_the_message_limit_gets_413_and_one_under_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start(dir.path(), None);
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let create = |source: String| {
        modern(
            1,
            "tools/call",
            json!({"name": "create_notebook",
                   "arguments": {"path": "big.ipynb", "cells": [{"source": source}]}}),
        )
    };
    let mut with = vec![("host", host.as_str())];
    with.extend(modern_headers("tools/call", Some("create_notebook")));
    let served = exchange(&url, &with, &create("s".repeat(5 << 20)));
    assert_eq!(served.status, 200, "{}", served.head);
    let message = served.message.expect("a tools/call result");
    assert_eq!(
        message["result"]["structuredContent"]["error"]["code"], "too_large",
        "the tool's own limit on a cell source"
    );
    let refused = exchange(&url, &with, &create("s".repeat(17 << 20)));
    assert_eq!(refused.status, 413, "{}", refused.head);
    assert!(
        refused.body.contains("16777216") && refused.body.contains("split"),
        "{}",
        refused.body
    );
    assert!(!dir.path().join("big.ipynb").exists());
    // The server goes on.
    modern_calls_work(&url, &host, &format!("http://{host}"));
    server.kill().unwrap();
    let _ = server.wait();
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
