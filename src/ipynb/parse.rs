//! Reading and validating notebooks.
//!
//! The checks follow the nbformat 4.5 JSON schema (applied to every 4.x minor,
//! since nbledger writes notebooks back as 4.5), with nbformat's own relaxation
//! for notebooks from a newer minor version: unknown cell and output types pass.
//! Reasons name the cell (1-based) and the key at fault, never file content.

use serde_json::{Map, Value};

use super::text::{join_multiline, valid_cell_id};
use super::{CELL_TYPES, InvalidNotebook, KNOWN_MINOR, RawCell, RawNotebook};

type Result<T> = std::result::Result<T, InvalidNotebook>;

/// A type rule for one key: its name, the check, and what the check expects
/// (completing "... must be ").
type Rule = (&'static str, fn(&Value) -> bool, &'static str);

const OUTPUT_TYPES: [&str; 4] = ["stream", "display_data", "execute_result", "error"];

/// Parse and validate a notebook file. Accepts nbformat 4 with any minor version,
/// which is kept as read.
pub fn parse(bytes: &[u8]) -> Result<RawNotebook> {
    // Python's json refuses a byte order mark too; say so rather than report
    // an unexpected character at line 1, column 1.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(bad(
            "the file starts with a UTF-8 byte order mark, which a notebook file must not have",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|err| {
        // serde_json's syntax messages are fixed phrases plus the position; they
        // never quote the file.
        let position = (err.line() > 0).then(|| (err.line(), err.column()));
        InvalidNotebook {
            reason: format!("the file is not valid JSON: {err}"),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
        }
    })?;
    let Value::Object(mut top) = value else {
        return Err(bad("the file is not a JSON object at the top level"));
    };

    let nbformat = match top.remove("nbformat") {
        None => return Err(bad("the notebook has no nbformat version")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("the notebook's nbformat is not a non-negative integer"))?,
    };
    if nbformat != 4 {
        return Err(bad(format!(
            "nbformat {nbformat} is not supported; only nbformat 4.x"
        )));
    }
    let minor = match top.remove("nbformat_minor") {
        None => return Err(bad("the notebook has no nbformat_minor version")),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("the notebook's nbformat_minor is not a non-negative integer"))?,
    };
    let metadata = match top.remove("metadata") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad("the notebook metadata is not an object")),
        None => return Err(bad("the notebook has no metadata")),
    };
    check_notebook_metadata(&metadata)?;
    let cells = match top.remove("cells") {
        Some(Value::Array(cells)) => cells,
        Some(_) => return Err(bad("the notebook's cells is not a list")),
        None => return Err(bad("the notebook has no cells list")),
    };
    let future = minor > KNOWN_MINOR;
    let cells = cells
        .into_iter()
        .enumerate()
        .map(|(i, cell)| parse_cell(i + 1, cell, future))
        .collect::<Result<Vec<_>>>()?;

    Ok(RawNotebook {
        nbformat,
        nbformat_minor: minor,
        metadata,
        extra: top,
        cells,
    })
}

/// Parse cell number `n` (1-based, for messages).
fn parse_cell(n: usize, value: Value, future: bool) -> Result<RawCell> {
    let Value::Object(mut obj) = value else {
        return Err(bad(format!("cell {n} is not a JSON object")));
    };
    let cell_type = match obj.remove("cell_type") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(bad(format!(
                "cell {n} has a cell_type that is not a string"
            )));
        }
        None => return Err(bad(format!("cell {n} has no cell_type"))),
    };
    let known = CELL_TYPES.contains(&cell_type.as_str());
    if !known && !future {
        return Err(bad(format!(
            "cell {n} has unknown cell_type {}; nbformat 4 allows code, markdown or raw",
            short(&cell_type)
        )));
    }
    let id = match obj.remove("id") {
        None => None,
        Some(Value::String(id)) if valid_cell_id(&id) => Some(id),
        Some(_) => {
            return Err(bad(format!(
                "cell {n} has an invalid id; ids must match ^[A-Za-z0-9_-]{{1,64}}$"
            )));
        }
    };
    let metadata = match obj.remove("metadata") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(format!("cell {n} metadata is not an object"))),
        None => return Err(bad(format!("cell {n} has no metadata"))),
    };
    check_cell_metadata(n, &cell_type, &metadata)?;

    if !known {
        // A cell type from a future minor version: keep everything else verbatim
        // (see `RawCell`), exposing its source read-only if it has a usable one.
        let source = obj
            .get("source")
            .and_then(join_multiline)
            .unwrap_or_default();
        return Ok(RawCell {
            id,
            cell_type,
            source,
            metadata,
            outputs: None,
            execution_count: None,
            attachments: None,
            extra: obj,
        });
    }

    let source = match obj.remove("source") {
        Some(v) => join_multiline(&v).ok_or_else(|| {
            bad(format!(
                "cell {n} source is not a string or a list of strings"
            ))
        })?,
        None => return Err(bad(format!("cell {n} has no source"))),
    };
    let attachments = obj.remove("attachments");
    if let Some(attachments) = &attachments {
        check_attachments(n, attachments)?;
    }

    // Only code cells own outputs and execution_count; on other cells such keys
    // are unknown keys and stay in `extra` like any other.
    let (outputs, execution_count) = if cell_type == "code" {
        let outputs = match obj.remove("outputs") {
            Some(Value::Array(outputs)) => outputs,
            Some(_) => return Err(bad(format!("cell {n} outputs is not a list"))),
            None => return Err(bad(format!("cell {n} is a code cell without outputs"))),
        };
        for (k, output) in outputs.iter().enumerate() {
            check_output(&format!("cell {n} output {}", k + 1), output, future)?;
        }
        let count = obj
            .remove("execution_count")
            .ok_or_else(|| bad(format!("cell {n} is a code cell without execution_count")))?;
        if !is_count(&count) {
            return Err(bad(format!(
                "cell {n} execution_count is not null or a non-negative integer"
            )));
        }
        (Some(outputs), Some(count))
    } else {
        (None, None)
    };

    Ok(RawCell {
        id,
        cell_type,
        source,
        metadata,
        outputs,
        execution_count,
        attachments,
        extra: obj,
    })
}

/// The schema's rules for an output; `what` names it in messages ("cell 2 output 1").
fn check_output(what: &str, output: &Value, future: bool) -> Result<()> {
    let Value::Object(o) = output else {
        return Err(bad(format!("{what} is not a JSON object")));
    };
    let output_type = match o.get("output_type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(bad(format!(
                "{what} has an output_type that is not a string"
            )));
        }
        None => return Err(bad(format!("{what} has no output_type"))),
    };
    let rules: &[Rule] = match output_type {
        "execute_result" => &[
            ("data", is_mimebundle, "a MIME bundle"),
            ("metadata", Value::is_object, "an object"),
            (
                "execution_count",
                is_count,
                "null or a non-negative integer",
            ),
        ],
        "display_data" => &[
            ("data", is_mimebundle, "a MIME bundle"),
            ("metadata", Value::is_object, "an object"),
        ],
        "stream" => &[
            ("name", Value::is_string, "a string"),
            ("text", is_multiline, "a string or a list of strings"),
        ],
        "error" => &[
            ("ename", Value::is_string, "a string"),
            ("evalue", Value::is_string, "a string"),
            ("traceback", is_string_list, "a list of strings"),
        ],
        // nbformat lets a notebook from a newer minor version carry output types
        // it does not know; they are kept as read.
        _ if future => &[],
        _ => {
            return Err(bad(format!(
                "{what} has unknown output_type {}; nbformat 4 allows {}",
                short(output_type),
                OUTPUT_TYPES.join(", ")
            )));
        }
    };
    for &(key, valid, expected) in rules {
        match o.get(key) {
            None => return Err(bad(format!("{what} ({output_type}) has no {key}"))),
            Some(v) if !valid(v) => {
                return Err(bad(format!(
                    "{what} ({output_type}) {key} must be {expected}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Attachments are an object of MIME bundles keyed by file name.
fn check_attachments(n: usize, attachments: &Value) -> Result<()> {
    let Value::Object(files) = attachments else {
        return Err(bad(format!("cell {n} attachments is not an object")));
    };
    match files.iter().find(|(_, bundle)| !is_mimebundle(bundle)) {
        Some((name, _)) => Err(bad(format!(
            "cell {n} attachment {} is not a MIME bundle",
            short(name)
        ))),
        None => Ok(()),
    }
}

/// Type rules for the notebook metadata keys the schema names.
fn check_notebook_metadata(md: &Map<String, Value>) -> Result<()> {
    check_keys(
        "notebook metadata",
        md,
        &[
            (
                "kernelspec",
                |v| has_strings(v, &["name", "display_name"]),
                "an object with string name and display_name",
            ),
            (
                "language_info",
                |v| has_strings(v, &["name"]),
                "an object with a string name",
            ),
            (
                "orig_nbformat",
                |v| v.as_u64().is_some_and(|n| n >= 1),
                "a positive integer",
            ),
            ("title", Value::is_string, "a string"),
            // The schema gives authors' items a shape, but under a misspelled
            // keyword ("item"), so nbformat checks only that it is a list.
            ("authors", Value::is_array, "a list"),
        ],
    )?;
    if let Some(Value::Object(info)) = md.get("language_info") {
        check_keys(
            "notebook language_info",
            info,
            &[
                (
                    "codemirror_mode",
                    |v| v.is_string() || v.is_object(),
                    "a string or an object",
                ),
                ("file_extension", Value::is_string, "a string"),
                ("mimetype", Value::is_string, "a string"),
                ("pygments_lexer", Value::is_string, "a string"),
            ],
        )?;
    }
    Ok(())
}

/// Type rules for the cell metadata keys the schema names for this cell type.
///
/// The schema also describes `jupyter.source_hidden`/`outputs_hidden` as booleans,
/// but outside `properties`, so nbformat never checks them; neither do we, so that
/// we refuse nothing Jupyter accepts.
fn check_cell_metadata(n: usize, cell_type: &str, md: &Map<String, Value>) -> Result<()> {
    let ctx = format!("cell {n} metadata");
    check_keys(
        &ctx,
        md,
        &[
            (
                "name",
                |v| v.as_str().is_some_and(|s| !s.is_empty()),
                "a non-empty string",
            ),
            (
                "tags",
                is_tag_list,
                "a list of distinct non-empty strings without commas",
            ),
        ],
    )?;
    match cell_type {
        "code" => check_keys(
            &ctx,
            md,
            &[
                ("jupyter", Value::is_object, "an object"),
                ("collapsed", Value::is_boolean, "true or false"),
                (
                    "scrolled",
                    |v| v.is_boolean() || v.as_str() == Some("auto"),
                    "true, false or \"auto\"",
                ),
                (
                    "execution",
                    |v| {
                        v.as_object()
                            .is_some_and(|o| o.values().all(Value::is_string))
                    },
                    "an object of strings",
                ),
            ],
        ),
        "markdown" => check_keys(&ctx, md, &[("jupyter", Value::is_object, "an object")]),
        "raw" => check_keys(
            &ctx,
            md,
            &[
                ("jupyter", Value::is_object, "an object"),
                ("format", Value::is_string, "a string"),
            ],
        ),
        _ => Ok(()),
    }
}

/// Check optional keys of `map` against `(key, valid, expected)` rules.
fn check_keys(ctx: &str, map: &Map<String, Value>, rules: &[Rule]) -> Result<()> {
    for &(key, valid, expected) in rules {
        if map.get(key).is_some_and(|v| !valid(v)) {
            return Err(bad(format!("{ctx} \"{key}\" must be {expected}")));
        }
    }
    Ok(())
}

fn has_strings(v: &Value, keys: &[&str]) -> bool {
    v.as_object()
        .is_some_and(|o| keys.iter().all(|k| o.get(*k).is_some_and(Value::is_string)))
}

fn is_count(v: &Value) -> bool {
    v.is_null() || v.is_u64()
}

fn is_multiline(v: &Value) -> bool {
    v.is_string() || is_string_list(v)
}

fn is_string_list(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|items| items.iter().all(Value::is_string))
}

fn is_tag_list(v: &Value) -> bool {
    let Some(items) = v.as_array() else {
        return false;
    };
    items.iter().enumerate().all(|(i, item)| {
        item.as_str()
            .is_some_and(|tag| !tag.is_empty() && !tag.contains(','))
            && !items[..i].contains(item)
    })
}

/// A MIME bundle: an object whose values are multi-line strings, except JSON
/// MIME types (`application/json`, `application/...+json`), which may hold any value.
fn is_mimebundle(v: &Value) -> bool {
    v.as_object().is_some_and(|bundle| {
        bundle
            .iter()
            .all(|(mime, data)| is_json_mime(mime) || is_multiline(data))
    })
}

/// The schema's `^application/(.*\+)?json$`.
fn is_json_mime(mime: &str) -> bool {
    mime.strip_prefix("application/")
        .is_some_and(|rest| rest == "json" || rest.ends_with("+json"))
}

/// A key name or id quoted for a message, cut to 80 characters and escaped so
/// that it cannot break the one-line message.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    format!("{cut:?}")
}

fn bad(reason: impl Into<String>) -> InvalidNotebook {
    InvalidNotebook::new(reason)
}
