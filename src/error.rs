//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in this crate. Each message says what is wrong and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the request (none installed, or the `WGPU_*` variables exclude
    /// every one there is).
    #[error(
        "no GPU adapter found ({request}). Install a GPU driver; on Linux without a GPU, \
         Mesa's software Vulkan driver gives one: `apt-get install mesa-vulkan-drivers` \
         (for GL also `libegl-mesa0 libgl1-mesa-dri`). Check WGPU_BACKEND and WGPU_ADAPTER_NAME"
    )]
    NoAdapter {
        /// Which backends and adapter name were asked for.
        request: String,
    },

    /// The adapter refused to create a device with the features and limits asked for.
    #[error("the adapter '{adapter}' could not create a device: {message}")]
    DeviceRequest {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },

    /// A slice or buffer length does not match the shape it was given with.
    #[error("{what} holds {actual} elements but the shape {rows}x{cols} needs {expected}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// Rows of the shape.
        rows: usize,
        /// Columns of the shape.
        cols: usize,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        actual: usize,
    },

    /// `rows * cols` does not fit in memory addressing at all.
    #[error("the shape {rows}x{cols} overflows the number of addressable elements")]
    ShapeOverflow {
        /// Rows of the shape.
        rows: usize,
        /// Columns of the shape.
        cols: usize,
    },

    /// A class axis outside the tensor's dimensions.
    #[error(
        "dim {dim} is out of range for a tensor of {ndim} dimensions; give one from {} (both included)",
        axis_range(.ndim)
    )]
    AxisOutOfRange {
        /// The axis given (negative counts from the end).
        dim: isize,
        /// The tensor's number of dimensions.
        ndim: usize,
    },

    /// A shape whose rows are not whole runs of the positions after its class axis.
    #[error(
        "a shape with {inner} positions after the class axis needs a multiple of {inner} rows, \
         not {rows}; build it with Shape::of_dims or Shape::with_inner"
    )]
    InvalidLayout {
        /// Rows of the shape.
        rows: usize,
        /// Positions after the class axis.
        inner: usize,
    },

    /// A caller's buffer is smaller than the shape needs.
    #[error("the {what} buffer has {actual} bytes but the shape needs {required}; create it larger")]
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// Bytes needed.
        required: u64,
        /// Bytes it has.
        actual: u64,
    },

    /// A region given without a storage type (a plain buffer or slice, read as f32) is too
    /// small for the tensor in f32, but is its size in a 16-bit type (give or take a little
    /// padding): most likely f16 or bf16 data passed without naming its type.
    #[error(
        "the {what} buffer has {actual} bytes but the shape needs {required} in f32, the type of a \
         plain buffer or slice; {actual} bytes is the tensor's size in a 16-bit type: if it holds f16 or \
         bf16, name the type with TensorRef::new(buffer, DType::BF16) (or DType::F16) and pass \
         every class-axis tensor of the call so; else create the buffer larger"
    )]
    UntypedHalfTensor {
        /// Which buffer.
        what: &'static str,
        /// Bytes the tensor needs in f32.
        required: u64,
        /// Bytes the region has.
        actual: u64,
    },

    /// A caller's buffer lacks a usage flag the operation needs.
    #[error("the {what} buffer lacks the usage {missing:?}; add it when creating the buffer")]
    MissingUsage {
        /// Which buffer.
        what: &'static str,
        /// The flags it lacks.
        missing: wgpu::BufferUsages,
    },

    /// A region of a caller's buffer starts at an offset the device cannot bind from.
    #[error(
        "the {what} region starts at byte {offset}, but this device binds storage buffers only at \
         multiples of {alignment} bytes (min_storage_buffer_offset_alignment); place it at such an \
         offset, or copy it there"
    )]
    MisalignedOffset {
        /// Which buffer.
        what: &'static str,
        /// The region's offset.
        offset: u64,
        /// The device's alignment.
        alignment: u32,
    },

    /// A region of a caller's buffer does not lie within the buffer.
    #[error("the {what} region ({offset} + {size} bytes) runs past the end of its {buffer_size}-byte buffer")]
    RegionOutOfBounds {
        /// Which buffer.
        what: &'static str,
        /// The region's offset.
        offset: u64,
        /// The region's size.
        size: u64,
        /// The buffer's size.
        buffer_size: u64,
    },

    /// Tensors of one op call have different storage types.
    #[error(
        "the {what} tensor is {actual} but the {reference} tensor is {expected}; one op call keeps \
         every tensor with the class axis in one storage type, as PyTorch does"
    )]
    DTypeMismatch {
        /// Which tensor.
        what: &'static str,
        /// The tensor the others must match.
        reference: &'static str,
        /// Its storage type.
        expected: crate::dtype::DType,
        /// The storage type given.
        actual: crate::dtype::DType,
    },

    /// A buffer passed to an op belongs to another device than the context's.
    #[error(
        "a buffer passed to the op belongs to another device than the context's: {0}; create the \
         buffer on the context's device (Context::device), or run the op on the context of the \
         buffer's device"
    )]
    ForeignBuffer(String),

    /// An input and an output of one dispatch are in the same buffer.
    #[error(
        "an input and an output are in the same buffer; wgpu cannot bind one buffer both \
         read-only and writable in one dispatch: pass a separate output buffer (the \
         cross-entropy can write its gradient over the logits with Gradient::InPlace)"
    )]
    AliasedBuffers,

    /// An option has a value the op cannot use, or contradicts the buffers given.
    #[error("invalid {option}: {problem}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// A class-index target is neither `ignore_index` nor a class.
    #[error(
        "target {value} in row {row} is out of range: classes are 0..{classes} and the \
         ignore_index is {ignore_index}; fix the target or mark the row with ignore_index"
    )]
    TargetOutOfRange {
        /// The row.
        row: usize,
        /// The target given.
        value: i64,
        /// The number of classes.
        classes: usize,
        /// The ignore index in force.
        ignore_index: i64,
    },

    /// A probability target is negative, NaN or infinite.
    #[error("target probability {value} at row {row}, class {col} is not a finite non-negative number")]
    InvalidProbability {
        /// The row.
        row: usize,
        /// The class.
        col: usize,
        /// The value given.
        value: f32,
    },

    /// The GPU found class-index targets out of range (the GPU-resident API does not
    /// check targets on the host); their rows have a NaN loss.
    #[error(
        "{rows} rows had class targets out of range on the GPU (first: row {first_row}); \
         their loss is NaN. Check the targets, or mark rows to skip with ignore_index"
    )]
    TargetsOutOfRangeOnGpu {
        /// How many rows.
        rows: u32,
        /// The first of them.
        first_row: u32,
    },

    /// A device limit is too small for the work, and this operation cannot split it.
    #[error("the work needs {required} for the limit `{limit}` but the device allows {available}")]
    LimitExceeded {
        /// The limit's name in `wgpu::Limits`.
        limit: &'static str,
        /// What the work needs.
        required: u64,
        /// What the device allows.
        available: u64,
    },

    /// A strategy was forced that this device cannot run.
    #[error("the strategy {strategy:?} is not available on this device: {reason}")]
    StrategyUnavailable {
        /// The strategy asked for.
        strategy: crate::strategy::Strategy,
        /// Why it is not available.
        reason: &'static str,
    },

    /// The GPU did not finish within the context's timeout.
    #[error(
        "the GPU did not finish within {0:?}; raise the timeout with Context::with_timeout \
         or submit smaller work"
    )]
    Timeout(Duration),

    /// The device was lost (driver reset, GPU removed, or a fatal error earlier).
    #[error("the GPU device was lost: {0}; create a new Context")]
    DeviceLost(String),

    /// The device reported an error outside any error scope (for example from other code
    /// sharing it), after which this context takes no more work.
    #[error(
        "the GPU device reported an error and this context takes no more work: {0}; create a new Context"
    )]
    Unhealthy(String),

    /// The device ran out of memory.
    #[error("the GPU ran out of memory: {0}; free buffers or submit smaller work")]
    OutOfMemory(String),

    /// wgpu reported a validation error. This is a bug in this crate (or a caller's buffer
    /// in a state it cannot be used in, such as mapped); please report it with the message.
    #[error("wgpu validation error (a bug; please report it): {0}")]
    Validation(String),

    /// Reading a result back from the GPU failed.
    #[error("reading the result back from the GPU failed: {0}")]
    Readback(String),

    /// A call that waits for the GPU was made on the web, where nothing may block the
    /// browser's thread (and a wait there would never end: the GPU's answers arrive as
    /// events of the very thread that waits).
    #[error("{call} waits for the GPU, which cannot be done on the web; use {instead} and await it")]
    NeedsAsync {
        /// The blocking call.
        call: &'static str,
        /// The async call to use instead.
        instead: &'static str,
    },

    /// The browser offers no WebGPU adapter.
    #[error(
        "this browser offers no WebGPU adapter ({0}). Use a browser with WebGPU turned on \
         (Chrome and Edge have it; on Linux, start Chromium with --enable-unsafe-webgpu \
         --enable-features=Vulkan), from a secure context (https or localhost)"
    )]
    NoWebGpu(String),
}

/// The axes of a tensor of `ndim` dimensions, as a message gives them: `-4 to 3`, negative
/// counting from the end (a 0-d tensor takes -1 or 0, as in PyTorch).
fn axis_range(ndim: &usize) -> String {
    match *ndim {
        0 => "-1 to 0".to_owned(),
        n => format!("-{n} to {}", n - 1),
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Turns a wgpu error caught by an error scope into this crate's error.
    pub(crate) fn from_wgpu(error: &wgpu::Error) -> Self {
        let text = error.to_string();
        match error {
            wgpu::Error::OutOfMemory { .. } => Self::OutOfMemory(text),
            // wgpu-core's DeviceError::DeviceMismatch, reported when a bind group or a
            // command names a resource of another device (tests/api.rs pins the wording).
            _ if text.contains("doesn't match Device") => Self::ForeignBuffer(text),
            _ => Self::Validation(text),
        }
    }
}
