//! Timing a recorded piece of GPU work: GPU timestamps around it where the device has
//! them inside encoders, else wall time from submit to the end of a full wait. The
//! autotuner times strategies with it; benchmarks can time anything they record.

use std::time::Instant;

use crate::context::Context;
use crate::error::{Error, Result};

/// How times are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// `TIMESTAMP_QUERY` written into the encoder around the work.
    GpuTimestamps,
    /// Host time from submit to the end of a full wait: includes submission overhead.
    Wall,
}

impl Clock {
    /// A name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::GpuTimestamps => "gpu timestamps",
            Self::Wall => "wall time after a full wait",
        }
    }
}

/// Times work recorded into an encoder on one context's device. Make one per context and
/// reuse it: it owns a query set and a resolve buffer.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, Shape, Softmax, timing::Timer};
/// let ctx = Context::new()?;
/// let (input, output) = (ctx.upload(&vec![0.5; 4096 * 1000])?, ctx.storage_buffer(4096 * 1000)?);
/// let timer = Timer::new(&ctx);
/// let ms = timer.time(&ctx, &mut |encoder| {
///     Softmax::new().encode(&ctx, encoder, &input, &output, Shape::new(4096, 1000)).map(|_| ())
/// })?;
/// println!("{ms:.3} ms by {}", timer.clock().name());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Timer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    period_ns: f64,
}

impl Timer {
    /// A timer for `ctx`'s device: GPU timestamps where it has them inside encoders.
    #[must_use]
    pub fn new(ctx: &Context) -> Self {
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let queries = ctx.device().features().contains(wanted).then(|| {
            crate::reuse::count_created();
            let set = ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgpu-softmax: bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            crate::reuse::count_created();
            let resolve = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-softmax: bench timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        Self { queries, period_ns: f64::from(ctx.queue().get_timestamp_period()) }
    }

    /// How this timer takes times.
    #[must_use]
    pub fn clock(&self) -> Clock {
        if self.queries.is_some() { Clock::GpuTimestamps } else { Clock::Wall }
    }

    /// Milliseconds the work that `record` puts into a fresh encoder takes: records it,
    /// submits, and waits at most the context's timeout.
    ///
    /// # Errors
    ///
    /// What `record` returns, [`crate::Error::Timeout`], and the context's faults
    /// (converted into `record`'s error type); on the web, where timing waits for the
    /// GPU, [`crate::Error::NeedsAsync`] (and so for an autotuning context's ops).
    pub fn time<E: From<Error>>(
        &self,
        ctx: &Context,
        record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<(), E>,
    ) -> Result<f64, E> {
        Context::blocking("Timer::time (and an autotuning context's ops)", "a context without autotune")?;
        let mut encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax: bench") });
        match &self.queries {
            Some((set, resolve)) => {
                encoder.write_timestamp(set, 0);
                record(&mut encoder)?;
                encoder.write_timestamp(set, 1);
                encoder.resolve_query_set(set, 0..2, resolve, 0);
                let parts = ctx.finish_and_read_many(encoder, &[(resolve, 16)])?;
                let ticks: Vec<u64> =
                    bytemuck::pod_collect_to_vec(parts.first().map_or(&[][..], Vec::as_slice));
                let [start, end] = ticks[..] else {
                    return Err(Error::Readback("the timestamps did not come back".into()).into());
                };
                #[allow(clippy::cast_precision_loss)] // tick counts of a few seconds at most
                let elapsed = end.saturating_sub(start) as f64;
                Ok(elapsed * self.period_ns / 1e6)
            }
            None => {
                record(&mut encoder)?;
                let started = Instant::now();
                ctx.submit_and_wait(encoder)?;
                Ok(started.elapsed().as_secs_f64() * 1e3)
            }
        }
    }
}

/// The median of `times`, or NaN for none.
#[must_use]
pub fn median(times: &[f64]) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}
