//! Checks of the caller's buffers, shared by every op's GPU-resident API: typed errors
//! before anything is recorded, instead of a validation error (or worse) inside wgpu.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{BufferRegion, TensorRef};

/// Checks that `region` can be bound as storage from its offset, lies within its buffer,
/// and holds `bytes` rounded up to a whole word (bindings are made of 32-bit words).
///
/// # Errors
///
/// [`Error::MissingUsage`], [`Error::MisalignedOffset`], [`Error::RegionOutOfBounds`] or
/// [`Error::BufferTooSmall`], naming `what`.
pub(crate) fn storage_region(
    ctx: &Context,
    what: &'static str,
    region: &BufferRegion<'_>,
    bytes: u64,
) -> Result<()> {
    let buffer = region.buffer();
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::MissingUsage { what, missing: wgpu::BufferUsages::STORAGE });
    }
    let alignment = ctx.caps().storage_offset_alignment.max(1);
    if !region.offset().is_multiple_of(u64::from(alignment)) {
        return Err(Error::MisalignedOffset { what, offset: region.offset(), alignment });
    }
    if !region.within_buffer() {
        return Err(Error::RegionOutOfBounds {
            what,
            offset: region.offset(),
            size: region.size(),
            buffer_size: buffer.size(),
        });
    }
    if region.size() < bytes {
        return Err(Error::BufferTooSmall { what, required: bytes, actual: region.size() });
    }
    let words = bytes.next_multiple_of(4);
    if region.offset() + words > buffer.size() {
        // A 16-bit tensor of odd length ends mid-word; the word is bound whole (what lies
        // past the tensor in it is kept as it is).
        return Err(Error::BufferTooSmall { what, required: words, actual: buffer.size() - region.offset() });
    }
    Ok(())
}

/// Checks a class-axis tensor of `elements` elements: its storage type is `dtype` (the
/// op's first tensor's), and its region as [`storage_region`].
///
/// # Errors
///
/// [`Error::DTypeMismatch`], and the errors of [`storage_region`].
pub(crate) fn tensor(
    ctx: &Context,
    (what, reference): (&'static str, &'static str),
    tensor: &TensorRef<'_>,
    dtype: DType,
    elements: u64,
) -> Result<()> {
    if tensor.dtype() != dtype {
        return Err(Error::DTypeMismatch { what, reference, expected: dtype, actual: tensor.dtype() });
    }
    storage_region(ctx, what, &tensor.region(), elements.saturating_mul(dtype.size()))
}

/// Whether `region`'s binding of `bytes`, rounded up to a multiple of `unit`, still lies
/// within its buffer (so that vector accesses of `unit` bytes may be used).
pub(crate) fn has_room(region: &BufferRegion<'_>, bytes: u64, unit: u64) -> bool {
    region.offset().saturating_add(bytes.next_multiple_of(unit.max(1))) <= region.buffer().size()
}

/// Checks that an input and an output are different buffers: one buffer cannot be bound
/// both read-only and writable in one dispatch.
///
/// # Errors
///
/// [`Error::AliasedBuffers`].
pub(crate) fn distinct(input: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<()> {
    if input == output { Err(Error::AliasedBuffers) } else { Ok(()) }
}
