//! Pieces every tool shares: results, output schemas, who is calling, and
//! how a cell is addressed.

use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::Actor;
use crate::error::{Code, ToolError, quote};
use crate::events::{CLIENT_EXTERNAL, CLIENT_SERVER, CellType};
use crate::projections::{Lock, NotebookState};
use crate::time::rfc3339;

/// Largest cell source accepted (§8.12).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Most cells one call may touch (§8.12).
pub const MAX_CELLS_PER_CALL: usize = 1000;

/// A successful result: one summary line, then the compact JSON (§8.2).
pub fn ok(summary: &str, value: Map<String, Value>) -> CallToolResult {
    let value = Value::Object(value);
    let mut r = CallToolResult::structured(value.clone());
    r.content = vec![rmcp::model::ContentBlock::text(format!(
        "{summary}\n{value}"
    ))];
    r
}

/// A refused call: `isError` with `structuredContent.error`.
pub fn err(e: &ToolError) -> CallToolResult {
    let value = json!({ "error": e.to_json() });
    let mut r = CallToolResult::structured_error(value.clone());
    r.content = vec![rmcp::model::ContentBlock::text(format!(
        "error {}: {}\n{value}",
        e.code, e.message
    ))];
    r
}

/// A cell of a notebook: where a moved or copied cell came from or went.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CellAt {
    pub path: String,
    pub cell_id: String,
}

impl CellAt {
    pub fn new(path: &str, cell_id: &str) -> CellAt {
        CellAt {
            path: path.to_owned(),
            cell_id: cell_id.to_owned(),
        }
    }
}

/// A lock a forced write went past.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Overridden {
    pub cell_id: String,
    pub owner: String,
}

pub fn to_map<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Decides who is acting (§2, §8.1): the given `client_name` (or its alias
/// `owner`), else the MCP client's declared name, else `anonymous`.
pub fn client_name(given: Option<String>, declared: Option<&str>) -> Result<String, ToolError> {
    match given {
        Some(name) => {
            check_name(&name)?;
            if name == CLIENT_EXTERNAL || name == CLIENT_SERVER {
                return Err(ToolError::invalid(
                    "client_name",
                    "a name other than \"external\" and \"nbledger\"",
                    format!(
                        "client_name {} is reserved for changes nbledger records on its own (outside edits, repairs); pass your own name",
                        quote(&name)
                    ),
                ));
            }
            Ok(name)
        }
        None => Ok(declared
            .filter(|d| check_name(d).is_ok() && *d != CLIENT_EXTERNAL && *d != CLIENT_SERVER)
            .unwrap_or("anonymous")
            .to_owned()),
    }
}

fn check_name(name: &str) -> Result<(), ToolError> {
    let n = name.chars().count();
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}');
    if n == 0 || n > 64 || name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(ToolError::invalid(
            "client_name",
            "1-64 characters without control or bidi characters",
            format!(
                "client_name {} is not usable; pass 1-64 printable characters unique to you",
                quote(name)
            ),
        ));
    }
    Ok(())
}

pub fn request_id(rid: Option<String>) -> Result<Option<String>, ToolError> {
    match rid {
        Some(r) if r.is_empty() || r.chars().count() > 64 || r.chars().any(char::is_control) => {
            Err(ToolError::invalid(
                "request_id",
                "1-64 printable characters",
                "request_id must be 1-64 printable characters",
            ))
        }
        other => Ok(other),
    }
}

pub fn cell_type(arg: &str, s: Option<&str>) -> Result<CellType, ToolError> {
    match s {
        None => Ok(CellType::Code),
        Some(s) => CellType::parse(s).ok_or_else(|| {
            ToolError::invalid(
                arg,
                "one of code, markdown, raw",
                format!(
                    "cell_type {} is unknown; use code, markdown or raw",
                    quote(s)
                ),
            )
            .with("allowed", json!(["code", "markdown", "raw"]))
        }),
    }
}

/// A `cell_type` filter: `all` (or absent) is none.
pub fn type_filter(s: Option<&str>) -> Result<Option<CellType>, ToolError> {
    match s {
        None | Some("all") => Ok(None),
        Some(t) => CellType::parse(t).map(Some).ok_or_else(|| {
            ToolError::invalid(
                "cell_type",
                "one of all, code, markdown, raw",
                format!("cell_type {} is unknown", quote(t)),
            )
            .with("allowed", json!(["all", "code", "markdown", "raw"]))
        }),
    }
}

/// At most [`MAX_CELLS_PER_CALL`] cells per call (§8.12).
pub fn check_count(n: usize) -> Result<(), ToolError> {
    if n > MAX_CELLS_PER_CALL {
        return Err(ToolError::too_large(
            "the number of cells in one call",
            MAX_CELLS_PER_CALL as u64,
            n as u64,
        ));
    }
    Ok(())
}

pub fn check_source(s: &str) -> Result<(), ToolError> {
    if s.len() > MAX_SOURCE_BYTES {
        return Err(ToolError::too_large(
            "the cell source (bytes)",
            MAX_SOURCE_BYTES as u64,
            s.len() as u64,
        ));
    }
    Ok(())
}

/// The first line of a source, cut to 80 characters.
pub fn preview(source: &str) -> String {
    let line = source.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut p: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        p.push('…');
    }
    p
}

/// Finds a live cell by id (exact, else a unique prefix of ≥ 4 characters
/// over live and deleted ids) or by index (§8.3). Returns its position.
pub fn find_cell(
    nb: &NotebookState,
    arg: &str,
    cell_id: Option<&str>,
    index: Option<i64>,
) -> Result<usize, ToolError> {
    match (cell_id, index) {
        (Some(_), Some(_)) => Err(ToolError::invalid(
            arg,
            "either cell_id or index, not both",
            "give either cell_id or index, not both",
        )),
        (None, None) => Err(ToolError::invalid(
            arg,
            "cell_id or index",
            "say which cell: pass cell_id (preferred, stable under concurrent edits) or index",
        )),
        (None, Some(i)) => index_of(nb, i),
        (Some(id), None) => id_of(nb, id),
    }
}

pub fn index_of(nb: &NotebookState, i: i64) -> Result<usize, ToolError> {
    if i < 0 || i as usize >= nb.cells.len() {
        return Err(ToolError::not_found(
            "cell",
            format!(
                "index {i} is out of range: the notebook has {} cells (0-based); read the outline for current indexes",
                nb.cells.len()
            ),
        )
        .with("cell_count", nb.cells.len()));
    }
    Ok(i as usize)
}

pub fn id_of(nb: &NotebookState, id: &str) -> Result<usize, ToolError> {
    if let Some(i) = nb.position(id) {
        return Ok(i);
    }
    if nb.deleted.contains_key(id) {
        return Err(gone(id));
    }
    if let Some((to_path, to_id)) = nb.moved_out.get(id) {
        return Err(ToolError::not_found(
            "cell",
            format!(
                "cell {} was moved to {} as {}; address it there",
                quote(id),
                quote(to_path),
                to_id
            ),
        )
        .with("cell_id", id)
        .with("moved_to", json!({"path": to_path, "cell_id": to_id})));
    }
    if id.chars().count() < 4 {
        return Err(ToolError::not_found(
            "cell",
            format!(
                "no cell with id {}; ids can be shortened to a prefix of at least 4 characters",
                quote(id)
            ),
        ));
    }
    let live: Vec<usize> = (0..nb.cells.len())
        .filter(|&i| nb.cells[i].cell.id.starts_with(id))
        .collect();
    let dead: Vec<&String> = nb.deleted.keys().filter(|k| k.starts_with(id)).collect();
    match (live.as_slice(), dead.as_slice()) {
        ([i], []) => Ok(*i),
        ([], [d]) => Err(gone(d)),
        ([], []) => Err(ToolError::not_found(
            "cell",
            format!(
                "no cell with id {} in this notebook; list ids with get_notebook_outline",
                quote(id)
            ),
        )),
        _ => {
            let mut candidates: Vec<Value> = live
                .iter()
                .map(|&i| json!({"cell_id": nb.cells[i].cell.id, "index": i, "preview": preview(&nb.cells[i].cell.source)}))
                .collect();
            candidates.extend(dead.iter().map(|d| {
                json!({"cell_id": d, "index": null, "preview": preview(&nb.deleted[*d].cell.source), "deleted": true})
            }));
            Err(ToolError::new(
                Code::AmbiguousCellId,
                format!(
                    "cell id prefix {} matches {} cells; give more characters",
                    quote(id),
                    candidates.len()
                ),
            )
            .with("candidates", candidates))
        }
    }
}

/// Resolves an id over live and deleted cells alike (history, recovery):
/// exact first, else a unique prefix of at least 4 characters.
pub fn id_any(nb: &NotebookState, id: &str) -> Result<String, ToolError> {
    if nb.position(id).is_some() || nb.deleted.contains_key(id) || nb.moved_out.contains_key(id) {
        return Ok(id.to_owned());
    }
    let not_found = || {
        ToolError::not_found(
            "cell",
            format!(
                "no cell, live or deleted, with id {} in this notebook",
                quote(id)
            ),
        )
    };
    if id.chars().count() < 4 {
        return Err(not_found());
    }
    let mut matches: Vec<(String, Option<usize>, String)> = nb
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.cell.id.starts_with(id))
        .map(|(i, c)| (c.cell.id.clone(), Some(i), preview(&c.cell.source)))
        .collect();
    matches.extend(
        nb.deleted
            .iter()
            .filter(|(k, _)| k.starts_with(id))
            .map(|(k, d)| (k.clone(), None, preview(&d.cell.source))),
    );
    matches.extend(
        nb.moved_out
            .keys()
            .filter(|k| k.starts_with(id))
            .map(|k| (k.clone(), None, String::new())),
    );
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.remove(0).0),
        n => Err(ToolError::new(
            Code::AmbiguousCellId,
            format!(
                "cell id prefix {} matches {n} cells; give more characters",
                quote(id)
            ),
        )
        .with(
            "candidates",
            matches
                .into_iter()
                .map(|(c, i, p)| json!({"cell_id": c, "index": i, "preview": p}))
                .collect::<Vec<_>>(),
        )),
    }
}

fn gone(id: &str) -> ToolError {
    ToolError::not_found(
        "cell",
        format!(
            "cell {} was deleted; bring it back with recover_cell",
            quote(id)
        ),
    )
    .with("cell_id", id)
    .with("deleted", true)
}

/// Where new cells go (§4): exactly one of index / after / before, default
/// append. Returns the insertion index.
pub fn placement(
    nb: &NotebookState,
    index: Option<i64>,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<usize, ToolError> {
    let given = index.is_some() as u8 + after.is_some() as u8 + before.is_some() as u8;
    if given > 1 {
        return Err(ToolError::invalid(
            "index",
            "at most one of index, after_cell_id, before_cell_id",
            "give at most one of index, after_cell_id, before_cell_id",
        ));
    }
    if let Some(i) = index {
        if i < 0 || i as usize > nb.cells.len() {
            return Err(ToolError::not_found(
                "cell",
                format!(
                    "index {i} is past the end: the notebook has {} cells; use {} to append",
                    nb.cells.len(),
                    nb.cells.len()
                ),
            )
            .with("cell_count", nb.cells.len()));
        }
        return Ok(i as usize);
    }
    if let Some(a) = after {
        return Ok(id_of(nb, a)? + 1);
    }
    if let Some(b) = before {
        return id_of(nb, b);
    }
    Ok(nb.cells.len())
}

/// Refuses a write to cells another owner holds at `now` (§4 Locks) with
/// `locked`; with `force`, returns the `(cell_id, owner)` it overrides.
pub fn check_locks(
    nb: &NotebookState,
    cells: &[String],
    actor: &Actor,
    force: bool,
    now: i64,
) -> Result<Vec<(String, String)>, ToolError> {
    let held: Vec<(&str, &Lock)> = cells
        .iter()
        .filter_map(|c| {
            nb.lock_at(c, now)
                .filter(|l| l.owner != actor.client_name)
                .map(|l| (c.as_str(), l))
        })
        .collect();
    if held.is_empty() {
        return Ok(Vec::new());
    }
    if force {
        return Ok(held
            .iter()
            .map(|(c, l)| ((*c).to_owned(), l.owner.clone()))
            .collect());
    }
    Err(locked(
        &held,
        actor,
        now,
        "pass force: true to write anyway (recorded as overriding the lock)",
    ))
}

/// The `locked` refusal naming each holder and expiry (§7).
pub fn locked(held: &[(&str, &Lock)], actor: &Actor, now: i64, remedy: &str) -> ToolError {
    let first = held.first().map(|(c, l)| {
        format!(
            "cell {c} is locked by {} until {} (in {} s)",
            quote(&l.owner),
            rfc3339(l.expires_at),
            (l.expires_at - now).max(0) / 1000
        )
    });
    let more = if held.len() > 1 {
        format!(" and {} more", held.len() - 1)
    } else {
        String::new()
    };
    let mut message = format!(
        "{}{more}; wait for it to expire, ask the holder to unlock_cells, or {remedy}",
        first.unwrap_or_default()
    );
    if !actor.named {
        message.push_str(&format!(
            "; you acted as {} because no client_name was given: pass a client_name unique to you on every call",
            quote(&actor.client_name)
        ));
    }
    let locks: Vec<Value> = held
        .iter()
        .map(|(c, l)| json!({"cell_id": c, "owner": l.owner, "expires_at": rfc3339(l.expires_at)}))
        .collect();
    ToolError::new(Code::Locked, message).with("locks", locks)
}

/// Longest regex accepted, in characters (§8.12).
pub const MAX_PATTERN_CHARS: usize = 1000;

/// Compiles a tool's `pattern` (Rust `regex` syntax) under the size
/// limits of §8.12; `lines`: `^` and `$` match at each line's ends. A bad
/// pattern is `invalid_argument` naming the unsupported feature, if any.
pub fn pattern(text: &str, case_sensitive: bool, lines: bool) -> Result<regex::Regex, ToolError> {
    let n = text.chars().count();
    if n > MAX_PATTERN_CHARS {
        return Err(ToolError::too_large(
            "the pattern (characters)",
            MAX_PATTERN_CHARS as u64,
            n as u64,
        ));
    }
    regex::RegexBuilder::new(text)
        .case_insensitive(!case_sensitive)
        .multi_line(lines)
        .size_limit(1 << 20)
        .dfa_size_limit(2 << 20)
        .build()
        .map_err(|e| {
            let msg = e.to_string();
            let feature = if msg.contains("look-around") {
                "look-around is not supported; "
            } else if msg.contains("backreference") {
                "back-references are not supported; "
            } else {
                ""
            };
            ToolError::invalid(
                "pattern",
                "a Rust regex",
                format!(
                    "pattern is not a valid regex: {feature}{}",
                    msg.lines().last().unwrap_or("").trim()
                ),
            )
        })
}
