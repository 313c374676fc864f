//! The `runs` toolset's adapters (§9), in their own file for length: the
//! `#[tool_router]` block below is still the set, as in `mod.rs`.

use rmcp::model::{CallToolResult, JsonObject};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};

use super::{NotebookServer, actor, answer, args, runs, schema};

/// Running cells (§9): the `runs` tools.
#[tool_router(router = runs_router, vis = "pub(super)")]
impl NotebookServer {
    #[tool(
        name = "execute_cell",
        description = "Run code cells on the notebook's Jupyter kernel (started on first use from metadata.kernelspec) and wait up to timeout_s for them: each run's status (ok, error with a traceback, ...), outputs and execution_count. Outputs are written to the cell and the file. Past timeout_s the runs go on: follow each with get_run wait_ms. Cells locked by another agent need force.",
        input_schema = schema::input::<runs::ExecuteArgs>(),
        output_schema = schema::output::<runs::ExecuteOut>(),
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
        name = "execute_code",
        description = "Run code that is in no cell (inspect a variable, try an idea) on the kernel of the notebook at path, waiting as execute_cell does. On record like a cell's run, but changes no cell and needs no lock.",
        input_schema = schema::input::<runs::ExecuteCodeArgs>(),
        output_schema = schema::output::<runs::ExecuteCodeOut>(),
        annotations(destructive_hint = true, open_world_hint = true)
    )]
    async fn execute_code(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let declared = ctx.client_info().map(|i| i.name);
        let out = async {
            let a: runs::ExecuteCodeArgs = args::parse(raw)?;
            let who = actor(a.client_name.clone(), a.request_id.clone(), declared)?;
            runs::execute_code(&self.runner, a, who, &self.stop).await
        }
        .await;
        answer(out)
    }

    #[tool(
        name = "get_run",
        description = "One run by run_id: status, outputs, execution_count, times. With wait_ms, waits for a run still queued or running to end.",
        input_schema = schema::input::<runs::GetRunArgs>(),
        output_schema = schema::output::<runs::GetRunOut>(),
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
        input_schema = schema::input::<runs::ListRunsArgs>(),
        output_schema = schema::output::<runs::ListRunsOut>(),
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
        input_schema = schema::input::<runs::NoArgs>(),
        output_schema = schema::output::<runs::ListKernelsOut>(),
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
        input_schema = schema::input::<runs::KernelArgs>(),
        output_schema = schema::output::<runs::InterruptOut>(),
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
        input_schema = schema::input::<runs::RestartArgs>(),
        output_schema = schema::output::<runs::RestartOut>(),
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
        input_schema = schema::input::<runs::KernelArgs>(),
        output_schema = schema::output::<runs::VersionOut>(),
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
        input_schema = schema::input::<runs::ClearArgs>(),
        output_schema = schema::output::<runs::ClearOut>(),
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
