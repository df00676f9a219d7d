//! Recording the matmul module's passes (`shaders/ops/matmul.wgsl`): a tiled product with
//! f32 sums, the column sums of an f32 matrix, and the rounding of f32 values into 16-bit
//! storage. The linear cross-entropy is built from them.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::{
    self, GroupShape, KernelKey, KernelSpec, MATMUL_COLUMN_SUMS, MATMUL_DEPTH, MATMUL_PACK_HALVES,
    MATMUL_PER, MATMUL_PRODUCT, MATMUL_SIDE, MATMUL_SUM_SLICES, MATMUL_TILE, MatmulParams, OpKernel, Slot,
    VectorWidth,
};
use crate::ops::validate;
use crate::plan::spread_grid;
use crate::record::Recorder;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// An operand of a product: a region of 32-bit words holding f32 values or 16-bit halves
/// (of the module's storage type), and whether it is stored transposed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'b> {
    /// The values.
    pub(crate) tensor: TensorRef<'b>,
    /// `a` stored `k x m` (else `m x k`); `b` stored `n x k` (else `k x n`).
    pub(crate) transposed: bool,
}

/// `c (m x n, f32) = a * b (+ c) (+ bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'b> {
    /// The left operand, `m x k`.
    pub(crate) a: Operand<'b>,
    /// The right operand, `k x n`.
    pub(crate) b: Operand<'b>,
    /// Optional bias per column, of `b`'s storage type.
    pub(crate) bias: Option<TensorRef<'b>>,
    /// The f32 result, row-major `m x n`.
    pub(crate) c: BufferRegion<'b>,
    /// Rows, columns and terms of each sum.
    pub(crate) m: usize,
    /// See `m`.
    pub(crate) n: usize,
    /// See `m`.
    pub(crate) k: usize,
    /// Adds to what `c` holds instead of overwriting it.
    pub(crate) accumulate: bool,
}

/// The module of the matmul for operands of `dtype` (f32, or the 16-bit type it converts),
/// loading them `vector` at a time.
pub(crate) const fn spec(dtype: DType, vector: VectorWidth) -> KernelSpec {
    KernelSpec {
        op: OpKernel::Matmul,
        strategy: Strategy::WorkgroupPerRow,
        dtype,
        vector,
        cached: false,
        strided: false,
        paired: false,
        group: GroupShape::DEFAULT,
    }
}

/// Whether `operand`, `rows x contiguous` as stored, can be loaded 128 bits at a time: its
/// stored rows are whole vectors (four f32 or eight halves), so no vector straddles two
/// rows, and its binding starts on a vector and, rounded up to whole vectors, stays in its
/// buffer.
fn loads_vectors(operand: TensorRef<'_>, rows: usize, contiguous: usize) -> bool {
    let element = operand.dtype().size();
    let region = operand.region();
    (contiguous as u64 * element).is_multiple_of(VECTOR_BYTES)
        && region.offset().is_multiple_of(VECTOR_BYTES)
        && validate::has_room(&region, (rows * contiguous) as u64 * element, VECTOR_BYTES)
}

/// The width the product of `op(a)` (`m x k`) and `op(b)` (`k x n`) loads its operands
/// at: 128 bits where both can be, else 32.
pub(crate) fn operand_width(a: Operand<'_>, b: Operand<'_>, (m, n, k): (usize, usize, usize)) -> VectorWidth {
    let (a_rows, a_contiguous) = if a.transposed { (k, m) } else { (m, k) };
    let (b_rows, b_contiguous) = if b.transposed { (n, k) } else { (k, n) };
    if loads_vectors(a.tensor, a_rows, a_contiguous) && loads_vectors(b.tensor, b_rows, b_contiguous) {
        VectorWidth::Vec4
    } else {
        VectorWidth::Scalar
    }
}

/// Bytes of the binding of an operand of `elements` elements loaded at `width`: whole
/// loads.
pub(crate) fn operand_bytes(operand: TensorRef<'_>, elements: usize, width: VectorWidth) -> u64 {
    let unit = if width == VectorWidth::Vec4 { VECTOR_BYTES } else { 4 };
    (elements as u64 * operand.dtype().size()).next_multiple_of(unit).max(unit)
}

/// Bytes of one vector load.
const VECTOR_BYTES: u64 = 16;

/// The storage type a 16-bit operand of this product has (f32 when none).
fn half_type(tensors: &[TensorRef<'_>]) -> DType {
    tensors.iter().map(TensorRef::dtype).find(|&d| d != DType::F32).unwrap_or(DType::F32)
}

fn is_half(tensor: TensorRef<'_>) -> u32 {
    u32::from(tensor.dtype() != DType::F32)
}

/// The binding of a region's first `bytes`, rounded up to whole words.
fn words(region: BufferRegion<'_>, bytes: u64) -> wgpu::BufferBinding<'_> {
    region.binding(0, bytes.next_multiple_of(4).max(4))
}

/// The sizes of one pass: `m`, `n`, `k`, the range of terms it sums, and the slices that
/// range is cut into (`(1, terms)` where it is not).
#[derive(Clone, Copy, Debug)]
struct PassSizes {
    m: usize,
    n: usize,
    k: usize,
    terms: (usize, usize),
    slices: (usize, usize),
}

impl PassSizes {
    /// Sizes whose pass sums every term (or has none).
    const fn whole(m: usize, n: usize, k: usize) -> Self {
        Self { m, n, k, terms: (0, k), slices: (1, k) }
    }
}

/// Split a product over its terms only where it has fewer blocks than this: enough
/// workgroups to fill the largest GPUs' cores about twice (an H100 has 132).
const SPLIT_BELOW_BLOCKS: usize = 256;
/// The fewest terms a slice sums: fewer would spend more on writing and adding partial
/// products than the slice saves.
const MIN_SLICE_TERMS: usize = 512;
/// The most scratch the partial products may take.
const MAX_SLICE_BYTES: u64 = 16 << 20;

/// How a product `c (m x n) = op(a) (m x k) * op(b) (k x n)` is recorded, and the
/// dispatches that takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProductPlan {
    /// Ranges of at most this many terms, each a dispatch of every block that adds its
    /// sums to the last range's (one range where the driver does not limit loops).
    Ranges(usize),
    /// Split-K: one dispatch of every block for each of `slices` slices of `slice_terms`
    /// terms (the last one's to `k`), each writing its partial product to scratch, and
    /// one that adds the partial products in slice order (so that repeats are
    /// bit-identical). For products of few blocks and many terms (`dH = G W` of a window
    /// of rows, whose `k` is the vocabulary): their terms then run on many cores at once
    /// instead of in one workgroup per block.
    Slices { slices: usize, slice_terms: usize },
}

impl ProductPlan {
    /// The plan for `m x n x k` on a device whose driver stops an invocation's loops
    /// after `max_loop_iterations`.
    pub(crate) fn of(m: usize, n: usize, k: usize, max_loop_iterations: Option<u64>) -> Self {
        let per_dispatch = terms_per_dispatch(max_loop_iterations);
        let tile = MATMUL_TILE as usize;
        let blocks = m.div_ceil(tile) * n.div_ceil(tile);
        let ranges = Self::Ranges(per_dispatch);
        if blocks == 0 || blocks >= SPLIT_BELOW_BLOCKS || k < 2 * MIN_SLICE_TERMS {
            return ranges;
        }
        let depth = MATMUL_DEPTH as usize;
        let wanted = SPLIT_BELOW_BLOCKS.div_ceil(blocks).min(k / MIN_SLICE_TERMS);
        // Each slice within the driver's loop limit, a multiple of the depth.
        let slices = wanted.max(k.div_ceil(per_dispatch));
        let slice_terms = k.div_ceil(slices).next_multiple_of(depth).min(per_dispatch);
        let slices = k.div_ceil(slice_terms);
        let bytes = (slices * m * n) as u64 * 4;
        if slices < 2 || bytes > MAX_SLICE_BYTES {
            return ranges;
        }
        Self::Slices { slices, slice_terms }
    }

    /// Dispatches the product takes (one at least).
    pub(crate) fn dispatches(self, k: usize) -> usize {
        match self {
            Self::Ranges(per_dispatch) => k.div_ceil(per_dispatch.max(1)).max(1),
            Self::Slices { .. } => 2,
        }
    }
}

/// The most terms of a product one dispatch sums on a device whose driver stops an
/// invocation's loops after `max_loop_iterations` (llvmpipe: 65535, all loops together).
/// Measured with the first tile (4 x 4 outputs per invocation, 16 terms per step): dH = G W
/// was right at k = 50257 and cut short from k = 65535 on, so `tile_sums` ran between 16
/// and 21 iterations per step (its own loop, and the depth loop; the small loops inside
/// were unrolled). This counts every loop a step has as if none were unrolled: the step
/// loop, the slab loads (a loop over an invocation's loads of each operand, and one over a
/// load's elements, at most eight halves), the depth loop, and the three loops over the
/// invocation's vec4s of sums; and stays under half the limit. Where the driver has no
/// limit, one dispatch sums every term.
pub(crate) fn terms_per_dispatch(max_loop_iterations: Option<u64>) -> usize {
    let loads = u64::from(MATMUL_TILE * MATMUL_DEPTH / (MATMUL_SIDE * MATMUL_SIDE));
    let quads = u64::from(MATMUL_PER * MATMUL_PER / 4);
    let per_step = 1 + 2 * (loads + 8) + u64::from(MATMUL_DEPTH) + 3 * quads;
    match max_loop_iterations {
        None => usize::MAX,
        Some(limit) => {
            let steps = (limit / 2 / per_step).max(1);
            usize::try_from(steps * u64::from(MATMUL_DEPTH)).unwrap_or(usize::MAX)
        }
    }
}

/// Records one pass of the matmul module `spec`'s `entry_point` over `groups` workgroups.
#[allow(clippy::too_many_arguments)] // the pass's module, entry, constants, sizes, grid and bindings
fn record(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    spec: KernelSpec,
    entry_point: &'static str,
    constants: Vec<(&'static str, u32)>,
    sizes: PassSizes,
    groups: u64,
    bound: &[(Slot, wgpu::BufferBinding<'_>)],
) -> Result<()> {
    let module = ctx.module(spec)?;
    let pipeline = ctx.pipeline(&KernelKey { spec, entry_point, constants })?;
    let grid = spread_grid(groups, ctx.caps().max_workgroups_per_dimension)?;
    let size = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let params = MatmulParams {
        m: size(sizes.m),
        n: size(sizes.n),
        k: size(sizes.k),
        groups_x: grid[0],
        k_first: size(sizes.terms.0),
        k_end: size(sizes.terms.1),
        slices: size(sizes.slices.0),
        slice_terms: size(sizes.slices.1),
    };
    let label = spec.label();
    let params = ctx.uniform(&label, bytemuck::bytes_of(&params))?;
    let bindings = kernels::bind(&module, &params, bound, |i| ctx.placeholder(i))?;
    let group = ctx.bind_buffers(&module, &bindings)?;
    recorder.dispatch(&label, &pipeline, &group, grid);
    Ok(())
}

/// Records `product`; returns whether it loads its operands 128 bits at a time (else a
/// 32-bit word at a time).
///
/// # Errors
///
/// A pipeline that does not compile (a bug), [`crate::Error::LimitExceeded`] for a grid
/// past the device's limits.
pub(crate) fn record_product<'b>(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    product: &Product<'b>,
) -> Result<bool> {
    let Product { a, b, bias, c, m, n, k, accumulate } = *product;
    if m == 0 || n == 0 {
        return Ok(false);
    }
    let dtype = half_type(&[a.tensor, b.tensor]);
    let vector = operand_width(a, b, (m, n, k));
    let operand =
        |t: TensorRef<'b>, elements: usize| t.region().binding(0, operand_bytes(t, elements, vector));
    let mut bound = vec![
        (Slot::A, operand(a.tensor, m * k)),
        (Slot::B, operand(b.tensor, k * n)),
        (Slot::C, words(c, 4 * (m * n) as u64)),
    ];
    if let Some(bias) = bias {
        bound.push((Slot::Bias, words(bias.region(), n as u64 * bias.dtype().size())));
    }
    let tile = MATMUL_TILE as usize;
    let blocks = (m.div_ceil(tile) * n.div_ceil(tile)) as u64;
    let constants = |accumulate: bool, bias: bool| {
        vec![
            ("A_HALF", is_half(a.tensor)),
            ("B_HALF", is_half(b.tensor)),
            ("A_TRANSPOSED", u32::from(a.transposed)),
            ("B_TRANSPOSED", u32::from(b.transposed)),
            ("ACCUMULATE", u32::from(accumulate)),
            ("HAS_BIAS", u32::from(bias)),
        ]
    };
    match ProductPlan::of(m, n, k, ctx.caps().max_loop_iterations) {
        ProductPlan::Slices { slices, slice_terms } => {
            // The partial products into scratch, side by side, then their sum into c.
            let bytes = (slices * m * n) as u64 * 4;
            // Every slice writes each of its outputs, so the scratch needs no clear.
            let partials = ctx.scratch_written_first(bytes)?;
            let mut slice_bound = bound.clone();
            slice_bound[2] = (Slot::C, words(BufferRegion::new(&partials), bytes));
            let sizes = PassSizes { m, n, k, terms: (0, k), slices: (slices, slice_terms) };
            let groups = blocks * slices as u64;
            let product_spec = spec(dtype, vector);
            record(
                ctx,
                recorder,
                product_spec,
                MATMUL_PRODUCT,
                constants(false, false),
                sizes,
                groups,
                &slice_bound,
            )?;
            let mut sum_bound = vec![
                (Slot::A, words(BufferRegion::new(&partials), bytes)),
                (Slot::C, words(c, 4 * (m * n) as u64)),
            ];
            if let Some(bias) = bias {
                sum_bound.push((Slot::Bias, words(bias.region(), n as u64 * bias.dtype().size())));
            }
            let sum_spec = spec(dtype, VectorWidth::Scalar);
            let groups = (m * n).div_ceil(sum_spec.workgroup_size() as usize) as u64;
            let constants = vec![
                ("B_HALF", is_half(b.tensor)),
                ("ACCUMULATE", u32::from(accumulate)),
                ("HAS_BIAS", u32::from(bias.is_some())),
            ];
            record(ctx, recorder, sum_spec, MATMUL_SUM_SLICES, constants, sizes, groups, &sum_bound)?;
        }
        ProductPlan::Ranges(per_dispatch) => {
            // Ranges of terms, each dispatch adding its sums to the last's; the bias goes
            // in once.
            let mut first = 0_usize;
            loop {
                let end = k.min(first.saturating_add(per_dispatch));
                let constants = constants(accumulate || first > 0, bias.is_some() && first == 0);
                let sizes = PassSizes { m, n, k, terms: (first, end), slices: (1, end - first) };
                record(ctx, recorder, spec(dtype, vector), MATMUL_PRODUCT, constants, sizes, blocks, &bound)?;
                if end >= k {
                    break;
                }
                first = end;
            }
        }
    }
    Ok(vector == VectorWidth::Vec4)
}

/// Records `c[column] (+)= sum over rows of a[row, column]` for an f32 `rows x cols` `a`.
///
/// # Errors
///
/// As [`record_product`].
pub(crate) fn record_column_sums(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    a: BufferRegion<'_>,
    (rows, cols): (usize, usize),
    c: BufferRegion<'_>,
    accumulate: bool,
) -> Result<()> {
    if cols == 0 {
        return Ok(());
    }
    let spec = spec(DType::F32, VectorWidth::Scalar);
    let bound = [(Slot::A, words(a, 4 * (rows * cols) as u64)), (Slot::C, words(c, 4 * cols as u64))];
    let groups = cols.div_ceil(spec.workgroup_size() as usize) as u64;
    let constants = vec![("ACCUMULATE", u32::from(accumulate))];
    record(
        ctx,
        recorder,
        spec,
        MATMUL_COLUMN_SUMS,
        constants,
        PassSizes::whole(rows, cols, 0),
        groups,
        &bound,
    )
}

/// Records the rounding of `count` f32 values of `values` into `packed`, a 16-bit tensor
/// (what follows its last element in its last word is kept).
///
/// # Errors
///
/// As [`record_product`].
pub(crate) fn record_pack_halves(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    values: BufferRegion<'_>,
    packed: TensorRef<'_>,
    count: usize,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let dtype = packed.dtype();
    let bound = [
        (Slot::C, words(values, 4 * count as u64)),
        (Slot::Packed, words(packed.region(), count as u64 * dtype.size())),
    ];
    let spec = spec(dtype, VectorWidth::Scalar);
    // One invocation per word of the result.
    let words = count.div_ceil(spec.dtype.per_word() as usize);
    let groups = words.div_ceil(spec.workgroup_size() as usize) as u64;
    record(ctx, recorder, spec, MATMUL_PACK_HALVES, Vec::new(), PassSizes::whole(count, 0, 0), groups, &bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llvmpipe's limit on an invocation's loop iterations.
    const LLVMPIPE: Option<u64> = Some(65535);

    /// Every split covers the terms once, in slices within the driver's loop limit, each a
    /// multiple of the depth, with no empty slice and no more scratch than allowed; the
    /// products that would fill a GPU anyway, and short sums, are not split.
    #[test]
    fn splits_cover_every_term_once_within_the_limits() {
        let tile = MATMUL_TILE as usize;
        for limit in [None, LLVMPIPE] {
            let per_dispatch = terms_per_dispatch(limit);
            for m in [1, 40, 128, 129, 1000, 4096] {
                for n in [1, 16, 200, 2048, 4096] {
                    for k in [0, 1, 1023, 1024, 5000, 50257, 65536, 128_256, 262_144] {
                        let plan = ProductPlan::of(m, n, k, limit);
                        let blocks = m.div_ceil(tile) * n.div_ceil(tile);
                        match plan {
                            ProductPlan::Ranges(terms) => {
                                assert_eq!(terms, per_dispatch);
                                assert_eq!(plan.dispatches(k), k.div_ceil(per_dispatch).max(1));
                            }
                            ProductPlan::Slices { slices, slice_terms } => {
                                let what = format!("{m}x{n}x{k} {limit:?}: {slices} slices of {slice_terms}");
                                assert!(blocks < SPLIT_BELOW_BLOCKS && slices >= 2, "{what}");
                                assert!(slice_terms.is_multiple_of(MATMUL_DEPTH as usize), "{what}");
                                assert!(
                                    slice_terms <= per_dispatch && slice_terms >= MIN_SLICE_TERMS,
                                    "{what}"
                                );
                                assert!(
                                    (slices - 1) * slice_terms < k && slices * slice_terms >= k,
                                    "{what}"
                                );
                                assert!((slices * m * n) as u64 * 4 <= MAX_SLICE_BYTES, "{what}");
                                assert_eq!(plan.dispatches(k), 2);
                            }
                        }
                    }
                }
            }
        }
    }

    /// dH = G W of the linear op's windows at real vocabularies: on llvmpipe, 40 rows of
    /// 16 features over 256000 classes were 80 dispatches of one workgroup each; split,
    /// they are 2, of 256 workgroups and of one per 256 outputs.
    #[test]
    fn a_window_s_dh_at_a_real_vocabulary_is_split() {
        assert_eq!(
            ProductPlan::of(40, 16, 256_000, LLVMPIPE),
            ProductPlan::Slices { slices: 256, slice_terms: 1000 }
        );
        assert_eq!(
            ProductPlan::of(40, 16, 256_000, None),
            ProductPlan::Slices { slices: 256, slice_terms: 1000 }
        );
        // A window of 1024 rows of 4096 features has 256 blocks already.
        assert_eq!(ProductPlan::of(1024, 4096, 128_256, None), ProductPlan::Ranges(usize::MAX));
    }
}
