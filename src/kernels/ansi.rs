//! Removing ANSI escape sequences from text shown in MCP results.
//!
//! Kernels colour tracebacks with ANSI codes and the .ipynb keeps them as
//! Jupyter stores them; an agent reads plain text, so every MCP result
//! strips them with this.

/// `s` without ANSI escape sequences: CSI (`ESC [ … final`), OSC
/// (`ESC ] … BEL` or `ESC ] … ESC \`) and two-character escapes. An
/// unterminated sequence at the end is dropped.
pub fn strip_ansi(s: &str) -> String {
    if !s.contains('\u{1b}') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, then one final byte in @..~.
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(d) = chars.next() {
                    if d == '\u{7}' {
                        break;
                    }
                    if d == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Any other escape is ESC plus one character.
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours_from_an_ipython_traceback_line() {
        assert_eq!(
            strip_ansi("\u{1b}[0;31mValueError\u{1b}[0m: bad \u{1b}[1;32mx\u{1b}[39m"),
            "ValueError: bad x"
        );
    }

    #[test]
    fn strips_osc_hyperlinks_and_short_escapes() {
        assert_eq!(
            strip_ansi("\u{1b}]8;;file:///a.py\u{7}a.py\u{1b}]8;;\u{1b}\\ ok\u{1b}7"),
            "a.py ok"
        );
    }

    #[test]
    fn plain_text_and_truncated_sequences_are_safe() {
        assert_eq!(strip_ansi("plain é"), "plain é");
        assert_eq!(strip_ansi("end \u{1b}[0;3"), "end ");
        assert_eq!(strip_ansi("\u{1b}"), "");
    }
}
