//! The explanations of plans against what the ops really do on the adapter that
//! `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` select: the dispatches each op records (counted as
//! it records them), and the strategy and chunks of its own `plan`. On a device of small
//! storage bindings too, where the rows come in several chunks.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

use wgpu_softmax::testing::{SeededRng, dispatches_recorded};
use wgpu_softmax::{
    Context, ContextOptions, CrossEntropy, CrossEntropyInput, DType, Distill, DistillInput, DistillReduction,
    Gradient, LinearCrossEntropy, LinearCrossEntropyInput, LinearGradients, LinearShape, PlanRequest,
    Reduction, Sampler, Shape, Softmax, SoftmaxBackward, Strategy, Targets, bf16,
};

fn context() -> Context {
    Context::new().unwrap()
}

/// A context whose device binds at most 64 KiB per storage binding: rows in chunks.
fn small_bindings() -> Context {
    let mut options = ContextOptions::default();
    let adapter_limits = context().device().limits();
    options.limits =
        Some(wgpu_softmax::wgpu::Limits { max_storage_buffer_binding_size: 64 << 10, ..adapter_limits });
    Context::with_options(options).unwrap()
}

/// The dispatches `run` records.
fn recorded<R>(run: impl FnOnce() -> R) -> (u64, R) {
    let before = dispatches_recorded();
    let out = run();
    (dispatches_recorded() - before, out)
}

fn logits(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    (0..len).map(|_| rng.uniform(-4.0, 4.0)).collect()
}

fn targets(rows: usize, cols: usize) -> Vec<i64> {
    (0..rows).map(|r| if r % 7 == 3 { -100 } else { (r * 31 % cols) as i64 }).collect()
}

fn check(ctx: &Context, request: PlanRequest, shape: Shape, dtype: DType, dispatches: u64) {
    let explained = ctx.explain(&request, shape, dtype).unwrap();
    assert_eq!(
        explained.dispatches as u64,
        dispatches,
        "{} {shape} {dtype:?} on {}: explained {:?}",
        request.name(),
        ctx.describe(),
        explained.passes
    );
}

#[test]
fn row_ops_record_the_dispatches_explained() {
    for ctx in [context(), small_bindings()] {
        for (shape, strategy) in [
            (Shape::new(64, 10), None),
            (Shape::new(64, 1000), None),
            (Shape::new(20, 1025), None),
            (Shape::new(4, 12_000), Some(Strategy::SplitRow)),
            (Shape::new(4, 1025), Some(Strategy::WorkgroupPerRow)),
        ] {
            let data = logits(shape.rows * shape.cols, 1);
            let half: Vec<bf16> = data.iter().map(|&x| bf16::from_f32(x)).collect();
            let op = strategy.map_or(Softmax::new(), |s| Softmax::new().strategy(s));
            let request = PlanRequest::Softmax { log: false, strategy };
            let (n, out) = recorded(|| op.run(&ctx, &data, shape));
            out.unwrap();
            check(&ctx, request, shape, DType::F32, n);
            let (n, out) = recorded(|| op.run(&ctx, &half, shape));
            out.unwrap();
            check(&ctx, request, shape, DType::BF16, n);
            // The planner's own answer for the op, as the explanation gives it.
            let plan = op.plan(&ctx, shape).unwrap();
            let explained = ctx.explain(&request, shape, DType::F32).unwrap();
            assert_eq!(
                (plan.strategy(), plan.chunks().len()),
                (explained.strategy, explained.chunks),
                "{shape}"
            );
            assert_eq!(
                (plan.rows_per_group(), plan.lanes_per_row()),
                (explained.rows_per_group, explained.lanes_per_row)
            );

            let backward = strategy.map_or(SoftmaxBackward::new(), |s| SoftmaxBackward::new().strategy(s));
            let (n, out) = recorded(|| backward.run(&ctx, &half, &half, shape));
            out.unwrap();
            check(&ctx, PlanRequest::SoftmaxBackward { log: false, strategy }, shape, DType::BF16, n);
            let plan = backward.plan(&ctx, shape).unwrap();
            let explained = ctx
                .explain(&PlanRequest::SoftmaxBackward { log: false, strategy }, shape, DType::F32)
                .unwrap();
            assert_eq!(
                (plan.strategy(), plan.chunks().len()),
                (explained.strategy, explained.chunks),
                "{shape}"
            );
        }
    }
}

#[test]
fn the_cross_entropy_and_distillation_record_the_dispatches_explained() {
    for ctx in [context(), small_bindings()] {
        for shape in [Shape::new(64, 1000), Shape::new(20, 1025)] {
            let data = logits(shape.rows * shape.cols, 2);
            let half: Vec<bf16> = data.iter().map(|&x| bf16::from_f32(x)).collect();
            let classes = targets(shape.rows, shape.cols);
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                for gradient in [Gradient::Separate, Gradient::InPlace, Gradient::Skip] {
                    let op = CrossEntropy::new().reduction(reduction).gradient(gradient);
                    let request = PlanRequest::CrossEntropy {
                        reduction,
                        gradient,
                        probabilities: false,
                        strategy: None,
                    };
                    let input = CrossEntropyInput::new(&half, shape, Targets::I64(&classes));
                    let (n, out) = recorded(|| op.run(&ctx, &input));
                    out.unwrap();
                    check(&ctx, request, shape, DType::BF16, n);
                    let plan = op.plan(&ctx, shape).unwrap();
                    let explained = ctx.explain(&request, shape, DType::F32).unwrap();
                    assert_eq!(
                        (plan.strategy(), plan.chunks().len()),
                        (explained.strategy, explained.chunks)
                    );
                }
            }
            let probabilities = vec![1.0 / shape.cols as f32; shape.rows * shape.cols];
            let input = CrossEntropyInput::new(&data, shape, Targets::Probabilities(&probabilities));
            let (n, out) = recorded(|| CrossEntropy::new().run(&ctx, &input));
            out.unwrap();
            let request = PlanRequest::CrossEntropy {
                reduction: Reduction::Mean,
                gradient: Gradient::Separate,
                probabilities: true,
                strategy: None,
            };
            check(&ctx, request, shape, DType::F32, n);

            let teacher = logits(shape.rows * shape.cols, 3);
            for (reduction, masked, gradient) in
                [(DistillReduction::BatchMean, true, true), (DistillReduction::Sum, false, false)]
            {
                let op = Distill::new().reduction(reduction).gradient(gradient);
                let mut input = DistillInput::new(&data, &teacher, shape);
                if masked {
                    input = input.targets(Targets::I64(&classes));
                }
                let (n, out) = recorded(|| op.run(&ctx, &input));
                out.unwrap();
                check(
                    &ctx,
                    PlanRequest::Distill { reduction, gradient, masked, strategy: None },
                    shape,
                    DType::F32,
                    n,
                );
            }
        }
    }
}

#[test]
fn the_linear_cross_entropy_and_the_sampler_record_the_dispatches_explained() {
    let ctx = context();
    let shape = LinearShape::new(70, 8, 45);
    let hidden = logits(70 * 8, 4);
    let classifier = logits(45 * 8, 5);
    let bias = logits(45, 6);
    let classes = targets(70, 45);
    let half = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
    let (h16, w16, b16) = (half(&hidden), half(&classifier), half(&bias));
    for gradients in [LinearGradients::ALL, LinearGradients::NONE] {
        for reduction in [Reduction::Mean, Reduction::None] {
            for workspace in [None, Some(4096)] {
                let mut op = LinearCrossEntropy::new().reduction(reduction).gradients(gradients);
                if let Some(bytes) = workspace {
                    op = op.workspace_bytes(bytes);
                }
                let request = PlanRequest::LinearCrossEntropy {
                    hidden: 8,
                    reduction,
                    gradients,
                    bias: true,
                    workspace_bytes: workspace,
                };
                let input =
                    LinearCrossEntropyInput::new(&h16, &w16, shape, Targets::I64(&classes)).bias(&b16);
                let (n, out) = recorded(|| op.run(&ctx, &input));
                out.unwrap();
                check(&ctx, request, shape.logits(), DType::BF16, n);
                let input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::I64(&classes));
                let (n, out) = recorded(|| op.run(&ctx, &input));
                out.unwrap();
                let request = PlanRequest::LinearCrossEntropy {
                    hidden: 8,
                    reduction,
                    gradients,
                    bias: false,
                    workspace_bytes: workspace,
                };
                check(&ctx, request, shape.logits(), DType::F32, n);
            }
        }
    }
    let shape = Shape::new(4, 1000);
    let data = logits(4 * 1000, 7);
    for sampler in [
        Sampler { temperature: 0.0, ..Sampler::default() },
        Sampler { top_k: 20, top_p: 0.9, num_samples: 3, ..Sampler::default() },
    ] {
        let (n, out) = recorded(|| sampler.run(&ctx, &data, shape, false));
        out.unwrap();
        check(&ctx, PlanRequest::Sample(sampler), shape, DType::F32, n);
    }
}

#[test]
fn the_adapters_profile_plans_as_its_context_does() {
    let ctx = context();
    let profile = ctx.profile().clone();
    assert_eq!(profile.name, ctx.adapter_info().name);
    assert_eq!(profile.keeps_rows_by_default(), ctx.cached_rows());
    assert_eq!(profile.loop_iteration_limit(), ctx.loop_iteration_limit());
    for cols in [10, 1000, 4097, 65_536] {
        let request = PlanRequest::Softmax { log: true, strategy: None };
        let shape = Shape::new(256, cols);
        let from_profile = profile.explain(&request, shape, DType::F32).unwrap();
        let from_context = ctx.explain(&request, shape, DType::F32).unwrap();
        assert_eq!(from_profile.strategy, from_context.strategy);
        assert_eq!(from_profile.dispatches, from_context.dispatches);
        assert_eq!(from_profile.reads_per_element, from_context.reads_per_element);
    }
}
