//! Audit command line benchmarks: `verify` and `show --at` on a large log
//! (events replayed per second), and `blame` on a cell with 10,000 edits.
//!
//! `cargo bench --bench audit`. The large log has 1M events by default;
//! building it takes about two minutes, so set NBLEDGER_BENCH_AUDIT_EVENTS
//! (e.g. 100000) for a quicker run. The library functions the commands
//! call are timed directly, without process start-up or output.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use indicatif::ProgressBar;
use nbledger::audit::{Audit, blame, show, verify};
use nbledger::events::{Cell, CellType, Change, Event, Header};
use nbledger::notebook::render_file;
use nbledger::projections::Workspace;
use nbledger::store::Store;

const NOTEBOOKS: u64 = 10;
const CELLS: u64 = 100;

fn header() -> Header {
    Header {
        nbformat: 4,
        nbformat_minor: 5,
        metadata: "{}".into(),
        extra: "{}".into(),
    }
}

fn src(n: u64) -> String {
    format!("x = {n}\nprint(x)\n")
}

/// Event `version` of a log spread over 10 notebooks of 100 cells, each
/// later event an edit of one cell's first line.
fn event(version: u64) -> Event {
    let nb = (version - 1) % NOTEBOOKS;
    let path = format!("nb{nb}.ipynb");
    let k = (version - 1) / NOTEBOOKS;
    let (changes, cell_ids) = if k == 0 {
        let mut c = vec![Change::NotebookCreated {
            path: path.clone(),
            header: header(),
        }];
        for i in 0..CELLS {
            c.push(Change::CellInserted {
                path: path.clone(),
                index: i as u32,
                cell: Arc::new(Cell::new(format!("c{i:07}"), CellType::Code, src(0), None)),
            });
        }
        (c, vec![])
    } else {
        let id = format!("c{:07}", k % CELLS);
        let n = k / CELLS;
        (
            vec![Change::SourceSet {
                path: path.clone(),
                cell_id: id.clone(),
                before: src(n),
                after: src(n + 1),
            }],
            vec![id],
        )
    };
    Event {
        version,
        timestamp_ms: 1_795_000_000_000 + version as i64,
        client_name: format!("agent-{}", version % 4),
        operation: if k == 0 {
            "create_notebook"
        } else {
            "update_cell"
        }
        .into(),
        paths: vec![path],
        cell_ids,
        overrode_locks: vec![],
        request_id: None,
        result: format!("{{\"version\":{version}}}"),
        summary: "set source".into(),
        changes,
        files: vec![],
    }
}

/// Appends events `1..=n` made by `make` with group commits, writes the
/// notebooks' files as the log says, and opens an audit on it.
fn build(n: u64, make: impl Fn(u64) -> Event) -> (tempfile::TempDir, Audit) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let data = root.join(".nbledger");
    let store = Store::open(&data).expect("open");
    let mut ws = Workspace::default();
    let mut v = 1;
    while v <= n {
        let batch: Vec<Event> = (v..=(v + 9_999).min(n)).map(&make).collect();
        for e in &batch {
            ws.apply_to_notebooks(e);
        }
        v += batch.len() as u64;
        store.append_batch(&batch).expect("append");
    }
    for nb in ws.notebooks.values() {
        std::fs::write(root.join(&nb.path), render_file(nb)).expect("write notebook");
    }
    let audit = Audit::with_store(store, &root, &data);
    (dir, audit)
}

fn events() -> u64 {
    std::env::var("NBLEDGER_BENCH_AUDIT_EVENTS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_000_000)
}

fn verify_and_show(c: &mut Criterion) {
    let n = events();
    let (_dir, audit) = build(n, event);
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("verify_{n}_events"), |b| {
        b.iter(|| {
            let r = verify::verify(&audit, &ProgressBar::hidden()).expect("verify");
            assert_eq!(r.exit_code(), 0, "{:?} {:?}", r.fault, r.file_diffs);
            r
        })
    });
    // show --at the head replays every event of one notebook (a tenth of
    // the log); the throughput counts those events.
    let path = "nb3.ipynb";
    let replayed = audit
        .store()
        .notebook_versions(path, 0, usize::MAX)
        .expect("index")
        .len() as u64;
    g.throughput(Throughput::Elements(replayed));
    g.bench_function(format!("show_at_head_{replayed}_of_{n}_events"), |b| {
        b.iter(|| {
            let nb = show::notebook_at(&audit, path, n).expect("show");
            render_file(&nb)
        })
    });
    g.finish();
}

/// A notebook with one 40-line cell edited 10,000 times, one line at a
/// time, by four clients in turn.
fn blame_event(version: u64) -> Event {
    const LINES: u64 = 40;
    let text = |edits: u64| -> String {
        // Line i holds the number of the last edit that touched it.
        (0..LINES)
            .map(|i| {
                let last = (0..=edits).rev().find(|e| e % LINES == i && *e > 0);
                format!("line {i} = {}\n", last.unwrap_or(0))
            })
            .collect()
    };
    let path = "blame.ipynb".to_string();
    let changes = if version == 1 {
        vec![
            Change::NotebookCreated {
                path: path.clone(),
                header: header(),
            },
            Change::CellInserted {
                path: path.clone(),
                index: 0,
                cell: Arc::new(Cell::new("cell0001".into(), CellType::Code, text(0), None)),
            },
        ]
    } else {
        vec![Change::SourceSet {
            path: path.clone(),
            cell_id: "cell0001".into(),
            before: text(version - 2),
            after: text(version - 1),
        }]
    };
    Event {
        version,
        timestamp_ms: 1_795_000_000_000 + version as i64,
        client_name: format!("agent-{}", version % 4),
        operation: "update_cell".into(),
        paths: vec![path],
        cell_ids: vec!["cell0001".into()],
        overrode_locks: vec![],
        request_id: None,
        result: String::new(),
        summary: "set source".into(),
        changes,
        files: vec![],
    }
}

fn blame_10k_edits(c: &mut Criterion) {
    let edits = 10_000;
    let (_dir, audit) = build(edits + 1, blame_event);
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(edits));
    g.bench_function("blame_cell_with_10000_edits", |b| {
        b.iter(|| {
            let bl = blame::blame(&audit, "blame.ipynb").expect("blame");
            assert_eq!(bl.cells[0].lines.len(), 40);
            bl
        })
    });
    g.finish();
}

criterion_group!(benches, blame_10k_edits, verify_and_show);
criterion_main!(benches);
