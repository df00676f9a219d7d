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
}

impl Strategy {
    /// Every strategy, in a fixed order.
    pub const ALL: [Self; 3] = [Self::ThreadPerRow, Self::SubgroupPerRow, Self::WorkgroupPerRow];

    /// Invocations in one workgroup of this strategy's kernel (fixed in the WGSL).
    #[must_use]
    pub const fn workgroup_size(self) -> u32 {
        match self {
            Self::ThreadPerRow | Self::SubgroupPerRow => 64,
            Self::WorkgroupPerRow => 256,
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

/// A strategy and the grid that runs it over a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The strategy.
    pub strategy: Strategy,
    /// Rows each workgroup handles.
    pub rows_per_group: u32,
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
        Strategy::WorkgroupPerRow => 1,
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
        Strategy::SubgroupPerRow => {
            let group = Strategy::SubgroupPerRow.workgroup_size();
            let lanes = caps.subgroup_min_size.clamp(1, group);
            let subgroups = group / lanes;
            let rows_each = u64::from(rows_per_group(caps, strategy).div_ceil(subgroups));
            rows_each.saturating_mul(cols.div_ceil(u64::from(lanes)).saturating_mul(2) + 1)
        }
    }
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

/// Plans a dispatch: the forced strategy or the chosen one, and a grid within the
/// device's limits.
///
/// # Errors
///
/// [`Error::StrategyUnavailable`] when `forced` is [`Strategy::SubgroupPerRow`] on a
/// device without subgroups, or a strategy whose loops would exceed the driver's
/// loop-iteration limit for rows this wide; [`Error::LimitExceeded`] when the matrix is larger than one
/// storage binding or buffer, or the grid cannot fit even when spread over two dimensions.
pub fn plan(caps: &DeviceCaps, shape: Shape, forced: Option<Strategy>) -> Result<Plan> {
    check_binding_fits(caps, shape.byte_len()?)?;
    let strategy = forced.unwrap_or_else(|| choose_strategy(caps, shape));
    if let Some(reason) = unavailable_reason(caps, shape, strategy) {
        return Err(Error::StrategyUnavailable { strategy, reason });
    }
    let rows_per_group = rows_per_group(caps, strategy);
    let groups = u64::try_from(shape.rows.div_ceil(rows_per_group as usize)).unwrap_or(u64::MAX);
    let grid = spread_grid(groups, caps.max_workgroups_per_dimension)?;
    Ok(Plan { strategy, rows_per_group, grid })
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
        assert!(plan(&caps, Shape::new(2, 32_767), Some(Strategy::ThreadPerRow)).is_ok());
        let err = plan(&caps, Shape::new(2, 32_768), Some(Strategy::ThreadPerRow)).unwrap_err();
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
        let err = plan(&caps, Shape::new(4, 4), Some(Strategy::SubgroupPerRow)).unwrap_err();
        assert!(matches!(err, Error::StrategyUnavailable { strategy: Strategy::SubgroupPerRow, .. }));
    }

    #[test]
    fn subgroup_rows_per_group_follow_the_smallest_subgroup() {
        let p = plan(&lavapipe_caps(), Shape::new(100, 100), Some(Strategy::SubgroupPerRow)).unwrap();
        assert_eq!(p.rows_per_group, 8);
        assert_eq!(p.grid, [13, 1]);
        let wide = DeviceCaps { subgroup_min_size: 128, ..gpu_caps() };
        let p = plan(&wide, Shape::new(100, 100), Some(Strategy::SubgroupPerRow)).unwrap();
        assert_eq!(p.rows_per_group, 1);
    }

    #[test]
    fn grids_past_the_dimension_limit_spread_over_y() {
        let p = plan(&gpu_caps(), Shape::new(70_000, 3), Some(Strategy::WorkgroupPerRow)).unwrap();
        assert_eq!(p.grid, [65535, 2]);
    }

    #[test]
    fn a_matrix_larger_than_a_binding_is_refused() {
        let caps = gpu_caps();
        let err = plan(&caps, Shape::new(1 << 20, 64), None).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { limit: "max_storage_buffer_binding_size", .. }));
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
        fn every_plan_covers_every_row(rows in 1usize..5_000_000, cols in 1usize..5000, min_sg in prop::sample::select(vec![4u32, 8, 16, 32, 64, 128]), max_dim in 1u32..65536) {
            let caps = DeviceCaps {
                subgroup_min_size: min_sg,
                max_workgroups_per_dimension: max_dim,
                max_storage_binding_bytes: u64::MAX,
                max_buffer_bytes: u64::MAX,
                ..gpu_caps()
            };
            for strategy in Strategy::ALL {
                if let Ok(p) = plan(&caps, Shape::new(rows, cols), Some(strategy)) {
                    let covered = u64::from(p.grid[0]) * u64::from(p.grid[1]) * u64::from(p.rows_per_group);
                    prop_assert!(covered >= rows as u64);
                    prop_assert!(p.grid[0] <= max_dim && p.grid[1] <= max_dim);
                }
            }
        }
    }
}
