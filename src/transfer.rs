//! Moving f32 data between the host and GPU buffers, with bounded waits.

use std::time::Instant;

use crate::context::Context;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};

impl Context {
    /// Creates a storage buffer holding `data`, usable as an input or output of every op
    /// and as the source of [`Context::download`].
    ///
    /// # Errors
    ///
    /// [`Error::OutOfMemory`], [`Error::LimitExceeded`] past `max_buffer_size`, and the
    /// context's fault if the device was lost or is unhealthy.
    pub fn upload(&self, data: &[f32]) -> Result<wgpu::Buffer> {
        let bytes = f32_bytes(data.len());
        self.check_buffer_size(bytes)?;
        self.catching(|| self.buffer_with("wgpu-softmax: upload", bytemuck::cast_slice(data), STORAGE_USAGE))
    }

    /// Creates a zeroed storage buffer of `len` f32, usable as an output of every op and
    /// as the source of [`Context::download`].
    ///
    /// # Errors
    ///
    /// As [`Context::upload`].
    pub fn storage_buffer(&self, len: usize) -> Result<wgpu::Buffer> {
        let bytes = f32_bytes(len);
        self.check_buffer_size(bytes)?;
        self.catching(|| {
            crate::reuse::count_created();
            Ok(self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-softmax: storage"),
                size: bytes.max(4),
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            }))
        })
    }

    /// Creates a storage buffer holding `data` of any plain element type (f32, f16, bf16,
    /// integers), padded to a multiple of 16 bytes so that the kernels may access it in
    /// 128-bit vectors.
    ///
    /// # Errors
    ///
    /// As [`Context::upload`].
    pub fn upload_elements<T: bytemuck::Pod>(&self, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded = (bytes.len() as u64).next_multiple_of(16).max(16);
        self.check_buffer_size(padded)?;
        self.catching(|| {
            let buffer = self.buffer_with("wgpu-softmax: upload", bytes, STORAGE_USAGE)?;
            if buffer.size() >= padded {
                return Ok(buffer);
            }
            // Padding past the data: zeros the kernels never count.
            let mut contents = bytes.to_vec();
            contents.resize(usize::try_from(padded).unwrap_or(usize::MAX), 0);
            self.buffer_with("wgpu-softmax: upload", &contents, STORAGE_USAGE)
        })
    }

    /// Creates a storage buffer holding `data` rounded to `dtype` (to nearest even), as
    /// [`Context::upload_elements`] does for one element type: a way to upload in a
    /// storage type chosen at run time.
    ///
    /// # Errors
    ///
    /// As [`Context::upload`].
    pub fn upload_f32_as(&self, dtype: DType, data: &[f32]) -> Result<wgpu::Buffer> {
        match dtype {
            DType::F32 => self.upload_elements(data),
            DType::F16 => self.upload_elements(&crate::dtype::round_to::<half::f16>(data)),
            DType::BF16 => self.upload_elements(&crate::dtype::round_to::<half::bf16>(data)),
        }
    }

    /// Reads the first `len` elements of `dtype` in `buffer` back to the host, widened to
    /// f32 (exactly): [`Context::download_elements`] for a storage type chosen at run time.
    ///
    /// # Errors
    ///
    /// As [`Context::download`].
    pub fn download_as_f32(&self, buffer: &wgpu::Buffer, dtype: DType, len: usize) -> Result<Vec<f32>> {
        match dtype {
            DType::F32 => self.download_elements::<f32>(buffer, len),
            DType::F16 => Ok(crate::dtype::widen(&self.download_elements::<half::f16>(buffer, len)?)),
            DType::BF16 => Ok(crate::dtype::widen(&self.download_elements::<half::bf16>(buffer, len)?)),
        }
    }

    /// Creates a zeroed storage buffer for `len` elements of `dtype`, padded to a multiple
    /// of 16 bytes, usable as an output of every op and as the source of a download.
    ///
    /// # Errors
    ///
    /// As [`Context::upload`].
    pub fn elements_buffer(&self, dtype: DType, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len as u64).saturating_mul(dtype.size()).next_multiple_of(16).max(16);
        self.zeroed_buffer(bytes)
    }

    /// A zeroed storage buffer of `bytes` (at least 16).
    pub(crate) fn zeroed_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_buffer_size(bytes)?;
        self.catching(|| {
            crate::reuse::count_created();
            Ok(self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-softmax: storage"),
                size: crate::reuse::scratch_size(bytes),
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            }))
        })
    }

    /// Reads the first `len` elements of `buffer` back to the host, as [`Context::download`]
    /// does for f32.
    ///
    /// # Errors
    ///
    /// As [`Context::download`].
    pub fn download_elements<T: Element>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len as u64).saturating_mul(T::DTYPE.size());
        self.check_download(buffer, bytes)?;
        let encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-softmax: readback"),
        });
        let parts = self.finish_and_read_many(encoder, &[(buffer, bytes)])?;
        Ok(bytemuck::pod_collect_to_vec(parts.first().map_or(&[][..], Vec::as_slice)))
    }

    fn check_buffer_size(&self, bytes: u64) -> Result<()> {
        let available = self.caps().max_buffer_bytes;
        if bytes > available {
            return Err(Error::LimitExceeded { limit: "max_buffer_size", required: bytes, available });
        }
        Ok(())
    }

    /// Creates a buffer holding `contents` (padded to at least 4 bytes), as wgpu's
    /// `create_buffer_init` does, but with an error where that panics (a lost device).
    pub(crate) fn buffer_with(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let size = u64::try_from(contents.len()).unwrap_or(u64::MAX).next_multiple_of(4).max(4);
        crate::reuse::count_created();
        let buffer = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: true,
        });
        {
            let mut view = buffer.slice(..).get_mapped_range_mut().map_err(|e| {
                self.check_health()
                    .err()
                    .unwrap_or_else(|| Error::Validation(format!("mapping a new buffer: {e}")))
            })?;
            view.slice(..contents.len()).copy_from_slice(contents);
        }
        buffer.unmap();
        Ok(buffer)
    }

    /// Submits `encoder` and waits, at most [`Context::timeout`], for the GPU to finish.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the GPU takes longer; [`Error::Validation`] or
    /// [`Error::OutOfMemory`] when wgpu rejects the commands; on the web,
    /// [`Error::NeedsAsync`]: use [`Context::submit`] and [`Context::check_errors_async`].
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        Self::blocking("Context::submit_and_wait", "Context::submit, then Context::check_errors_async")?;
        self.check_health()?;
        let scope = self.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let index = self.queue().submit([encoder.finish()]);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::from_wgpu(&error));
        }
        self.wait_for(Some(&index))
    }

    /// Submits `encoder` without waiting for the GPU: the way to run recorded ops on the
    /// web. A validation error wgpu finds in the commands comes back here on native, and
    /// from the next [`Context::check_errors_async`] or async download on the web.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] or [`Error::OutOfMemory`] when wgpu rejects the commands (on
    /// native), and the context's faults.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.check_health()?;
        let out_of_memory = self.device().push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device().push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue().submit([encoder.finish()]);
        let validation = validation.pop();
        self.pending().scopes(validation, out_of_memory.pop()).map_or(Ok(()), Err)
    }

    /// Reads the first `len` f32 of `buffer` back to the host: records a copy, submits it,
    /// and waits at most [`Context::timeout`]. Work recorded into earlier submissions that
    /// writes `buffer` is finished first, as the queue runs in order.
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`] when `buffer` lacks `COPY_SRC`, [`Error::BufferTooSmall`]
    /// when it holds fewer than `len` f32, [`Error::Timeout`] and [`Error::Readback`] when
    /// the GPU does not deliver; on the web, [`Error::NeedsAsync`]: use
    /// [`Context::download_async`].
    pub fn download(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.check_download(buffer, f32_bytes(len))?;
        let encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-softmax: readback"),
        });
        self.finish_and_read(encoder, buffer, len)
    }

    fn check_download(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<()> {
        self.check_health()?;
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::MissingUsage {
                what: "download source",
                missing: wgpu::BufferUsages::COPY_SRC,
            });
        }
        if buffer.size() < bytes {
            return Err(Error::BufferTooSmall {
                what: "download source",
                required: bytes,
                actual: buffer.size(),
            });
        }
        Ok(())
    }

    /// Reads the first `len` u32 of `buffer` back to the host, as [`Context::download`]
    /// does for f32 (argmax indices, status words).
    ///
    /// # Errors
    ///
    /// As [`Context::download`].
    pub fn download_u32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u32>> {
        let floats = self.download(buffer, len)?;
        Ok(floats.into_iter().map(f32::to_bits).collect())
    }

    /// Appends a copy of the first `len` f32 of `buffer` to `encoder`, submits it, waits,
    /// and returns the copy. One submission and one wait for work plus read-back.
    pub(crate) fn finish_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<f32>> {
        let mut parts = self.finish_and_read_many(encoder, &[(buffer, f32_bytes(len))])?;
        Ok(bytemuck::pod_collect_to_vec(&parts.pop().unwrap_or_default()))
    }

    /// Appends copies of the first `bytes` of each buffer into staging buffers, submits
    /// once, waits at most the timeout, and returns each part's bytes. Copies move whole
    /// words: a part of `bytes` not a multiple of 4 (a 16-bit tensor of odd length) is
    /// copied rounded up, where its buffer has the room, and cut back here.
    pub(crate) fn finish_and_read_many(
        &self,
        mut encoder: wgpu::CommandEncoder,
        parts: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        Self::blocking("a host-API call that reads results back", "Context::download_async")?;
        let staging = self.stage(&mut encoder, parts);
        self.submit_and_wait(encoder)?;

        let (sender, receiver) = futures_intrusive::channel::shared::channel(parts.len().max(1));
        for buffer in staging.iter().flatten() {
            let sender = sender.clone();
            buffer.slice(..).map_async(wgpu::MapMode::Read, move |result| {
                // The receiver lives until this function returns; a failed send only
                // means it gave up waiting, and then nobody needs the result.
                let _ = sender.try_send(result);
            });
        }
        let expected = staging.iter().flatten().count();
        // Another thread polling the same device may be the one that runs the callbacks,
        // a moment after our own wait returns; so poll until they arrive, within the
        // timeout.
        let deadline = Instant::now() + self.timeout();
        self.wait_for(None)?;
        let mut arrived = 0;
        while arrived < expected {
            if let Ok(result) = receiver.try_receive() {
                result.map_err(|e| Error::Readback(e.to_string()))?;
                arrived += 1;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(self.timeout()));
            }
            self.device().poll(wgpu::PollType::Poll).map_err(|e| Error::Readback(e.to_string()))?;
            std::thread::yield_now();
        }
        Self::take_staged(&staging, parts)
    }

    /// Appends copies of the first `bytes` of each buffer into new staging buffers (none
    /// for a part of no bytes). One staging buffer per part: each is no larger than its
    /// source, so within `max_buffer_size` whatever their total.
    fn stage(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        parts: &[(&wgpu::Buffer, u64)],
    ) -> Vec<Option<wgpu::Buffer>> {
        parts
            .iter()
            .map(|&(buffer, bytes)| {
                let words = bytes.next_multiple_of(4).min(buffer.size() / 4 * 4);
                (words > 0).then(|| {
                    crate::reuse::count_created();
                    let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("wgpu-softmax: readback"),
                        size: words,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, words);
                    staging
                })
            })
            .collect()
    }

    /// The bytes of mapped staging buffers, each cut to its part's length, unmapped after.
    fn take_staged(staging: &[Option<wgpu::Buffer>], parts: &[(&wgpu::Buffer, u64)]) -> Result<Vec<Vec<u8>>> {
        staging
            .iter()
            .zip(parts)
            .map(|(buffer, &(_, wanted))| {
                let Some(buffer) = buffer else { return Ok(Vec::new()) };
                let mut bytes =
                    buffer.slice(..).get_mapped_range().map_err(|e| Error::Readback(e.to_string()))?.to_vec();
                buffer.unmap();
                bytes.truncate(usize::try_from(wanted).unwrap_or(usize::MAX));
                Ok(bytes)
            })
            .collect()
    }

    /// Runs `work` inside wgpu error scopes, so that a validation or out-of-memory error it
    /// causes comes back as this crate's error instead of reaching the device's
    /// uncaptured-error handler (whose default panics).
    /// On the web, wgpu's verdict arrives later: an error it finds is returned by the next
    /// [`Context::check_errors_async`] or async download instead.
    pub(crate) fn catching<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_health()?;
        let out_of_memory = self.device().push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let result = work();
        let validation = validation.pop();
        let outcome = match self.pending().scopes(validation, out_of_memory.pop()) {
            Some(error) => Err(error),
            None => result,
        };
        if outcome.is_err() {
            // A lost device shows first as failures like these; a poll lets its callback
            // run, and then the loss is the error worth reporting.
            let _ = self.device().poll(wgpu::PollType::Poll);
            self.check_health()?;
        }
        outcome
    }

    /// Waits for a submission (or all of them), bounded by the context's timeout.
    fn wait_for(&self, submission: Option<&wgpu::SubmissionIndex>) -> Result<()> {
        let waited = self
            .device()
            .poll(wgpu::PollType::Wait {
                submission_index: submission.cloned(),
                timeout: Some(self.timeout()),
            })
            .map(|_| ())
            .map_err(|e| match e {
                wgpu::PollError::Timeout => Error::Timeout(self.timeout()),
                other => Error::Validation(other.to_string()),
            });
        // A device lost while we waited is the better explanation of whatever happened.
        self.check_health()?;
        waited
    }
}

/// The async host API: reading results back without blocking, the only way on the web.
/// On native these wait as their blocking forms do (and return when those would).
impl Context {
    /// Reads the first `len` f32 of `buffer` back to the host, as [`Context::download`]
    /// does, without blocking: on the web, the copy is submitted and its mapping awaited
    /// as the browser delivers it. Before it returns, every error check pending on this
    /// context has settled ([`Context::check_errors_async`]): the first error wgpu found
    /// in anything recorded since the last check is returned instead of the data.
    ///
    /// ```no_run
    /// # async fn run() -> wgpu_softmax::Result<()> {
    /// use wgpu_softmax::{Context, Shape, Softmax};
    /// let ctx = Context::new_async().await?;
    /// let input = ctx.upload(&[1.0, 2.0, 3.0, 4.0])?;
    /// let output = ctx.storage_buffer(4)?;
    /// let mut encoder = ctx.device().create_command_encoder(&Default::default());
    /// Softmax::new().encode(&ctx, &mut encoder, &input, &output, Shape::new(1, 4))?;
    /// ctx.submit(encoder)?;
    /// let probabilities = ctx.download_async(&output, 4).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Context::download`], and the first error pending on the context. On the web
    /// there is no timeout: the browser settles every mapping, failing it when the device
    /// is lost.
    pub async fn download_async(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let bytes = f32_bytes(len);
        self.check_download(buffer, bytes)?;
        let parts = self.read_many_async(&[(buffer, bytes)]).await?;
        Ok(bytemuck::pod_collect_to_vec(parts.first().map_or(&[][..], Vec::as_slice)))
    }

    /// Reads the first `len` elements of `buffer` back to the host, as
    /// [`Context::download_elements`] does, without blocking (see
    /// [`Context::download_async`]).
    ///
    /// # Errors
    ///
    /// As [`Context::download_async`].
    pub async fn download_elements_async<T: Element>(
        &self,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len as u64).saturating_mul(T::DTYPE.size());
        self.check_download(buffer, bytes)?;
        let parts = self.read_many_async(&[(buffer, bytes)]).await?;
        Ok(bytemuck::pod_collect_to_vec(parts.first().map_or(&[][..], Vec::as_slice)))
    }

    /// Reads the first `len` elements of `dtype` in `buffer` back to the host, widened to
    /// f32, as [`Context::download_as_f32`] does, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Context::download_async`].
    pub async fn download_as_f32_async(
        &self,
        buffer: &wgpu::Buffer,
        dtype: DType,
        len: usize,
    ) -> Result<Vec<f32>> {
        match dtype {
            DType::F32 => self.download_elements_async::<f32>(buffer, len).await,
            DType::F16 => {
                Ok(crate::dtype::widen(&self.download_elements_async::<half::f16>(buffer, len).await?))
            }
            DType::BF16 => {
                Ok(crate::dtype::widen(&self.download_elements_async::<half::bf16>(buffer, len).await?))
            }
        }
    }

    /// Reads the first `len` u32 of `buffer` back to the host (argmax indices, status
    /// words, sampled ids), as [`Context::download_u32`] does, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Context::download_async`].
    pub async fn download_u32_async(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<u32>> {
        let floats = self.download_async(buffer, len).await?;
        Ok(floats.into_iter().map(f32::to_bits).collect())
    }

    /// Copies the first bytes of each buffer into staging buffers, submits, and returns each
    /// part's bytes once mapped and once every pending error check has settled.
    async fn read_many_async(&self, parts: &[(&wgpu::Buffer, u64)]) -> Result<Vec<Vec<u8>>> {
        let encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-softmax: readback"),
        });
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.finish_and_read_many(encoder, parts)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let mut encoder = encoder;
            self.check_health()?;
            let staging = self.stage(&mut encoder, parts);
            self.submit(encoder)?;
            let expected = staging.iter().flatten().count();
            let (sender, receiver) = futures_intrusive::channel::shared::channel(expected.max(1));
            for buffer in staging.iter().flatten() {
                let sender = sender.clone();
                buffer.slice(..).map_async(wgpu::MapMode::Read, move |result| {
                    // The receiver lives until every mapping has answered or this call
                    // has given up; then nobody needs the result.
                    let _ = sender.try_send(result);
                });
            }
            drop(sender);
            for _ in 0..expected {
                let mapped = receiver.receive().await;
                if let Some(Ok(())) = mapped {
                    continue;
                }
                // A failed mapping is mostly the consequence of an earlier error or a lost
                // device; those explain it better.
                self.check_errors_async().await?;
                return Err(Error::Readback(match mapped {
                    Some(Err(e)) => e.to_string(),
                    _ => "the mapping's callback was dropped".to_owned(),
                }));
            }
            self.check_errors_async().await?;
            Self::take_staged(&staging, parts)
        }
    }
}

/// Storage buffers this crate makes: bound by the ops, copied to and from.
const STORAGE_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Bytes of `len` f32, saturating: a length that large fails the size checks anyway.
pub(crate) fn f32_bytes(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(4)
}
