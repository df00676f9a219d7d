//! `cargo bench`: every op on the benchmark shapes, this crate's fused kernels and the
//! unfused WGSL baseline, and two ops along a class axis that is not last; timed on the
//! GPU through criterion's `iter_custom` (timestamp queries where the adapter has them
//! inside encoders, else wall time after a full wait). Throughput is the op's fewest bytes
//! (`BenchOp::min_bytes`). `wgpu-softmax bench` runs the same measurements (the class axis
//! last) with the roofline and the CPU baselines beside them.
#![allow(clippy::expect_used, clippy::missing_docs_in_private_items)] // a benchmark: failing loudly is right
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use wgpu_softmax::Context;
use wgpu_softmax::{DType, Shape};
use wgpu_softmax_bench::{Bench, BenchOp, KernelKind, SHAPES, Workload};

fn kernels(c: &mut Criterion) {
    let ctx = Context::new().expect("benchmarks need a GPU adapter");
    let bench = Bench::new(&ctx).expect("the baseline kernels compile");
    eprintln!("benchmarking on {}; times from {}", ctx.describe(), bench.clock().name());
    for op in BenchOp::ALL {
        let mut group = c.benchmark_group(op.name());
        group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for (rows, cols) in SHAPES {
            let shape = Shape::new(rows, cols);
            let mut workload = Workload::new(op, shape, 0x00BE_4C11);
            group.throughput(Throughput::Bytes(op.min_bytes(shape, DType::F32)));
            for kernel in [KernelKind::Fused, KernelKind::Unfused] {
                group.bench_function(BenchmarkId::new(kernel.name(), format!("{rows}x{cols}")), |b| {
                    b.iter_custom(|iterations| {
                        let runs = usize::try_from(iterations).unwrap_or(usize::MAX);
                        let times = bench.time(&mut workload, kernel, 0, runs).expect("the op runs");
                        Duration::from_secs_f64(times.iter().sum::<f64>() / 1e3)
                    });
                });
            }
        }
        group.finish();
    }
}

/// A class axis that is not last, this crate's kernels in every storage type: the
/// softmax and the cross-entropy's gradient over axis 1 of segmentation-shaped logits
/// (8 images, 21 classes, 128 x 128 positions), beside the same with one position fewer
/// per image (an odd count: 16-bit rows there cannot pair, and their outputs are stored
/// half by half through atomics).
fn class_axis(c: &mut Criterion) {
    let ctx = Context::new().expect("benchmarks need a GPU adapter");
    let bench = Bench::new(&ctx).expect("the baseline kernels compile");
    for op in [BenchOp::Softmax, BenchOp::CrossEntropyGrad] {
        let mut group = c.benchmark_group(format!("{}_class_axis", op.name()));
        group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for dtype in DType::ALL {
            for positions in [128 * 128, 128 * 128 - 1] {
                let shape = Shape::with_inner(8, 21, positions);
                let mut workload = Workload::with_dtype(op, shape, 0x00BE_4C11, dtype);
                group.throughput(Throughput::Bytes(op.min_bytes(shape, dtype)));
                let id = BenchmarkId::new(dtype.to_string(), format!("8x21x{positions}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iterations| {
                        let runs = usize::try_from(iterations).unwrap_or(usize::MAX);
                        let times =
                            bench.time(&mut workload, KernelKind::Fused, 0, runs).expect("the op runs");
                        Duration::from_secs_f64(times.iter().sum::<f64>() / 1e3)
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, kernels, class_axis);
criterion_main!(benches);
