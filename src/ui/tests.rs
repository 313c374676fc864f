//! Handler tests live in tests/ui.rs (they need a log built by the engine).
