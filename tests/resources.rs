//! Resources: 10,000 host-API calls in a loop keep the process's memory flat. Measured as
//! the resident set size from /proc/self/statm (Linux), after a warm-up that fills the
//! pipeline cache and the driver's pools, and again at the end. A binary of its own, unlike
//! the rest of the GPU suite (`tests/gpu`): the resident set is the whole process's, and
//! the other tests' buffers would move it.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes
#![cfg(target_os = "linux")]

#[path = "gpu/common.rs"]
mod common;

use wgpu_softmax::{CrossEntropy, CrossEntropyInput, Shape, Targets, softmax};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // The page size of every Linux target this crate's CI runs on.
    pages * 4096
}

#[test]
fn ten_thousand_host_calls_keep_memory_flat() {
    let ctx = common::ctx();
    let shape = Shape::new(16, 100);
    let x = common::rng(0x4E_0001).logits(1600, 4.0);
    let targets: Vec<i64> = (0..16).collect();
    let input = CrossEntropyInput::new(&x, shape, Targets::I64(&targets));
    let call = |i: usize| {
        if i.is_multiple_of(2) {
            assert_eq!(softmax(ctx, &x, shape).unwrap().len(), 1600);
        } else {
            assert!(CrossEntropy::new().run(ctx, &input).unwrap().loss[0].is_finite());
        }
    };
    for i in 0..1000 {
        call(i);
    }
    let before = resident_bytes();
    for i in 0..10_000 {
        call(i);
    }
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "resident set: {:.1} MiB after 1,000 warm-up calls, {:.1} MiB after 10,000 more ({:+.2} MiB)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after as f64 - before as f64) / 1048576.0
    );
    // A leak of one 6.4 KB buffer per call would be 64 MB here.
    assert!(growth < 16 << 20, "memory grew by {growth} bytes over 10,000 calls");
}
