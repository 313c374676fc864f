//! Test harness: spawn the real `nbledger` binary and talk MCP to it over
//! stdio with the rmcp client, as an agent would.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Child;
use tokio::process::Command;

pub type Client = RunningService<RoleClient, ClientConfig>;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nbledger")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nbformat")
}

/// A server process on `root`, with a client that declares itself `name`.
pub async fn connect(root: &Path, name: &str) -> Client {
    connect_with(root, name, &[]).await
}

/// As [`connect`], the server started with `extra` arguments.
pub async fn connect_with(root: &Path, name: &str, extra: &[&str]) -> Client {
    let mut cmd = Command::new(bin());
    cmd.arg("serve").arg("--root").arg(root).args(extra);
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(if std::env::var_os("NBLEDGER_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn nbledger");
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "0.1"),
    );
    config.serve(transport).await.expect("MCP handshake")
}

/// The virtualenv holding the test kernel (ipykernel), made by
/// `tests/kernel/setup.sh` on first use. Never skips: without Python 3 and
/// pip it fails and says how to set up.
pub fn kernel_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = std::process::Command::new("bash")
            .arg(repo.join("tests/kernel/setup.sh"))
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "tests/kernel/setup.sh failed ({status:?}): running cells needs Python 3.10+ with \
             venv and pip (python3, or set PYTHON) to install ipykernel into target/kernelenv"
        );
        let venv = std::env::var_os("NBLEDGER_KERNELENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/kernelenv"));
        assert!(
            venv.join("share/jupyter/kernels/python3/kernel.json")
                .is_file(),
            "no python3 kernelspec in {}: run tests/kernel/setup.sh",
            venv.display()
        );
        venv
    })
}

/// [`connect`] to a server that finds the test kernel (through
/// `JUPYTER_PATH`), so cells can run.
pub async fn connect_kernels(root: &Path, name: &str) -> Client {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .env("JUPYTER_PATH", kernel_venv().join("share/jupyter"));
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(if std::env::var_os("NBLEDGER_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn nbledger");
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "0.1"),
    );
    config.serve(transport).await.expect("MCP handshake")
}

/// The outcome of one tool call.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub is_error: bool,
    pub value: Value,
    pub text: String,
}

impl Outcome {
    /// The structured content of a success; panics with the error otherwise.
    pub fn ok(self) -> Value {
        assert!(!self.is_error, "expected success, got {}", self.value);
        self.value
    }

    /// The error code of a refusal; panics on success.
    pub fn code(&self) -> &str {
        assert!(self.is_error, "expected an error, got {}", self.value);
        self.value["error"]["code"].as_str().expect("error.code")
    }

    pub fn error(&self) -> &Value {
        assert!(self.is_error, "expected an error, got {}", self.value);
        &self.value["error"]
    }
}

pub async fn call(client: &Client, tool: &str, args: Value) -> Outcome {
    try_call(client, tool, args)
        .await
        .unwrap_or_else(|e| panic!("{tool}: JSON-RPC failure instead of a tool result: {e}"))
}

/// A call whose transport may fail (the server was killed). Every result,
/// success or refusal, must match the tool's declared `outputSchema`.
pub async fn try_call(
    client: &Client,
    tool: &str,
    args: Value,
) -> Result<Outcome, rmcp::ServiceError> {
    let schemas = output_schemas(client).await?;
    let args = args.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await?;
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let value = result.structured_content.unwrap_or(Value::Null);
    let schema = schemas
        .get(tool)
        .unwrap_or_else(|| panic!("{tool} answered but tools/list has no outputSchema for it"));
    let faults: Vec<String> = schema
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        faults.is_empty(),
        "{tool}: structuredContent does not match its outputSchema: {}\nstructuredContent: {value}",
        faults.join("; ")
    );
    Ok(Outcome {
        is_error: result.is_error == Some(true),
        value,
        text,
    })
}

type Schemas = Arc<HashMap<String, jsonschema::Validator>>;

/// The compiled output schemas of the tools `client` was offered, listed
/// once per client. Clients are keyed by address: one dropped and another
/// made in its place talk to the same binary, whose schemas are the same.
async fn output_schemas(client: &Client) -> Result<Schemas, rmcp::ServiceError> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Schemas>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = client as *const Client as usize;
    if let Some(s) = cache.lock().unwrap().get(&key) {
        return Ok(s.clone());
    }
    let mut compiled = HashMap::new();
    for tool in client.list_all_tools().await? {
        let schema = Value::Object(
            (*tool
                .output_schema
                .unwrap_or_else(|| panic!("{} declares no outputSchema", tool.name)))
            .clone(),
        );
        jsonschema::draft202012::new(&schema).unwrap_or_else(|e| {
            panic!("{}: outputSchema is not valid JSON Schema: {e}", tool.name)
        });
        // Stricter than the schema itself: a top-level field the schema does
        // not declare is one the agent was never told about.
        let mut strict = schema;
        strict["additionalProperties"] = Value::Bool(false);
        let validator = jsonschema::draft202012::new(&strict).expect("still valid");
        compiled.insert(tool.name.to_string(), validator);
    }
    let compiled = Arc::new(compiled);
    cache.lock().unwrap().insert(key, compiled.clone());
    Ok(compiled)
}

/// Creates `path` with code cells of the given sources; returns the ids.
pub async fn create(client: &Client, path: &str, sources: &[&str]) -> Vec<String> {
    let cells: Vec<Value> = sources.iter().map(|s| json!({"source": s})).collect();
    let r = call(
        client,
        "create_notebook",
        json!({"path": path, "cells": cells}),
    )
    .await
    .ok();
    r["cell_ids"]
        .as_array()
        .expect("cell_ids")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The notebook's cells as (id, type, source).
pub async fn cells(client: &Client, path: &str) -> Vec<(String, String, String)> {
    let r = call(client, "get_notebook_content", json!({"path": path}))
        .await
        .ok();
    r["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            (
                c["cell_id"].as_str().unwrap().to_owned(),
                c["cell_type"].as_str().unwrap().to_owned(),
                c["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The notebook file as JSON.
pub fn file_json(root: &Path, path: &str) -> Value {
    let bytes = std::fs::read(root.join(path)).expect("notebook file");
    serde_json::from_slice(&bytes).expect("file is JSON")
}

/// The sources in the file on disk, joined.
pub fn file_sources(root: &Path, path: &str) -> Vec<String> {
    file_json(root, path)["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match &c["source"] {
            Value::Array(lines) => lines.iter().map(|l| l.as_str().unwrap()).collect(),
            Value::String(s) => s.clone(),
            _ => panic!("bad source"),
        })
        .collect()
}

/// The bearer token the HTTP tests use.
pub const TOKEN: &str = "test-token-123";

/// A server on a free loopback port; returns it and its `/mcp` URL.
pub fn http_server(root: &std::path::Path, token: Option<&str>) -> (Child, String) {
    http_server_with(root, token, &[])
}

/// As [`http_server`], started with `extra` arguments.
pub fn http_server_with(
    root: &std::path::Path,
    token: Option<&str>,
    extra: &[&str],
) -> (Child, String) {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--http", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra)
        .env_remove("NBLEDGER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("NBLEDGER_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    while !line.contains("serving MCP at") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server stopped");
    }
    // Keep draining stderr: a server whose log pipe is closed cannot log.
    std::thread::spawn(move || {
        if std::env::var_os("NBLEDGER_TEST_STDERR").is_some() {
            std::io::copy(&mut err, &mut std::io::stderr())
        } else {
            std::io::copy(&mut err, &mut std::io::sink())
        }
    });
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{line}"
    );
    (child, url)
}

pub async fn http_client(url: &str, name: &str, modern: bool) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(TOKEN),
    );
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "0.1"),
    );
    let lifecycle = if modern {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        }
    } else {
        ClientLifecycleMode::Initialize
    };
    config
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("connect")
}

/// A server process on `root` whose pid the test keeps (to kill it), with
/// a client that declares itself `name`.
pub async fn connect_child(root: &Path, name: &str) -> (Client, tokio::process::Child) {
    let mut child = Command::new(bin())
        .arg("serve")
        .arg("--root")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("NBLEDGER_TEST_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("spawn nbledger");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(name, "0.1"),
    );
    let client = config.serve((stdout, stdin)).await.expect("handshake");
    (client, child)
}

/// A server spoken to in raw JSON-RPC lines over stdio, as a client that
/// writes its own bytes would: for messages no MCP library would send.
pub struct RawStdio {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<Option<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How long a test waits for a line before calling it a hang (the failure
/// this harness exists to catch); never reached by a passing test.
const HANG: std::time::Duration = std::time::Duration::from_secs(120);

impl RawStdio {
    /// `nbledger serve --root root`, initialized as client `name`.
    pub fn start(root: &Path, name: &str) -> RawStdio {
        let mut child = std::process::Command::new(bin())
            .arg("serve")
            .arg("--root")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nbledger");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        if tx.send(Some(line)).is_err() {
                            return;
                        }
                    }
                    _ => {
                        let _ = tx.send(None);
                        return;
                    }
                }
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("NBLEDGER_TEST_STDERR").is_some() {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stderr(),
                        format!("{line}\n").as_bytes(),
                    );
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let stdin = child.stdin.take();
        let mut raw = RawStdio {
            child,
            stdin,
            lines,
            stderr: Some(stderr),
        };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": name, "version": "1"}}});
        raw.send(&init.to_string());
        let answer = raw.recv().expect("an initialize answer");
        assert_eq!(answer["id"], 0, "{answer}");
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw
    }

    /// Writes `line` and a newline; `false` if the server stopped reading.
    pub fn send(&mut self, line: &str) -> bool {
        self.send_bytes(line.as_bytes())
    }

    pub fn send_bytes(&mut self, line: &[u8]) -> bool {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line).is_ok() && stdin.write_all(b"\n").is_ok() && stdin.flush().is_ok()
    }

    /// The next message the server writes; `None` at end of output.
    /// Panics when nothing comes at all: the client would wait forever.
    pub fn recv(&self) -> Option<Value> {
        match self.lines.recv_timeout(HANG) {
            Ok(Some(line)) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON message per line ({e}): {line:.200}")),
            ),
            Ok(None) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the server neither answered nor closed: the client would wait forever")
            }
        }
    }

    /// A tool call; returns the whole JSON-RPC answer for `id`.
    pub fn call(&mut self, id: u64, tool: &str, args: Value) -> Value {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        assert!(self.send(&req.to_string()), "the server stopped reading");
        let answer = self.recv().expect("an answer, not the end of output");
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    /// Closes stdin, waits for the process to exit; its status and all it
    /// wrote on stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }
}

impl Drop for RawStdio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
