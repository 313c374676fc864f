//! `/event/V`: one event whole. Its changes carry their own before and
//! after (a source set holds both texts, a replaced cell both cells), so
//! the side-by-side diffs need no replay; the lock it overrode is found
//! through the cell index (the event that took it), and the run it
//! started or ended is followed through the same index.

use maud::{Markup, html};
use serde_json::Value;
use similar::{DiffOp, TextDiff};

use super::layout::{client, shell, time, visible};
use super::render;
use super::url;
use crate::audit::text::hex;
use crate::audit::{Audit, AuditError};
use crate::events::{Cell, Change, Event};
use crate::projections::history::changed_fields;

/// Unchanged lines kept around a change; longer unchanged runs fold.
const CONTEXT: usize = 3;
/// Strings in outputs and metadata longer than this are shown by size and
/// hash in the JSON diff (an image's base64 would drown the page).
const LONG_STRING: usize = 160;
/// Cell-index entries read to find a run's other events or a lock's taking.
const FOLLOW_LIMIT: usize = 500;

/// Side by side: `before` on the left, `after` on the right, by lines.
pub fn diff(before: &str, after: &str) -> Markup {
    let b: Vec<&str> = before.split_inclusive('\n').collect();
    let a: Vec<&str> = after.split_inclusive('\n').collect();
    let d = TextDiff::from_slices(&b, &a);
    let line = |s: &str| visible(s.strip_suffix('\n').unwrap_or(s)).into_owned();
    html! {
        table.diff {
            colgroup { col style="width:3.5em"; col; col style="width:3.5em"; col; }
            @for op in d.ops() {
                @match *op {
                    DiffOp::Equal { old_index, new_index, len } => {
                        @for (k, i) in (0..len).enumerate() {
                            @if len <= 2 * CONTEXT + 1 || k < CONTEXT || k >= len - CONTEXT {
                                tr {
                                    td.n { (old_index + i + 1) } td.l { (line(b[old_index + i])) }
                                    td.n { (new_index + i + 1) } td.r { (line(a[new_index + i])) }
                                }
                            } @else if k == CONTEXT {
                                tr.fold { td.n {} td.muted colspan="3" { "\u{22ef} " (len - 2 * CONTEXT) " unchanged lines" } }
                            }
                        }
                    }
                    DiffOp::Delete { old_index, old_len, .. } => {
                        @for i in 0..old_len {
                            tr { td.n { (old_index + i + 1) } td.del { (line(b[old_index + i])) } td.n {} td {} }
                        }
                    }
                    DiffOp::Insert { new_index, new_len, .. } => {
                        @for i in 0..new_len {
                            tr { td.n {} td {} td.n { (new_index + i + 1) } td.add { (line(a[new_index + i])) } }
                        }
                    }
                    DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                        @for i in 0..old_len.max(new_len) {
                            tr.chg {
                                @if i < old_len { td.n { (old_index + i + 1) } td.l { (line(b[old_index + i])) } } @else { td.n {} td {} }
                                @if i < new_len { td.n { (new_index + i + 1) } td.r { (line(a[new_index + i])) } } @else { td.n {} td {} }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// JSON text pretty-printed for a diff, long strings replaced by their
/// size and hash (so a changed image still shows as a changed line).
pub fn pretty(json: &str) -> String {
    fn shorten(v: &mut Value) {
        match v {
            Value::String(s) if s.len() > LONG_STRING => {
                let h = blake3::hash(s.as_bytes());
                *s = format!(
                    "\u{2026} {} bytes, blake3 {}",
                    s.len(),
                    &h.to_hex().as_str()[..12]
                );
            }
            Value::Array(a) => {
                // Multiline strings as nbformat splits them: join first.
                if a.len() > 1 && a.iter().all(Value::is_string) {
                    let total: usize = a.iter().filter_map(Value::as_str).map(str::len).sum();
                    if total > LONG_STRING * 4 {
                        let joined: String = a.iter().filter_map(Value::as_str).collect();
                        *v = Value::String(joined);
                        shorten(v);
                        return;
                    }
                }
                a.iter_mut().for_each(shorten);
            }
            Value::Object(m) => m.values_mut().for_each(shorten),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(json) {
        Ok(mut v) => {
            shorten(&mut v);
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Err(_) => json.to_owned(),
    }
}

fn cell_link(path: &str, id: &str, v: u64) -> Markup {
    html! {
        a href={ (url("/notebook", &[("path", path.to_owned()), ("v", v.to_string())])) "#cell-" (visible(id)) } {
            code { (visible(id)) }
        }
        " ("
        a href=(url("/", &[("nb", path.to_owned()), ("cell", id.to_owned())])) { "history" }
        ")"
    }
}

/// A whole cell against nothing (inserted) or nothing against it (deleted).
fn whole(cell: &Cell, inserted: bool) -> Markup {
    let (b, a) = if inserted {
        (String::new(), cell.source.clone())
    } else {
        (cell.source.clone(), String::new())
    };
    html! {
        p.muted { (visible(cell.cell_type.as_str())) " cell" }
        (diff(&b, &a))
        @if cell.metadata != "{}" {
            h4 { "metadata" }
            @let m = pretty(&cell.metadata);
            @if inserted { (diff("", &m)) } @else { (diff(&m, "")) }
        }
        @if let Some(o) = &cell.outputs && o != "[]" {
            h4 { "outputs" }
            div.cell { (render::outputs(o, cell.execution_count.as_deref())) }
        }
    }
}

fn replaced(before: &Cell, after: &Cell) -> Markup {
    let changed = changed_fields(before, after);
    html! {
        p.muted { "changed: " (changed.join(", ")) }
        @if before.cell_type != after.cell_type {
            p { "type " code { (visible(before.cell_type.as_str())) } " \u{2192} " code { (visible(after.cell_type.as_str())) } }
        }
        @if before.source != after.source { h4 { "source" } (diff(&before.source, &after.source)) }
        @if before.metadata != after.metadata {
            h4 { "metadata" } (diff(&pretty(&before.metadata), &pretty(&after.metadata)))
        }
        @if before.outputs != after.outputs {
            h4 { "outputs" }
            (diff(&pretty(before.outputs.as_deref().unwrap_or("[]")), &pretty(after.outputs.as_deref().unwrap_or("[]"))))
            h4 { "outputs after, rendered" }
            div.cell { (render::outputs(after.outputs.as_deref().unwrap_or("[]"), after.execution_count.as_deref())) }
        }
        @if before.execution_count != after.execution_count {
            p { "execution count " (visible(before.execution_count.as_deref().unwrap_or("none"))) " \u{2192} " (visible(after.execution_count.as_deref().unwrap_or("none"))) }
        }
        @if before.attachments != after.attachments {
            h4 { "attachments" }
            (diff(&pretty(before.attachments.as_deref().unwrap_or("{}")), &pretty(after.attachments.as_deref().unwrap_or("{}"))))
        }
    }
}

/// The events of run `run_id` (on cell `cell` of `path`), oldest first.
fn run_events(
    audit: &Audit,
    path: &str,
    cell: &str,
    run_id: &str,
) -> Result<Vec<Event>, AuditError> {
    let store = audit.store();
    let mut vs = store.cell_versions_rev(path, cell, store.head() + 1, FOLLOW_LIMIT)?;
    vs.reverse();
    vs.retain(|&v| {
        store.head_of(v).ok().flatten().is_some_and(|h| {
            matches!(
                h.operation.as_str(),
                "execute_cell" | "run_outputs" | "run_finished" | "kernel_stopped"
            ) || h.operation.contains("kernel")
        })
    });
    let mut out = Vec::new();
    for rec in audit.records_at(vs) {
        let e = rec?.event;
        let ours = e.changes.iter().any(|c| match c {
            Change::RunStarted { run_id: r, .. }
            | Change::RunOutputs { run_id: r, .. }
            | Change::RunFinished { run_id: r, .. } => r == run_id,
            Change::KernelAction { run_ids, .. } => run_ids.iter().any(|r| r == run_id),
            _ => false,
        });
        if ours {
            out.push(e);
        }
    }
    Ok(out)
}

fn run_section(
    audit: &Audit,
    e: &Event,
    path: &str,
    cell: Option<&str>,
    run_id: &str,
) -> Result<Markup, AuditError> {
    let events = match cell {
        Some(c) => run_events(audit, path, c, run_id)?,
        None => Vec::new(),
    };
    Ok(html! {
        p { "run " code { (visible(run_id)) } }
        @if !events.is_empty() {
            ul {
                @for r in &events {
                    li {
                        @if r.version == e.version { strong { "v" (r.version) } } @else { a href={ "/event/" (r.version) } { "v" (r.version) } }
                        " " (visible(&r.operation)) " at " (time(r.timestamp_ms)) " by " (client(&r.client_name))
                        @for c in &r.changes {
                            @if let Change::RunFinished { status, duration_ms, .. } = c {
                                " \u{2014} " strong { (visible(status)) }
                                @if let Some(d) = duration_ms { " in " (d) " ms" }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The event that took the lock `owner` held on `cell` before version `v`.
fn lock_taken(
    audit: &Audit,
    path: &str,
    cell: &str,
    owner: &str,
    v: u64,
) -> Result<Option<(u64, i64, i64)>, AuditError> {
    let vs = audit
        .store()
        .cell_versions_rev(path, cell, v, FOLLOW_LIMIT)?;
    for v in vs {
        let e = audit.record(v)?.event;
        for c in &e.changes {
            if let Change::LockAcquired {
                cell_id,
                owner: o,
                acquired_at,
                expires_at,
                ..
            } = c
                && cell_id == cell
                && o == owner
            {
                return Ok(Some((e.version, *acquired_at, *expires_at)));
            }
        }
    }
    Ok(None)
}

fn change(audit: &Audit, e: &Event, c: &Change) -> Result<Markup, AuditError> {
    let v = e.version;
    let path = c.path();
    let (title, body): (Markup, Markup) = match c {
        Change::NotebookCreated { header, .. } => (
            html! { "notebook created (nbformat " (header.nbformat) "." (header.nbformat_minor) ")" },
            html! { h4 { "metadata" } (diff("", &pretty(&header.metadata))) },
        ),
        Change::HeaderSet { before, after, .. } => (
            html! { "notebook metadata set" },
            html! {
                @if (before.nbformat, before.nbformat_minor) != (after.nbformat, after.nbformat_minor) {
                    p { "nbformat " (before.nbformat) "." (before.nbformat_minor) " \u{2192} " (after.nbformat) "." (after.nbformat_minor) }
                }
                (diff(&pretty(&before.metadata), &pretty(&after.metadata)))
            },
        ),
        Change::CellInserted { index, cell, .. } => (
            html! { "cell " (cell_link(path, &cell.id, v)) " inserted at " (index) },
            whole(cell, true),
        ),
        Change::CellCopied {
            index,
            cell,
            from_path,
            from_id,
            ..
        } => (
            html! { "cell " (cell_link(path, &cell.id, v)) " copied at " (index) " from " (visible(from_path)) " " code { (visible(from_id)) } },
            whole(cell, true),
        ),
        Change::CellMovedIn {
            index,
            cell,
            from_path,
            from_id,
            ..
        } => (
            html! { "cell " (cell_link(path, &cell.id, v)) " moved in at " (index) " from " (visible(from_path)) " " code { (visible(from_id)) } },
            whole(cell, true),
        ),
        Change::SourceSet {
            cell_id,
            before,
            after,
            ..
        } => (
            html! { "source of " (cell_link(path, cell_id, v)) },
            diff(before, after),
        ),
        Change::CellReplaced { before, after, .. } => (
            html! { "cell " (cell_link(path, &after.id, v)) " changed" },
            replaced(before, after),
        ),
        Change::CellDeleted { index, cell, .. } => (
            html! { "cell " (cell_link(path, &cell.id, v.saturating_sub(1))) " deleted from " (index) },
            whole(cell, false),
        ),
        Change::CellMoved {
            cell_id, from, to, ..
        } => (
            html! { "cell " (cell_link(path, cell_id, v)) " moved " (from) " \u{2192} " (to) },
            html! {},
        ),
        Change::CellMovedOut {
            cell_id,
            index,
            to_path,
            to_id,
            ..
        } => (
            html! { "cell " code { (visible(cell_id)) } " moved out from " (index) " to " (cell_link(to_path, to_id, v)) },
            html! {},
        ),
        Change::LockAcquired {
            cell_id,
            owner,
            acquired_at,
            expires_at,
            ..
        } => (
            html! { "lock on " (cell_link(path, cell_id, v)) " taken by " (client(owner)) },
            html! { p { "held from " (time(*acquired_at)) " until " (time(*expires_at)) } },
        ),
        Change::LockReleased {
            cell_id,
            owner,
            forced,
            ..
        } => (
            html! { "lock of " (client(owner)) " on " (cell_link(path, cell_id, v)) @if *forced { " " span.badge.forced { "forced" } } @else { " released" } },
            html! {},
        ),
        Change::SnapshotDeleted { name, .. } => (
            html! { "snapshot " code { (visible(name)) } " deleted" },
            html! {},
        ),
        Change::NotebookRenamed { to, .. } => (
            html! { "notebook renamed to " (visible(to)) },
            html! { p { (visible(path)) " \u{2192} " (visible(to)) } },
        ),
        Change::SnapshotTaken {
            name,
            hash,
            description,
            cells,
            ..
        } => (
            html! { "snapshot " code { (visible(name)) } " taken" },
            html! {
                p { (cells.len()) " cells, hash " code { (hex(hash)) } }
                @if let Some(d) = description { p { (visible(d)) } }
            },
        ),
        Change::Rejected {
            cell_id,
            holder,
            acquired_at,
            expires_at,
            ..
        } => (
            html! { span.badge.rejected { "rejected" } " write to " (cell_link(path, cell_id, v)) },
            html! { p { "the cell was locked by " (client(holder)) " from " (time(*acquired_at)) " until " (time(*expires_at)) "; nothing changed" } },
        ),
        Change::RunStarted {
            run_id,
            cell_id,
            source,
            source_version,
            kernel_name,
            ..
        } => (
            html! { "run started" @if let Some(c) = cell_id { " on " (cell_link(path, c, v)) } " (kernel " (visible(kernel_name)) ")" },
            html! {
                (run_section(audit, e, path, cell_id.as_deref(), run_id)?)
                p.muted { "source as accepted (the cell's version " a href={ "/event/" (source_version) } { "v" (source_version) } ")" }
                (render::code(source, "python"))
            },
        ),
        Change::RunOutputs {
            run_id,
            cell_id,
            outputs,
            execution_count,
            truncated,
            ..
        } => (
            html! { "run outputs" @if let Some(c) = cell_id { " on " (cell_link(path, c, v)) } },
            html! {
                (run_section(audit, e, path, cell_id.as_deref(), run_id)?)
                @if *truncated { p.muted { "outputs truncated" } }
                div.cell { (render::outputs(outputs, execution_count.map(|n| n.to_string()).as_deref())) }
            },
        ),
        Change::RunFinished {
            run_id,
            cell_id,
            status,
            execution_count,
            duration_ms,
            outputs,
            truncated,
            reason,
            ..
        } => (
            html! { "run finished " strong { (visible(status)) } @if let Some(c) = cell_id { " on " (cell_link(path, c, v)) } },
            html! {
                (run_section(audit, e, path, cell_id.as_deref(), run_id)?)
                @if let Some(d) = duration_ms { p { "took " (d) " ms" } }
                @if let Some(r) = reason { p { (visible(r)) } }
                @if *truncated { p.muted { "outputs truncated" } }
                div.cell { (render::outputs(outputs, execution_count.map(|n| n.to_string()).as_deref())) }
            },
        ),
        Change::KernelAction {
            kernel_name,
            action,
            run_ids,
            ..
        } => (
            html! { "kernel " (visible(kernel_name)) ": " (visible(action)) },
            html! { @if !run_ids.is_empty() { p { "runs: " @for r in run_ids { code { (visible(r)) } " " } } } },
        ),
    };
    Ok(html! {
        section.change {
            h3 { (title) @if e.paths.len() > 1 { span.muted { " in " (visible(path)) } } }
            div.body { (body) }
        }
    })
}

/// The page.
pub fn page(audit: &Audit, v: u64) -> Result<Markup, AuditError> {
    let head = audit.store().head();
    if v == 0 || v > head {
        return Err(AuditError::NotFound(format!(
            "there is no version {v}: the log holds 1 to {head}"
        )));
    }
    let rec = audit.record(v)?;
    let e = &rec.event;
    let mut forced = Vec::new();
    for (cell, owner) in &e.overrode_locks {
        let path = e.paths.first().map(String::as_str).unwrap_or("");
        forced.push((cell, owner, lock_taken(audit, path, cell, owner, v)?));
    }
    let mut changes = Vec::with_capacity(e.changes.len());
    for c in &e.changes {
        changes.push(change(audit, e, c)?);
    }
    let title = format!("v{v} {} by {}", e.operation, e.client_name);
    let body = html! {
        h1 { "v" (v) " \u{2014} " (visible(&e.operation)) " by " (client(&e.client_name)) }
        div.pager {
            @if v > 1 { a rel="prev" href={ "/event/" (v - 1) } { "\u{2190} v" (v - 1) } }
            @if v < head { a rel="next" href={ "/event/" (v + 1) } { "v" (v + 1) " \u{2192}" } }
        }
        dl.meta {
            dt { "time" } dd { (time(e.timestamp_ms)) }
            dt { "client" } dd { a href=(url("/", &[("client", e.client_name.clone())])) { (client(&e.client_name)) } }
            dt { "operation" } dd { a href=(url("/", &[("op", e.operation.clone())])) { (visible(&e.operation)) } }
            dt { "notebooks" }
            dd {
                @for p in &e.paths {
                    (visible(p)) ": "
                    @if v > 1 { a href=(url("/notebook", &[("path", p.clone()), ("v", (v - 1).to_string())])) { "before" } " \u{b7} " }
                    a href=(url("/notebook", &[("path", p.clone()), ("v", v.to_string())])) { "after" }
                    " \u{b7} " a href=(url("/", &[("nb", p.clone())])) { "timeline" }
                    br;
                }
            }
            dt { "cells" } dd { @for c in &e.cell_ids { code { (visible(c)) } " " } }
            dt { "summary" } dd { (visible(&e.summary)) }
            @if let Some(r) = &e.request_id { dt { "request id" } dd { code { (visible(r)) } } }
            dt { "hash" } dd { code { (hex(&rec.hash)) } }
            dt { "previous hash" } dd { code { (hex(&rec.prev_hash)) } }
        }
        @if !forced.is_empty() {
            h2 { "Locks it overrode" }
            ul.forced {
                @for (cell, owner, taken) in &forced {
                    li {
                        span.badge.forced { "forced" } " the lock of " (client(owner)) " on cell " code { (visible(cell)) }
                        @if let Some((tv, from, until)) = taken {
                            ", taken at " a href={ "/event/" (tv) } { "v" (tv) } " (held " (time(*from)) " \u{2192} " (time(*until)) ")"
                        }
                    }
                }
            }
        }
        h2 { "Changes" }
        @if changes.is_empty() { p.muted { "This event changed nothing." } }
        @for c in &changes { (c) }
    };
    Ok(shell(&title, head, body))
}
