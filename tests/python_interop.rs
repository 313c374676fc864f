//! Runs the Python suite (`tests/py`): interop with the official Python MCP
//! SDK and validation of every written file with Python nbformat. It
//! installs its pinned requirements into `target/pyenv` on first run.

use std::process::Command;

#[test]
fn python_sdk_interop_and_nbformat_validation() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg(format!("{repo}/tests/py/run.sh"))
        .current_dir(repo)
        .env("NBLEDGER_BIN", env!("CARGO_BIN_EXE_nbledger"))
        .status()
        .expect("bash must be available to run tests/py/run.sh");
    assert!(
        status.success(),
        "the Python interop suite failed (see its output above)"
    );
}
