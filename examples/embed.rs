//! The embedder's path, end to end: an application that already runs on wgpu keeps its own
//! instance, adapter, device and queue, wraps them in a `Context`, and records the kernels
//! into its own command encoder over its own buffers, next to its own passes.
//!
//! ```bash
//! cargo run --release --example embed
//! ```
//!
//! What it shows, in order:
//! 1. the application's own device, created with the features it wants (subgroups where the
//!    adapter has them), from the `wgpu` that `wgpu_softmax` re-exports (with `pollster` and
//!    `bytemuck`), so that both use one version and the program depends on `wgpu-softmax`
//!    alone;
//! 2. its own error handler and device-lost callback, wired to the context's fault
//!    reporting so that the kernels stop taking work on a broken device;
//! 3. its logits living at an offset inside a larger buffer of its own, bound there as a
//!    region (no copy);
//! 4. softmax and the fused cross-entropy recorded into that encoder, one submit for all;
//! 5. the results read back by the application and checked against the f64 reference.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)] // an example prints what it did

use std::sync::Arc;

use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyStatus, DType, Gradient, Reduction, STATUS_WORDS,
    Shape, Softmax, TargetBuffer, TensorRef, reference,
};
use wgpu_softmax::{bytemuck, pollster, wgpu};

/// A batch of 4 rows over 10 classes: the application's "model output".
const ROWS: usize = 4;
const CLASSES: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The application's own instance, adapter, device and queue.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("the application's device"),
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    let ctx = Context::from_device(device.clone(), queue.clone());
    println!("embedding on {}", ctx.describe());

    // 2. The application's own fault handling, telling the context too.
    let for_errors = ctx.clone();
    device.on_uncaptured_error(Arc::new(move |error| {
        eprintln!("the application's handler saw: {error}");
        for_errors.report_fault(error.to_string());
    }));
    let for_loss = ctx.clone();
    device.set_device_lost_callback(move |reason, message| {
        for_loss.report_device_lost(format!("{reason:?}: {message}"));
    });

    // 3. The application's buffers: its logits sit after 256 bytes of other data in one
    //    larger buffer; its targets and outputs are plain storage buffers of its own.
    let logit_values: Vec<f32> = (0..ROWS * CLASSES).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.4).collect();
    let targets: [i32; ROWS] = [3, 0, 9, 5];
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let make = |label: &str, bytes: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: storage,
            mapped_at_creation: false,
        })
    };
    let matrix_bytes = (ROWS * CLASSES * 4) as u64;
    let arena = make("the application's arena", 256 + matrix_bytes);
    queue.write_buffer(&arena, 256, bytemuck::cast_slice(&logit_values));
    let targets_buffer = make("targets", (ROWS * 4) as u64);
    queue.write_buffer(&targets_buffer, 0, bytemuck::cast_slice(&targets));
    let probabilities = make("probabilities", matrix_bytes);
    let loss = make("loss", 4);
    let grad = make("gradient", matrix_bytes);
    let status = make("status", (STATUS_WORDS * 4) as u64);

    // 4. One encoder of the application's: its own copy, then both ops; one submit.
    let shape = Shape::new(ROWS, CLASSES);
    let mut encoder =
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("a step") });
    // The logits are the 4 x 10 f32 at byte 256 of the arena: a region of it.
    let logits = TensorRef::new(arena.slice(256..256 + matrix_bytes), DType::F32);
    Softmax::new().encode(&ctx, &mut encoder, logits, &probabilities, shape)?;
    let buffers = CrossEntropyBuffers::new(logits, TargetBuffer::i32(&targets_buffer), &loss)
        .with_grad(&grad)
        .with_status(&status);
    CrossEntropy::new().reduction(Reduction::Mean).gradient(Gradient::Separate).encode(
        &ctx,
        &mut encoder,
        &buffers,
        shape,
    )?;
    queue.submit([encoder.finish()]);

    // 5. Read back (the context's bounded readback; an application may map its own
    //    staging buffers instead) and compare with the f64 reference.
    CrossEntropyStatus::read(&ctx, &status)?.check()?;
    let p = ctx.download(&probabilities, ROWS * CLASSES)?;
    let mean_loss = ctx.download(&loss, 1)?[0];
    let gradient = ctx.download(&grad, ROWS * CLASSES)?;

    let want_p = reference::softmax(&logit_values, shape)?;
    let targets_i64: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let input =
        wgpu_softmax::CrossEntropyInput::new(&logit_values, shape, wgpu_softmax::Targets::I64(&targets_i64));
    let want = reference::cross_entropy(&CrossEntropy::new(), &input)?;
    let worst_p = p.iter().zip(&want_p).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
    let want_grad = want.grad.unwrap_or_default();
    let worst_grad =
        gradient.iter().zip(&want_grad).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
    println!("softmax: largest difference from the f64 reference {worst_p:.2e}");
    println!(
        "cross-entropy: mean loss {mean_loss:.6} (reference {:.6}), gradient within {worst_grad:.2e}",
        want.loss[0]
    );
    let tolerance = wgpu_softmax::Tolerance::CROSS_ENTROPY_LOSS;
    if !tolerance.accepts(mean_loss, want.loss[0]) || worst_p > 1e-6 || worst_grad > 1e-6 {
        return Err("the embedded kernels disagree with the reference".into());
    }
    ctx.check_health()?;
    println!("ok: the kernels ran inside the application's own encoder and agree with the reference");
    Ok(())
}
