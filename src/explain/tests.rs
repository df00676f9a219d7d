//! The explanation plans as the planner does, and refuses what the ops refuse.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

use super::PlanRequest;
use crate::dtype::DType;
use crate::error::Error;
use crate::plan::{DeviceProfile, plan};
use crate::shape::Shape;

#[test]
fn the_explanation_plans_as_the_planner_does() {
    let gpu = DeviceProfile::for_tests("a GPU", wgpu::DeviceType::DiscreteGpu, 32);
    let caps = gpu.caps();
    let request = PlanRequest::Softmax { log: false, strategy: None };
    for cols in [10, 1000, 8192, 65_536] {
        let shape = Shape::new(4096, cols);
        let explained = gpu.explain(&request, shape, DType::F32).unwrap();
        let planned = plan(&caps, shape, None, &[4 * cols as u64; 2]).unwrap();
        assert_eq!(explained.strategy, planned.strategy(), "{cols}");
        assert_eq!(explained.chunks, planned.chunks().len(), "{cols}");
        assert_eq!(explained.lanes_per_row, planned.lanes_per_row(), "{cols}");
    }
    // A class axis that is not last: the row ops plan it (16-bit rows of an even `inner`
    // paired on one invocation per row); the sampler refuses it, as the sampler does.
    for (inner, dtype, pairs) in [(3, DType::F16, false), (64, DType::F32, false), (64, DType::BF16, true)] {
        let shape = Shape::with_inner(4, 10, inner);
        let explained = gpu.explain(&request, shape, dtype).unwrap();
        assert_eq!(explained.strategy, crate::strategy::Strategy::ThreadPerRow);
        assert_eq!(explained.rows_per_invocation, if pairs { 2 } else { 1 }, "{shape} {dtype}");
        assert_eq!(explained.packet_elements, dtype.format().packet(1), "scalar accesses");
    }
    let sampler = PlanRequest::Sample(crate::Sampler::default());
    let strided = gpu.explain(&sampler, Shape::with_inner(4, 10, 3), DType::F32);
    assert!(matches!(strided, Err(Error::InvalidOption { option: "shape", .. })));
}
