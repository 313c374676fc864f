//! Property: replaying the log from scratch gives exactly the live state,
//! and the file on disk always holds that state.

use std::path::Path;

use nbledger::engine::{Actor, Engine};
use nbledger::ipynb;
use nbledger::projections::Workspace;
use nbledger::tools::edit::{self, CellSpec};
use nbledger::tools::{locks, metadata, replace, revert, snapshots, transfer};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        at: usize,
        source: String,
        markdown: bool,
    },
    BatchInsert {
        at: usize,
        n: usize,
    },
    Update {
        cell: usize,
        source: String,
        cas: bool,
    },
    BatchUpdate {
        cells: Vec<usize>,
        source: String,
    },
    Delete {
        cell: usize,
    },
    DeleteMany {
        cells: Vec<usize>,
    },
    Retype {
        cell: usize,
        to: u8,
    },
    /// Someone edits the file outside: a source change and a removal.
    Outside {
        cell: usize,
        source: String,
        drop: bool,
    },
    Lock {
        cells: Vec<usize>,
        ttl: u64,
    },
    Unlock {
        cell: Option<usize>,
        force: bool,
    },
    Snapshot {
        name: u8,
    },
    Restore {
        name: u8,
        force: bool,
    },
    Recover {
        which: usize,
    },
    /// Within n.ipynb, or out to m.ipynb and back.
    Move {
        cells: Vec<usize>,
        at: usize,
        across: bool,
        force: bool,
    },
    Restart,
    /// Metadata merge with a tag, or a tag removed (§10).
    Tag {
        cell: usize,
        tag: u8,
        remove: bool,
    },
    /// A cell set back to its content at an earlier version (§10).
    Revert {
        cell: usize,
        back: u64,
    },
    /// A regex replace over every cell, forced or not (§10).
    Replace {
        pattern: u8,
        with: String,
        force: bool,
    },
    DeleteSnapshot {
        name: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let src = "[a-z =\n#]{0,12}";
    prop_oneof![
        3 => (any::<usize>(), src, any::<bool>()).prop_map(|(at, source, markdown)| Op::Insert { at, source, markdown }),
        1 => (any::<usize>(), 1usize..4).prop_map(|(at, n)| Op::BatchInsert { at, n }),
        4 => (any::<usize>(), src, any::<bool>()).prop_map(|(cell, source, cas)| Op::Update { cell, source, cas }),
        1 => (proptest::collection::vec(any::<usize>(), 1..4), src).prop_map(|(cells, source)| Op::BatchUpdate { cells, source }),
        1 => any::<usize>().prop_map(|cell| Op::Delete { cell }),
        1 => proptest::collection::vec(any::<usize>(), 1..3).prop_map(|cells| Op::DeleteMany { cells }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(cell, to)| Op::Retype { cell, to }),
        1 => (any::<usize>(), src, any::<bool>()).prop_map(|(cell, source, drop)| Op::Outside { cell, source, drop }),
        2 => (proptest::collection::vec(any::<usize>(), 1..3), 1u64..3).prop_map(|(cells, ttl)| Op::Lock { cells, ttl: ttl * 600 }),
        1 => (proptest::option::of(any::<usize>()), any::<bool>()).prop_map(|(cell, force)| Op::Unlock { cell, force }),
        1 => (0u8..3).prop_map(|name| Op::Snapshot { name }),
        1 => (0u8..3, any::<bool>()).prop_map(|(name, force)| Op::Restore { name, force }),
        1 => any::<usize>().prop_map(|which| Op::Recover { which }),
        2 => (proptest::collection::vec(any::<usize>(), 1..3), any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(cells, at, across, force)| Op::Move { cells, at, across, force }),
        1 => Just(Op::Restart),
        1 => (any::<usize>(), 0u8..3, any::<bool>()).prop_map(|(cell, tag, remove)| Op::Tag { cell, tag, remove }),
        1 => (any::<usize>(), 1u64..6).prop_map(|(cell, back)| Op::Revert { cell, back }),
        1 => (0u8..3, "[a-z#]{0,3}", any::<bool>()).prop_map(|(pattern, with, force)| Op::Replace { pattern, with, force }),
        1 => (0u8..3).prop_map(|name| Op::DeleteSnapshot { name }),
    ]
}

fn ids(engine: &Engine) -> Vec<String> {
    engine.workspace().notebooks["n.ipynb"]
        .cells
        .iter()
        .map(|c| c.cell.id.clone())
        .collect()
}

fn pick(ids: &[String], k: usize) -> Option<String> {
    (!ids.is_empty()).then(|| ids[k % ids.len()].clone())
}

fn apply(engine: &Engine, root: &Path, op: &Op, step: usize) {
    let actor = Actor {
        client_name: format!("agent-{}", step % 3),
        request_id: None,
        named: true,
    };
    let cur = ids(engine);
    let head = engine.store().head();
    // Refusals are fine (e.g. a stale CAS token); they must change nothing,
    // which the replay comparison checks too.
    let _ = match op.clone() {
        Op::Insert {
            at,
            source,
            markdown,
        } => edit::insert_cell(
            engine,
            edit::InsertArgs {
                path: "n.ipynb".into(),
                source,
                cell_type: Some(if markdown { "markdown" } else { "code" }.into()),
                index: Some((at % (cur.len() + 1)) as i64),
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
            },
            &actor,
        ),
        Op::BatchInsert { at, n } => edit::batch_insert_cells(
            engine,
            edit::BatchInsertArgs {
                path: "n.ipynb".into(),
                cells: (0..n)
                    .map(|i| CellSpec {
                        source: format!("b{step}-{i}"),
                        cell_type: None,
                        metadata: None,
                    })
                    .collect(),
                index: None,
                after_cell_id: pick(&cur, at),
                before_cell_id: None,
                // Cells born locked (§10) replay like any lock.
                lock: Some(n == 2),
                ttl_seconds: None,
                client_name: None,
                request_id: None,
                execute: None,
                timeout_s: None,
                max_output_chars: None,
                include_images: None,
            },
            &actor,
        ),
        Op::Update { cell, source, cas } => match pick(&cur, cell) {
            None => return,
            Some(id) => edit::update_cell(
                engine,
                edit::UpdateArgs {
                    path: "n.ipynb".into(),
                    cell_id: Some(id),
                    index: None,
                    source,
                    expected_version: cas.then(|| head.saturating_sub(2)),
                    force: Some(step.is_multiple_of(4)),
                    client_name: None,
                    request_id: None,
                    execute: None,
                    timeout_s: None,
                    max_output_chars: None,
                    include_images: None,
                },
                &actor,
            ),
        },
        Op::BatchUpdate { cells, source } => {
            if cur.is_empty() {
                return;
            }
            let mut chosen: Vec<String> = cells.iter().filter_map(|&k| pick(&cur, k)).collect();
            chosen.sort();
            chosen.dedup();
            edit::batch_update_cells(
                engine,
                edit::BatchUpdateArgs {
                    path: "n.ipynb".into(),
                    updates: chosen
                        .into_iter()
                        .enumerate()
                        .map(|(i, id)| edit::UpdateItem {
                            cell_id: Some(id),
                            index: None,
                            source: format!("{source}{i}"),
                            expected_version: None,
                        })
                        .collect(),
                    force: None,
                    client_name: None,
                    request_id: None,
                },
                &actor,
            )
        }
        Op::Delete { cell } => match pick(&cur, cell) {
            None => return,
            Some(id) => edit::delete_cell(engine, delete_args(Some(id), None), &actor),
        },
        Op::DeleteMany { cells } => {
            if cur.is_empty() {
                return;
            }
            let chosen: Vec<String> = cells.iter().filter_map(|&k| pick(&cur, k)).collect();
            edit::delete_cell(engine, delete_args(None, Some(chosen)), &actor)
        }
        Op::Retype { cell, to } => match pick(&cur, cell) {
            None => return,
            Some(id) => edit::change_cell_type(
                engine,
                edit::ChangeTypeArgs {
                    path: "n.ipynb".into(),
                    cell_id: Some(id),
                    index: None,
                    cell_type: ["code", "markdown", "raw"][to as usize].into(),
                    expected_version: None,
                    force: None,
                    client_name: None,
                    request_id: None,
                },
                &actor,
            ),
        },
        Op::Outside { cell, source, drop } => {
            let file = root.join("n.ipynb");
            let mut nb: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let cells = nb["cells"].as_array_mut().unwrap();
            if !cells.is_empty() {
                let k = cell % cells.len();
                cells[k]["source"] = serde_json::Value::String(source);
                if drop && cells.len() > 1 {
                    cells.remove((k + 1) % cells.len());
                }
            }
            std::fs::write(&file, serde_json::to_vec_pretty(&nb).unwrap()).unwrap();
            return;
        }
        Op::Lock { cells, ttl } => {
            if cur.is_empty() {
                return;
            }
            locks::lock_cells(
                engine,
                locks::LockArgs {
                    path: "n.ipynb".into(),
                    cell_ids: Some(cells.iter().filter_map(|&k| pick(&cur, k)).collect()),
                    cell_id: None,
                    client_name: None,
                    owner: None,
                    ttl_seconds: Some(ttl),
                    request_id: None,
                },
                &actor,
            )
        }
        Op::Unlock { cell, force } => locks::unlock_cells(
            engine,
            locks::UnlockArgs {
                path: "n.ipynb".into(),
                cell_ids: cell.and_then(|k| pick(&cur, k)).map(|c| vec![c]),
                cell_id: None,
                client_name: None,
                owner: None,
                force: Some(force),
                request_id: None,
            },
            &actor,
        ),
        Op::Snapshot { name } => snapshots::snapshot_notebook(
            engine,
            snapshots::SnapshotArgs {
                path: "n.ipynb".into(),
                name: format!("s{name}"),
                description: None,
                overwrite: Some(true),
                client_name: None,
                request_id: None,
            },
            &actor,
        ),
        Op::Restore { name, force } => snapshots::restore_snapshot(
            engine,
            snapshots::RestoreArgs {
                path: "n.ipynb".into(),
                name: format!("s{name}"),
                force: Some(force),
                client_name: None,
                request_id: None,
            },
            &actor,
        ),
        Op::Recover { which } => {
            let mut deleted: Vec<String> = engine.workspace().notebooks["n.ipynb"]
                .deleted
                .keys()
                .cloned()
                .collect();
            deleted.sort();
            let Some(id) = pick(&deleted, which) else {
                return;
            };
            edit::recover_cell(
                engine,
                edit::RecoverArgs {
                    path: "n.ipynb".into(),
                    cell_id: id,
                    index: None,
                    after_cell_id: None,
                    before_cell_id: None,
                    client_name: None,
                    request_id: None,
                },
                &actor,
            )
        }
        Op::Move {
            cells,
            at,
            across,
            force,
        } => {
            // Across: half the time from n to m, else from m back to n.
            let m_ids: Vec<String> = engine.workspace().notebooks["m.ipynb"]
                .cells
                .iter()
                .map(|c| c.cell.id.clone())
                .collect();
            let (from, to, pool, dest_len) = match (across, at % 2 == 0) {
                (false, _) => ("n.ipynb", "n.ipynb", &cur, cur.len()),
                (true, true) => ("n.ipynb", "m.ipynb", &cur, m_ids.len()),
                (true, false) => ("m.ipynb", "n.ipynb", &m_ids, cur.len()),
            };
            if pool.is_empty() {
                return;
            }
            let mut chosen: Vec<String> = cells.iter().filter_map(|&k| pick(pool, k)).collect();
            chosen.dedup();
            transfer::move_cells(
                engine,
                transfer::TransferArgs {
                    source_path: from.into(),
                    dest_path: Some(to.into()),
                    cell_ids: Some(chosen),
                    cell_id: None,
                    dest_cell_id: None,
                    dest_index: Some((at % (dest_len + 1)) as i64),
                    force: Some(force),
                    client_name: None,
                    request_id: None,
                },
                &actor,
            )
        }
        Op::Restart => return,
        Op::Tag { cell, tag, remove } => match pick(&cur, cell) {
            None => return,
            Some(id) => {
                let tags = vec![format!("t{tag}")];
                metadata::update_cell_metadata(
                    engine,
                    metadata::CellMetadataArgs {
                        path: "n.ipynb".into(),
                        cell_id: Some(id),
                        index: None,
                        metadata: Some(
                            serde_json::json!({"step": step})
                                .as_object()
                                .cloned()
                                .unwrap(),
                        ),
                        add_tags: (!remove).then(|| tags.clone()),
                        remove_tags: remove.then_some(tags),
                        replace: None,
                        expected_version: None,
                        force: None,
                        client_name: None,
                        request_id: None,
                    },
                    &actor,
                )
            }
        },
        Op::Revert { cell, back } => match pick(&cur, cell) {
            None => return,
            Some(id) => revert::revert_cell(
                engine,
                revert::RevertArgs {
                    path: "n.ipynb".into(),
                    cell_id: id,
                    to_version: head.saturating_sub(back).max(1),
                    expected_version: None,
                    force: None,
                    client_name: None,
                    request_id: None,
                },
                &actor,
            ),
        },
        Op::Replace {
            pattern,
            with,
            force,
        } => replace::replace_in_notebook(
            engine,
            replace::ReplaceArgs {
                path: "n.ipynb".into(),
                pattern: ["a", "^#", r"(\w) =$"][pattern as usize].into(),
                replacement: format!("{with}$1"),
                case_sensitive: None,
                cell_ids: None,
                cell_id: None,
                cell_type: None,
                max_replacements: Some(3),
                dry_run: None,
                expected_version: None,
                force: Some(force),
                client_name: None,
                request_id: None,
            },
            &actor,
        ),
        Op::DeleteSnapshot { name } => snapshots::delete_snapshot(
            engine,
            snapshots::DeleteSnapshotArgs {
                path: "n.ipynb".into(),
                name: format!("s{name}"),
                client_name: None,
                request_id: None,
            },
            &actor,
        ),
    };
}

fn delete_args(cell_id: Option<String>, cell_ids: Option<Vec<String>>) -> edit::DeleteArgs {
    edit::DeleteArgs {
        path: "n.ipynb".into(),
        cell_id,
        index: None,
        cell_ids,
        expected_version: None,
        force: None,
        client_name: None,
        request_id: None,
    }
}

/// The file's cells as (id, type, source).
fn file_cells(root: &Path) -> Vec<(String, String, String)> {
    let raw = ipynb::parse(&std::fs::read(root.join("n.ipynb")).unwrap()).unwrap();
    raw.cells
        .into_iter()
        .map(|c| (c.id.unwrap_or_default(), c.cell_type, c.source))
        .collect()
}

fn state_cells(ws: &Workspace) -> Vec<(String, String, String)> {
    ws.notebooks["n.ipynb"]
        .cells
        .iter()
        .map(|c| {
            (
                c.cell.id.clone(),
                c.cell.cell_type.as_str().to_owned(),
                c.cell.source.clone(),
            )
        })
        .collect()
}

fn replayed(engine: &Engine) -> Workspace {
    let mut ws = Workspace::default();
    for rec in engine.store().records(1) {
        ws.apply(&rec.unwrap().event);
    }
    ws
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_live_state(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join(".nbledger");
        std::fs::create_dir_all(&data).unwrap();
        let mut engine = Engine::open(root, &data).unwrap();
        edit::create_notebook(&engine, edit::CreateArgs {
            path: "n.ipynb".into(),
            cells: Some(vec![CellSpec { source: "seed".into(), cell_type: None, metadata: None }]),
            kernel_name: None, client_name: None, request_id: None,
        }, &Actor { client_name: "setup".into(), request_id: None, named: true }).unwrap();
        edit::create_notebook(&engine, edit::CreateArgs {
            path: "m.ipynb".into(),
            cells: Some(vec![CellSpec { source: "m".into(), cell_type: None, metadata: None }]),
            kernel_name: None, client_name: None, request_id: None,
        }, &Actor { client_name: "setup".into(), request_id: None, named: true }).unwrap();

        for (step, op) in ops.iter().enumerate() {
            if matches!(op, Op::Restart) {
                // Take in any pending outside edit first: start-up would too.
                let _ = engine.read("n.ipynb", |_| Ok(()));
                let live = engine.workspace();
                drop(engine);
                engine = Engine::open(root, &data).unwrap();
                prop_assert_eq!(engine.workspace(), live, "state after restart differs");
                continue;
            }
            apply(&engine, root, op, step);
            // An op that found nothing to do did not touch the notebook; a
            // read takes in any pending outside edit before comparing.
            if !matches!(op, Op::Outside { .. }) {
                let _ = engine.read("n.ipynb", |_| Ok(()));
            }
            let live = engine.workspace();
            if !matches!(op, Op::Outside { .. }) {
                prop_assert_eq!(&replayed(&engine), &live, "replay differs after {:?}", op);
                prop_assert_eq!(file_cells(root), state_cells(&live), "file differs after {:?}", op);
            }
        }
        // Take in a trailing outside edit, then compare everything once more.
        let _ = engine.read("n.ipynb", |_| Ok(()));
        let live = engine.workspace();
        prop_assert_eq!(&replayed(&engine), &live);
        let versions: Vec<u64> = engine.store().records(1).map(|r| r.unwrap().event.version).collect();
        prop_assert_eq!(versions, (1..=engine.store().head()).collect::<Vec<_>>());
        drop(engine);
        let reopened = Engine::open(root, &data).unwrap();
        prop_assert_eq!(reopened.workspace(), live);
    }
}

fn insert(engine: &Engine, source: &str) {
    edit::insert_cell(
        engine,
        edit::InsertArgs {
            path: "n.ipynb".into(),
            source: source.into(),
            cell_type: None,
            index: None,
            after_cell_id: None,
            before_cell_id: None,
            metadata: None,
            lock: None,
            ttl_seconds: None,
            client_name: None,
            request_id: Some(format!("r-{source}")),
            execute: None,
            timeout_s: None,
            max_output_chars: None,
            include_images: None,
        },
        &Actor {
            client_name: "a".into(),
            request_id: Some(format!("r-{source}")),
            named: true,
        },
    )
    .unwrap();
}

#[test]
fn checkpoint_plus_tail_replay_equals_live_and_bad_checkpoints_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join(".nbledger");
    std::fs::create_dir_all(&data).unwrap();
    let engine = Engine::open(root, &data).unwrap();
    edit::create_notebook(
        &engine,
        edit::CreateArgs {
            path: "n.ipynb".into(),
            cells: None,
            kernel_name: None,
            client_name: None,
            request_id: None,
        },
        &Actor {
            client_name: "a".into(),
            request_id: None,
            named: true,
        },
    )
    .unwrap();
    for i in 0..5 {
        insert(&engine, &format!("early {i}"));
    }
    engine.checkpoint().unwrap();
    let old_checkpoint = engine.store().checkpoint().unwrap().unwrap();
    for i in 0..5 {
        insert(&engine, &format!("late {i}"));
    }
    let live = engine.workspace();
    drop(engine);

    // An older checkpoint: the tail after it is replayed.
    let put = |bytes: &[u8]| {
        let store = nbledger::store::Store::open(&data).unwrap();
        store.put_checkpoint(bytes).unwrap();
        store.flush().unwrap();
    };
    put(&old_checkpoint);
    let engine = Engine::open(root, &data).unwrap();
    assert_eq!(engine.workspace(), live);
    assert_eq!(engine.workspace(), replayed(&engine));
    // request_ids remembered before the checkpoint still answer retries.
    assert!(
        engine
            .workspace()
            .requests
            .contains_key(&("a".to_owned(), "r-early 0".to_owned()))
    );
    drop(engine);

    // Garbage, or a checkpoint of another log: full replay.
    put(b"not a checkpoint");
    assert_eq!(Engine::open(root, &data).unwrap().workspace(), live);
    let other = tempfile::tempdir().unwrap();
    let other_data = other.path().join(".nbledger");
    std::fs::create_dir_all(&other_data).unwrap();
    {
        let e = Engine::open(other.path(), &other_data).unwrap();
        edit::create_notebook(
            &e,
            edit::CreateArgs {
                path: "n.ipynb".into(),
                cells: None,
                kernel_name: None,
                client_name: None,
                request_id: None,
            },
            &Actor {
                client_name: "b".into(),
                request_id: None,
                named: true,
            },
        )
        .unwrap();
    }
    let foreign = nbledger::store::Store::open(&other_data)
        .unwrap()
        .checkpoint()
        .unwrap()
        .unwrap();
    put(&foreign);
    assert_eq!(Engine::open(root, &data).unwrap().workspace(), live);
}
