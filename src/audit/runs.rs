//! `nbledger runs`: every run on record, newest first — who ran what, on
//! which kernel, how it ended, how long it took and what it printed (§9.2).
//!
//! The run table is the projection's own ([`Workspace::apply_global`]
//! folds runs without the notebooks around them), so only the selected
//! notebook's events are read. A run the log has no end for is `queued`:
//! whether a kernel is running it now is the server's to tell.
//!
//! Text: `<run_id>  <queued at>  <client>  <path>  <cell|code>  <status>
//! [<count>]  <duration>` then the source's first line and up to
//! [`EXCERPT_LINES`] lines of what it printed, every field escaped.
//! `--json`: one object per run with its outputs as nbformat.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::text::{Paint, escape, json_line, rfc3339_ms};
use super::{Audit, AuditError};
use crate::kernels::strip_ansi;
use crate::projections::{RunRecord, Workspace};

/// Lines of output shown under a run in text.
pub const EXCERPT_LINES: usize = 4;

/// The runs of `notebook` (or of every notebook), newest first.
pub fn runs(audit: &Audit, notebook: Option<&str>) -> Result<Vec<RunRecord>, AuditError> {
    let notebook = notebook.map(|p| audit.notebook(p)).transpose()?;
    let mut ws = Workspace::default();
    for rec in audit.records(notebook.as_deref(), 0, u64::MAX)? {
        let rec = rec?;
        ws.apply_global(&rec.event);
    }
    let mut out: Vec<RunRecord> = ws.runs.into_values().collect();
    out.sort_by(|a, b| b.version.cmp(&a.version).then(b.run_id.cmp(&a.run_id)));
    Ok(out)
}

/// Prints the runs.
pub fn run(
    audit: &Audit,
    notebook: Option<&str>,
    as_json: bool,
    paint: Paint,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    for r in runs(audit, notebook)? {
        if as_json {
            writeln!(out, "{}", json_line(&Value::Object(run_json(&r))))?;
            continue;
        }
        let cell = r.cell_id.as_deref().unwrap_or("code");
        let count = r
            .execution_count
            .map_or(String::new(), |n| format!(" [{n}]"));
        let took = r
            .duration_ms
            .map_or("-".to_owned(), |ms| format!("{ms} ms"));
        let status = match r.status.as_str() {
            "ok" | "queued" => r.status.clone(),
            other => paint.alert(other),
        };
        writeln!(
            out,
            "{}  {}  {}  {}  {}  {status}{count}  {took}",
            paint.version(&r.run_id),
            rfc3339_ms(r.queued_at),
            escape(&r.client_name),
            escape(&r.path),
            escape(cell),
        )?;
        let first = r.source.lines().next().unwrap_or("");
        writeln!(out, "    {} {}", paint.dim("ran:"), escape(first))?;
        for line in excerpt(&r.outputs, EXCERPT_LINES) {
            writeln!(out, "    {} {}", paint.dim("|"), escape(&line))?;
        }
        if let Some(why) = &r.reason {
            writeln!(out, "    {} {}", paint.dim("why:"), escape(why))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A run as JSON: the `run` of `get_run` (times as RFC 3339), plus the
/// event that accepted it.
pub fn run_json(r: &RunRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("run_id".into(), json!(r.run_id));
    m.insert("version".into(), json!(r.version));
    m.insert("path".into(), json!(r.path));
    if let Some(c) = &r.cell_id {
        m.insert("cell_id".into(), json!(c));
    }
    m.insert("client_name".into(), json!(r.client_name));
    m.insert("status".into(), json!(r.status));
    m.insert("kernel_name".into(), json!(r.kernel_name));
    m.insert("source".into(), json!(r.source));
    m.insert("source_version".into(), json!(r.source_version));
    if let Some(n) = r.execution_count {
        m.insert("execution_count".into(), json!(n));
    }
    m.insert("queued_at".into(), json!(rfc3339_ms(r.queued_at)));
    for (key, at) in [("started_at", r.started_at), ("finished_at", r.finished_at)] {
        if let Some(t) = at {
            m.insert(key.into(), json!(rfc3339_ms(t)));
        }
    }
    if let Some(ms) = r.duration_ms {
        m.insert("duration_ms".into(), json!(ms));
    }
    if r.truncated {
        m.insert("truncated".into(), json!(true));
    }
    if let Some(why) = &r.reason {
        m.insert("reason".into(), json!(why));
    }
    let outputs: Value = serde_json::from_str(&r.outputs).unwrap_or(Value::Array(Vec::new()));
    m.insert("outputs".into(), outputs);
    m
}

/// Up to `max` lines of what a run printed: stream text, plain-text
/// results, `ename: evalue` for errors, `<mime>` for other data.
pub fn excerpt(outputs: &str, max: usize) -> Vec<String> {
    let Ok(Value::Array(outputs)) = serde_json::from_str::<Value>(outputs) else {
        return Vec::new();
    };
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        }
    };
    let mut lines = Vec::new();
    for o in &outputs {
        let chunk = match o["output_type"].as_str() {
            Some("stream") => text(&o["text"]),
            Some("error") => format!(
                "{}: {}",
                o["ename"].as_str().unwrap_or("Error"),
                o["evalue"].as_str().unwrap_or("")
            ),
            Some(_) => match o["data"].get("text/plain") {
                Some(t) => text(t),
                None => o["data"]
                    .as_object()
                    .and_then(|d| d.keys().next())
                    .map_or(String::new(), |k| format!("<{k}>")),
            },
            None => String::new(),
        };
        lines.extend(strip_ansi(&chunk).lines().map(str::to_owned));
    }
    let total = lines.len();
    if total > max {
        lines.truncate(max);
        lines.push(format!("… {} more line(s)", total - max));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_reads_streams_results_and_errors_and_says_what_it_left() {
        let outputs = json!([
            {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]},
            {"output_type": "execute_result", "data": {"text/plain": "'x'"}, "metadata": {}, "execution_count": 1},
            {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}},
            {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["\u{1b}[31mboom"]}
        ])
        .to_string();
        assert_eq!(
            excerpt(&outputs, 10),
            vec![
                "a",
                "b",
                "'x'",
                "<image/png>",
                "ZeroDivisionError: division by zero"
            ]
        );
        assert_eq!(excerpt(&outputs, 2), vec!["a", "b", "… 3 more line(s)"]);
        assert!(excerpt("not json", 3).is_empty());
    }
}
