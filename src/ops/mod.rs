//! The operations, one module each: options, validation, encoding and the host API.

mod autotune;
pub mod chain_verify;
pub mod cross_entropy;
pub mod distill;
pub mod linear_cross_entropy;
pub(crate) mod matmul;
pub(crate) mod rows;
pub mod sample;
pub mod softmax;
pub mod softmax_backward;
mod validate;
