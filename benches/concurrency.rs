//! Concurrent load through real server processes (issue 4).
//!
//! `cargo bench --bench concurrency` runs, on a 100-cell notebook:
//! - stdio: N agents, each with its own `nbledger serve` process on the
//!   same root (the first owns the store, the rest attach and forward);
//! - http: N agents on one `serve --http` process (2026-07-28 clients);
//! - one agent through an attached process vs through the owner.
//!
//! Each agent does NBLEDGER_LOAD_N (default 300) `update_cell` calls on its
//! own cell, back to back. Prints aggregate writes/s and p50/p99 latency.
//! NBLEDGER_LOAD_CASES picks some of `stdio,http,attached` (default all)
//! and NBLEDGER_LOAD_CLIENTS the client counts (default `1,4,16`);
//! NBLEDGER_LOAD_SERVE_ARGS adds arguments to the http server's `serve`,
//! and NBLEDGER_LOAD_ROOT replaces the temporary workspace (to measure with
//! a JupyterLab room joined: BENCHMARKS.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

const CELLS: usize = 100;

fn config(name: &str) -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "0.1"),
    )
}

async fn stdio(root: &Path, name: &str) -> Client {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_nbledger"));
    cmd.arg("serve").arg("--root").arg(root);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    config(name).serve(transport).await.expect("handshake")
}

fn http_server(root: &Path) -> (std::process::Child, String) {
    // Extra serve arguments, e.g. `--jupyter URL --jupyter-token-file F`
    // to measure with the JupyterLab room joined (BENCHMARKS.md).
    let extra = std::env::var("NBLEDGER_LOAD_SERVE_ARGS").unwrap_or_default();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nbledger"))
        .args(["serve", "--http", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving MCP at") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "server stopped");
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    (child, url)
}

async fn http(url: &str, name: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    config(name)
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("connect")
}

async fn update(c: &Client, cell: &str, i: usize) {
    let args = json!({"path": "n.ipynb", "cell_id": cell, "source": format!("x = {i}")});
    let r = c
        .call_tool(
            CallToolRequestParams::new("update_cell")
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true), "{:?}", r.structured_content);
}

/// A workspace: a temporary folder, or NBLEDGER_LOAD_ROOT (its earlier log
/// removed) when a JupyterLab serves that folder.
struct Workspace {
    path: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Workspace {
    fn path(&self) -> &Path {
        &self.path
    }
}

fn workspace() -> Workspace {
    let dir = match std::env::var_os("NBLEDGER_LOAD_ROOT") {
        Some(r) => {
            let path = std::path::PathBuf::from(r);
            let _ = std::fs::remove_dir_all(path.join(".nbledger"));
            Workspace { path, _tmp: None }
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            Workspace {
                path: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
            }
        }
    };
    let cells: Vec<Value> = (0..CELLS)
        .map(|i| {
            json!({"cell_type": "code", "execution_count": null, "id": format!("c{i:07}"),
                   "metadata": {}, "outputs": [], "source": format!("x_{i} = {i}")})
        })
        .collect();
    let nb = json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    std::fs::write(dir.path().join("n.ipynb"), nb.to_string()).unwrap();
    dir
}

/// Runs every client's `n` updates at once; prints and returns writes/s.
async fn run(label: &str, clients: Vec<Client>, n: usize) -> f64 {
    let clients: Vec<Arc<Client>> = clients.into_iter().map(Arc::new).collect();
    // Warm up: the import, caches, connections.
    for (k, c) in clients.iter().enumerate() {
        update(c, &format!("c{k:07}"), usize::MAX - k).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (k, c) in clients.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let cell = format!("c{k:07}");
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                update(&c, &cell, i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let rate = lat.len() as f64 / total.as_secs_f64();
    println!(
        "{label:<28} {:>6} writes  {:>8.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        lat.len(),
        rate,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.cancel().await;
        }
    }
    rate
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    let n: usize = std::env::var("NBLEDGER_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    println!("update_cell on a {CELLS}-cell notebook, {n} calls per client, durable per call");
    let cases =
        std::env::var("NBLEDGER_LOAD_CASES").unwrap_or_else(|_| "stdio,http,attached".into());
    let counts: Vec<usize> = std::env::var("NBLEDGER_LOAD_CLIENTS")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let scaling = |label: &str, rates: &[f64]| {
        if rates.len() > 1 {
            let ratios: Vec<String> = counts
                .iter()
                .zip(rates)
                .skip(1)
                .map(|(c, r)| format!("{c} = {:.2}x", r / rates[0]))
                .collect();
            println!(
                "{label} scaling: {} of {} client(s)",
                ratios.join(", "),
                counts[0]
            );
        }
    };

    let mut stdio_rates = Vec::new();
    for &clients in counts.iter().filter(|_| cases.contains("stdio")) {
        let dir = workspace();
        let mut cs = Vec::new();
        for k in 0..clients {
            cs.push(stdio(dir.path(), &format!("agent{k}")).await);
        }
        let rate = run(&format!("stdio, {clients} processes"), cs, n).await;
        stdio_rates.push(rate);
    }
    let mut http_rates = Vec::new();
    for &clients in counts.iter().filter(|_| cases.contains("http")) {
        let dir = workspace();
        let (mut server, url) = http_server(dir.path());
        let mut cs = Vec::new();
        for k in 0..clients {
            cs.push(http(&url, &format!("agent{k}")).await);
        }
        http_rates.push(run(&format!("http, {clients} clients"), cs, n).await);
        let _ = server.kill();
        let _ = server.wait();
    }
    scaling("stdio", &stdio_rates);
    scaling("http", &http_rates);
    if !cases.contains("attached") {
        return;
    }
    // One agent, served by the owner vs by an attached process.
    let dir = workspace();
    let owner = stdio(dir.path(), "owner").await;
    let by_owner = run("one agent, owner process", vec![owner], n).await;
    let dir2 = workspace();
    let idle_owner = stdio(dir2.path(), "idle").await;
    let attached = stdio(dir2.path(), "attached").await;
    let by_attached = run("one agent, attached process", vec![attached], n).await;
    drop(idle_owner);
    println!("attached / owner throughput: {:.2}", by_attached / by_owner);
}
