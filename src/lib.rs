#![doc = include_str!("../README.md")]

// The wgpu this crate is built on, so that an embedder uses the same version without
// pinning it: `wgpu_softmax::wgpu::Device`.
pub use wgpu;
// What an embedder's own setup needs besides wgpu, at the versions this crate uses: a
// minimal program depends on `wgpu-softmax` alone (`wgpu_softmax::pollster::block_on` for
// wgpu's futures, `wgpu_softmax::bytemuck::cast_slice` for buffer contents).
pub use bytemuck;
pub use pollster;

pub mod check;
mod context;
mod dtype;
mod error;
mod explain;
mod health;
mod kernels;
mod ops;
mod pending;
pub mod philox;
mod plan;
mod prepare;
mod record;
pub mod reference;
mod reuse;
// The autotuner's samples always; the tests' random inputs with `testing`.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
mod rng;
mod shape;
mod strategy;
mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timing;
mod transfer;
mod tune;

pub use check::Tolerance;
pub use context::{Context, ContextOptions, DEFAULT_TIMEOUT, OPTIONAL_FEATURES};
pub use dtype::{DType, Element, bf16, f16};
pub use error::{Error, Result};
pub use explain::{LinearExplanation, Pass, PlanExplanation, PlanRequest};
pub use ops::chain_verify::{
    CHAIN_STATUS_WORDS, ChainBuffers, ChainOutput, ChainShape, ChainStatus, ChainVerifier,
};
pub use ops::cross_entropy::{
    CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyOutput, CrossEntropyStatus, Gradient,
    Reduction, STATUS_WORDS, TargetBuffer, Targets,
};
pub use ops::distill::{Distill, DistillBuffers, DistillInput, DistillOutput, DistillReduction};
pub use ops::linear_cross_entropy::{
    DEFAULT_WORKSPACE_BYTES, LINEAR_BLOCK_CLASSES, LINEAR_SHARE_BYTES, LinearCrossEntropy,
    LinearCrossEntropyBuffers, LinearCrossEntropyInput, LinearCrossEntropyOutput, LinearGradients,
    LinearPlan, LinearShape,
};
pub use ops::sample::{
    RowSettingBuffers, RowSettings, SAMPLE_STATUS_WORDS, SampleBuffers, SampleOutput, SampleOutputs,
    SampleStatus, Sampler,
};
pub use ops::softmax::{Softmax, log_softmax, softmax};
pub use ops::softmax_backward::{SoftmaxBackward, log_softmax_backward, softmax_backward};
pub use plan::{Chunk, DeviceProfile, Plan, ProfileFeatures, ProfileLimits};
pub use prepare::Prepared;
pub use shape::Shape;
pub use strategy::Strategy;
pub use tensor::{BufferRegion, TensorRef};
