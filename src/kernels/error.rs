//! The kernel room's one error type, with the contract code each maps to.

use std::path::PathBuf;

use super::spec::UnknownKernel;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KernelError {
    /// No kernelspec by that name; lists the ones there are.
    #[error("{0}")]
    UnknownKernel(#[from] UnknownKernel),
    /// The kernel process could not be started or never answered.
    #[error("kernel '{kernel_name}' failed to start: {reason}{}", tail_text(.stderr_tail))]
    StartFailed {
        kernel_name: String,
        reason: String,
        /// The end of the kernel's stderr and stdout (empty if it never ran).
        stderr_tail: String,
    },
    /// No kernel is running for this notebook.
    #[error("no kernel is running for {}", .0.display())]
    NotRunning(PathBuf),
}

fn tail_text(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its output ended with:\n{}", tail.trim_end())
    }
}

impl KernelError {
    /// The contract's error code (§8.2, §9.2): an unknown kernelspec and a
    /// missing kernel are `not_found`, a kernel that fails to start is
    /// `unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            KernelError::UnknownKernel(_) | KernelError::NotRunning(_) => "not_found",
            KernelError::StartFailed { .. } => "unavailable",
        }
    }
}
