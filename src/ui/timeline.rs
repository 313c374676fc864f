//! `/`: the timeline, newest first, filtered by notebook, cell, client,
//! operation and time, paged by a version cursor (`before=V`: versions
//! strictly below V).
//!
//! What is read: a notebook filter walks the notebook index backwards, a
//! cell filter (with its notebook) the cell index; a time range becomes a
//! version range by bisection (times never decrease along versions); a
//! client or operation filter reads record envelopes (no bodies) under a
//! budget of [`SCAN_BUDGET`] per page, and when the budget runs out
//! before the page is full the page says where it stopped and links on.
//! Only the rows shown are decoded whole.

use maud::{Markup, html};

use super::layout::{client, shell, time, visible};
use super::{Query, url};
use crate::audit::{Audit, AuditError};
use crate::events::codec::RecordHead;
use crate::store::Store;

/// Rows per page by default, and at most.
const PAGE: usize = 100;
const MAX_PAGE: usize = 500;
/// Envelopes a client/operation filter reads for one page at most.
pub const SCAN_BUDGET: usize = 20_000;

/// The filters of one timeline page.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub notebook: String,
    pub cell: String,
    pub client: String,
    pub operation: String,
    /// Times as typed (RFC 3339, or a prefix of it such as a date).
    pub since: String,
    pub until: String,
}

impl Filters {
    pub fn from_query(q: &Query) -> Filters {
        let get = |k: &str| q.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
        Filters {
            notebook: get("nb"),
            cell: get("cell"),
            client: get("client"),
            operation: get("op"),
            since: get("since"),
            until: get("until"),
        }
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("nb", self.notebook.clone()),
            ("cell", self.cell.clone()),
            ("client", self.client.clone()),
            ("op", self.operation.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ]
    }

    fn matches(&self, h: &RecordHead) -> bool {
        (self.client.is_empty() || h.client_name == self.client)
            && (self.operation.is_empty() || h.operation == self.operation)
    }
}

/// One page of matching versions, newest first, and where to go on from.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub versions: Vec<u64>,
    /// The `before` cursor of the next (older) page, if there may be more.
    pub next: Option<u64>,
    /// The scan budget ran out at this cursor before the page was full.
    pub stopped_at: Option<u64>,
}

/// Parses `2026-11-23`, `2026-11-23T20:17`, `…:40`, `…:40.123`, with an
/// optional `Z`, as UTC milliseconds. `end` rounds a partial time up to
/// the last millisecond it names (an `until` of a date means that whole day).
pub fn parse_time(s: &str, end: bool) -> Result<i64, AuditError> {
    let bad = || {
        AuditError::Usage(format!(
            "time {} is not RFC 3339 UTC (e.g. 2026-11-23 or 2026-11-23T20:17:40.123Z)",
            crate::error::quote(s)
        ))
    };
    let t = s.trim().trim_end_matches('Z');
    let (date, clock) = t.split_once(['T', ' ']).unwrap_or((t, ""));
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(day)), None) = (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let parts: Vec<&str> = if hms.is_empty() {
        Vec::new()
    } else {
        hms.split(':').collect()
    };
    if parts.len() > 3 || (!frac.is_empty() && parts.len() != 3) {
        return Err(bad());
    }
    let mut nums = [0i64; 3];
    for (i, p) in parts.iter().enumerate() {
        nums[i] = p.parse().map_err(|_| bad())?;
    }
    let mut ms: i64 = 0;
    let mut frac_digits = 0;
    for c in frac.chars().take(3) {
        ms = ms * 10 + c.to_digit(10).ok_or_else(bad)? as i64;
        frac_digits += 1;
    }
    for _ in frac_digits..3 {
        ms *= 10;
    }
    let days = days_from_civil(y, m, day);
    let start = ((days * 24 + nums[0]) * 60 + nums[1]) * 60_000 + nums[2] * 1000 + ms;
    if !end {
        return Ok(start);
    }
    // The span the given precision names.
    let span = match (parts.len(), frac_digits) {
        (0, _) => 86_400_000,
        (1, _) => 3_600_000,
        (2, _) => 60_000,
        (3, 0) => 1000,
        (3, 1) => 100,
        (3, 2) => 10,
        _ => 1,
    };
    Ok(start + span - 1)
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first version whose time is > `t` (head + 1 if none): bisection
/// over the envelopes, since times never decrease along versions.
pub fn first_after(store: &Store, t: i64) -> Result<u64, AuditError> {
    let (mut lo, mut hi) = (1u64, store.head() + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ts = store
            .head_of(mid)?
            .map(|h| h.timestamp_ms)
            .unwrap_or(i64::MAX);
        if ts > t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The versions of one page: matching `f`, strictly below `before`, newest
/// first, at most `limit`.
pub fn find(audit: &Audit, f: &Filters, before: u64, limit: usize) -> Result<Found, AuditError> {
    let store = audit.store();
    let head = store.head();
    let mut before = before.min(head + 1);
    // Time range → version range.
    let mut lowest = 1u64;
    if !f.until.is_empty() {
        before = before.min(first_after(store, parse_time(&f.until, true)?)?);
    }
    if !f.since.is_empty() {
        lowest = first_after(store, parse_time(&f.since, false)? - 1)?;
    }
    let notebook = if f.notebook.is_empty() {
        None
    } else {
        Some(audit.notebook(&f.notebook)?)
    };
    if !f.cell.is_empty() && notebook.is_none() {
        return Err(AuditError::Usage(
            "a cell filter needs its notebook (nb=PATH): cell ids are per notebook".into(),
        ));
    }
    let cell = match (&notebook, f.cell.as_str()) {
        (Some(nb), c) if !c.is_empty() => Some(crate::audit::history::resolve_cell(audit, nb, c)?),
        _ => None,
    };
    let needs_heads = !f.client.is_empty() || !f.operation.is_empty();
    let mut versions = Vec::new();
    let mut scanned = 0usize;
    if notebook.is_none() && needs_heads {
        // The whole log by client or operation: one backward range scan
        // of envelopes.
        for h in store.heads_rev(before) {
            let h = h?;
            let v = h.version;
            if v < lowest {
                break;
            }
            if scanned >= SCAN_BUDGET {
                return Ok(Found {
                    versions,
                    next: Some(v + 1),
                    stopped_at: Some(v + 1),
                });
            }
            scanned += 1;
            if !f.matches(&h) {
                continue;
            }
            versions.push(v);
            if versions.len() == limit {
                return Ok(Found {
                    versions,
                    next: (v > lowest).then_some(v),
                    stopped_at: None,
                });
            }
        }
        return Ok(Found {
            versions,
            next: None,
            stopped_at: None,
        });
    }
    let mut cursor = before;
    // Walk candidates newest first, in chunks from the index (or the log).
    'walk: loop {
        if cursor <= lowest {
            return Ok(Found {
                versions,
                next: None,
                stopped_at: None,
            });
        }
        let chunk: Vec<u64> = match (&notebook, &cell) {
            (Some(nb), Some(c)) => store.cell_versions_rev(nb, c, cursor, 512)?,
            (Some(nb), None) => store.notebook_versions_rev(nb, cursor, 512)?,
            (None, _) => {
                // The whole log: every version below the cursor.
                let lo = cursor.saturating_sub(512).max(lowest);
                (lo..cursor).rev().collect()
            }
        };
        if chunk.is_empty() {
            break 'walk;
        }
        for v in chunk {
            cursor = v;
            if v < lowest {
                break 'walk;
            }
            if needs_heads {
                if scanned >= SCAN_BUDGET {
                    return Ok(Found {
                        versions,
                        next: Some(v + 1),
                        stopped_at: Some(v + 1),
                    });
                }
                scanned += 1;
                let Some(h) = store.head_of(v)? else { continue };
                if !f.matches(&h) {
                    continue;
                }
            }
            versions.push(v);
            if versions.len() == limit {
                let more = v > lowest;
                return Ok(Found {
                    versions,
                    next: more.then_some(v),
                    stopped_at: None,
                });
            }
        }
    }
    Ok(Found {
        versions,
        next: None,
        stopped_at: None,
    })
}

/// The page.
pub fn page(audit: &Audit, q: &Query) -> Result<Markup, AuditError> {
    let f = Filters::from_query(q);
    let head = audit.store().head();
    let before = match q.get("before").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(s) => s.parse::<u64>().map_err(|_| {
            AuditError::Usage(format!(
                "before={} is not a version",
                crate::error::quote(s)
            ))
        })?,
        None => head + 1,
    };
    let limit = match q.get("limit").and_then(|s| s.parse::<usize>().ok()) {
        Some(n) => n.clamp(1, MAX_PAGE),
        None => PAGE,
    };
    let found = find(audit, &f, before, limit)?;
    let rows: Vec<crate::store::Record> = audit
        .records_at(found.versions.iter().rev().copied().collect())
        .collect::<Result<_, _>>()?;
    let mut pairs = f.pairs();
    if limit != PAGE {
        pairs.push(("limit", limit.to_string()));
    }
    let newer = (before <= head).then(|| url("/", &pairs));
    let older = found.next.map(|n| {
        let mut p = pairs.clone();
        p.push(("before", n.to_string()));
        url("/", &p)
    });
    let title = if f.notebook.is_empty() {
        "Timeline".to_owned()
    } else {
        format!("Timeline of {}", f.notebook)
    };
    let body = html! {
        h1 { (visible(&title)) }
        form.filters method="get" action="/" {
            label { "notebook" input name="nb" value=(f.notebook) placeholder="path.ipynb"; }
            label { "cell" input name="cell" value=(f.cell) size="10" placeholder="cell id"; }
            label { "client" input name="client" value=(f.client) size="12"; }
            label { "operation" input name="op" value=(f.operation) size="14"; }
            label { "since (UTC)" input name="since" value=(f.since) size="22" placeholder="2026-11-23T20:17"; }
            label { "until (UTC)" input name="until" value=(f.until) size="22"; }
            button type="submit" { "filter" }
            a href="/" { "clear" }
        }
        @if !f.notebook.is_empty() {
            p {
                a href=(url("/notebook", &[("path", f.notebook.clone())])) { "notebook now" }
                " · "
                a href=(url("/blame", &[("path", f.notebook.clone())])) { "blame" }
                " · "
                a href=(url("/activity", &[("nb", f.notebook.clone())])) { "activity" }
            }
        }
        @if let Some(stop) = found.stopped_at {
            p.muted {
                "Read " (SCAN_BUDGET) " events without filling the page; the search stopped below version "
                (stop) ". Follow \u{201c}older\u{201d} to go on."
            }
        }
        @if rows.is_empty() {
            p.muted { "No events match." }
        } @else {
            table.events {
                thead { tr { th { "version" } th { "time (UTC)" } th { "client" } th { "operation" } th { "notebook" } th { "cells" } th { "summary" } } }
                tbody {
                    @for r in rows.iter().rev() {
                        (row(&r.event))
                    }
                }
            }
        }
        div.pager {
            @if let Some(u) = &newer { a rel="first" href=(u) { "\u{2190} newest" } }
            @if let Some(u) = &older { a rel="next" href=(u) { "older \u{2192}" } }
        }
    };
    Ok(shell(&title, head, body))
}

/// One event as a table row.
pub fn row(e: &crate::events::Event) -> Markup {
    let ev = format!("/event/{}", e.version);
    html! {
        tr id={ "v" (e.version) } {
            td { a href=(ev) { "v" (e.version) } }
            td.muted { (time(e.timestamp_ms)) }
            td { a href=(url("/", &[("client", e.client_name.clone())])) { (client(&e.client_name)) } }
            td { a href=(url("/", &[("op", e.operation.clone())])) { (visible(&e.operation)) } }
            td {
                @for p in &e.paths {
                    a href=(url("/notebook", &[("path", p.clone()), ("v", e.version.to_string())])) { (visible(p)) }
                    " "
                }
            }
            td {
                @for c in e.cell_ids.iter().take(3) {
                    @if let Some(p) = e.paths.first() {
                        a href=(url("/", &[("nb", p.clone()), ("cell", c.clone())])) { (visible(c)) }
                    }
                    " "
                }
                @if e.cell_ids.len() > 3 { span.muted { "+" (e.cell_ids.len() - 3) } }
            }
            td.summary {
                (visible(&e.summary))
                @if !e.overrode_locks.is_empty() { " " span.badge.forced { "forced a lock" } }
                @if e.is_rejected() { " " span.badge.rejected { "rejected" } }
            }
        }
    }
}
