//! The MCP face of nbledger: one thin adapter per tool. Each reads its
//! arguments tolerantly ([`args`]), works out who is acting, runs the
//! tool's function on a blocking thread (the engine does file and log I/O),
//! and shapes the answer ([`common::ok`] / [`common::err`]).

pub mod args;
pub mod common;
pub mod diff_notebooks;
pub mod edit;
pub mod feed;
pub mod locks;
pub mod metadata;
mod notebooks_router;
pub mod read;
pub mod reference;
pub mod rename;
pub mod replace;
pub mod revert;
mod run_after;
pub mod runs;
mod runs_router;
pub mod schema;
pub mod sets;
pub mod snapshots;
pub mod transfer;
mod walk;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, Implementation, JsonObject, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::engine::{Actor, Engine};
use crate::error::ToolError;
use sets::Toolset;

/// What every tool shares, said once at initialisation rather than in each
/// tool's schema (agents pay for `tools/list` on every turn).
pub const INSTRUCTIONS: &str = "nbledger lets several agents edit the same Jupyter notebooks at once; every change is an event with one global version.
- path: a notebook path relative to the workspace root, ending in .ipynb.
- Address cells by cell_id (8 hex characters; a unique prefix of 4 or more works): ids stay put while others edit, indexes (0-based) shift. A tool that takes cell_ids also takes one cell_id.
- client_name: pass the same name, unique to you, on every call; it is recorded on each event and matched against lock owners.
- expected_version: compare-and-swap. Pass the current_version of your last read: if the cell changed since, you get version_conflict with its current source instead of overwriting it.
- force: write past another agent's lock; recorded as overriding it. Locks coordinate cooperating agents; they are not access control.
- request_id: repeating it (same client_name, within 24 h) returns the first result and changes nothing, so a retry after `unavailable` is safe.
- Arguments: null means absent; an unknown name is refused.
- Results: structuredContent, and a text block with a summary line. A write returns the version of its event, client_name and changed (false: nothing to do, no event; current_version then); a forced write names overrode_lock (or overrode_locks). A refusal has isError and error {code, message saying what to do next, details}, and changed nothing.";

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

    /// One set's tools: the `#[tool_router]` block a tool is written in
    /// is its set. A set with no tools yet lists nothing.
    fn set_router(set: Toolset) -> ToolRouter<Self> {
        let tools = match set {
            Toolset::Read => Self::read_router(),
            Toolset::Edit => Self::edit_router(),
            Toolset::Collab => Self::collab_router(),
            Toolset::Snapshots => Self::snapshots_router(),
            Toolset::Transfer => Self::transfer_router(),
            Toolset::Notebooks => Self::notebooks_router(),
            Toolset::Runs => Self::runs_router(),
        };
        let mut finished = ToolRouter::new();
        for mut route in tools {
            schema::finish(&mut route.attr);
            finished.add_route(route);
        }
        finished
    }

    /// Every tool: the engine serves whatever set any process on the store
    /// enables (toolsets only narrow what a process lists, in `hub::Front`).
    fn router() -> ToolRouter<Self> {
        Toolset::ALL
            .into_iter()
            .map(Self::set_router)
            .fold(ToolRouter::new(), |all, set| all + set)
    }

    /// Every tool with its set, schemas and annotations (no engine
    /// needed), by set, then by name.
    pub fn catalog() -> Vec<(Toolset, Tool)> {
        Toolset::ALL
            .into_iter()
            .flat_map(|set| {
                Self::set_router(set)
                    .list_all()
                    .into_iter()
                    .map(move |t| (set, t))
            })
            .collect()
    }

    /// What the server says of itself at initialisation.
    pub fn info() -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("nbledger", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Parses `raw` as `A`, then runs `f` on a blocking thread.
    /// Runs `f` on the engine off the async threads; a panic is an
    /// internal error, never a lost call.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, ToolError> + Send + 'static,
    ) -> Result<T, ToolError> {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || f(&engine)).await {
            Ok(out) => out,
            Err(join) => {
                tracing::error!(error = %join, "tool call panicked");
                Err(ToolError::internal(
                    "the server hit an internal error while handling this call; nothing was changed, retry or report it",
                ))
            }
        }
    }

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

/// Answers an async tool's outcome.
fn answer(out: Answer) -> Result<CallToolResult, ErrorData> {
    Ok(match out {
        Ok((summary, value)) => common::ok(&summary, value),
        Err(e) => common::err(&e),
    })
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

#[tool_router(router = read_router)]
impl NotebookServer {
    #[tool(
        name = "list_notebooks",
        description = "List the notebooks under a folder (recursive; hidden folders skipped) with cell_count and current_version; imported=false: no history yet. Changes nothing.",
        input_schema = schema::input::<read::ListArgs>(),
        output_schema = schema::output::<read::ListOut>(),
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
        name = "get_notebook_content",
        description = "Read cells: id, type, source, last_version, lock holder, and outputs if include_outputs (texts cut to max_output_chars, images omitted unless include_images). Select by cell_ids, or start..end (inclusive) and cell_type. A result over 256 KiB is cut: call again with start=next_start. To find your way in a large notebook, get_notebook_outline is cheaper.",
        input_schema = schema::input::<read::ContentArgs>(),
        output_schema = schema::output::<read::ContentOut>(),
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
        description = "One line per cell (id, index, type, preview) plus markdown headings with their level: the cheap way to find where to work.",
        input_schema = schema::input::<read::OutlineArgs>(),
        output_schema = schema::output::<read::OutlineOut>(),
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
        description = "Search by regular expression (Rust syntax, per line, case-insensitive by default) in sources, outputs or both. Each match: cell_id, index, 1-based line and column, the line.",
        input_schema = schema::input::<read::SearchArgs>(),
        output_schema = schema::output::<read::SearchOut>(),
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
}

#[tool_router(router = edit_router)]
impl NotebookServer {
    #[tool(
        name = "create_notebook",
        description = "Create a notebook (nbformat 4.5; missing folders are created) with optional cells. `exists` if the file is there.",
        input_schema = schema::input::<edit::CreateArgs>(),
        output_schema = schema::output::<edit::CreateOut>(),
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
        name = "insert_cell",
        description = "Insert one cell after_cell_id, before_cell_id or at index (default: at the end). Prefer ids: indexes shift while others edit.",
        input_schema = schema::input::<edit::InsertArgs>(),
        output_schema = schema::output::<run_after::WithRuns<edit::InsertOut>>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn insert_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: edit::InsertArgs = args::parse(raw)?;
            let t = common::cell_type("cell_type", a.cell_type.as_deref())?;
            let after = run_after::options(
                a.execute,
                a.timeout_s,
                a.max_output_chars,
                a.include_images,
                false,
            )?;
            if after.is_some() {
                run_after::some_code(&[t])?;
            }
            let who = actor(a.client_name.clone(), a.request_id.clone(), declared)?;
            let (path, w) = (a.path.clone(), who.clone());
            let written = self.blocking(move |e| edit::insert_cell(e, a, &w)).await?;
            let Some(after) = after else {
                return Ok(written);
            };
            let ids = written.1.get("cell_id").and_then(Value::as_str);
            let ids: Vec<String> = ids.map(str::to_owned).into_iter().collect();
            run_after::run_written(&self.runner, &path, who, ids, after, &self.stop, written).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "batch_insert_cells",
        description = "Insert several cells together, in order, as one event; placed as insert_cell places one.",
        input_schema = schema::input::<edit::BatchInsertArgs>(),
        output_schema = schema::output::<run_after::WithRuns<edit::IdsOut>>(),
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn batch_insert_cells(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: edit::BatchInsertArgs = args::parse(raw)?;
            let after = run_after::options(
                a.execute,
                a.timeout_s,
                a.max_output_chars,
                a.include_images,
                false,
            )?;
            let types = a
                .cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    common::cell_type(&format!("cells[{i}].cell_type"), c.cell_type.as_deref())
                })
                .collect::<Result<Vec<_>, _>>()?;
            if after.is_some() {
                run_after::some_code(&types)?;
            }
            let who = actor(a.client_name.clone(), a.request_id.clone(), declared)?;
            let (path, w) = (a.path.clone(), who.clone());
            let written = self
                .blocking(move |e| edit::batch_insert_cells(e, a, &w))
                .await?;
            let Some(after) = after else {
                return Ok(written);
            };
            let ids: Vec<String> = written
                .1
                .get("cell_ids")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let ids = run_after::code_ids(&ids, &types);
            run_after::run_written(&self.runner, &path, who, ids, after, &self.stop, written).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "update_cell",
        description = "Replace a cell's whole source (outputs kept). The later write wins unless you pass expected_version. Same source: changed=false, no event. To change a few words in one or many cells, replace_in_notebook sends less.",
        input_schema = schema::input::<edit::UpdateArgs>(),
        output_schema = schema::output::<run_after::WithRuns<edit::UpdateOut>>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn update_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: edit::UpdateArgs = args::parse(raw)?;
            let force = a.force.unwrap_or(false);
            let after = run_after::options(
                a.execute,
                a.timeout_s,
                a.max_output_chars,
                a.include_images,
                force,
            )?;
            let who = actor(a.client_name.clone(), a.request_id.clone(), declared)?;
            if after.is_some() {
                let (path, id, index) = (a.path.clone(), a.cell_id.clone(), a.index);
                let t = self
                    .blocking(move |e| {
                        e.read(&path, |nb| {
                            let i = common::find_cell(nb, "cell_id", id.as_deref(), index)?;
                            Ok(nb.cells[i].cell.cell_type.clone())
                        })
                    })
                    .await?;
                run_after::some_code(&[t])?;
            }
            let (path, w) = (a.path.clone(), who.clone());
            let written = self.blocking(move |e| edit::update_cell(e, a, &w)).await?;
            let Some(after) = after else {
                return Ok(written);
            };
            let ids = written.1.get("cell_id").and_then(Value::as_str);
            let ids: Vec<String> = ids.map(str::to_owned).into_iter().collect();
            run_after::run_written(&self.runner, &path, who, ids, after, &self.stop, written).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "batch_update_cells",
        description = "Replace the sources of several cells in one event: all or nothing.",
        input_schema = schema::input::<edit::BatchUpdateArgs>(),
        output_schema = schema::output::<edit::IdsOut>(),
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
        description = "Delete one cell (cell_id or index) or several (cell_ids) in one event. recover_cell brings a deleted cell back.",
        input_schema = schema::input::<edit::DeleteArgs>(),
        output_schema = schema::output::<edit::DeleteOut>(),
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
        description = "Make a cell code, markdown or raw, keeping its id and source; leaving code drops outputs and execution_count.",
        input_schema = schema::input::<edit::ChangeTypeArgs>(),
        output_schema = schema::output::<edit::ChangeTypeOut>(),
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

#[tool_router(router = collab_router)]
impl NotebookServer {
    #[tool(
        name = "lock_cells",
        description = "Claim cells before working on them: others' writes to them get `locked` until the lease ends or you unlock_cells. All or nothing; locking again renews. Needs a client_name of your own.",
        input_schema = schema::input::<locks::LockArgs>(),
        output_schema = schema::output::<locks::LocksOut>(),
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
        description = "Release your locks on the given cells, or all you hold in the notebook; cells you do not hold come back in not_locked. Another agent's lock needs force.",
        input_schema = schema::input::<locks::UnlockArgs>(),
        output_schema = schema::output::<locks::UnlockOut>(),
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
        description = "The locks held now, in one notebook or all: cell, owner, when taken, when it expires.",
        input_schema = schema::input::<locks::ListLocksArgs>(),
        output_schema = schema::output::<locks::ListLocksOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_locks(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| locks::list_locks(e, a)).await
    }

    #[tool(
        name = "get_notebook_changes",
        description = "What changed after since_version, oldest first: version, time, who, tool, cells, summary. To follow others, pass the current_version (or next_since_version) you got last; nothing is skipped (has_more). wait_ms waits for the next change instead of returning empty.",
        input_schema = schema::input::<feed::ChangesArgs>(),
        output_schema = schema::output::<feed::ChangesOut>(),
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
                slot = self.engine.wait_slot();
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
        description = "Every event of one cell, deleted or moved ones too, oldest first (the most recent limit): sources before/after, type changes, moves, deletion, locks, refused and forced writes.",
        input_schema = schema::input::<feed::HistoryArgs>(),
        output_schema = schema::output::<feed::HistoryOut>(),
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
        description = "Bring a deleted cell back whole under its old id: after the cell that preceded it, unless placed like insert_cell. `not_deleted` if it is live.",
        input_schema = schema::input::<edit::RecoverArgs>(),
        output_schema = schema::output::<edit::InsertOut>(),
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

    #[tool(
        name = "revert_cell",
        description = "Set a live cell's type, source and metadata back to what they were right after to_version (see get_cell_history), as one new event; outputs stay. For the whole notebook use restore_snapshot; for a deleted cell, recover_cell.",
        input_schema = schema::input::<revert::RevertArgs>(),
        output_schema = schema::output::<revert::RevertOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn revert_cell(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: revert::RevertArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            revert::revert_cell(e, a, &who)
        })
        .await
    }
}

#[tool_router(router = snapshots_router)]
impl NotebookServer {
    #[tool(
        name = "snapshot_notebook",
        description = "Save the whole notebook under a name, before risky work. Content-addressed: equal content gives an equal snapshot_hash. A taken name is `exists` unless overwrite.",
        input_schema = schema::input::<snapshots::SnapshotArgs>(),
        output_schema = schema::output::<snapshots::SnapshotOut>(),
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
        description = "The notebook's snapshots, oldest first: hash, version, who, cell count (pre-restore-<version> backups included).",
        input_schema = schema::input::<snapshots::ListSnapshotsArgs>(),
        output_schema = schema::output::<snapshots::ListSnapshotsOut>(),
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
        description = "Compare the notebook now with a snapshot, by cell id: added, deleted, modified (which fields, unified source diff), moved (relative order changed; index shifts are not moves), unchanged count.",
        input_schema = schema::input::<snapshots::DiffArgs>(),
        output_schema = schema::output::<snapshots::DiffOut>(),
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
        description = "Roll the whole notebook back to a snapshot as one new event, first saving the current state as backup_snapshot (pre-restore-<version>); removed cells can be recovered. `locked` if it would touch a cell another agent holds, unless force. To undo one cell only, revert_cell touches nothing else.",
        input_schema = schema::input::<snapshots::RestoreArgs>(),
        output_schema = schema::output::<snapshots::RestoreOut>(),
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

    #[tool(
        name = "delete_snapshot",
        description = "Remove a named snapshot (pre-restore-* ones too), as an event; its content stays in the log.",
        input_schema = schema::input::<snapshots::DeleteSnapshotArgs>(),
        output_schema = schema::output::<snapshots::DeleteSnapshotOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn delete_snapshot(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: snapshots::DeleteSnapshotArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            snapshots::delete_snapshot(e, a, &who)
        })
        .await
    }
}

#[tool_router(router = transfer_router)]
impl NotebookServer {
    #[tool(
        name = "copy_cells",
        description = "Copy whole cells (metadata, outputs) within a notebook or into another under new ids, landing together in order after dest_cell_id or at dest_index (default: the end). One event in both feeds; mapping gives old and new ids.",
        input_schema = schema::input::<transfer::TransferArgs>(),
        output_schema = schema::output::<transfer::TransferOut>(),
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
        description = "Move cells within a notebook (reorder) or into another, keeping ids (new only on a clash), outputs and locks; their history follows. One event in both feeds. `locked` if another agent holds one, unless force.",
        input_schema = schema::input::<transfer::TransferArgs>(),
        output_schema = schema::output::<transfer::TransferOut>(),
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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotebookServer {
    fn get_info(&self) -> ServerConfig {
        Self::info()
    }
}
