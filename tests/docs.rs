//! The checked-in tool reference is the one the tools generate: a change
//! to a tool's description, schema or set without regenerating
//! `docs/tools.md` fails here.

mod common;

use std::process::Command;

#[test]
fn docs_tools_md_is_what_nbledger_tools_markdown_prints() {
    let out = Command::new(common::bin())
        .args(["tools", "--markdown"])
        .output()
        .expect("run nbledger tools --markdown");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tools.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if generated != checked_in {
        let at = generated
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "its length".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "docs/tools.md is stale (first difference at {at}); regenerate it with `cargo run -- tools --markdown > docs/tools.md`"
        );
    }
}

#[test]
fn nbledger_tools_prints_what_a_server_with_those_toolsets_lists() {
    let out = Command::new(common::bin())
        .args(["tools", "--toolsets", "transfer"])
        .output()
        .expect("run nbledger tools");
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["copy_cells", "move_cells"]);
    assert!(list["tools"][0]["inputSchema"]["properties"]["source_path"].is_object());
}
