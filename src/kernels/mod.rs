//! The kernel room: running code on real Jupyter kernels without a Jupyter
//! server (contract §9).
//!
//! It owns kernel processes, their ZeroMQ connections and one FIFO queue of
//! runs per kernel, and turns iopub messages into nbformat outputs. It knows
//! nothing of notebooks, events or the store: the engine hands it code and
//! receives run progress through a sink, and writes the log itself.

pub mod ansi;
pub mod outputs;

pub use ansi::strip_ansi;
pub use outputs::{OutputLimits, Outputs, remove_overwritten};
