//! Running cells, end to end (issue 12): the release binary over stdio
//! with a real MCP client, on the ipykernel of `tests/kernel/setup.sh`,
//! side by side with `jupyter_client` driving the same kind of kernel
//! directly (no log, no MCP) in the same run.
//!
//! `cargo bench --bench runs` prints:
//! 1. `execute_cell` of `1+1`, sequential: p50, p99, runs/s; and the same
//!    round trip through `jupyter_client` (`execute`, then iopub until idle
//!    and the shell reply).
//! 2. Cold start to first result: a new notebook's first `execute_cell`
//!    (kernel launch, handshake, run) against `jupyter_client`'s
//!    `start_kernel` + `wait_for_ready` + first execute.
//! 3. A flood: a cell printing NBLEDGER_RUNS_FLOOD_MB (default 100) MB in
//!    small chunks while another agent calls `update_cell` on another
//!    notebook in a loop: the log's growth (the data folder's size) and
//!    that agent's p50/p99.
//!
//! NBLEDGER_RUNS_N sets the sequential runs (default 300).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

fn venv() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash")
        .arg(repo.join("tests/kernel/setup.sh"))
        .status()
        .expect("run tests/kernel/setup.sh");
    assert!(status.success(), "tests/kernel/setup.sh failed");
    std::env::var_os("NBLEDGER_KERNELENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/kernelenv"))
}

async fn connect(root: &Path, venv: &Path) -> Client {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_nbledger"));
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .env("JUPYTER_PATH", venv.join("share/jupyter"));
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
    assert_ne!(r.is_error, Some(true), "{tool}: {:?}", r.structured_content);
    r.structured_content.unwrap_or(Value::Null)
}

fn quantile(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort();
    lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// `jupyter_client` on the same kernelspec: cold start and `n` `1+1`
/// round trips, as JSON `{cold_ms, lat_ms: [...]}`.
const DIRECT: &str = r#"
import json, sys, time
from jupyter_client.manager import KernelManager
n = int(sys.argv[1])
t0 = time.perf_counter()
km = KernelManager(kernel_name="python3")
km.start_kernel()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
def run(code):
    msg_id = kc.execute(code)
    while True:
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" \
                and m["content"]["execution_state"] == "idle":
            break
    while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
        pass
run("1+1")
cold = (time.perf_counter() - t0) * 1e3
lat = []
for _ in range(n):
    t = time.perf_counter()
    run("1+1")
    lat.append((time.perf_counter() - t) * 1e3)
kc.stop_channels()
km.shutdown_kernel(now=True)
print(json.dumps({"cold_ms": cold, "lat_ms": lat}))
"#;

fn direct(venv: &Path, n: usize) -> (f64, Vec<f64>) {
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(DIRECT)
        .arg(n.to_string())
        .env("JUPYTER_PATH", venv.join("share/jupyter"))
        .stderr(Stdio::inherit())
        .output()
        .expect("python");
    assert!(out.status.success(), "jupyter_client run failed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let lat = v["lat_ms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    (v["cold_ms"].as_f64().unwrap(), lat)
}

fn dir_size(p: &Path) -> u64 {
    walk(p)
}

fn walk(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("NBLEDGER_RUNS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let flood_mb: usize = std::env::var("NBLEDGER_RUNS_FLOOD_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let venv = venv();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let c = connect(dir.path(), &venv).await;
        let made = call(
            &c,
            "create_notebook",
            json!({"path": "n.ipynb", "cells": [{"source": "1+1"}]}),
        )
        .await;
        let id = made["cell_ids"][0].as_str().unwrap().to_owned();

        // Cold start: the first run launches the kernel.
        let t = Instant::now();
        let first = call(&c, "execute_cell", json!({"path": "n.ipynb", "cell_id": id})).await;
        let cold = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(first["runs"][0]["status"], "ok");

        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let r = call(&c, "execute_cell", json!({"path": "n.ipynb", "cell_id": id})).await;
            lat.push(t.elapsed());
            assert_eq!(r["runs"][0]["status"], "ok");
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let (p50, p99) = (quantile(&mut lat, 0.5), quantile(&mut lat, 0.99));

        let (dcold, mut dlat) = direct(&venv, n);
        dlat.sort_by(f64::total_cmp);
        let dq = |p: f64| dlat[((dlat.len() as f64 - 1.0) * p).round() as usize];
        let drate = 1e3 / (dlat.iter().sum::<f64>() / dlat.len() as f64);

        println!("| case | p50 ms | p99 ms | runs/s |");
        println!("|---|---|---|---|");
        println!("| execute_cell `1+1` via MCP + log | {p50:.2} | {p99:.2} | {rate:.0} |");
        println!(
            "| jupyter_client execute `1+1` | {:.2} | {:.2} | {drate:.0} |",
            dq(0.5),
            dq(0.99)
        );
        println!(
            "| difference (p50) | {:.2} | | |",
            p50 - dq(0.5)
        );
        println!();
        println!("| cold start to first result | ms |");
        println!("|---|---|");
        println!("| nbledger (first execute_cell) | {cold:.0} |");
        println!("| jupyter_client (start, ready, execute) | {dcold:.0} |");
        println!("| difference | {:.0} |", cold - dcold);

        // The flood, with another agent writing beside it.
        let other = connect(dir.path(), &venv).await;
        let made = call(
            &other,
            "create_notebook",
            json!({"path": "o.ipynb", "cells": [{"source": "a"}]}),
        )
        .await;
        let oid = made["cell_ids"][0].as_str().unwrap().to_owned();
        let data = dir.path().join(".nbledger");
        let before = dir_size(&data);
        let code = format!(
            "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range({}):\n    sys.stdout.write(line * 100)\n",
            flood_mb * 1024 * 1024 / 10_000
        );
        let flood = call(
            &c,
            "insert_cell",
            json!({"path": "n.ipynb", "source": code}),
        )
        .await;
        let fid = flood["cell_id"].as_str().unwrap().to_owned();
        let running = tokio::spawn(async move {
            let r = call(
                &c,
                "execute_cell",
                json!({"path": "n.ipynb", "cell_id": fid, "timeout_s": 600}),
            )
            .await;
            (c, r)
        });
        let mut lat = Vec::new();
        let mut k = 0u64;
        while !running.is_finished() {
            k += 1;
            let t = Instant::now();
            call(
                &other,
                "update_cell",
                json!({"path": "o.ipynb", "cell_id": oid, "source": format!("a = {k}")}),
            )
            .await;
            lat.push(t.elapsed());
        }
        let (c, r) = running.await.unwrap();
        assert_eq!(r["runs"][0]["status"], "ok", "{r}");
        let grown = dir_size(&data).saturating_sub(before);
        println!();
        println!("| {flood_mb} MB printed in 10 KB writes | value |");
        println!("|---|---|");
        println!("| data folder growth | {:.1} MiB |", grown as f64 / (1 << 20) as f64);
        println!("| run truncated | {} |", r["runs"][0]["truncated"]);
        println!(
            "| other agent's update_cell while it ran: n, p50, p99 | {}, {:.2} ms, {:.2} ms |",
            lat.len(),
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99)
        );
        c.cancel().await.ok();
        other.cancel().await.ok();
    });
}
