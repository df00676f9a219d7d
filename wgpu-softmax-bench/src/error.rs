//! The harness's error: the library's errors, and what only a benchmark can get wrong.

/// What can go wrong while measuring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The library refused or failed an op, a buffer or a wait.
    #[error(transparent)]
    Library(#[from] wgpu_softmax::Error),
    /// wgpu rejected the baseline's pipelines or passes (a bug in the harness).
    #[error("the benchmark's baseline failed on the GPU (a bug; please report it): {0}")]
    Baseline(String),
    /// A workload was timed before its data was uploaded (a bug in the harness).
    #[error("the workload was not uploaded before it was run (a bug; please report it)")]
    NotUploaded,
    /// The kernel kind cannot do what was asked of it.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Burn failed (with the `burn` feature).
    #[error("burn: {0}")]
    Burn(String),
    /// A JSON report could not be read back.
    #[error("not a benchmark report: {0}")]
    Json(String),
    /// Writing the chart failed.
    #[error("drawing the chart failed: {0}")]
    Chart(String),
}

/// Shorthand for the harness's results.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
