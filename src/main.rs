//! The `nbledger` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rmcp::ServiceExt;

use nbledger::audit::{self, Audit, AuditError, text::Paint};
use nbledger::hub::{Front, Hub};
use nbledger::lines::MESSAGE_LIMIT;
use nbledger::tools::sets::Toolsets;

#[derive(Parser)]
#[command(
    name = "nbledger",
    version,
    about = "MCP server for multi-agent Jupyter notebook editing on a verifiable event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Place {
    /// The workspace: every notebook path is relative to it (default: the current directory).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where the log lives (default: ROOT/.nbledger).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Streamable HTTP instead of stdio.
#[derive(clap::Args)]
struct HttpArgs {
    /// Serve MCP over streamable HTTP at http://ADDR/mcp (ADDR = HOST:PORT, or PORT for 127.0.0.1). Loopback unless told otherwise.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Bearer token every request must carry (required off loopback). Note: it shows in `ps`; prefer NBLEDGER_TOKEN or --token-file.
    #[arg(
        long,
        env = "NBLEDGER_TOKEN",
        hide_env_values = true,
        requires = "http"
    )]
    token: Option<String>,
    /// Read the bearer token from this file (first line).
    #[arg(long, value_name = "FILE", requires = "http", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Another Host header value to accept (besides localhost names and the bound address).
    #[arg(long, value_name = "HOST", requires = "http")]
    allowed_host: Vec<String>,
    /// Another browser Origin allowed to call in (e.g. https://app.example.com:443); the server's own (http://HOST:PORT for each allowed Host) always is.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    allowed_origin: Vec<String>,
}

/// Joining JupyterLab's collaboration rooms (§12).
#[derive(clap::Args)]
struct JupyterArgs {
    /// Join the collaboration room (jupyter-collaboration 3+) of each notebook nbledger touches on the Jupyter server at URL (e.g. http://127.0.0.1:8888/), as a peer beside the people editing it there.
    #[arg(long, value_name = "URL")]
    jupyter: Option<String>,
    /// The Jupyter server's token, from this file (first line); else JUPYTER_TOKEN.
    #[arg(long, value_name = "FILE", requires = "jupyter")]
    jupyter_token_file: Option<PathBuf>,
}

impl JupyterArgs {
    fn resolve(self) -> anyhow::Result<Option<nbledger::room::Jupyter>> {
        let Some(url) = self.jupyter else {
            return Ok(None);
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            anyhow::bail!("--jupyter wants an http:// or https:// URL, got {url}");
        }
        let token = match &self.jupyter_token_file {
            Some(f) => Some(first_line(f)?),
            None => std::env::var("JUPYTER_TOKEN").ok(),
        }
        .filter(|t| !t.is_empty());
        Ok(Some(nbledger::room::Jupyter { url, token }))
    }
}

fn first_line(f: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(f)?
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over stdio.
    Serve {
        #[command(flatten)]
        place: Place,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        jupyter: JupyterArgs,
        /// List only these toolsets (comma-separated): read, edit, collab, snapshots, transfer, runs, notebooks, or all. A lean agent: read,edit,collab.
        #[arg(
            long,
            env = "NBLEDGER_TOOLSETS",
            value_name = "LIST",
            default_value = "all"
        )]
        toolsets: Toolsets,
    },
    /// Print the tools a server lists: the tools/list result as JSON, or the Markdown reference.
    Tools {
        /// Only the tools of these toolsets (as for serve).
        #[arg(long, value_name = "LIST", default_value = "all")]
        toolsets: Toolsets,
        /// The reference (docs/tools.md) instead of JSON: every tool, argument, default, result field and error.
        #[arg(long)]
        markdown: bool,
    },
    /// List events, one line each, oldest first.
    Log {
        #[command(flatten)]
        place: Place,
        /// Only events of this notebook.
        #[arg(long, value_name = "PATH")]
        notebook: Option<String>,
        /// Only versions after V (exclusive).
        #[arg(long, value_name = "V", default_value_t = 0)]
        since: u64,
        /// Only versions up to V (inclusive).
        #[arg(long, value_name = "V")]
        until: Option<u64>,
        /// Only events by this client.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The life of one cell: creation, every change with a diff, moves, deletion.
    History {
        #[command(flatten)]
        place: Place,
        /// The notebook.
        path: String,
        /// The cell id (or a unique prefix of at least 4 characters; deleted cells too).
        cell: String,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Who last wrote each line of each cell, and when.
    Blame {
        #[command(flatten)]
        place: Place,
        /// The notebook.
        path: String,
        /// One JSON object per source line.
        #[arg(long)]
        json: bool,
    },
    /// The notebook as it was right after a version, as a .ipynb.
    Show {
        #[command(flatten)]
        place: Place,
        /// The notebook.
        path: String,
        /// The version.
        #[arg(long, value_name = "V")]
        at: String,
        /// Write the notebook to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Every run on record, newest first: who ran what, how it ended, how long it took and what it printed.
    Runs {
        #[command(flatten)]
        place: Place,
        /// Only runs of this notebook.
        #[arg(long, value_name = "PATH")]
        notebook: Option<String>,
        /// One JSON object per run, with its outputs.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain, replay the log and compare with the projections and the files.
    ///
    /// Exit codes: 0 ok, 1 the log is damaged, 2 usage error, 3 only files
    /// differ from the log, 4 the store is unavailable.
    Verify {
        #[command(flatten)]
        place: Place,
    },
    /// The forensic view: read-only web pages over the log on 127.0.0.1 (timeline, events, notebooks at any version, blame, activity).
    ///
    /// Works on a private copy of the log, with or without a server
    /// running; `/reload` takes a newer copy.
    Ui {
        #[command(flatten)]
        place: Place,
        /// The loopback port to listen on (0: any free port; the address is printed on stderr).
        #[arg(long, default_value_t = 8767)]
        port: u16,
    },
    /// Every event as one JSON object per line.
    Export {
        #[command(flatten)]
        place: Place,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only events of this notebook.
        #[arg(long, value_name = "PATH")]
        notebook: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
}

impl Place {
    fn resolve(&self, serving: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
        let root = match &self.root {
            Some(r) => r.clone(),
            None => {
                let cwd = std::env::current_dir()?;
                // Serving a whole disk or home folder by accident would put
                // every notebook of the user in one log.
                let home = std::env::var_os("HOME").map(PathBuf::from);
                if serving && (cwd == std::path::Path::new("/") || Some(&cwd) == home.as_ref()) {
                    anyhow::bail!(
                        "refusing to serve {} by default; pass --root explicitly to use it as the workspace",
                        cwd.display()
                    );
                }
                cwd
            }
        };
        if !root.is_dir() {
            anyhow::bail!("root {} is not a folder", root.display());
        }
        let data = self.data.clone().unwrap_or_else(|| root.join(".nbledger"));
        std::fs::create_dir_all(&data)?;
        Ok((root, data))
    }
}

fn main() -> ExitCode {
    // stdout is the MCP channel: logs go to stderr only.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // When stderr is a pipe nobody reads, reporting the failed write
        // would `eprintln!`, which panics, and take the request with it.
        .log_internal_errors(false)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NBLEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Ui { .. }) {
        return run_audit(cli.command);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("nbledger: cannot start the runtime: {e}"));
            return ExitCode::from(4);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            say(&format!("nbledger: {e:#}"));
            ExitCode::from(4)
        }
    };
    // A stop by signal leaves tokio's stdin reader blocked in read(2):
    // do not wait for it (everything that matters was flushed already).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// The commands without a runtime: `tools`, and the audit commands
/// (synchronous, read-only on the log, §5).
fn run_audit(command: Command) -> ExitCode {
    let place = match &command {
        Command::Tools { toolsets, markdown } => return print_tools(*toolsets, *markdown),
        Command::Serve { place, .. }
        | Command::Ui { place, .. }
        | Command::Log { place, .. }
        | Command::History { place, .. }
        | Command::Blame { place, .. }
        | Command::Show { place, .. }
        | Command::Runs { place, .. }
        | Command::Verify { place }
        | Command::Export { place, .. } => place,
    };
    let audit = match Audit::open(place.root.as_deref(), place.data.as_deref()) {
        Ok(a) => a,
        Err(e) => return audit_failure(e),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let paint = Paint::for_stdout();
    let done = match command {
        Command::Serve { .. } | Command::Tools { .. } | Command::Ui { .. } => Ok(0),
        Command::Log {
            notebook,
            since,
            until,
            client,
            json,
            ..
        } => {
            let opts = audit::log::LogOptions {
                notebook,
                since,
                until,
                client,
                json,
            };
            audit::log::run(&audit, &opts, paint, &mut out).map(|_| 0)
        }
        Command::History {
            path, cell, json, ..
        } => audit::history::run(&audit, &path, &cell, json, paint, &mut out).map(|_| 0),
        Command::Runs { notebook, json, .. } => {
            audit::runs::run(&audit, notebook.as_deref(), json, paint, &mut out).map(|_| 0)
        }
        Command::Blame { path, json, .. } => {
            audit::blame::run(&audit, &path, json, paint, &mut out).map(|_| 0)
        }
        Command::Show {
            path, at, output, ..
        } => {
            let at = audit::show::At::parse(&at);
            audit::show::run(&audit, &path, &at, output.as_deref(), &mut out).map(|_| 0)
        }
        Command::Verify { .. } => audit::verify::run(&audit, &mut out),
        Command::Export {
            format, notebook, ..
        } => {
            let format = match format {
                ExportFormat::Jsonl => audit::export::Format::Jsonl,
            };
            audit::export::run(&audit, format, notebook.as_deref(), &mut out).map(|_| 0)
        }
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => audit_failure(e),
    }
}

/// `nbledger tools`: what a server with `toolsets` lists, as the JSON of
/// its tools/list result, or the whole Markdown reference.
fn print_tools(toolsets: Toolsets, markdown: bool) -> ExitCode {
    use std::io::Write;
    let text = if markdown {
        nbledger::tools::reference::markdown()
    } else {
        let tools: Vec<rmcp::model::Tool> = nbledger::tools::NotebookServer::catalog()
            .into_iter()
            .filter(|(set, _)| toolsets.contains(*set))
            .map(|(_, t)| t)
            .collect();
        match serde_json::to_string_pretty(&serde_json::json!({ "tools": tools })) {
            Ok(json) => json + "\n",
            Err(e) => {
                say(&format!("nbledger: {e}"));
                return ExitCode::from(1);
            }
        }
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not a failure worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("nbledger: {e}"));
            ExitCode::from(1)
        }
    }
}

fn audit_failure(e: AuditError) -> ExitCode {
    let code = e.exit_code();
    if code != 0 {
        say(&format!("nbledger: {e}"));
    }
    ExitCode::from(code)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            place,
            http,
            jupyter,
            toolsets,
        } => {
            let (root, data) = place.resolve(true)?;
            let jupyter = jupyter.resolve()?;
            let token = match &http.token_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned(),
                ),
                None => http.token.clone(),
            };
            // Check the address before opening the log, so a refused bind
            // changes nothing.
            if let Some(addr) = &http.http {
                let sa = nbledger::http::parse_addr(addr)?;
                if !sa.ip().is_loopback() && token.as_deref().unwrap_or("").is_empty() {
                    anyhow::bail!(
                        "refusing to serve on non-loopback address {sa} without a bearer token: pass --token, --token-file or NBLEDGER_TOKEN"
                    );
                }
            }
            // Owner of the store, or attached to the process that owns it.
            let hub = Hub::start_with(&root, &data, jupyter).await?;
            let front = Front::new(hub.clone(), false).with_toolsets(toolsets);
            if let Some(addr) = http.http {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let stop = shutdown.clone();
                let fatal = hub.fatal();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown_signal() => {},
                        _ = fatal.cancelled() => {},
                    }
                    stop.cancel();
                });
                let opts = nbledger::http::HttpOptions {
                    addr,
                    token,
                    allowed_hosts: http.allowed_host,
                    allowed_origins: http.allowed_origin,
                };
                let served = nbledger::http::serve(front, opts, shutdown).await;
                hub.shutdown().await;
                served?;
                return Ok(exit_code(&hub));
            }
            // rmcp alone would drop a line over its limit and leave the
            // client waiting: the guard answers it instead (§8.12).
            let (stdin, stdout) = rmcp::transport::stdio();
            let link = nbledger::lines::server(stdin, stdout, MESSAGE_LIMIT, "stdin");
            let service = front.serve(link).await?;
            let cancel = service.cancellation_token();
            let fatal = hub.fatal();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown_signal() => {},
                    _ = fatal.cancelled() => {},
                }
                cancel.cancel();
            });
            let served = service.waiting().await;
            // Finish what attached processes have in flight, then leave a
            // projection checkpoint so the next start is instant.
            hub.shutdown().await;
            served?;
            Ok(exit_code(&hub))
        }
        Command::Ui { place, port } => {
            // The copy is taken on a blocking thread: it may read a large log.
            let (root, data) = (place.root.clone(), place.data.clone());
            let log = match tokio::task::spawn_blocking(move || {
                nbledger::ui::CopiedLog::open(root, data)
            })
            .await?
            {
                Ok(l) => l,
                Err(e) => return Ok(audit_failure(e)),
            };
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            nbledger::ui::serve(std::sync::Arc::new(log), port, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        other => Ok(run_audit(other)),
    }
}

/// 0 after a clean stop; 4 when the store failed under this server.
fn exit_code(hub: &Hub) -> ExitCode {
    if hub.fatal().is_cancelled() {
        say("nbledger: stopped because the log's storage failed (see the log above)");
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// A line on stderr; unlike `eprintln!`, never panics when stderr is a
/// pipe nobody reads.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
