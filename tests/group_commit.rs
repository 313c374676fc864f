//! Many threads writing at once (group commit): every answer is a distinct
//! durable version, the versions are gap-free, the files hold the state and
//! replaying the log gives the live projection.

use std::collections::BTreeSet;
use std::path::Path;

use nbledger::engine::{Actor, Engine};
use nbledger::notebook;
use nbledger::projections::Workspace;
use nbledger::tools::edit::{self, CellSpec};
use nbledger::tools::transfer;
use serde_json::{Map, Value};

const THREADS: usize = 16;
const WRITES: usize = 25;

fn actor(name: &str, rid: Option<String>) -> Actor {
    Actor {
        client_name: name.to_owned(),
        request_id: rid,
        named: true,
    }
}

fn create(engine: &Engine, path: &str, cells: usize) {
    let cells = (0..cells)
        .map(|i| CellSpec {
            source: format!("cell {i}"),
            cell_type: None,
            metadata: None,
        })
        .collect();
    let args = edit::CreateArgs {
        path: path.into(),
        cells: Some(cells),
        kernel_name: None,
        client_name: None,
        request_id: None,
    };
    edit::create_notebook(engine, args, &actor("setup", None)).unwrap();
}

fn update(
    engine: &Engine,
    path: &str,
    cell_id: &str,
    source: String,
    who: &Actor,
) -> Map<String, Value> {
    let args = edit::UpdateArgs {
        path: path.into(),
        cell_id: Some(cell_id.into()),
        index: None,
        source,
        expected_version: None,
        force: None,
        client_name: None,
        request_id: None,
        execute: None,
        timeout_s: None,
        max_output_chars: None,
        include_images: None,
    };
    edit::update_cell(engine, args, who).unwrap().1
}

fn insert(engine: &Engine, path: &str, source: String, who: &Actor) -> Map<String, Value> {
    let args = edit::InsertArgs {
        path: path.into(),
        source,
        cell_type: None,
        index: Some(0),
        after_cell_id: None,
        before_cell_id: None,
        metadata: None,
        lock: None,
        ttl_seconds: None,
        client_name: None,
        request_id: None,
        execute: None,
        timeout_s: None,
        max_output_chars: None,
        include_images: None,
    };
    edit::insert_cell(engine, args, who).unwrap().1
}

fn version(answer: &Map<String, Value>) -> u64 {
    answer["version"].as_u64().unwrap()
}

/// The versions returned, checked distinct and, with the head before,
/// exactly the log's tail.
fn assert_gap_free(engine: &Engine, head: u64, returned: &[u64]) {
    let distinct: BTreeSet<u64> = returned.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        returned.len(),
        "a version was returned twice"
    );
    let expected: BTreeSet<u64> = (head + 1..=engine.store().head()).collect();
    assert_eq!(distinct, expected);
    let logged: Vec<u64> = engine
        .store()
        .records(1)
        .map(|r| r.unwrap().event.version)
        .collect();
    assert_eq!(logged, (1..=engine.store().head()).collect::<Vec<_>>());
}

fn assert_consistent(engine: &Engine, root: &Path) {
    let live = engine.workspace();
    let mut replayed = Workspace::default();
    for rec in engine.store().records(1) {
        replayed.apply(&rec.unwrap().event);
    }
    assert_eq!(replayed, live, "replay differs from the live state");
    for (rel, nb) in &live.notebooks {
        let bytes = std::fs::read(root.join(rel)).unwrap();
        assert_eq!(
            bytes,
            notebook::render_file(nb),
            "{rel} differs from its state"
        );
        assert_eq!(
            *blake3::hash(&bytes).as_bytes(),
            nb.file.as_ref().unwrap().after,
            "{rel}: the last file record is not the file"
        );
    }
}

fn open(root: &Path) -> Engine {
    Engine::open(root, &root.join(".nbledger")).unwrap()
}

#[test]
fn concurrent_writers_on_one_notebook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "n.ipynb", THREADS);
    let head = engine.store().head();
    let ids: Vec<String> = engine.workspace().notebooks["n.ipynb"]
        .cells
        .iter()
        .map(|c| c.cell.id.clone())
        .collect();
    let returned: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (engine, id) = (&engine, ids[t].as_str());
                s.spawn(move || {
                    let who = actor(&format!("agent-{t}"), None);
                    (0..WRITES)
                        .map(|i| {
                            let answer = if i % 5 == 4 {
                                insert(engine, "n.ipynb", format!("new {t}.{i}"), &who)
                            } else {
                                update(engine, "n.ipynb", id, format!("{t}.{i}"), &who)
                            };
                            version(&answer)
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(returned.len(), THREADS * WRITES);
    assert_gap_free(&engine, head, &returned);
    let live = engine.workspace();
    let nb = &live.notebooks["n.ipynb"];
    assert_eq!(nb.cells.len(), THREADS + THREADS * WRITES / 5);
    // Each thread's cell holds its last update.
    for (t, id) in ids.iter().enumerate() {
        let cell = &nb.cells[nb.position(id).unwrap()].cell;
        assert_eq!(cell.source, format!("{t}.{}", WRITES - 2));
    }
    assert_consistent(&engine, root);
    drop(engine);
    assert_eq!(open(root).workspace(), live, "state after restart differs");
}

#[test]
fn concurrent_writers_on_several_notebooks_with_moves_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    let paths = ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"];
    for p in paths {
        create(&engine, p, 4);
    }
    let head = engine.store().head();
    let returned: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let engine = &engine;
                s.spawn(move || {
                    let who = actor(&format!("agent-{t}"), None);
                    let mine = paths[t % paths.len()];
                    let other = paths[(t + 1) % paths.len()];
                    let mut versions = Vec::new();
                    for i in 0..WRITES {
                        let answer = match i % 3 {
                            0 | 1 => insert(engine, mine, format!("{t}.{i}"), &who),
                            _ => {
                                // Move the cell this thread inserted last
                                // (at index 0 of its notebook, unless
                                // another thread inserted since: then by id).
                                let id = engine.with_workspace(|ws| {
                                    ws.notebooks[mine]
                                        .cells
                                        .iter()
                                        .find(|c| c.cell.source == format!("{t}.{}", i - 1))
                                        .map(|c| c.cell.id.clone())
                                        .unwrap()
                                });
                                let args = transfer::TransferArgs {
                                    source_path: mine.into(),
                                    dest_path: Some(other.into()),
                                    cell_ids: Some(vec![id]),
                                    cell_id: None,
                                    dest_cell_id: None,
                                    dest_index: None,
                                    force: None,
                                    client_name: None,
                                    request_id: None,
                                };
                                transfer::move_cells(engine, args, &who).unwrap().1
                            }
                        };
                        versions.push(version(&answer));
                    }
                    versions
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_gap_free(&engine, head, &returned);
    let live = engine.workspace();
    let cells: usize = paths.iter().map(|p| live.notebooks[*p].cells.len()).sum();
    let inserts = THREADS * (0..WRITES).filter(|i| i % 3 != 2).count();
    assert_eq!(cells, paths.len() * 4 + inserts);
    assert_consistent(&engine, root);
    drop(engine);
    assert_eq!(open(root).workspace(), live, "state after restart differs");
}

#[test]
fn a_request_id_issued_concurrently_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "n.ipynb", 1);
    let head = engine.store().head();
    let answers: Vec<Map<String, Value>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let engine = &engine;
                s.spawn(move || {
                    let who = actor("agent", Some("same-request".into()));
                    // Each would insert its own cell if it ran.
                    insert(engine, "n.ipynb", format!("from thread {t}"), &who)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| *a == answers[0]));
    assert_eq!(version(&answers[0]), head + 1);
    assert_eq!(engine.store().head(), head + 1);
    assert_eq!(engine.workspace().notebooks["n.ipynb"].cells.len(), 2);
    assert_consistent(&engine, root);
}
