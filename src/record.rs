//! Recording an op into the caller's command encoder as one compute pass.
//!
//! An op's dispatches follow one another in a single pass; wgpu still orders each dispatch
//! after the writes of the ones before it (a compute pass's usage scope is one dispatch), so
//! nothing is lost by sharing a pass, and a GPU is spared the pass boundaries. Commands that
//! cannot go inside a pass (clearing or copying a buffer) end the open pass; ops record
//! theirs before their first dispatch, so that a call is one pass wherever it can be.

/// The caller's encoder while an op records into it, with the compute pass its dispatches
/// share, opened at the first dispatch and ended by the next command outside a pass or when
/// the recorder is dropped.
pub(crate) struct Recorder<'e> {
    encoder: &'e mut wgpu::CommandEncoder,
    // `forget_lifetime` lets the pass sit beside the encoder it locks; wgpu refuses any
    // command on the encoder until the pass ends, so every such command goes through
    // `Recorder::encoder`, which ends it first.
    pass: Option<wgpu::ComputePass<'static>>,
}

impl<'e> Recorder<'e> {
    /// A recorder over `encoder`, with no pass open.
    pub(crate) fn new(encoder: &'e mut wgpu::CommandEncoder) -> Self {
        Self { encoder, pass: None }
    }

    /// The encoder, for a command outside compute passes: the open pass, if any, ends
    /// first, so that the command comes after every dispatch recorded so far.
    pub(crate) fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder
    }

    /// Records `pipeline` over `grid` workgroups, in the open pass or a new one named
    /// `label`.
    pub(crate) fn dispatch(
        &mut self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        grid: [u32; 2],
    ) {
        let encoder = &mut *self.encoder;
        let pass = self.pass.get_or_insert_with(|| {
            #[cfg(feature = "testing")]
            PASSES_RECORDED.with(|count| count.set(count.get() + 1));
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(label),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], 1);
        #[cfg(feature = "testing")]
        DISPATCHES_RECORDED.with(|count| count.set(count.get() + 1));
    }
}

#[cfg(feature = "testing")]
thread_local! {
    /// Compute dispatches this thread has recorded through [`Recorder::dispatch`], every
    /// op's only way to dispatch: what `testing::dispatches_recorded` reads.
    static DISPATCHES_RECORDED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Compute passes this thread has begun through [`Recorder::dispatch`], every op's only
    /// way to dispatch: what `testing::passes_recorded` reads.
    static PASSES_RECORDED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Compute passes the calling thread has begun in encoders so far, all ops and contexts
/// together.
#[cfg(feature = "testing")]
pub(crate) fn passes_recorded() -> u64 {
    PASSES_RECORDED.with(std::cell::Cell::get)
}

/// Compute dispatches the calling thread has recorded into encoders so far, all ops and
/// contexts together.
#[cfg(feature = "testing")]
pub(crate) fn dispatches_recorded() -> u64 {
    DISPATCHES_RECORDED.with(std::cell::Cell::get)
}
