//! The planner's unit and property tests.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

use super::Strategy;
use super::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as _;

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
        max_storage_buffers_per_stage: 16,
        max_workgroup_storage_bytes: 32 << 10,
        max_workgroup_lanes: 1024,
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
    assert!(plan(&caps, Shape::new(2, 32_763), Some(Strategy::ThreadPerRow), &[4 * 32_763]).is_ok());
    let err = plan(&caps, Shape::new(2, 32_764), Some(Strategy::ThreadPerRow), &[4 * 32_764]).unwrap_err();
    assert!(matches!(err, Error::StrategyUnavailable { strategy: Strategy::ThreadPerRow, .. }));
    assert_eq!(choose_strategy(&caps, Shape::new(2, 200)), Strategy::ThreadPerRow);
    assert_eq!(choose_strategy(&caps, Shape::new(2, 50_000)), Strategy::WorkgroupPerRow);
    // 8 lanes need 2 * 32768 + 8 iterations at 262144 columns: too many.
    let sg = lavapipe_caps();
    assert!(plan(&sg, Shape::new(8, 262_144), Some(Strategy::SubgroupPerRow), &[4 * 262_144]).is_err());
    assert_eq!(choose_strategy(&sg, Shape::new(8, 262_144)), Strategy::WorkgroupPerRow);
}

#[test]
fn a_cpu_adapter_keeps_a_subgroup_per_row_to_rows_whose_lanes_sum_precisely() {
    // Each of a subgroup's 8 lanes sums an eighth of the row in one f32 chain: past
    // 32768 columns a workgroup per row takes over, though the subgroup could run them.
    let sg = lavapipe_caps();
    assert_eq!(choose_strategy(&sg, Shape::new(1024, 32_768)), Strategy::SubgroupPerRow);
    assert_eq!(choose_strategy(&sg, Shape::new(1024, 32_769)), Strategy::WorkgroupPerRow);
    assert_eq!(choose_strategy(&sg, Shape::new(64, 256_000)), Strategy::WorkgroupPerRow);
    assert!(plan(&sg, Shape::new(64, 256_000), Some(Strategy::SubgroupPerRow), &[4 * 256_000]).is_ok());
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
fn subgroup_lanes_follow_the_row_width_and_the_smallest_subgroup() {
    // 100 columns: 13 lanes' worth, 16 as a power of two, at most lavapipe's 8.
    let p = plan(&lavapipe_caps(), Shape::new(100, 100), Some(Strategy::SubgroupPerRow), &[400]).unwrap();
    assert_eq!((p.lanes_per_row, p.rows_per_group), (8, 8));
    assert_eq!(p.chunks, vec![Chunk { first_row: 0, rows: 100, grid: [13, 1] }]);
    // Narrow rows share a subgroup: 10 columns, 2 lanes each, 32 rows to a workgroup.
    let p = plan(&lavapipe_caps(), Shape::new(100, 10), Some(Strategy::SubgroupPerRow), &[40]).unwrap();
    assert_eq!((p.lanes_per_row, p.rows_per_group), (2, 32));
    assert_eq!(p.chunks[0].grid, [4, 1]);
    // A subgroup may be up to the workgroup wide; a wide row takes all of it.
    let wide = DeviceCaps { subgroup_min_size: 128, ..gpu_caps() };
    let p = plan(&wide, Shape::new(100, 100), Some(Strategy::SubgroupPerRow), &[400]).unwrap();
    assert_eq!((p.lanes_per_row, p.rows_per_group), (16, 4));
    let p = plan(&wide, Shape::new(100, 1000), Some(Strategy::SubgroupPerRow), &[4000]).unwrap();
    assert_eq!((p.lanes_per_row, p.rows_per_group), (64, 1));
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
fn a_strided_tensor_is_split_at_whole_runs_of_its_rows() {
    // (1000, 100, 12): 12,000 rows of 100 classes, 12 apart; 200,000-byte bindings. With
    // 256-byte alignment a 4-byte array needs runs of 64 rows, and runs of 12 make 192.
    let small = DeviceCaps { max_storage_binding_bytes: 200_000, ..gpu_caps() };
    let shape = Shape::with_inner(1000, 100, 12);
    let p = plan(&small, shape, None, &[400, 4]).unwrap();
    assert!(p.chunks.len() > 1);
    // Each chunk is whole (N, C, inner) slabs (a contiguous region) at aligned offsets.
    assert!(
        p.chunks
            .iter()
            .all(|c| c.first_row % 12 == 0 && (c.rows % 12 == 0 || c.first_row + c.rows == 12_000))
    );
    assert!(p.chunks.iter().all(|c| (c.first_row * 4) % 256 == 0 && c.rows * 400 <= 200_000));
    assert_eq!(p.chunks[0].rows, 384);
    assert_eq!(p.chunks.iter().map(|c| c.rows).sum::<usize>(), 12_000);
    // A hand-made shape whose rows are not whole runs is refused.
    let err = plan(&gpu_caps(), Shape { rows: 13, cols: 4, inner: 2 }, None, &[16]).unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { rows: 13, inner: 2 }), "{err}");
}

#[test]
fn strided_rows_side_by_side_get_a_thread_each() {
    // Wide rows along a strided axis: neighbouring invocations on neighbouring rows.
    assert_eq!(choose_strategy(&gpu_caps(), Shape::with_inner(8, 1000, 256)), Strategy::ThreadPerRow);
    // A short run of neighbours keeps the row-width choice.
    assert_eq!(choose_strategy(&gpu_caps(), Shape::with_inner(8, 1000, 2)), Strategy::SubgroupPerRow);
    // The loop limit still applies: a thread cannot walk 40,000 classes on llvmpipe.
    let caps = DeviceCaps { subgroups: false, ..lavapipe_caps() };
    assert_eq!(choose_strategy(&caps, Shape::with_inner(2, 40_000, 64)), Strategy::WorkgroupPerRow);
}

#[test]
fn split_rows_take_one_workgroup_per_segment_and_only_few_wide_rows_on_a_gpu() {
    let split = |rows: usize, cols: usize| {
        let p =
            plan(&gpu_caps(), Shape::new(rows, cols), Some(Strategy::SplitRow), &[4 * cols as u64]).unwrap();
        assert_eq!(p.segments, split_segments(Shape::new(rows, cols)), "{rows} x {cols}");
        assert_eq!(p.chunks[0].grid, [u32::try_from(rows * p.segments).unwrap(), 1], "{rows} x {cols}");
        p.segments
    };
    // One row of 262,144 columns (and up to 16 more for packets shared with the
    // neighbours) takes the most segments, of 4096 columns: 65.
    assert_eq!(split_segments_most(262_144), 65);
    assert_eq!(split(1, 262_144), 65);
    // Eight such rows fill the 512 workgroups aimed at with 64 segments.
    assert_eq!(split(8, 262_144), 64);
    // 64 rows would want 8, but a cached module holds at most 256 x 33 f32 of a segment
    // in 32-bit accesses (8448): 131,072 columns take 16 at least.
    assert_eq!(split_segments_fewest(131_072), 16);
    assert_eq!(split(64, 131_072), 16);
    // Segments never exceed what the row needs.
    assert_eq!(split(1, 5000), split_segments_most(5000));
    assert!(prefers_split_rows(&gpu_caps(), Shape::new(8, 262_144)));
    assert!(!prefers_split_rows(&gpu_caps(), Shape::new(4096, 262_144)));
    assert!(!prefers_split_rows(&gpu_caps(), Shape::new(8, 1000)));
    assert!(!prefers_split_rows(&lavapipe_caps(), Shape::new(8, 262_144)));
    // A split row needs few loop iterations, whatever the width.
    assert!(loop_iterations(&lavapipe_caps(), Strategy::SplitRow, 1 << 24) < LLVMPIPE_LOOP_ITERATIONS);
}

#[test]
fn a_cached_split_holds_every_segment_it_plans() {
    // Whatever the rows and columns, each planned segment fits a cached split module's
    // registers at every access width and storage type: the write pass reads it once.
    for rows in [1, 3, 8, 64, 255] {
        for cols in [4097, 32_768, 32_771, 65_536, 100_003, 128_256, 262_144, 1 << 20] {
            let shape = Shape::new(rows, cols);
            let p = plan(&gpu_caps(), shape, Some(Strategy::SplitRow), &[4 * cols as u64]).unwrap();
            assert!(p.segments >= split_segments_fewest(cols) && p.segments <= split_segments_most(cols));
            for dtype in crate::dtype::DType::ALL {
                for vector in VectorWidth::ALL {
                    let spec = crate::kernels::KernelSpec {
                        op: crate::kernels::OpKernel::Softmax,
                        strategy: Strategy::SplitRow,
                        dtype,
                        vector,
                        cached: true,
                        strided: false,
                        paired: false,
                        group: GroupShape::DEFAULT,
                    };
                    assert!(
                        keeps_share(&spec, &p, cols),
                        "{shape}, {dtype} {vector:?}: {} segments",
                        p.segments
                    );
                }
            }
        }
    }
}

#[test]
fn a_row_wider_than_a_binding_is_refused() {
    let small = DeviceCaps { max_storage_binding_bytes: 1000, ..gpu_caps() };
    let err = plan(&small, Shape::new(10, 300), None, &[1200]).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: "max_storage_buffer_binding_size", .. }), "{err}");
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

fn fuzz_cases() -> u32 {
    std::env::var("WGPU_SOFTMAX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn fuzz_runner() -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    // A fixed seed in CI; WGPU_SOFTMAX_SEED explores others.
    let seed = std::env::var("WGPU_SOFTMAX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xF022_5EED);
    TestRunner::new(Config {
        cases: fuzz_cases(),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    })
}

/// Fuzzing the planner with many cases (`WGPU_SOFTMAX_FUZZ_CASES`, default 20,000): every
/// plan covers every row once within every limit, or is a typed refusal.
#[test]
fn plans_cover_every_row_once_within_every_limit() {
    let started = std::time::Instant::now();
    let caps = (
        any::<bool>(),
        prop::sample::select(vec![4u32, 8, 16, 32, 64, 128]),
        any::<bool>(),
        1u32..70_000,
        4u64..(1 << 32),
        prop::sample::select(vec![4u32, 16, 32, 64, 256]),
        prop::option::of(Just(65_535u64)),
    )
        .prop_map(|(subgroups, subgroup_min_size, is_cpu, dim, binding, alignment, loops)| DeviceCaps {
            subgroups,
            subgroup_min_size,
            is_cpu,
            max_workgroups_per_dimension: dim,
            max_storage_binding_bytes: binding,
            max_buffer_bytes: binding.saturating_mul(4),
            storage_offset_alignment: alignment,
            max_loop_iterations: loops,
            ..gpu_caps()
        });
    let strategy = prop::option::of(prop::sample::select(Strategy::ALL.to_vec()));
    fuzz_runner()
        .run(
            &(caps, 0usize..3_000_000, 0usize..300_000, strategy, any::<bool>()),
            |(caps, rows, cols, forced, extra)| {
                let row_bytes = if extra { vec![4 * cols as u64, 4] } else { vec![4 * cols as u64] };
                match plan(&caps, Shape::new(rows, cols), forced, &row_bytes) {
                    Ok(p) => {
                        if let Some(s) = forced {
                            prop_assert_eq!(p.strategy, s);
                        }
                        prop_assert!(p.strategy != Strategy::SubgroupPerRow || caps.subgroups);
                        let mut next = 0;
                        for c in &p.chunks {
                            prop_assert_eq!(c.first_row, next);
                            next += c.rows;
                            prop_assert!(c.grid[0] <= caps.max_workgroups_per_dimension);
                            prop_assert!(c.grid[1] <= caps.max_workgroups_per_dimension);
                            let covered =
                                u64::from(c.grid[0]) * u64::from(c.grid[1]) * u64::from(p.rows_per_group);
                            prop_assert!(covered >= c.rows as u64);
                            for &b in &row_bytes {
                                prop_assert!(b * c.rows as u64 <= caps.max_storage_binding_bytes);
                                prop_assert_eq!(
                                    b * c.first_row as u64 % u64::from(caps.storage_offset_alignment),
                                    0
                                );
                            }
                        }
                        prop_assert_eq!(next, if rows == 0 || cols == 0 { 0 } else { rows });
                    }
                    Err(
                        Error::LimitExceeded { .. }
                        | Error::StrategyUnavailable { .. }
                        | Error::ShapeOverflow { .. },
                    ) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!("{} planning cases in {:.2?}", fuzz_cases(), started.elapsed());
}

#[test]
fn a_profile_is_what_the_planner_reads() {
    let gpu = DeviceProfile::for_tests("a GPU", wgpu::DeviceType::DiscreteGpu, 32);
    let caps = gpu.caps();
    assert_eq!(
        caps,
        DeviceCaps {
            subgroups: true,
            subgroup_min_size: 32,
            is_cpu: false,
            max_workgroups_per_dimension: 65535,
            max_storage_binding_bytes: (1 << 31) - 4,
            max_buffer_bytes: (1 << 32) - 1,
            storage_offset_alignment: 32,
            max_loop_iterations: None,
            max_storage_buffers_per_stage: 1 << 16,
            max_workgroup_storage_bytes: 48 << 10,
            max_workgroup_lanes: 1024,
        }
    );
    assert!(gpu.keeps_rows_by_default());
    let lavapipe = DeviceProfile::for_tests("llvmpipe (LLVM 15.0.6, 256 bits)", wgpu::DeviceType::Cpu, 8);
    assert_eq!(lavapipe.loop_iteration_limit(), Some(LLVMPIPE_LOOP_ITERATIONS));
    assert!(!lavapipe.keeps_rows_by_default());
}

#[test]
fn the_splits_segments_hold_every_packet_of_an_eight_bit_format_too() {
    // An imaginary storage type of four 8-bit elements a word (none ships): the segments
    // hold every packet of a row, whatever packet it starts in the middle of; a row spans
    // at most ceil((offset + cols) / packet) packets.
    let eight_bit = crate::dtype::WordFormat { bits: 8 };
    for packet in [eight_bit.packet(1), eight_bit.packet(4), crate::dtype::DType::BF16.format().packet(4)] {
        let per_segment = SPLIT_SEGMENT_COLS / packet as usize;
        for cols in [1, 15, 16, 17, 4095, 4096, 4097, 65_533, 128_256, 262_147] {
            for offset in 0..packet as usize {
                let spanned = (offset + cols).div_ceil(packet as usize);
                let segments = split_segments_for(cols, packet as usize);
                assert!(segments * per_segment >= spanned, "packet {packet}, {cols} cols from {offset}");
            }
        }
    }
}
