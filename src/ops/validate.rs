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
    let alignment = ctx.caps().storage_offset_alignment.max(1);
    usable_region(what, region, bytes, (wgpu::BufferUsages::STORAGE, alignment))?;
    let buffer = region.buffer();
    let words = bytes.next_multiple_of(4);
    if region.offset() + words > buffer.size() {
        // A 16-bit tensor of odd length ends mid-word; the word is bound whole (what lies
        // past the tensor in it is kept as it is).
        return Err(Error::BufferTooSmall { what, required: words, actual: buffer.size() - region.offset() });
    }
    Ok(())
}

/// Checks that `region` can be copied from: `COPY_SRC` usage, an offset that is a
/// multiple of 4, within its buffer, and at least `bytes` long.
///
/// # Errors
///
/// As [`storage_region`].
pub(crate) fn copy_source(what: &'static str, region: &BufferRegion<'_>, bytes: u64) -> Result<()> {
    #[allow(clippy::cast_possible_truncation)] // 4
    let alignment = wgpu::COPY_BUFFER_ALIGNMENT as u32;
    usable_region(what, region, bytes, (wgpu::BufferUsages::COPY_SRC, alignment))
}

/// Checks that `region`'s buffer has `usage`, that it starts at a multiple of `alignment`,
/// lies within its buffer and holds at least `bytes`.
fn usable_region(
    what: &'static str,
    region: &BufferRegion<'_>,
    bytes: u64,
    (usage, alignment): (wgpu::BufferUsages, u32),
) -> Result<()> {
    let buffer = region.buffer();
    if !buffer.usage().contains(usage) {
        return Err(Error::MissingUsage { what, missing: usage });
    }
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
    Ok(())
}

/// Checks a class-axis tensor of `elements` elements: its storage type is `dtype` (the
/// op's first tensor's), and its region as [`storage_region`].
///
/// # Errors
///
/// [`Error::DTypeMismatch`], the errors of [`storage_region`], and
/// [`Error::UntypedHalfTensor`] where an f32 tensor's region is too small for it but is
/// its size in a 16-bit type.
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
    let bytes = elements.saturating_mul(dtype.size());
    let checked = storage_region(ctx, what, &tensor.region(), bytes);
    match checked {
        // Too small for f32 but the size of the tensor in 16 bits (with at most a little
        // padding, and nearer that than the f32 size): say that the type may be what is
        // missing, since the byte counts alone read as a sizing mistake.
        Err(Error::BufferTooSmall { actual, .. })
            if dtype == DType::F32 && holds_16_bit(actual, elements) =>
        {
            Err(Error::UntypedHalfTensor { what, required: bytes, actual })
        }
        other => other,
    }
}

/// Padding past a 16-bit tensor's bytes that a region may have and still read as that
/// tensor (buffers are often rounded up to a multiple of 16 or 256 bytes).
const HALF_PADDING_BYTES: u64 = 1024;

/// Whether `bytes` is the size of `elements` 16-bit elements, give or take padding: at
/// least their bytes, at most [`HALF_PADDING_BYTES`] more, and below 3 bytes an element.
fn holds_16_bit(bytes: u64, elements: u64) -> bool {
    let half = elements.saturating_mul(2);
    bytes >= half && bytes <= half.saturating_add(HALF_PADDING_BYTES) && bytes < elements.saturating_mul(3)
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

/// Checks that every output is a buffer of its own: apart from every input and from every
/// other output (absent ones skipped).
///
/// # Errors
///
/// [`Error::AliasedBuffers`].
pub(crate) fn outputs_distinct(
    inputs: &[Option<BufferRegion<'_>>],
    outputs: &[Option<BufferRegion<'_>>],
) -> Result<()> {
    for (i, output) in outputs.iter().flatten().enumerate() {
        for other in inputs.iter().flatten().chain(outputs.iter().flatten().skip(i + 1)) {
            distinct(other.buffer(), output.buffer())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::holds_16_bit;

    #[test]
    fn a_16_bit_size_is_told_apart_from_a_short_buffer() {
        // 200000 bf16 elements in a buffer padded by 256 bytes, or exactly.
        assert!(holds_16_bit(400_256, 200_000) && holds_16_bit(400_000, 200_000));
        // 8 elements padded to 16 bytes.
        assert!(holds_16_bit(16, 8));
        // One word short of f32, or far from either size.
        assert!(!holds_16_bit(124, 32) && !holds_16_bit(600_000, 200_000) && !holds_16_bit(399_998, 200_000));
    }
}
