//! Where an op finds its data on the GPU: a region of a caller's buffer, and for a tensor
//! with the class axis, its storage type.

use std::num::NonZeroU64;

use crate::dtype::DType;

/// A region of a caller's buffer: from `offset`, `size` bytes (by default, to the end of
/// the buffer). Made from a whole buffer, a `wgpu::BufferSlice` or a `wgpu::BufferBinding`.
///
/// Ops bind regions at their offset, so the offset must be a multiple of the device's
/// `min_storage_buffer_offset_alignment` (256 bytes on most adapters); an op says so with
/// [`crate::Error::MisalignedOffset`] otherwise.
#[derive(Clone, Copy, Debug)]
pub struct BufferRegion<'a> {
    buffer: &'a wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
}

impl<'a> BufferRegion<'a> {
    /// The whole of `buffer`.
    #[must_use]
    pub const fn new(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0, size: None }
    }

    /// `buffer` from `offset` bytes to its end.
    #[must_use]
    pub const fn at(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        Self { buffer, offset, size: None }
    }

    /// The same region, `size` bytes long.
    #[must_use]
    pub const fn with_size(self, size: u64) -> Self {
        Self { size: Some(size), ..self }
    }

    /// The buffer.
    #[must_use]
    pub const fn buffer(&self) -> &'a wgpu::Buffer {
        self.buffer
    }

    /// Where the region starts, in bytes from the start of the buffer.
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// The region's length in bytes: as given, else to the end of the buffer (0 when the
    /// offset is past it).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size.unwrap_or_else(|| self.buffer.size().saturating_sub(self.offset))
    }

    /// Whether the region, as given, lies within its buffer.
    pub(crate) fn within_buffer(&self) -> bool {
        self.offset.checked_add(self.size()).is_some_and(|end| end <= self.buffer.size())
    }

    /// The `size` bytes from `offset` within the region.
    pub(crate) const fn part(&self, offset: u64, size: u64) -> Self {
        Self { buffer: self.buffer, offset: self.offset + offset, size: Some(size) }
    }

    /// The binding of `size` bytes from `offset` within the region.
    pub(crate) fn binding(&self, offset: u64, size: u64) -> wgpu::BufferBinding<'a> {
        wgpu::BufferBinding { buffer: self.buffer, offset: self.offset + offset, size: NonZeroU64::new(size) }
    }
}

impl<'a> From<&'a wgpu::Buffer> for BufferRegion<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Self::new(buffer)
    }
}

impl<'a> From<wgpu::BufferSlice<'a>> for BufferRegion<'a> {
    fn from(slice: wgpu::BufferSlice<'a>) -> Self {
        Self { buffer: slice.buffer(), offset: slice.offset(), size: Some(slice.size()) }
    }
}

impl<'a> From<wgpu::BufferBinding<'a>> for BufferRegion<'a> {
    fn from(binding: wgpu::BufferBinding<'a>) -> Self {
        Self { buffer: binding.buffer, offset: binding.offset, size: binding.size.map(NonZeroU64::get) }
    }
}

/// A tensor with the class axis in a caller's buffer: a region and the storage type of its
/// elements. A plain buffer or slice converts to an f32 tensor; say the type of a 16-bit
/// one with [`TensorRef::new`].
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, DType, Shape, Softmax, TensorRef};
/// let ctx = Context::new()?;
/// let shape = Shape::new(4, 50257);
/// // bf16 logits 512 bytes into a larger buffer of the application's; bf16 output.
/// let arena = ctx.storage_buffer(256 + 4 * 50257)?;
/// let output = ctx.storage_buffer(4 * 50257)?;
/// let mut encoder = ctx.device().create_command_encoder(&Default::default());
/// Softmax::new().encode(
///     &ctx,
///     &mut encoder,
///     TensorRef::new(arena.slice(512..), DType::BF16),
///     TensorRef::new(&output, DType::BF16),
///     shape,
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    region: BufferRegion<'a>,
    dtype: DType,
}

impl<'a> TensorRef<'a> {
    /// The elements of type `dtype` in `region` (a buffer, a slice or a binding).
    #[must_use]
    pub fn new(region: impl Into<BufferRegion<'a>>, dtype: DType) -> Self {
        Self { region: region.into(), dtype }
    }

    /// The region.
    #[must_use]
    pub const fn region(&self) -> BufferRegion<'a> {
        self.region
    }

    /// The storage type.
    #[must_use]
    pub const fn dtype(&self) -> DType {
        self.dtype
    }

    /// The buffer.
    #[must_use]
    pub const fn buffer(&self) -> &'a wgpu::Buffer {
        self.region.buffer
    }
}

impl<'a> From<&'a wgpu::Buffer> for TensorRef<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Self::new(buffer, DType::F32)
    }
}

impl<'a> From<wgpu::BufferSlice<'a>> for TensorRef<'a> {
    fn from(slice: wgpu::BufferSlice<'a>) -> Self {
        Self::new(slice, DType::F32)
    }
}

impl<'a> From<BufferRegion<'a>> for TensorRef<'a> {
    fn from(region: BufferRegion<'a>) -> Self {
        Self::new(region, DType::F32)
    }
}
