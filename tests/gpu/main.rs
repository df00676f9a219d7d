//! The GPU test suite as one binary: every module shares one context (`common::ctx`) and
//! so one pipeline cache, and the suite links once. On a software adapter compiling
//! pipelines is most of the time, so a pipeline built for one module serves the others.
//!
//! Runs on the adapter that `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` select; without one,
//! every GPU test fails with a message that says what to install.

mod common;

mod api;
mod autotune;
mod backward;
mod chain_verify;
mod class_axis;
mod concurrency;
mod cross_entropy;
mod cross_entropy_options;
mod device_limits;
mod distill;
mod faults;
mod fuzz_plain_layers;
mod host_path;
mod limits;
mod linear_cross_entropy;
mod module_layers;
mod numerics;
mod properties;
mod sample;
mod storage_types;
mod strategies;
