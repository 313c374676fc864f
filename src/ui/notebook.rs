//! `/notebook?path=P&v=V`: the notebook right after version V (the head
//! when V is left out), rendered as JupyterLab shows it, with links to the
//! notebook's previous and next versions. The state comes from the one
//! replay path (checkpoint, then this notebook's own events).

use maud::{Markup, html};

use super::layout::{client, shell, time, visible};
use super::{Query, render, url};
use crate::audit::{Audit, AuditError};
use crate::error::quote;
use crate::events::CellType;

fn param<'a>(q: &'a Query, k: &str) -> Option<&'a str> {
    q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The page.
pub fn page(audit: &Audit, q: &Query) -> Result<Markup, AuditError> {
    let given = param(q, "path").ok_or_else(|| {
        AuditError::Usage("which notebook? /notebook?path=PATH[&v=VERSION]".into())
    })?;
    let path = audit.notebook(given)?;
    let store = audit.store();
    let head = store.head();
    let v = match param(q, "v") {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| AuditError::Usage(format!("v={} is not a version", quote(s))))?,
        None => head,
    };
    audit.check_version("v", v)?;
    let nb = crate::audit::show::notebook_at(audit, &path, v)?;
    let at = nb.current_version;
    let prev = store.notebook_versions_rev(&path, at, 1)?.first().copied();
    let next = store
        .notebook_versions(&path, v, 1)?
        .first()
        .copied()
        .filter(|&n| n <= head);
    let first = store.notebook_versions(&path, 0, 1)?.first().copied();
    let last = store
        .notebook_versions_rev(&path, head + 1, 1)?
        .first()
        .copied();
    let made = audit.record(at)?.event;
    let lang = render::language(&nb.header.metadata);
    let link = |to: u64| {
        url(
            "/notebook",
            &[("path", path.clone()), ("v", to.to_string())],
        )
    };
    let selected = param(q, "cell");
    let title = format!("{path} at v{v}");
    let body = html! {
        h1 { (visible(&path)) " " span.muted { "at v" (v) } }
        div.stepper {
            @if let Some(f) = first && f != at { a href=(link(f)) { "\u{21e4} first" } }
            @if let Some(p) = prev { a rel="prev" href=(link(p)) { "\u{2190} v" (p) } }
            span { "state of " a href={ "/event/" (at) } { "v" (at) } " (" (visible(&made.operation)) " by " (client(&made.client_name)) ", " (time(made.timestamp_ms)) ")" }
            @if let Some(n) = next { a rel="next" href=(link(n)) { "v" (n) " \u{2192}" } }
            @if let Some(l) = last && Some(l) != next && l > at { a href=(link(l)) { "last \u{21e5}" } }
            form method="get" action="/notebook" {
                input type="hidden" name="path" value=(path);
                input type="number" name="v" min="1" max=(head) value=(v) aria-label="version";
                button type="submit" { "go" }
            }
            a href=(url("/", &[("nb", path.clone())])) { "timeline" }
            a href=(url("/blame", &[("path", path.clone())])) { "blame" }
        }
        p.muted { (nb.cells.len()) " cells \u{b7} nbformat " (nb.header.nbformat) "." (nb.header.nbformat_minor) " \u{b7} " (visible(&lang)) }
        div.notebook {
            @for (i, c) in nb.cells.iter().enumerate() {
                @let cell = &c.cell;
                @let lock = nb.lock_at(&cell.id, made.timestamp_ms);
                div class={ "cell " (visible(cell.cell_type.as_str())) @if selected == Some(cell.id.as_str()) { " selected" } } id={ "cell-" (visible(&cell.id)) } data-index=(i) {
                    div.prompt {
                        @if cell.cell_type == CellType::Code {
                            "[" (visible(cell.execution_count.as_deref().filter(|c| *c != "null").unwrap_or(" "))) "]:"
                        }
                    }
                    @match cell.cell_type {
                        CellType::Markdown => div.input.markdown { (render::markdown(&cell.source)) },
                        CellType::Code => div.input { (render::code(&cell.source, &lang)) },
                        _ => div.input { pre { (visible(&cell.source)) } },
                    }
                    div.meta {
                        code { (visible(&cell.id)) }
                        " \u{b7} last changed "
                        a href={ "/event/" (c.last_version) } { "v" (c.last_version) }
                        " \u{b7} "
                        a href=(url("/", &[("nb", path.clone()), ("cell", cell.id.clone())])) { "history" }
                        @if let Some(l) = lock {
                            " \u{b7} locked by " (client(&l.owner)) " until " (time(l.expires_at))
                        }
                    }
                    @if let Some(outs) = &cell.outputs {
                        (render::outputs(outs, cell.execution_count.as_deref()))
                    }
                }
            }
        }
    };
    Ok(shell(&title, head, body))
}
