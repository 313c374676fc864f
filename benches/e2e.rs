//! End-to-end load: a real MCP client drives the release binary over stdio.
//!
//! `cargo bench --bench e2e` prints p50/p99 latency and throughput for
//! sequential `update_cell` calls by cell id on (a) a 100-cell notebook
//! without outputs and (b) a 1,000-cell notebook with image and stream
//! outputs (about 4.7 MB), and for reading one cell of (b).
//! NBLEDGER_E2E_N sets the number of calls per case (default 2000).
//!
//! Group commit is measured in process first: N threads (1, 4, 16) share
//! one `Engine` and call `update_cell` on distinct cells of a 100-cell
//! notebook, NBLEDGER_E2E_N calls in all per case; the table gives each
//! call's latency and the aggregate rate, and the rates are compared with
//! the first case's. NBLEDGER_E2E_THREADS (default `1,4,16`) sets the
//! thread counts; NBLEDGER_E2E_CONCURRENT_ONLY=1 skips the MCP cases.
//!
//! NBLEDGER_E2E_BASELINE=BIN compares instead: cases (a) and (b) and a
//! cold start (spawn to first answer on a store with both notebooks) run
//! against BIN (another build of nbledger) and this build, alternating
//! three rounds each in one run, and the table gives their ratio.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nbledger::engine::{Actor, Engine};
use nbledger::tools::edit;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

fn notebook(cells: usize, outputs: bool) -> Value {
    // A 1.5 KB "PNG" repeated keeps each cell near 4.7 KB like a small plot.
    let png = "iVBORw0KGgoAAAANSUhEUgAA".repeat(170);
    let cells: Vec<Value> = (0..cells)
        .map(|i| {
            let outs = if outputs {
                json!([
                    {"name": "stdout", "output_type": "stream", "text": [format!("step {i}\n"), "loss 0.1234\n".repeat(8)]},
                    {"data": {"image/png": png, "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
                     "metadata": {}, "output_type": "display_data"}
                ])
            } else {
                json!([])
            };
            json!({"cell_type": "code", "execution_count": i + 1, "id": format!("c{i:07}"), "metadata": {},
                   "outputs": outs, "source": [format!("x_{i} = compute({i})\n"), "plot(x)"]})
        })
        .collect();
    json!({"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5})
}

async fn connect(root: &Path) -> Client {
    connect_bin(env!("CARGO_BIN_EXE_nbledger"), root).await
}

async fn connect_bin(bin: &str, root: &Path) -> Client {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("serve").arg("--root").arg(root);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("bench", "0.1"),
    )
    .serve(transport)
    .await
    .expect("handshake")
}

async fn call(c: &Client, tool: &'static str, args: Value) -> Value {
    let r = c
        .call_tool(
            CallToolRequestParams::new(tool)
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("call");
    assert_ne!(
        r.is_error,
        Some(true),
        "{tool} failed: {:?}",
        r.structured_content
    );
    r.structured_content.unwrap_or(Value::Null)
}

struct Stats {
    name: String,
    n: usize,
    total: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn row(&mut self) -> String {
        self.lat.sort();
        let q = |p: f64| self.lat[((self.lat.len() as f64 - 1.0) * p).round() as usize];
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        format!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            self.name,
            self.n,
            ms(q(0.5)),
            ms(q(0.99)),
            ms(self.total / self.n as u32),
            self.n as f64 / self.total.as_secs_f64()
        )
    }
}

async fn run(name: &str, n: usize, mut f: impl AsyncFnMut(usize)) -> Stats {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        lat.push(t.elapsed());
    }
    Stats {
        name: name.into(),
        n,
        total: start.elapsed(),
        lat,
    }
}

/// `n` update_cell calls split over `threads` threads sharing one engine,
/// each thread on its own cells of the 100-cell notebook `a.ipynb`.
fn concurrent_updates(engine: &Engine, threads: usize, n: usize) -> Stats {
    let per_thread = n / threads;
    let start = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let who = Actor {
                        client_name: format!("bench-{t}"),
                        request_id: None,
                        named: true,
                    };
                    (0..per_thread)
                        .map(|i| {
                            let cell = (t + i * threads) % 100;
                            let args = edit::UpdateArgs {
                                path: "a.ipynb".into(),
                                cell_id: Some(format!("c{cell:07}")),
                                index: None,
                                source: format!("x = {threads}.{t}.{i}\n"),
                                expected_version: None,
                                force: None,
                                client_name: None,
                                request_id: None,
                                execute: None,
                                timeout_s: None,
                                max_output_chars: None,
                                include_images: None,
                            };
                            let began = Instant::now();
                            edit::update_cell(engine, args, &who).expect("update_cell");
                            began.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("bench thread"))
            .collect()
    });
    Stats {
        name: format!("(a) update_cell in process, {threads} thread(s)"),
        n: lat.len(),
        total: start.elapsed(),
        lat,
    }
}

/// The group-commit rows, and each case's rate relative to one thread.
fn group_commit(n: usize) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(
        root.join("a.ipynb"),
        serde_json::to_vec_pretty(&notebook(100, false)).unwrap(),
    )
    .unwrap();
    let engine = Engine::open(root, &root.join(".nbledger")).expect("open");
    // The first touch imports the notebook; not measured.
    engine.read("a.ipynb", |_| Ok(())).expect("import");
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut single = 0.0;
    let counts: Vec<usize> = std::env::var("NBLEDGER_E2E_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16]);
    for threads in counts {
        let mut stats = concurrent_updates(&engine, threads, n);
        let rate = stats.n as f64 / stats.total.as_secs_f64();
        if single == 0.0 {
            single = rate;
        }
        ratios.push(format!(
            "{threads} thread(s): {rate:.0} writes/s = {:.2}x the first case",
            rate / single
        ));
        rows.push(stats.row());
    }
    (rows, ratios)
}

/// A fresh root holding (a) and (b).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(
        root.join("a.ipynb"),
        serde_json::to_vec_pretty(&notebook(100, false)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        root.join("b.ipynb"),
        serde_json::to_vec_pretty(&notebook(1000, true)).unwrap(),
    )
    .unwrap();
    dir
}

/// Cases (a), (b) and a cold start on `bin`: calls/s, calls/s, and ms.
async fn one_build(bin: &str, n: usize) -> [f64; 3] {
    let dir = workspace();
    let root = dir.path();
    let c = connect_bin(bin, root).await;
    call(&c, "get_notebook_outline", json!({"path": "a.ipynb"})).await;
    call(&c, "get_notebook_outline", json!({"path": "b.ipynb"})).await;
    let a = run("a", n, async |i| {
        call(&c, "update_cell", json!({"path": "a.ipynb", "cell_id": format!("c{:07}", i % 100), "source": format!("x = {i}\n")})).await;
    })
    .await;
    let nb = (n / 4).max(100);
    let b = run("b", nb, async |i| {
        call(&c, "update_cell", json!({"path": "b.ipynb", "cell_id": format!("c{:07}", (i * 37) % 1000), "source": format!("y = {i}\n")})).await;
    })
    .await;
    c.cancel().await.expect("shutdown");
    // Let the stopped server release the store before timing a start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let c = connect_bin(bin, root).await;
    call(&c, "get_notebook_outline", json!({"path": "b.ipynb"})).await;
    let start = t.elapsed();
    c.cancel().await.expect("shutdown");
    let rate = |s: &Stats| s.n as f64 / s.total.as_secs_f64();
    [rate(&a), rate(&b), start.as_secs_f64() * 1e3]
}

async fn compare(baseline: &str, n: usize) {
    let current = env!("CARGO_BIN_EXE_nbledger");
    let (mut base, mut cur) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        base.push(one_build(baseline, n).await);
        cur.push(one_build(current, n).await);
    }
    let median = |runs: &[[f64; 3]], k: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| case (median of 3, alternating) | baseline | this build | this / baseline |");
    println!("|---|---|---|---|");
    for (k, name) in [
        "(a) update_cell, 100 cells: calls/s",
        "(b) update_cell, 1,000 cells with outputs: calls/s",
        "cold start to first answer on (a)+(b): ms",
    ]
    .iter()
    .enumerate()
    {
        let (b, c) = (median(&base, k), median(&cur, k));
        println!("| {name} | {b:.1} | {c:.1} | {:.3} |", c / b);
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n: usize = std::env::var("NBLEDGER_E2E_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    if let Ok(baseline) = std::env::var("NBLEDGER_E2E_BASELINE") {
        compare(&baseline, n).await;
        return;
    }
    let (concurrent, ratios) = group_commit(n);
    let header =
        "| case | calls | p50 ms | p99 ms | mean ms | calls/s |\n|---|---|---|---|---|---|";
    if std::env::var_os("NBLEDGER_E2E_CONCURRENT_ONLY").is_some() {
        println!("{header}");
        for row in concurrent {
            println!("{row}");
        }
        for r in ratios {
            println!("{r}");
        }
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(
        root.join("a.ipynb"),
        serde_json::to_vec_pretty(&notebook(100, false)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        root.join("b.ipynb"),
        serde_json::to_vec_pretty(&notebook(1000, true)).unwrap(),
    )
    .unwrap();
    let size_b = std::fs::metadata(root.join("b.ipynb")).unwrap().len();

    let c = connect(root).await;
    // First touches import the notebooks; not measured.
    call(&c, "get_notebook_outline", json!({"path": "a.ipynb"})).await;
    call(&c, "get_notebook_outline", json!({"path": "b.ipynb"})).await;

    let mut rows = Vec::new();
    let mut a = run("(a) update_cell, 100 cells, no outputs", n, async |i| {
        call(&c, "update_cell", json!({"path": "a.ipynb", "cell_id": format!("c{:07}", i % 100), "source": format!("x = {i}\n")})).await;
    })
    .await;
    rows.push(a.row());
    let nb = (n / 4).max(100);
    let mut b = run("(b) update_cell, 1,000 cells with outputs", nb, async |i| {
        call(&c, "update_cell", json!({"path": "b.ipynb", "cell_id": format!("c{:07}", (i * 37) % 1000), "source": format!("y = {i}\n")})).await;
    })
    .await;
    rows.push(b.row());
    let mut r = run("(b) get_notebook_content, one cell with outputs", n, async |i| {
        call(&c, "get_notebook_content", json!({"path": "b.ipynb", "cell_ids": [format!("c{:07}", (i * 13) % 1000)], "include_outputs": true})).await;
    })
    .await;
    rows.push(r.row());

    // Collaboration costs (issue 3).
    let mut cycle = run("(a) lock_cells + update_cell + unlock_cells", n / 4, async |i| {
        let id = format!("c{:07}", i % 100);
        call(&c, "lock_cells", json!({"path": "a.ipynb", "cell_id": id, "client_name": "bench"})).await;
        call(&c, "update_cell", json!({"path": "a.ipynb", "cell_id": id, "source": format!("locked {i}\n"), "client_name": "bench"})).await;
        call(&c, "unlock_cells", json!({"path": "a.ipynb", "cell_id": id, "client_name": "bench"})).await;
    })
    .await;
    rows.push(cycle.row());
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "b.ipynb", "name": "s1"}),
    )
    .await;
    for i in 0..50 {
        call(&c, "update_cell", json!({"path": "b.ipynb", "cell_id": format!("c{:07}", i * 20), "source": format!("changed {i}\n")})).await;
    }
    call(
        &c,
        "snapshot_notebook",
        json!({"path": "b.ipynb", "name": "s2"}),
    )
    .await;
    let mut diff = run(
        "(b) diff_snapshot, 1,000 cells, 50 modified",
        100,
        async |_| {
            call(
                &c,
                "diff_snapshot",
                json!({"path": "b.ipynb", "name": "s1"}),
            )
            .await;
        },
    )
    .await;
    rows.push(diff.row());
    let mut restore = run(
        "(b) restore_snapshot, 1,000 cells, 50 cells differ",
        40,
        async |i| {
            let name = if i % 2 == 0 { "s1" } else { "s2" };
            call(
                &c,
                "restore_snapshot",
                json!({"path": "b.ipynb", "name": name}),
            )
            .await;
        },
    )
    .await;
    rows.push(restore.row());
    for i in 0..10_000 {
        call(
            &c,
            "update_cell",
            json!({"path": "a.ipynb", "cell_id": "c0000007", "source": format!("edit {i}\n")}),
        )
        .await;
    }
    let mut history = run(
        "(a) get_cell_history, cell with 10,000 edits (limit 20)",
        1000,
        async |_| {
            call(
                &c,
                "get_cell_history",
                json!({"path": "a.ipynb", "cell_id": "c0000007"}),
            )
            .await;
        },
    )
    .await;
    rows.push(history.row());
    c.cancel().await.expect("shutdown");

    println!("notebook (b) on disk: {:.2} MB", size_b as f64 / 1e6);
    println!("{header}");
    for row in concurrent.into_iter().chain(rows) {
        println!("{row}");
    }
    for r in ratios {
        println!("{r}");
    }
}
