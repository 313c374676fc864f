//! `/blame?path=P`: every line of every cell at the head, coloured by the
//! client that last wrote it, each linking to that event. The attribution
//! is the audit's own ([`crate::audit::blame::blame`], §8.10's rules).

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::layout::{client, client_tint, shell, time, visible};
use super::{Query, url};
use crate::audit::{Audit, AuditError};

/// The page.
pub fn page(audit: &Audit, q: &Query) -> Result<Markup, AuditError> {
    let given = q
        .get("path")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuditError::Usage("which notebook? /blame?path=PATH".into()))?;
    let path = audit.notebook(given)?;
    let b = crate::audit::blame::blame(audit, &path)?;
    let head = audit.store().head();
    // Lines per client, for the legend.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &b.cells {
        for l in &c.lines {
            *counts
                .entry(b.authors[l.author].client_name.as_str())
                .or_default() += 1;
        }
    }
    let title = format!("blame of {path}");
    let body = html! {
        h1 { "Blame of " (visible(&path)) " " span.muted { "at v" (b.current_version) } }
        p {
            a href=(url("/notebook", &[("path", path.clone())])) { "notebook" }
            " \u{b7} "
            a href=(url("/", &[("nb", path.clone())])) { "timeline" }
        }
        div.legend {
            @for (name, n) in &counts {
                span.entry style={ "background:" (client_tint(name)) } {
                    a href=(url("/", &[("nb", path.clone()), ("client", (*name).to_owned())])) { (client(name)) }
                    " " span.muted { (n) " lines" }
                }
            }
        }
        table.blame {
            @for c in &b.cells {
                tr.cellhead id={ "cell-" (visible(&c.cell_id)) } {
                    td colspan="3" {
                        strong { "[" (c.index) "] " } code { (visible(&c.cell_id)) } " " span.muted { (visible(&c.cell_type)) }
                        " \u{b7} " a href=(url("/", &[("nb", path.clone()), ("cell", c.cell_id.clone())])) { "history" }
                    }
                }
                @for (i, l) in c.lines.iter().enumerate() {
                    @let a = &b.authors[l.author];
                    @let new_run = i == 0 || c.lines[i - 1].author != l.author;
                    tr class=(if new_run { "line first" } else { "line" }) style={ "background:" (client_tint(&a.client_name)) } data-client=(a.client_name) {
                        td.who {
                            @if new_run {
                                a href={ "/event/" (a.version) } title=(time(a.timestamp_ms)) { "v" (a.version) }
                                " " (client(&a.client_name))
                            }
                        }
                        td.n.muted { (i + 1) }
                        td.src { (visible(&l.text)) }
                    }
                }
            }
        }
    };
    Ok(shell(&title, head, body))
}
