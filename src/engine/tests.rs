use super::*;
use std::fs;

use crate::events::OP_EXTERNAL;
use crate::files::temp_path;
use crate::tools::edit::{self, CellSpec};

type Call<'a> = Box<dyn FnOnce(&Engine) -> Answer + Send + 'a>;

fn open(root: &Path) -> Engine {
    Engine::open(root, &root.join(".nbledger")).unwrap()
}

fn actor(rid: Option<&str>) -> Actor {
    Actor {
        client_name: "agent".into(),
        request_id: rid.map(str::to_owned),
        named: true,
    }
}

fn create(engine: &Engine, path: &str, sources: &[&str]) -> Answer {
    let cells = sources
        .iter()
        .map(|s| CellSpec {
            source: (*s).to_owned(),
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
    edit::create_notebook(engine, args, &actor(None)).map(|(_, m)| m)
}

fn update(engine: &Engine, path: &str, index: i64, source: &str, rid: Option<&str>) -> Answer {
    let args = edit::UpdateArgs {
        path: path.into(),
        cell_id: None,
        index: Some(index),
        source: source.into(),
        expected_version: None,
        force: None,
        client_name: None,
        request_id: None,
        execute: None,
        timeout_s: None,
        max_output_chars: None,
        include_images: None,
    };
    edit::update_cell(engine, args, &actor(rid)).map(|(_, m)| m)
}

fn insert(engine: &Engine, path: &str, source: &str) -> Answer {
    let args = edit::InsertArgs {
        path: path.into(),
        source: source.into(),
        cell_type: None,
        index: None,
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
    edit::insert_cell(engine, args, &actor(None)).map(|(_, m)| m)
}

/// Runs `calls` as one batch, queued in this order: each runs on its
/// own thread while the test holds the mutex (the first caller leads
/// and waits for it), which it lets go once every job is queued.
fn one_batch(engine: &Engine, calls: Vec<Call<'_>>) -> Vec<Answer> {
    std::thread::scope(|s| {
        let held = engine.inner.lock();
        let mut running = Vec::new();
        for (queued, call) in calls.into_iter().enumerate() {
            running.push(s.spawn(move || call(engine)));
            while engine.queue.lock().jobs.len() <= queued {
                std::thread::yield_now();
            }
        }
        drop(held);
        running.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn version(answer: &Answer) -> u64 {
    answer.as_ref().unwrap()["version"].as_u64().unwrap()
}

fn events_after(engine: &Engine, head: u64) -> Vec<Event> {
    engine
        .store()
        .records(head + 1)
        .map(|r| r.unwrap().event)
        .collect()
}

/// Everything the log, the projection and the files must agree on.
fn assert_consistent(engine: &Engine, root: &Path) {
    let live = engine.workspace();
    let mut replayed = Workspace::default();
    for rec in engine.store().records(1) {
        replayed.apply(&rec.unwrap().event);
    }
    assert_eq!(replayed, live, "replay differs from the live state");
    assert_eq!(live.head, engine.store().head());
    assert_eq!(*engine.subscribe().borrow(), live.head);
    for (rel, nb) in &live.notebooks {
        let Ok(bytes) = fs::read(root.join(rel)) else {
            continue;
        };
        assert_eq!(
            bytes,
            notebook::render_file(nb),
            "{rel} differs from its state"
        );
        let file = nb.file.as_ref().unwrap();
        assert_eq!(*blake3::hash(&bytes).as_bytes(), file.after, "{rel}");
        assert!(!temp_path(&root.join(rel)).exists());
    }
}

#[test]
fn a_batch_appends_once_and_writes_each_file_once_from_its_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "a.ipynb", &["a0", "a1", "a2", "a3"]).unwrap();
    create(&engine, "b.ipynb", &["b0", "b1"]).unwrap();
    let head = engine.store().head();
    let hash_of = |p: &str| *blake3::hash(&fs::read(root.join(p)).unwrap()).as_bytes();
    let (a_before, b_before) = (hash_of("a.ipynb"), hash_of("b.ipynb"));

    let plan: Vec<(&str, i64)> = vec![
        ("a.ipynb", 0),
        ("b.ipynb", 0),
        ("a.ipynb", 1),
        ("a.ipynb", 2),
    ];
    let calls: Vec<Call> = plan
        .iter()
        .map(|&(p, i)| {
            Box::new(move |e: &Engine| update(e, p, i, &format!("{p} {i} new"), None)) as Call
        })
        .collect();
    let answers = one_batch(&engine, calls);

    let versions: Vec<u64> = answers.iter().map(version).collect();
    assert_eq!(versions, (head + 1..=head + 4).collect::<Vec<_>>());
    let events = events_after(&engine, head);
    assert_eq!(events.len(), 4);
    // b's file record rides on its only event, a's on its last one.
    let files: Vec<Vec<(String, Option<Hash>, bool)>> = events
        .iter()
        .map(|e| {
            e.files
                .iter()
                .map(|f| (f.path.clone(), f.before, f.written))
                .collect()
        })
        .collect();
    assert_eq!(
        files,
        vec![
            vec![],
            vec![("b.ipynb".to_owned(), Some(b_before), true)],
            vec![],
            vec![("a.ipynb".to_owned(), Some(a_before), true)],
        ]
    );
    assert_eq!(events[3].files[0].after, hash_of("a.ipynb"));
    let ws = engine.workspace();
    let sources: Vec<&str> = ws.notebooks["a.ipynb"]
        .cells
        .iter()
        .map(|c| c.cell.source.as_str())
        .collect();
    assert_eq!(
        sources,
        vec!["a.ipynb 0 new", "a.ipynb 1 new", "a.ipynb 2 new", "a3"]
    );
    assert_consistent(&engine, root);
}

#[test]
fn a_notebook_created_in_a_batch_takes_edits_and_refuses_a_second_create() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    let calls: Vec<Call> = vec![
        Box::new(|e: &Engine| create(e, "c.ipynb", &["first"])),
        // No file yet: the staged create must count as the notebook.
        Box::new(|e: &Engine| insert(e, "c.ipynb", "second")),
        Box::new(|e: &Engine| create(e, "c.ipynb", &["again"])),
        Box::new(|e: &Engine| update(e, "c.ipynb", 0, "first, edited", None)),
    ];
    let answers = one_batch(&engine, calls);
    assert_eq!(version(&answers[0]), 1);
    assert_eq!(version(&answers[1]), 2);
    assert_eq!(answers[2].as_ref().unwrap_err().code, "exists");
    assert_eq!(version(&answers[3]), 3);
    let events = events_after(&engine, 0);
    assert_eq!(events.len(), 3);
    assert!(events[..2].iter().all(|e| e.files.is_empty()));
    assert_eq!(events[2].files[0].before, None);
    let ws = engine.workspace();
    let sources: Vec<&str> = ws.notebooks["c.ipynb"]
        .cells
        .iter()
        .map(|c| c.cell.source.as_str())
        .collect();
    assert_eq!(sources, vec!["first, edited", "second"]);
    assert_consistent(&engine, root);
}

#[test]
fn a_request_id_repeated_within_a_batch_answers_its_first_result() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "a.ipynb", &["x"]).unwrap();
    let head = engine.store().head();
    let calls: Vec<Call> = vec![
        Box::new(|e: &Engine| update(e, "a.ipynb", 0, "one", Some("r1"))),
        Box::new(|e: &Engine| update(e, "a.ipynb", 0, "two", Some("r1"))),
    ];
    let answers = one_batch(&engine, calls);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(version(&answers[0]), head + 1);
    assert_eq!(engine.store().head(), head + 1);
    // And once durable, from the log.
    assert_eq!(
        update(&engine, "a.ipynb", 0, "three", Some("r1")),
        answers[0]
    );
    assert_eq!(
        engine.workspace().notebooks["a.ipynb"].cells[0].cell.source,
        "one"
    );
    assert_consistent(&engine, root);
}

#[test]
fn a_failed_file_write_drops_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "a.ipynb", &["a0"]).unwrap();
    create(&engine, "b.ipynb", &["b0"]).unwrap();
    let head = engine.store().head();
    // An outside edit of a, taken in by the batch (and dropped with it).
    let outside = fs::read_to_string(root.join("a.ipynb"))
        .unwrap()
        .replace("\"a0\"", "\"a0 outside\"");
    fs::write(root.join("a.ipynb"), &outside).unwrap();
    // b's temp file cannot be created.
    let blocker = temp_path(&root.join("b.ipynb"));
    fs::create_dir(&blocker).unwrap();

    let calls: Vec<Call> = vec![
        // Refused before anything is staged: keeps its own answer.
        Box::new(|e: &Engine| update(e, "b.ipynb", 9, "no such cell", None)),
        Box::new(|e: &Engine| update(e, "a.ipynb", 0, "a0 new", None)),
        Box::new(|e: &Engine| update(e, "b.ipynb", 0, "b0 new", None)),
        // Refused against a staged state: withdrawn with the batch.
        Box::new(|e: &Engine| update(e, "a.ipynb", 9, "no such cell", None)),
    ];
    let answers = one_batch(&engine, calls);
    assert_eq!(answers[0].as_ref().unwrap_err().code, "not_found");
    for a in &answers[1..] {
        let e = a.as_ref().unwrap_err();
        assert_eq!(e.code, "internal", "{e}");
        assert!(e.message.contains("can be retried"), "{e}");
    }
    assert_eq!(engine.store().head(), head);
    assert_eq!(engine.workspace().head, head);
    assert_eq!(fs::read_to_string(root.join("a.ipynb")).unwrap(), outside);
    assert!(!temp_path(&root.join("a.ipynb")).exists());

    fs::remove_dir(&blocker).unwrap();
    let v = version(&update(&engine, "a.ipynb", 0, "a0 new", None));
    // The outside edit is seen again and recorded before the write.
    let events = events_after(&engine, head);
    let ops: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(ops, vec![OP_EXTERNAL, "update_cell"]);
    assert_eq!(v, head + 2);
    version(&update(&engine, "b.ipynb", 0, "b0 new", None));
    assert_consistent(&engine, root);
}

#[test]
fn a_notebook_with_a_staged_write_is_not_synced_within_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "a.ipynb", &["a0"]).unwrap();
    let head = engine.store().head();
    let calls: Vec<Call> = vec![
        Box::new(|e: &Engine| update(e, "a.ipynb", 0, "staged", None)),
        // The file is still the pre-batch one; diffing it against the
        // staged state would record a change undoing "staged".
        Box::new(|e: &Engine| {
            e.submit(Box::new(|e, _| {
                let abs = e.root.path().join("a.ipynb");
                let text = fs::read_to_string(&abs).unwrap();
                fs::write(&abs, text.replace("\"a0\"", "\"a0 outside\"")).unwrap();
                Ok(Map::new())
            }))
        }),
        Box::new(|e: &Engine| insert(e, "a.ipynb", "after")),
    ];
    let answers = one_batch(&engine, calls);
    assert!(answers.iter().all(Result::is_ok));
    let ops: Vec<String> = events_after(&engine, head)
        .into_iter()
        .map(|e| e.operation)
        .collect();
    // Not within the batch; after it, the outside edit is a save that
    // landed between the check and the swap, taken in with the write
    // kept over it (§8.8).
    assert_eq!(
        ops,
        vec![
            "update_cell",
            "insert_cell",
            "external_change",
            "keep_write"
        ]
    );
    let ws = engine.workspace();
    let sources: Vec<&str> = ws.notebooks["a.ipynb"]
        .cells
        .iter()
        .map(|c| c.cell.source.as_str())
        .collect();
    assert_eq!(sources, vec!["staged", "after"]);
    assert_consistent(&engine, root);
}

#[test]
fn a_failed_flush_answers_unknown_and_the_engine_serves_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let engine = open(root);
    create(&engine, "a.ipynb", &["x"]).unwrap();
    engine
        .store()
        .fail_flushes
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let e = update(&engine, "a.ipynb", 0, "y", Some("r1")).unwrap_err();
    assert_eq!(e.code, "unavailable");
    assert_eq!(e.details["outcome"], "unknown");
    assert_eq!(e.details["retryable"], true);
    assert!(engine.store().failed());
    // Neither writes nor reads: the projection may hold what the disk
    // does not.
    let e = update(&engine, "a.ipynb", 0, "z", None).unwrap_err();
    assert_eq!(e.code, "unavailable");
    assert!(e.details.get("outcome").is_none(), "nothing was tried");
    let e = engine.read("a.ipynb", |_| Ok(())).unwrap_err();
    assert_eq!(e.code, "unavailable");
    // The file was never swapped: it still holds the last durable state.
    let file = fs::read_to_string(root.join("a.ipynb")).unwrap();
    assert!(file.contains("\"x\""), "{file}");
}
