//! Cells and outputs as JupyterLab shows them, made safe for a page.
//!
//! - Markdown: pulldown-cmark, then ammonia (no scripts, no event
//!   handlers, no `javascript:` links, no raw frames).
//! - Code: syntect's bundled syntaxes, classed spans (colours in
//!   `ui.css`); a cell over [`HIGHLIGHT_LIMIT`] is shown plain.
//! - Outputs: stream, text and error text with ANSI sequences removed;
//!   PNG/JPEG as data URIs (only if their payload is base64); SVG only as
//!   an `<img>` data URI (an image cannot run its scripts); HTML only in
//!   an `<iframe sandbox srcdoc>` with no permissions at all.

use std::sync::OnceLock;

use maud::{Markup, html};
use serde_json::Value;
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

use super::layout::{raw, visible};
use crate::kernels::strip_ansi;

/// Larger sources are not highlighted (regex highlighting is per line and
/// would slow a page down for no reading gain).
const HIGHLIGHT_LIMIT: usize = 64 * 1024;
/// Text outputs longer than this are cut, with a note.
const TEXT_LIMIT: usize = 256 * 1024;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// A notebook's language, from `language_info.name` or
/// `kernelspec.language` in its metadata (`python` when unsaid).
pub fn language(metadata_json: &str) -> String {
    let v: Value = serde_json::from_str(metadata_json).unwrap_or(Value::Null);
    v.pointer("/language_info/name")
        .or_else(|| v.pointer("/kernelspec/language"))
        .and_then(Value::as_str)
        .unwrap_or("python")
        .to_ascii_lowercase()
}

/// Highlighted code as HTML (escaped by syntect), or plain escaped text.
pub fn code(source: &str, lang: &str) -> Markup {
    let shown = visible(source);
    let set = syntaxes();
    let syntax = set
        .find_syntax_by_token(lang)
        .or_else(|| set.find_syntax_by_name(lang));
    if let Some(syntax) = syntax
        && shown.len() <= HIGHLIGHT_LIMIT
    {
        let mut g = ClassedHTMLGenerator::new_with_class_style(
            syntax,
            set,
            ClassStyle::SpacedPrefixed { prefix: "hl-" },
        );
        let mut ok = true;
        for line in LinesWithEndings::from(&shown) {
            if g.parse_html_for_line_which_includes_newline(line).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            return html! { pre.code { (raw(g.finalize())) } };
        }
    }
    html! { pre.code { (shown) } }
}

/// Markdown rendered and sanitised.
pub fn markdown(source: &str) -> Markup {
    let shown = visible(source);
    let parser = pulldown_cmark::Parser::new_ext(
        &shown,
        pulldown_cmark::Options::ENABLE_TABLES
            | pulldown_cmark::Options::ENABLE_STRIKETHROUGH
            | pulldown_cmark::Options::ENABLE_TASKLISTS,
    );
    let mut out = String::with_capacity(shown.len() * 2);
    pulldown_cmark::html::push_html(&mut out, parser);
    html! { div.md { (raw(ammonia::clean(&out))) } }
}

/// A multiline nbformat string (a string or a list of strings) as one.
pub fn joined(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn text_block(text: &str, class: &str) -> Markup {
    let clean = strip_ansi(text);
    let (shown, cut) = if clean.len() > TEXT_LIMIT {
        let mut end = TEXT_LIMIT;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        (&clean[..end], clean.len() - end)
    } else {
        (clean.as_str(), 0)
    };
    html! {
        pre class=(class) { (visible(shown)) }
        @if cut > 0 { p.muted { "(" (cut) " more bytes not shown)" } }
    }
}

/// Only base64 characters: safe inside a data URI, whatever it decodes to.
fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One MIME bundle, the richest kind this page can show safely.
fn bundle(data: &Value) -> Markup {
    let get = |k: &str| data.get(k).map(joined);
    for kind in ["image/png", "image/jpeg", "image/gif"] {
        if let Some(b64) = get(kind) {
            let b64: String = b64.split_whitespace().collect();
            if is_base64(&b64) {
                return html! { img alt="output image" src={ "data:" (kind) ";base64," (b64) }; };
            }
        }
    }
    if let Some(svg) = get("image/svg+xml") {
        return html! {
            img alt="output image (SVG)" src={ "data:image/svg+xml;base64," (base64(svg.as_bytes())) };
        };
    }
    if let Some(doc) = get("text/html") {
        // No allow-* at all: no scripts, no same origin, no forms, no
        // navigation of this page.
        return html! {
            iframe.html-output sandbox="" referrerpolicy="no-referrer" title="HTML output (sandboxed)" srcdoc=(doc) {}
        };
    }
    if let Some(md) = get("text/markdown") {
        return markdown(&md);
    }
    if let Some(latex) = get("text/latex") {
        return text_block(&latex, "latex");
    }
    if let Some(json) = data.get("application/json") {
        return text_block(
            &serde_json::to_string_pretty(json).unwrap_or_default(),
            "json",
        );
    }
    if let Some(text) = get("text/plain") {
        return text_block(&text, "plain");
    }
    let kinds: Vec<&str> = data
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    html! { p.muted { "(an output of type " (visible(&kinds.join(", "))) " that this page does not show)" } }
}

/// One nbformat output.
pub fn output(o: &Value) -> Markup {
    match o.get("output_type").and_then(Value::as_str).unwrap_or("") {
        "stream" => {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("stdout");
            let class = if name == "stderr" { "stderr" } else { "stdout" };
            text_block(&joined(o.get("text").unwrap_or(&Value::Null)), class)
        }
        "error" => {
            let tb: Vec<String> = o
                .get("traceback")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let text = if tb.is_empty() {
                format!(
                    "{}: {}",
                    o.get("ename").and_then(Value::as_str).unwrap_or("Error"),
                    o.get("evalue").and_then(Value::as_str).unwrap_or("")
                )
            } else {
                tb.join("\n")
            };
            text_block(&text, "error")
        }
        "execute_result" | "display_data" => bundle(o.get("data").unwrap_or(&Value::Null)),
        other => html! { p.muted { "(output type " (visible(other)) ")" } },
    }
}

/// An outputs array (JSON text) with the prompt of each.
pub fn outputs(json: &str, execution_count: Option<&str>) -> Markup {
    let list: Vec<Value> = serde_json::from_str(json).unwrap_or_default();
    let count = execution_count.filter(|c| *c != "null").unwrap_or(" ");
    html! {
        @for (i, o) in list.iter().enumerate() {
            div.prompt.out {
                @if i == 0 && o.get("output_type").and_then(Value::as_str) == Some("execute_result") {
                    "Out[" (visible(count)) "]:"
                }
            }
            div.output { (output(o)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"<svg/>"), "PHN2Zy8+");
    }

    #[test]
    fn markdown_loses_scripts_and_handlers() {
        let html = markdown(
            "# T\n<script>window.pwned=1</script><img src=x onerror=alert(1)>\n\n[a](javascript:alert(1))",
        )
        .into_string();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(
            html.contains("<a rel=\"noopener noreferrer\">a</a>"),
            "{html}"
        );
        assert!(html.contains("<h1>T</h1>"), "{html}");
    }

    #[test]
    fn code_is_escaped_and_highlighted() {
        let html = code("x = '</pre><script>alert(1)</script>'  # c\n", "python").into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("hl-comment"), "{html}");
    }
}
