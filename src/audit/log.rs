//! `nbledger log`: one line per event, oldest first.
//!
//! Text: `v<version>  <time>  <client>  <operation>  <paths>  <cells>  <summary>`
//! then `  FORCED over <owner>` when locks were overridden and `  REJECTED`
//! for a refused write. Every field from the log is escaped, so an event
//! is exactly one line whatever it holds. `--json`: one object per line
//! with the fields of [`summary_json`].

use std::io::Write;

use serde_json::{Map, Value, json};

use super::text::{Paint, escape, hex, json_line, rfc3339_ms};
use super::{Audit, AuditError};
use crate::events::Event;
use crate::store::Record;

/// What `log` selects. `since` is exclusive, `until` inclusive (§8.10).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub notebook: Option<String>,
    pub since: u64,
    pub until: Option<u64>,
    pub client: Option<String>,
    pub json: bool,
}

/// Prints the selected events to `out`.
pub fn run(
    audit: &Audit,
    opts: &LogOptions,
    paint: Paint,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    audit.check_version("--since", opts.since)?;
    if let Some(u) = opts.until {
        audit.check_version("--until", u)?;
    }
    let notebook = opts
        .notebook
        .as_deref()
        .map(|p| audit.notebook(p))
        .transpose()?;
    let until = opts.until.unwrap_or(u64::MAX);
    for rec in audit.records(notebook.as_deref(), opts.since, until)? {
        let rec = rec?;
        if opts
            .client
            .as_deref()
            .is_some_and(|c| c != rec.event.client_name)
        {
            continue;
        }
        if opts.json {
            writeln!(out, "{}", json_line(&Value::Object(summary_json(&rec))))?;
        } else {
            writeln!(out, "{}", text_line(&rec.event, paint))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The distinct owners of the locks an event overrode, in order.
pub fn forced_owners(event: &Event) -> Vec<&str> {
    let mut owners: Vec<&str> = Vec::new();
    for (_, owner) in &event.overrode_locks {
        if !owners.contains(&owner.as_str()) {
            owners.push(owner);
        }
    }
    owners
}

/// Whether the event is a refused write kept for the audit.
pub fn is_rejected(event: &Event) -> bool {
    event.is_rejected()
}

/// The cells column: up to three ids, then how many more.
fn cells_column(ids: &[String]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    let mut s = ids.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if ids.len() > 3 {
        s.push_str(&format!(" +{}", ids.len() - 3));
    }
    s
}

/// One event as one line of text.
pub fn text_line(event: &Event, paint: Paint) -> String {
    let mut line = format!(
        "{}  {}  {}  {}  {}  {}  {}",
        paint.version(&format!("v{}", event.version)),
        rfc3339_ms(event.timestamp_ms),
        escape(&event.client_name),
        escape(&event.operation),
        escape(&event.paths.join(",")),
        escape(&cells_column(&event.cell_ids)),
        escape(&event.summary),
    );
    let owners = forced_owners(event);
    if !owners.is_empty() {
        line.push_str("  ");
        line.push_str(&paint.alert(&format!("FORCED over {}", escape(&owners.join(", ")))));
    }
    if is_rejected(event) {
        line.push_str("  ");
        line.push_str(&paint.alert("REJECTED"));
    }
    line
}

/// The fields `log --json` and `export` share (contract §7):
/// `version, timestamp, client_name, operation, paths, cell_ids, summary`,
/// `overrode_lock` (the owner of the first lock forced) and
/// `overrode_locks: [{cell_id, owner}]` when any lock was forced,
/// `rejected: true` for a refused write, then `hash` and `prev_hash` (hex).
pub fn summary_json(rec: &Record) -> Map<String, Value> {
    let e = &rec.event;
    let mut m = Map::new();
    m.insert("version".into(), json!(e.version));
    m.insert("timestamp".into(), json!(rfc3339_ms(e.timestamp_ms)));
    m.insert("client_name".into(), json!(e.client_name));
    m.insert("operation".into(), json!(e.operation));
    m.insert("paths".into(), json!(e.paths));
    m.insert("cell_ids".into(), json!(e.cell_ids));
    m.insert("summary".into(), json!(e.summary));
    if let Some((_, owner)) = e.overrode_locks.first() {
        m.insert("overrode_lock".into(), json!(owner));
        let all: Vec<Value> = e
            .overrode_locks
            .iter()
            .map(|(cell_id, owner)| json!({"cell_id": cell_id, "owner": owner}))
            .collect();
        m.insert("overrode_locks".into(), Value::Array(all));
    }
    if is_rejected(e) {
        m.insert("rejected".into(), json!(true));
    }
    m.insert("hash".into(), json!(hex(&rec.hash)));
    m.insert("prev_hash".into(), json!(hex(&rec.prev_hash)));
    m
}
