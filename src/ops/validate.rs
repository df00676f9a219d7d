//! Checks of the caller's buffers, shared by every op's GPU-resident API.

use crate::error::{Error, Result};

/// Checks that `buffer` can be bound as storage and holds at least `bytes`.
pub(crate) fn storage_buffer(what: &'static str, buffer: &wgpu::Buffer, bytes: u64) -> Result<()> {
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::MissingUsage { what, missing: wgpu::BufferUsages::STORAGE });
    }
    if buffer.size() < bytes {
        return Err(Error::BufferTooSmall { what, required: bytes, actual: buffer.size() });
    }
    Ok(())
}

/// Checks that an input and an output are different buffers: one buffer cannot be bound
/// both read-only and writable in one dispatch.
pub(crate) fn distinct(input: &wgpu::Buffer, output: &wgpu::Buffer) -> Result<()> {
    if input == output { Err(Error::AliasedBuffers) } else { Ok(()) }
}
