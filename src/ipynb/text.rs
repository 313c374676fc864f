//! Line splitting and joining as Jupyter does it.

use serde_json::Value;

/// Python's `str.splitlines(keepends=True)`, which nbformat uses to split `source`.
///
/// Python breaks lines at more than `\n`: `\r\n`, `\r`, `\x0b`, `\x0c`, `\x1c`,
/// `\x1d`, `\x1e`, `\x85`, `\u2028` and `\u2029` all end a line, and we must split
/// at the same places or our files would differ from Jupyter's. An empty string
/// gives no lines, and a trailing line break gives no trailing empty line.
pub fn split_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' => {
                if chars.next_if(|&(_, next)| next == '\n').is_some() {
                    i + 2
                } else {
                    i + 1
                }
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..end]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Join a JSON multi-line string value (nbformat's `multiline_string`): a string
/// stays as it is, a list of strings is concatenated; anything else is `None`.
pub fn join_multiline(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().try_fold(String::new(), |mut joined, item| {
            joined.push_str(item.as_str()?);
            Some(joined)
        }),
        _ => None,
    }
}

/// Whether `id` is a valid cell id: `^[A-Za-z0-9_-]{1,64}$`.
pub fn valid_cell_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
