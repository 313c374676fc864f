//! jupyter_ydoc's notebook schema on a `yrs` document, both ways.
//!
//! `cells` is a Y.Array of Y.Maps (`id`, `cell_type`, `source` as Y.Text,
//! `metadata` as a Y.Map, `outputs` as a Y.Array of Y.Maps with a stream's
//! `text` as Y.Text, `execution_count`, `attachments`); `meta` holds
//! `nbformat`, `nbformat_minor` and `metadata`. Cells are compared as
//! normalised JSON (Jupyter joins line lists and reads Yjs numbers as
//! floats), so a layout difference is never taken for an edit.

use serde_json::{Map as JsonMap, Value};
use yrs::types::ToJson;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, Doc, GetString, In, Map, MapPrelim, MapRef, OffsetKind,
    Options, Out, ReadTxn, Text, TextPrelim, TransactionMut,
};

use crate::events::{Cell, Header};
use crate::notebook;

/// The origin every transaction nbledger makes carries, so that the
/// room's echo of it is never taken for a person's edit.
pub const ORIGIN: &str = "nbledger";

/// A document with JavaScript's text offsets (UTF-16), as Yjs peers use.
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// One cell of the room, as normalised JSON plus its id.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCell {
    pub id: String,
    pub json: Value,
}

impl RoomCell {
    pub fn source(&self) -> &str {
        self.json["source"].as_str().unwrap_or("")
    }
}

/// The room's cells in order (cells without an id are skipped: jupyter_ydoc
/// always gives one).
pub fn read_cells<T: ReadTxn>(txn: &T, cells: &ArrayRef) -> Vec<RoomCell> {
    let mut out = Vec::with_capacity(cells.len(txn) as usize);
    for v in cells.iter(txn) {
        let Out::YMap(m) = v else { continue };
        let mut json = any_to_json(&m.to_json(txn));
        let Some(obj) = json.as_object_mut() else {
            continue;
        };
        obj.remove("execution_state");
        // Transient: Jupyter's trust mark, never saved (nbformat's
        // `strip_transient`).
        if let Some(Value::Object(md)) = obj.get_mut("metadata") {
            md.remove("trusted");
        }
        let Some(id) = obj.get("id").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        normalise(&mut json);
        out.push(RoomCell { id, json });
    }
    out
}

/// The id of the cell whose source a Yjs relative position points into
/// (JupyterLab's awareness `cursors[].anchor`, the JSON of a
/// `Y.RelativePosition`).
pub fn cell_at<T: ReadTxn>(txn: &T, cells: &ArrayRef, position: &Value) -> Option<String> {
    let sticky: yrs::StickyIndex = serde_json::from_value(position.clone()).ok()?;
    let target = sticky.get_offset(txn)?.branch.id();
    cells.iter(txn).find_map(|v| {
        let Out::YMap(m) = v else { return None };
        let Some(Out::YText(t)) = m.get(txn, "source") else {
            return None;
        };
        if <yrs::TextRef as AsRef<yrs::branch::Branch>>::as_ref(&t).id() != target {
            return None;
        }
        match m.get(txn, "id") {
            Some(Out::Any(Any::String(id))) => Some(id.to_string()),
            _ => None,
        }
    })
}

/// The room's notebook metadata (`meta.metadata`), if set.
pub fn read_metadata<T: ReadTxn>(txn: &T, meta: &MapRef) -> Option<Value> {
    match meta.get(txn, "metadata")? {
        Out::YMap(m) => Some(any_to_json(&m.to_json(txn))),
        Out::Any(a) => Some(any_to_json(&a)),
        _ => None,
    }
}

/// A log cell in the room's normalised form.
pub fn normal_of(cell: &Cell) -> Value {
    let raw = notebook::raw_of(cell);
    let mut m = JsonMap::new();
    m.insert("id".into(), Value::String(cell.id.clone()));
    m.insert("cell_type".into(), Value::String(raw.cell_type.clone()));
    m.insert("source".into(), Value::String(raw.source.clone()));
    m.insert("metadata".into(), Value::Object(raw.metadata.clone()));
    if let Some(o) = raw.outputs {
        m.insert("outputs".into(), Value::Array(o));
    }
    if let Some(e) = raw.execution_count {
        m.insert("execution_count".into(), e);
    }
    if let Some(a) = raw.attachments {
        m.insert("attachments".into(), a);
    }
    let mut v = Value::Object(m);
    normalise(&mut v);
    v
}

/// `base` with the fields in which `room` differs taken from the room:
/// what the log records for a person's edit (unchanged fields keep their
/// exact text).
pub fn cell_from_room(base: Option<&Cell>, room: &RoomCell) -> Cell {
    let j = &room.json;
    let text = |k: &str| j.get(k).map(notebook::json_text);
    let mut cell = base.cloned().unwrap_or_else(|| {
        let ty = crate::events::CellType::from_file(j["cell_type"].as_str().unwrap_or("code"));
        Cell::new(room.id.clone(), ty, String::new(), None)
    });
    let normal = normal_of(&cell);
    let differs = |k: &str| normal.get(k) != j.get(k);
    if differs("cell_type") {
        cell.cell_type =
            crate::events::CellType::from_file(j["cell_type"].as_str().unwrap_or("code"));
    }
    if differs("source") {
        cell.source = room.source().to_owned();
    }
    if differs("metadata") {
        cell.metadata = text("metadata").unwrap_or_else(|| "{}".into());
    }
    if differs("outputs") {
        cell.outputs = text("outputs");
    }
    if differs("execution_count") {
        cell.execution_count = text("execution_count");
    }
    if differs("attachments") {
        cell.attachments = text("attachments");
    }
    cell
}

/// Turns Jupyter's line lists into strings and integral floats into
/// integers, as jupyter_ydoc does when it reads a document.
fn normalise(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && !n.is_i64()
                && !n.is_u64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let joinable = matches!(k.as_str(), "source" | "text")
                    || k.contains('/') && x.as_array().is_some();
                if joinable
                    && let Value::Array(lines) = x
                    && lines.iter().all(Value::is_string)
                {
                    *x = Value::String(lines.iter().filter_map(Value::as_str).collect());
                } else {
                    normalise(x);
                }
            }
        }
        _ => {}
    }
}

fn any_to_json(a: &Any) -> Value {
    let mut s = String::new();
    a.to_json(&mut s);
    serde_json::from_str(&s).unwrap_or(Value::Null)
}

fn json_to_any(v: &Value) -> Any {
    Any::from_json(&v.to_string()).unwrap_or(Any::Null)
}

fn map_prelim(obj: &JsonMap<String, Value>) -> MapPrelim {
    obj.iter()
        .map(|(k, v)| (k.as_str(), In::Any(json_to_any(v))))
        .collect()
}

fn outputs_prelim(outputs: &[Value]) -> ArrayPrelim {
    outputs
        .iter()
        .map(|o| {
            let obj = o.as_object().cloned().unwrap_or_default();
            let m: MapPrelim = obj
                .iter()
                .map(|(k, v)| {
                    let is_stream = o["output_type"] == "stream";
                    let value = match (k.as_str(), v) {
                        ("text", Value::String(s)) if is_stream => In::from(TextPrelim::new(s)),
                        _ => In::Any(json_to_any(v)),
                    };
                    (k.as_str(), value)
                })
                .collect();
            In::from(m)
        })
        .collect()
}

/// A new Y.Map for `cell`, as jupyter_ydoc's `create_ycell` makes it.
pub fn cell_prelim(cell: &Cell) -> MapPrelim {
    let n = normal_of(cell);
    let mut fields: Vec<(&str, In)> = vec![
        ("id", In::Any(Any::from(cell.id.clone()))),
        ("cell_type", In::Any(Any::from(cell.cell_type.as_str()))),
        (
            "source",
            In::from(TextPrelim::new(n["source"].as_str().unwrap_or(""))),
        ),
        (
            "metadata",
            In::from(map_prelim(
                n["metadata"].as_object().unwrap_or(&JsonMap::new()),
            )),
        ),
    ];
    if let Some(Value::Array(o)) = n.get("outputs") {
        fields.push(("outputs", In::from(outputs_prelim(o))));
    }
    if let Some(e) = n.get("execution_count") {
        fields.push(("execution_count", In::Any(json_to_any(e))));
    }
    if cell.cell_type == crate::events::CellType::Code {
        fields.push(("execution_state", In::Any(Any::from("idle"))));
    }
    if let Some(a) = n.get("attachments") {
        fields.push(("attachments", In::Any(json_to_any(a))));
    }
    fields.into_iter().collect()
}

/// Makes the room's cell at `index` (now `room`) hold `cell`: the source
/// by its smallest text edit, other fields replaced when they differ, the
/// whole cell replaced when its type changed.
pub fn update_cell(
    txn: &mut TransactionMut,
    cells: &ArrayRef,
    index: u32,
    room: &RoomCell,
    cell: &Cell,
) {
    let want = normal_of(cell);
    if want["cell_type"] != room.json["cell_type"] {
        cells.remove(txn, index);
        cells.insert(txn, index, cell_prelim(cell));
        return;
    }
    let Some(Out::YMap(m)) = cells.get(txn, index) else {
        return;
    };
    if want["source"] != room.json["source"] {
        match m.get(txn, "source") {
            Some(Out::YText(t)) => smallest_edit(
                txn,
                &t,
                room.source(),
                want["source"].as_str().unwrap_or(""),
            ),
            _ => {
                m.insert(
                    txn,
                    "source",
                    TextPrelim::new(want["source"].as_str().unwrap_or("")),
                );
            }
        }
    }
    for key in ["metadata", "outputs", "execution_count", "attachments"] {
        if want.get(key) == room.json.get(key) {
            continue;
        }
        match (key, want.get(key)) {
            (_, None) => {
                m.remove(txn, key);
            }
            ("metadata", Some(Value::Object(o))) => {
                m.insert(txn, key, map_prelim(o));
            }
            ("outputs", Some(Value::Array(o))) => {
                m.insert(txn, key, outputs_prelim(o));
            }
            (_, Some(v)) => {
                m.insert(txn, key, json_to_any(v));
            }
        }
    }
}

/// Replaces `old` by `new` in `text` with one deletion and one insertion
/// between their common prefix and suffix (UTF-16 offsets).
pub fn smallest_edit(txn: &mut TransactionMut, text: &yrs::TextRef, old: &str, new: &str) {
    if text.get_string(txn) != old {
        // The room moved on since it was read: replace the whole text.
        let len = text.len(txn);
        text.remove_range(txn, 0, len);
        text.insert(txn, 0, new);
        return;
    }
    let prefix: usize = old
        .chars()
        .zip(new.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let (o, n) = (&old[prefix..], &new[prefix..]);
    let suffix: usize = o
        .chars()
        .rev()
        .zip(n.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>()
        .min(o.len())
        .min(n.len());
    let start = old[..prefix].encode_utf16().count() as u32;
    let removed = o[..o.len() - suffix].encode_utf16().count() as u32;
    let inserted = &n[..n.len() - suffix];
    if removed > 0 {
        text.remove_range(txn, start, removed);
    }
    if !inserted.is_empty() {
        text.insert(txn, start, inserted);
    }
}

/// Sets the room's notebook metadata and format to `header`'s.
pub fn set_header(txn: &mut TransactionMut, meta: &MapRef, header: &Header) {
    let md: JsonMap<String, Value> = serde_json::from_str(&header.metadata).unwrap_or_default();
    meta.insert(txn, "metadata", map_prelim(&md));
    meta.insert(txn, "nbformat", Any::from(header.nbformat as f64));
    meta.insert(
        txn,
        "nbformat_minor",
        Any::from(header.nbformat_minor as f64),
    );
}

/// The header `base` with the room's notebook metadata.
pub fn header_with(base: &Header, metadata: &Value) -> Header {
    let mut h = base.clone();
    if let Value::Object(m) = metadata {
        h.metadata = notebook::object_text(m);
    }
    h
}

/// Whether the log's header and the room's metadata agree.
pub fn same_metadata(header: &Header, room: Option<&Value>) -> bool {
    let Some(room) = room else { return true };
    let mut ours: Value = serde_json::from_str(&header.metadata).unwrap_or(Value::Null);
    let mut theirs = room.clone();
    normalise(&mut ours);
    normalise(&mut theirs);
    ours == theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CellType;
    use yrs::{TextRef, Transact};

    fn code(id: &str, source: &str) -> Cell {
        let mut c = Cell::new(id.into(), CellType::Code, source.into(), None);
        c.metadata = r#"{"tags":["a"],"n":1}"#.into();
        c.outputs =
            Some(r#"[{"name":"stdout","output_type":"stream","text":["one\n","two"]}]"#.into());
        c.execution_count = Some("3".into());
        c
    }

    #[test]
    fn a_cell_written_into_the_room_reads_back_as_the_same_normal_form() {
        let doc = new_doc();
        let cells = doc.get_or_insert_array("cells");
        let cell = code("c1", "x = 1\ny = 2");
        {
            let mut txn = doc.transact_mut_with(ORIGIN);
            cells.insert(&mut txn, 0, cell_prelim(&cell));
        }
        let read = read_cells(&doc.transact(), &cells);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].json, normal_of(&cell));
        assert_eq!(read[0].json["outputs"][0]["text"], "one\ntwo");
        // Nothing differs, so the log keeps its exact texts.
        assert_eq!(cell_from_room(Some(&cell), &read[0]), cell);
    }

    #[test]
    fn a_source_change_is_one_small_edit_in_utf16_offsets() {
        let doc = new_doc();
        let text: TextRef = doc.get_or_insert_text("t");
        let old = "a = '😀' # é then more";
        let new = "a = '😀' # üü then more";
        {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, old);
        }
        let update = {
            let mut txn = doc.transact_mut_with(ORIGIN);
            smallest_edit(&mut txn, &text, old, new);
            txn.encode_update_v1()
        };
        assert_eq!(text.get_string(&doc.transact()), new);
        // One deletion and one insertion between prefix and suffix, not the
        // whole text again.
        let whole = {
            let d = new_doc();
            let t = d.get_or_insert_text("t");
            let mut txn = d.transact_mut();
            t.insert(&mut txn, 0, new);
            txn.encode_update_v1().len()
        };
        assert!(
            update.len() < whole + 20,
            "{} bytes vs {whole}",
            update.len()
        );
        assert!(!String::from_utf8_lossy(&update).contains("then more"));
    }

    #[test]
    fn a_persons_field_change_replaces_that_field_only() {
        let cell = code("c1", "x");
        let mut json = normal_of(&cell);
        json["source"] = Value::String("x + 1".into());
        let room = RoomCell {
            id: "c1".into(),
            json,
        };
        let took = cell_from_room(Some(&cell), &room);
        assert_eq!(took.source, "x + 1");
        assert_eq!(took.metadata, cell.metadata);
        assert_eq!(took.outputs, cell.outputs);
    }
}
