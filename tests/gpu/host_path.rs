//! The host path in the steady state: a second identical `encode` creates no GPU object
//! (its uniforms, bind groups and scratch buffers come from the context's caches), and
//! what the reused objects compute stays right: every result against the f64 reference
//! from poisoned outputs, for repeated calls, for calls on other shapes and options, and
//! for several ops (sharing pooled scratch buffers) in one encoder before one submit.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation)] // small test sizes

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, objects_created};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Gradient,
    SAMPLE_STATUS_WORDS, SampleBuffers, SampleStatus, Sampler, Shape, Softmax, SoftmaxBackward, Strategy,
    TargetBuffer, Targets, TensorRef, reference,
};

use crate::common::{POISON_BITS, assert_written, ctx, poisoned, rng};

fn f32_tensor(buffer: &wgpu::Buffer) -> TensorRef<'_> {
    TensorRef::new(buffer, DType::F32)
}

/// The GPU objects `record` creates on this thread.
fn created_by(record: impl FnOnce()) -> u64 {
    let before = objects_created();
    record();
    objects_created() - before
}

/// The GPU objects a repeated call creates once warm: the fewest over up to three repeats
/// of `call` (which also checks each result). The tests beside this one share the
/// context's scratch pool and caches, and one of them may hold a pooled buffer, or push a
/// cached bind group out, just when this call looks for it; a call that creates objects
/// every time still fails.
fn steady_state_created(mut call: impl FnMut() -> u64) -> u64 {
    let mut fewest = u64::MAX;
    for _ in 0..3 {
        fewest = fewest.min(call());
        if fewest == 0 {
            break;
        }
    }
    fewest
}

/// Writes the poison over the first `len` f32 of `buffer` (before the next submission's
/// commands run).
fn repoison(ctx: &Context, buffer: &wgpu::Buffer, len: usize) {
    ctx.queue().write_buffer(buffer, 0, bytemuck::cast_slice(&vec![POISON_BITS; len.max(1)]));
}

fn check(what: &str, gpu: &[f32], want: &[f64], tolerance: Tolerance) {
    let comparison = compare(&assert_written(what, gpu.to_vec()), want, tolerance);
    assert!(comparison.passed(), "{what}: {comparison}");
}

/// One softmax (or log-softmax) on its own buffers.
struct SoftmaxCase {
    op: Softmax,
    shape: Shape,
    data: Vec<f32>,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
}

impl SoftmaxCase {
    fn new(ctx: &Context, op: Softmax, shape: Shape, seed: u64) -> Self {
        let data = rng(seed).logits(shape.rows * shape.cols, 8.0);
        let input = ctx.upload(&data).unwrap();
        let output = poisoned::<f32>(ctx, data.len());
        Self { op, shape, data, input, output }
    }

    fn encode(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder) {
        repoison(ctx, &self.output, self.data.len());
        self.op.encode(ctx, encoder, &self.input, &self.output, self.shape).unwrap();
    }

    fn check(&self, ctx: &Context) {
        let gpu = ctx.download(&self.output, self.data.len()).unwrap();
        let (want, tolerance) = if self.op.is_log() {
            (reference::log_softmax(&self.data, self.shape).unwrap(), Tolerance::LOG_SOFTMAX)
        } else {
            (reference::softmax(&self.data, self.shape).unwrap(), Tolerance::SOFTMAX)
        };
        check(&format!("{:?} on {}", self.op, self.shape), &gpu, &want, tolerance);
    }
}

/// One mean cross-entropy with its gradient, on its own buffers (its reductions take
/// pooled scratch buffers).
struct CrossEntropyCase {
    shape: Shape,
    logits: Vec<f32>,
    targets: Vec<i32>,
    buffers: [wgpu::Buffer; 4],
}

impl CrossEntropyCase {
    fn new(ctx: &Context, shape: Shape, seed: u64) -> Self {
        let mut rng = rng(seed);
        let logits = rng.logits(shape.rows * shape.cols, 8.0);
        let targets = (0..shape.rows).map(|_| rng.below(shape.cols as u64) as i32).collect::<Vec<_>>();
        let buffers = [
            ctx.upload(&logits).unwrap(),
            ctx.upload_elements(&targets).unwrap(),
            poisoned::<f32>(ctx, 1),
            poisoned::<f32>(ctx, logits.len()),
        ];
        Self { shape, logits, targets, buffers }
    }

    fn encode(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder) {
        let [logits, targets, loss, grad] = &self.buffers;
        repoison(ctx, loss, 1);
        repoison(ctx, grad, self.logits.len());
        let buffers =
            CrossEntropyBuffers::new(f32_tensor(logits), TargetBuffer::I32(BufferRegion::new(targets)), loss)
                .with_grad(f32_tensor(grad));
        CrossEntropy::new().gradient(Gradient::Separate).encode(ctx, encoder, &buffers, self.shape).unwrap();
    }

    fn check(&self, ctx: &Context) {
        let input = CrossEntropyInput::new(&self.logits, self.shape, Targets::I32(&self.targets));
        let want =
            reference::cross_entropy(&CrossEntropy::new().gradient(Gradient::Separate), &input).unwrap();
        let what = format!("cross-entropy on {}", self.shape);
        let loss = ctx.download(&self.buffers[2], 1).unwrap();
        check(&what, &loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
        let grad = ctx.download(&self.buffers[3], self.logits.len()).unwrap();
        check(&what, &grad, &want.grad.unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
    }
}

/// Records `encode` into a fresh encoder, submits it and waits; returns the GPU objects
/// the recording created.
fn run(ctx: &Context, encode: impl FnOnce(&mut wgpu::CommandEncoder)) -> u64 {
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let created = created_by(|| encode(&mut encoder));
    ctx.submit_and_wait(encoder).unwrap();
    created
}

#[test]
fn a_repeated_row_op_creates_nothing_and_stays_right() {
    let ctx = ctx();
    let shape = Shape::new(37, 300);
    // Softmax per row and split (scratch shares), log-softmax, all on the same buffers.
    let cases = [
        SoftmaxCase::new(ctx, Softmax::new(), shape, 2901),
        SoftmaxCase::new(ctx, Softmax::new().strategy(Strategy::SplitRow), shape, 2902),
        SoftmaxCase::new(ctx, Softmax::log(), shape, 2903),
    ];
    for case in &cases {
        run(ctx, |encoder| case.encode(ctx, encoder));
        case.check(ctx);
        let created = steady_state_created(|| {
            let created = run(ctx, |encoder| case.encode(ctx, encoder));
            case.check(ctx);
            created
        });
        assert_eq!(created, 0, "{:?}: a repeated call created {created} GPU objects", case.op);
    }
}

#[test]
fn a_repeated_backward_creates_nothing_and_stays_right() {
    let ctx = ctx();
    let shape = Shape::new(23, 130);
    let mut rng = rng(2904);
    let y = reference::softmax(&rng.logits(shape.rows * shape.cols, 4.0), shape).unwrap();
    let y: Vec<f32> = y.into_iter().map(|v| v as f32).collect();
    let dy = rng.logits(y.len(), 1.0);
    let (y_buffer, dy_buffer) = (ctx.upload(&y).unwrap(), ctx.upload(&dy).unwrap());
    let dx = poisoned::<f32>(ctx, y.len());
    let want = reference::softmax_backward(&y, &dy, shape).unwrap();
    let call = || {
        repoison(ctx, &dx, y.len());
        let created = run(ctx, |encoder| {
            let t = f32_tensor;
            SoftmaxBackward::new().encode(ctx, encoder, t(&y_buffer), t(&dy_buffer), t(&dx), shape).unwrap();
        });
        check("softmax backward", &ctx.download(&dx, y.len()).unwrap(), &want, Tolerance::BACKWARD);
        created
    };
    call();
    let created = steady_state_created(call);
    assert_eq!(created, 0, "a repeated softmax backward created {created} GPU objects");
}

#[test]
fn a_repeated_cross_entropy_creates_nothing_and_stays_right() {
    let ctx = ctx();
    let case = CrossEntropyCase::new(ctx, Shape::new(45, 210), 2905);
    run(ctx, |encoder| case.encode(ctx, encoder));
    case.check(ctx);
    let created = steady_state_created(|| {
        let created = run(ctx, |encoder| case.encode(ctx, encoder));
        case.check(ctx);
        created
    });
    assert_eq!(created, 0, "a repeated cross-entropy created {created} GPU objects");
}

/// Ops recorded one after another into one encoder, submitted once: the second
/// cross-entropy takes the scratch buffers the first gave back to the pool (and the
/// softmax between them the split's), and each result is still its own.
#[test]
fn ops_sharing_pooled_scratch_in_one_submission_stay_right() {
    let ctx = ctx();
    let shape = Shape::new(29, 170);
    let first = CrossEntropyCase::new(ctx, shape, 2906);
    let split = SoftmaxCase::new(ctx, Softmax::new().strategy(Strategy::SplitRow), Shape::new(5, 900), 2907);
    let second = CrossEntropyCase::new(ctx, shape, 2908);
    let split_again =
        SoftmaxCase::new(ctx, Softmax::new().strategy(Strategy::SplitRow), Shape::new(5, 900), 2909);
    let call = || {
        let created = run(ctx, |encoder| {
            first.encode(ctx, encoder);
            split.encode(ctx, encoder);
            second.encode(ctx, encoder);
            split_again.encode(ctx, encoder);
        });
        first.check(ctx);
        split.check(ctx);
        second.check(ctx);
        split_again.check(ctx);
        created
    };
    call();
    let created = steady_state_created(call);
    assert_eq!(created, 0, "a repeated encoder of four ops created {created} GPU objects");
}

/// Calls on changing shapes and options, each checked: a pooled or cached object of one
/// call never stands in for another's.
#[test]
fn calls_on_changing_shapes_and_options_stay_right() {
    let ctx = ctx();
    let shapes = [Shape::new(7, 33), Shape::new(19, 256), Shape::new(3, 1500), Shape::new(7, 33)];
    for (seed, &shape) in (2910..).zip(shapes.iter().cycle().take(8)) {
        let op = if seed % 2 == 0 { Softmax::new().strategy(Strategy::SplitRow) } else { Softmax::log() };
        let case = SoftmaxCase::new(ctx, op, shape, seed);
        run(ctx, |encoder| case.encode(ctx, encoder));
        case.check(ctx);
        let loss = CrossEntropyCase::new(ctx, shape, seed + 100);
        run(ctx, |encoder| loss.encode(ctx, encoder));
        loss.check(ctx);
    }
}

/// The sampler (its state scratch from the pool, its step params cached): a repeated
/// identical draw creates nothing and draws the same tokens, each one its row's
/// reference distribution allows.
#[test]
fn a_repeated_draw_creates_nothing_and_stays_right() {
    let ctx = ctx();
    let shape = Shape::new(5, 700);
    let logits = rng(2920).logits(shape.rows * shape.cols, 4.0);
    let sampler = Sampler { num_samples: 8, top_k: 20, top_p: 0.9, seed: 7, ..Sampler::default() };
    let allowed = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let draws = shape.rows * sampler.num_samples;
    let input = ctx.upload(&logits).unwrap();
    let (ids, status) = (poisoned::<f32>(ctx, draws), poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS));
    let buffers = SampleBuffers::new(f32_tensor(&input), BufferRegion::new(&ids), BufferRegion::new(&status));
    let mut drawn = Vec::new();
    let mut call = || {
        repoison(ctx, &ids, draws);
        let created = run(ctx, |encoder| sampler.encode(ctx, encoder, &buffers, shape).unwrap());
        let words = ctx.download_u32(&ids, draws).unwrap();
        assert_eq!(SampleStatus::read(ctx, &status).unwrap(), SampleStatus::default());
        for (at, &id) in words.iter().enumerate() {
            let row = allowed[at / sampler.num_samples].as_ref().unwrap();
            assert!(row.get(id as usize).is_some_and(|&p| p > 0.0), "draw {at}: token {id} is not allowed");
        }
        drawn.push(words);
        created
    };
    call();
    let created = steady_state_created(&mut call);
    assert_eq!(created, 0, "a repeated draw created {created} GPU objects");
    assert!(drawn.iter().all(|words| *words == drawn[0]), "the same seed drew other tokens");
}

/// `Context::prepare` compiles what a first call would, on a context that has compiled
/// nothing, and runs nothing: the outputs keep their poison. The first call after it
/// compiles nothing, creates no GPU object and is right; preparing again compiles nothing.
#[test]
fn prepare_compiles_what_the_first_call_needs_and_runs_nothing() {
    let ctx = Context::new().unwrap();
    assert_eq!(ctx.compiled_pipelines(), 0, "a new context has compiled nothing");
    let softmax = SoftmaxCase::new(&ctx, Softmax::log(), Shape::new(37, 1000), 93);
    let cross_entropy = CrossEntropyCase::new(&ctx, Shape::new(19, 700), 94);
    let record = |encoder: &mut wgpu::CommandEncoder| {
        softmax.op.encode(&ctx, encoder, &softmax.input, &softmax.output, softmax.shape)?;
        let [logits, targets, loss, grad] = &cross_entropy.buffers;
        let buffers =
            CrossEntropyBuffers::new(f32_tensor(logits), TargetBuffer::I32(BufferRegion::new(targets)), loss)
                .with_grad(f32_tensor(grad));
        CrossEntropy::new().gradient(Gradient::Separate).encode(
            &ctx,
            encoder,
            &buffers,
            cross_entropy.shape,
        )?;
        Ok(())
    };
    let prepared = ctx.prepare(record).unwrap();
    assert!(prepared.pipelines >= 2, "{prepared:?}: a softmax and a cross-entropy are two kernels at least");
    assert_eq!(ctx.compiled_pipelines(), prepared.pipelines);
    // Nothing ran: every output still holds the poison it was made with.
    let untouched = ctx.download_u32(&softmax.output, softmax.data.len()).unwrap();
    assert!(untouched.iter().all(|&bits| bits == POISON_BITS), "prepare ran the softmax");
    let grad = ctx.download_u32(&cross_entropy.buffers[3], cross_entropy.logits.len()).unwrap();
    assert!(grad.iter().all(|&bits| bits == POISON_BITS), "prepare ran the cross-entropy");
    let created = run(&ctx, |encoder| {
        softmax.encode(&ctx, encoder);
        cross_entropy.encode(&ctx, encoder);
    });
    assert_eq!(created, 0, "the first call after prepare created {created} GPU objects");
    assert_eq!(ctx.compiled_pipelines(), prepared.pipelines, "the first call compiled more");
    softmax.check(&ctx);
    cross_entropy.check(&ctx);
    assert_eq!(ctx.prepare(record).unwrap().pipelines, 0);
}
