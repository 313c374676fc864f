//! Test harness: spawn the real `nbledger` binary and talk MCP to it over
//! stdio with the rmcp client, as an agent would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/nbformat")
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

/// A call whose transport may fail (the server was killed).
pub async fn try_call(
    client: &Client,
    tool: &str,
    args: Value,
) -> Result<Outcome, rmcp::ServiceError> {
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
    Ok(Outcome {
        is_error: result.is_error == Some(true),
        value: result.structured_content.unwrap_or(Value::Null),
        text,
    })
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
