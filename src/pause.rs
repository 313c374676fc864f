//! Pause points for tests of races that no schedule makes reliable.
//!
//! With `NBLEDGER_PAUSE_DIR=DIR` in its environment, the server stops at a
//! named point once the test has armed it by creating `DIR/NAME.arm`: it
//! removes that file, writes `DIR/NAME.paused` and waits until the test
//! creates `DIR/NAME.resume` (at most 60 s), then removes both and goes
//! on. Without the variable a point costs one cached lookup. Points:
//! `before_swap` (a batch is durable, its new files are not yet in place).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("NBLEDGER_PAUSE_DIR").map(PathBuf::from))
        .as_ref()
}

/// Waits at point `name` while a test holds it (see the module docs).
pub fn point(name: &str) {
    let Some(dir) = dir() else {
        return;
    };
    if std::fs::remove_file(dir.join(format!("{name}.arm"))).is_err() {
        return;
    }
    let paused = dir.join(format!("{name}.paused"));
    let resume = dir.join(format!("{name}.resume"));
    if std::fs::write(&paused, b"").is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !resume.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(&resume);
    let _ = std::fs::remove_file(&paused);
}
