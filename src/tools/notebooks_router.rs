//! The `notebooks` toolset's adapters (§10), in their own file for length:
//! the `#[tool_router]` block below is still the set, as in `mod.rs`.

use rmcp::model::{CallToolResult, JsonObject};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};

use super::{NotebookServer, actor, diff_notebooks, metadata, rename, replace, schema};

/// Whole notebooks (§10): the `notebooks` tools.
#[tool_router(router = notebooks_router, vis = "pub(super)")]
impl NotebookServer {
    #[tool(
        name = "update_cell_metadata",
        description = "Change one cell's metadata: merge keys (null removes one), replace it whole, or add_tags/remove_tags. For its source use update_cell. `locked` if another agent holds the cell, unless force.",
        input_schema = schema::input::<metadata::CellMetadataArgs>(),
        output_schema = schema::output::<metadata::CellMetadataOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn update_cell_metadata(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: metadata::CellMetadataArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            metadata::update_cell_metadata(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "update_notebook_metadata",
        description = "Change the notebook's metadata (kernelspec, language_info, your own keys): merge keys (null removes one) or replace it whole.",
        input_schema = schema::input::<metadata::NotebookMetadataArgs>(),
        output_schema = schema::output::<metadata::NotebookMetadataOut>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn update_notebook_metadata(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: metadata::NotebookMetadataArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            metadata::update_notebook_metadata(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "replace_in_notebook",
        description = "Regex find and replace across cells, one event over the cells it changes (each: count, unified diff); all or nothing, `locked` only for a changed cell. dry_run: diffs only. To rewrite one cell whole, update_cell.",
        input_schema = schema::input::<replace::ReplaceArgs>(),
        output_schema = schema::output::<replace::ReplaceOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn replace_in_notebook(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a: replace::ReplaceArgs, d| {
            let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
            replace::replace_in_notebook(e, a, &who)
        })
        .await
    }

    #[tool(
        name = "diff_notebooks",
        description = "Compare two notebooks, or one at two versions (as right after version / other_version; default now), like diff_snapshot. Cells match by id, then by type and source.",
        input_schema = schema::input::<diff_notebooks::DiffNotebooksArgs>(),
        output_schema = schema::output::<diff_notebooks::DiffNotebooksOut>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn diff_notebooks(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(raw, &ctx, |e, a, _| diff_notebooks::diff_notebooks(e, a))
            .await
    }

    #[tool(
        name = "rename_notebook",
        description = "Move a notebook to new_path with its whole life: history, feed, locks, snapshots, runs and kernel follow. `exists` if new_path is taken; `locked` if another agent holds a cell, unless force.",
        input_schema = schema::input::<rename::RenameArgs>(),
        output_schema = schema::output::<rename::RenameOut>(),
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn rename_notebook(
        &self,
        raw: JsonObject,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let root = self.engine.root().clone();
        let runner = self.runner.clone();
        let out = self
            .run(raw, &ctx, |e, a: rename::RenameArgs, d| {
                let who = actor(a.client_name.clone(), a.request_id.clone(), d)?;
                rename::rename_notebook(e, a, &who)
            })
            .await?;
        // The kernel follows the notebook (§10).
        if out.is_error != Some(true)
            && let Some(s) = &out.structured_content
            && let (Some(old), Some(new)) = (s["path"].as_str(), s["new_path"].as_str())
            && let (Ok(old), Ok(new)) = (root.resolve(old), root.resolve(new))
        {
            runner.kernels().rekey(&old.abs, &new.abs);
        }
        Ok(out)
    }
}
