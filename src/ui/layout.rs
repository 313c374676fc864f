//! The page shell, styles, the one small script, and the helpers every
//! page uses to show data from the log safely.
//!
//! maud escapes every interpolated string for HTML. On top of that,
//! [`visible`] turns the characters that could hide or reorder text (C0
//! but newline and tab, DEL, C1, the bidi controls of §8.10) into visible
//! `\u{…}` marks, so a page shows what the log holds, not what it draws.

use std::borrow::Cow;
use std::fmt::Write as _;

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Scripts only from this server, styles from it (and inline style
/// attributes for client colours), images only as data URIs, frames only
/// as sandboxed `srcdoc` documents (which inherit this policy).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src data:; frame-src 'self'; child-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

pub const CSS: &str = include_str!("ui.css");
pub const JS: &str = include_str!("ui.js");

fn is_hiding(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control and bidi characters shown as `\u{…}`; newlines and
/// tabs stay.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hiding) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hiding(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A stable colour for a client name: its hue from the name's hash, so a
/// client keeps its colour on every page and in every log.
pub fn client_colour(name: &str) -> String {
    let h = blake3::hash(name.as_bytes());
    let hue = u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % 360;
    format!("hsl({hue}, 65%, 45%)")
}

/// The lighter tint of [`client_colour`] used behind blamed lines.
pub fn client_tint(name: &str) -> String {
    let h = blake3::hash(name.as_bytes());
    let hue = u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % 360;
    format!("hsl({hue}, 70%, 92%)")
}

/// A client's name with its colour swatch.
pub fn client(name: &str) -> Markup {
    html! {
        span.client {
            span.swatch style={ "background:" (client_colour(name)) } {}
            (visible(name))
        }
    }
}

/// `2026-11-23T20:17:40.123Z`.
pub fn time(ms: i64) -> String {
    crate::time::rfc3339(ms)
}

/// A whole page: the navigation, the title and `body`.
pub fn shell(title: &str, head_version: u64, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (visible(title)) " — nbledger" }
                link rel="stylesheet" href="/ui.css";
                script src="/ui.js" defer {}
            }
            body {
                nav.top {
                    a.brand href="/" { "nbledger" }
                    a href="/" { "timeline" }
                    a href="/activity" { "activity" }
                    span.head { "log head: v" (head_version) }
                    a.reload href="/reload" title="take a newer copy of the log" { "reload" }
                }
                main { (body) }
            }
        }
    }
}

/// An error page (no log needed).
pub fn error_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (visible(title)) " — nbledger" }
                link rel="stylesheet" href="/ui.css";
            }
            body {
                nav.top { a.brand href="/" { "nbledger" } a href="/" { "timeline" } }
                main {
                    h1 { (visible(title)) }
                    p.error { (visible(message)) }
                }
            }
        }
    }
}

/// Already escaped HTML (sanitised Markdown, highlighted code).
pub fn raw(s: String) -> Markup {
    PreEscaped(s)
}
