//! Choosing a kernel strategy and a dispatch grid for a shape, under a device's limits.
//!
//! Plain Rust with no GPU, so it can be unit- and property-tested anywhere.

use crate::error::{Error, Result};
use crate::kernels::{CACHE_WORDS, GroupShape, SUBGROUP_TREE_MIN_LANES, VectorWidth};
use crate::shape::Shape;
use crate::strategy::Strategy;

/// The shortest segment of [`Strategy::SplitRow`], in columns: a row takes at most as
/// many segments as segments this long hold it ([`split_segments_most`]).
pub(crate) const SPLIT_SEGMENT_COLS: usize = crate::kernels::SPLIT_SEGMENT_ELEMENTS as usize;

/// Workgroups the split aims to give a batch of few rows: enough to fill the largest GPUs
/// (an H100 has 132 multiprocessors) about four times over. Where the rows are enough
/// for that with fewer segments, they take fewer and longer ones, so that each segment's
/// fixed cost (two trees, and a merge of the row's segment shares) is spread over more
/// elements.
pub(crate) const SPLIT_TARGET_WORKGROUPS: usize = 512;

/// The most segments [`Strategy::SplitRow`] gives a row of `cols`: segments of
/// [`SPLIT_SEGMENT_COLS`], enough for its packets whatever the storage type and access
/// width (see [`split_segments_for`]). Whether a row is wide enough to split is judged by
/// it.
#[must_use]
pub(crate) const fn split_segments_most(cols: usize) -> usize {
    split_segments_for(cols, crate::dtype::WIDEST_PACKET as usize)
}

/// [`split_segments_most`] for packets of at most `packet` elements: a row spans at most
/// two packets more than its columns fill when it starts or ends mid-packet.
#[must_use]
pub(crate) const fn split_segments_for(cols: usize, packet: usize) -> usize {
    (cols + 2 * packet).div_ceil(SPLIT_SEGMENT_COLS)
}

/// The fewest segments a row of `cols` may take: each segment no longer than a cached
/// split module keeps in its invocations' registers, so that the write pass reads it once
/// (the WGSL's `segment_cached`). Counted in f32 packets at every access width; 16-bit
/// elements, two to a word, take half as many packets.
#[must_use]
pub(crate) fn split_segments_fewest(cols: usize) -> usize {
    let lanes = u64::from(GroupShape::DEFAULT.lanes);
    let needed = VectorWidth::ALL.map(|width| {
        let packets = row_packets_most(cols as u64, u64::from(width.words()));
        packets.div_ceil(lanes * u64::from(crate::kernels::cache_packets(width)))
    });
    usize::try_from(needed.into_iter().max().unwrap_or(1).max(1)).unwrap_or(usize::MAX)
}

/// Segments per row of [`Strategy::SplitRow`] for `shape`: as many as give the batch
/// [`SPLIT_TARGET_WORKGROUPS`] workgroups, within [`split_segments_fewest`] and
/// [`split_segments_most`]. The WGSL reads the count from the params and cuts each row's
/// packets into that many even segments (`segment_packets`).
#[must_use]
pub(crate) fn split_segments(shape: Shape) -> usize {
    let wanted = SPLIT_TARGET_WORKGROUPS.div_ceil(shape.rows.max(1));
    wanted.min(split_segments_most(shape.cols)).max(split_segments_fewest(shape.cols))
}

/// What the planner needs to know about a device: a plain-data copy of its features and
/// limits, so that planning needs no GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceCaps {
    /// Whether the device was created with `Features::SUBGROUP`.
    pub(crate) subgroups: bool,
    /// Smallest subgroup size the adapter may use.
    pub(crate) subgroup_min_size: u32,
    /// Whether the adapter is a CPU (a software rasteriser such as lavapipe or llvmpipe),
    /// where per-invocation loops are cheap and barriers are dear.
    pub(crate) is_cpu: bool,
    /// `Limits::max_compute_workgroups_per_dimension`.
    pub(crate) max_workgroups_per_dimension: u32,
    /// `Limits::max_storage_buffer_binding_size`.
    pub(crate) max_storage_binding_bytes: u64,
    /// `Limits::max_buffer_size`.
    pub(crate) max_buffer_bytes: u64,
    /// `Limits::min_storage_buffer_offset_alignment`: where a split may bind from.
    pub(crate) storage_offset_alignment: u32,
    /// Loop iterations one invocation may run in total before the driver silently stops
    /// its loops, if the driver has such a limit (see [`LLVMPIPE_LOOP_ITERATIONS`]).
    pub(crate) max_loop_iterations: Option<u64>,
    /// `Limits::max_storage_buffers_per_shader_stage`: which modules the device can bind.
    pub(crate) max_storage_buffers_per_stage: u32,
    /// `Limits::max_compute_workgroup_storage_size`: whether the linear cross-entropy's
    /// fused forward fits, and how wide a workgroup per row may be.
    pub(crate) max_workgroup_storage_bytes: u32,
    /// The most invocations one workgroup may have along x (`Limits::
    /// max_compute_invocations_per_workgroup` and `max_compute_workgroup_size_x`).
    pub(crate) max_workgroup_lanes: u32,
}

/// llvmpipe (Mesa's software rasteriser behind both lavapipe on Vulkan and llvmpipe on GL)
/// caps the loop iterations of one shader invocation, all loops together, at 65535, and
/// past that leaves its loops early without any error: a thread-per-row softmax of
/// 50,000 columns wrote only the first 15,534 outputs of each row (50,000 + 15,534 =
/// 65,534 iterations). The planner keeps every kernel under it.
pub(crate) const LLVMPIPE_LOOP_ITERATIONS: u64 = 65_535;

impl DeviceCaps {
    /// The loop-iteration limit of the driver of an adapter named `name` whose driver is
    /// `driver` (as `wgpu::AdapterInfo` gives them), where it has one.
    #[must_use]
    pub(crate) fn loop_limit_of(name: &str, driver: &str) -> Option<u64> {
        let is_llvmpipe = |text: &str| text.to_lowercase().contains("llvmpipe");
        (is_llvmpipe(name) || is_llvmpipe(driver)).then_some(LLVMPIPE_LOOP_ITERATIONS)
    }

    /// Whether kernels keep each invocation's share of a row in registers between their
    /// looks at it unless told otherwise ([`crate::Context::with_cached_rows`]): on GPUs,
    /// where a row that fits is then read from memory once; not on CPU adapters, where
    /// the second look reads the CPU's caches and keeping measured slower.
    #[must_use]
    pub(crate) const fn keeps_rows_by_default(&self) -> bool {
        !self.is_cpu
    }
}

/// What an op will dispatch for a shape: a strategy, and one dispatch per chunk of rows.
/// Returned by the ops' `plan` and `encode`, to tell what ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub(crate) strategy: Strategy,
    /// The workgroup of [`Strategy::WorkgroupPerRow`] and [`Strategy::SplitRow`]
    /// ([`GroupShape::DEFAULT`] for the others).
    pub(crate) group: GroupShape,
    pub(crate) rows_per_group: u32,
    pub(crate) lanes_per_row: u32,
    pub(crate) walk_width: u32,
    /// Workgroups per row: [`split_segments`] for [`Strategy::SplitRow`], else 1.
    pub(crate) segments: usize,
    /// Whether each invocation takes two neighbouring rows ([`pair_rows`]).
    pub(crate) paired: bool,
    pub(crate) chunks: Vec<Chunk>,
}

impl Plan {
    /// The strategy.
    #[must_use]
    pub const fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Rows each workgroup handles.
    #[must_use]
    pub const fn rows_per_group(&self) -> u32 {
        self.rows_per_group
    }

    /// Invocations that share each row.
    #[must_use]
    pub const fn lanes_per_row(&self) -> u32 {
        self.lanes_per_row
    }

    /// Invocations per workgroup of the row kernel.
    #[must_use]
    pub const fn workgroup_size(&self) -> u32 {
        match self.strategy {
            Strategy::WorkgroupPerRow | Strategy::SplitRow => self.group.lanes,
            Strategy::ThreadPerRow | Strategy::SubgroupPerRow => self.strategy.workgroup_size(),
        }
    }

    /// The dispatches, in row order; empty for an empty shape. More than one when the
    /// matrix is larger than one storage binding or one grid.
    #[must_use]
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }
}

/// One dispatch of a [`Plan`]: a run of rows whose arrays are bound from an aligned
/// offset, each within one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub(crate) first_row: usize,
    pub(crate) rows: usize,
    pub(crate) grid: [u32; 2],
}

impl Chunk {
    /// The first row.
    #[must_use]
    pub const fn first_row(&self) -> usize {
        self.first_row
    }

    /// How many rows.
    #[must_use]
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Workgroups along x and y; `x * y` covers every row, the surplus returns at once.
    #[must_use]
    pub const fn grid(&self) -> [u32; 2] {
        self.grid
    }
}

/// Rows at most this wide go to [`Strategy::ThreadPerRow`] on a discrete or integrated
/// GPU, where a lone invocation walking a long row leaves memory loads uncoalesced.
const THREAD_PER_ROW_MAX_COLS_GPU: usize = 32;
/// The same bound on a CPU adapter, where one invocation per row was fastest up to a few
/// hundred classes (measured on lavapipe, 2 cores, 65536 x 10: 3.4 ms against 16.6 ms for
/// a subgroup per row).
const THREAD_PER_ROW_MAX_COLS_CPU: usize = 256;
/// Rows wider than this use a whole workgroup on a GPU: a single subgroup would loop too
/// long while most of the device idles.
const SUBGROUP_PER_ROW_MAX_COLS_GPU: usize = 4096;
/// The same bound on a CPU adapter, for precision. Its subgroup is one SIMD slice (8 lanes
/// on lavapipe), so each lane sums an eighth of the row in one f32 chain, and the error
/// grows with the chain: at 256000 columns the f32 logsumexp was 2.9e-5 off the f64
/// reference on lavapipe (1.6e-6 relative) against 2.3e-6 for a workgroup per row. The
/// linear cross-entropy's `dH` = sum over V of (p - y) W amplifies that where its terms
/// cancel: with a sum reduction at 1024 x 48 x 256000, 677 of 49152 entries were past the
/// test tolerance. Past this bound the workgroup costs 10 to 25% on lavapipe (64 x 256000
/// softmax: 45 ms against 41; 512 x 65536: 87 against 69; a wall-clock loop of encode and
/// submit, median of 6, not the harness); up to it the subgroup's error stays near the
/// workgroup's (4.6e-6 against 1.4e-6 at 32000).
const SUBGROUP_PER_ROW_MAX_COLS_CPU: usize = 32_768;

/// The widest f32 row a subgroup per row keeps in its lanes' registers on a device of
/// `caps` ([`CACHE_WORDS`] per lane): wider rows go to a workgroup per row on a GPU, whose
/// workgroup the planner sizes to hold them, so that they too are read once.
fn subgroup_cached_cols(caps: &DeviceCaps) -> usize {
    let lanes = caps.subgroup_min_size.clamp(1, Strategy::SubgroupPerRow.workgroup_size());
    (lanes * CACHE_WORDS) as usize
}

/// Along a strided class axis, rows at least this many to a run of neighbours go to
/// [`Strategy::ThreadPerRow`] whatever their width: neighbouring invocations then read
/// neighbouring elements at every step (the loads coalesce, as PyTorch's kernel for an
/// inner class axis does), where lanes sharing one row would each read `inner` elements
/// apart.
const STRIDED_THREAD_PER_ROW_MIN_INNER: usize = 16;

/// The strategy this crate picks for a shape on a device, from measurements (the
/// bounds above, and the README's table of strategies), among those the device can run
/// for that shape.
#[must_use]
pub(crate) fn choose_strategy(caps: &DeviceCaps, shape: Shape) -> Strategy {
    let thread_max = if caps.is_cpu { THREAD_PER_ROW_MAX_COLS_CPU } else { THREAD_PER_ROW_MAX_COLS_GPU };
    let side_by_side = shape.inner >= STRIDED_THREAD_PER_ROW_MIN_INNER;
    let preferred = if shape.cols <= thread_max || side_by_side {
        Strategy::ThreadPerRow
    } else if caps.subgroups
        && if caps.is_cpu {
            shape.cols <= SUBGROUP_PER_ROW_MAX_COLS_CPU
        } else {
            shape.cols <= SUBGROUP_PER_ROW_MAX_COLS_GPU.min(subgroup_cached_cols(caps))
        }
    {
        // On a CPU adapter the subgroup path beat the shared-memory tree at every width
        // measured on lavapipe (1,024 to 256,000 columns, by 10 to 30%); past
        // SUBGROUP_PER_ROW_MAX_COLS_CPU the workgroup takes over for precision.
        Strategy::SubgroupPerRow
    } else {
        Strategy::WorkgroupPerRow
    };
    // Fall back towards more invocations per row, which need fewer loop iterations each.
    [preferred, Strategy::SubgroupPerRow, Strategy::WorkgroupPerRow]
        .into_iter()
        .find(|&s| unavailable_reason(caps, shape, s).is_none())
        .unwrap_or(Strategy::WorkgroupPerRow)
}

/// Columns a lane of [`Strategy::SubgroupPerRow`] aims to take: a narrow row gets as many
/// lanes as keep about this many columns each, so that neighbouring lanes read
/// neighbouring addresses and several rows share a subgroup.
const SUBGROUP_COLUMNS_PER_LANE: usize = 8;

/// Invocations that share one row of `cols` in `strategy`: for subgroups a power of two,
/// at most the smallest subgroup size the adapter may use (the WGSL's `LANES_PER_ROW`).
pub(crate) fn lanes_per_row(caps: &DeviceCaps, strategy: Strategy, cols: usize) -> u32 {
    match strategy {
        Strategy::ThreadPerRow => 1,
        Strategy::SubgroupPerRow => {
            let wanted = u32::try_from(cols.div_ceil(SUBGROUP_COLUMNS_PER_LANE).max(1).next_power_of_two())
                .unwrap_or(u32::MAX);
            let smallest = caps.subgroup_min_size.clamp(1, Strategy::SubgroupPerRow.workgroup_size());
            wanted.min(smallest)
        }
        Strategy::WorkgroupPerRow | Strategy::SplitRow => strategy.workgroup_size(),
    }
}

/// The SIMD width of llvmpipe (lavapipe, llvmpipe GL): its 256-bit vectors hold 8 lanes
/// of 32 bits, and it runs a workgroup as slices of that many invocations.
const CPU_SIMD_LANES: u32 = 8;

/// How many neighbouring invocations of a workgroup walk one contiguous run of a row (the
/// WGSL's `WALK_WIDTH`): the whole workgroup on a GPU, whose invocations read in lockstep
/// (the plain interleave); on a CPU adapter, which runs a workgroup slice by slice, one
/// SIMD slice, so that each slice streams through its own run. 64x262144 softmax on
/// lavapipe: 161 ms interleaved, see BENCHMARKS.md for the run.
pub(crate) fn walk_width(caps: &DeviceCaps, lanes: u32) -> u32 {
    if caps.is_cpu { CPU_SIMD_LANES.min(lanes) } else { lanes }
}

/// The workgroup of a workgroup per row (or a split row's segment) for rows of `cols`
/// elements, `elements_per_word` to a 32-bit word, of an op whose share takes
/// `share_bytes`, on a device of `caps`: merged through subgroups where the device has
/// them; and, for kernels that keep rows in registers (`keeps_rows`), the fewest
/// invocations (of [`GroupShape::LANES`]) whose registers hold the row, so that it is read
/// once, within the device's invocation and workgroup-memory limits. Otherwise (streaming
/// rows, or rows wider than the widest workgroup holds) [`GroupShape::DEFAULT`]'s size.
pub(crate) fn group_shape(
    caps: &DeviceCaps,
    strategy: Strategy,
    cols: usize,
    elements_per_word: u32,
    share_bytes: u64,
    keeps_rows: bool,
) -> GroupShape {
    let subgroup_tree = caps.subgroups && caps.subgroup_min_size >= SUBGROUP_TREE_MIN_LANES;
    let default = GroupShape { subgroup_tree, ..GroupShape::DEFAULT };
    if !keeps_rows || strategy != Strategy::WorkgroupPerRow {
        return default;
    }
    let allowed = |group: &GroupShape| {
        group.lanes <= caps.max_workgroup_lanes
            && group.workgroup_bytes(share_bytes) <= u64::from(caps.max_workgroup_storage_bytes)
    };
    GroupShape::LANES
        .into_iter()
        .map(|lanes| GroupShape { lanes, subgroup_tree })
        .filter(allowed)
        .find(|group| {
            let width = walk_width(caps, group.lanes);
            row_read_once(cols, elements_per_word, group.lanes, width)
        })
        .unwrap_or(default)
}

/// Whether `lanes` invocations sharing a row of `cols` elements (`elements_per_word` to a
/// word) in blocks of `width` keep all of it in registers, with 128-bit accesses: the
/// WGSL's `row_cached` for the cached module.
pub(crate) const fn row_read_once(cols: usize, elements_per_word: u32, lanes: u32, width: u32) -> bool {
    let packet = 4 * elements_per_word as u64;
    let cache_packets = crate::kernels::cache_packets(VectorWidth::Vec4) as u64;
    share_packets(cols as u64, packet, lanes as u64, width as u64) <= cache_packets
}

/// Rows one workgroup of `strategy` handles on this device for rows of `cols` (the
/// subgroup kernel's `ROWS_PER_GROUP`: its workgroup over the lanes per row; a subgroup
/// larger than the smallest takes several of the workgroup's rows at once).
#[must_use]
pub(crate) fn rows_per_group(caps: &DeviceCaps, strategy: Strategy, cols: usize) -> u32 {
    match strategy {
        Strategy::ThreadPerRow => Strategy::ThreadPerRow.workgroup_size(),
        Strategy::WorkgroupPerRow | Strategy::SplitRow => 1,
        Strategy::SubgroupPerRow => {
            (Strategy::SubgroupPerRow.workgroup_size() / lanes_per_row(caps, strategy, cols)).max(1)
        }
    }
}

/// The most loop iterations one invocation of `strategy` runs for rows of `cols`: a
/// statistics pass and a write pass over its share of the row, plus the fixed loops.
#[must_use]
pub(crate) fn loop_iterations(caps: &DeviceCaps, strategy: Strategy, cols: usize) -> u64 {
    let cols = u64::try_from(cols).unwrap_or(u64::MAX);
    match strategy {
        // Two walks over the row (the second when it is not cached), and a few more: a
        // 1 x 32767 row walked twice in 32-bit words stopped 2 elements short of its end.
        Strategy::ThreadPerRow => cols.saturating_mul(2) + 8,
        Strategy::WorkgroupPerRow => {
            // Each tree reduction adds log2(256) = 8 iterations; the cross-entropy has two.
            cols.div_ceil(u64::from(Strategy::WorkgroupPerRow.workgroup_size())).saturating_mul(2) + 16
        }
        Strategy::SplitRow => {
            // A segment's share and a tree; then a share of the row's segment statistics,
            // a tree, and the segment's share again.
            // A segment is at most what a cached module holds: 256 lanes of a scalar
            // module's cache packets each (see `split_segments_fewest`).
            let segment = u64::from(crate::kernels::cache_packets(VectorWidth::Scalar)) + 8;
            segment + cols.div_ceil(SPLIT_SEGMENT_COLS as u64).div_ceil(256) + 8
        }
        Strategy::SubgroupPerRow => {
            // The workgroup's rows go round its subgroups once; each lane streams its
            // share twice, and the butterfly adds log2(lanes) steps.
            let lanes = u64::from(lanes_per_row(caps, strategy, usize::try_from(cols).unwrap_or(usize::MAX)));
            cols.div_ceil(lanes).saturating_mul(2) + 8
        }
    }
}

/// Whether a softmax of `shape` should split its rows across workgroups: on a GPU, when
/// the rows are too few to occupy it and each is many segments wide. (On a CPU adapter
/// the few rows already occupy its cores.)
#[must_use]
pub(crate) fn prefers_split_rows(caps: &DeviceCaps, shape: Shape) -> bool {
    !caps.is_cpu && shape.rows < 256 && split_segments_most(shape.cols) >= 8
}

/// Why `strategy` cannot run rows of `shape` on this device, or `None` if it can.
fn unavailable_reason(caps: &DeviceCaps, shape: Shape, strategy: Strategy) -> Option<&'static str> {
    if strategy == Strategy::SubgroupPerRow && !caps.subgroups {
        return Some("the device was created without Features::SUBGROUP");
    }
    match caps.max_loop_iterations {
        Some(limit) if loop_iterations(caps, strategy, shape.cols) >= limit => Some(
            "rows this wide need more loop iterations per invocation than this driver runs \
             (llvmpipe stops loops silently after 65535); use a strategy with more \
             invocations per row",
        ),
        _ => None,
    }
}

/// Plans the dispatches: the forced strategy or the chosen one, rows split into chunks
/// whose arrays fit one storage binding each from an aligned offset (`row_bytes` holds the
/// bytes per row of each array bound per chunk), and a grid per chunk within the device's
/// limits.
///
/// # Errors
///
/// [`Error::StrategyUnavailable`] when `forced` is [`Strategy::SubgroupPerRow`] on a
/// device without subgroups, or a strategy whose loops would exceed the driver's
/// loop-iteration limit for rows this wide; [`Error::LimitExceeded`] when a row is too
/// wide for one storage binding, or a grid cannot fit even when spread over two dimensions.
pub(crate) fn plan(
    caps: &DeviceCaps,
    shape: Shape,
    forced: Option<Strategy>,
    row_bytes: &[u64],
) -> Result<Plan> {
    shape.len()?;
    shape.check_layout()?;
    let strategy = forced.unwrap_or_else(|| choose_strategy(caps, shape));
    if let Some(reason) = unavailable_reason(caps, shape, strategy) {
        return Err(Error::StrategyUnavailable { strategy, reason });
    }
    let rows_per_group = rows_per_group(caps, strategy, shape.cols);
    let lanes_per_row = lanes_per_row(caps, strategy, shape.cols);
    let mut chunks = Vec::new();
    if !shape.is_empty() {
        // A chunk is also at most one grid: max_dim x max_dim workgroups.
        let max_dim = u64::from(caps.max_workgroups_per_dimension.max(1));
        // Workgroups a row takes: a fraction of one, or a split row's segments.
        let segments = if strategy == Strategy::SplitRow { split_segments(shape) as u64 } else { 1 };
        let mut grid_rows = max_dim * max_dim * u64::from(rows_per_group) / segments;
        if !shape.is_row_major() {
            // A strided row's places (its classes padded to whole packets, of at most 8
            // elements) are numbered in u32 across the chunk.
            grid_rows = grid_rows.min(u64::from(u32::MAX) / (shape.cols as u64 + 8));
        }
        let rows_per_chunk = rows_per_chunk(shape.rows, shape.inner, row_bytes, caps, grid_rows)?;
        for first_row in (0..shape.rows).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(shape.rows - first_row);
            let groups = u64::try_from(rows.div_ceil(rows_per_group as usize)).unwrap_or(u64::MAX) * segments;
            let grid = spread_grid(groups, caps.max_workgroups_per_dimension)?;
            chunks.push(Chunk { first_row, rows, grid });
        }
    }
    let group = GroupShape::DEFAULT;
    Ok(Plan {
        strategy,
        group,
        rows_per_group,
        lanes_per_row,
        walk_width: walk_width(caps, group.lanes),
        segments: if strategy == Strategy::SplitRow { split_segments(shape) } else { 1 },
        paired: false,
        chunks,
    })
}

/// Gives each invocation of a thread-per-row `plan` two neighbouring rows (a 16-bit
/// strided class axis of even `inner`: see [`crate::kernels::KernelSpec::pairs_rows`]):
/// twice the rows per workgroup, half the workgroups. Every chunk holds whole runs of
/// `inner` rows, so an even number, and starts at an even row.
///
/// # Errors
///
/// None in practice: a grid of half the workgroups fits wherever the whole one did.
pub(crate) fn pair_rows(plan: &mut Plan, caps: &DeviceCaps) -> Result<()> {
    plan.paired = true;
    plan.rows_per_group *= 2;
    for chunk in &mut plan.chunks {
        let groups = u64::try_from(chunk.rows.div_ceil(plan.rows_per_group as usize)).unwrap_or(u64::MAX);
        chunk.grid = spread_grid(groups, caps.max_workgroups_per_dimension)?;
    }
    Ok(())
}

/// The most rows one chunk may hold: at most `max_rows` (what one grid covers), whole runs
/// of `run` rows (a strided class axis's rows lie in runs of `inner`, a contiguous region
/// only together), every array's chunk fits one storage binding, and every chunk starts at
/// an offset that is a multiple of the storage offset alignment in every array. All of
/// `rows` when they fit at once.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when even the smallest aligned run of rows of some array is
/// larger than one binding, or than one grid.
pub(crate) fn rows_per_chunk(
    rows: usize,
    run: usize,
    row_bytes: &[u64],
    caps: &DeviceCaps,
    max_rows: u64,
) -> Result<usize> {
    let rows_u64 = u64::try_from(rows).unwrap_or(u64::MAX);
    let max_binding = caps.max_storage_binding_bytes;
    if rows_u64 <= max_rows && row_bytes.iter().all(|&b| b.saturating_mul(rows_u64) <= max_binding) {
        return Ok(rows.max(1));
    }
    let alignment = u64::from(caps.storage_offset_alignment.max(4));
    // Chunk starts are multiples of the chunk size, so the size itself must keep each
    // array's offset aligned: a multiple of alignment / gcd(bytes per row, alignment).
    let run = u64::try_from(run.max(1)).unwrap_or(u64::MAX);
    let step =
        row_bytes.iter().filter(|&&b| b > 0).fold(run, |acc, &b| lcm(acc, alignment / gcd(b, alignment)));
    let fit = row_bytes.iter().filter(|&&b| b > 0).map(|&b| max_binding / b).min().unwrap_or(rows_u64);
    if fit < step {
        let widest = row_bytes.iter().copied().max().unwrap_or(0);
        return Err(Error::LimitExceeded {
            limit: "max_storage_buffer_binding_size",
            required: widest.saturating_mul(step),
            available: max_binding,
        });
    }
    let chunk = fit.min(max_rows) / step * step;
    if chunk == 0 {
        return Err(Error::LimitExceeded {
            limit: "max_compute_workgroups_per_dimension",
            required: step,
            available: max_rows,
        });
    }
    Ok(usize::try_from(chunk.min(rows_u64)).unwrap_or(rows).max(1))
}

const fn gcd(a: u64, b: u64) -> u64 {
    let (mut a, mut b) = (a, b);
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Lays `groups` workgroups out as an `[x, y]` grid with both sides within
/// `max_per_dimension`: a row of at most `max_per_dimension`, then as many rows as needed.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when even a square grid of the largest side is too small.
pub(crate) fn spread_grid(groups: u64, max_per_dimension: u32) -> Result<[u32; 2]> {
    let max = u64::from(max_per_dimension.max(1));
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x).max(1);
    if y > max {
        return Err(Error::LimitExceeded {
            limit: "max_compute_workgroups_per_dimension",
            required: groups,
            available: max * max,
        });
    }
    // Both fit in u32: each is at most `max`, which came from a u32.
    Ok([u32::try_from(x).unwrap_or(u32::MAX), u32::try_from(y).unwrap_or(u32::MAX)])
}

mod profile;
mod reads;

pub use profile::{DeviceProfile, ProfileFeatures, ProfileLimits};
#[cfg(test)]
pub(crate) use reads::run_packets;
pub(crate) use reads::{keeps_share, reads_per_element, row_packets_most, share_packets};

#[cfg(test)]
mod tests;
