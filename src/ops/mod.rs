//! The operations, one module each: options, validation, encoding and the host API.

pub mod cross_entropy;
mod rows;
pub mod softmax;
pub mod softmax_backward;
mod validate;
