//! `/activity`: one swimlane per client over time for a window of events
//! (the newest [`WINDOW`] below a cursor, of one notebook or all), drawn
//! as SVG on the server: a mark per event (a link to it), locks as spans
//! from their taking to their release or expiry, runs as bars from their
//! acceptance to their end.

use std::collections::HashMap;

use maud::{Markup, html};

use super::layout::{client, client_colour, shell, time, visible};
use super::{Query, url};
use crate::audit::{Audit, AuditError};
use crate::events::{Change, Event};

/// Events per picture by default, and at most.
const WINDOW: usize = 1000;
const MAX_WINDOW: usize = 10_000;
const WIDTH: f64 = 1100.0;
const LABEL: f64 = 170.0;
const LANE: f64 = 30.0;

/// A span on a lane: `[from, to]` in ms, and the event to link.
struct Span {
    lane: usize,
    from: i64,
    to: i64,
    version: u64,
    label: String,
}

/// The page.
pub fn page(audit: &Audit, q: &Query) -> Result<Markup, AuditError> {
    let store = audit.store();
    let head = store.head();
    let nb = match q.get("nb").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(p) => Some(audit.notebook(p)?),
        None => None,
    };
    let before = q
        .get("before")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(head + 1)
        .min(head + 1);
    let window = q
        .get("n")
        .and_then(|s| s.parse::<usize>().ok())
        .map_or(WINDOW, |n| n.clamp(1, MAX_WINDOW));
    let mut versions: Vec<u64> = match &nb {
        Some(p) => store.notebook_versions_rev(p, before, window)?,
        None => {
            let lo = before.saturating_sub(window as u64).max(1);
            (lo..before).rev().collect()
        }
    };
    versions.reverse();
    let events: Vec<Event> = audit
        .records_at(versions.clone())
        .map(|r| r.map(|r| r.event))
        .collect::<Result<_, _>>()?;
    let older = versions.first().copied().filter(|&v| v > 1);
    let mut pairs: Vec<(&str, String)> = vec![("nb", nb.clone().unwrap_or_default())];
    if window != WINDOW {
        pairs.push(("n", window.to_string()));
    }
    let older_link = older.map(|o| {
        let mut p = pairs.clone();
        p.push(("before", o.to_string()));
        url("/activity", &p)
    });
    let newer_link = (before <= head).then(|| url("/activity", &pairs));
    let title = match &nb {
        Some(p) => format!("activity in {p}"),
        None => "activity".to_owned(),
    };
    let body = html! {
        h1 { "Activity" @if let Some(p) = &nb { " in " (visible(p)) } }
        form.filters method="get" action="/activity" {
            label { "notebook" input name="nb" value=(nb.clone().unwrap_or_default()) placeholder="all notebooks"; }
            label { "events" input name="n" type="number" min="1" max=(MAX_WINDOW) value=(window); }
            button type="submit" { "show" }
        }
        @if events.is_empty() {
            p.muted { "No events." }
        } @else {
            p.muted {
                "v" (versions[0]) " \u{2013} v" (versions[versions.len() - 1]) ", "
                (time(events[0].timestamp_ms)) " \u{2192} " (time(events[events.len() - 1].timestamp_ms))
                ". Marks are events, thin bands locks, thick bars runs; each links to its event."
            }
            (svg(&events))
        }
        div.pager {
            @if let Some(u) = &newer_link { a rel="first" href=(u) { "\u{2190} newest" } }
            @if let Some(u) = &older_link { a rel="next" href=(u) { "older \u{2192}" } }
        }
    };
    Ok(shell(&title, head, body))
}

fn svg(events: &[Event]) -> Markup {
    let index = |name: &str, lanes: &mut Vec<String>| -> usize {
        match lanes.iter().position(|l| l == name) {
            Some(i) => i,
            None => {
                lanes.push(name.to_owned());
                lanes.len() - 1
            }
        }
    };
    let mut names: Vec<String> = Vec::new();
    let t0 = events[0].timestamp_ms;
    let t1 = events[events.len() - 1].timestamp_ms.max(t0 + 1);
    let mut locks: HashMap<(String, String, String), Span> = HashMap::new();
    let mut done_locks: Vec<Span> = Vec::new();
    let mut runs: HashMap<String, Span> = HashMap::new();
    let mut done_runs: Vec<Span> = Vec::new();
    let mut marks: Vec<(usize, &Event)> = Vec::with_capacity(events.len());
    for e in events {
        let l = index(&e.client_name, &mut names);
        marks.push((l, e));
        for c in &e.changes {
            match c {
                Change::LockAcquired {
                    path,
                    cell_id,
                    owner,
                    acquired_at,
                    expires_at,
                } => {
                    let ol = index(owner, &mut names);
                    let key = (path.clone(), cell_id.clone(), owner.clone());
                    let span = locks.entry(key).or_insert(Span {
                        lane: ol,
                        from: *acquired_at,
                        to: *expires_at,
                        version: e.version,
                        label: format!("lock on {cell_id} by {owner}"),
                    });
                    span.to = span.to.max(*expires_at);
                }
                Change::LockReleased {
                    path,
                    cell_id,
                    owner,
                    ..
                } => {
                    if let Some(mut s) =
                        locks.remove(&(path.clone(), cell_id.clone(), owner.clone()))
                    {
                        s.to = s.to.min(e.timestamp_ms);
                        done_locks.push(s);
                    }
                }
                Change::RunStarted {
                    run_id, cell_id, ..
                } => {
                    runs.insert(
                        run_id.clone(),
                        Span {
                            lane: l,
                            from: e.timestamp_ms,
                            to: t1,
                            version: e.version,
                            label: format!("run {run_id} on {}", cell_id.as_deref().unwrap_or("?")),
                        },
                    );
                }
                Change::RunFinished { run_id, status, .. } => {
                    let mut s = runs.remove(run_id).unwrap_or(Span {
                        lane: l,
                        from: t0,
                        to: t1,
                        version: e.version,
                        label: format!("run {run_id}"),
                    });
                    s.to = e.timestamp_ms;
                    s.label = format!("{} ({status})", s.label);
                    done_runs.push(s);
                }
                _ => {}
            }
        }
    }
    done_locks.extend(locks.into_values());
    done_runs.extend(runs.into_values());
    let span_ms = (t1 - t0) as f64;
    let x = |t: i64| LABEL + (t.clamp(t0, t1) - t0) as f64 / span_ms * (WIDTH - LABEL - 10.0);
    let height = names.len() as f64 * LANE + 24.0;
    let w = |s: &Span| (x(s.to) - x(s.from)).max(2.0);
    html! {
        svg.activity xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height) viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label="activity by client" {
            @for (i, name) in names.iter().enumerate() {
                g.lane data-client=(name) {
                    rect x="0" y=(i as f64 * LANE) width=(WIDTH) height=(LANE) fill=(if i % 2 == 0 { "#f6f8fa" } else { "#ffffff" }) {}
                    rect x="4" y=(i as f64 * LANE + 10.0) width="10" height="10" fill=(client_colour(name)) {}
                    text x="18" y=(i as f64 * LANE + 19.0) { (visible(&truncate(name, 22))) }
                }
            }
            @for s in &done_locks {
                a href={ "/event/" (s.version) } {
                    rect.lock x=(x(s.from)) y=(s.lane as f64 * LANE + LANE - 6.0) width=(w(s)) height="4" fill=(client_colour(&names[s.lane])) fill-opacity="0.45" {
                        title { (visible(&s.label)) " " (time(s.from)) " \u{2192} " (time(s.to)) }
                    }
                }
            }
            @for s in &done_runs {
                a href={ "/event/" (s.version) } {
                    rect.run x=(x(s.from)) y=(s.lane as f64 * LANE + 4.0) width=(w(s)) height="8" rx="2" fill=(client_colour(&names[s.lane])) fill-opacity="0.7" {
                        title { (visible(&s.label)) " " (time(s.from)) " \u{2192} " (time(s.to)) }
                    }
                }
            }
            @for (l, e) in &marks {
                a href={ "/event/" (e.version) } {
                    rect.mark x=(x(e.timestamp_ms) - 1.0) y=(*l as f64 * LANE + 13.0) width="3" height="10" fill=(client_colour(&e.client_name)) {
                        title { "v" (e.version) " " (visible(&e.operation)) " by " (visible(&e.client_name)) " at " (time(e.timestamp_ms)) }
                    }
                }
            }
            text x=(LABEL) y=(height - 6.0) { (time(t0)) }
            text x=(WIDTH - 10.0) y=(height - 6.0) text-anchor="end" { (time(t1)) }
        }
        div.legend {
            @for name in &names {
                a href=(url("/", &[("client", name.clone())])) { (client(name)) }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('\u{2026}');
    out
}
