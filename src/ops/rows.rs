//! What every row op shares, written once: planning a strategy and a vector width,
//! recording the row kernel over every chunk of rows with each binding at the chunk's
//! offset, the edge pass of 16-bit outputs, and the host API's upload, run and read-back,
//! split where the host data exceeds one buffer.

use crate::context::Context;
use crate::dtype::{DType, EDGE_WORDS_PER_ROW, Element};
use crate::error::{Error, Result};
use crate::kernels::PACKED_EXTRAS_WORDS;
use crate::kernels::{
    self, EDGE_WORKGROUP_SIZE, FIX_EDGES, GroupShape, KernelKey, KernelSpec, Module, OpKernel, ROW_KERNEL,
    RowParams, SPLIT_STATS, SPLIT_WRITE, Slot, VectorWidth,
};
use crate::ops::validate;
use crate::plan::{
    DeviceCaps, Plan, group_shape, pair_rows, plan, prefers_split_rows, spread_grid, walk_width,
};
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// Plans `op` over `dtype` data on `shape`: the forced strategy if the op has it, else the
/// heuristics' choice (the split for a few very wide rows on a GPU, where the op has it
/// and the device can bind its buffers, and for rows too wide for any per-row strategy on
/// this driver). `row_bytes` holds the bytes per row of each array bound per chunk.
///
/// # Errors
///
/// [`Error::StrategyUnavailable`] for a strategy the op or the device lacks, the
/// planner's [`Error::LimitExceeded`], and [`Error::LimitExceeded`] naming
/// `max_storage_buffers_per_shader_stage` where the device cannot bind the op's buffers.
pub(crate) fn plan_rows(
    ctx: &Context,
    kernel: (OpKernel, DType),
    shape: Shape,
    forced: Option<Strategy>,
    row_bytes: &[u64],
) -> Result<Plan> {
    plan_rows_on(ctx.caps(), kernel, shape, forced, row_bytes, keeps_rows(ctx))
}

/// `op`'s module for `strategy` and `dtype` with scalar accesses, along a class axis
/// strided or not, as the planner first sees it.
fn scalar_spec(op: OpKernel, strategy: Strategy, dtype: DType, strided: bool) -> KernelSpec {
    KernelSpec {
        op,
        strategy,
        dtype,
        vector: VectorWidth::Scalar,
        cached: false,
        strided,
        paired: false,
        group: GroupShape::DEFAULT,
    }
}

/// The storage buffers `op`'s module for `strategy` and `dtype` binds (a 16-bit output's
/// edge words counted, whatever the row length).
fn storage_bindings(op: OpKernel, strategy: Strategy, dtype: DType) -> u32 {
    scalar_spec(op, strategy, dtype, false).storage_bindings()
}

/// Whether a device of `caps` can bind the storage buffers of `op`'s module for
/// `strategy` and `dtype`.
pub(crate) fn strategy_fits(caps: &DeviceCaps, op: OpKernel, strategy: Strategy, dtype: DType) -> bool {
    storage_bindings(op, strategy, dtype) <= caps.max_storage_buffers_per_stage
}

/// [`plan_rows`] on a device known by its caps alone (a context's, or a profile's), for
/// kernels that keep rows in registers or not (`keeps_rows`, which sizes a workgroup per
/// row to hold its row).
///
/// # Errors
///
/// As [`plan_rows`].
pub(crate) fn plan_rows_on(
    caps: &DeviceCaps,
    (op, dtype): (OpKernel, DType),
    shape: Shape,
    forced: Option<Strategy>,
    row_bytes: &[u64],
    keeps_rows: bool,
) -> Result<Plan> {
    if let Some(strategy) = forced {
        if let Some(reason) = op.refuses(strategy) {
            return Err(Error::StrategyUnavailable { strategy, reason });
        }
    }
    // The split binds the most: a device that cannot bind it plans without it.
    let splits =
        op.strategies().contains(&Strategy::SplitRow) && strategy_fits(caps, op, Strategy::SplitRow, dtype);
    let strategy = match forced {
        None if splits && prefers_split_rows(caps, shape) => Some(Strategy::SplitRow),
        other => other,
    };
    let mut planned = match (strategy, plan(caps, shape, strategy, row_bytes)) {
        // Rows too wide for any per-row strategy on this driver still split.
        (None, Err(Error::StrategyUnavailable { .. })) if splits => {
            plan(caps, shape, Some(Strategy::SplitRow), row_bytes)
        }
        (_, planned) => planned,
    }?;
    let elements_per_word = dtype.format().packet(1);
    planned.group =
        group_shape(caps, planned.strategy, shape.cols, elements_per_word, op.share_bytes(), keeps_rows);
    planned.walk_width = walk_width(caps, planned.group.lanes);
    if scalar_spec(op, planned.strategy, dtype, !shape.is_row_major()).pairs_rows(shape.inner) {
        pair_rows(&mut planned, caps)?;
    }
    // Refused here, before the op records anything, on a device that cannot bind the
    // storage buffers of the op's module for that strategy.
    kernels::check_storage_bindings(
        storage_bindings(op, planned.strategy, dtype),
        caps.max_storage_buffers_per_stage,
    )?;
    Ok(planned)
}

/// Whether kernels on `ctx` keep an invocation's share of a row in registers between
/// their looks at it ([`Context::with_cached_rows`]; by default on GPUs, where that makes
/// a row that fits one read of memory, and not on CPU adapters, where the second look
/// reads the CPU's caches and the kept packets measured slower: lavapipe, 65536 x 10
/// softmax, 2.9 ms kept against 2.6 ms not).
pub(crate) fn keeps_rows(ctx: &Context) -> bool {
    ctx.cached_rows()
}

/// The widest access every tensor's buffer has room for: 128-bit vectors when each
/// tensor's binding, rounded up to 16 bytes, still lies within its buffer.
pub(crate) fn vector_width(tensors: &[TensorRef<'_>], elements: u64) -> VectorWidth {
    let fits = tensors.iter().all(|t| validate::has_room(&t.region(), elements * t.dtype().size(), 16));
    if fits { VectorWidth::Vec4 } else { VectorWidth::Scalar }
}

/// One row op's dispatch: the kernel, and what the host binds to each of its slots. A
/// binding the op declares optional and nothing is given for (an absent weight,
/// argmax...) gets a placeholder; a required one is an error (see [`crate::kernels::bind`]).
pub(crate) struct RowDispatch<'a> {
    /// The module.
    pub(crate) spec: KernelSpec,
    /// Its overridable constants.
    pub(crate) constants: Vec<(&'static str, u32)>,
    /// Class-axis tensors: bound at each chunk's rows.
    pub(crate) tensors: Vec<(Slot, TensorRef<'a>)>,
    /// Arrays of so many bytes per row: bound at each chunk's rows.
    pub(crate) per_row: Vec<(Slot, BufferRegion<'a>, u64)>,
    /// Buffers bound from their start, so many bytes.
    pub(crate) whole: Vec<(Slot, BufferRegion<'a>, u64)>,
    /// What the params hold besides each chunk's own fields (the cross-entropy's options).
    pub(crate) params: RowParams,
    /// For a kernel that packs its per-row extras into one scratch binding: where they
    /// are copied after each chunk.
    pub(crate) extras: Option<PackedOutputs<'a>>,
}

/// Where the packed cross-entropy's argmax and logsumexp go: its kernel writes them into
/// its `extras` scratch, and each chunk's rows are copied out from there (the caller's
/// buffers need `COPY_DST`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedOutputs<'a> {
    /// Each row's argmax (u32).
    pub(crate) argmax: Option<BufferRegion<'a>>,
    /// Each row's logsumexp (f32).
    pub(crate) lse: Option<BufferRegion<'a>>,
}

/// Whether `op` gives way on `ctx`'s device to the kernel its declaration names as its
/// fallback: the device cannot bind the storage buffers of `op`'s largest module (its
/// split strategy with a 16-bit output's edge words).
pub(crate) fn takes_fallback(ctx: &Context, op: OpKernel) -> bool {
    op.decl().fallback.is_some()
        && !op.strategies().iter().all(|&strategy| strategy_fits(ctx.caps(), op, strategy, DType::BF16))
}

/// The bind group of `module` for the `rows` rows from row `first`: `params`, each slot
/// from `dispatch` (tensors and per-row arrays at those rows) or from `scratch`.
///
/// # Errors
///
/// A required binding left unbound, or a buffer for a slot the module lacks (bugs; see
/// [`crate::kernels::bind`]).
pub(crate) fn bind_rows(
    ctx: &Context,
    module: &Module,
    params: &wgpu::Buffer,
    dispatch: &RowDispatch<'_>,
    cols: u64,
    (first, rows): (u64, u64),
    scratch: &[(Slot, &wgpu::Buffer)],
) -> Result<wgpu::BindGroup> {
    let access_bytes = module.spec.access_bytes();
    let tensors = dispatch.tensors.iter().map(|&(slot, tensor)| {
        let bytes_per_row = cols * tensor.dtype().size();
        let size = (rows * bytes_per_row).next_multiple_of(access_bytes);
        (slot, tensor.region().binding(first * bytes_per_row, size))
    });
    let per_row = dispatch.per_row.iter().map(|&(slot, region, bytes)| {
        (slot, region.binding(first * bytes, (rows * bytes).next_multiple_of(4).max(4)))
    });
    let whole = dispatch
        .whole
        .iter()
        .map(|&(slot, region, bytes)| (slot, region.binding(0, bytes.next_multiple_of(4).max(4))));
    let scratch = scratch.iter().map(|&(slot, buffer)| (slot, buffer.as_entire_buffer_binding()));
    let bound: Vec<(Slot, wgpu::BufferBinding<'_>)> =
        tensors.chain(per_row).chain(whole).chain(scratch).collect();
    let bindings = kernels::bind(module, params, &bound, |i| ctx.placeholder(i))?;
    ctx.bind_buffers(module, &bindings)
}

/// Records `dispatch` over every chunk of `plan` into `encoder`: the row kernel (or the
/// split's two passes), then for a 16-bit output the edge pass. The kernel is the
/// dispatch's, fitted to the shape's layout: a strided class axis takes the strided
/// variant (scalar accesses).
///
/// # Errors
///
/// A pipeline that does not compile (a bug), and what wgpu reports while creating the
/// bind groups ([`Error::ForeignBuffer`] for a buffer of another device).
pub(crate) fn encode_rows(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    dispatch: &RowDispatch<'_>,
    shape: Shape,
    plan: &Plan,
) -> Result<()> {
    if plan.chunks.is_empty() {
        return Ok(());
    }
    shape.check_layout()?;
    let spec = planned_spec(dispatch.spec, plan, shape);
    let module = ctx.module(spec)?;
    let mut constants = dispatch.constants.clone();
    match spec.strategy {
        Strategy::SubgroupPerRow => {
            constants
                .extend([("ROWS_PER_GROUP", plan.rows_per_group), ("LANES_PER_ROW", plan.lanes_per_row)]);
        }
        Strategy::WorkgroupPerRow | Strategy::SplitRow => constants.push(("WALK_WIDTH", plan.walk_width)),
        Strategy::ThreadPerRow => {}
    }
    let pipeline = |entry_point| ctx.pipeline(&KernelKey { spec, entry_point, constants: constants.clone() });
    let RowPasses { entries, edges: has_edges } = row_passes(spec, shape.cols)?;
    let pipelines = entries.iter().map(|&e| pipeline(e)).collect::<Result<Vec<_>>>()?;
    let edges_pipeline = has_edges.then(|| pipeline(FIX_EDGES)).transpose()?;
    let segments = plan.segments;
    let largest = plan.chunks.iter().map(|c| c.rows).max().unwrap_or(0) as u64;
    let cols = shape.cols as u64;
    let label = spec.label();
    ctx.catching(|| {
        let mut scratch = |bytes: u64| ctx.scratch_buffer(recorder, bytes);
        // The statistics pass writes every segment's share before the write pass reads any.
        let segment_shares = (spec.strategy == Strategy::SplitRow)
            .then(|| ctx.scratch_written_first(largest * segments as u64 * spec.op.share_bytes()))
            .transpose()?;
        let packs_extras = spec.op.decl().packs_extras;
        let edges =
            (has_edges && !packs_extras).then(|| scratch(EDGE_WORDS_PER_ROW * 4 * largest)).transpose()?;
        // [argmax | logsumexp | edge words], `largest` rows each.
        let extras = packs_extras.then(|| scratch(PACKED_EXTRAS_WORDS * 4 * largest)).transpose()?;
        let extras_rows = u32::try_from(largest).unwrap_or(u32::MAX);
        for (index, chunk) in plan.chunks.iter().enumerate() {
            let params = RowParams {
                // Each fits in u32: a chunk fits in one storage binding, so its rows and
                // columns do, and chunks and segments are fewer than rows.
                rows: u32::try_from(chunk.rows).unwrap_or(u32::MAX),
                cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
                groups_x: chunk.grid[0],
                // Offset by the dispatch's own first row: a window of a larger batch.
                first_row: dispatch
                    .params
                    .first_row
                    .saturating_add(u32::try_from(chunk.first_row).unwrap_or(u32::MAX)),
                chunk: u32::try_from(index).unwrap_or(u32::MAX),
                segments: u32::try_from(segments).unwrap_or(u32::MAX),
                inner: u32::try_from(shape.inner).unwrap_or(u32::MAX),
                extras_rows,
                ..dispatch.params
            };
            let params = ctx.uniform(&label, bytemuck::bytes_of(&params))?;
            let (first, rows) = (chunk.first_row as u64, chunk.rows as u64);
            let scratch: Vec<(Slot, &wgpu::Buffer)> = [
                (Slot::SegmentShares, segment_shares.as_ref()),
                (Slot::Edges, edges.as_ref()),
                (Slot::Extras, extras.as_ref()),
            ]
            .into_iter()
            .filter_map(|(name, buffer)| buffer.map(|b| (name, &**b)))
            .collect();
            let bind_group = bind_rows(ctx, &module, &params, dispatch, cols, (first, rows), &scratch)?;
            for pipeline in &pipelines {
                recorder.dispatch(&label, pipeline, &bind_group, chunk.grid);
            }
            if let Some(pipeline) = &edges_pipeline {
                let groups = rows.div_ceil(u64::from(EDGE_WORKGROUP_SIZE));
                let grid = spread_grid(groups, ctx.caps().max_workgroups_per_dimension)?;
                recorder.dispatch(&label, pipeline, &bind_group, grid);
            }
            if let (Some(extras), Some(outputs)) = (&extras, dispatch.extras) {
                let parts = [(0, outputs.argmax), (4 * largest, outputs.lse)];
                for (from, to) in parts.into_iter().filter_map(|(from, to)| to.map(|to| (from, to))) {
                    recorder.encoder().copy_buffer_to_buffer(
                        extras,
                        from,
                        to.buffer(),
                        to.offset() + 4 * first,
                        4 * rows,
                    );
                }
            }
        }
        Ok(())
    })
}

/// The passes [`encode_rows`] records per chunk of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowPasses {
    /// The row kernel's entry points, one dispatch each: the split's two passes, else one.
    pub(crate) entries: &'static [&'static str],
    /// Whether the 16-bit edge pass follows (a 16-bit output whose rows share words).
    pub(crate) edges: bool,
}

/// The passes of `spec` (already fitted to the layout) over rows of `cols`.
///
/// # Errors
///
/// [`Error::Validation`] for rows that would share a word three ways (never for two
/// elements a word: a bug).
pub(crate) fn row_passes(spec: KernelSpec, cols: usize) -> Result<RowPasses> {
    let entries: &'static [&'static str] =
        if spec.strategy == Strategy::SplitRow { &[SPLIT_STATS, SPLIT_WRITE] } else { &[ROW_KERNEL] };
    // Rows of whole words end on word boundaries: no word is shared, no edge pass.
    let format = spec.dtype.format();
    let edges = spec.has_edges() && format.rows_share_words(cols as u64);
    if edges && !format.edge_rule_holds(cols as u64) {
        // Never for two elements a word; a wider format would need another edge pass.
        return Err(Error::Validation(format!(
            "rows of {cols} elements share words three ways in {} (a bug in wgpu-softmax)",
            spec.dtype
        )));
    }
    Ok(RowPasses { entries, edges })
}

/// `spec` for the layout of `shape`: along a strided class axis, the strided variant, whose
/// gathers and scatters are scalar.
pub(crate) fn layout_spec(spec: KernelSpec, shape: Shape) -> KernelSpec {
    if shape.is_row_major() {
        spec
    } else {
        KernelSpec { strided: true, vector: VectorWidth::Scalar, ..spec }
    }
}

/// The module `plan` runs for `spec` over `shape`: fitted to the layout
/// ([`layout_spec`]), rows paired as the plan pairs them, with the plan's workgroup, and
/// the cached module only where every row fits its registers (else the streaming one,
/// which holds no cache: each its own pipeline).
pub(crate) fn planned_spec(spec: KernelSpec, plan: &Plan, shape: Shape) -> KernelSpec {
    let mut spec = layout_spec(spec, shape);
    spec.paired = plan.paired;
    if matches!(plan.strategy, Strategy::WorkgroupPerRow | Strategy::SplitRow) {
        spec.group = plan.group;
    }
    spec.cached = spec.cached && crate::plan::keeps_share(&spec, plan, shape.cols);
    spec
}

/// The host API of a row op with one output: uploads `inputs` (row-major `shape`, padded
/// so that vector accesses fit), records `encode` over them into a fresh output of the
/// same type, submits once and reads the output back. Where the data is larger than one
/// buffer may be, runs piece by piece over runs of whole rows.
pub(crate) fn run_on_host<T: Element>(
    ctx: &Context,
    inputs: &[&[T]],
    shape: Shape,
    encode: impl Fn(&mut wgpu::CommandEncoder, &[TensorRef<'_>], TensorRef<'_>, Shape) -> Result<Plan>,
) -> Result<Vec<T>> {
    if shape.is_empty() {
        return Ok(Vec::new());
    }
    let rows_per_piece = rows_per_buffer(ctx, shape, T::DTYPE)?;
    let mut output = Vec::with_capacity(shape.len()?);
    for first_row in (0..shape.rows).step_by(rows_per_piece) {
        let piece = Shape { rows: rows_per_piece.min(shape.rows - first_row), ..shape };
        let range = first_row * shape.cols..(first_row + piece.rows) * shape.cols;
        output.extend(ctx.catching(|| {
            let uploaded = inputs
                .iter()
                .map(|data| ctx.upload_elements(&data[range.clone()]))
                .collect::<Result<Vec<_>>>()?;
            let tensors: Vec<TensorRef<'_>> = uploaded.iter().map(|b| TensorRef::new(b, T::DTYPE)).collect();
            let result = ctx.elements_buffer(T::DTYPE, range.len())?;
            let mut encoder = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax") });
            encode(&mut encoder, &tensors, TensorRef::new(&result, T::DTYPE), piece)?;
            let bytes =
                ctx.finish_and_read_many(encoder, &[(&result, range.len() as u64 * T::DTYPE.size())])?;
            Ok(bytemuck::pod_collect_to_vec::<u8, T>(bytes.first().map_or(&[][..], Vec::as_slice)))
        })?);
    }
    Ok(output)
}

/// The most rows of `shape` one buffer of `dtype` may hold on this device (with room for
/// the padding of vector accesses), in whole runs of `shape.inner` (the rows of a
/// strided class axis that make up one contiguous region).
///
/// # Errors
///
/// [`Error::LimitExceeded`] when not even one run of rows fits.
pub(crate) fn rows_per_buffer(ctx: &Context, shape: Shape, dtype: DType) -> Result<usize> {
    let row_bytes = (shape.cols as u64).saturating_mul(dtype.size()).max(1);
    let run = shape.inner.max(1) as u64;
    let max = ctx.caps().max_buffer_bytes.saturating_sub(16);
    let rows = max / row_bytes / run * run;
    if rows == 0 {
        return Err(Error::LimitExceeded {
            limit: "max_buffer_size",
            required: row_bytes.saturating_mul(run) + 16,
            available: max + 16,
        });
    }
    Ok(usize::try_from(rows).unwrap_or(usize::MAX).min(shape.rows.max(1)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

    use super::plan_rows_on;
    use crate::dtype::DType;
    use crate::error::Error;
    use crate::kernels::OpKernel;
    use crate::plan::{DeviceCaps, DeviceProfile};
    use crate::shape::Shape;
    use crate::strategy::Strategy;

    #[test]
    fn a_thread_per_row_pairs_neighbouring_16_bit_rows_of_an_even_inner() {
        let gpu = DeviceProfile::for_tests("a GPU", wgpu::DeviceType::DiscreteGpu, 32).caps();
        let lavapipe = DeviceProfile::for_tests("a CPU adapter", wgpu::DeviceType::Cpu, 8).caps();
        // Small bindings and grids: batches in several chunks.
        let small = DeviceCaps { max_storage_binding_bytes: 8192, max_workgroups_per_dimension: 3, ..gpu };
        let mut paired_in_chunks = 0;
        for caps in [gpu, lavapipe, small] {
            let shapes =
                [(3, 37, 2), (2, 9, 6), (5, 21, 64), (1, 1001, 32), (40, 5, 30), (700, 3, 8), (9, 1, 2)];
            for (outer, cols, inner) in shapes {
                let shape = Shape::with_inner(outer, cols, inner);
                for dtype in DType::ALL {
                    let row_bytes = [dtype.size() * cols as u64];
                    let planned = |forced| {
                        plan_rows_on(&caps, (OpKernel::Softmax, dtype), shape, forced, &row_bytes, true)
                    };
                    let p = match planned(Some(Strategy::ThreadPerRow)) {
                        // A run of rows wider than the small binding.
                        Err(Error::LimitExceeded { .. }) if caps == small => continue,
                        other => other.unwrap(),
                    };
                    // f32 owns its words alone: nothing to pair.
                    assert_eq!(p.paired, dtype != DType::F32, "{shape} {dtype}");
                    let per_invocation: u64 = if p.paired { 2 } else { 1 };
                    let lanes = u64::from(Strategy::ThreadPerRow.workgroup_size());
                    assert_eq!(u64::from(p.rows_per_group), per_invocation * lanes);
                    let mut next = 0;
                    for chunk in &p.chunks {
                        // Pairs never straddle chunks: each starts at an even row.
                        assert_eq!((chunk.first_row % 2, chunk.rows % 2), (0, 0), "{shape} {dtype}");
                        assert_eq!(chunk.first_row, next);
                        next += chunk.rows;
                        let groups = u64::from(chunk.grid[0]) * u64::from(chunk.grid[1]);
                        let rows = chunk.rows as u64;
                        // Every pair has an invocation, and in a one-dimensional grid no
                        // workgroup is wholly surplus.
                        assert!(groups * lanes * per_invocation >= rows);
                        assert!(chunk.grid[1] > 1 || (groups - 1) * lanes * per_invocation < rows);
                        assert!(chunk.grid[0] <= caps.max_workgroups_per_dimension);
                    }
                    assert_eq!(next, shape.rows);
                    paired_in_chunks += usize::from(p.paired && p.chunks.len() > 1);
                    // Lanes sharing a row never pair.
                    if let Ok(p) = planned(Some(Strategy::WorkgroupPerRow)) {
                        assert!(!p.paired);
                    }
                }
            }
            let thread_plan = |shape, dtype| {
                plan_rows_on(
                    &caps,
                    (OpKernel::Softmax, dtype),
                    shape,
                    Some(Strategy::ThreadPerRow),
                    &[74],
                    true,
                )
            };
            // An odd number of positions after the axis: row pairs would straddle words.
            assert!(!thread_plan(Shape::with_inner(4, 37, 5), DType::F16).unwrap().paired);
            // A contiguous class axis: no pairing.
            assert!(!thread_plan(Shape::new(64, 37), DType::BF16).unwrap().paired);
        }
        assert!(paired_in_chunks > 0, "no batch of paired rows took several chunks");
    }
}
