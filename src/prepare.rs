//! Compiling an op's pipelines before its first call. Pipelines compile at first use, and
//! compiling is most of a first call's time (seconds on a software adapter); an engine
//! that wants its first real step as fast as its later ones records the op once ahead
//! of time into an encoder that is never submitted.

use std::time::Instant;

use crate::context::Context;
use crate::error::Result;

/// What [`Context::prepare`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Prepared {
    /// Pipelines compiled (0 where the context had every one already).
    pub pipelines: usize,
    /// Host time the preparation took, milliseconds.
    pub ms: f64,
}

impl Context {
    /// Compiles ahead of time every pipeline that `record` uses. `record` records one or
    /// more ops into the encoder it is given, which is then dropped without being
    /// submitted: nothing runs, no buffer is written, and the caches fill as a first
    /// call would fill them (pipelines, and for the same buffers and shapes their bind
    /// groups, parameter uniforms and pooled scratch buffers). A later call recorded the
    /// same way compiles nothing and creates no GPU object.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wgpu_softmax::Error> {
    /// use wgpu_softmax::{Context, Shape, Softmax};
    /// let ctx = Context::new()?;
    /// let shape = Shape::new(64, 32000);
    /// let (logits, probs) = (ctx.storage_buffer(64 * 32000)?, ctx.storage_buffer(64 * 32000)?);
    /// let prepared = ctx.prepare(|encoder| {
    ///     Softmax::new().encode(&ctx, encoder, &logits, &probs, shape)?;
    ///     Ok(())
    /// })?;
    /// println!("compiled {} pipelines in {:.0} ms", prepared.pipelines, prepared.ms);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// What `record` returns, and the context's fault.
    pub fn prepare(&self, record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>) -> Result<Prepared> {
        self.check_health()?;
        let started = Instant::now();
        let before = self.compiled_pipelines();
        let mut encoder = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax: prepare") });
        record(&mut encoder)?;
        // Never finished nor submitted: the recorded commands are discarded.
        drop(encoder);
        Ok(Prepared {
            pipelines: self.compiled_pipelines().saturating_sub(before),
            ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
