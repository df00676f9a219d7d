//! Choosing a kernel strategy and a dispatch grid for a shape, under a device's limits.
//!
//! Plain Rust with no GPU, so it can be unit- and property-tested anywhere.

use crate::error::{Error, Result};
use crate::shape::Shape;

/// How the rows of a matrix are spread over GPU invocations. Every strategy computes the
/// same function; they differ in speed by shape and adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// One invocation per row: best for narrow rows (a few to a few dozen classes).
    ThreadPerRow,
    /// One subgroup per row, reduced with subgroup operations. Needs
    /// `wgpu::Features::SUBGROUP`.
    SubgroupPerRow,
    /// One workgroup of 256 invocations per row, reduced in shared memory. Runs on every
    /// adapter; best for wide rows.
    WorkgroupPerRow,
    /// Each row split across workgroups of 256 invocations, one per segment of
    /// [`SPLIT_SEGMENT_COLS`] columns: a statistics pass, then a write pass. For a few rows
    /// so wide that one workgroup per row would leave a GPU idle. Softmax and log-softmax
    /// only; not in [`Strategy::ALL`].
    SplitRow,
}

/// Columns per segment of [`Strategy::SplitRow`] (as `SEGMENT_COLS` in the WGSL).
pub const SPLIT_SEGMENT_COLS: usize = 4096;

/// How many segments [`Strategy::SplitRow`] cuts a row of `cols` into.
#[must_use]
pub const fn split_segments(cols: usize) -> usize {
    cols.div_ceil(SPLIT_SEGMENT_COLS)
}

impl Strategy {
    /// Every strategy that every op has, in a fixed order ([`Strategy::SplitRow`] is the
    /// softmax's alone).
    pub const ALL: [Self; 3] = [Self::ThreadPerRow, Self::SubgroupPerRow, Self::WorkgroupPerRow];

    /// Invocations in one workgroup of this strategy's kernel (fixed in the WGSL).
    #[must_use]
    pub const fn workgroup_size(self) -> u32 {
        match self {
            Self::ThreadPerRow | Self::SubgroupPerRow => 64,
            Self::WorkgroupPerRow | Self::SplitRow => 256,
        }
    }
}

/// What the planner needs to know about a device: a plain-data copy of its features and
/// limits, so that planning needs no GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Whether the device was created with `Features::SUBGROUP`.
    pub subgroups: bool,
    /// Smallest subgroup size the adapter may use.
    pub subgroup_min_size: u32,
    /// Whether the adapter is a CPU (a software rasteriser such as lavapipe or llvmpipe),
    /// where per-invocation loops are cheap and barriers are dear.
    pub is_cpu: bool,
    /// `Limits::max_compute_workgroups_per_dimension`.
    pub max_workgroups_per_dimension: u32,
    /// `Limits::max_storage_buffer_binding_size`.
    pub max_storage_binding_bytes: u64,
    /// `Limits::max_buffer_size`.
    pub max_buffer_bytes: u64,
    /// `Limits::min_storage_buffer_offset_alignment`: where a split may bind from.
    pub storage_offset_alignment: u32,
    /// Loop iterations one invocation may run in total before the driver silently stops
    /// its loops, if the driver has such a limit (see [`LLVMPIPE_LOOP_ITERATIONS`]).
    pub max_loop_iterations: Option<u64>,
}

/// llvmpipe (Mesa's software rasteriser behind both lavapipe on Vulkan and llvmpipe on GL)
/// caps the loop iterations of one shader invocation, all loops together, at 65535, and
/// past that leaves its loops early without any error: a thread-per-row softmax of
/// 50,000 columns wrote only the first 15,534 outputs of each row (50,000 + 15,534 =
/// 65,534 iterations). The planner keeps every kernel under it.
pub const LLVMPIPE_LOOP_ITERATIONS: u64 = 65_535;

impl DeviceCaps {
    /// The loop-iteration limit of the driver behind `info`, where it has one.
    #[must_use]
    pub fn loop_limit_of(info: &wgpu::AdapterInfo) -> Option<u64> {
        let is_llvmpipe = |text: &str| text.to_lowercase().contains("llvmpipe");
        (is_llvmpipe(&info.name) || is_llvmpipe(&info.driver)).then_some(LLVMPIPE_LOOP_ITERATIONS)
    }
}

/// A strategy, and the dispatches that run it over a shape: one per chunk of rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The strategy.
    pub strategy: Strategy,
    /// Rows each workgroup handles.
    pub rows_per_group: u32,
    /// The dispatches, in row order; empty for an empty shape. More than one when the
    /// matrix is larger than one storage binding.
    pub chunks: Vec<Chunk>,
}

/// One dispatch of a plan: a run of rows whose arrays are bound from an aligned offset,
/// each within one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The first row.
    pub first_row: usize,
    /// How many rows.
    pub rows: usize,
    /// Workgroups along x and y; `x * y` covers every row, the surplus returns at once.
    pub grid: [u32; 2],
}

/// Rows at most this wide go to [`Strategy::ThreadPerRow`] on a discrete or integrated
/// GPU, where a lone invocation walking a long row leaves memory loads uncoalesced.
const THREAD_PER_ROW_MAX_COLS_GPU: usize = 32;
/// The same bound on a CPU adapter, where one invocation per row was fastest up to a few
/// hundred classes (DESIGN.md's lavapipe table: 3.4 ms against 16.6 ms at 10 classes).
const THREAD_PER_ROW_MAX_COLS_CPU: usize = 256;
/// Rows wider than this use a whole workgroup on a GPU: a single subgroup would loop too
/// long while most of the device idles.
const SUBGROUP_PER_ROW_MAX_COLS_GPU: usize = 4096;

/// The strategy this crate picks for a shape on a device, from measurements (see
/// DESIGN.md), among those the device can run for that shape.
#[must_use]
pub fn choose_strategy(caps: &DeviceCaps, shape: Shape) -> Strategy {
    let thread_max = if caps.is_cpu { THREAD_PER_ROW_MAX_COLS_CPU } else { THREAD_PER_ROW_MAX_COLS_GPU };
    let preferred = if shape.cols <= thread_max {
        Strategy::ThreadPerRow
    } else if caps.subgroups && (caps.is_cpu || shape.cols <= SUBGROUP_PER_ROW_MAX_COLS_GPU) {
        // On a CPU adapter the subgroup path beat the shared-memory tree at every width
        // measured (35 ms against 186 ms at 64x131072 on lavapipe).
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

/// Rows one workgroup of `strategy` handles on this device.
#[must_use]
pub fn rows_per_group(caps: &DeviceCaps, strategy: Strategy) -> u32 {
    match strategy {
        Strategy::ThreadPerRow => Strategy::ThreadPerRow.workgroup_size(),
        Strategy::WorkgroupPerRow | Strategy::SplitRow => 1,
        // One row per subgroup of the smallest size the adapter may use. A larger
        // subgroup just takes several of the workgroup's rows in turn.
        Strategy::SubgroupPerRow => {
            (Strategy::SubgroupPerRow.workgroup_size() / caps.subgroup_min_size.max(1)).max(1)
        }
    }
}

/// The most loop iterations one invocation of `strategy` runs for rows of `cols`: a
/// statistics pass and a write pass over its share of the row, plus the fixed loops.
#[must_use]
pub fn loop_iterations(caps: &DeviceCaps, strategy: Strategy, cols: usize) -> u64 {
    let cols = u64::try_from(cols).unwrap_or(u64::MAX);
    match strategy {
        Strategy::ThreadPerRow => cols.saturating_mul(2),
        Strategy::WorkgroupPerRow => {
            // Each tree reduction adds log2(256) = 8 iterations; the cross-entropy has two.
            cols.div_ceil(u64::from(Strategy::WorkgroupPerRow.workgroup_size())).saturating_mul(2) + 16
        }
        Strategy::SplitRow => {
            // A segment's share and a tree; then a share of the row's segment statistics,
            // a tree, and the segment's share again.
            let segment = (SPLIT_SEGMENT_COLS as u64).div_ceil(256) + 8;
            segment + cols.div_ceil(SPLIT_SEGMENT_COLS as u64).div_ceil(256) + 8
        }
        Strategy::SubgroupPerRow => {
            let group = Strategy::SubgroupPerRow.workgroup_size();
            let lanes = caps.subgroup_min_size.clamp(1, group);
            let subgroups = group / lanes;
            let rows_each = u64::from(rows_per_group(caps, strategy).div_ceil(subgroups));
            rows_each.saturating_mul(cols.div_ceil(u64::from(lanes)).saturating_mul(2) + 1)
        }
    }
}

/// Whether a softmax of `shape` should split its rows across workgroups: on a GPU, when
/// the rows are too few to occupy it and each is many segments wide. (On a CPU adapter
/// the few rows already occupy its cores.)
#[must_use]
pub fn prefers_split_rows(caps: &DeviceCaps, shape: Shape) -> bool {
    !caps.is_cpu && shape.rows < 256 && split_segments(shape.cols) >= 8
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
pub fn plan(caps: &DeviceCaps, shape: Shape, forced: Option<Strategy>, row_bytes: &[u64]) -> Result<Plan> {
    shape.len()?;
    let strategy = forced.unwrap_or_else(|| choose_strategy(caps, shape));
    if let Some(reason) = unavailable_reason(caps, shape, strategy) {
        return Err(Error::StrategyUnavailable { strategy, reason });
    }
    let rows_per_group = rows_per_group(caps, strategy);
    let mut chunks = Vec::new();
    if !shape.is_empty() {
        // A chunk is also at most one grid: max_dim x max_dim workgroups.
        let max_dim = u64::from(caps.max_workgroups_per_dimension.max(1));
        // Workgroups a row takes: a fraction of one, or a split row's segments.
        let segments = if strategy == Strategy::SplitRow { split_segments(shape.cols) as u64 } else { 1 };
        let grid_rows = max_dim * max_dim * u64::from(rows_per_group) / segments;
        let rows_per_chunk = rows_per_chunk(shape.rows, row_bytes, caps, grid_rows)?;
        for first_row in (0..shape.rows).step_by(rows_per_chunk) {
            let rows = rows_per_chunk.min(shape.rows - first_row);
            let groups = u64::try_from(rows.div_ceil(rows_per_group as usize)).unwrap_or(u64::MAX) * segments;
            let grid = spread_grid(groups, caps.max_workgroups_per_dimension)?;
            chunks.push(Chunk { first_row, rows, grid });
        }
    }
    Ok(Plan { strategy, rows_per_group, chunks })
}

/// The most rows one chunk may hold: at most `max_rows` (what one grid covers), every
/// array's chunk fits one storage binding, and every chunk starts at an offset that is a
/// multiple of the storage offset alignment in every array. All of `rows` when they fit
/// at once.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when even the smallest aligned run of rows of some array is
/// larger than one binding, or than one grid.
pub fn rows_per_chunk(rows: usize, row_bytes: &[u64], caps: &DeviceCaps, max_rows: u64) -> Result<usize> {
    let rows_u64 = u64::try_from(rows).unwrap_or(u64::MAX);
    let max_binding = caps.max_storage_binding_bytes;
    if rows_u64 <= max_rows && row_bytes.iter().all(|&b| b.saturating_mul(rows_u64) <= max_binding) {
        return Ok(rows.max(1));
    }
    let alignment = u64::from(caps.storage_offset_alignment.max(4));
    // Chunk starts are multiples of the chunk size, so the size itself must keep each
    // array's offset aligned: a multiple of alignment / gcd(bytes per row, alignment).
    let step =
        row_bytes.iter().filter(|&&b| b > 0).fold(1u64, |acc, &b| lcm(acc, alignment / gcd(b, alignment)));
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

/// Checks that a matrix of `bytes` fits in one storage binding and one buffer.
///
/// # Errors
///
/// [`Error::LimitExceeded`] naming the limit that is too small.
pub fn check_binding_fits(caps: &DeviceCaps, bytes: u64) -> Result<()> {
    if bytes > caps.max_buffer_bytes {
        return Err(Error::LimitExceeded {
            limit: "max_buffer_size",
            required: bytes,
            available: caps.max_buffer_bytes,
        });
    }
    if bytes > caps.max_storage_binding_bytes {
        return Err(Error::LimitExceeded {
            limit: "max_storage_buffer_binding_size",
            required: bytes,
            available: caps.max_storage_binding_bytes,
        });
    }
    Ok(())
}

/// Lays `groups` workgroups out as an `[x, y]` grid with both sides within
/// `max_per_dimension`: a row of at most `max_per_dimension`, then as many rows as needed.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when even a square grid of the largest side is too small.
pub fn spread_grid(groups: u64, max_per_dimension: u32) -> Result<[u32; 2]> {
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

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;

    fn gpu_caps() -> DeviceCaps {
        DeviceCaps {
            subgroups: true,
            subgroup_min_size: 32,
            is_cpu: false,
            max_workgroups_per_dimension: 65535,
            max_storage_binding_bytes: 128 << 20,
            max_buffer_bytes: 256 << 20,
            storage_offset_alignment: 256,
            max_loop_iterations: None,
        }
    }

    fn lavapipe_caps() -> DeviceCaps {
        DeviceCaps {
            subgroup_min_size: 8,
            is_cpu: true,
            max_loop_iterations: Some(LLVMPIPE_LOOP_ITERATIONS),
            ..gpu_caps()
        }
    }

    #[test]
    fn the_loop_limit_refuses_long_thread_rows_and_the_choice_avoids_them() {
        let caps = DeviceCaps { subgroups: false, ..lavapipe_caps() };
        assert!(plan(&caps, Shape::new(2, 32_767), Some(Strategy::ThreadPerRow), &[4 * 32_767]).is_ok());
        let err =
            plan(&caps, Shape::new(2, 32_768), Some(Strategy::ThreadPerRow), &[4 * 32_768]).unwrap_err();
        assert!(matches!(err, Error::StrategyUnavailable { strategy: Strategy::ThreadPerRow, .. }));
        assert_eq!(choose_strategy(&caps, Shape::new(2, 200)), Strategy::ThreadPerRow);
        assert_eq!(choose_strategy(&caps, Shape::new(2, 50_000)), Strategy::WorkgroupPerRow);
        // 8 lanes need 2 * 32768 + 1 iterations at 262144 columns: too many.
        let sg = lavapipe_caps();
        assert_eq!(choose_strategy(&sg, Shape::new(8, 131_072)), Strategy::SubgroupPerRow);
        assert_eq!(choose_strategy(&sg, Shape::new(8, 262_144)), Strategy::WorkgroupPerRow);
    }

    #[test]
    fn narrow_rows_get_a_thread_each() {
        assert_eq!(choose_strategy(&gpu_caps(), Shape::new(65536, 10)), Strategy::ThreadPerRow);
    }

    #[test]
    fn middling_rows_get_a_subgroup_when_there_are_subgroups() {
        let shape = Shape::new(4096, 1000);
        assert_eq!(choose_strategy(&gpu_caps(), shape), Strategy::SubgroupPerRow);
        let no_subgroups = DeviceCaps { subgroups: false, ..gpu_caps() };
        assert_eq!(choose_strategy(&no_subgroups, shape), Strategy::WorkgroupPerRow);
    }

    #[test]
    fn wide_rows_get_a_workgroup_on_a_gpu() {
        assert_eq!(choose_strategy(&gpu_caps(), Shape::new(64, 131_072)), Strategy::WorkgroupPerRow);
    }

    #[test]
    fn forcing_subgroups_without_them_is_a_typed_error() {
        let caps = DeviceCaps { subgroups: false, ..gpu_caps() };
        let err = plan(&caps, Shape::new(4, 4), Some(Strategy::SubgroupPerRow), &[16]).unwrap_err();
        assert!(matches!(err, Error::StrategyUnavailable { strategy: Strategy::SubgroupPerRow, .. }));
    }

    #[test]
    fn subgroup_rows_per_group_follow_the_smallest_subgroup() {
        let p = plan(&lavapipe_caps(), Shape::new(100, 100), Some(Strategy::SubgroupPerRow), &[400]).unwrap();
        assert_eq!(p.rows_per_group, 8);
        assert_eq!(p.chunks, vec![Chunk { first_row: 0, rows: 100, grid: [13, 1] }]);
        let wide = DeviceCaps { subgroup_min_size: 128, ..gpu_caps() };
        let p = plan(&wide, Shape::new(100, 100), Some(Strategy::SubgroupPerRow), &[400]).unwrap();
        assert_eq!(p.rows_per_group, 1);
    }

    #[test]
    fn grids_past_the_dimension_limit_spread_over_y() {
        let p = plan(&gpu_caps(), Shape::new(70_000, 3), Some(Strategy::WorkgroupPerRow), &[12]).unwrap();
        assert_eq!(p.chunks[0].grid, [65535, 2]);
    }

    #[test]
    fn a_matrix_larger_than_a_binding_is_split_at_aligned_rows() {
        let caps = gpu_caps();
        // 1M rows of 64 floats: 256 MiB, two bindings of 128 MiB.
        let p = plan(&caps, Shape::new(1 << 20, 64), None, &[256, 256]).unwrap();
        assert_eq!(p.chunks.len(), 2);
        assert_eq!(p.chunks[1].first_row, 1 << 19);
        // 400 and 4 bytes a row with 256-byte alignment: chunks of a multiple of 64 rows
        // (a 4-byte array needs 64 rows to reach the next aligned offset).
        let small = DeviceCaps { max_storage_binding_bytes: 40_000, ..caps };
        let p = plan(&small, Shape::new(1000, 100), None, &[400, 4]).unwrap();
        assert_eq!(p.chunks.len(), 16);
        assert!(p.chunks.iter().all(|c| (c.first_row * 400) % 256 == 0 && (c.first_row * 4) % 256 == 0));
        assert!(p.chunks.iter().all(|c| c.rows * 400 <= 40_000));
        // And 10,000 bytes cannot hold 64 such rows: refused, not misaligned.
        let tiny = DeviceCaps { max_storage_binding_bytes: 10_000, ..caps };
        assert!(plan(&tiny, Shape::new(1000, 100), None, &[400, 4]).is_err());
    }

    #[test]
    fn split_rows_take_one_workgroup_per_segment_and_only_few_wide_rows_on_a_gpu() {
        let p = plan(&gpu_caps(), Shape::new(8, 262_144), Some(Strategy::SplitRow), &[4 * 262_144]).unwrap();
        assert_eq!(p.chunks[0].grid, [8 * 64, 1]);
        assert!(prefers_split_rows(&gpu_caps(), Shape::new(8, 262_144)));
        assert!(!prefers_split_rows(&gpu_caps(), Shape::new(4096, 262_144)));
        assert!(!prefers_split_rows(&gpu_caps(), Shape::new(8, 1000)));
        assert!(!prefers_split_rows(&lavapipe_caps(), Shape::new(8, 262_144)));
        // A split row needs few loop iterations, whatever the width.
        assert!(loop_iterations(&lavapipe_caps(), Strategy::SplitRow, 1 << 24) < LLVMPIPE_LOOP_ITERATIONS);
    }

    #[test]
    fn a_row_wider_than_a_binding_is_refused() {
        let small = DeviceCaps { max_storage_binding_bytes: 1000, ..gpu_caps() };
        let err = plan(&small, Shape::new(10, 300), None, &[1200]).unwrap_err();
        assert!(
            matches!(err, Error::LimitExceeded { limit: "max_storage_buffer_binding_size", .. }),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn grid_covers_every_group_within_limits(groups in 1u64..10_000_000_000, max in 1u32..70_000) {
            match spread_grid(groups, max) {
                Ok([x, y]) => {
                    prop_assert!(x >= 1 && y >= 1 && x <= max && y <= max);
                    prop_assert!(u64::from(x) * u64::from(y) >= groups);
                    // The surplus is less than one row of the grid.
                    prop_assert!(u64::from(x) * u64::from(y) - groups < u64::from(x));
                }
                Err(Error::LimitExceeded { .. }) => {
                    prop_assert!(groups > u64::from(max) * u64::from(max));
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }

        #[test]
        fn every_plan_covers_every_row_once_within_limits(
            rows in 1usize..5_000_000,
            cols in 1usize..5000,
            min_sg in prop::sample::select(vec![4u32, 8, 16, 32, 64, 128]),
            max_dim in 1u32..65536,
            max_binding in 16u64..(1 << 30),
            alignment in prop::sample::select(vec![4u32, 16, 32, 64, 256]),
            extra_per_row in prop::sample::select(vec![0u64, 4, 8]),
        ) {
            let caps = DeviceCaps {
                subgroup_min_size: min_sg,
                max_workgroups_per_dimension: max_dim,
                max_storage_binding_bytes: max_binding,
                storage_offset_alignment: alignment,
                ..gpu_caps()
            };
            let row_bytes = [4 * cols as u64, extra_per_row];
            for strategy in Strategy::ALL {
                match plan(&caps, Shape::new(rows, cols), Some(strategy), &row_bytes) {
                    Ok(p) => {
                        let mut next = 0;
                        for chunk in &p.chunks {
                            prop_assert_eq!(chunk.first_row, next);
                            next += chunk.rows;
                            let covered = u64::from(chunk.grid[0]) * u64::from(chunk.grid[1]) * u64::from(p.rows_per_group);
                            prop_assert!(covered >= chunk.rows as u64);
                            prop_assert!(chunk.grid[0] <= max_dim && chunk.grid[1] <= max_dim);
                            for &b in &row_bytes {
                                prop_assert!(b * chunk.rows as u64 <= max_binding || p.chunks.len() == 1 && b * rows as u64 <= max_binding);
                                prop_assert_eq!((b * chunk.first_row as u64) % u64::from(alignment), 0);
                            }
                        }
                        prop_assert_eq!(next, rows);
                    }
                    Err(Error::LimitExceeded { .. } | Error::StrategyUnavailable { .. }) => {}
                    Err(other) => prop_assert!(false, "unexpected error {}", other),
                }
            }
        }
    }
}
