//! §10 tools on large notebooks: `replace_in_notebook` over a 1,000-cell
//! notebook (the e2e benchmark's fixture (b): two-line sources, a stream
//! and a 1.5 KB image per cell), and `diff_notebooks` of two 1,000-cell
//! notebooks: matched by id (100 sources differ), by content (a copy
//! without ids, against the same 100 edits), and one notebook at its
//! import against now.
//!
//! `cargo bench --bench notebooks`. The tool functions are timed on an
//! in-process engine (file sync, plan, durable append and file write
//! included for a real replace), without MCP framing.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use nbledger::engine::{Actor, Engine};
use nbledger::tools::{diff_notebooks, replace};
use serde_json::{Value, json};

const CELLS: usize = 1000;

/// The e2e benchmark's fixture (b), with `tag` in each source.
fn notebook(tag: &str, ids: bool) -> Value {
    let png = "iVBORw0KGgoAAAANSUhEUgAA".repeat(170);
    let cells: Vec<Value> = (0..CELLS)
        .map(|i| {
            let mut c = json!({"cell_type": "code", "execution_count": i + 1, "metadata": {},
                "outputs": [
                    {"name": "stdout", "output_type": "stream", "text": [format!("step {i}\n"), "loss 0.1234\n".repeat(8)]},
                    {"data": {"image/png": png, "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
                     "metadata": {}, "output_type": "display_data"}
                ],
                "source": [format!("x_{i} = compute({i}, {tag})\n"), "plot(x)"]});
            if ids {
                c["id"] = json!(format!("c{i:07}"));
            }
            c
        })
        .collect();
    json!({"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5})
}

fn write(root: &Path, path: &str, nb: &Value) {
    std::fs::write(root.join(path), serde_json::to_vec_pretty(nb).unwrap()).unwrap();
}

fn actor() -> Actor {
    Actor {
        client_name: "bench".into(),
        request_id: None,
        named: true,
    }
}

fn replace_args(pattern: &str, replacement: &str, dry_run: bool) -> replace::ReplaceArgs {
    replace::ReplaceArgs {
        path: "b.ipynb".into(),
        pattern: pattern.into(),
        replacement: replacement.into(),
        case_sensitive: None,
        cell_ids: None,
        cell_id: None,
        cell_type: None,
        max_replacements: None,
        dry_run: Some(dry_run),
        expected_version: None,
        force: None,
        client_name: None,
        request_id: None,
    }
}

fn diff_args(path: &str, other: &str, version: Option<u64>) -> diff_notebooks::DiffNotebooksArgs {
    diff_notebooks::DiffNotebooksArgs {
        path: path.into(),
        other_path: Some(other.into()),
        version,
        other_version: None,
        context_lines: None,
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "b.ipynb", &notebook("a", true));
    // The same content under other ids (a copy), and with every tenth
    // source changed under the same ids.
    write(root, "copy.ipynb", &notebook("a", false));
    let mut edited = notebook("a", true);
    for i in (0..CELLS).step_by(10) {
        edited["cells"][i]["source"][0] = json!(format!("x_{i} = compute({i}, b)\n"));
    }
    write(root, "edited.ipynb", &edited);
    write(root, "b2.ipynb", &notebook("a", true));
    let engine = Engine::open(root, &root.join(".nbledger")).unwrap();
    let who = actor();

    let mut g = c.benchmark_group("replace_in_notebook_1000_cells");
    g.sample_size(20);
    g.bench_function("dry_run_every_cell", |b| {
        b.iter(|| {
            replace::replace_in_notebook(
                &engine,
                replace_args(r"compute\((\d+), (\w)\)", "run($2, $1)", true),
                &who,
            )
            .unwrap()
        })
    });
    // Every cell changed, committed and written; the next round puts it back.
    let mut forward = true;
    g.bench_function("write_every_cell", |b| {
        b.iter(|| {
            let (from, to) = if forward { ("a)", "z)") } else { ("z)", "a)") };
            forward = !forward;
            let out = replace::replace_in_notebook(
                &engine,
                replace_args(&regex_escape(from), to, false),
                &who,
            )
            .unwrap();
            assert_eq!(out.1["replaced"], json!(CELLS));
        })
    });
    g.bench_function("write_one_cell", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            replace::replace_in_notebook(
                &engine,
                replace_args(
                    r"compute\(500, (\w+)\)",
                    &format!("compute(500, v{k})"),
                    false,
                ),
                &who,
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("diff_notebooks_1000_cells");
    g.sample_size(20);
    g.bench_function("by_id_100_modified", |b| {
        b.iter(|| {
            diff_notebooks::diff_notebooks(&engine, diff_args("b2.ipynb", "edited.ipynb", None))
                .unwrap()
        })
    });
    g.bench_function("by_content_new_ids", |b| {
        b.iter(|| {
            diff_notebooks::diff_notebooks(&engine, diff_args("copy.ipynb", "edited.ipynb", None))
                .unwrap()
        })
    });
    // Its import, against now (after the replaces above).
    let v1 = engine.store().notebook_versions("b.ipynb", 0, 1).unwrap()[0];
    g.bench_function("one_notebook_at_two_versions", |b| {
        b.iter(|| {
            diff_notebooks::diff_notebooks(&engine, diff_args("b.ipynb", "b.ipynb", Some(v1)))
                .unwrap()
        })
    });
    g.finish();
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

criterion_group!(notebooks, benches);
criterion_main!(notebooks);
