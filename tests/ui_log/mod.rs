//! Logs for the forensic view's tests and benchmark, appended by hand so
//! their history (and its hostile content) is known exactly: three agents
//! and a person on two notebooks, a forced lock, a refused write, a run,
//! and script tags, bidi controls and HTML outputs in the data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nbledger::events::{Cell, CellType, Change, Event, Header};
use nbledger::store::Store;

/// 2026-11-23T20:00:00.000Z
pub const T0: i64 = 1_795_464_000_000;

/// A client name that is an attack on the page.
pub const EVIL_CLIENT: &str = "<script>window.pwned=1</script>eve";
/// A source with a tag that would close the page's `<pre>` and a
/// right-to-left override that would reorder what a reader sees.
pub const EVIL_SOURCE: &str =
    "x = '</pre><script>window.pwned=2</script>'\nok = 'a\u{202e}b'  # \u{2066}hidden\u{2069}\n";
/// Outputs that would run script if shown raw.
pub const EVIL_OUTPUTS: &str = r#"[{"output_type":"display_data","data":{"text/html":"<b>bold</b><script>document.title='pwned';window.parent.pwned=3</script>","text/plain":"<b>"},"metadata":{}},{"output_type":"display_data","data":{"image/svg+xml":"<svg xmlns='http://www.w3.org/2000/svg' onload='window.parent.pwned=4'><script>window.parent.pwned=5</script><rect width='10' height='10'/></svg>"},"metadata":{}},{"output_type":"stream","name":"stdout","text":["\u001b[31mred\u001b[0m </pre><script>window.pwned=6</script>\n"]},{"output_type":"error","ename":"ValueError","evalue":"bad","traceback":["\u001b[0;31mValueError\u001b[0m: bad <img src=x onerror=window.pwned=7>"]}]"#;
pub const EVIL_MARKDOWN: &str = "# Title\n\n<script>window.pwned=8</script>\n<img src=x onerror=\"window.pwned=9\">\n[link](javascript:window.pwned=10)\n\n*fine*";
/// A tiny PNG (1×1).
pub const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

pub struct Built {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub head: u64,
}

fn header() -> Header {
    Header {
        nbformat: 4,
        nbformat_minor: 5,
        metadata: r#"{"kernelspec":{"name":"python3","display_name":"Python 3","language":"python"},"language_info":{"name":"python"}}"#.into(),
        extra: "{}".into(),
    }
}

fn cell(id: &str, t: CellType, src: &str) -> Arc<Cell> {
    Arc::new(Cell::new(id.into(), t, src.into(), None))
}

struct Log {
    events: Vec<Event>,
}

impl Log {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        dt_ms: i64,
        client: &str,
        op: &str,
        path: &str,
        cells: &[&str],
        summary: &str,
        changes: Vec<Change>,
    ) -> u64 {
        let version = self.events.len() as u64 + 1;
        self.events.push(Event {
            version,
            timestamp_ms: T0 + dt_ms,
            client_name: client.into(),
            operation: op.into(),
            paths: vec![path.into()],
            cell_ids: cells.iter().map(|c| c.to_string()).collect(),
            overrode_locks: vec![],
            request_id: None,
            result: format!(r#"{{"version":{version}}}"#),
            summary: summary.into(),
            changes,
            files: vec![],
        });
        version
    }

    fn last(&mut self) -> &mut Event {
        self.events.last_mut().unwrap()
    }
}

fn set(path: &str, id: &str, before: &str, after: &str) -> Change {
    Change::SourceSet {
        path: path.into(),
        cell_id: id.into(),
        before: before.into(),
        after: after.into(),
    }
}

/// The scripted session (versions are fixed; the tests name them):
///
/// 1. ana creates a.ipynb: c1 code `import os`, m1 markdown (hostile)
/// 2. bob sets c1 to `import os\nprint(1)`
/// 3. EVIL_CLIENT inserts e1 with EVIL_SOURCE
/// 4. bob locks c1
/// 5. ana tries to update c1: rejected
/// 6. ana forces c1 to `import sys\nprint(1)` (over bob's lock)
/// 7. ana runs c1 (execute_cell, run r1)
/// 8. run_outputs of r1
/// 9. run_finished r1 (ok) with EVIL_OUTPUTS + a PNG
/// 10. external creates b.ipynb (import) with one cell
/// 11. carl sets e1's outputs and metadata (cell replaced)
/// 12. bob deletes m1
///
/// Then `extra` more edits by ana, bob and carl to c1 (alternating).
pub fn session(extra: u64) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join(".nbledger");
    let store = Store::open(&data).unwrap();
    store.bind_root(&root.to_string_lossy()).unwrap();
    let mut log = Log { events: vec![] };
    let a = "a.ipynb";
    let md = cell("m1", CellType::Markdown, EVIL_MARKDOWN);
    log.push(
        0,
        "ana",
        "create_notebook",
        a,
        &["c1", "m1"],
        "created a.ipynb with 2 cells",
        vec![
            Change::NotebookCreated {
                path: a.into(),
                header: header(),
            },
            Change::CellInserted {
                path: a.into(),
                index: 0,
                cell: cell("c1", CellType::Code, "import os\n"),
            },
            Change::CellInserted {
                path: a.into(),
                index: 1,
                cell: md.clone(),
            },
        ],
    );
    log.push(
        1_000,
        "bob",
        "update_cell",
        a,
        &["c1"],
        "updated c1",
        vec![set(a, "c1", "import os\n", "import os\nprint(1)\n")],
    );
    log.push(
        2_000,
        EVIL_CLIENT,
        "insert_cell",
        a,
        &["e1"],
        "inserted </td><script>window.pwned=11</script>",
        vec![Change::CellInserted {
            path: a.into(),
            index: 2,
            cell: cell("e1", CellType::Code, EVIL_SOURCE),
        }],
    );
    log.push(
        3_000,
        "bob",
        "lock_cells",
        a,
        &["c1"],
        "locked c1",
        vec![Change::LockAcquired {
            path: a.into(),
            cell_id: "c1".into(),
            owner: "bob".into(),
            acquired_at: T0 + 3_000,
            expires_at: T0 + 603_000,
        }],
    );
    log.push(
        4_000,
        "ana",
        "update_cell",
        a,
        &["c1"],
        "refused: c1 is locked by bob",
        vec![Change::Rejected {
            path: a.into(),
            cell_id: "c1".into(),
            holder: "bob".into(),
            acquired_at: T0 + 3_000,
            expires_at: T0 + 603_000,
        }],
    );
    log.push(
        5_000,
        "ana",
        "update_cell",
        a,
        &["c1"],
        "updated c1 (forced bob's lock)",
        vec![
            Change::LockReleased {
                path: a.into(),
                cell_id: "c1".into(),
                owner: "bob".into(),
                forced: true,
            },
            set(a, "c1", "import os\nprint(1)\n", "import sys\nprint(1)\n"),
        ],
    );
    log.last().overrode_locks = vec![("c1".into(), "bob".into())];
    log.push(
        6_000,
        "ana",
        "execute_cell",
        a,
        &["c1"],
        "ran c1",
        vec![Change::RunStarted {
            path: a.into(),
            run_id: "r1".into(),
            cell_id: Some("c1".into()),
            source: "import sys\nprint(1)\n".into(),
            source_version: 6,
            kernel_name: "python3".into(),
        }],
    );
    log.push(
        6_500,
        "ana",
        "run_outputs",
        a,
        &["c1"],
        "outputs of r1",
        vec![Change::RunOutputs {
            path: a.into(),
            run_id: "r1".into(),
            cell_id: Some("c1".into()),
            outputs: r#"[{"output_type":"stream","name":"stdout","text":["1\n"]}]"#.into(),
            execution_count: Some(1),
            truncated: false,
        }],
    );
    let finished = EVIL_OUTPUTS.replacen('[', &format!(r#"[{{"output_type":"display_data","data":{{"image/png":"{PNG}","text/plain":"<Figure>"}},"metadata":{{}}}},"#), 1);
    log.push(
        7_200,
        "ana",
        "run_finished",
        a,
        &["c1"],
        "r1 ok",
        vec![Change::RunFinished {
            path: a.into(),
            run_id: "r1".into(),
            cell_id: Some("c1".into()),
            status: "ok".into(),
            execution_count: Some(1),
            started_at: Some(T0 + 6_000),
            duration_ms: Some(1_200),
            outputs: finished,
            truncated: false,
            reason: None,
        }],
    );
    let b = "b.ipynb";
    log.push(
        8_000,
        "external",
        "import",
        b,
        &["b1"],
        "imported b.ipynb",
        vec![
            Change::NotebookCreated {
                path: b.into(),
                header: header(),
            },
            Change::CellInserted {
                path: b.into(),
                index: 0,
                cell: cell("b1", CellType::Markdown, "# B notebook\n"),
            },
        ],
    );
    let before = cell("e1", CellType::Code, EVIL_SOURCE);
    let mut after = (*before).clone();
    after.outputs = Some(EVIL_OUTPUTS.into());
    after.execution_count = Some("3".into());
    after.metadata = r#"{"tags":["<script>window.pwned=12</script>"]}"#.into();
    log.push(
        9_000,
        "carl",
        "update_cell_metadata",
        a,
        &["e1"],
        "set e1 metadata",
        vec![Change::CellReplaced {
            path: a.into(),
            before,
            after: Arc::new(after),
        }],
    );
    log.push(
        10_000,
        "bob",
        "delete_cell",
        a,
        &["m1"],
        "deleted m1",
        vec![Change::CellDeleted {
            path: a.into(),
            index: 1,
            after_cell_id: Some("c1".into()),
            cell: md,
        }],
    );
    let who = ["ana", "bob", "carl"];
    let mut src = "import sys\nprint(1)\n".to_owned();
    for i in 0..extra {
        let next = format!("import sys\nprint({})\n# edit {i}\n", i + 2);
        log.push(
            11_000 + i as i64 * 10,
            who[i as usize % 3],
            "update_cell",
            a,
            &["c1"],
            "updated c1",
            vec![set(a, "c1", &src, &next)],
        );
        src = next;
    }
    for chunk in log.events.chunks(10_000) {
        store.append_batch(chunk).unwrap();
    }
    let head = store.head();
    drop(store);
    Built {
        dir,
        root,
        data,
        head,
    }
}

/// A large log for the benchmark: `n` events over `notebooks` notebooks of
/// `cells` cells each, by four clients, mostly source edits with a lock
/// now and then. Appended in batches of 10,000.
pub fn large(dir: &Path, n: u64, notebooks: usize, cells: usize) -> PathBuf {
    let data = dir.join(".nbledger");
    let store = Store::open(&data).unwrap();
    store
        .bind_root(&dir.canonicalize().unwrap().to_string_lossy())
        .unwrap();
    let who = ["ana", "bob", "carl", "dora"];
    let mut sources: Vec<Vec<String>> = vec![vec![String::new(); cells]; notebooks];
    let mut v = 1u64;
    let mut batch = Vec::with_capacity(10_000);
    let emit = |batch: &mut Vec<Event>, e: Event| {
        batch.push(e);
        if batch.len() == 10_000 {
            store.append_batch(batch).unwrap();
            batch.clear();
        }
    };
    for (k, _) in sources.iter().enumerate() {
        let path = format!("nb{k}.ipynb");
        let mut changes = vec![Change::NotebookCreated {
            path: path.clone(),
            header: header(),
        }];
        for c in 0..cells {
            changes.push(Change::CellInserted {
                path: path.clone(),
                index: c as u32,
                cell: cell(&format!("c{c:07}"), CellType::Code, ""),
            });
        }
        emit(
            &mut batch,
            Event {
                version: v,
                timestamp_ms: T0 + v as i64,
                client_name: "ana".into(),
                operation: "create_notebook".into(),
                paths: vec![path],
                cell_ids: vec![],
                overrode_locks: vec![],
                request_id: None,
                result: "{}".into(),
                summary: "created".into(),
                changes,
                files: vec![],
            },
        );
        v += 1;
    }
    while v <= n {
        let k = (v as usize * 7) % notebooks;
        let c = (v as usize * 13) % cells;
        let path = format!("nb{k}.ipynb");
        let id = format!("c{c:07}");
        let client = who[v as usize % 4];
        let (op, change) = if v.is_multiple_of(50) {
            (
                "lock_cells",
                Change::LockAcquired {
                    path: path.clone(),
                    cell_id: id.clone(),
                    owner: client.into(),
                    acquired_at: T0 + v as i64,
                    expires_at: T0 + v as i64 + 60_000,
                },
            )
        } else {
            let before = std::mem::take(&mut sources[k][c]);
            let after = format!("x = {v}\nprint(x * {c})\n# by {client}\n");
            sources[k][c] = after.clone();
            (
                "update_cell",
                Change::SourceSet {
                    path: path.clone(),
                    cell_id: id.clone(),
                    before,
                    after,
                },
            )
        };
        emit(
            &mut batch,
            Event {
                version: v,
                timestamp_ms: T0 + v as i64 * 10,
                client_name: client.into(),
                operation: op.into(),
                paths: vec![path],
                cell_ids: vec![id],
                overrode_locks: vec![],
                request_id: None,
                result: "{}".into(),
                summary: format!("{op} v{v}"),
                changes: vec![change],
                files: vec![],
            },
        );
        v += 1;
    }
    if !batch.is_empty() {
        store.append_batch(&batch).unwrap();
    }
    data
}
