//! The `nbledger` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rmcp::ServiceExt;

use nbledger::engine::Engine;
use nbledger::tools::NotebookServer;

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

#[derive(Subcommand)]
enum Command {
    /// Serve MCP over stdio.
    Serve {
        #[command(flatten)]
        place: Place,
    },
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
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NBLEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nbledger: cannot start the runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nbledger: {e:#}");
            ExitCode::from(4)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { place } => {
            let (root, data) = place.resolve(true)?;
            let engine =
                Arc::new(tokio::task::spawn_blocking(move || Engine::open(&root, &data)).await??);
            let server = NotebookServer::new(engine.clone());
            let service = server.serve(rmcp::transport::stdio()).await?;
            let cancel = service.cancellation_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                cancel.cancel();
            });
            service.waiting().await?;
            // Leave a projection checkpoint so the next start is instant.
            engine.checkpoint()?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
