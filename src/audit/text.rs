//! Shared pieces of the audit output: escaping what came from the log,
//! JSON Lines, times and colour (contract §8.10).
//!
//! Everything printed in text form that came from data (client names,
//! paths, sources, summaries) goes through [`escape`], so a line of output
//! is always one line and nothing in the log can move the cursor, recolour
//! the terminal or reorder text with bidi controls. Colour comes only from
//! [`Paint`], which is on only when stdout is a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

/// Whether `c` must not reach a terminal raw: C0, DEL, C1, and the bidi
/// embedding/override/isolate controls (U+202A–202E, U+2066–2069).
fn is_unsafe(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text form: `\n`, `\r`, `\t` and `\u{1b}`-style escapes for unsafe
/// characters; everything else, backslashes included, as it is.
///
/// Backslashes are not doubled so that code reads naturally (`"a\n"` in a
/// Python string stays `"a\n"`); `--json` is the exact form.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One JSON Lines record: compact JSON with C1, DEL and bidi controls (and
/// U+2028/2029, which some JSON Lines readers split on) written as
/// `\uXXXX`. serde_json already escapes C0; the others can only occur
/// inside strings, so escaping them over the whole text is exact.
pub fn json_line(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned());
    let needs = |c: char| is_unsafe(c) || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(needs) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 12);
    for c in text.chars() {
        if needs(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// RFC 3339 UTC with milliseconds, `2026-11-23T20:17:40.123Z`, from Unix
/// milliseconds (the contract's one time format, §3).
pub fn rfc3339_ms(ms: i64) -> String {
    crate::time::rfc3339(ms)
}

/// ANSI colour for text output, on only when stdout is a terminal (and
/// `NO_COLOR` is unset). Only fixed words are coloured; data never chooses
/// a colour, and escaped data cannot carry one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    /// Colour when `stdout` is a terminal and `NO_COLOR` is not set.
    pub fn for_stdout() -> Paint {
        use std::io::IsTerminal;
        Paint {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Versions (yellow).
    pub fn version(&self, s: &str) -> String {
        self.wrap("33", s)
    }

    /// Warnings such as `FORCED over` and `REJECTED` (bold red).
    pub fn alert(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }

    /// Added diff lines (green).
    pub fn added(&self, s: &str) -> String {
        self.wrap("32", s)
    }

    /// Removed diff lines (red).
    pub fn removed(&self, s: &str) -> String {
        self.wrap("31", s)
    }

    /// Secondary text (dim).
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// The lines of `s` as the line diff sees them (`\n`, `\r\n` and a lone
/// `\r` end a line; the last line may lack an ending), each with its
/// ending. Blame line numbers count these.
pub fn lines(s: &str) -> Vec<&str> {
    similar::DiffableStr::tokenize_lines(s)
}

/// A line without its ending.
pub fn strip_eol(line: &str) -> &str {
    line.strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .or_else(|| line.strip_suffix('\r'))
        .unwrap_or(line)
}

/// Hex of a hash (lowercase).
pub fn hex(h: &crate::events::Hash) -> String {
    crate::events::codec::hex(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escape_leaves_plain_text_and_backslashes_alone() {
        assert!(matches!(escape("x = 'a\\n' # ü"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_covers_c0_del_c1_and_bidi() {
        assert_eq!(escape("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(
            escape("\u{0}\u{7f}\u{85}\u{9b}"),
            "\\u{0}\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(
            escape("x\u{202e}y\u{2066}z\u{2069}"),
            "x\\u{202e}y\\u{2066}z\\u{2069}"
        );
        // Neighbours of the bidi ranges are ordinary text.
        assert_eq!(
            escape("\u{2029}\u{202f}\u{2065}"),
            "\u{2029}\u{202f}\u{2065}"
        );
    }

    #[test]
    fn json_line_escapes_c1_bidi_and_line_separators_and_stays_json() {
        let v = json!({"s": "a\u{85}b\u{202e}c\u{2028}d\u{1b}e\u{7f}"});
        let line = json_line(&v);
        assert_eq!(line, r#"{"s":"a\u0085b\u202ec\u2028d\u001be\u007f"}"#);
        assert!(!line.contains('\n'));
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_465_060_123), "2026-11-23T20:17:40.123Z");
        // Leap day, and the day after.
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn lines_match_the_line_diff() {
        assert_eq!(lines("a\nb\r\nc\rd"), vec!["a\n", "b\r\n", "c\r", "d"]);
        assert!(lines("").is_empty());
        assert_eq!(strip_eol("b\r\n"), "b");
        assert_eq!(strip_eol("d"), "d");
    }
}
