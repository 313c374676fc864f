//! The audit command line (contract §5, §8.9, §8.10), run as the real
//! binary against logs whose history the test knows: a scripted
//! multi-agent session driven through the tool functions, hand-built logs
//! with fixed times for the golden text formats, damaged logs for
//! `verify`, and a 100k-event log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use nbledger::engine::{Actor, Engine};
use nbledger::events::{Cell, CellType, Change, Event, Header};
use nbledger::ipynb::{self, RawNotebook};
use nbledger::projections::Workspace;
use nbledger::store::Store;
use nbledger::tools::edit::{self, CellSpec};
use nbledger::tools::read;
use serde_json::{Value, json};

// ------------------------------------------------------------ running

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `nbledger ARGS --root ROOT`.
fn cli(root: &Path, args: &[&str]) -> Out {
    let t = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_nbledger"))
        .args(args)
        .arg("--root")
        .arg(root)
        .env("NBLEDGER_LOG", "error")
        .output()
        .expect("run nbledger");
    eprintln!("{args:?}: {:?}", t.elapsed());
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command that must succeed and returns its stdout.
fn ok(root: &Path, args: &[&str]) -> String {
    let o = cli(root, args);
    assert_eq!(o.code, 0, "{args:?} failed: {}{}", o.stderr, o.stdout);
    o.stdout
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The versions of `log` text lines (`v12  ...`).
fn log_versions(s: &str) -> Vec<u64> {
    s.lines()
        .map(|l| {
            l.split_whitespace().next().unwrap()[1..]
                .parse()
                .expect("version")
        })
        .collect()
}

// ------------------------------------------------------------ a session

fn actor(name: &str) -> Actor {
    Actor {
        client_name: name.into(),
        request_id: None,
        named: true,
    }
}

fn version(r: &serde_json::Map<String, Value>) -> u64 {
    r["version"].as_u64().expect("version in result")
}

/// A cell as `get_notebook_content` returns it: (id, type, source).
type CellRow = (String, String, String);

/// A scripted session by three agents (and one person editing a file),
/// with what every notebook held right after each version.
struct Session {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    head: u64,
    /// version → notebook → the file's content right after it.
    files: BTreeMap<u64, BTreeMap<String, RawNotebook>>,
    /// version → notebook → `get_notebook_content` cells (id, type, source).
    seen: BTreeMap<u64, BTreeMap<String, Vec<CellRow>>>,
    /// version → client, for every event.
    clients: BTreeMap<u64, String>,
    first: String,
    title: String,
    calc: String,
    tmp: String,
    imported: String,
}

impl Session {
    fn record(&mut self, engine: &Engine, client: &str) {
        let head = engine.store().head();
        let ws = engine.workspace();
        let mut files = BTreeMap::new();
        let mut seen = BTreeMap::new();
        for path in ws.notebooks.keys() {
            let bytes = std::fs::read(self.root.join(path)).expect("file");
            files.insert(path.clone(), ipynb::parse(&bytes).expect("valid file"));
            let (_, content) = read::get_notebook_content(
                engine,
                read::ContentArgs {
                    path: path.clone(),
                    cell_ids: None,
                    cell_id: None,
                    start: None,
                    end: None,
                    cell_type: None,
                    include_outputs: None,
                    max_output_chars: None,
                    include_images: None,
                    at_version: None,
                },
            )
            .expect("content");
            let cells = content["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["cell_id"].as_str().unwrap().to_owned(),
                        c["cell_type"].as_str().unwrap().to_owned(),
                        c["source"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            seen.insert(path.clone(), cells);
        }
        assert_eq!(engine.store().head(), head, "reading appended an event");
        self.files.insert(head, files);
        self.seen.insert(head, seen);
        self.clients.insert(head, client.to_owned());
    }
}

fn update(engine: &Engine, path: &str, id: &str, source: &str, who: &str) -> u64 {
    let (_, r) = edit::update_cell(
        engine,
        edit::UpdateArgs {
            path: path.into(),
            cell_id: Some(id.into()),
            index: None,
            source: source.into(),
            expected_version: None,
            force: None,
            client_name: None,
            request_id: None,
            execute: None,
            timeout_s: None,
            max_output_chars: None,
            include_images: None,
        },
        &actor(who),
    )
    .expect("update");
    version(&r)
}

fn insert(engine: &Engine, path: &str, source: &str, who: &str) -> (String, u64) {
    let (_, r) = edit::insert_cell(
        engine,
        edit::InsertArgs {
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
        },
        &actor(who),
    )
    .expect("insert");
    (r["cell_id"].as_str().unwrap().to_owned(), version(&r))
}

fn spec(source: &str, t: &str) -> CellSpec {
    CellSpec {
        source: source.into(),
        cell_type: Some(t.into()),
        metadata: None,
    }
}

/// Replaces one line in a cell's source in the file, as an editor would.
fn edit_file(root: &Path, path: &str, cell_id: &str, from: &str, to: &str) {
    let file = root.join(path);
    let mut nb: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let cell = nb["cells"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["id"] == cell_id)
        .expect("cell in file");
    let joined: String = match &cell["source"] {
        Value::Array(l) => l.iter().map(|x| x.as_str().unwrap()).collect(),
        Value::String(s) => s.clone(),
        _ => panic!("source"),
    };
    assert!(joined.contains(from), "{joined:?} lacks {from:?}");
    cell["source"] = Value::String(joined.replace(from, to));
    std::fs::write(&file, serde_json::to_vec_pretty(&nb).unwrap()).unwrap();
}

const OLD_NOTEBOOK: &str = r#"{
 "cells": [
  {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
   "source": ["a = 1\n", "b = 2\n"]}
 ],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
 "nbformat": 4,
 "nbformat_minor": 4
}
"#;

fn session() -> Session {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join(".nbledger");
    std::fs::create_dir_all(&data).unwrap();
    let engine = Engine::open(&root, &data).unwrap();
    let mut s = Session {
        root: root.clone(),
        data,
        _dir: dir,
        head: 0,
        files: BTreeMap::new(),
        seen: BTreeMap::new(),
        clients: BTreeMap::new(),
        first: String::new(),
        title: String::new(),
        calc: String::new(),
        tmp: String::new(),
        imported: String::new(),
    };
    // v1: ana creates the notebook.
    let (_, r) = edit::create_notebook(
        &engine,
        edit::CreateArgs {
            path: "nb.ipynb".into(),
            cells: Some(vec![
                spec("import os\nimport sys\n", "code"),
                spec("# Title\n\nIntro text", "markdown"),
            ]),
            kernel_name: None,
            client_name: None,
            request_id: None,
        },
        &actor("ana"),
    )
    .unwrap();
    assert_eq!(version(&r), 1);
    s.first = r["cell_ids"][0].as_str().unwrap().to_owned();
    s.title = r["cell_ids"][1].as_str().unwrap().to_owned();
    s.record(&engine, "ana");
    // v2: ben adds a cell; v3: cy edits it.
    let (calc, v) = insert(&engine, "nb.ipynb", "x = 1\ny = 2\nprint(x + y)\n", "ben");
    assert_eq!(v, 2);
    s.calc = calc.clone();
    s.record(&engine, "ben");
    let v = update(
        &engine,
        "nb.ipynb",
        &calc,
        "x = 1\ny = 3\nprint(x + y)\nprint('done')\n",
        "cy",
    );
    assert_eq!(v, 3);
    s.record(&engine, "cy");
    // v4: ben starts another notebook.
    let (_, r) = edit::create_notebook(
        &engine,
        edit::CreateArgs {
            path: "other.ipynb".into(),
            cells: Some(vec![spec("print('other')\n", "code")]),
            kernel_name: None,
            client_name: None,
            request_id: None,
        },
        &actor("ben"),
    )
    .unwrap();
    assert_eq!(version(&r), 4);
    s.record(&engine, "ben");
    // v5: ana edits the first line of cy's cell.
    let v = update(
        &engine,
        "nb.ipynb",
        &calc,
        "x = 10\ny = 3\nprint(x + y)\nprint('done')\n",
        "ana",
    );
    assert_eq!(v, 5);
    s.record(&engine, "ana");
    // v6: a person edits the file; the next read takes it in.
    edit_file(&root, "nb.ipynb", &calc, "print(x + y)", "print(x * y)");
    engine.read("nb.ipynb", |_| Ok(())).unwrap();
    assert_eq!(engine.store().head(), 6);
    s.record(&engine, "external");
    // v7: ben makes the title raw.
    let (_, r) = edit::change_cell_type(
        &engine,
        edit::ChangeTypeArgs {
            path: "nb.ipynb".into(),
            cell_id: Some(s.title.clone()),
            index: None,
            cell_type: "raw".into(),
            expected_version: None,
            force: None,
            client_name: None,
            request_id: None,
        },
        &actor("ben"),
    )
    .unwrap();
    assert_eq!(version(&r), 7);
    s.record(&engine, "ben");
    // v8: cy changes two cells at once.
    let (_, r) = edit::batch_update_cells(
        &engine,
        edit::BatchUpdateArgs {
            path: "nb.ipynb".into(),
            updates: vec![
                edit::UpdateItem {
                    cell_id: Some(s.first.clone()),
                    index: None,
                    source: "import os\nimport sys\nimport json\n".into(),
                    expected_version: None,
                },
                edit::UpdateItem {
                    cell_id: Some(calc.clone()),
                    index: None,
                    source: "x = 10\ny = 3\nprint(x * y)\nprint('done!')\n".into(),
                    expected_version: None,
                },
            ],
            force: None,
            client_name: None,
            request_id: None,
        },
        &actor("cy"),
    )
    .unwrap();
    assert_eq!(version(&r), 8);
    s.record(&engine, "cy");
    // v9, v10: ana adds a scratch cell, ben deletes it.
    let (tmp, v) = insert(&engine, "nb.ipynb", "tmp = 0\n", "ana");
    assert_eq!(v, 9);
    s.tmp = tmp.clone();
    s.record(&engine, "ana");
    let (_, r) = edit::delete_cell(
        &engine,
        edit::DeleteArgs {
            path: "nb.ipynb".into(),
            cell_id: Some(tmp),
            index: None,
            cell_ids: None,
            expected_version: None,
            force: None,
            client_name: None,
            request_id: None,
        },
        &actor("ben"),
    )
    .unwrap();
    assert_eq!(version(&r), 10);
    s.record(&engine, "ben");
    // v11: an old notebook without ids is imported on first touch; v12: cy edits it.
    std::fs::write(root.join("old.ipynb"), OLD_NOTEBOOK).unwrap();
    engine.read("old.ipynb", |_| Ok(())).unwrap();
    assert_eq!(engine.store().head(), 11);
    s.imported = engine.workspace().notebooks["old.ipynb"].cells[0]
        .cell
        .id
        .clone();
    s.record(&engine, "external");
    let v = update(
        &engine,
        "old.ipynb",
        &s.imported.clone(),
        "a = 1\nb = 3\n",
        "cy",
    );
    assert_eq!(v, 12);
    s.record(&engine, "cy");
    s.head = engine.store().head();
    drop(engine);
    s
}

// ------------------------------------------------------------ session tests

#[test]
fn show_at_v_equals_what_the_tools_and_the_file_held_right_after_v() {
    let s = session();
    for v in 1..=s.head {
        for (path, file) in &s.files[&v] {
            let out = ok(&s.root, &["show", path, "--at", &v.to_string()]);
            let shown = ipynb::parse(out.as_bytes()).expect("show gives a valid notebook");
            assert_eq!(&shown, file, "{path} at v{v}");
            let cells: Vec<(String, String, String)> = shown
                .cells
                .iter()
                .map(|c| (c.id.clone().unwrap(), c.cell_type.clone(), c.source.clone()))
                .collect();
            assert_eq!(cells, s.seen[&v][path], "{path} at v{v}");
        }
    }
    // -o FILE writes the same bytes.
    let target = s.root.join("out-at-3.ipynb");
    let out = cli(
        &s.root,
        &[
            "show",
            "nb.ipynb",
            "--at",
            "3",
            "-o",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        ok(&s.root, &["show", "nb.ipynb", "--at", "3"])
    );
}

#[test]
fn show_refuses_a_notebook_that_did_not_exist_yet_and_unknown_snapshots() {
    let s = session();
    let o = cli(&s.root, &["show", "other.ipynb", "--at", "3"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("did not exist at version 3"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("first event is version 4"),
        "{}",
        o.stderr
    );
    let o = cli(&s.root, &["show", "nb.ipynb", "--at", "before-refactor"]);
    assert_eq!(o.code, 1, "an unknown snapshot name is not found");
    assert!(o.stderr.contains("no snapshot"), "{}", o.stderr);
    let o = cli(&s.root, &["show", "nb.ipynb", "--at", "99"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("past the head"), "{}", o.stderr);
    let o = cli(&s.root, &["show", "nope.ipynb", "--at", "2"]);
    assert_eq!(o.code, 1);
    let o = cli(&s.root, &["show", "nb.ipynb"]);
    assert_eq!(o.code, 2, "clap's own usage errors exit 2");
}

#[test]
fn blame_attributes_each_line_to_the_client_that_wrote_it() {
    let s = session();
    let lines = json_lines(&ok(&s.root, &["blame", "nb.ipynb", "--json"]));
    let got: Vec<(String, u64, String, u64, String)> = lines
        .iter()
        .map(|l| {
            (
                l["cell_id"].as_str().unwrap().to_owned(),
                l["line"].as_u64().unwrap(),
                l["text"].as_str().unwrap().to_owned(),
                l["version"].as_u64().unwrap(),
                l["client_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |c: &str, n: u64, t: &str, v: u64, who: &str| {
        (c.to_owned(), n, t.to_owned(), v, who.to_owned())
    };
    let (f, t, c) = (&s.first, &s.title, &s.calc);
    assert_eq!(
        got,
        vec![
            row(f, 1, "import os", 1, "ana"),
            row(f, 2, "import sys", 1, "ana"),
            row(f, 3, "import json", 8, "cy"),
            // A type change keeps the lines' authors.
            row(t, 1, "# Title", 1, "ana"),
            row(t, 2, "", 1, "ana"),
            row(t, 3, "Intro text", 1, "ana"),
            row(c, 1, "x = 10", 5, "ana"),
            row(c, 2, "y = 3", 3, "cy"),
            row(c, 3, "print(x * y)", 6, "external"),
            row(c, 4, "print('done!')", 8, "cy"),
        ]
    );
    for l in &lines {
        assert!(l["index"].as_u64().is_some());
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Imported lines belong to `external`.
    let old = json_lines(&ok(&s.root, &["blame", "old.ipynb", "--json"]));
    let who: Vec<(&str, u64)> = old
        .iter()
        .map(|l| {
            (
                l["client_name"].as_str().unwrap(),
                l["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(who, vec![("external", 11), ("cy", 12)]);
    // The text form has one line per source line plus a line per cell.
    let text = ok(&s.root, &["blame", "nb.ipynb"]);
    assert_eq!(text.lines().count(), 1 + 3 + 10);
    assert!(
        text.lines()
            .any(|l| l.contains("external") && l.ends_with("print(x * y)"))
    );
}

#[test]
fn history_lists_every_event_of_the_cell_in_order_with_diffs() {
    let s = session();
    let entries = json_lines(&ok(&s.root, &["history", "nb.ipynb", &s.calc, "--json"]));
    let got: Vec<(u64, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["client_name"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "ben", "created"),
            (3, "cy", "modified"),
            (5, "ana", "modified"),
            (6, "external", "modified"),
            (8, "cy", "modified"),
        ]
    );
    assert_eq!(entries[3]["operation"], "external_change");
    assert_eq!(
        entries[3]["source_before"],
        "x = 10\ny = 3\nprint(x + y)\nprint('done')\n"
    );
    assert_eq!(
        entries[3]["source_after"],
        "x = 10\ny = 3\nprint(x * y)\nprint('done')\n"
    );
    let diff = entries[3]["diff"].as_str().unwrap();
    assert!(diff.contains("-print(x + y)\n+print(x * y)\n"), "{diff}");
    assert!(diff.starts_with(&format!("--- {}@v5\n+++ {}@v6\n", s.calc, s.calc)));

    let text = ok(&s.root, &["history", "nb.ipynb", &s.calc]);
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with('v')).collect();
    assert_eq!(heads.len(), 5);
    assert!(
        text.contains("    -print(x + y)\n    +print(x * y)\n"),
        "{text}"
    );
    assert!(text.lines().next().unwrap().ends_with("5 events, live"));

    // A deleted cell resolves, by a prefix too, and shows its deletion.
    let text = ok(&s.root, &["history", "nb.ipynb", &s.tmp[..5]]);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("2 events, deleted at v10"),
        "{text}"
    );
    assert!(
        text.contains("ben  delete_cell  nb.ipynb  deleted (was at index 3)"),
        "{text}"
    );
    // The type change names both types.
    let text = ok(&s.root, &["history", "nb.ipynb", &s.title]);
    assert!(
        text.contains("modified: cell_type (markdown -> raw)"),
        "{text}"
    );
    let o = cli(&s.root, &["history", "nb.ipynb", "zzzzzzzz"]);
    assert_eq!(o.code, 1);
}

#[test]
fn export_has_every_version_once_with_the_documented_fields_and_a_hash_chain() {
    let s = session();
    let lines = json_lines(&ok(&s.root, &["export", "--format", "jsonl"]));
    let versions: Vec<u64> = lines
        .iter()
        .map(|l| l["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=s.head).collect::<Vec<_>>());
    let mut prev = "0".repeat(64);
    for l in &lines {
        for f in [
            "version",
            "timestamp",
            "client_name",
            "operation",
            "paths",
            "cell_ids",
            "summary",
            "hash",
            "prev_hash",
            "request_id",
            "body",
        ] {
            assert!(l.get(f).is_some(), "{f} missing in {l}");
        }
        assert_eq!(l["prev_hash"], Value::String(prev.clone()));
        prev = l["hash"].as_str().unwrap().to_owned();
        assert_eq!(prev.len(), 64);
        assert_eq!(l["body"]["schema"], 1);
        let v = l["version"].as_u64().unwrap();
        assert_eq!(l["client_name"], s.clients[&v].as_str());
    }
    let kinds = |v: usize| -> Vec<&str> {
        lines[v - 1]["body"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["kind"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        kinds(1),
        vec!["notebook_created", "cell_inserted", "cell_inserted"]
    );
    assert_eq!(kinds(3), vec!["source_set"]);
    assert_eq!(kinds(7), vec!["cell_replaced"]);
    assert_eq!(kinds(10), vec!["cell_deleted"]);
    assert_eq!(lines[0]["body"]["result"]["version"], 1);
    assert_eq!(lines[10]["operation"], "import");
    // Outside changes answer no tool call.
    assert_eq!(lines[10]["body"]["result"], json!({}));
    let cell = &lines[0]["body"]["changes"][1]["cell"];
    assert_eq!(cell["outputs"], json!([]));
    assert_eq!(cell["execution_count"], Value::Null);
    assert_eq!(lines[0]["body"]["files"][0]["written"], true);
    // The last hash is the head hash verify prints.
    let verify = ok(&s.root, &["verify"]);
    assert!(
        verify.trim_end().ends_with(&format!("head hash: {prev}")),
        "{verify}"
    );
    // One notebook only.
    let other = json_lines(&ok(&s.root, &["export", "--notebook", "other.ipynb"]));
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["version"], 4);
}

#[test]
fn log_prints_one_line_per_event_and_filters() {
    let s = session();
    let all = ok(&s.root, &["log"]);
    assert_eq!(log_versions(&all), (1..=s.head).collect::<Vec<_>>());
    let v = |args: &[&str]| log_versions(&ok(&s.root, args));
    assert_eq!(v(&["log", "--notebook", "other.ipynb"]), vec![4]);
    assert_eq!(v(&["log", "--notebook", "./other.ipynb"]), vec![4]);
    let abs = s.root.join("other.ipynb");
    assert_eq!(v(&["log", "--notebook", abs.to_str().unwrap()]), vec![4]);
    assert_eq!(v(&["log", "--since", "9"]), vec![10, 11, 12]);
    assert_eq!(v(&["log", "--until", "3"]), vec![1, 2, 3]);
    assert_eq!(v(&["log", "--since", "2", "--until", "4"]), vec![3, 4]);
    assert_eq!(v(&["log", "--client", "cy"]), vec![3, 8, 12]);
    assert_eq!(
        v(&["log", "--notebook", "nb.ipynb", "--client", "ben"]),
        vec![2, 7, 10]
    );
    assert_eq!(
        v(&[
            "log",
            "--notebook",
            "nb.ipynb",
            "--since",
            "5",
            "--until",
            "8"
        ]),
        vec![6, 7, 8]
    );
    let ext = json_lines(&ok(&s.root, &["log", "--json", "--client", "external"]));
    let got: Vec<(u64, &str)> = ext
        .iter()
        .map(|l| {
            (
                l["version"].as_u64().unwrap(),
                l["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(6, "external_change"), (11, "import")]);
    assert!(ext[0].get("hash").is_some() && ext[0].get("body").is_none());
    assert!(ext[0].get("overrode_lock").is_none() && ext[0].get("rejected").is_none());
    let o = cli(&s.root, &["log", "--since", "13"]);
    assert_eq!(o.code, 2);
    let o = cli(&s.root, &["log", "--notebook", "missing.ipynb"]);
    assert_eq!(o.code, 1);
}

#[test]
fn the_audit_changes_nothing() {
    let s = session();
    let before = std::fs::read(s.root.join("nb.ipynb")).unwrap();
    // An outside edit the server has not seen yet: the audit must not take it in.
    edit_file(&s.root, "nb.ipynb", &s.first, "import os", "import re");
    let edited = std::fs::read(s.root.join("nb.ipynb")).unwrap();
    assert_ne!(before, edited);
    for args in [
        vec!["log"],
        vec!["blame", "nb.ipynb"],
        vec!["history", "nb.ipynb", s.calc.as_str()],
        vec!["show", "nb.ipynb", "--at", "12"],
        vec!["export"],
    ] {
        ok(&s.root, &args);
    }
    assert_eq!(cli(&s.root, &["verify"]).code, 3);
    assert_eq!(std::fs::read(s.root.join("nb.ipynb")).unwrap(), edited);
    assert_eq!(log_versions(&ok(&s.root, &["log"])).len() as u64, s.head);
}

// ------------------------------------------------------------ verify

#[test]
fn verify_passes_on_a_healthy_log_and_prints_the_head_hash() {
    let s = session();
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.starts_with("log ok: 12 events (versions 1..12)"),
        "{}",
        o.stdout
    );
    // The engine left a checkpoint at its last stop: replay must equal it.
    assert!(
        o.stdout
            .contains("replay matches the projection checkpoint at v12"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("files ok: 3 notebooks match the log"));
    let last = o.stdout.lines().last().unwrap();
    assert!(
        last.starts_with("head hash: ") && last.len() == 11 + 64,
        "{last}"
    );
    // --data alone finds the root the log records.
    let o = Command::new(env!("CARGO_BIN_EXE_nbledger"))
        .args(["verify", "--data"])
        .arg(&s.data)
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
}

/// Opens the log's sled database directly (no server running).
fn with_events_tree(data: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = sled::open(data.join("log")).expect("open sled");
    let events = db.open_tree("events").unwrap();
    f(&events);
    db.flush().unwrap();
}

fn alter_byte(data: &Path, version: u64, pick: impl Fn(&[u8]) -> usize) {
    with_events_tree(data, |t| {
        let key = version.to_be_bytes();
        let mut bytes = t.get(key).unwrap().unwrap().to_vec();
        let i = pick(&bytes);
        bytes[i] ^= 0x01;
        t.insert(key, bytes).unwrap();
    });
}

/// The position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in record")
}

#[test]
fn verify_names_a_record_whose_bytes_were_altered() {
    let s = session();
    // A one-letter change inside the summary: the record still decodes,
    // only the chain shows it.
    alter_byte(&s.data, 5, |b| find(b, b"set source of") + 2);
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stdout.starts_with(
            "FAULT at version 5: its bytes do not hash to the prev_hash stored in version 6"
        ),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("head hash"));
}

#[test]
fn verify_names_an_altered_head_record_and_a_record_that_no_longer_decodes() {
    let s = session();
    alter_byte(&s.data, 12, |b| find(b, b"set source of") + 2);
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.starts_with("FAULT at version 12: "),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("head hash the log's metadata records"),
        "{}",
        o.stdout
    );

    let s = session();
    // The format byte: the envelope no longer decodes.
    with_events_tree(&s.data, |t| {
        let key = 3u64.to_be_bytes();
        let bytes = t.get(key).unwrap().unwrap().to_vec();
        t.insert(key, &bytes[..bytes.len() / 2]).unwrap();
    });
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout
            .starts_with("FAULT at version 3: its record does not decode"),
        "{}",
        o.stdout
    );
}

#[test]
fn verify_names_the_gap_left_by_a_removed_record() {
    let s = session();
    with_events_tree(&s.data, |t| {
        t.remove(7u64.to_be_bytes()).unwrap();
    });
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.starts_with(
            "FAULT at version 7: version 7 is missing: the log goes from version 6 to 8"
        ),
        "{}",
        o.stdout
    );
    // The other commands say the log is damaged instead of guessing.
    let o = cli(&s.root, &["history", "nb.ipynb", &s.title]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("record 7 is missing"), "{}", o.stderr);

    let s = session();
    with_events_tree(&s.data, |t| {
        t.remove(12u64.to_be_bytes()).unwrap();
    });
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.starts_with(
            "FAULT at version 12: version 12 is missing: the log's metadata says the head is 12"
        ),
        "{}",
        o.stdout
    );
}

#[test]
fn verify_exits_3_when_only_a_file_differs_from_the_log() {
    let s = session();
    edit_file(&s.root, "nb.ipynb", &s.calc, "y = 3", "y = 4");
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 3, "{}", o.stdout);
    assert!(o.stdout.starts_with("log ok: 12 events"), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!(
            "DIFFERS nb.ipynb: cell 2 ({}) differs in its source",
            s.calc
        )),
        "{}",
        o.stdout
    );
    assert!(o.stdout.lines().last().unwrap().starts_with("head hash: "));
    // A removed file differs too.
    std::fs::remove_file(s.root.join("other.ipynb")).unwrap();
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 3);
    assert!(
        o.stdout
            .contains("DIFFERS other.ipynb: the file is missing"),
        "{}",
        o.stdout
    );
}

#[test]
fn verify_accepts_a_file_that_differs_in_bytes_but_not_content() {
    let s = session();
    // Re-lay the file out (2-space indent, keys in another order).
    let file = s.root.join("nb.ipynb");
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
}

#[test]
fn verify_catches_a_checkpoint_that_disagrees_with_the_log() {
    let s = session();
    // Take the engine's own checkpoint and change the state it holds.
    let store = Store::open(&s.data).unwrap();
    let bytes = store.checkpoint().unwrap().unwrap();
    let needle = b"print('done!')";
    let i = find(&bytes, needle);
    let mut bad = bytes.clone();
    bad[i + 1] = b'R';
    store.put_checkpoint(&bad).unwrap();
    store.flush().unwrap();
    drop(store);
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(
        o.stdout
            .starts_with("FAULT at version 12: the server's stored projection (checkpoint)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("notebook nb.ipynb differs in its cells"),
        "{}",
        o.stdout
    );
}

#[test]
fn a_store_held_by_a_process_without_a_socket_is_exit_4_and_no_log_is_exit_2() {
    let s = session();
    // Held, but nobody answers on the socket (a server running beside the
    // audit is read through its socket: tests/multiprocess.rs).
    let held = Store::open(&s.data).unwrap();
    let o = cli(&s.root, &["log"]);
    assert_eq!(o.code, 4);
    assert!(
        o.stderr.contains("does not answer on its socket"),
        "{}",
        o.stderr
    );
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 4);
    drop(held);
    let empty = tempfile::tempdir().unwrap();
    let o = cli(empty.path(), &["log"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no nbledger log"), "{}", o.stderr);
    assert!(
        !empty.path().join(".nbledger").exists(),
        "the audit created a log"
    );
}

// ------------------------------------------------------------ golden text

const T0: i64 = 1_795_465_060_123; // 2026-11-23T20:17:40.123Z

fn header() -> Header {
    Header {
        nbformat: 4,
        nbformat_minor: 5,
        metadata: r#"{"kernelspec":{"display_name":"Python 3","name":"python3"}}"#.into(),
        extra: "{}".into(),
    }
}

fn cell(id: &str, t: CellType, src: &str) -> Arc<Cell> {
    Arc::new(Cell::new(id.into(), t, src.into(), None))
}

#[allow(clippy::too_many_arguments)]
fn hand_event(
    version: u64,
    dt_ms: i64,
    client: &str,
    op: &str,
    cells: &[&str],
    summary: &str,
    forced: &[(&str, &str)],
    changes: Vec<Change>,
) -> Event {
    Event {
        version,
        timestamp_ms: T0 + dt_ms,
        client_name: client.into(),
        operation: op.into(),
        paths: vec!["g.ipynb".into()],
        cell_ids: cells.iter().map(|c| c.to_string()).collect(),
        overrode_locks: forced
            .iter()
            .map(|(c, o)| (c.to_string(), o.to_string()))
            .collect(),
        request_id: None,
        result: format!(r#"{{"version":{version}}}"#),
        summary: summary.into(),
        changes,
        files: vec![],
    }
}

fn set(id: &str, before: &str, after: &str) -> Change {
    Change::SourceSet {
        path: "g.ipynb".into(),
        cell_id: id.into(),
        before: before.into(),
        after: after.into(),
    }
}

/// A small log with fixed times, a forced lock, a refused write and
/// control characters in data, appended by hand.
fn golden_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let store = Store::open(&root.join(".nbledger")).unwrap();
    let p = || "g.ipynb".to_string();
    let code0 = "import os\nprint('hi')\n";
    let code1 = "import os\nprint('hi there')\n";
    let code2 = "import os\nprint('hi there')\n\tx = '\u{202e}txt'\n";
    let code3 = "import sys\nprint('hi there')\n\tx = '\u{202e}txt'\n";
    let md = cell("m1", CellType::Markdown, "# Golden\n\nSome *text*");
    let events = vec![
        hand_event(
            1,
            0,
            "ana",
            "create_notebook",
            &["c1", "m1"],
            "created g.ipynb with 2 cells",
            &[],
            vec![
                Change::NotebookCreated {
                    path: p(),
                    header: header(),
                },
                Change::CellInserted {
                    path: p(),
                    index: 0,
                    cell: cell("c1", CellType::Code, code0),
                },
                Change::CellInserted {
                    path: p(),
                    index: 1,
                    cell: md.clone(),
                },
            ],
        ),
        hand_event(
            2,
            1_000,
            "ben",
            "update_cell",
            &["c1"],
            "set source of c1 (2 lines)",
            &[],
            vec![set("c1", code0, code1)],
        ),
        hand_event(
            3,
            2_500,
            "cy",
            "update_cell",
            &["c1"],
            "evil \u{1b}[2J summary\nsecond line \u{202e}txt",
            &[],
            vec![set("c1", code1, code2)],
        ),
        hand_event(
            4,
            61_000,
            "dora",
            "update_cell",
            &["c1"],
            "set source of c1 (3 lines)",
            &[("c1", "ben")],
            vec![set("c1", code2, code3)],
        ),
        hand_event(
            5,
            62_000,
            "eve",
            "update_cell",
            &["c1"],
            "update_cell refused: locked (c1 by ben)",
            &[],
            vec![Change::Rejected {
                path: "n.ipynb".into(),
                cell_id: "c1".into(),
                holder: "ben".into(),
                acquired_at: 60_000,
                expires_at: 660_000,
            }],
        ),
        hand_event(
            6,
            3_600_000,
            "ana",
            "change_cell_type",
            &["m1"],
            "changed m1 from markdown to raw",
            &[],
            vec![Change::CellReplaced {
                path: p(),
                before: md.clone(),
                after: Arc::new(md.with_type(CellType::Raw)),
            }],
        ),
        hand_event(
            7,
            3_600_001,
            "ben",
            "insert_cell",
            &["c2"],
            "inserted code cell c2 at 2",
            &[],
            vec![Change::CellInserted {
                path: p(),
                index: 2,
                cell: cell("c2", CellType::Code, ""),
            }],
        ),
    ];
    for e in &events {
        store.append(e).unwrap();
    }
    drop(store);
    (dir, root)
}

/// Compares `got` with `tests/data/audit/NAME`, or writes it there when
/// `NBLEDGER_BLESS` is set.
fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/audit")
        .join(name);
    if std::env::var_os("NBLEDGER_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no golden file {name}; run with NBLEDGER_BLESS=1"));
    assert_eq!(
        got, want,
        "{name} changed; if intended, rerun with NBLEDGER_BLESS=1"
    );
}

#[test]
fn golden_text_formats() {
    let (_dir, root) = golden_log();
    golden("log.txt", &ok(&root, &["log"]));
    golden("log.jsonl", &ok(&root, &["log", "--json"]));
    golden("history_c1.txt", &ok(&root, &["history", "g.ipynb", "c1"]));
    golden(
        "history_c1.jsonl",
        &ok(&root, &["history", "g.ipynb", "c1", "--json"]),
    );
    golden("blame.txt", &ok(&root, &["blame", "g.ipynb"]));
    golden("blame.jsonl", &ok(&root, &["blame", "g.ipynb", "--json"]));
    golden(
        "show_at_4.ipynb",
        &ok(&root, &["show", "g.ipynb", "--at", "4"]),
    );
    golden("export.jsonl", &ok(&root, &["export"]));
}

#[test]
fn text_output_is_one_line_per_event_and_never_carries_control_characters() {
    let (_dir, root) = golden_log();
    let log = ok(&root, &["log"]);
    assert_eq!(log.lines().count(), 7);
    for out in [
        log,
        ok(&root, &["history", "g.ipynb", "c1"]),
        ok(&root, &["blame", "g.ipynb"]),
    ] {
        for c in out.chars() {
            assert!(
                c == '\n' || !(c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
                "raw {c:?} in output:\n{out}"
            );
        }
    }
    let json = ok(&root, &["log", "--json"]);
    assert!(json.contains(r"\u001b[2J") && json.contains(r"\u202etxt"));
    let lines = json_lines(&json);
    assert_eq!(lines[3]["overrode_lock"], "ben");
    assert_eq!(
        lines[3]["overrode_locks"],
        json!([{"cell_id": "c1", "owner": "ben"}])
    );
    assert_eq!(lines[4]["rejected"], true);
    assert_eq!(
        lines[2]["summary"],
        "evil \u{1b}[2J summary\nsecond line \u{202e}txt"
    );
    let text = ok(&root, &["log"]);
    let forced = text.lines().nth(3).unwrap();
    assert!(forced.ends_with("FORCED over ben"), "{forced}");
    assert!(text.lines().nth(4).unwrap().ends_with("REJECTED"));
    // A refused write shows in the cell's history too.
    let h = json_lines(&ok(&root, &["history", "g.ipynb", "c1", "--json"]));
    let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec!["created", "modified", "modified", "modified", "rejected"]
    );
    assert_eq!(h[3]["overrode_lock"], "ben");
}

// ------------------------------------------------------------ 100k events

const NOTEBOOKS: u64 = 10;
const CELLS: u64 = 20;

fn big_event(version: u64) -> Event {
    let nb = (version - 1) % NOTEBOOKS;
    let path = format!("nb{nb}.ipynb");
    let k = (version - 1) / NOTEBOOKS; // the k-th event of this notebook
    let src = |n: u64| format!("x = {n}\nprint(x)\n");
    let (changes, cell_ids) = if k == 0 {
        let mut c = vec![Change::NotebookCreated {
            path: path.clone(),
            header: header(),
        }];
        for i in 0..CELLS {
            c.push(Change::CellInserted {
                path: path.clone(),
                index: i as u32,
                cell: cell(&format!("c{i:07}"), CellType::Code, &src(0)),
            });
        }
        (c, vec![])
    } else {
        // Cell k % CELLS gets its n-th edit: only its first line changes.
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
        timestamp_ms: T0 + version as i64,
        client_name: format!("agent-{}", version % 3),
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
        result: String::new(),
        summary: "s".into(),
        changes,
        files: vec![],
    }
}

#[test]
fn every_command_handles_a_100k_event_log() {
    let n: u64 = 100_000;
    let t = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join(".nbledger");
    let store = Store::open(&data).unwrap();
    let mut ws = Workspace::default();
    let mut v = 1;
    while v <= n {
        let batch: Vec<Event> = (v..=(v + 9_999).min(n)).map(big_event).collect();
        for e in &batch {
            ws.apply(e);
        }
        v += batch.len() as u64;
        store.append_batch(&batch).unwrap();
    }
    drop(store);
    // The files hold what the log says, so verify has nothing to report.
    for nb in ws.notebooks.values() {
        std::fs::write(root.join(&nb.path), nbledger::notebook::render_file(nb)).unwrap();
    }

    eprintln!("built the log in {:?}", t.elapsed());
    let log = ok(&root, &["log"]);
    assert_eq!(log.lines().count() as u64, n);
    assert!(log.lines().last().unwrap().starts_with("v100000  "));
    let tail = ok(
        &root,
        &["log", "--notebook", "nb3.ipynb", "--since", "99000"],
    );
    assert_eq!(tail.lines().count(), 100);

    let o = cli(&root, &["verify"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.starts_with("log ok: 100000 events"));

    let shown = ok(&root, &["show", "nb3.ipynb", "--at", "50000"]);
    let mut at = Workspace::default();
    for v in 1..=50_000 {
        let e = big_event(v);
        if e.paths[0] == "nb3.ipynb" {
            at.apply(&e);
        }
    }
    assert_eq!(
        ipynb::parse(shown.as_bytes()).unwrap(),
        ipynb::parse(&nbledger::notebook::render_file(&at.notebooks["nb3.ipynb"])).unwrap()
    );

    // Every cell of nb3 was edited 500 times: its first line belongs to
    // the last edit, its second to the notebook's creation (v4).
    let blame = json_lines(&ok(&root, &["blame", "nb3.ipynb", "--json"]));
    assert_eq!(blame.len() as u64, 2 * CELLS);
    let mut last_edit: BTreeMap<String, u64> = BTreeMap::new();
    for v in (4..=n).step_by(NOTEBOOKS as usize) {
        if let Some(id) = big_event(v).cell_ids.first() {
            last_edit.insert(id.clone(), v);
        }
    }
    for line in &blame {
        let id = line["cell_id"].as_str().unwrap();
        let want = if line["line"] == 1 { last_edit[id] } else { 4 };
        assert_eq!(line["version"], want, "{line}");
        assert_eq!(line["client_name"], format!("agent-{}", want % 3));
    }
    let history = ok(&root, &["history", "nb3.ipynb", "c0000005", "--json"]);
    assert_eq!(history.lines().count() as u64, 1 + n / NOTEBOOKS / CELLS);
    let export = ok(&root, &["export"]);
    assert_eq!(export.lines().count() as u64, n);
}

#[test]
fn history_resolves_exact_ids_first_then_unique_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let store = Store::open(&root.join(".nbledger")).unwrap();
    let mut changes = vec![Change::NotebookCreated {
        path: "g.ipynb".into(),
        header: header(),
    }];
    for (i, id) in ["abcd", "abcd0001", "abcd0002", "ffff0001"]
        .iter()
        .enumerate()
    {
        changes.push(Change::CellInserted {
            path: "g.ipynb".into(),
            index: i as u32,
            cell: cell(id, CellType::Code, id),
        });
    }
    store
        .append(&hand_event(
            1,
            0,
            "ana",
            "create_notebook",
            &[],
            "c",
            &[],
            changes,
        ))
        .unwrap();
    drop(store);
    let first = |args: &[&str]| json_lines(&ok(&root, args))[0]["cell_id"].clone();
    assert_eq!(first(&["history", "g.ipynb", "abcd", "--json"]), "abcd");
    assert_eq!(first(&["history", "g.ipynb", "ffff", "--json"]), "ffff0001");
    assert_eq!(
        first(&["history", "g.ipynb", "abcd0002", "--json"]),
        "abcd0002"
    );
    let o = cli(&root, &["history", "g.ipynb", "abcd0"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("ambiguous") && o.stderr.contains("abcd0001, abcd0002"),
        "{}",
        o.stderr
    );
    let o = cli(&root, &["history", "g.ipynb", "fff"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("at least 4 characters"), "{}", o.stderr);
}

#[test]
fn blame_keeps_authors_through_moves_type_changes_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let store = Store::open(&root.join(".nbledger")).unwrap();
    let p = || "g.ipynb".to_string();
    let a0 = cell("a", CellType::Code, "one\ntwo\n");
    let b0 = cell("b", CellType::Code, "bee\n");
    let a1 = cell("a", CellType::Code, "one\nTWO\n");
    let a_md = Arc::new(a1.with_type(CellType::Markdown));
    let mut a_md2 = (*a_md).clone();
    a_md2.source = "one\nTWO\nthree\n".into();
    let a_md2 = Arc::new(a_md2);
    let ev = |v: u64, who: &str, op: &str, changes: Vec<Change>| {
        hand_event(v, v as i64, who, op, &[], "s", &[], changes)
    };
    let events = vec![
        ev(
            1,
            "ana",
            "create_notebook",
            vec![
                Change::NotebookCreated {
                    path: p(),
                    header: header(),
                },
                Change::CellInserted {
                    path: p(),
                    index: 0,
                    cell: a0.clone(),
                },
                Change::CellInserted {
                    path: p(),
                    index: 1,
                    cell: b0,
                },
            ],
        ),
        ev(
            2,
            "ben",
            "update_cell",
            vec![set("a", "one\ntwo\n", "one\nTWO\n")],
        ),
        ev(
            3,
            "external",
            "external_change",
            vec![Change::CellMoved {
                path: p(),
                cell_id: "b".into(),
                from: 1,
                to: 0,
            }],
        ),
        ev(
            4,
            "cy",
            "delete_cell",
            vec![Change::CellDeleted {
                path: p(),
                index: 1,
                after_cell_id: Some("b".into()),
                cell: a1.clone(),
            }],
        ),
        // The cell comes back whole under its id (an outside restore).
        ev(
            5,
            "external",
            "external_change",
            vec![Change::CellInserted {
                path: p(),
                index: 1,
                cell: a1.clone(),
            }],
        ),
        ev(
            6,
            "dora",
            "change_cell_type",
            vec![Change::CellReplaced {
                path: p(),
                before: a1,
                after: a_md.clone(),
            }],
        ),
        ev(
            7,
            "eve",
            "external_change",
            vec![Change::CellReplaced {
                path: p(),
                before: a_md,
                after: a_md2,
            }],
        ),
    ];
    for e in &events {
        store.append(e).unwrap();
    }
    drop(store);
    let lines = json_lines(&ok(&root, &["blame", "g.ipynb", "--json"]));
    let got: Vec<(&str, u64, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["cell_id"].as_str().unwrap(),
                l["index"].as_u64().unwrap(),
                l["text"].as_str().unwrap(),
                l["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("b", 0, "bee", 1),
            ("a", 1, "one", 1),
            ("a", 1, "TWO", 2),
            ("a", 1, "three", 7),
        ]
    );
    let h = json_lines(&ok(&root, &["history", "g.ipynb", "a", "--json"]));
    let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec![
            "created",
            "modified",
            "deleted",
            "recovered",
            "modified",
            "modified"
        ]
    );
    let hb = json_lines(&ok(&root, &["history", "g.ipynb", "b", "--json"]));
    assert_eq!(hb[1]["action"], "moved");
    assert_eq!(
        (
            hb[1]["index_before"].as_u64(),
            hb[1]["index_after"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

#[test]
fn verify_names_a_missing_and_an_extra_index_entry() {
    let s = session();
    // The cell index entry of version 8 for the first cell.
    let db = sled::open(s.data.join("log")).unwrap();
    let by_cell = db.open_tree("by_cell").unwrap();
    let mut key = b"nb.ipynb\0".to_vec();
    key.extend_from_slice(s.first.as_bytes());
    key.push(0);
    key.extend_from_slice(&8u64.to_be_bytes());
    assert!(by_cell.remove(&key).unwrap().is_some());
    db.flush().unwrap();
    drop(by_cell);
    drop(db);
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert_eq!(
        o.stdout.lines().next().unwrap(),
        format!(
            "FAULT at version 8: the cell index entry for nb.ipynb cell {} is missing",
            s.first
        )
    );

    let s = session();
    let db = sled::open(s.data.join("log")).unwrap();
    let by_nb = db.open_tree("by_nb").unwrap();
    let mut key = b"ghost.ipynb\0".to_vec();
    key.extend_from_slice(&3u64.to_be_bytes());
    by_nb.insert(key, &[]).unwrap();
    db.flush().unwrap();
    drop(by_nb);
    drop(db);
    let o = cli(&s.root, &["verify"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert_eq!(
        o.stdout.lines().next().unwrap(),
        "FAULT: the notebook index entry for ghost.ipynb at version 3 is not accounted for by that event"
    );
}

#[test]
fn show_at_a_snapshot_name_gives_that_snapshots_content_even_a_restore_backup() {
    use nbledger::tools::snapshots;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join(".nbledger");
    std::fs::create_dir_all(&data).unwrap();
    let who = actor("ana");
    let sources =
        |nb: &RawNotebook| -> Vec<String> { nb.cells.iter().map(|c| c.source.clone()).collect() };
    {
        let e = Engine::open(root, &data).unwrap();
        let r = edit::create_notebook(
            &e,
            edit::CreateArgs {
                path: "s.ipynb".into(),
                cells: Some(vec![CellSpec {
                    source: "one".into(),
                    cell_type: None,
                    metadata: None,
                }]),
                kernel_name: None,
                client_name: None,
                request_id: None,
            },
            &who,
        )
        .unwrap()
        .1;
        let id = r["cell_ids"][0].as_str().unwrap().to_owned();
        let snap = |name: &str| snapshots::SnapshotArgs {
            path: "s.ipynb".into(),
            name: name.into(),
            description: None,
            overwrite: None,
            client_name: None,
            request_id: None,
        };
        snapshots::snapshot_notebook(&e, snap("first"), &who).unwrap();
        let update = edit::UpdateArgs {
            path: "s.ipynb".into(),
            cell_id: Some(id),
            index: None,
            source: "two".into(),
            expected_version: None,
            force: None,
            client_name: None,
            request_id: None,
            execute: None,
            timeout_s: None,
            max_output_chars: None,
            include_images: None,
        };
        edit::update_cell(&e, update, &who).unwrap();
        let restore = snapshots::RestoreArgs {
            path: "s.ipynb".into(),
            name: "first".into(),
            force: None,
            client_name: None,
            request_id: None,
        };
        let r = snapshots::restore_snapshot(&e, restore, &who).unwrap().1;
        assert_eq!(r["backup_snapshot"], "pre-restore-3");
    }
    let first = ipynb::parse(ok(root, &["show", "s.ipynb", "--at", "first"]).as_bytes()).unwrap();
    assert_eq!(sources(&first), ["one"]);
    let backup =
        ipynb::parse(ok(root, &["show", "s.ipynb", "--at", "pre-restore-3"]).as_bytes()).unwrap();
    assert_eq!(
        sources(&backup),
        ["two"],
        "the backup, not the restored state of its version"
    );
}
