//! The MCP face of nbledger: one thin adapter per tool. Each reads its
//! arguments tolerantly ([`args`]), works out who is acting, runs the
//! tool's function on a blocking thread (the engine does file and log I/O),
//! and shapes the answer ([`common::ok`] / [`common::err`]).

pub mod args;
pub mod common;
pub mod edit;
pub mod feed;
pub mod locks;
pub mod read;
pub mod runs;
pub mod snapshots;
pub mod transfer;
mod walk;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, Implementation, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::engine::{Actor, Engine};
use crate::error::ToolError;
use common::output_schema;
use rmcp::handler::server::common::schema_for_input;

const INSTRUCTIONS: &str = "nbledger edits Jupyter notebooks for several agents at once and records every change as an event with a global version. \
Address cells by cell_id (stable while others edit), not by index. Pass the same client_name on every call. \
Before overwriting a cell another agent may edit, pass expected_version (the current_version you last read) to get version_conflict instead of clobbering. \
Every result has structuredContent; refusals have isError and error.code.";

/// The MCP server: a cheap handle on the shared engine.
#[derive(Clone)]
pub struct NotebookServer {
    engine: Arc<Engine>,
    runner: Arc<crate::runs::Runner>,
    tool_router: ToolRouter<Self>,
    /// Cancelled when the process stops: long-polls answer at once.
    stop: tokio_util::sync::CancellationToken,
}

type Answer = Result<(String, Map<String, Value>), ToolError>;

impl NotebookServer {
    pub fn new(engine: Arc<Engine>, runner: Arc<crate::runs::Runner>) -> NotebookServer {
        NotebookServer {
            engine,
            runner,
            tool_router: Self::router(),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Whether the log's storage failed (a flush error): the process must
    /// stop serving.
    pub fn store_failed(&self) -> bool {
        self.engine.store().failed()
    }

    /// Long-polls end when `stop` is cancelled.
    pub fn with_stop(mut self, stop: tokio_util::sync::CancellationToken) -> NotebookServer {
        self.stop = stop;
        self
    }

    fn router() -> ToolRouter<Self> {
        Self::tool_router()
            + Self::lock_router()
            + Self::log_router()
            + Self::snapshot_router()
            + Self::transfer_router()
            + Self::runs_router()
    }

    /// Every tool with its schemas and annotations (no engine needed).
    pub fn catalog() -> Vec<rmcp::model::Tool> {
        Self::router().list_all()
    }

    /// What the server says of itself at initialisation.
    pub fn info() -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("nbledger", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    /// Parses `raw` as `A`, then runs `f` on a blocking thread.
    async fn run<A>(
        &self,
        raw: JsonObject,
        ctx: &RequestContext<RoleServer>,
        f: impl FnOnce(&Engine, A, Option<String>) -> Answer + Send + 'static,
    ) -> Result<CallToolResult, ErrorData>
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
    {
        let declared = ctx.client_info().map(|i| i.name);
        let engine = self.engine.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let a: A = args::parse(raw)?;
            f(&engine, a, declared)
        })
        .await;
        Ok(match joined {
            Ok(Ok((summary, value))) => common::ok(&summary, value),
            Ok(Err(e)) => common::err(&e),
            Err(join) => {
                tracing::error!(error = %join, "tool call panicked");
                common::err(&ToolError::internal(
                    "the server hit an internal error while handling this call; nothing was changed, retry or report it",
                ))
            }
        })
    }
}

fn actor(
    client: Option<String>,
    rid: Option<String>,
    declared: Option<String>,
) -> Result<Actor, ToolError> {
    Ok(Actor {
        named: client.is_some(),
        client_name: common::client_name(client, declared.as_deref())?,
        request_id: common::request_id(rid)?,
    })
}

#[tool_router]
impl NotebookServer {
    #[tool(
        name = "list_notebooks",
        description = "List the .ipynb notebooks under a folder of the workspace (recursive; hidden folders skipped). Shows each notebook's cell_count and current_version; imported=false means nbledger has no history for it yet. Never changes anything.",
        input_schema = schema_for_input::<read::ListArgs>().expect("schema"),
        output_schema = output_schema::<read::ListOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_notebooks(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| read::list_notebooks(e, a))
            .await
    }

    #[tool(
        name = "create_notebook",
        description = "Create a new notebook (nbformat 4.5) with optional initial cells. Fails with `exists` if the file is already there. Returns the new cell ids and the event version.",
        input_schema = schema_for_input::<edit::CreateArgs>().expect("schema"),
        output_schema = output_schema::<edit::CreateOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn create_notebook(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::CreateArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::create_notebook(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "get_notebook_content",
        description = "Read cells: ids, types, sources, last_version of each cell, and optionally outputs (texts cut to max_output_chars, images omitted unless include_images). Select with cell_ids or start/end (inclusive) and cell_type. Large results are paged: when truncated, call again with start=next_start. current_version is a valid expected_version token for later writes.",
        input_schema = schema_for_input::<read::ContentArgs>().expect("schema"),
        output_schema = output_schema::<read::ContentOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_notebook_content(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| read::get_notebook_content(e, a))
            .await
    }

    #[tool(
        name = "get_notebook_outline",
        description = "A compact map of the notebook: every cell's id, index, type, a one-line preview, and markdown headings with their level. Cheaper than get_notebook_content for finding where to work.",
        input_schema = schema_for_input::<read::OutlineArgs>().expect("schema"),
        output_schema = output_schema::<read::OutlineOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_notebook_outline(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| read::get_notebook_outline(e, a))
            .await
    }

    #[tool(
        name = "search_notebook",
        description = "Search a notebook with a regular expression (Rust regex syntax, applied per line, case-insensitive by default) in cell sources, outputs (stream, text, errors) or both. Returns cell_id, index, 1-based line and column, and the matching line.",
        input_schema = schema_for_input::<read::SearchArgs>().expect("schema"),
        output_schema = output_schema::<read::SearchOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search_notebook(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| read::search_notebook(e, a))
            .await
    }

    #[tool(
        name = "insert_cell",
        description = "Insert one cell. Place it with after_cell_id or before_cell_id (stable when others edit concurrently) or index; default is the end. Returns the new cell_id, its index and the event version.",
        input_schema = schema_for_input::<edit::InsertArgs>().expect("schema"),
        output_schema = output_schema::<edit::InsertOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn insert_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::InsertArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::insert_cell(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "batch_insert_cells",
        description = "Insert several cells together, in the given order, as one event. Placement as for insert_cell.",
        input_schema = schema_for_input::<edit::BatchInsertArgs>().expect("schema"),
        output_schema = output_schema::<edit::IdsOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn batch_insert_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::BatchInsertArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::batch_insert_cells(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "update_cell",
        description = "Replace a cell's whole source (outputs are kept). Without locks the later write wins whole-cell; pass expected_version to get version_conflict (with the current source) if someone changed the cell since you read it. Same source again: changed=false, no event.",
        input_schema = schema_for_input::<edit::UpdateArgs>().expect("schema"),
        output_schema = output_schema::<edit::UpdateOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn update_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::UpdateArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::update_cell(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "batch_update_cells",
        description = "Replace the sources of several cells in one event: all or nothing (if any cell is unknown or has a version_conflict, nothing changes).",
        input_schema = schema_for_input::<edit::BatchUpdateArgs>().expect("schema"),
        output_schema = output_schema::<edit::IdsOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn batch_update_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::BatchUpdateArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::batch_update_cells(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "delete_cell",
        description = "Delete one cell (cell_id or index) or several (cell_ids) in one event. Deleted cells stay in the history and can be brought back whole with recover_cell.",
        input_schema = schema_for_input::<edit::DeleteArgs>().expect("schema"),
        output_schema = output_schema::<edit::DeleteOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn delete_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::DeleteArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::delete_cell(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "change_cell_type",
        description = "Turn a cell into code, markdown or raw, keeping its id and source. A code cell that becomes markdown or raw loses its outputs and execution_count.",
        input_schema = schema_for_input::<edit::ChangeTypeArgs>().expect("schema"),
        output_schema = output_schema::<edit::ChangeTypeOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn change_cell_type(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::ChangeTypeArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::change_cell_type(e, a, &who)
        })
        .await
    }
}

#[tool_router(router = lock_router)]
impl NotebookServer {
    #[tool(
        name = "lock_cells",
        description = "Claim cells you are about to work on so other agents' writes to them are refused with `locked` (unless they pass force, which is recorded). All or nothing: if any cell is held by someone else, nothing is taken. Locking again renews the lease. Locks coordinate cooperating agents; they are not access control. Requires a client_name unique to you.",
        input_schema = schema_for_input::<locks::LockArgs>().expect("schema"),
        output_schema = output_schema::<locks::LocksOut>(),
        annotations(destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn lock_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: locks::LockArgs, d| {
            let name = locks::owner_name(a.client_name.clone(), a.owner.clone())?;
            let who = actor(name, a.request_id.clone(), d)?;
            locks::lock_cells(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "unlock_cells",
        description = "Release your locks (the given cells, or all you hold in the notebook). Cells you do not hold are listed in not_locked. Releasing another agent's lock needs force (recorded).",
        input_schema = schema_for_input::<locks::UnlockArgs>().expect("schema"),
        output_schema = output_schema::<locks::UnlockOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn unlock_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: locks::UnlockArgs, d| {
            let name = locks::owner_name(a.client_name.clone(), a.owner.clone())?;
            let who = actor(name, a.request_id.clone(), d)?;
            locks::unlock_cells(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "list_locks",
        description = "The locks held now (expired ones are gone), in one notebook or all: cell, owner, when taken, when it expires.",
        input_schema = schema_for_input::<locks::ListLocksArgs>().expect("schema"),
        output_schema = output_schema::<locks::ListLocksOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_locks(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| locks::list_locks(e, a)).await
    }
}

#[tool_router(router = log_router)]
impl NotebookServer {
    #[tool(
        name = "get_notebook_changes",
        description = "What changed in a notebook after since_version, oldest first: version, time, who, which tool, which cells, a one-line summary. Poll with the current_version (or next_since_version) you got last time; nothing is skipped (has_more says there is more). With wait_ms, a call that finds nothing new waits for the next change instead of returning empty.",
        input_schema = schema_for_input::<feed::ChangesArgs>().expect("schema"),
        output_schema = output_schema::<feed::ChangesOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_notebook_changes(
        &self,
        raw: JsonObject,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let a: feed::ChangesArgs = match args::parse(raw) {
            Ok(a) => a,
            Err(e) => return Ok(common::err(&e)),
        };
        let wait = a.wait_ms.unwrap_or(0).min(feed::MAX_WAIT_MS);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
        // Subscribed before the first read, so no commit can slip between
        // the read and the wait.
        let mut heads = self.engine.subscribe();
        let mut slot = None;
        loop {
            heads.borrow_and_update();
            let engine = self.engine.clone();
            let q = a.clone();
            let out = match tokio::task::spawn_blocking(move || feed::changes(&engine, &q)).await {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => return Ok(common::err(&e)),
                Err(_) => {
                    return Ok(common::err(&ToolError::internal(
                        "the change feed failed; retry",
                    )));
                }
            };
            let done = |mut out: feed::ChangesOut, waited: Option<bool>| {
                out.waited = waited;
                Ok(common::ok(
                    &feed::changes_summary(&out),
                    common::to_map(&out),
                ))
            };
            if wait == 0 {
                return done(out, None);
            }
            if !out.changes.is_empty() {
                return done(out, Some(slot.is_some()));
            }
            if slot.is_none() {
                slot = feed::WaitSlot::take();
                if slot.is_none() {
                    return done(out, Some(false));
                }
            }
            // Wakes on every commit; only one this call would list ends it.
            tokio::select! {
                woke = tokio::time::timeout_at(deadline, heads.changed()) => match woke {
                    Ok(Ok(())) => continue,
                    _ => return done(out, Some(true)),
                },
                _ = self.stop.cancelled() => return done(out, Some(true)),
            }
        }
    }

    #[tool(
        name = "get_cell_history",
        description = "Every event that touched one cell, oldest first (the most recent `limit`): creation, each source change with before/after, type changes, deletion and recovery, locks, refused attempts and forced overrides. Works for deleted cells too.",
        input_schema = schema_for_input::<feed::HistoryArgs>().expect("schema"),
        output_schema = output_schema::<feed::HistoryOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_cell_history(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| feed::get_cell_history(e, a))
            .await
    }

    #[tool(
        name = "recover_cell",
        description = "Bring a deleted cell back whole (type, source, metadata, outputs, attachments) under its old id: by default after the cell that preceded it when deleted, or where you say. A cell that is not deleted gives not_deleted.",
        input_schema = schema_for_input::<edit::RecoverArgs>().expect("schema"),
        output_schema = output_schema::<edit::InsertOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn recover_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: edit::RecoverArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            edit::recover_cell(e, a, &who)
        })
        .await
    }
}

#[tool_router(router = snapshot_router)]
impl NotebookServer {
    #[tool(
        name = "snapshot_notebook",
        description = "Save the whole notebook (cells, ids, types, sources, metadata, outputs) under a name, before risky or parallel work. Content-addressed: equal content gives an equal snapshot_hash. A taken name gives `exists` unless overwrite.",
        input_schema = schema_for_input::<snapshots::SnapshotArgs>().expect("schema"),
        output_schema = output_schema::<snapshots::SnapshotOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn snapshot_notebook(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: snapshots::SnapshotArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            snapshots::snapshot_notebook(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "list_snapshots",
        description = "The notebook's named snapshots, oldest first, with hash, version, who took them and cell count (including the automatic pre-restore-<version> backups).",
        input_schema = schema_for_input::<snapshots::ListSnapshotsArgs>().expect("schema"),
        output_schema = output_schema::<snapshots::ListSnapshotsOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_snapshots(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| snapshots::list_snapshots(e, a))
            .await
    }

    #[tool(
        name = "diff_snapshot",
        description = "Compare the notebook now with a snapshot, cell by cell id: added, deleted, modified (which fields, with a unified source diff), moved (cells whose relative order changed; index shifts from inserts or deletes elsewhere are not moves), and how many are unchanged.",
        input_schema = schema_for_input::<snapshots::DiffArgs>().expect("schema"),
        output_schema = output_schema::<snapshots::DiffOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn diff_snapshot(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| snapshots::diff_snapshot(e, a))
            .await
    }

    #[tool(
        name = "restore_snapshot",
        description = "Roll the notebook back to a snapshot (cells, ids, types, sources, metadata, outputs, notebook metadata) as one new event; the current state is saved first as snapshot pre-restore-<version>, returned as backup_snapshot. Cells deleted by the restore can be recovered. Refused with `locked` if it would touch a cell another agent holds, unless force.",
        input_schema = schema_for_input::<snapshots::RestoreArgs>().expect("schema"),
        output_schema = output_schema::<snapshots::RestoreOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn restore_snapshot(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: snapshots::RestoreArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            snapshots::restore_snapshot(e, a, &who)
        })
        .await
    }
}

#[tool_router(router = transfer_router)]
impl NotebookServer {
    #[tool(
        name = "copy_cells",
        description = "Copy whole cells (source, type, metadata, outputs) within a notebook or into another, under new ids, landing together in the given order after dest_cell_id or at dest_index (default: end). One event, in both notebooks' feeds; mapping gives old → new ids. Copies are never locked.",
        input_schema = schema_for_input::<transfer::TransferArgs>().expect("schema"),
        output_schema = output_schema::<transfer::TransferOut>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn copy_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: transfer::TransferArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            transfer::copy_cells(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "move_cells",
        description = "Move cells within a notebook (reorder) or into another, keeping ids (a new id only if the destination already has it), metadata, outputs and their locks. One event, in both notebooks' feeds; the history of a moved cell continues across notebooks. Refused with `locked` if another agent holds one of the cells in the source, unless force.",
        input_schema = schema_for_input::<transfer::TransferArgs>().expect("schema"),
        output_schema = output_schema::<transfer::TransferOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn move_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: transfer::TransferArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            transfer::move_cells(e, a, &who)
        })
        .await
    }
}

/// Answers an async tool's outcome.
fn answer(out: Answer) -> Result<CallToolResult, ErrorData> {
    Ok(match out {
        Ok((summary, value)) => common::ok(&summary, value),
        Err(e) => common::err(&e),
    })
}

/// Running cells (§9): the `runs` tools.
#[tool_router(router = runs_router)]
impl NotebookServer {
    #[tool(
        name = "execute_cell",
        description = "Run code cells on the notebook's Jupyter kernel (started on first use from metadata.kernelspec) and wait up to timeout_s for them: each run's status (ok, error with a traceback, ...), outputs and execution_count. Outputs are written to the cell and the file. Past timeout_s the runs go on: follow each with get_run wait_ms. Cells locked by another agent need force.",
        input_schema = schema_for_input::<runs::ExecuteArgs>().expect("schema"),
        output_schema = output_schema::<runs::ExecuteOut>(),
        annotations(destructive_hint = true, open_world_hint = true)
    )]
    async fn execute_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: runs::ExecuteArgs = args::parse(raw)?;
            let who = actor(a.client_name.clone(), a.request_id.clone(), declared)?;
            runs::execute_cell(&self.runner, a, who, &self.stop).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "get_run",
        description = "One run by run_id: status, outputs, execution_count, times. With wait_ms, waits for a run still queued or running to end.",
        input_schema = schema_for_input::<runs::GetRunArgs>().expect("schema"),
        output_schema = output_schema::<runs::GetRunOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_run(
        &self,
        raw: JsonObject,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let out = async {
            let a: runs::GetRunArgs = args::parse(raw)?;
            runs::get_run(&self.runner, a, &self.stop).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "list_runs",
        description = "Runs on record, newest first, without outputs: who ran which cell, status, times. Filter by path, cell_id or status.",
        input_schema = schema_for_input::<runs::ListRunsArgs>().expect("schema"),
        output_schema = output_schema::<runs::ListRunsOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_runs(
        &self,
        raw: JsonObject,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(args::parse(raw).and_then(|a| runs::list_runs(&self.runner, a)))
    }

    #[tool(
        name = "list_kernels",
        description = "The kernels running now (one per notebook: state, execution_count, runs queued) and the kernelspecs that can be started.",
        input_schema = schema_for_input::<runs::NoArgs>().expect("schema"),
        output_schema = output_schema::<runs::ListKernelsOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_kernels(
        &self,
        raw: JsonObject,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(args::parse::<runs::NoArgs>(raw).and_then(|_| runs::list_kernels(&self.runner)))
    }

    #[tool(
        name = "interrupt_kernel",
        description = "Interrupt the run in the notebook's kernel (it ends interrupted; queued runs go on). The kernel keeps its state.",
        input_schema = schema_for_input::<runs::KernelArgs>().expect("schema"),
        output_schema = output_schema::<runs::InterruptOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn interrupt_kernel(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: runs::KernelArgs = args::parse(raw)?;
            let who = actor(a.client_name.clone(), None, declared)?;
            runs::interrupt_kernel(&self.runner, a, who).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "restart_kernel",
        description = "Restart the notebook's kernel, forgetting its variables (the running run ends interrupted, queued ones aborted). kernel_name switches kernelspec and records it in the notebook's metadata.",
        input_schema = schema_for_input::<runs::RestartArgs>().expect("schema"),
        output_schema = output_schema::<runs::RestartOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn restart_kernel(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: runs::RestartArgs = args::parse(raw)?;
            let who = actor(a.client_name.clone(), None, declared)?;
            runs::restart_kernel(&self.runner, a, who).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "shutdown_kernel",
        description = "Stop the notebook's kernel (the running run ends interrupted, queued ones aborted). The next run starts a fresh one.",
        input_schema = schema_for_input::<runs::KernelArgs>().expect("schema"),
        output_schema = output_schema::<runs::VersionOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn shutdown_kernel(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: runs::KernelArgs = args::parse(raw)?;
            let who = actor(a.client_name.clone(), None, declared)?;
            runs::shutdown_kernel(&self.runner, a, who).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "clear_outputs",
        description = "Empty the outputs and execution_count of code cells (every code cell by default), as JupyterLab's Clear Outputs does. Counts as a change of those cells for expected_version.",
        input_schema = schema_for_input::<runs::ClearArgs>().expect("schema"),
        output_schema = output_schema::<runs::ClearOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn clear_outputs(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: runs::ClearArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            runs::clear_outputs(e, a, &who)
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotebookServer {
    fn get_info(&self) -> ServerConfig {
        Self::info()
    }
}
