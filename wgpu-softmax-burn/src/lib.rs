//! The fused kernels of [`wgpu_softmax`] on [Burn](https://burn.dev) tensors, with
//! autodiff, on Burn's own wgpu device: softmax, log-softmax, cross-entropy and linear
//! cross-entropy, and distillation from logits, as functions a Burn model calls in place of
//! Burn's own; and [`sample`], the GPU sampler, on Burn logits.
//!
//! ```no_run
//! # fn main() -> Result<(), wgpu_softmax_burn::Error> {
//! use burn::tensor::{Distribution, Int, Tensor};
//! use wgpu_softmax_burn::{BurnDevice, CrossEntropyOptions, cross_entropy};
//!
//! // One wgpu device for Burn and for the kernels; make the model's tensors on it.
//! let shared = BurnDevice::new()?;
//! let device = shared.autodiff();
//! let logits = Tensor::<2>::random([4096, 8192], Distribution::Default, &device).require_grad();
//! let targets = Tensor::<1, Int>::random([4096], Distribution::Uniform(0.0, 8192.0), &device);
//!
//! // In place of `CrossEntropyLossConfig::new().init(&device).forward(logits, targets)`:
//! let loss = cross_entropy(logits.clone(), targets, &CrossEntropyOptions::new())?;
//! let grads = loss.backward();
//! # Ok(()) }
//! ```
//!
//! # One device, no copies
//!
//! [`BurnDevice::new`] creates a wgpu device (on the adapter the `WGPU_*` environment
//! variables select), registers it with Burn's wgpu runtime (CubeCL's
//! `Device::wgpu_options().setup(..)`), and builds the library's
//! [`wgpu_softmax::Context::from_device`] over the same device and queue;
//! [`BurnDevice::from_setup`] does the same with the application's own handles. A Burn
//! tensor on that device is a slice of one of CubeCL's pooled wgpu buffers: the ops bind
//! that buffer, at the tensor's offset, as the library's region. Nothing is copied, except
//! where Burn holds a tensor as a strided view (Burn makes it contiguous first) or at an
//! offset the device cannot bind at (Burn copies it). Each output is a new Burn tensor in
//! a wgpu buffer of its own (wgpu forbids one buffer bound both read-only and writable in
//! one dispatch, and CubeCL's pool pages hold many tensors).
//!
//! # Ordering
//!
//! Burn records its kernels into a command encoder per thread and submits them when it
//! flushes; this crate records its own into an encoder of its own. The rule each op
//! follows: **flush Burn's queued work before submitting ours, and submit ours before
//! returning**. The flush puts every Burn kernel that wrote an input on the queue first;
//! submitting at once puts ours on the queue before any Burn kernel launched afterwards,
//! which reads what we wrote. Both go to the one queue, which runs them in order.
//!
//! The flush covers Burn's work on the calling thread. Call the ops from the thread that
//! made their inputs, or call [`burn::tensor::Device::sync`] there first.
//!
//! # Gradients
//!
//! On an autodiff device ([`BurnDevice::autodiff`]) each op registers a backward step with
//! Burn's autodiff (`burn_autodiff::ops::Backward` over `Autodiff<CubeBackend>`):
//!
//! - [`softmax`] and [`log_softmax`] keep their output and run the library's fused
//!   backward kernel;
//! - [`cross_entropy`] writes `dloss/dlogits` in the same pass as the loss and keeps only
//!   that, which the backward pass scales by the incoming gradient;
//! - [`linear_cross_entropy`] writes `dH`, `dW` and `db` in its forward pass (never the
//!   `N x V` logits) and the backward pass scales them;
//! - [`distill`] writes the student's gradient with the loss, as the cross-entropy does.
//!
//! Untracked inputs (inference, or a device without autodiff) skip the gradients.
//!
//! # Requirements
//!
//! Burn 0.22 with its `wgpu` backend, without `fusion` (which wraps the tensors this crate
//! binds) and without gradient checkpointing.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bind;
mod convert;
mod cross_entropy;
mod device;
mod distill;
mod error;
mod linear;
mod sample;
mod softmax;

use burn::tensor::Tensor;

pub use cross_entropy::{CrossEntropyOptions, cross_entropy};
pub use device::BurnDevice;
pub use distill::distill;
pub use error::{Error, Result};
pub use linear::linear_cross_entropy;
pub use sample::sample;
pub use softmax::{log_softmax, softmax};
pub use wgpu_softmax::{Distill, DistillReduction, Reduction, Sampler};

/// Where `tensor` lies in its wgpu buffer: the byte offset the ops bind it at. For tests
/// and diagnostics of Burn's memory pool.
///
/// # Errors
///
/// [`Error::UnknownDevice`] when `tensor` is not on a [`BurnDevice`],
/// [`Error::UnsupportedTensor`] for a tensor of another backend, [`Error::Runtime`] when
/// CubeCL cannot hand over its buffer.
#[doc(hidden)]
pub fn buffer_offset<const D: usize>(tensor: &Tensor<D>) -> Result<u64> {
    let tensor = convert::constant("tensor", tensor.clone())?;
    let launch = bind::Launch::on("tensor", &tensor)?;
    Ok(launch.bind(tensor)?.region().offset())
}

/// Fills every output this crate allocates from now on with all-ones bytes (NaN in every
/// float type, -1 in every int type) before the op writes it, so that a test comparing the
/// values sees any element the op leaves unwritten. For tests; off by default.
#[doc(hidden)]
pub fn poison_new_outputs(on: bool) {
    bind::set_poison(on);
}
