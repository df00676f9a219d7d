#![doc = include_str!("../README.md")]

pub mod bench;
pub mod check;
mod context;
mod error;
mod health;
mod ops;
mod plan;
pub mod reference;
pub mod shaders;
mod shape;
mod timer;
mod transfer;
mod tune;

pub use context::{Context, ContextOptions, DEFAULT_TIMEOUT, OPTIONAL_FEATURES};
pub use error::{Error, Result};
pub use ops::cross_entropy::{
    CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyOutput, CrossEntropyStatus, Gradient,
    Reduction, STATUS_WORDS, TargetBuffer, Targets,
};
pub use ops::softmax::{Softmax, log_softmax, softmax};
pub use ops::softmax_backward::{SoftmaxBackward, log_softmax_backward, softmax_backward};
pub use plan::{
    Chunk, DeviceCaps, LLVMPIPE_LOOP_ITERATIONS, Plan, SPLIT_SEGMENT_COLS, Strategy, check_binding_fits,
    choose_strategy, loop_iterations, plan, prefers_split_rows, rows_per_chunk, rows_per_group,
    split_segments, spread_grid,
};
pub use shape::Shape;
pub use tune::{OpFamily, TuneKey};
