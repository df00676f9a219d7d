//! Burn's tensors as the library's buffer regions, and the ordering between Burn's queued
//! work and this crate's.
//!
//! A Burn tensor on the shared device is a CubeCL handle: a slice of a wgpu buffer of
//! CubeCL's memory pool. [`Launch::input`] asks CubeCL for that buffer, offset and size,
//! and binds them as they are; [`Launch::output`] allocates a tensor for an op to write.
//! Outputs get a wgpu buffer of their own (CubeCL's dedicated allocation): wgpu tracks
//! usage per buffer, and one buffer cannot be bound read-only and writable in one dispatch,
//! so an output must not share a pool page with an input.
//!
//! [`Launch::submit`] flushes the calling thread's Burn stream (its recorded kernels go
//! to the queue first), records this crate's kernels into an encoder of its own and
//! submits it at once, so that every Burn kernel launched afterwards, which reads what
//! this crate wrote, comes later on the same queue.

use std::sync::atomic::{AtomicBool, Ordering};

use burn_backend::{DType as BurnDType, Shape as BurnShape, TensorMetadata};
use burn_cubecl::CubeDevice;
use burn_cubecl::cubecl::client::Client;
use burn_cubecl::cubecl::wgpu::{AutoCompiler, WgpuResource, WgpuServer};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use wgpu_softmax::{BufferRegion, Context, DType, TensorRef, wgpu};

use crate::device::context_for;
use crate::error::{Error, Result};

/// Whether [`Launch::output`] fills each new output with poison (see
/// [`crate::poison_new_outputs`]).
static POISON: AtomicBool = AtomicBool::new(false);

/// Turns the poisoning of new outputs on or off.
pub(crate) fn set_poison(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// The CubeCL server of Burn's wgpu runtime, whose storage holds the tensors' buffers.
type Server = WgpuServer<AutoCompiler>;
/// A tensor's buffer, kept in place while held.
type Resource = cubecl_runtime::storage::ManagedResource<WgpuResource>;

/// The library's storage type of a Burn float dtype.
pub(crate) fn float_dtype(what: &'static str, dtype: BurnDType) -> Result<DType> {
    match dtype {
        BurnDType::F32 => Ok(DType::F32),
        BurnDType::F16 => Ok(DType::F16),
        BurnDType::BF16 => Ok(DType::BF16),
        other => {
            Err(Error::UnsupportedDType { what, found: format!("{other:?}"), expected: "f32, f16 or bf16" })
        }
    }
}

/// A tensor bound for one op: the tensor (kept alive) and its buffer region.
pub(crate) struct Bound {
    /// The tensor, contiguous.
    pub(crate) tensor: CubeTensor,
    resource: Resource,
    bytes: u64,
}

impl Bound {
    /// The tensor's bytes in its buffer.
    pub(crate) fn region(&self) -> BufferRegion<'_> {
        let resource = self.resource.resource();
        BufferRegion::at(&resource.buffer, resource.offset).with_size(self.bytes)
    }

    /// The tensor's elements, of storage type `dtype`.
    pub(crate) fn tensor_ref(&self, dtype: DType) -> TensorRef<'_> {
        TensorRef::new(self.region(), dtype)
    }
}

/// One op on the shared device: its context, and Burn's client to bind and allocate with.
pub(crate) struct Launch {
    ctx: Context,
    client: Client,
    device: CubeDevice,
    alignment: u64,
}

impl Launch {
    /// The launch of an op whose first tensor is `first`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDevice`] when `first` is not on a device [`crate::BurnDevice`] set
    /// up.
    pub(crate) fn on(what: &'static str, first: &CubeTensor) -> Result<Self> {
        let ctx = context_for(what, &first.device)?;
        let alignment = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment).max(4);
        Ok(Self { ctx, client: first.client.clone(), device: first.device.clone(), alignment })
    }

    /// Binds an input: made contiguous (and moved off storage tiling) by Burn where it is
    /// a view, copied by Burn where its offset is not one the device can bind at.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceMismatch`] when it is on another device, [`Error::Runtime`] when
    /// CubeCL cannot hand over its buffer.
    pub(crate) fn input(&self, what: &'static str, tensor: CubeTensor) -> Result<Bound> {
        if tensor.device != self.device {
            return Err(Error::DeviceMismatch {
                what,
                found: format!("{:?}", tensor.device),
                other: "the op's first tensor",
                expected: format!("{:?}", self.device),
            });
        }
        let tensor = into_contiguous(tensor);
        let bound = self.bind(tensor)?;
        if bound.region().offset() % self.alignment == 0 {
            return Ok(bound);
        }
        // A view at an offset the device cannot bind at: a copy of its own.
        let copy = bound.tensor.copy();
        drop(bound);
        self.bind(copy)
    }

    /// A new contiguous tensor of `shape` and `dtype` for the op to write, in a wgpu
    /// buffer of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when CubeCL cannot allocate it or hand over its buffer.
    pub(crate) fn output(&self, shape: BurnShape, dtype: BurnDType) -> Result<Bound> {
        let bytes = shape.num_elements() * dtype.size();
        let handle = self.client.memory_dedicated_allocation(bytes.max(4), |bytes| self.client.empty(bytes));
        let tensor =
            CubeTensor::new_contiguous(self.client.clone(), self.device.clone(), shape, handle, dtype);
        let bound = self.bind(tensor)?;
        if POISON.load(Ordering::Relaxed) && bound.bytes > 0 {
            // All ones: NaN in every float type, -1 in every int type. Written on the queue
            // ahead of the op's submission, so an element the op leaves unwritten shows.
            let region = bound.region();
            let bytes = bound.bytes.next_multiple_of(4);
            if region.offset() + bytes <= region.buffer().size() {
                let ones = vec![0xff_u8; usize::try_from(bytes).unwrap_or(0)];
                self.ctx.queue().write_buffer(region.buffer(), region.offset(), &ones);
            }
        }
        Ok(bound)
    }

    /// Binds `tensor` as it lies, without making it contiguous or moving it.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when CubeCL cannot hand over its buffer.
    pub(crate) fn bind(&self, tensor: CubeTensor) -> Result<Bound> {
        let bytes = (tensor.shape().num_elements() * tensor.dtype.size()) as u64;
        let resource = self
            .client
            .get_resource::<Server>(tensor.handle.clone())
            .map_err(|e| Error::Runtime(format!("binding a tensor's buffer: {e:?}")))?;
        Ok(Bound { tensor, resource, bytes })
    }

    /// Flushes Burn's queued work on this thread, records the op with `record` into an
    /// encoder of its own and submits it on the shared queue.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when Burn cannot flush, and `record`'s errors (nothing is
    /// submitted then).
    pub(crate) fn submit(
        &self,
        record: impl FnOnce(&Context, &mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<()> {
        self.client.flush().map_err(|e| Error::Runtime(format!("flushing Burn's queued work: {e:?}")))?;
        let mut encoder = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax-burn") });
        record(&self.ctx, &mut encoder)?;
        self.ctx.queue().submit([encoder.finish()]);
        Ok(())
    }
}
