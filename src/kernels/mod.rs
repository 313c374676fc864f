//! The kernel room: running code on real Jupyter kernels without a Jupyter
//! server (contract §9).
//!
//! It owns kernel processes, their ZeroMQ connections and one FIFO queue of
//! runs per kernel, and turns iopub messages into nbformat outputs. It knows
//! nothing of notebooks, events or the store: the engine hands it code and
//! receives run progress through a sink, and writes the log itself.
//!
//! Layers, each in its own file: `spec` (finding kernelspecs), `process`
//! (launching, signalling, orphans), `wire` (sockets), `boot` (start-up
//! handshake), `outputs` (the pure accumulator), `run` (what a caller sees
//! of a run), `kernel` (one kernel's task and queue), `manager` (kernels by
//! notebook).

pub mod ansi;
mod boot;
mod error;
pub mod kernel;
pub mod manager;
pub mod outputs;
pub mod process;
pub mod run;
pub mod spec;
mod wire;

pub use ansi::strip_ansi;
pub use error::KernelError;
pub use kernel::{Kernel, KernelOptions, KernelPlace, KernelState, KernelStatus};
pub use manager::{KernelEntry, KernelManager, ManagerConfig, RunAccepted};
pub use outputs::{OutputLimits, Outputs, remove_overwritten};
pub use process::{KernelProcess, Orphan, PidRecord, clean_orphans};
pub use run::{OutputsUpdate, RunEnd, RunEvent, RunHandle, RunRequest, RunSink, RunStatus};
pub use spec::{
    InterruptMode, JupyterDirs, KernelSpec, KernelSpecInfo, KernelSpecs, UnknownKernel,
};
pub use wire::Heartbeat;
