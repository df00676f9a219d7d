//! Device faults: a lost device and an error outside any error scope mark the context,
//! and every later call returns the error, without hanging or panicking. Each test makes
//! its own device, so that the faults stay there.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use wgpu_softmax::{Context, CrossEntropy, CrossEntropyInput, Error, Shape, Softmax, Targets, softmax};

fn own_context() -> Context {
    // Make sure the shared adapter exists (and print it) before making another device.
    common::ctx();
    Context::new().unwrap()
}

#[test]
fn a_destroyed_device_makes_every_later_call_fail_with_device_lost() {
    let ctx = own_context();
    assert_eq!(softmax(&ctx, &[1.0, 1.0], Shape::new(1, 2)).unwrap(), vec![0.5, 0.5]);
    ctx.device().destroy();
    // The first call after may see the loss as it happens; it must come back with an error.
    let first = softmax(&ctx, &[1.0, 2.0], Shape::new(1, 2));
    assert!(first.is_err(), "{first:?}");
    for _ in 0..3 {
        let err = softmax(&ctx, &[1.0, 2.0], Shape::new(1, 2)).unwrap_err();
        assert!(matches!(err, Error::DeviceLost(_)), "{err}");
        let input = CrossEntropyInput::new(&[1.0, 2.0], Shape::new(1, 2), Targets::I64(&[0]));
        let err = CrossEntropy::new().run(&ctx, &input).unwrap_err();
        assert!(matches!(err, Error::DeviceLost(_)), "{err}");
        assert!(matches!(ctx.check_health(), Err(Error::DeviceLost(_))));
    }
    // A clone shares the verdict; another context does not.
    assert!(matches!(ctx.clone().check_health(), Err(Error::DeviceLost(_))));
    assert!(common::ctx().check_health().is_ok());
}

#[test]
fn an_error_outside_any_scope_marks_the_context_instead_of_panicking() {
    let ctx = own_context();
    let (a, b) = (ctx.upload(&[1.0; 4]).unwrap(), ctx.storage_buffer(4).unwrap());
    // Invalid on purpose, and outside any error scope: wgpu's default handler would panic.
    let _bad = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid on purpose"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = softmax(&ctx, &[1.0, 2.0], Shape::new(1, 2)).unwrap_err();
    assert!(matches!(err, Error::Unhealthy(_)), "{err}");
    assert!(err.to_string().contains("invalid on purpose") || err.to_string().contains("Usage"), "{err}");
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let err = Softmax::new().encode(&ctx, &mut encoder, &a, &b, Shape::new(2, 2)).unwrap_err();
    assert!(matches!(err, Error::Unhealthy(_)), "{err}");
    assert!(matches!(ctx.upload(&[1.0]), Err(Error::Unhealthy(_))));
}

#[test]
fn an_embedder_reports_its_own_devices_faults() {
    let shared = common::ctx();
    let embedded = Context::from_device(shared.device().clone(), shared.queue().clone());
    assert!(softmax(&embedded, &[0.0, 0.0], Shape::new(1, 2)).is_ok());
    embedded.report_device_lost("the embedder's device-lost callback fired");
    let err = softmax(&embedded, &[0.0, 0.0], Shape::new(1, 2)).unwrap_err();
    assert!(matches!(err, Error::DeviceLost(ref m) if m.contains("embedder")), "{err}");
    // The shared context wraps the same device but keeps its own verdict.
    assert!(softmax(shared, &[0.0, 0.0], Shape::new(1, 2)).is_ok());
}
