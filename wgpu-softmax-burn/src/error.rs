//! What can go wrong when an op of this crate runs on Burn tensors.

/// The errors of this crate: the library's own, and what is wrong with the Burn tensors or
/// devices handed to an op.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The library refused or failed the op (its message says what and what to do).
    #[error(transparent)]
    Library(#[from] wgpu_softmax::Error),

    /// The tensor is on a device this crate did not set up, so there is no context that
    /// shares its wgpu device and queue.
    #[error(
        "{what} is on {device}, which this crate did not set up: create the device with \
         `wgpu_softmax_burn::BurnDevice::new()` (or `from_setup`) and make the tensors on \
         `BurnDevice::device()` or `BurnDevice::autodiff()`"
    )]
    UnknownDevice {
        /// Which tensor.
        what: &'static str,
        /// The device it is on.
        device: String,
    },

    /// The tensor is not a plain wgpu tensor of Burn's CubeCL backend (another backend, a
    /// fusion build, or an autodiff strategy this crate does not route).
    #[error(
        "{what} is not a Burn wgpu tensor this crate can bind ({reason}): use Burn's wgpu \
         backend without the `fusion` feature, and no gradient checkpointing"
    )]
    UnsupportedTensor {
        /// Which tensor.
        what: &'static str,
        /// Why it cannot be bound.
        reason: String,
    },

    /// The tensor's element type is not one the op takes.
    #[error("{what} has dtype {found}; the op takes {expected}")]
    UnsupportedDType {
        /// Which tensor.
        what: &'static str,
        /// Its dtype.
        found: String,
        /// The dtypes the op takes.
        expected: &'static str,
    },

    /// A tensor that takes gradients is of a dtype Burn has no kernels for on its device
    /// (bf16 on Burn's WGSL backend: WGSL has no bf16), so its backward pass could not run.
    #[error(
        "{what} takes gradients but is {dtype}, which Burn's wgpu backend has no kernels for on \
         this device: train in f32 (or f16 where the adapter has it); untracked {dtype} tensors \
         work in this crate's ops"
    )]
    NoBurnKernels {
        /// Which tensor.
        what: &'static str,
        /// Its dtype.
        dtype: String,
    },

    /// Two tensors of one op have different float dtypes.
    #[error("{what} has dtype {found} but {other} has {expected}: cast one with `Tensor::cast`")]
    DTypeMismatch {
        /// The tensor whose dtype differs.
        what: &'static str,
        /// Its dtype.
        found: String,
        /// The tensor it must match.
        other: &'static str,
        /// That tensor's dtype.
        expected: String,
    },

    /// A tensor's shape does not fit the op or the other tensors.
    #[error("{what}: {problem}")]
    ShapeMismatch {
        /// Which tensor.
        what: &'static str,
        /// What is wrong, with the shapes.
        problem: String,
    },

    /// The dimension to reduce over is not one of the tensor's.
    #[error("dim {dim} is out of range for a tensor of rank {rank}")]
    InvalidDim {
        /// The dimension asked for.
        dim: usize,
        /// The tensor's rank.
        rank: usize,
    },

    /// Tensors of one op are on different devices.
    #[error("{what} is on {found} but {other} is on {expected}: move it with `Tensor::to_device`")]
    DeviceMismatch {
        /// The tensor on the other device.
        what: &'static str,
        /// Its device.
        found: String,
        /// The tensor it must share a device with.
        other: &'static str,
        /// That tensor's device.
        expected: String,
    },

    /// Setting up the shared wgpu device, or registering it with Burn, failed.
    #[error("setting up the wgpu device for Burn failed: {0}")]
    Setup(String),

    /// Burn's runtime failed to flush, allocate or hand over a buffer.
    #[error("Burn's wgpu runtime failed: {0}")]
    Runtime(String),
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
