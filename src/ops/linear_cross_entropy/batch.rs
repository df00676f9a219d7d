//! The linear cross-entropy's loss over a batch whose logits come a window of rows at a
//! time: the cross-entropy's passes started over the whole batch, run per window (over
//! stored logits, or from the hidden states without storing them), and finished with the
//! reduction over every row.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::{
    GroupShape, KernelKey, KernelSpec, LINEAR_FINISH, LINEAR_SHARE_BYTES, LINEAR_STATS, MATMUL_TILE,
    OpKernel, RowParams, Slot,
};
use crate::ops::cross_entropy::{
    CrossEntropy, MainBindings, Reduction, STATUS_WORDS, Scale, TargetBuffer, record_reductions,
    reduce_dispatch, totals_bytes,
};
use crate::ops::matmul::{Operand, operand_bytes, operand_width};
use crate::ops::rows::{self, RowDispatch};
use crate::plan::spread_grid;
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

impl CrossEntropy {
    /// Bytes of the totals a batch of windows needs ([`BatchBuffers::totals`]).
    pub(crate) const BATCH_TOTALS_BYTES: u64 = totals_bytes(1);

    /// Starts a cross-entropy over a batch of `rows` rows of `cols` classes whose logits
    /// come a window of rows at a time (the linear cross-entropy's): clears the status
    /// words and, for the mean over class targets, records the divisor's pass over every
    /// row. Then [`CrossEntropy::encode_batch_window`] per window, then
    /// [`CrossEntropy::encode_batch_finish`].
    pub(crate) fn encode_batch_start(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        batch: &BatchBuffers<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let shape = Shape::new(rows, cols);
        let settings = self.settings(batch.targets, batch.weight.is_some(), shape)?;
        recorder.encoder().clear_buffer(
            batch.status.buffer(),
            batch.status.offset(),
            Some(4 * STATUS_WORDS as u64),
        );
        if self.get_reduction() == Reduction::Mean && !shape.is_empty() {
            let reduce =
                reduce_dispatch(&settings, batch.targets, batch.weight, None, None, batch.totals, None, None);
            record_reductions(
                ctx,
                recorder,
                &settings,
                &reduce,
                &[(0, rows)],
                "total_weight",
                Some("combine_total_weight"),
            )?;
        }
        Ok(())
    }

    /// Records the fused kernel over the window of `window.rows` rows from `first_row`
    /// whose logits (f32, row-major) are `logits`: each row's loss and logsumexp into the
    /// batch's arrays at those rows, the gradient scaled for the whole batch.
    pub(crate) fn encode_batch_window(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        batch: &BatchBuffers<'_>,
        logits: TensorRef<'_>,
        first_row: usize,
        window: Shape,
    ) -> Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        let vector = rows::vector_width(&[logits], window.len()? as u64);
        let plan = self.plan_for(ctx, window, logits.dtype(), vector, false)?;
        let spec = KernelSpec {
            cached: rows::keeps_rows(ctx),
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
            op: self.kernel_on(ctx, false),
            strategy: plan.strategy,
            dtype: logits.dtype(),
            vector,
        };
        let main = self.batch_window_dispatch(batch, Some(logits), first_row, window, spec)?;
        rows::encode_rows(ctx, recorder, &main, window, &plan)
    }

    /// The fused kernel's dispatch over the window of `window.rows` rows from `first_row`
    /// of a batch: the window's targets, upstream gradient, losses and logsumexps, the
    /// batch's weights, scale and status, and the logits where they are stored.
    fn batch_window_dispatch<'b>(
        &self,
        batch: &BatchBuffers<'b>,
        logits: Option<TensorRef<'b>>,
        first_row: usize,
        window: Shape,
        spec: KernelSpec,
    ) -> Result<RowDispatch<'b>> {
        let mut settings = self.settings(batch.targets, batch.weight.is_some(), window)?;
        settings.params.first_row = u32::try_from(first_row).unwrap_or(u32::MAX);
        fn rows_of(region: BufferRegion<'_>, (first, rows): (usize, usize), bytes: u64) -> BufferRegion<'_> {
            region.part(first as u64 * bytes, rows as u64 * bytes)
        }
        let at = |region, bytes| rows_of(region, (first_row, window.rows), bytes);
        let targets = match batch.targets {
            TargetBuffer::U32(t) => TargetBuffer::U32(at(t, 4)),
            TargetBuffer::I32(t) => TargetBuffer::I32(at(t, 4)),
            TargetBuffer::I64(t) => TargetBuffer::I64(at(t, 8)),
            TargetBuffer::Probabilities(_) => {
                return Err(Error::InvalidOption {
                    option: "targets",
                    problem: "a batch of windows takes class-index targets".into(),
                });
            }
        };
        let scale = match (batch.grad_output, batch.totals) {
            (Some(g), _) => Some(Scale::PerRow(at(g, 4))),
            (None, Some(t)) if self.get_reduction() == Reduction::Mean => Some(Scale::Totals(t)),
            _ => None,
        };
        Ok(self.main_dispatch(
            &settings,
            MainBindings {
                logits,
                targets,
                grad: None,
                weight: batch.weight,
                scale,
                row_loss: at(batch.row_loss, 4),
                argmax: None,
                lse: batch.lse.map(|l| at(l, 4)),
                status: batch.status,
            },
            spec,
        ))
    }

    /// Records the loss and logsumexp of the window of `window.rows` rows from
    /// `first_row` of a batch from their hidden states, without storing their logits:
    /// `linear_stats` reduces each block of logits to its rows' shares in `shares` as it
    /// computes it, and `linear_finish` merges each row's shares into its loss (no
    /// gradient). `shares` holds at least [`linear_shares_bytes`] for the window.
    ///
    /// # Errors
    ///
    /// A pipeline that does not compile (a bug), [`Error::LimitExceeded`] for a grid past
    /// the device's limits, and what wgpu reports while binding.
    pub(crate) fn encode_batch_window_from_hidden(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        batch: &BatchBuffers<'_>,
        source: &HiddenWindow<'_>,
        (first_row, window): (usize, Shape),
        shares: &wgpu::Buffer,
    ) -> Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        let HiddenWindow { hidden, classifier, bias, features } = *source;
        let dtype = hidden.dtype();
        let a = Operand { tensor: hidden, transposed: false };
        let b = Operand { tensor: classifier, transposed: true };
        let vector = operand_width(a, b, (window.rows, window.cols, features));
        let spec = KernelSpec {
            cached: false,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
            op: OpKernel::LinearCrossEntropy,
            strategy: Strategy::SplitRow,
            dtype,
            vector,
        };
        let mut dispatch = self.batch_window_dispatch(batch, None, first_row, window, spec)?;
        dispatch.constants.extend([
            ("A_HALF", u32::from(dtype != DType::F32)),
            ("B_HALF", u32::from(dtype != DType::F32)),
            ("HAS_BIAS", u32::from(bias.is_some())),
        ]);
        dispatch.whole.extend([
            (Slot::A, hidden.region(), operand_bytes(hidden, window.rows * features, vector)),
            (Slot::B, classifier.region(), operand_bytes(classifier, window.cols * features, vector)),
        ]);
        dispatch.whole.extend(bias.map(|b| (Slot::Bias, b.region(), window.cols as u64 * dtype.size())));
        let module = ctx.module(spec)?;
        let size = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let tile = MATMUL_TILE as usize;
        let tiles = window.cols.div_ceil(tile);
        let max_groups = ctx.caps().max_workgroups_per_dimension;
        let passes = [
            (LINEAR_STATS, (window.rows.div_ceil(tile) * tiles) as u64),
            (LINEAR_FINISH, window.rows as u64),
        ];
        let label = spec.label();
        ctx.catching(|| {
            for (entry_point, groups) in passes {
                let grid = spread_grid(groups, max_groups)?;
                let params = RowParams {
                    rows: size(window.rows),
                    cols: size(window.cols),
                    groups_x: grid[0],
                    segments: size(tiles),
                    inner: 1,
                    hidden: size(features),
                    ..dispatch.params
                };
                let params = ctx.uniform(&label, bytemuck::bytes_of(&params))?;
                let scratch = [(Slot::SegmentShares, shares)];
                let bind_group = rows::bind_rows(
                    ctx,
                    &module,
                    &params,
                    &dispatch,
                    window.cols as u64,
                    (0, window.rows as u64),
                    &scratch,
                )?;
                let pipeline =
                    ctx.pipeline(&KernelKey { spec, entry_point, constants: dispatch.constants.clone() })?;
                recorder.dispatch(&label, &pipeline, &bind_group, grid);
            }
            Ok(())
        })
    }

    /// Ends a batch of windows: the mean or sum of the row losses into the batch's loss
    /// (nothing for reduction none, whose row losses are the loss).
    pub(crate) fn encode_batch_finish(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        batch: &BatchBuffers<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        if self.get_reduction() == Reduction::None || rows == 0 {
            return Ok(());
        }
        let settings = self.settings(batch.targets, batch.weight.is_some(), Shape::new(rows, cols))?;
        let reduce = reduce_dispatch(
            &settings,
            batch.targets,
            batch.weight,
            Some(batch.row_loss),
            None,
            batch.totals,
            Some(batch.loss),
            None,
        );
        record_reductions(ctx, recorder, &settings, &reduce, &[(0, rows)], "reduce_rows", Some("finish"))
    }
}

/// The buffers of a cross-entropy over a batch whose logits come window by window: the
/// targets and per-row arrays of the whole batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchBuffers<'b> {
    /// Class targets, one per row of the batch.
    pub(crate) targets: TargetBuffer<'b>,
    /// Optional class weights.
    pub(crate) weight: Option<BufferRegion<'b>>,
    /// Optional upstream gradient per row (reduction none).
    pub(crate) grad_output: Option<BufferRegion<'b>>,
    /// [`CrossEntropy::BATCH_TOTALS_BYTES`] of scratch, for the mean and sum.
    pub(crate) totals: Option<BufferRegion<'b>>,
    /// Each row's loss: the loss itself for reduction none.
    pub(crate) row_loss: BufferRegion<'b>,
    /// Each row's logsumexp, when wanted.
    pub(crate) lse: Option<BufferRegion<'b>>,
    /// The reduced loss (mean and sum).
    pub(crate) loss: BufferRegion<'b>,
    /// The status words.
    pub(crate) status: BufferRegion<'b>,
}

/// Where a window's logits come from when they are never stored: `H W^T (+ b)` of its
/// hidden states.
#[derive(Clone, Copy)]
pub(crate) struct HiddenWindow<'b> {
    /// The window's hidden states, `rows x features`.
    pub(crate) hidden: TensorRef<'b>,
    /// The classifier, `classes x features`, of the hidden states' type.
    pub(crate) classifier: TensorRef<'b>,
    /// Its optional bias, `classes`.
    pub(crate) bias: Option<TensorRef<'b>>,
    /// `D`.
    pub(crate) features: usize,
}

/// Bytes of the shares a window of `rows` rows of `classes` classes leaves when its logits
/// are never stored: one share per row and block of classes.
pub(crate) fn linear_shares_bytes(rows: usize, classes: usize) -> u64 {
    let shares = (rows as u64).saturating_mul(classes.div_ceil(MATMUL_TILE as usize) as u64);
    shares.saturating_mul(LINEAR_SHARE_BYTES)
}
