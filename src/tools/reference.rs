//! The tool reference, `docs/tools.md`, written from the tools themselves:
//! their descriptions, schemas, annotations and sets, the server's
//! instructions, and the error codes below. `nbledger tools --markdown`
//! prints it; a test fails when the checked-in copy differs.

use rmcp::model::Tool;
use serde_json::{Map, Value};

use super::sets::Toolset;
use super::{INSTRUCTIONS, NotebookServer};

/// Every error code: when it is given, and the details beside `code` and
/// `message`.
const CODES: &[(&str, &str, &str)] = &[
    (
        "invalid_argument",
        "an argument is missing, of the wrong type, unknown or out of range (a bad regex, an unknown cell_type, a reserved snapshot name); or the tool is outside the server's toolsets",
        "`argument`, `expected` or `allowed`; for a toolset, `toolset` and `enabled`",
    ),
    (
        "not_found",
        "no such notebook, folder, cell, index, snapshot, run, running kernel or kernelspec",
        "`what`; `cell_count` for an index; `available` snapshot names (at most 50); `deleted: true` or `moved_to: {path, cell_id}` for a cell that is gone; `kernelspecs` there are for an unknown kernel name",
    ),
    (
        "ambiguous_cell_id",
        "a cell id prefix matches several cells",
        "`candidates: [{cell_id, index, preview}]`",
    ),
    (
        "outside_root",
        "the path leaves the workspace root (`..`, a symlink, another absolute path)",
        "",
    ),
    (
        "invalid_notebook",
        "the file is not a valid nbformat 4 notebook (or is being written: retry)",
        "`reason`; `line`, `column` for a JSON error",
    ),
    (
        "exists",
        "a notebook or snapshot of that name exists",
        "`path` or `name`; a snapshot's `snapshot_hash` and `version`",
    ),
    (
        "locked",
        "a cell is locked by another agent (pass `force` to write anyway, recorded); also releasing another's lock without `force`. The attempt is kept as a `rejected` audit event",
        "`locks: [{cell_id, owner, expires_at}]`, `rejected_version`",
    ),
    (
        "version_conflict",
        "the cell changed after `expected_version`",
        "`current: {last_version, source}`",
    ),
    ("not_deleted", "recover_cell on a cell that is live", ""),
    (
        "too_large",
        "over a size limit: a source over 1 MiB, over 1000 cells in one call, a notebook file over 64 MiB, a regex over 1000 characters",
        "`limit`, `actual`",
    ),
    (
        "unavailable",
        "no store owner answered in time, or the owner stopped during the call; a kernel failed to start",
        "`retryable`; `outcome: \"unknown\"` when a write may or may not have been applied (retry with the same `request_id`); `stderr_tail` of a kernel that failed to start",
    ),
    ("internal", "a fault in the server; nothing was changed", ""),
];

/// Codes any tool may answer besides its own.
const ANY_TOOL: &[&str] = &["invalid_argument", "unavailable", "internal"];

/// The codes a tool answers besides [`ANY_TOOL`].
fn errors(tool: &str) -> Option<&'static [&'static str]> {
    const NOTEBOOK: &[&str] = &["outside_root", "not_found", "invalid_notebook", "too_large"];
    const CELLS: &[&str] = &[
        "outside_root",
        "not_found",
        "ambiguous_cell_id",
        "invalid_notebook",
        "too_large",
    ];
    const GUARDED: &[&str] = &[
        "outside_root",
        "not_found",
        "ambiguous_cell_id",
        "invalid_notebook",
        "locked",
        "version_conflict",
        "too_large",
    ];
    const LOCKS: &[&str] = &[
        "outside_root",
        "not_found",
        "ambiguous_cell_id",
        "invalid_notebook",
        "locked",
        "too_large",
    ];
    Some(match tool {
        "list_notebooks" => &["outside_root", "not_found"],
        "create_notebook" => &["outside_root", "exists", "too_large"],
        "get_notebook_content"
        | "insert_cell"
        | "batch_insert_cells"
        | "get_cell_history"
        | "copy_cells" => CELLS,
        "get_notebook_outline"
        | "search_notebook"
        | "list_locks"
        | "get_notebook_changes"
        | "list_snapshots"
        | "diff_snapshot"
        | "diff_notebooks" => NOTEBOOK,
        "update_cell"
        | "batch_update_cells"
        | "delete_cell"
        | "change_cell_type"
        | "update_cell_metadata"
        | "revert_cell"
        | "replace_in_notebook" => GUARDED,
        "update_notebook_metadata" => {
            &["outside_root", "not_found", "invalid_notebook", "too_large"]
        }
        "lock_cells" | "unlock_cells" | "move_cells" => LOCKS,
        "recover_cell" => &[
            "outside_root",
            "not_found",
            "ambiguous_cell_id",
            "invalid_notebook",
            "not_deleted",
            "too_large",
        ],
        "snapshot_notebook" => &[
            "outside_root",
            "not_found",
            "invalid_notebook",
            "exists",
            "too_large",
        ],
        "rename_notebook" => &[
            "outside_root",
            "not_found",
            "invalid_notebook",
            "exists",
            "locked",
        ],
        "delete_snapshot" => &["outside_root", "not_found", "invalid_notebook"],
        "restore_snapshot" => &[
            "outside_root",
            "not_found",
            "invalid_notebook",
            "locked",
            "too_large",
        ],
        "execute_cell" => LOCKS,
        "execute_code" => &["outside_root", "not_found", "invalid_notebook", "too_large"],
        "clear_outputs" => GUARDED,
        "get_run" => &["not_found"],
        "list_runs" => &["outside_root"],
        "list_kernels" => &[],
        "interrupt_kernel" | "shutdown_kernel" => {
            &["outside_root", "not_found", "invalid_notebook"]
        }
        "restart_kernel" => &["outside_root", "not_found", "invalid_notebook"],
        _ => return None,
    })
}

/// The whole reference, in Markdown.
pub fn markdown() -> String {
    let catalog = NotebookServer::catalog();
    let mut out = String::new();
    let w = &mut out;
    line(w, "# nbledger tools");
    line(w, "");
    line(
        w,
        "<!-- Generated by `nbledger tools --markdown` from the tools' own descriptions and schemas. Do not edit: run `cargo run -- tools --markdown > docs/tools.md`. -->",
    );
    line(w, "");
    line(
        w,
        &format!(
            "Every tool an MCP client can call on `nbledger serve`: {} tools in {} toolsets. What the server tells every agent when it connects:",
            catalog.len(),
            Toolset::ALL.len()
        ),
    );
    line(w, "");
    for (i, l) in INSTRUCTIONS.lines().enumerate() {
        if i == 1 {
            line(w, ">");
        }
        line(w, &format!("> {l}"));
    }
    line(w, "");
    line(
        w,
        "Contents: [toolsets](#toolsets), [errors](#errors), then the tools by set.",
    );
    line(w, "");

    line(w, "## Toolsets");
    line(w, "");
    line(
        w,
        "`nbledger serve --toolsets LIST` (or `NBLEDGER_TOOLSETS`) lists only the tools of those sets, comma-separated (default: all). A call to a tool outside them is refused with `invalid_argument` naming its set.",
    );
    line(w, "");
    line(w, "| set | for | tools |");
    line(w, "|---|---|---|");
    for set in Toolset::ALL {
        let tools: Vec<String> = catalog
            .iter()
            .filter(|(s, _)| *s == set)
            .map(|(_, t)| format!("[`{0}`](#{0})", t.name))
            .collect();
        let tools = if tools.is_empty() {
            "none yet".to_owned()
        } else {
            tools.join(", ")
        };
        line(
            w,
            &format!("| `{}` | {} | {tools} |", set.name(), set.about()),
        );
    }
    line(w, "");

    line(w, "## Errors");
    line(w, "");
    line(
        w,
        "A refused call has `isError: true` and `structuredContent.error = {code, message, ...details}`; it changed nothing. Every tool may answer `invalid_argument`, `unavailable` and `internal`; each tool below lists its other codes.",
    );
    line(w, "");
    line(w, "| code | when | details |");
    line(w, "|---|---|---|");
    for (code, when, details) in CODES {
        line(w, &format!("| `{code}` | {when} | {details} |"));
    }
    line(w, "");

    for set in Toolset::ALL {
        let tools: Vec<&Tool> = catalog
            .iter()
            .filter(|(s, _)| *s == set)
            .map(|(_, t)| t)
            .collect();
        if tools.is_empty() {
            continue;
        }
        line(w, &format!("## Set `{}`: {}", set.name(), set.about()));
        line(w, "");
        for tool in tools {
            tool_section(w, tool);
        }
    }
    out
}

fn line(w: &mut String, s: &str) {
    w.push_str(s);
    w.push('\n');
}

fn tool_section(w: &mut String, tool: &Tool) {
    line(w, &format!("### `{}`", tool.name));
    line(w, "");
    line(w, tool.description.as_deref().unwrap_or(""));
    line(w, "");
    line(w, &format!("*{}*", hints(tool)));
    line(w, "");

    let input = &tool.input_schema;
    let defs = defs_of(input);
    let required = required_of(input);
    let props = input.get("properties").and_then(Value::as_object);
    match props {
        Some(props) if !props.is_empty() => {
            line(w, "| argument | type | required | default | notes |");
            line(w, "|---|---|---|---|---|");
            for (name, p) in props {
                let default = p
                    .get("default")
                    .map(|d| format!("`{d}`"))
                    .unwrap_or_default();
                line(
                    w,
                    &format!(
                        "| `{name}` | {} | {} | {default} | {} |",
                        cell(&type_of(p, &defs)),
                        if required.contains(name) { "yes" } else { "" },
                        cell(&notes(p))
                    ),
                );
            }
        }
        _ => line(w, "No arguments."),
    }
    line(w, "");

    if let Some(output) = &tool.output_schema {
        let defs = defs_of(output);
        // The error object is the same for every tool: see Errors.
        let fields: Vec<(&String, &Value)> = output
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(name, _)| *name != "error")
            .collect();
        let noted = fields.iter().any(|(_, p)| !notes(p).is_empty());
        line(
            w,
            if noted {
                "| result field | type | notes |"
            } else {
                "| result field | type |"
            },
        );
        line(w, if noted { "|---|---|---|" } else { "|---|---|" });
        for (name, p) in fields {
            let mut row = format!("| `{name}` | {} |", cell(&type_of(p, &defs)));
            if noted {
                row.push_str(&format!(" {} |", cell(&notes(p))));
            }
            line(w, &row);
        }
        line(w, "");
    }

    let codes = match errors(&tool.name) {
        Some(own) => own
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        None => "not documented".to_owned(),
    };
    line(w, &format!("Errors: {codes} (and {}).", any_tool()));
    line(w, "");
}

fn any_tool() -> String {
    ANY_TOOL
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hints(tool: &Tool) -> String {
    let a = tool.annotations.clone().unwrap_or_default();
    let mut hints = Vec::new();
    if a.read_only_hint == Some(true) {
        hints.push("read-only");
    } else {
        hints.push("writes");
        hints.push(if a.destructive_hint == Some(false) {
            "not destructive"
        } else {
            "destructive"
        });
        if a.idempotent_hint == Some(true) {
            hints.push("idempotent");
        }
    }
    if a.open_world_hint == Some(false) {
        hints.push("closed world");
    }
    hints.join(", ")
}

fn defs_of(schema: &Map<String, Value>) -> Map<String, Value> {
    schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn required_of(schema: &Map<String, Value>) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A schema as a short type: `string`, `[string]`, `{a: integer, b?: string}`,
/// `integer or null`, `"x" | "y"`.
fn type_of(schema: &Value, defs: &Map<String, Value>) -> String {
    let Value::Object(m) = schema else {
        return "any".to_owned();
    };
    if let Some(target) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
    {
        return type_of(target, defs);
    }
    if let Some(Value::Array(values)) = m.get("enum") {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(Value::Array(alts)) = m.get("anyOf") {
        return alts
            .iter()
            .map(|a| type_of(a, defs))
            .collect::<Vec<_>>()
            .join(" or ");
    }
    let one = |t: &str| -> String {
        match t {
            "array" => match m.get("items") {
                Some(items) => format!("[{}]", type_of(items, defs)),
                None => "[any]".to_owned(),
            },
            "object" => match m.get("properties").and_then(Value::as_object) {
                Some(props) => {
                    let required = required_of(m);
                    let fields: Vec<String> = props
                        .iter()
                        .map(|(k, v)| {
                            let opt = if required.contains(k) { "" } else { "?" };
                            format!("{k}{opt}: {}", type_of(v, defs))
                        })
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                }
                None => "object".to_owned(),
            },
            other => other.to_owned(),
        }
    };
    match m.get("type") {
        Some(Value::String(t)) => one(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

fn notes(schema: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        parts.push(d.to_owned());
    }
    match (
        schema.get("minimum").and_then(Value::as_i64),
        schema.get("maximum").and_then(Value::as_i64),
    ) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo} to {hi}.")),
        (Some(lo), None) => parts.push(format!("At least {lo}.")),
        (None, Some(hi)) => parts.push(format!("At most {hi}.")),
        (None, None) => {}
    }
    parts.join(" ")
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_lists_its_errors_with_known_codes() {
        for (_, tool) in NotebookServer::catalog() {
            let own =
                errors(&tool.name).unwrap_or_else(|| panic!("{} has no errors listed", tool.name));
            for code in own.iter().chain(ANY_TOOL) {
                assert!(
                    CODES.iter().any(|(c, _, _)| c == code),
                    "{}: unknown code {code}",
                    tool.name
                );
            }
        }
    }

    #[test]
    fn the_codes_documented_are_the_codes_there_are() {
        let documented: Vec<&str> = CODES.iter().map(|(c, _, _)| *c).collect();
        let there: Vec<&str> = crate::error::Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, there);
    }

    #[test]
    fn types_read_as_their_shapes() {
        let defs = Map::new();
        let s = serde_json::json!({"type": "array", "items": {"type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
            "required": ["a"]}});
        assert_eq!(type_of(&s, &defs), "[{a: integer, b?: string or null}]");
        let e = serde_json::json!({"type": "string", "enum": ["x", "y"]});
        assert_eq!(type_of(&e, &defs), "\"x\" | \"y\"");
    }
}
