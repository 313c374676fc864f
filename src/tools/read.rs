//! Tools that read: list, content, outline, search. They never append an
//! event except the import or outside change that any first touch takes in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::common::{find_cell, preview, to_map};
use crate::engine::Engine;
use crate::error::{ToolError, quote};
use crate::events::{Cell, CellType};
use crate::ipynb;
use crate::projections::NotebookState;

/// Largest structuredContent a read returns before paging (§8.7).
const MAX_RESULT_BYTES: usize = 256 << 10;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// A folder under the root; default: all of it.
    pub dir: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NotebookEntry {
    pub path: String,
    pub cell_count: Option<u64>,
    pub current_version: u64,
    pub imported: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOut {
    pub notebooks: Vec<NotebookEntry>,
}

pub fn list_notebooks(
    engine: &Engine,
    a: ListArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let notebooks = super::walk::notebooks(engine, a.dir.as_deref().unwrap_or(""))?;
    let n = notebooks.len();
    let mut m = Map::new();
    m.insert("notebooks".into(), Value::Array(notebooks));
    Ok((format!("{n} notebook(s)"), m))
}

// ---------------------------------------------------------------- content

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ContentArgs {
    pub path: String,
    pub cell_ids: Option<Vec<String>>,
    pub cell_id: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    #[schemars(extend("enum" = ["all", "code", "markdown", "raw"], "default" = "all"))]
    pub cell_type: Option<String>,
    #[schemars(extend("default" = false))]
    pub include_outputs: Option<bool>,
    /// 0: no limit.
    #[schemars(extend("default" = 2000))]
    pub max_output_chars: Option<u64>,
    #[schemars(extend("default" = false))]
    pub include_images: Option<bool>,
    /// Read the notebook as it was right after this version, from the log
    /// (no locks shown).
    pub at_version: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CellOut {
    pub cell_id: String,
    pub index: usize,
    pub cell_type: String,
    pub source: String,
    pub last_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_expires_in_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Value>>,
    /// The newest run accepted for this code cell (get_run tells more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The event whose run outputs the cell holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_version: Option<u64>,
    /// The source changed after that run was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ContentOut {
    pub path: String,
    pub current_version: u64,
    pub cells: Vec<CellOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_start: Option<usize>,
}

pub fn get_notebook_content(
    engine: &Engine,
    a: ContentArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let filter = super::common::type_filter(a.cell_type.as_deref())?;
    let include_outputs = a.include_outputs.unwrap_or(false);
    let max_chars = a.max_output_chars.unwrap_or(2000) as usize;
    let images = a.include_images.unwrap_or(false);
    let now = crate::time::now_ms();
    let build = |nb: &NotebookState, now: Option<i64>| -> Result<ContentOut, ToolError> {
        let one = a.cell_id.clone().map(|id| vec![id]);
        let wanted: Option<Vec<usize>> = match a.cell_ids.as_ref().or(one.as_ref()) {
            Some(ids) => Some(
                ids.iter()
                    .map(|id| find_cell(nb, "cell_ids", Some(id), None))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        let last = nb.cells.len() as i64 - 1;
        let start = a.start.unwrap_or(0);
        let end = a.end.unwrap_or(last);
        if start < 0 || (a.start.is_some() && start > last) {
            return Err(ToolError::not_found(
                "cell",
                format!(
                    "start {start} is out of range: the notebook has {} cells",
                    nb.cells.len()
                ),
            )
            .with("cell_count", nb.cells.len()));
        }
        if end < start && a.end.is_some() {
            return Err(ToolError::invalid(
                "end",
                "an index ≥ start",
                format!("end {end} is before start {start}"),
            ));
        }
        let mut cells = Vec::new();
        let mut size = 0usize;
        let mut next_start = None;
        for (i, live) in nb.cells.iter().enumerate() {
            let i64i = i as i64;
            if i64i < start || i64i > end {
                continue;
            }
            if wanted.as_ref().is_some_and(|w| !w.contains(&i)) {
                continue;
            }
            if filter.as_ref().is_some_and(|t| *t != live.cell.cell_type) {
                continue;
            }
            let mut cell = cell_out(
                i,
                &live.cell,
                live.last_version,
                include_outputs,
                max_chars,
                images,
            );
            if let Some(run) = nb.cell_runs.get(&live.cell.id) {
                cell.run_id = Some(run.run_id.clone());
                cell.outputs_version = run.outputs_version;
                cell.stale = (live.last_version > run.source_version).then_some(true);
            }
            if let Some(now) = now
                && let Some(l) = nb.lock_at(&live.cell.id, now)
            {
                cell.locked_by = Some(l.owner.clone());
                cell.lock_expires_in_s = Some((l.expires_at - now).max(0) / 1000);
            }
            let cost = serde_json::to_string(&cell).map_or(0, |s| s.len());
            if size + cost > MAX_RESULT_BYTES && !cells.is_empty() {
                next_start = Some(i);
                break;
            }
            size += cost;
            cells.push(cell);
        }
        Ok(ContentOut {
            path: nb.path.clone(),
            current_version: nb.current_version,
            cells,
            truncated: next_start.map(|_| true),
            next_start,
        })
    };
    let out = match a.at_version {
        Some(v) => build(&engine.notebook_at(&a.path, v)?, None)?,
        None => engine.read(&a.path, |nb| build(nb, Some(now)))?,
    };
    let summary = format!(
        "{}: {} cell(s) at version {}{}",
        out.path,
        out.cells.len(),
        out.current_version,
        if out.truncated.is_some() {
            " (truncated; continue with start=next_start)"
        } else {
            ""
        }
    );
    Ok((summary, to_map(&out)))
}

fn cell_out(
    index: usize,
    cell: &Cell,
    last_version: u64,
    outputs: bool,
    max_chars: usize,
    images: bool,
) -> CellOut {
    CellOut {
        cell_id: cell.id.clone(),
        index,
        cell_type: cell.cell_type.as_str().to_owned(),
        source: cell.source.clone(),
        last_version,
        locked_by: None,
        lock_expires_in_s: None,
        run_id: None,
        outputs_version: None,
        stale: None,
        outputs: (outputs && cell.cell_type == CellType::Code).then(|| {
            parsed_outputs(cell)
                .into_iter()
                .map(|o| shape_output(o, max_chars, images))
                .collect()
        }),
    }
}

pub fn parsed_outputs(cell: &Cell) -> Vec<Value> {
    match cell.outputs.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Array(a))) => a,
        _ => Vec::new(),
    }
}

/// Is this MIME type text an agent can read (as opposed to base64 data)?
fn textual(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime.ends_with("json")
        || mime.ends_with("+xml")
        || mime == "application/javascript"
}

/// An output as an agent sees it (§8.7): multi-line strings joined, texts
/// cut to `max_chars` with `truncated_chars`, binary data omitted.
pub(crate) fn shape_output(mut o: Value, max_chars: usize, images: bool) -> Value {
    let Some(obj) = o.as_object_mut() else {
        return o;
    };
    let mut cut_total = 0usize;
    let mut cut = |v: &mut Value| {
        if let Some(s) = ipynb::join_multiline(v) {
            let n = s.chars().count();
            if max_chars > 0 && n > max_chars {
                cut_total += n - max_chars;
                *v = Value::String(s.chars().take(max_chars).collect());
            } else {
                *v = Value::String(s);
            }
        }
    };
    if let Some(t) = obj.get_mut("text") {
        cut(t);
    }
    if let Some(Value::Object(data)) = obj.get_mut("data") {
        for (mime, v) in data.iter_mut() {
            if textual(mime) {
                if !v.is_object() {
                    cut(v);
                }
            } else if let Some(s) = ipynb::join_multiline(v) {
                *v = if images {
                    Value::String(s)
                } else {
                    json!({"omitted_bytes": base64_len(&s)})
                };
            }
        }
    }
    if let Some(Value::Array(tb)) = obj.get_mut("traceback") {
        for line in tb.iter_mut() {
            // The file keeps the kernel's colours; agents get plain text (§9.3).
            if let Some(s) = line.as_str() {
                *line = Value::String(crate::kernels::strip_ansi(s));
            }
            cut(line);
        }
    }
    if cut_total > 0 {
        obj.insert("truncated_chars".into(), json!(cut_total));
    }
    o
}

/// Decoded length of base64 text (whitespace ignored).
fn base64_len(s: &str) -> usize {
    let chars = s.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let pad = s
        .trim_end()
        .bytes()
        .rev()
        .take_while(|&b| b == b'=')
        .count();
    (chars / 4) * 3 - pad.min(2)
}

// ---------------------------------------------------------------- outline

#[derive(Debug, Deserialize, JsonSchema)]
pub struct OutlineArgs {
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OutlineCell {
    pub cell_id: String,
    pub index: usize,
    pub cell_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    pub preview: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OutlineOut {
    pub path: String,
    pub current_version: u64,
    pub cells: Vec<OutlineCell>,
}

pub fn get_notebook_outline(
    engine: &Engine,
    a: OutlineArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let out = engine.read(&a.path, |nb| Ok(outline(nb)))?;
    Ok((
        format!(
            "{}: {} cells at version {}",
            out.path,
            out.cells.len(),
            out.current_version
        ),
        to_map(&out),
    ))
}

fn outline(nb: &NotebookState) -> OutlineOut {
    let cells = nb
        .cells
        .iter()
        .enumerate()
        .map(|(index, live)| {
            let c = &live.cell;
            let heading = (c.cell_type == CellType::Markdown)
                .then(|| c.source.lines().find_map(heading_of))
                .flatten();
            OutlineCell {
                cell_id: c.id.clone(),
                index,
                cell_type: c.cell_type.as_str().to_owned(),
                level: heading.as_ref().map(|h| h.0),
                heading: heading.map(|h| h.1),
                preview: preview(&c.source),
            }
        })
        .collect();
    OutlineOut {
        path: nb.path.clone(),
        current_version: nb.current_version,
        cells,
    }
}

fn heading_of(line: &str) -> Option<(u8, String)> {
    let t = line.trim_start();
    let level = t.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&level) && t[level..].starts_with(' ') {
        Some((level as u8, t[level..].trim().chars().take(120).collect()))
    } else {
        None
    }
}

// ---------------------------------------------------------------- search

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    pub path: String,
    pub pattern: String,
    #[schemars(extend("default" = false))]
    pub case_sensitive: Option<bool>,
    #[schemars(extend("enum" = ["source", "outputs", "all"], "default" = "source"))]
    pub search_in: Option<String>,
    /// At most 1000.
    #[schemars(extend("default" = 100))]
    pub max_results: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Match {
    pub cell_id: String,
    pub index: usize,
    #[serde(rename = "in")]
    pub in_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_index: Option<usize>,
    pub line: usize,
    pub column: usize,
    pub text: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOut {
    pub path: String,
    pub current_version: u64,
    pub matches: Vec<Match>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

pub fn search_notebook(
    engine: &Engine,
    a: SearchArgs,
) -> Result<(String, Map<String, Value>), ToolError> {
    let (in_source, in_outputs) = match a.search_in.as_deref() {
        None | Some("source") => (true, false),
        Some("outputs") => (false, true),
        Some("all") => (true, true),
        Some(o) => {
            return Err(ToolError::invalid(
                "search_in",
                "one of source, outputs, all",
                format!("search_in {} is unknown", quote(o)),
            )
            .with("allowed", json!(["source", "outputs", "all"])));
        }
    };
    let re = super::common::pattern(&a.pattern, a.case_sensitive.unwrap_or(false), false)?;
    let max = a.max_results.unwrap_or(100).clamp(1, 1000) as usize;
    let out = engine.read(&a.path, |nb| {
        let mut matches = Vec::new();
        let mut truncated = false;
        'cells: for (index, live) in nb.cells.iter().enumerate() {
            let c = &live.cell;
            let mut texts: Vec<(String, Option<usize>, String)> = Vec::new();
            if in_source {
                texts.push(("source".into(), None, c.source.clone()));
            }
            if in_outputs {
                for (k, o) in parsed_outputs(c).iter().enumerate() {
                    texts.push(("output".into(), Some(k), output_text(o)));
                }
            }
            for (where_, output_index, text) in texts {
                for (ln, line) in text.lines().enumerate() {
                    for m in re.find_iter(line) {
                        if matches.len() == max {
                            truncated = true;
                            break 'cells;
                        }
                        matches.push(Match {
                            cell_id: c.id.clone(),
                            index,
                            in_: where_.clone(),
                            output_index,
                            line: ln + 1,
                            column: line[..m.start()].chars().count() + 1,
                            text: around(line, m.start(), m.end()),
                        });
                    }
                }
            }
        }
        Ok(SearchOut {
            path: nb.path.clone(),
            current_version: nb.current_version,
            matches,
            truncated: truncated.then_some(true),
        })
    })?;
    Ok((
        format!("{} match(es) in {}", out.matches.len(), out.path),
        to_map(&out),
    ))
}

/// The searchable text of an output: streams, plain text, markdown and
/// errors with ANSI colour codes removed; never base64 data.
fn output_text(o: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = o.get("text").and_then(ipynb::join_multiline) {
        parts.push(t);
    }
    if let Some(data) = o.get("data") {
        for mime in ["text/plain", "text/markdown"] {
            if let Some(t) = data.get(mime).and_then(ipynb::join_multiline) {
                parts.push(t);
            }
        }
    }
    for key in ["ename", "evalue"] {
        if let Some(t) = o.get(key).and_then(Value::as_str) {
            parts.push(t.to_owned());
        }
    }
    if let Some(tb) = o.get("traceback").and_then(Value::as_array) {
        parts.extend(tb.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    strip_ansi(&parts.join("\n"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Up to 300 characters of `line` around the match.
fn around(line: &str, start: usize, end: usize) -> String {
    if line.chars().count() <= 300 {
        return line.to_owned();
    }
    let before: Vec<char> = line[..start].chars().collect();
    let matched: Vec<char> = line[start..end].chars().collect();
    let lead = before.len().saturating_sub(100);
    let take = 300usize
        .saturating_sub(before.len() - lead)
        .max(matched.len().min(300));
    line[..start]
        .chars()
        .skip(lead)
        .chain(line[start..].chars())
        .take((before.len() - lead) + take.min(300))
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_joined_cut_and_images_omitted() {
        let o = json!({
            "output_type": "display_data",
            "data": {"text/plain": ["ab", "cdef"], "image/png": "iVBORw0KGgo="},
            "metadata": {}
        });
        let s = shape_output(o, 3, false);
        assert_eq!(s["data"]["text/plain"], json!("abc"));
        assert_eq!(s["truncated_chars"], json!(3));
        // The PNG signature: 8 bytes.
        assert_eq!(s["data"]["image/png"], json!({"omitted_bytes": 8}));
    }

    #[test]
    fn headings_have_levels() {
        assert_eq!(heading_of("## Data"), Some((2, "Data".into())));
        assert_eq!(heading_of("#hashtag"), None);
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[0;31mValueError\u{1b}[0m: x"),
            "ValueError: x"
        );
    }

    #[test]
    fn around_keeps_short_lines_whole_and_long_ones_near_the_match() {
        assert_eq!(around("abc", 1, 2), "abc");
        let long = format!("{}NEEDLE{}", "a".repeat(500), "b".repeat(500));
        let t = around(&long, 500, 506);
        assert!(t.contains("NEEDLE"));
        assert!(t.chars().count() <= 300);
    }
}
