//! A run's outputs, accumulated from iopub messages the way Jupyter's
//! output area does it, and kept as nbformat output objects.
//!
//! Pure: no I/O, no clock. Stream text is merged per stream name into the
//! last output, `\b` and `\r` rewrite the current line as JupyterLab's
//! `removeOverwrittenChars` does (so a progress bar of many ticks stays one
//! short line), `clear_output(wait=True)` clears at the next output, and
//! `update_display_data` rewrites the outputs sharing its `display_id`.
//! A run's outputs are capped (8 MiB by default): past the cap a stream
//! keeps its first and last MiB around a marker, later rich outputs are
//! replaced by one note, and the run is marked truncated.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::ipynb::split_lines;

/// How much of a run's outputs is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Total size (bytes of text, base64 included) past which outputs are cut.
    pub cap: usize,
    /// Bytes a capped stream keeps from its start.
    pub keep_head: usize,
    /// Bytes a capped stream keeps from its end.
    pub keep_tail: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            cap: 8 << 20,
            keep_head: 1 << 20,
            keep_tail: 1 << 20,
        }
    }
}

/// One stream's text. Until the cap is hit everything is in `head`; after
/// that `head` is frozen and `tail` grows, trimmed from the front in
/// batches (up to twice `keep_tail`) so a long run of small chunks stays
/// linear.
#[derive(Debug, Clone, Default)]
struct StreamText {
    head: String,
    tail: String,
    dropped: u64,
    capped: bool,
}

#[derive(Debug, Clone)]
enum Slot {
    Stream {
        name: String,
        text: StreamText,
    },
    /// display_data, execute_result or error, already in nbformat form.
    Rich(Value),
    /// Rich outputs dropped past the cap: how many and how large.
    Dropped {
        count: u64,
        bytes: u64,
    },
}

/// The outputs of one run.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    limits: OutputLimits,
    slots: Vec<Slot>,
    /// Bytes of each slot as last measured, so the total stays incremental.
    sizes: Vec<usize>,
    total: usize,
    display_ids: HashMap<String, Vec<usize>>,
    clear_pending: bool,
    truncated: bool,
    /// Bumped on every change; `changed[i]` is the revision slot i last changed at.
    revision: u64,
    changed: Vec<u64>,
    /// The revision of the last clear: every slot changed then.
    cleared_at: u64,
}

impl Outputs {
    /// Empty outputs with the default 8 MiB cap.
    pub fn new() -> Outputs {
        Outputs::with_limits(OutputLimits::default())
    }

    /// Empty outputs with other limits (tests use small ones).
    pub fn with_limits(limits: OutputLimits) -> Outputs {
        Outputs {
            limits,
            ..Outputs::default()
        }
    }

    /// Takes one iopub message of the run (by `msg_type` and `content`).
    /// Returns whether the outputs changed. Messages that are not outputs,
    /// or whose content is malformed, are ignored.
    pub fn apply(&mut self, msg_type: &str, content: &Value) -> bool {
        let Some(content) = content.as_object() else {
            return false;
        };
        match msg_type {
            "stream" => {
                let (Some(name), Some(text)) = (
                    content.get("name").and_then(Value::as_str),
                    content.get("text").and_then(Value::as_str),
                ) else {
                    return false;
                };
                self.stream(name, text);
                true
            }
            "display_data" | "execute_result" => {
                let Some(data) = content.get("data").and_then(Value::as_object) else {
                    return false;
                };
                let mut out = Map::new();
                out.insert("data".into(), Value::Object(file_bundle(data)));
                if msg_type == "execute_result" {
                    let count = content.get("execution_count").cloned();
                    out.insert("execution_count".into(), count.unwrap_or(Value::Null));
                }
                out.insert("metadata".into(), metadata_of(content));
                out.insert("output_type".into(), msg_type.into());
                let display_id = transient_display_id(content);
                self.rich(Value::Object(out), display_id);
                true
            }
            "error" => {
                let text = |k: &str| content.get(k).and_then(Value::as_str).unwrap_or("");
                let traceback: Vec<Value> = content
                    .get("traceback")
                    .and_then(Value::as_array)
                    .map(|lines| {
                        lines
                            .iter()
                            .filter_map(Value::as_str)
                            .map(Value::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let mut out = Map::new();
                out.insert("ename".into(), text("ename").into());
                out.insert("evalue".into(), text("evalue").into());
                out.insert("output_type".into(), "error".into());
                out.insert("traceback".into(), Value::Array(traceback));
                // An error is what the reader most needs, so it passes the
                // cap; its size is bounded by clipping each string instead.
                self.push_error(clip_error(Value::Object(out), self.limits.keep_tail));
                true
            }
            "clear_output" => {
                let wait = content
                    .get("wait")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if wait {
                    self.clear_pending = true;
                    false
                } else {
                    self.clear_now()
                }
            }
            "update_display_data" => {
                let (Some(id), Some(data)) = (
                    transient_display_id(content),
                    content.get("data").and_then(Value::as_object),
                ) else {
                    return false;
                };
                self.update_display(&id, file_bundle(data), metadata_of(content))
            }
            _ => false,
        }
    }

    /// The outputs as nbformat output objects, multi-line strings split as
    /// Jupyter writes them in the file.
    pub fn to_nbformat(&self) -> Vec<Value> {
        (0..self.slots.len()).map(|i| self.render(i)).collect()
    }

    /// One output by index, in nbformat form.
    pub fn render(&self, index: usize) -> Value {
        match self.slots.get(index) {
            Some(Slot::Stream { name, text }) => {
                let mut out = Map::new();
                out.insert("name".into(), name.as_str().into());
                out.insert("output_type".into(), "stream".into());
                out.insert("text".into(), lines_value(&text.render(&self.limits)));
                Value::Object(out)
            }
            Some(Slot::Rich(v)) => v.clone(),
            Some(Slot::Dropped { count, bytes }) => {
                let note = format!(
                    "[nbledger: {count} output(s) of {bytes} bytes dropped: this run's outputs passed the {} byte cap]",
                    self.limits.cap
                );
                let mut data = Map::new();
                data.insert("text/plain".into(), lines_value(&note));
                let mut out = Map::new();
                out.insert("data".into(), Value::Object(data));
                out.insert("metadata".into(), Value::Object(Map::new()));
                out.insert("output_type".into(), "display_data".into());
                Value::Object(out)
            }
            None => Value::Null,
        }
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether anything was cut by the cap.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes the outputs hold now (text and base64, without JSON framing).
    pub fn size(&self) -> usize {
        self.total
    }

    /// A counter that grows with every change (a mark for `changed_since`).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Indices of outputs changed after `revision` (all of them after a clear).
    pub fn changed_since(&self, revision: u64) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.cleared_at > revision || self.changed[i] > revision)
            .collect()
    }

    fn bump(&mut self, index: usize) {
        self.revision += 1;
        self.changed[index] = self.revision;
        let size = slot_size(&self.slots[index], &self.limits);
        self.total = self.total - self.sizes[index] + size;
        self.sizes[index] = size;
    }

    fn push(&mut self, slot: Slot) -> usize {
        self.slots.push(slot);
        self.sizes.push(0);
        self.changed.push(0);
        let index = self.slots.len() - 1;
        self.bump(index);
        index
    }

    /// A pending `clear_output(wait=True)` takes effect now, before a new output.
    fn take_pending_clear(&mut self) {
        if std::mem::take(&mut self.clear_pending) {
            self.clear_now();
        }
    }

    fn clear_now(&mut self) -> bool {
        self.clear_pending = false;
        let had = !self.slots.is_empty();
        self.slots.clear();
        self.sizes.clear();
        self.changed.clear();
        self.display_ids.clear();
        self.total = 0;
        self.revision += 1;
        self.cleared_at = self.revision;
        had
    }

    fn stream(&mut self, name: &str, chunk: &str) {
        self.take_pending_clear();
        let index = match self.slots.last() {
            Some(Slot::Stream { name: last, .. }) if last == name => self.slots.len() - 1,
            _ => self.push(Slot::Stream {
                name: name.to_owned(),
                text: StreamText::default(),
            }),
        };
        let limits = self.limits;
        let others = self.total - self.sizes[index];
        if let Slot::Stream { text, .. } = &mut self.slots[index] {
            text.append(chunk, &limits);
            // Capped after appending, so a first chunk larger than the cap
            // still fills the head.
            if !text.capped && others + text.head.len() > limits.cap {
                text.cap(&limits);
                self.truncated = true;
            }
        }
        self.bump(index);
    }

    fn rich(&mut self, output: Value, display_id: Option<String>) {
        self.take_pending_clear();
        let size = value_size(&output);
        if self.total + size > self.limits.cap {
            self.truncated = true;
            match self.slots.last_mut() {
                Some(Slot::Dropped { count, bytes }) => {
                    *count += 1;
                    *bytes += size as u64;
                    let last = self.slots.len() - 1;
                    self.bump(last);
                }
                _ => {
                    self.push(Slot::Dropped {
                        count: 1,
                        bytes: size as u64,
                    });
                }
            }
            return;
        }
        let index = self.push(Slot::Rich(output));
        if let Some(id) = display_id {
            self.display_ids.entry(id).or_default().push(index);
        }
    }

    fn push_error(&mut self, output: Value) {
        self.take_pending_clear();
        self.push(Slot::Rich(output));
    }

    fn update_display(&mut self, id: &str, data: Map<String, Value>, metadata: Value) -> bool {
        let Some(indices) = self.display_ids.get(id).cloned() else {
            return false;
        };
        let new_size = value_size(&Value::Object(data.clone())) + value_size(&metadata);
        let mut changed = false;
        for index in indices {
            let Some(Slot::Rich(Value::Object(out))) = self.slots.get_mut(index) else {
                continue;
            };
            let old_size = self.sizes[index];
            if self.total - old_size + new_size > self.limits.cap {
                // Keeping the old display is better than growing past the cap.
                self.truncated = true;
                continue;
            }
            out.insert("data".into(), Value::Object(data.clone()));
            out.insert("metadata".into(), metadata.clone());
            self.bump(index);
            changed = true;
        }
        changed
    }
}

impl StreamText {
    /// The text that is being appended to: `tail` once capped.
    fn live(&mut self) -> &mut String {
        if self.capped {
            &mut self.tail
        } else {
            &mut self.head
        }
    }

    fn cap(&mut self, limits: &OutputLimits) {
        self.capped = true;
        let cut = floor_char_boundary(&self.head, limits.keep_head);
        self.tail = self.head.split_off(cut);
        self.trim_tail(limits.keep_tail);
    }

    fn append(&mut self, chunk: &str, limits: &OutputLimits) {
        let live = self.live();
        let line_start = live.rfind('\n').map_or(0, |i| i + 1);
        let rewrites = chunk.contains(['\r', '\x08']) || live[line_start..].ends_with('\r');
        if rewrites {
            // Only the current line can be rewritten: `\b` stops at a
            // newline and `\r` returns to the start of its own line.
            let mut line = live.split_off(line_start);
            line.push_str(chunk);
            live.push_str(&remove_overwritten(&line));
        } else {
            live.push_str(chunk);
        }
        if self.capped && self.tail.len() > 2 * limits.keep_tail {
            self.trim_tail(limits.keep_tail);
        }
    }

    fn trim_tail(&mut self, keep: usize) {
        if self.tail.len() > keep {
            let cut = ceil_char_boundary(&self.tail, self.tail.len() - keep);
            self.dropped += cut as u64;
            self.tail.drain(..cut);
        }
    }

    fn render(&self, limits: &OutputLimits) -> String {
        if !self.capped {
            return self.head.clone();
        }
        let start =
            ceil_char_boundary(&self.tail, self.tail.len().saturating_sub(limits.keep_tail));
        let dropped = self.dropped + start as u64;
        let mut s = String::with_capacity(self.head.len() + self.tail.len() - start + 120);
        s.push_str(&self.head);
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&format!(
            "[nbledger: {dropped} bytes of output dropped here: this run's outputs passed the {} byte cap]\n",
            limits.cap
        ));
        s.push_str(&self.tail[start..]);
        s
    }
}

/// JupyterLab's `removeOverwrittenChars`: each `\b` deletes the character
/// before it (never a newline), then `\r` followed by more text on the same
/// line overwrites that line from its start, keeping what the new text does
/// not cover. `\r\n` is a newline, and a `\r` ending the text stays until
/// more text arrives.
pub fn remove_overwritten(text: &str) -> String {
    let mut kept: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        match (c, kept.last()) {
            ('\x08', Some(&prev)) if prev != '\n' => {
                kept.pop();
            }
            _ => kept.push(c),
        }
    }
    let mut out = String::with_capacity(kept.len());
    let mut lines = kept.split(|&c| c == '\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let mut end = line.len();
        if !last {
            while end > 0 && line[end - 1] == '\r' {
                end -= 1;
            }
        }
        let line = &line[..end];
        // A trailing run of `\r` with nothing after it is kept as is.
        let body_end = line.iter().rposition(|&c| c != '\r').map_or(0, |i| i + 1);
        let mut current: Vec<char> = Vec::new();
        for segment in line[..body_end].split(|&c| c == '\r') {
            if segment.is_empty() {
                continue;
            }
            if segment.len() >= current.len() {
                current = segment.to_vec();
            } else {
                current.splice(..segment.len(), segment.iter().copied());
            }
        }
        out.extend(current);
        out.extend(&line[body_end..]);
        if !last {
            out.push('\n');
        }
    }
    out
}

fn lines_value(s: &str) -> Value {
    Value::Array(split_lines(s).into_iter().map(Value::from).collect())
}

/// A mime bundle as nbformat writes it: text-like values split into lines.
fn file_bundle(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .map(|(mime, value)| {
            let split = mime.starts_with("text/")
                || mime == "application/javascript"
                || mime == "image/svg+xml";
            let value = match value {
                Value::String(s) if split => lines_value(s),
                other => other.clone(),
            };
            (mime.clone(), value)
        })
        .collect()
}

fn metadata_of(content: &Map<String, Value>) -> Value {
    match content.get("metadata") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    }
}

fn transient_display_id(content: &Map<String, Value>) -> Option<String> {
    let id = content.get("transient")?.get("display_id")?;
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn clip_error(mut error: Value, limit: usize) -> Value {
    fn clip(v: &mut Value, limit: usize) {
        match v {
            Value::String(s) if s.len() > limit => {
                let cut = floor_char_boundary(s, limit);
                s.truncate(cut);
                s.push_str("…[clipped]");
            }
            Value::Array(items) => items.iter_mut().for_each(|i| clip(i, limit)),
            Value::Object(map) => map.values_mut().for_each(|i| clip(i, limit)),
            _ => {}
        }
    }
    clip(&mut error, limit / 16);
    error
}

fn slot_size(slot: &Slot, limits: &OutputLimits) -> usize {
    match slot {
        Slot::Stream { text, .. } if !text.capped => text.head.len(),
        Slot::Stream { text, .. } => text.head.len() + text.tail.len().min(limits.keep_tail) + 120,
        Slot::Rich(v) => value_size(v),
        Slot::Dropped { .. } => 120,
    }
}

/// Bytes of strings (keys included) in a JSON value; numbers count 8.
fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
        _ => 8,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod tests;
