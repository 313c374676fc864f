//! The forensic view's server time on a large log (contract §11: a page
//! over a million events opens in under a second; our target is 300 ms of
//! server time for the timeline's first page, an event page and a notebook
//! at a version).
//!
//! `cargo bench --bench ui`. The log has 1M events by default over 100
//! notebooks of 50 cells by four clients (building it takes a few
//! minutes); NBLEDGER_BENCH_UI_EVENTS=100000 for a quicker run. A
//! projection checkpoint is stored at the head, as a clean stop leaves
//! one. Pages are rendered by `ui::respond` (routing, store reads, replay,
//! HTML), without the socket. The first, cold request of each page is
//! printed too.

#[path = "../tests/ui_log/mod.rs"]
mod ui_log;

use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use nbledger::audit::Audit;
use nbledger::store::Store;
use nbledger::ui::{FixedLog, respond};

fn pages(c: &mut Criterion) {
    let n: u64 = std::env::var("NBLEDGER_BENCH_UI_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let t = Instant::now();
    let data = ui_log::large(&root, n, 100, 50);
    eprintln!("built a {n}-event log in {:.1?}", t.elapsed());
    let store = Store::open(&data).unwrap();
    let t = Instant::now();
    let (ws, _, done) = nbledger::replay::workspace(&store);
    done.unwrap();
    nbledger::replay::put_checkpoint(&store, store.head_hash(), ws).unwrap();
    eprintln!("checkpoint at the head in {:.1?}", t.elapsed());
    let log = FixedLog(Arc::new(Audit::with_store(store, &root, &data)));
    let mid = n / 2;
    let cases: Vec<(&str, String)> = vec![
        ("timeline first page", "/".into()),
        ("timeline of one notebook", "/?nb=nb7.ipynb".into()),
        (
            "timeline of one cell",
            "/?nb=nb7.ipynb&cell=c0000001".into(),
        ),
        ("timeline by client (envelope scan)", "/?client=bob".into()),
        (
            "timeline by operation, rare (scan budget)",
            "/?op=lock_cells".into(),
        ),
        (
            "timeline by time range",
            "/?since=2026-11-23T20:30&until=2026-11-23T20:31".into(),
        ),
        ("timeline deep page", format!("/?before={mid}")),
        ("event page", format!("/event/{mid}")),
        ("notebook at head", "/notebook?path=nb7.ipynb".into()),
        (
            "notebook at a middle version (before the checkpoint)",
            format!("/notebook?path=nb7.ipynb&v={mid}"),
        ),
        ("blame of a notebook", "/blame?path=nb7.ipynb".into()),
        ("activity (1000 events)", "/activity".into()),
    ];
    for (name, target) in &cases {
        let t = Instant::now();
        let r = respond(&log, "GET", target);
        assert_eq!(r.status, 200, "{target}: {}", r.body);
        eprintln!("cold {name}: {:.1?} ({} bytes)", t.elapsed(), r.body.len());
    }
    let mut g = c.benchmark_group(format!("ui_{n}"));
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(3));
    for (name, target) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let r = respond(&log, "GET", target);
                assert_eq!(r.status, 200);
                r.body.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
