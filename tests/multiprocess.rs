//! Several server processes on one root share one log (contract §1,
//! §8.9): the first owns the store, the others attach over its socket and
//! forward their calls; when the owner dies another takes over.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Client, Outcome, call, connect, connect_child, http_client, http_server, try_call};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Every returned write: version → (client, tool).
type Returned = Arc<Mutex<BTreeMap<u64, (String, String)>>>;

/// One agent's mixed writes on `n.ipynb`: inserts after its own cell,
/// updates of its cell, lock/unlock pairs and metadata-free type flips,
/// each with a request_id. An `unavailable` answer is retried with the
/// same request_id, as the contract tells agents to.
async fn agent(client: &Client, name: &str, own: &str, writes: usize, returned: Returned) {
    for i in 0..writes {
        let rid = format!("{name}-{i}");
        let (tool, args) = match i % 4 {
            0 => (
                "insert_cell",
                json!({"path": "n.ipynb", "after_cell_id": own, "source": format!("# {name} {i}")}),
            ),
            1 => (
                "update_cell",
                json!({"path": "n.ipynb", "cell_id": own, "source": format!("{name} = {i}")}),
            ),
            2 => (
                "lock_cells",
                json!({"path": "n.ipynb", "cell_ids": [own], "ttl_seconds": 60}),
            ),
            _ => (
                "unlock_cells",
                json!({"path": "n.ipynb", "cell_ids": [own]}),
            ),
        };
        let mut args = args;
        args["client_name"] = json!(name);
        args["request_id"] = json!(rid);
        let out = retry(client, tool, &args).await;
        let out = out.unwrap_or_else(|| panic!("{name}: {tool} #{i} never got an answer"));
        let v = out.ok();
        let version = v["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("{tool} changed nothing: {v}"));
        let prev = returned
            .lock()
            .await
            .insert(version, (name.to_owned(), tool.to_owned()));
        assert!(prev.is_none(), "version {version} returned twice");
    }
}

/// Calls until the answer is not `unavailable`; `None` if the transport
/// itself died (the client's own server was killed).
async fn retry(client: &Client, tool: &str, args: &Value) -> Option<Outcome> {
    for _ in 0..200 {
        match try_call(client, tool, args.clone()).await {
            Ok(out) if out.is_error && out.code() == "unavailable" => {
                assert_eq!(out.error()["retryable"], json!(true), "{}", out.value);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(out) => return Some(out),
            Err(_) => return None,
        }
    }
    panic!("{tool}: still unavailable after many retries");
}

/// The notebook's whole change feed as version → client name.
async fn feed(client: &Client) -> (BTreeMap<u64, String>, u64) {
    let mut seen = BTreeMap::new();
    let mut since = 0;
    loop {
        let r = call(
            client,
            "get_notebook_changes",
            json!({"path": "n.ipynb", "since_version": since, "limit": 1000}),
        )
        .await
        .ok();
        for c in r["changes"].as_array().unwrap() {
            let v = c["version"].as_u64().unwrap();
            let who = c["client_name"].as_str().unwrap().to_owned();
            assert!(seen.insert(v, who).is_none(), "version {v} listed twice");
        }
        since = r["next_since_version"].as_u64().unwrap();
        if !r["has_more"].as_bool().unwrap() {
            return (seen, r["current_version"].as_u64().unwrap());
        }
    }
}

/// The file parses as a notebook and holds exactly the served cells.
async fn file_matches_log(root: &Path, client: &Client) {
    let bytes = std::fs::read(root.join("n.ipynb")).unwrap();
    nbledger::ipynb::parse(&bytes).expect("the file is a valid notebook");
    let served: Vec<String> = common::cells(client, "n.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(common::file_sources(root, "n.ipynb"), served);
}

/// Creates `n.ipynb` with one cell per agent; returns their ids.
async fn setup(client: &Client, agents: usize) -> Vec<String> {
    let sources: Vec<String> = (0..agents).map(|k| format!("agent{k} = 0")).collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    common::create(client, "n.ipynb", &refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_stdio_processes_and_one_http_server_share_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The first process owns the store; the rest attach.
    let mut stdio = vec![connect(root, "agent0").await];
    let own = setup(&stdio[0], 8).await;
    for k in 1..4 {
        stdio.push(connect(root, &format!("agent{k}")).await);
    }
    let (mut server, url) = http_server(root, Some(common::TOKEN));
    let mut clients: Vec<Client> = stdio;
    for k in 4..8 {
        clients.push(http_client(&url, &format!("agent{k}"), k % 2 == 0).await);
    }
    let returned: Returned = Arc::default();
    let mut tasks = Vec::new();
    let clients: Vec<Arc<Client>> = clients.into_iter().map(Arc::new).collect();
    for (k, client) in clients.iter().enumerate() {
        let (client, own, returned) = (client.clone(), own[k].clone(), returned.clone());
        tasks.push(tokio::spawn(async move {
            agent(&client, &format!("agent{k}"), &own, 100, returned).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let returned = returned.lock().await.clone();
    assert_eq!(returned.len(), 800);
    // The create was version 1; the 800 writes are exactly 2..=801.
    let versions: Vec<u64> = returned.keys().copied().collect();
    assert_eq!(versions, (2..=801).collect::<Vec<_>>());
    // Every process sees the same feed: each write once, by its client.
    for client in [&clients[2], &clients[6]] {
        let (seen, current) = feed(client).await;
        assert_eq!(current, 801);
        assert_eq!(seen.len(), 801);
        for (v, (who, _)) in &returned {
            assert_eq!(&seen[v], who, "version {v}");
        }
    }
    file_matches_log(root, &clients[5]).await;
    for c in &clients[1..] {
        assert_eq!(common::cells(c, "n.ipynb").await.len(), 8 + 8 * 25);
    }
    server.kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owner_killed_mid_load_loses_no_returned_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (owner, mut owner_proc) = connect_child(root, "agent0").await;
    let own = setup(&owner, 6).await;
    let mut clients = vec![Arc::new(owner)];
    for k in 1..4 {
        clients.push(Arc::new(connect(root, &format!("agent{k}")).await));
    }
    let (mut server, url) = http_server(root, Some(common::TOKEN));
    for k in 4..6 {
        clients.push(Arc::new(
            http_client(&url, &format!("agent{k}"), k == 4).await,
        ));
    }
    let returned: Returned = Arc::default();
    let mut tasks = Vec::new();
    for (k, client) in clients.iter().enumerate().skip(1) {
        let (client, own, returned) = (client.clone(), own[k].clone(), returned.clone());
        tasks.push(tokio::spawn(async move {
            agent(&client, &format!("agent{k}"), &own, 100, returned).await;
        }));
    }
    // The owner's own agent writes until its process dies under it.
    let owner_client = clients[0].clone();
    let owner_own = own[0].clone();
    let owner_returned = returned.clone();
    let owner_task = tokio::spawn(async move {
        for i in 0.. {
            let args = json!({"path": "n.ipynb", "cell_id": owner_own, "source": format!("agent0 = {}", i + 1),
                "client_name": "agent0", "request_id": format!("agent0-{i}")});
            match try_call(&owner_client, "update_cell", args).await {
                Ok(out) => {
                    let v = out.ok()["version"].as_u64().unwrap();
                    owner_returned
                        .lock()
                        .await
                        .insert(v, ("agent0".into(), "update_cell".into()));
                }
                Err(_) => return,
            }
        }
    });
    // Kill the owner once the load is well under way.
    loop {
        if returned.lock().await.len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    owner_proc.start_kill().unwrap();
    owner_proc.wait().await.unwrap();
    owner_task.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let returned = returned.lock().await.clone();
    let by_survivors = returned.values().filter(|(w, _)| w != "agent0").count();
    assert_eq!(by_survivors, 500, "every surviving agent finished");
    // The log has no gap and lists every returned write by its client; the
    // only versions nobody saw returned are the killed agent's last call.
    let (seen, current) = feed(&clients[3]).await;
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=current).collect::<Vec<_>>()
    );
    for (v, (who, _)) in &returned {
        assert_eq!(&seen[v], who, "returned version {v} is in the log");
    }
    let unreturned: Vec<_> = seen
        .iter()
        .filter(|(v, _)| **v > 1 && !returned.contains_key(v))
        .collect();
    assert!(
        unreturned.iter().all(|(_, who)| *who == "agent0") && unreturned.len() <= 1,
        "{unreturned:?}"
    );
    file_matches_log(root, &clients[4]).await;
    server.kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_on_a_write_through_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = connect(root, "writer").await;
    let ids = common::create(&a, "n.ipynb", &["x = 1"]).await;
    let b = connect(root, "watcher").await;
    let poll = tokio::spawn(async move {
        let r = call(
            &b,
            "get_notebook_changes",
            json!({"path": "n.ipynb", "since_version": 1, "wait_ms": 30000}),
        )
        .await
        .ok();
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = call(
        &a,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "x = 2"}),
    )
    .await
    .ok()["version"]
        .as_u64()
        .unwrap();
    let (_b, r) = poll.await.unwrap();
    assert_eq!(r["waited"], json!(true));
    let changes = r["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{r}");
    assert_eq!(changes[0]["version"], json!(v));
    // The declared name of the writer's client, passed through no socket.
    assert_eq!(changes[0]["client_name"], json!("writer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_calls_carry_their_own_clients_name_and_survive_a_clean_owner_exit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let owner = connect(root, "first").await;
    let ids = common::create(&owner, "n.ipynb", &["a = 1"]).await;
    let attached = connect(root, "second").await;
    assert!(root.join(".nbledger").join(nbledger::hub::SOCKET).exists());
    // No client_name: the attached process's client's declared name.
    let r = call(
        &attached,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": ids[0], "source": "a = 2"}),
    )
    .await
    .ok();
    assert_eq!(r["client_name"], json!("second"));
    // The owner's client goes away: its process stops cleanly and the
    // attached one takes over, with every write still there.
    owner.cancel().await.unwrap();
    let r = call(
        &attached,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "b = 3"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], json!(3));
    assert_eq!(r["client_name"], json!("second"));
    let sources: Vec<String> = common::cells(&attached, "n.ipynb")
        .await
        .into_iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(sources, ["a = 2", "b = 3"]);
    // A process started now attaches to the new owner.
    let third = connect(root, "third").await;
    let (seen, current) = feed(&third).await;
    assert_eq!(current, 3);
    assert_eq!(seen[&2], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_from_a_killed_owner_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (c, mut p) = connect_child(root, "gone").await;
    common::create(&c, "n.ipynb", &["x = 1"]).await;
    p.start_kill().unwrap();
    p.wait().await.unwrap();
    let sock = root.join(".nbledger").join(nbledger::hub::SOCKET);
    assert!(sock.exists(), "a killed owner leaves its socket behind");
    let next = connect(root, "next").await;
    let (seen, _) = feed(&next).await;
    assert_eq!(seen[&1], "gone");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let folder = std::fs::metadata(root.join(".nbledger")).unwrap();
    assert_eq!(folder.permissions().mode() & 0o777, 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_refuses_another_version_or_root_naming_both() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let _owner = connect(root, "owner").await;
    let sock = root.join(".nbledger").join(nbledger::hub::SOCKET);
    let ask = |hello: Value| {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(format!("{hello}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let canonical = std::fs::canonicalize(root).unwrap();
    let w = ask(
        json!({"nbledger": "0.0.1-old", "store_format": nbledger::hub::store_format(),
        "root": canonical}),
    );
    assert_eq!(w["ok"], json!(false));
    let msg = w["message"].as_str().unwrap();
    assert!(
        msg.contains("0.0.1-old") && msg.contains(env!("CARGO_PKG_VERSION")),
        "{msg}"
    );
    let w = ask(
        json!({"nbledger": env!("CARGO_PKG_VERSION"), "store_format": "9.9",
        "root": canonical}),
    );
    assert!(w["message"].as_str().unwrap().contains("9.9"), "{w}");

    // A process given another root but this data folder refuses to start.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--root"])
        .arg(other.path())
        .arg("--data")
        .arg(root.join(".nbledger"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&*canonical.to_string_lossy()) && err.contains("root"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_commands_read_beside_running_servers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = connect(root, "owner-agent").await;
    let ids = common::create(&a, "n.ipynb", &["x = 1"]).await;
    let b = connect(root, "attached-agent").await;
    for i in 0..5 {
        call(
            &b,
            "update_cell",
            json!({"path": "n.ipynb", "cell_id": ids[0], "source": format!("x = {}", i + 2)}),
        )
        .await
        .ok();
    }
    let audit = |args: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .arg("--root")
            .arg(root)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = audit(&["verify"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, _) = audit(&["log", "--json"]);
    assert_eq!(code, Some(0));
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[5]["client_name"], json!("attached-agent"));
    // The servers were not disturbed: both still write.
    for c in [&a, &b] {
        call(
            c,
            "insert_cell",
            json!({"path": "n.ipynb", "source": "after = 1"}),
        )
        .await
        .ok();
    }
    let (code, stdout, _) = audit(&["show", "n.ipynb", "--at", "8"]);
    assert_eq!(code, Some(0));
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["cells"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_owner_finishes_its_calls_and_hands_over_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (owner, mut owner_proc) = connect_child(root, "owner").await;
    let ids = common::create(&owner, "n.ipynb", &["x = 0"]).await;
    common::create(&owner, "quiet.ipynb", &["y = 0"]).await;
    let attached = Arc::new(connect(root, "attached").await);
    // A long-poll in flight on the owner, through the attached process.
    let poller = attached.clone();
    let poll = tokio::spawn(async move {
        call(
            &poller,
            "get_notebook_changes",
            json!({"path": "quiet.ipynb", "since_version": 2, "wait_ms": 60000}),
        )
        .await
    });
    let writer = attached.clone();
    let id = ids[0].clone();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = done.clone();
    let writes = tokio::spawn(async move {
        let mut versions = Vec::new();
        for i in 1..=300 {
            let r = call(
                &writer,
                "update_cell",
                json!({"path": "n.ipynb", "cell_id": id, "source": format!("x = {i}")}),
            )
            .await;
            // A clean stop is invisible to attached callers: no errors.
            versions.push(r.ok()["version"].as_u64().unwrap());
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        versions
    });
    while done.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = owner_proc.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = owner_proc.wait().await.unwrap();
    assert!(status.success(), "a clean stop exits 0: {status:?}");
    let versions = writes.await.unwrap();
    assert_eq!(versions, (3..=302).collect::<Vec<_>>());
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst) == 300,
        "the writes went on across the handover"
    );
    drop(owner);
    // The long-poll is answered (or moved to the new owner), never an error.
    let polled = poll.await.unwrap();
    assert!(!polled.is_error, "{}", polled.value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_through_an_attached_process_gets_the_owners_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let owner = connect(root, "owner").await;
    common::create(&owner, "n.ipynb", &["x = 1"]).await;
    let attached = connect(root, "attached").await;
    let direct = try_call(&owner, "no_such_tool", json!({"path": "n.ipynb"}))
        .await
        .expect_err("the owner refuses an unknown tool at the protocol level");
    let forwarded = try_call(&attached, "no_such_tool", json!({"path": "n.ipynb"}))
        .await
        .expect_err("the same refusal through the attached process, not a tool result");
    let (rmcp::ServiceError::McpError(direct), rmcp::ServiceError::McpError(forwarded)) =
        (&direct, &forwarded)
    else {
        panic!("JSON-RPC errors expected: {direct:?} / {forwarded:?}");
    };
    assert_eq!(forwarded.code, direct.code);
    assert_eq!(forwarded.message, direct.message);
    // Nothing was taken for a dead owner: the attached process goes on.
    let r = call(
        &attached,
        "insert_cell",
        json!({"path": "n.ipynb", "source": "y = 2"}),
    )
    .await
    .ok();
    assert_eq!(r["version"], json!(2));
    assert!(
        root.join(".nbledger").join(nbledger::hub::SOCKET).exists(),
        "the owner still owns the store"
    );
}

/// A call the front door takes (a stdio line just under 16 MiB) grows on
/// its way to the owner (the caller's name is added): the link between
/// processes still carries it, and the caller gets the owner's answer.
#[test]
fn a_request_at_the_stdio_limit_is_answered_through_an_attached_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut owner = common::RawStdio::start(root, "owner");
    let created = owner.call(
        1,
        "create_notebook",
        json!({"path": "n.ipynb", "cells": [{"source": "x = 1"}]}),
    );
    let id = created["result"]["structuredContent"]["cell_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut attached = common::RawStdio::start(root, "attached");
    assert!(root.join(".nbledger").join(nbledger::hub::SOCKET).exists());
    let request = |source: &str| {
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "update_cell",
            "arguments": {"path": "n.ipynb", "cell_id": id, "source": source}}})
        .to_string()
    };
    let fill = (16 << 20) - 1 - request("").len();
    let line = request(&"a".repeat(fill));
    assert_eq!(line.len(), (16 << 20) - 1);
    assert!(attached.send(&line));
    let answer = attached.recv().expect("an answer, not the end of output");
    assert_eq!(answer["id"], 2);
    // The owner's own refusal: a cell source is at most 1 MiB.
    let error = &answer["result"]["structuredContent"]["error"];
    assert_eq!(error["code"], "too_large", "{answer:.500}");
    let r = attached.call(
        3,
        "update_cell",
        json!({"path": "n.ipynb", "cell_id": id, "source": "x = 2"}),
    );
    assert_eq!(r["result"]["structuredContent"]["version"], json!(2), "{r}");
    let (status, _) = attached.finish();
    assert!(status.success());
    let (status, _) = owner.finish();
    assert!(status.success());
}
