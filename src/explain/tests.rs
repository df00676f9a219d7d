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
    // A class axis that is not last is refused, as the sampler and the planner's caller.
    let strided = gpu.explain(&request, Shape::with_inner(4, 10, 3), DType::F32);
    assert!(matches!(strided, Err(Error::InvalidOption { option: "shape", .. })));
}
