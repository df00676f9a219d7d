//! Timing one recorded piece of GPU work: GPU timestamps around it where the device has
//! them inside encoders, else wall time from submit to the end of a full wait.

use std::time::Instant;

use crate::context::Context;
use crate::error::Result;

/// How times are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

pub(crate) struct Timer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    period_ns: f64,
}

impl Timer {
    pub(crate) fn new(ctx: &Context) -> Self {
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let queries = ctx.device().features().contains(wanted).then(|| {
            let set = ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgpu-softmax: bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
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

    pub(crate) fn clock(&self) -> Clock {
        if self.queries.is_some() { Clock::GpuTimestamps } else { Clock::Wall }
    }

    /// Milliseconds the work that `record` puts into an encoder takes.
    pub(crate) fn time(
        &self,
        ctx: &Context,
        record: &mut dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<f64> {
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
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&parts[0]);
                #[allow(clippy::cast_precision_loss)] // tick counts of a few seconds at most
                let elapsed = ticks[1].saturating_sub(ticks[0]) as f64;
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
