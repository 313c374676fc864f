//! What `tools/list` costs an agent, in bytes, as the real binary sends it
//! over stdio: the whole list, each tool, and each tool's input schema plus
//! description (what most clients put in the model's context). Run with
//! `--nocapture` to see the table; BENCHMARKS.md records the figures.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// The `tools/list` result line, exactly as the server wrote it, for a
/// server started with `extra` arguments.
fn tools_list(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--root")
        .arg(dir.path())
        .args(extra)
        .env_remove("NBLEDGER_TOOLSETS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nbledger");
    let mut stdin = child.stdin.take().unwrap();
    for msg in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "measure", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let answer = loop {
        let line = lines.next().expect("an answer to tools/list").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == json!(2) {
            break v;
        }
    };
    drop(stdin);
    let _ = child.wait();
    answer["result"].clone()
}

fn bytes(v: &Value) -> usize {
    serde_json::to_vec(v).unwrap().len()
}

/// Per tool: (name, whole, input schema + description, output schema).
fn measure(list: &Value) -> Vec<(String, usize, usize, usize)> {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let desc = t["description"].as_str().unwrap_or("").len();
            (
                t["name"].as_str().unwrap().to_owned(),
                bytes(t),
                bytes(&t["inputSchema"]) + desc,
                bytes(&t["outputSchema"]),
            )
        })
        .collect()
}

fn report(label: &str, list: &Value) -> (usize, usize, usize) {
    let rows = measure(list);
    let n = rows.len().max(1);
    let whole = bytes(list);
    let visible: usize = rows.iter().map(|r| r.2).sum();
    println!("{label}: {} tools", rows.len());
    println!(
        "{:<24} {:>7} {:>12} {:>8}",
        "tool", "whole", "input+desc", "output"
    );
    for (name, w, i, o) in &rows {
        println!("{name:<24} {w:>7} {i:>12} {o:>8}");
    }
    println!(
        "{label}: whole list {whole} B ({} B a tool); input schemas + descriptions {visible} B ({} B a tool)",
        whole / n,
        visible / n
    );
    (rows.len(), whole, visible)
}

#[test]
fn tools_list_bytes_whole_per_tool_and_model_visible() {
    let all = tools_list(&[]);
    let (n, whole, visible) = report("all tools", &all);
    // Issue 11's budget: what a model sees (input schema + description) at
    // most 1 KB a tool on average, the whole list at most 1.25 KB a tool.
    assert!(
        visible <= n * 1024,
        "input schemas + descriptions take {visible} B for {n} tools"
    );
    assert!(
        whole <= n * 1280,
        "tools/list takes {whole} B for {n} tools"
    );

    let lean = tools_list(&["--toolsets", "read,edit,collab"]);
    let (_, _, lean_visible) = report("--toolsets read,edit,collab", &lean);
    assert!(
        lean_visible < 15_000,
        "a lean agent's model sees {lean_visible} B of tools"
    );
}
