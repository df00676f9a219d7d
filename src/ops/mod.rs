//! The operations, one module each: options, validation, encoding and the host API.

pub mod softmax;
mod validate;
