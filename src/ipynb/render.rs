//! Writing notebooks in Jupyter's exact layout.
//!
//! Python's `nbformat.write` is `json.dumps(nb, sort_keys=True, indent=1,
//! ensure_ascii=False) + "\n"`. This is a small JSON writer that reproduces that
//! output byte for byte: keys sorted at every depth (by code point, which is UTF-8
//! byte order), one space of indent per level, `,` + newline between items, `": "`
//! after keys, `{}`/`[]` for empty containers, non-ASCII written raw.
//!
//! It is hand-written rather than serde_json's `PrettyFormatter` because cells must
//! be rendered on their own at depth 2 (so unchanged cells can be reused as text)
//! and because writing to a `String` this way cannot fail.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::text::split_lines;
use super::{RawCell, RawNotebook};

/// Depth of a cell object inside the file: top-level object, then the `cells` list.
const CELL_DEPTH: usize = 2;

/// Top-level keys owned by [`RawNotebook`]'s named fields; an `extra` entry with
/// one of these names would duplicate a key, so it is never written.
const NOTEBOOK_KEYS: [&str; 4] = ["cells", "metadata", "nbformat", "nbformat_minor"];

/// Keys owned by [`RawCell`]'s named fields, by kind of cell (see [`cell_entries`]).
const COMMON_CELL_KEYS: [&str; 3] = ["cell_type", "id", "metadata"];
const KNOWN_CELL_KEYS: [&str; 2] = ["source", "attachments"];
const CODE_CELL_KEYS: [&str; 2] = ["execution_count", "outputs"];

/// The value of one object entry, borrowed from wherever it lives.
enum Field<'a> {
    Json(&'a Value),
    Object(&'a Map<String, Value>),
    List(&'a [Value]),
    Str(&'a str),
    Lines(Vec<&'a str>),
    Uint(u64),
    Null,
    /// Cells already rendered at [`CELL_DEPTH`].
    Rendered(&'a [&'a str]),
}

/// The text of one cell object exactly as it appears inside the `cells` list of a
/// Jupyter-written file: starts with `"  {"`, ends with `"  }"`, no trailing comma
/// or newline.
pub fn render_cell(cell: &RawCell) -> String {
    let mut out = String::new();
    push_indent(&mut out, CELL_DEPTH);
    write_entries(&mut out, cell_entries(cell), CELL_DEPTH);
    out
}

/// The whole file, with the cells given as texts from [`render_cell`]; `nb.cells` is
/// ignored. Byte-identical to [`render_notebook_full`] for the same content.
pub fn render_notebook(nb: &RawNotebook, rendered_cells: &[&str]) -> Vec<u8> {
    let mut entries = vec![
        ("cells", Field::Rendered(rendered_cells)),
        ("metadata", Field::Object(&nb.metadata)),
        ("nbformat", Field::Uint(nb.nbformat)),
        ("nbformat_minor", Field::Uint(nb.nbformat_minor)),
    ];
    entries.extend(
        nb.extra
            .iter()
            .filter(|(key, _)| !NOTEBOOK_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.as_str(), Field::Json(value))),
    );
    let mut out = String::new();
    write_entries(&mut out, entries, 0);
    out.push('\n');
    out.into_bytes()
}

/// The text around the cells, so a writer can stream cached cell texts
/// without building the whole file: for a non-empty `cells`,
/// `prefix + cells.join(",\n") + suffix == render_notebook(nb, cells)`.
/// (No rendered JSON contains a raw NUL, so it marks the cells' place.)
pub fn render_frame(nb: &RawNotebook) -> (String, String) {
    let marked = render_notebook(nb, &["\u{0}"]);
    let text = String::from_utf8(marked).unwrap_or_default();
    match text.split_once('\u{0}') {
        Some((prefix, suffix)) => (prefix.to_owned(), suffix.to_owned()),
        None => (text, String::new()),
    }
}

/// [`render_notebook`] with every cell of `nb` rendered.
pub fn render_notebook_full(nb: &RawNotebook) -> Vec<u8> {
    let rendered: Vec<String> = nb.cells.iter().map(render_cell).collect();
    let refs: Vec<&str> = rendered.iter().map(String::as_str).collect();
    render_notebook(nb, &refs)
}

/// The entries written for a cell.
///
/// A code cell always has `execution_count` and `outputs` (Jupyter requires them);
/// markdown and raw cells never do, whatever the struct holds. An opaque cell of
/// unknown type writes only `cell_type`, `id`, `metadata` and its verbatim `extra`.
fn cell_entries(cell: &RawCell) -> Vec<(&str, Field<'_>)> {
    let mut entries = vec![
        ("cell_type", Field::Str(&cell.cell_type)),
        ("metadata", Field::Object(&cell.metadata)),
    ];
    if let Some(id) = &cell.id {
        entries.push(("id", Field::Str(id)));
    }
    let known = cell.is_known_type();
    let code = cell.cell_type == "code";
    if known {
        entries.push(("source", Field::Lines(split_lines(&cell.source))));
        if let Some(attachments) = &cell.attachments {
            entries.push(("attachments", Field::Json(attachments)));
        }
    }
    if code {
        let count = cell
            .execution_count
            .as_ref()
            .map_or(Field::Null, Field::Json);
        entries.push(("execution_count", count));
        entries.push((
            "outputs",
            Field::List(cell.outputs.as_deref().unwrap_or(&[])),
        ));
    }
    let owned = |key: &str| {
        COMMON_CELL_KEYS.contains(&key)
            || (known && KNOWN_CELL_KEYS.contains(&key))
            || (code && CODE_CELL_KEYS.contains(&key))
    };
    entries.extend(
        cell.extra
            .iter()
            .filter(|(key, _)| !owned(key))
            .map(|(key, value)| (key.as_str(), Field::Json(value))),
    );
    entries
}

/// Write an object whose opening brace goes at the current position and whose
/// closing brace is indented for `depth`.
fn write_entries(out: &mut String, mut entries: Vec<(&str, Field<'_>)>, depth: usize) {
    if entries.is_empty() {
        out.push_str("{}");
        return;
    }
    // `str` ordering is byte ordering, which for UTF-8 is Python's code point order.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, field)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('\n');
        push_indent(out, depth + 1);
        write_str(out, key);
        out.push_str(": ");
        write_field(out, field, depth + 1);
    }
    out.push('\n');
    push_indent(out, depth);
    out.push('}');
}

fn write_field(out: &mut String, field: &Field<'_>, depth: usize) {
    match field {
        Field::Json(value) => write_value(out, value, depth),
        Field::Object(map) => write_object(out, map, depth),
        Field::List(items) => write_list(out, items.iter(), depth, write_value),
        Field::Str(s) => write_str(out, s),
        Field::Lines(lines) => write_list(out, lines.iter(), depth, |out, line, _| {
            write_str(out, line)
        }),
        Field::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Field::Null => out.push_str("null"),
        Field::Rendered(cells) => {
            if cells.is_empty() {
                out.push_str("[]");
            } else {
                out.push_str("[\n");
                out.push_str(&cells.join(",\n"));
                out.push('\n');
                push_indent(out, depth);
                out.push(']');
            }
        }
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_f64() => write_python_float(out, &n.to_string()),
        // Writing to a String cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_list(out, items.iter(), depth, write_value),
        Value::Object(map) => write_object(out, map, depth),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, depth: usize) {
    let entries = map
        .iter()
        .map(|(key, value)| (key.as_str(), Field::Json(value)))
        .collect();
    write_entries(out, entries, depth);
}

fn write_list<T>(
    out: &mut String,
    items: impl ExactSizeIterator<Item = T>,
    depth: usize,
    write_item: impl Fn(&mut String, T, usize),
) {
    if items.len() == 0 {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('\n');
        push_indent(out, depth + 1);
        write_item(out, item, depth + 1);
    }
    out.push('\n');
    push_indent(out, depth);
    out.push(']');
}

/// A JSON string as Python's `json.dumps(..., ensure_ascii=False)` writes it:
/// `"` and `\` escaped, the short forms `\n \r \t \b \f`, other control
/// characters below U+0020 as `\u00XX` in lowercase hex, everything else raw
/// (including DEL and U+2028, which JavaScript-minded encoders would escape).
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    // Every byte we escape is ASCII, so slicing at it never splits a character.
    for (i, byte) in s.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Rewrite serde_json's float text in the layout of Python's `repr(float)`.
///
/// Both give the shortest digits that read back to the same double, but lay them
/// out differently: serde_json writes `1e-7`, `0.00001` and `1e16` where Python
/// writes `1e-07`, `1e-05` and `1e+16`. Python uses fixed notation when the
/// decimal exponent is in -4..16 (always with a fractional part, `100.0`), and
/// otherwise scientific with a signed exponent of at least two digits.
fn write_python_float(out: &mut String, serde_text: &str) {
    let (negative, unsigned) = match serde_text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, serde_text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()),
        None => (unsigned, Some(0)),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit());
    let Some(exponent) = exponent.filter(|_| all_digits && !int_part.is_empty()) else {
        // Not a form we know how to read; serde_json's text is still valid JSON.
        out.push_str(serde_text);
        return;
    };
    // value = 0.DIGITS × 10^point, with DIGITS free of leading and trailing zeros.
    let raw: String = format!("{int_part}{frac_part}");
    let trimmed = raw.trim_start_matches('0');
    let mut point = int_part.len() as i64 + exponent - (raw.len() - trimmed.len()) as i64;
    let digits = trimmed.trim_end_matches('0');
    if negative {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return;
    }
    let len = digits.len() as i64;
    if (-3..=16).contains(&point) {
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(digits);
        } else if point < len {
            let (whole, frac) = digits.split_at(point as usize);
            let _ = write!(out, "{whole}.{frac}");
        } else {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (point - len) as usize));
            out.push_str(".0");
        }
    } else {
        point -= 1;
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if point < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", point.unsigned_abs());
    }
}

fn push_indent(out: &mut String, depth: usize) {
    out.extend(std::iter::repeat_n(' ', depth));
}
