//! Store and projection benchmarks: durable append, "changes of notebook P
//! after V" as the log grows, and full replay.
//!
//! `cargo bench --bench store` (set NBLEDGER_BENCH_SIZES=10000,100000 to
//! skip the 1M-event log, which takes about a minute to build).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nbledger::events::{Cell, CellType, Change, Event, Header};
use nbledger::projections::Workspace;
use nbledger::store::Store;

const NOTEBOOKS: usize = 10;

fn path(n: usize) -> String {
    format!("nb{n}.ipynb")
}

fn event(version: u64, kind: u64) -> Event {
    let p = path((version as usize) % NOTEBOOKS);
    let cell_id = format!("c{:07}", kind % 100);
    let changes = if version as usize <= NOTEBOOKS {
        let mut c = vec![Change::NotebookCreated {
            path: p.clone(),
            header: Header {
                nbformat: 4,
                nbformat_minor: 5,
                metadata: "{}".into(),
                extra: "{}".into(),
            },
        }];
        for i in 0..100 {
            c.push(Change::CellInserted {
                path: p.clone(),
                index: i,
                cell: Arc::new(Cell::new(
                    format!("c{i:07}"),
                    CellType::Code,
                    format!("x = {i}\n"),
                    None,
                )),
            });
        }
        c
    } else {
        vec![Change::SourceSet {
            path: p.clone(),
            cell_id: cell_id.clone(),
            before: format!("x = {}\n", kind.saturating_sub(1)),
            after: format!("x = {kind}\nprint(x)\n"),
        }]
    };
    Event {
        version,
        timestamp_ms: 1_795_000_000_000 + version as i64,
        client_name: format!("agent-{}", version % 4),
        operation: "update_cell".into(),
        paths: vec![p],
        cell_ids: vec![cell_id],
        overrode_locks: vec![],
        request_id: None,
        result: format!("{{\"version\":{version}}}"),
        summary: "set source".into(),
        changes,
        files: vec![],
    }
}

/// A log of `n` events, built with group commits.
fn build(n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut v = 1;
    while v <= n {
        let batch: Vec<Event> = (v..=(v + 9_999).min(n)).map(|k| event(k, k)).collect();
        v += batch.len() as u64;
        store.append_batch(&batch).expect("append");
    }
    (dir, store)
}

fn sizes() -> Vec<u64> {
    std::env::var("NBLEDGER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("durable_one_event", |b| {
        let (_dir, store) = build(NOTEBOOKS as u64);
        let mut v = store.head();
        b.iter(|| {
            v += 1;
            store.append(&event(v, v)).expect("append");
        });
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("group_commit_64_events", |b| {
        let (_dir, store) = build(NOTEBOOKS as u64);
        let mut v = store.head();
        b.iter(|| {
            let batch: Vec<Event> = (v + 1..=v + 64).map(|k| event(k, k)).collect();
            v += 64;
            store.append_batch(&batch).expect("append");
        });
    });
    g.finish();
}

fn changes_after(c: &mut Criterion) {
    let mut g = c.benchmark_group("changes_after_v");
    for n in sizes() {
        let (_dir, store) = build(n);
        let head = store.head();
        // The newest 100 changes of one notebook: what a polling agent asks.
        let since = head - 100 * NOTEBOOKS as u64;
        g.bench_function(format!("log_{n}"), |b| {
            b.iter(|| {
                let versions = store.notebook_versions(&path(3), since, 100).expect("scan");
                assert_eq!(versions.len(), 100);
                for v in versions {
                    std::hint::black_box(store.head_of(v).expect("read"));
                }
            })
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    let n = 100_000;
    let (_dir, store) = build(n);
    g.throughput(Throughput::Elements(n));
    g.bench_function("full_100k_events", |b| {
        b.iter_batched(
            Workspace::default,
            |mut ws| {
                for rec in store.records(1) {
                    ws.apply(&rec.expect("record").event);
                }
                assert_eq!(ws.head, n);
                ws
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Start-up of the engine on a 1M-event log: a full replay (no checkpoint)
/// and from a checkpoint (what a clean stop leaves).
fn startup(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    let n = *sizes().last().unwrap_or(&1_000_000);
    let (dir, store) = build(n);
    drop(store);
    let root = tempfile::tempdir().expect("root");
    let data = dir.path();
    let clear = || {
        let s = Store::open(data).expect("open");
        s.put_checkpoint(b"").expect("clear");
        s.flush().expect("flush");
    };
    g.bench_function(format!("full_replay_{n}"), |b| {
        b.iter_batched(
            clear,
            |_| {
                let e = nbledger::engine::Engine::open(root.path(), data).expect("open");
                assert_eq!(e.store().head(), n);
                // Returned, so the checkpoint its drop writes is not timed.
                e
            },
            BatchSize::PerIteration,
        )
    });
    // The first open leaves a checkpoint behind on drop.
    clear();
    drop(nbledger::engine::Engine::open(root.path(), data).expect("open"));
    g.bench_function(format!("from_checkpoint_{n}"), |b| {
        b.iter(|| {
            let e = nbledger::engine::Engine::open(root.path(), data).expect("open");
            assert_eq!(e.store().head(), n);
            e
        })
    });
    g.finish();
}

criterion_group!(benches, append, changes_after, replay, startup);
criterion_main!(benches);
