//! Explaining a plan: what an op would dispatch for a shape and a storage type on a
//! device, and why, from a [`DeviceProfile`] (no GPU needed) or a [`Context`].
//!
//! Every figure comes from the code the ops plan and record with: the planner
//! ([`crate::ops::rows::plan_rows_on`], the strategy, lanes and grid), the kernels'
//! declarations ([`KernelSpec`]: packets, the register cache, storage buffers, the edge
//! pass), the linear cross-entropy's windows ([`LinearCrossEntropy::plan_windows`]), the
//! sampler's steps ([`Sampler::passes`]). What the ops decide while recording (how many
//! reduction passes, which products) is counted here as their `encode` records it; a GPU
//! test counts the dispatches an op really records on the adapter and compares.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::{
    self, GroupShape, KernelSpec, MATMUL_TILE, OpKernel, SAMPLE_WORKGROUP_SIZE, TargetsKind, VectorWidth,
};
use crate::ops::cross_entropy::{CrossEntropy, Gradient, Reduction, reduce_spec};
use crate::ops::distill::{Distill, DistillReduction};
use crate::ops::linear_cross_entropy::{
    LinearCrossEntropy, LinearGradients, LinearShape, RowArrays, WindowLimits, reduces_blocks_in_place,
};
use crate::ops::matmul::{ProductPlan, spec as matmul_spec, terms_per_dispatch};
use crate::ops::rows::{plan_rows_on, row_passes, strategy_fits};
use crate::ops::sample::{Sampler, draws_per_dispatch, row_block};
use crate::plan::{DeviceCaps, DeviceProfile, Plan, reads_per_element};
use crate::shape::Shape;
use crate::strategy::Strategy;

/// An op and the options that change what it dispatches, for [`DeviceProfile::explain`]
/// and [`Context::explain`]. `strategy` forces one, as the ops' own `strategy` option
/// does; `None` lets the planner choose.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum PlanRequest {
    /// Softmax, or log-softmax ([`crate::Softmax`]).
    Softmax {
        /// Log-softmax.
        log: bool,
        /// A forced strategy.
        strategy: Option<Strategy>,
    },
    /// The backward of softmax or log-softmax ([`crate::SoftmaxBackward`]).
    SoftmaxBackward {
        /// Of log-softmax.
        log: bool,
        /// A forced strategy.
        strategy: Option<Strategy>,
    },
    /// The fused cross-entropy ([`CrossEntropy`]) with class-index targets (int64, as
    /// PyTorch's) or probabilities.
    CrossEntropy {
        /// The reduction.
        reduction: Reduction,
        /// Where the gradient goes, or none.
        gradient: Gradient,
        /// Probability targets instead of class indices.
        probabilities: bool,
        /// A forced strategy.
        strategy: Option<Strategy>,
    },
    /// The distillation ([`Distill`]).
    Distill {
        /// The reduction.
        reduction: DistillReduction,
        /// Whether the gradient is written.
        gradient: bool,
        /// Whether class targets mask rows (int64).
        masked: bool,
        /// A forced strategy.
        strategy: Option<Strategy>,
    },
    /// The fused linear cross-entropy ([`LinearCrossEntropy`]) of `rows x hidden` hidden
    /// states under a `cols x hidden` classifier (the shape's columns are the classes),
    /// with int64 class targets.
    LinearCrossEntropy {
        /// `D`, the hidden states' features.
        hidden: usize,
        /// The reduction.
        reduction: Reduction,
        /// The gradients computed.
        gradients: LinearGradients,
        /// Whether the classifier has a bias.
        bias: bool,
        /// The bound on the workspace (`None`: the default).
        workspace_bytes: Option<u64>,
    },
    /// Sampling ([`Sampler`]).
    Sample(Sampler),
}

impl PlanRequest {
    /// The op's name, as the command line spells it.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Softmax { log: false, .. } => "softmax",
            Self::Softmax { log: true, .. } => "log_softmax",
            Self::SoftmaxBackward { log: false, .. } => "softmax_backward",
            Self::SoftmaxBackward { log: true, .. } => "log_softmax_backward",
            Self::CrossEntropy { .. } => "cross_entropy",
            Self::Distill { .. } => "distill",
            Self::LinearCrossEntropy { .. } => "linear_cross_entropy",
            Self::Sample(_) => "sample",
        }
    }
}

/// One kind of dispatch an op records, and how many of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// What it does: the kernel's entry point, or the product it computes.
    pub name: String,
    /// How many times the op records it for the whole shape.
    pub dispatches: usize,
}

/// What the linear cross-entropy adds to a [`PlanExplanation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearExplanation {
    /// The side of the block of outputs one matmul workgroup computes (and of the blocks
    /// of classes whose statistics the forward without stored logits keeps per row).
    pub tile: u32,
    /// Rows per window (the last may have fewer).
    pub window_rows: usize,
    /// Windows.
    pub windows: usize,
    /// Bytes of the workspace: the largest buffer the op allocates.
    pub workspace_bytes: u64,
    /// Whether each window's logits are stored (gradients, or a device without the fused
    /// forward), else only their statistics per block of classes.
    pub stores_logits: bool,
    /// Terms one product dispatch sums (`None`: all of them): the driver's loop limit
    /// splits longer sums.
    pub terms_per_dispatch: Option<usize>,
}

/// What an op would dispatch for a shape and a storage type on a device, and why: the
/// answer of [`DeviceProfile::explain`] and [`Context::explain`].
///
/// The row kernel's figures (strategy to `reads_per_element`) describe the op's main
/// kernel: for the linear cross-entropy, the cross-entropy over each window's stored
/// logits, or the fused forward when no logits are stored; for the sampler, its own
/// kernel of one workgroup per row.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PlanExplanation {
    /// The op, as [`PlanRequest::name`] spells it.
    pub op: &'static str,
    /// The shape planned: rows, and the class axis (last).
    pub shape: Shape,
    /// The storage type of the class-axis tensors.
    pub dtype: DType,
    /// The row kernel's strategy.
    pub strategy: Strategy,
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// Rows each workgroup handles.
    pub rows_per_group: u32,
    /// Invocations that share each row.
    pub lanes_per_row: u32,
    /// Rows each invocation takes: 2 where one invocation per row along a strided class
    /// axis (of 16-bit storage and an even number of positions after the axis) takes two
    /// neighbouring rows, whose classes share each word of the output, so that it stores
    /// every word whole, with no atomics; else 1.
    pub rows_per_invocation: u32,
    /// Neighbouring invocations that walk one contiguous run of a row (the whole
    /// workgroup on a GPU, a SIMD slice on a CPU adapter).
    pub walk_width: u32,
    /// Workgroups that share each row: the split strategy's segments (as many as give a
    /// batch of few rows about 512 workgroups, each segment no longer than a cached
    /// module holds), else 1.
    pub segments_per_row: usize,
    /// Elements one invocation loads at a time from each tensor (128-bit accesses, which
    /// the host API and buffers padded to 16 bytes get; 32-bit ones hold 1 f32 or 2
    /// halves, and the same number of cached elements).
    pub packet_elements: u32,
    /// Elements of each class-axis tensor an invocation keeps in registers between its
    /// looks at its share of a row; 0 where the kernel keeps none (CPU adapters).
    pub cached_elements_per_lane: u32,
    /// The most elements one invocation's share of a row (of a segment, for the split)
    /// spans as the kernel's cache test counts it: its packets, plus two of slack for a
    /// row that starts and ends mid-packet. The share is kept when this is at most
    /// `cached_elements_per_lane`.
    pub elements_per_lane: u64,
    /// How many times each element of each class-axis input is read from memory: 1 when
    /// every invocation's share fits its cache, else 2 (the second look streams it again);
    /// the split strategy's two dispatches read 2, or 3 without a cache. The sampler reads
    /// each row once per full pass. `None` where no stored row is read (the linear
    /// cross-entropy's forward without stored logits: each logit is reduced in the tile
    /// that computes it).
    pub reads_per_element: Option<u32>,
    /// Chunks of rows (one row-kernel dispatch, or two for the split, each), from the
    /// device's binding and grid limits; for the linear cross-entropy, its windows.
    pub chunks: usize,
    /// Compute dispatches the op records in all.
    pub dispatches: usize,
    /// The dispatches by kind, in the order the op records them.
    pub passes: Vec<Pass>,
    /// The linear cross-entropy's tile, windows and workspace.
    pub linear: Option<LinearExplanation>,
    /// What this explanation assumes, and what only a real device can tell.
    pub notes: Vec<String>,
}

/// What an explanation is planned against: the device, and the context's choices.
struct Target {
    caps: DeviceCaps,
    keeps_rows: bool,
}

impl DeviceProfile {
    /// What `request` would dispatch for `shape` (the class axis anywhere; last for the
    /// linear cross-entropy and the sampler) in `dtype` on this device, planned as a
    /// context on it plans (rows kept in registers on GPUs, not on CPU adapters), without a
    /// GPU.
    ///
    /// # Errors
    ///
    /// What the op itself would return before recording anything:
    /// [`Error::StrategyUnavailable`] for a forced strategy the op or device lacks,
    /// [`Error::LimitExceeded`] for rows, windows or grids past the device's limits or
    /// modules binding more storage buffers than it allows, [`Error::InvalidOption`] for
    /// bad options or a class axis that is not last where the op needs it last,
    /// [`Error::ShapeOverflow`].
    pub fn explain(&self, request: &PlanRequest, shape: Shape, dtype: DType) -> Result<PlanExplanation> {
        self.explain_with_cached_rows(request, shape, dtype, self.keeps_rows_by_default())
    }

    /// [`DeviceProfile::explain`] with kernels that keep rows in registers (`true`) or not,
    /// as [`Context::with_cached_rows`] sets them.
    ///
    /// # Errors
    ///
    /// As [`DeviceProfile::explain`].
    pub fn explain_with_cached_rows(
        &self,
        request: &PlanRequest,
        shape: Shape,
        dtype: DType,
        cached_rows: bool,
    ) -> Result<PlanExplanation> {
        let mut explained =
            explain(&Target { caps: self.caps(), keeps_rows: cached_rows }, request, shape, dtype)?;
        explained.notes.push(format!(
            "planned from a profile of {} ({:?}, {:?}): what the driver really reports, and the speed, only \
             the device can tell",
            self.name, self.backend, self.device_type
        ));
        Ok(explained)
    }
}

impl Context {
    /// What `request` would dispatch for `shape` (the class axis anywhere; last for the
    /// linear cross-entropy and the sampler) in `dtype` on this context's device, with its
    /// settings ([`Context::with_cached_rows`]); records nothing. On a context that
    /// autotunes, the strategy an op runs may differ: it is timed on the device at the first
    /// call.
    ///
    /// # Errors
    ///
    /// As [`DeviceProfile::explain`].
    pub fn explain(&self, request: &PlanRequest, shape: Shape, dtype: DType) -> Result<PlanExplanation> {
        let mut explained =
            explain(&Target { caps: *self.caps(), keeps_rows: self.cached_rows() }, request, shape, dtype)?;
        if self.autotune() {
            explained.notes.push(
                "this context autotunes: where the strategy is not forced, the op times the strategies on the \
                 device at its first call and may run another"
                    .to_owned(),
            );
        }
        Ok(explained)
    }
}

/// The explanation of `request` on `target`.
fn explain(target: &Target, request: &PlanRequest, shape: Shape, dtype: DType) -> Result<PlanExplanation> {
    let takes_strided = !matches!(request, PlanRequest::LinearCrossEntropy { .. } | PlanRequest::Sample(_));
    if !shape.is_row_major() && !takes_strided {
        return Err(Error::InvalidOption {
            option: "shape",
            problem: format!("{} takes the class axis last (inner == 1)", request.name()),
        });
    }
    shape.len()?;
    let name = request.name();
    match *request {
        PlanRequest::Softmax { strategy, .. } => {
            // As `Softmax::plan_for`: the input and the output per chunk.
            let row_bytes = [shape.cols as u64 * dtype.size(); 2];
            let rows = RowOp { plan_kernel: OpKernel::Softmax, kernel: OpKernel::Softmax, forced: strategy };
            let main = rows.explain(target, shape, dtype, &row_bytes)?;
            Ok(main.finish(name, shape, dtype, Vec::new(), Vec::new()))
        }
        PlanRequest::SoftmaxBackward { strategy, .. } => {
            // As `SoftmaxBackward::plan_for`: y, dy and dx per chunk.
            let row_bytes = [shape.cols as u64 * dtype.size(); 3];
            let kernel = OpKernel::SoftmaxBackward;
            let rows = RowOp { plan_kernel: kernel, kernel, forced: strategy };
            let main = rows.explain(target, shape, dtype, &row_bytes)?;
            Ok(main.finish(name, shape, dtype, Vec::new(), Vec::new()))
        }
        PlanRequest::CrossEntropy { reduction, gradient, probabilities, strategy } => {
            let mut op = CrossEntropy::new().reduction(reduction).gradient(gradient);
            if let Some(strategy) = strategy {
                op = op.strategy(strategy);
            }
            op.check_options()?;
            explain_cross_entropy(target, &op, probabilities, strategy, shape, dtype)
        }
        PlanRequest::Distill { reduction, gradient, masked, strategy } => {
            let op = Distill::new().reduction(reduction).gradient(gradient);
            op.check_options()?;
            explain_distill(target, reduction, gradient, masked, strategy, shape, dtype)
        }
        PlanRequest::LinearCrossEntropy { hidden, reduction, gradients, bias, workspace_bytes } => {
            let mut op = LinearCrossEntropy::new().reduction(reduction).gradients(gradients);
            if let Some(bytes) = workspace_bytes {
                op = op.workspace_bytes(bytes);
            }
            explain_linear(target, &op, LinearShape::new(shape.rows, hidden, shape.cols), bias, dtype)
        }
        PlanRequest::Sample(sampler) => explain_sample(target, &sampler, shape, dtype),
    }
}

/// A row op's main kernel: the kernel it plans with (the distillation plans with the one
/// that binds the most), the kernel it records, and the forced strategy.
struct RowOp {
    plan_kernel: OpKernel,
    kernel: OpKernel,
    forced: Option<Strategy>,
}

/// A row op's main kernel, planned.
struct RowPart {
    plan: Plan,
    spec: KernelSpec,
    /// Dispatches per chunk: the kernel's entry points, and the edge pass.
    entries: &'static [&'static str],
    edges: bool,
    reads: u32,
    elements_per_lane: u64,
}

impl RowOp {
    /// Plans the kernel as [`crate::ops::rows::plan_rows`] does, and what
    /// [`crate::ops::rows::encode_rows`] records from that plan.
    fn explain(&self, target: &Target, shape: Shape, dtype: DType, row_bytes: &[u64]) -> Result<RowPart> {
        let caps = &target.caps;
        let plan =
            plan_rows_on(caps, (self.plan_kernel, dtype), shape, self.forced, row_bytes, target.keeps_rows)?;
        let requested = KernelSpec {
            op: self.kernel,
            strategy: plan.strategy,
            dtype,
            vector: VectorWidth::Vec4,
            cached: target.keeps_rows,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
        };
        let spec = crate::ops::rows::planned_spec(requested, &plan, shape);
        // The pipeline cache refuses a module that binds more than the device allows.
        kernels::check_storage_bindings(spec.storage_bindings(), caps.max_storage_buffers_per_stage)?;
        let passes = row_passes(spec, shape.cols)?;
        let (reads, elements_per_lane) = reads_per_element(&spec, &plan, shape.cols);
        Ok(RowPart { plan, spec, entries: passes.entries, edges: passes.edges, reads, elements_per_lane })
    }
}

impl RowPart {
    /// The dispatches of the row kernel over every chunk, by kind.
    fn passes(&self) -> Vec<Pass> {
        let chunks = self.plan.chunks.len();
        let mut passes: Vec<Pass> =
            self.entries.iter().map(|&e| Pass { name: e.to_owned(), dispatches: chunks }).collect();
        if self.edges {
            passes.push(Pass { name: kernels::FIX_EDGES.to_owned(), dispatches: chunks });
        }
        passes
    }

    /// The explanation, with the passes `before` and `after` the row kernel's.
    fn finish(
        &self,
        op: &'static str,
        shape: Shape,
        dtype: DType,
        before: Vec<Pass>,
        after: Vec<Pass>,
    ) -> PlanExplanation {
        let passes: Vec<Pass> =
            before.into_iter().chain(self.passes()).chain(after).filter(|p| p.dispatches > 0).collect();
        let mut notes = vec![
            if self.spec.strided {
                "along a strided class axis each element is gathered and scattered by itself (32-bit \
             accesses), neighbouring invocations on neighbouring positions"
            } else {
                "128-bit accesses assumed (the host API's buffers, and any padded to 16 bytes); a tensor \
             without room for them takes 32-bit accesses, whose cache holds as many elements"
            }
            .to_owned(),
        ];
        if !self.spec.cached && self.plan.strategy == Strategy::WorkgroupPerRow && self.reads > 1 {
            notes.push(
                "rows wider than the widest workgroup's registers hold are streamed twice: each \
                 workgroup walks its row again right after its first walk, in the same order, so \
                 that the second read finds the row in L2 while the resident workgroups' rows fit \
                 there (a few MiB: hundreds of rows of 32k f32)"
                    .to_owned(),
            );
        }
        if self.spec.group.subgroup_tree && self.spec.needs_subgroups() {
            notes.push(
                "the workgroup merges its shares through subgroup shuffles, then a tree over one \
                 share per subgroup"
                    .to_owned(),
            );
        }
        if self.spec.paired && self.spec.op.output_tensor().is_some() {
            notes.push(
                "each invocation takes two neighbouring rows, whose classes share every 16-bit word \
                 of the output, and stores each word whole"
                    .to_owned(),
            );
        } else if self.spec.atomic_tensor(true) && self.spec.op.output_tensor().is_some() {
            notes.push(
                "along this strided class axis neighbouring rows share each 16-bit word of the output, \
                 and each element is stored by two atomic operations on its half (an even number of \
                 positions after the axis, on one invocation per row, stores whole words instead)"
                    .to_owned(),
            );
        }
        if self.reads == 2 && self.spec.op.output_tensor().is_none() {
            notes.push(
                "this kernel writes no class-axis tensor: its second walk of an uncached share feeds \
                 nothing, and a driver's compiler may drop those loads (1 read)"
                    .to_owned(),
            );
        }
        PlanExplanation {
            op,
            shape,
            dtype,
            strategy: self.plan.strategy,
            workgroup_size: self.spec.workgroup_size(),
            rows_per_group: self.plan.rows_per_group,
            lanes_per_row: self.plan.lanes_per_row,
            rows_per_invocation: if self.plan.paired { 2 } else { 1 },
            // What each strategy's WGSL passes `walk_of` (see `reads_per_element`).
            walk_width: match self.plan.strategy {
                Strategy::ThreadPerRow => 1,
                Strategy::SubgroupPerRow => self.plan.lanes_per_row,
                _ => self.plan.walk_width.min(self.spec.workgroup_size()),
            },
            segments_per_row: self.plan.segments,
            packet_elements: self.spec.packet(),
            cached_elements_per_lane: self.spec.cache_packets() * self.spec.packet(),
            elements_per_lane: self.elements_per_lane,
            reads_per_element: Some(self.reads),
            chunks: self.plan.chunks.len(),
            dispatches: passes.iter().map(|p| p.dispatches).sum(),
            passes,
            linear: None,
            notes,
        }
    }
}

/// Counts the cross-entropy's passes over rows as its `encode` records them: the
/// reductions (`record_reductions`: one dispatch per chunk, and a combine).
fn reductions(name: &str, chunks: usize, combine: bool) -> Pass {
    Pass { name: name.to_owned(), dispatches: chunks + usize::from(combine) }
}

/// The cross-entropy's kernel on a device of `caps`: the packed one where the device
/// cannot bind the other's modules, as `CrossEntropy::kernel_on` chooses it
/// (`ops::rows::takes_fallback`).
fn cross_entropy_kernel(caps: &DeviceCaps, op: &CrossEntropy, probabilities: bool) -> OpKernel {
    let wide = op.kernel(probabilities, false);
    let takes_fallback = wide.decl().fallback.is_some()
        && !wide.strategies().iter().all(|&s| strategy_fits(caps, wide, s, DType::BF16));
    if takes_fallback { op.kernel(probabilities, true) } else { wide }
}

fn explain_cross_entropy(
    target: &Target,
    op: &CrossEntropy,
    probabilities: bool,
    forced: Option<Strategy>,
    shape: Shape,
    dtype: DType,
) -> Result<PlanExplanation> {
    let caps = &target.caps;
    let kernel = cross_entropy_kernel(caps, op, probabilities);
    // As `CrossEntropy::row_bytes`: the logits (and gradient, and probability targets),
    // and at most two words each of the per-row arrays.
    let row_bytes = [shape.cols as u64 * dtype.size(), 8];
    let main = RowOp { plan_kernel: kernel, kernel, forced }.explain(target, shape, dtype, &row_bytes)?;
    let reduction = op.get_reduction();
    if let Some(limit) = caps.max_loop_iterations {
        // As `CrossEntropy::plan_for`: one invocation of the reductions walks rows / 256.
        let iterations = u64::try_from(shape.rows.div_ceil(256)).unwrap_or(u64::MAX) + 8;
        if reduction != Reduction::None && iterations >= limit {
            return Err(Error::LimitExceeded {
                limit: "loop iterations per invocation (llvmpipe)",
                required: iterations,
                available: limit,
            });
        }
    }
    let targets = if probabilities { TargetsKind::Probabilities } else { TargetsKind::Classes };
    if reduction != Reduction::None {
        kernels::check_storage_bindings(
            reduce_spec(targets).storage_bindings(),
            caps.max_storage_buffers_per_stage,
        )?;
    }
    // As `CrossEntropy::encode_unchecked`: the mean's divisor over class targets before
    // the fused kernel, the mean or sum after it.
    let chunks = if shape.is_empty() { 0 } else { main.plan.chunks.len() };
    let divisor = reduction == Reduction::Mean && !probabilities;
    let mut before = Vec::new();
    let mut after = Vec::new();
    if divisor && chunks > 0 {
        before.push(reductions("total_weight", chunks, false));
        // One chunk's pass writes the whole divisor itself.
        before.push(reductions("combine_total_weight", 0, chunks > 1));
    }
    let folds = op.folds_reduction(caps, kernel, &main.plan, shape, false);
    if reduction != Reduction::None && chunks > 0 && !folds {
        after.push(reductions("reduce_rows", chunks, false));
        after.push(reductions("finish", 0, true));
    }
    let mut explained = main.finish("cross_entropy", shape, dtype, before, after);
    if folds {
        explained.notes.push(
            "the mean or sum over rows is folded into the row kernel: its last workgroup to finish \
             sums the row losses in a fixed order"
                .to_owned(),
        );
    }
    explained.notes.push(
        "a z-loss buffer of its own (the GPU-resident API's CrossEntropyBuffers::with_z_loss) adds one \
         dispatch per chunk, and one more with a reduction, and keeps the reduction out of the row kernel"
            .to_owned(),
    );
    Ok(explained)
}

fn explain_distill(
    target: &Target,
    reduction: DistillReduction,
    gradient: bool,
    masked: bool,
    forced: Option<Strategy>,
    shape: Shape,
    dtype: DType,
) -> Result<PlanExplanation> {
    let caps = &target.caps;
    // As `Distill::plan_for`: planned for the kernel with the gradient (it binds the most),
    // over the student, teacher and gradient, int64 targets, row losses and scales.
    let tensor = shape.cols as u64 * dtype.size();
    let row_bytes = [tensor, tensor, tensor, 8, 4, 4];
    let rows = RowOp {
        plan_kernel: OpKernel::Distill { gradient: true },
        kernel: OpKernel::Distill { gradient },
        forced,
    };
    // As `Distill::encode`: the reductions' module must bind too.
    kernels::check_storage_bindings(
        reduce_spec(TargetsKind::Classes).storage_bindings(),
        caps.max_storage_buffers_per_stage,
    )?;
    let main = rows.explain(target, shape, dtype, &row_bytes)?;
    let chunks = if shape.is_empty() { 0 } else { main.plan.chunks.len() };
    let mut before = Vec::new();
    let mut after = Vec::new();
    if masked && reduction == DistillReduction::BatchMean && chunks > 0 {
        before.push(reductions("total_weight", chunks, false));
        before.push(reductions("combine_total_weight", 0, true));
    }
    if reduction != DistillReduction::None && chunks > 0 {
        after.push(reductions("reduce_rows", chunks, false));
        after.push(reductions("finish", 0, true));
    }
    Ok(main.finish("distill", shape, dtype, before, after))
}

/// Dispatches of the product `m x n x k` on `caps`'s device (as `record_product` plans
/// them).
fn product_dispatches(caps: &DeviceCaps, (m, n, k): (usize, usize, usize)) -> usize {
    ProductPlan::of(m, n, k, caps.max_loop_iterations).dispatches(k)
}

fn explain_linear(
    target: &Target,
    op: &LinearCrossEntropy,
    shape: LinearShape,
    bias: bool,
    dtype: DType,
) -> Result<PlanExplanation> {
    let caps = &target.caps;
    op.get_cross_entropy().check_options()?;
    let gradients = op.get_gradients();
    let gradients = LinearGradients { bias: gradients.bias && bias, ..gradients };
    let loss =
        op.get_cross_entropy().gradient(if gradients.any() { Gradient::InPlace } else { Gradient::Skip });
    // As `LinearCrossEntropy::encode_windows`: every pass's module must bind.
    let window_loss = KernelSpec {
        op: cross_entropy_kernel(caps, &CrossEntropy::new().gradient(Gradient::InPlace), false),
        strategy: Strategy::ThreadPerRow,
        dtype: DType::F32,
        vector: VectorWidth::Scalar,
        cached: false,
        strided: false,
        paired: false,
        group: GroupShape::DEFAULT,
    };
    for spec in [reduce_spec(TargetsKind::Classes), matmul_spec(dtype, VectorWidth::Scalar), window_loss] {
        kernels::check_storage_bindings(spec.storage_bindings(), caps.max_storage_buffers_per_stage)?;
    }
    let stores_logits = gradients.any() || !reduces_blocks_in_place(caps, shape.hidden);
    let arrays = RowArrays { target_bytes: 8, hidden_row_bytes: shape.hidden as u64 * dtype.size() };
    let windows = op.plan_windows(shape, WindowLimits::of(caps), arrays, stores_logits)?;
    let per_dispatch = terms_per_dispatch(caps.max_loop_iterations);
    let (rows, d, v) = (shape.rows, shape.hidden, shape.classes);
    let half = dtype != DType::F32;
    let reduced = op.get_cross_entropy().get_reduction() != Reduction::None;

    // The windows: all but the last have `window_rows` rows.
    let mut window_sizes: Vec<(usize, usize)> = Vec::new(); // (rows, how many windows)
    if rows > 0 && v > 0 {
        let full = rows / windows.window_rows;
        if full > 0 {
            window_sizes.push((windows.window_rows, full));
        }
        if rows % windows.window_rows != 0 {
            window_sizes.push((rows % windows.window_rows, 1));
        }
    }
    let mut passes: Vec<Pass> = Vec::new();
    let mut add = |name: &str, dispatches: usize| {
        if dispatches == 0 {
            return;
        }
        if let Some(pass) = passes.iter_mut().find(|p| p.name == name) {
            pass.dispatches += dispatches;
        } else {
            passes.push(Pass { name: name.to_owned(), dispatches });
        }
    };
    if op.get_cross_entropy().get_reduction() == Reduction::Mean && rows > 0 && v > 0 {
        add("total_weight", 1);
        add("combine_total_weight", 1);
    }
    let mut main: Option<RowPart> = None;
    for &(n, count) in &window_sizes {
        if stores_logits {
            add("logits = H W^T (+ b)", count * product_dispatches(caps, (n, v, d)));
            // As `CrossEntropy::encode_batch_window`: the window's own plan, over f32
            // logits in the workspace (128-bit accesses: it has room past the last row).
            let window = Shape::new(n, v);
            let kernel = cross_entropy_kernel(caps, &loss, false);
            let part = RowOp { plan_kernel: kernel, kernel, forced: None }.explain(
                target,
                window,
                DType::F32,
                &[v as u64 * 4, 8],
            )?;
            for pass in part.passes() {
                add(&format!("cross-entropy {}", pass.name), count * pass.dispatches);
            }
            main.get_or_insert(part);
            if gradients.hidden {
                add("dH = G W", count * product_dispatches(caps, (n, d, v)));
                if half {
                    add("dH to 16 bits", count);
                }
            }
            if gradients.classifier {
                add("dW += G^T H", count * product_dispatches(caps, (v, d, n)));
            }
            if gradients.bias {
                add("db += column sums of G", count);
            }
        } else {
            add(kernels::LINEAR_STATS, count);
            add(kernels::LINEAR_FINISH, count);
        }
    }
    if rows > 0 && v > 0 {
        if gradients.classifier && half {
            add("dW to 16 bits", 1);
        }
        if gradients.bias && half {
            add("db to 16 bits", 1);
        }
        if reduced {
            add("reduce_rows", 1);
            add("finish", 1);
        }
    }
    let linear = LinearExplanation {
        tile: MATMUL_TILE,
        window_rows: windows.window_rows,
        windows: windows.windows,
        workspace_bytes: windows.workspace_bytes,
        stores_logits: windows.stores_logits,
        terms_per_dispatch: (per_dispatch != usize::MAX).then_some(per_dispatch),
    };
    let mut notes =
        vec!["int64 class targets assumed (PyTorch's): they set where windows may start".to_owned()];
    let dh_window = (windows.window_rows.min(rows), d, v);
    if let (true, true, ProductPlan::Slices { slices, slice_terms }) =
        (stores_logits, gradients.hidden, ProductPlan::of(dh_window.0, d, v, caps.max_loop_iterations))
    {
        notes.push(format!(
            "dH = G W of a window ({} x {d}) has too few {MATMUL_TILE}x{MATMUL_TILE} blocks to fill the device: \
             its {v} terms are split into {slices} slices of {slice_terms}, each block's slices on workgroups \
             of their own, and the partial products added in slice order",
            dh_window.0
        ));
    }
    let base = match main {
        Some(part) => part.finish("linear_cross_entropy", shape.logits(), DType::F32, Vec::new(), Vec::new()),
        None => {
            // The fused forward: the split strategy's shape, each logit reduced in its tile.
            let spec = KernelSpec {
                op: OpKernel::LinearCrossEntropy,
                strategy: Strategy::SplitRow,
                dtype,
                vector: VectorWidth::Scalar,
                cached: false,
                strided: false,
                paired: false,
                group: GroupShape::DEFAULT,
            };
            notes.push(format!(
                "no logits stored: each {MATMUL_TILE}x{MATMUL_TILE} block of logits is reduced to its rows' \
                 statistics in the workgroup that computes it; H and W are read once per block"
            ));
            PlanExplanation {
                op: "linear_cross_entropy",
                shape: shape.logits(),
                dtype,
                strategy: Strategy::SplitRow,
                workgroup_size: spec.workgroup_size(),
                rows_per_group: MATMUL_TILE,
                lanes_per_row: spec.workgroup_size() / MATMUL_TILE,
                walk_width: spec.workgroup_size(),
                segments_per_row: shape.classes.div_ceil(MATMUL_TILE as usize),
                rows_per_invocation: 1,
                packet_elements: spec.packet(),
                cached_elements_per_lane: 0,
                elements_per_lane: 0,
                reads_per_element: None,
                chunks: windows.windows,
                dispatches: 0,
                passes: Vec::new(),
                linear: None,
                notes: Vec::new(),
            }
        }
    };
    notes.extend(base.notes);
    Ok(PlanExplanation {
        op: "linear_cross_entropy",
        dtype,
        chunks: windows.windows,
        dispatches: passes.iter().map(|p| p.dispatches).sum(),
        passes,
        linear: Some(linear),
        notes,
        ..base
    })
}

fn explain_sample(target: &Target, sampler: &Sampler, shape: Shape, dtype: DType) -> Result<PlanExplanation> {
    let caps = &target.caps;
    sampler.check_options()?;
    Sampler::check_shape(shape)?;
    let draws = (shape.rows as u64).saturating_mul(sampler.num_samples as u64);
    if u32::try_from(draws).is_err() {
        return Err(Error::InvalidOption {
            option: "num_samples",
            problem: format!(
                "{} rows x {} draws is more than the sampler indexes (u32)",
                shape.rows, sampler.num_samples
            ),
        });
    }
    let runs = shape.rows > 0 && sampler.num_samples > 0;
    if runs {
        crate::plan::spread_grid(shape.rows as u64, caps.max_workgroups_per_dimension)?;
    }
    // As `Sampler::record`: the statistics, the threshold searches in as few dispatches
    // as the driver's loop limit allows, then the draws, split the same way.
    let per_dispatch = draws_per_dispatch(shape.cols, caps.max_loop_iterations);
    let draw_dispatches = sampler.num_samples.div_ceil(per_dispatch.max(1));
    // Blocks of rows whose logits fit one binding, each with every step.
    let blocks = if runs { shape.rows.div_ceil(row_block(shape, dtype, false, caps)?) } else { 0 };
    let mut passes = Vec::new();
    if runs {
        passes.push(Pass { name: "statistics".to_owned(), dispatches: blocks });
        let searches = sampler.search_dispatches(0, shape.cols, caps.max_loop_iterations).len();
        passes.push(Pass { name: "top-k and top-p thresholds".to_owned(), dispatches: blocks * searches });
        passes.push(Pass { name: "draws".to_owned(), dispatches: blocks * draw_dispatches });
    }
    let spec = KernelSpec {
        op: OpKernel::Sample,
        strategy: Strategy::WorkgroupPerRow,
        dtype,
        vector: VectorWidth::Scalar,
        cached: false,
        strided: false,
        paired: false,
        group: GroupShape::DEFAULT,
    };
    kernels::check_storage_bindings(spec.storage_bindings(), caps.max_storage_buffers_per_stage)?;
    Ok(PlanExplanation {
        op: "sample",
        shape,
        dtype,
        strategy: Strategy::WorkgroupPerRow,
        workgroup_size: SAMPLE_WORKGROUP_SIZE,
        rows_per_group: 1,
        lanes_per_row: SAMPLE_WORKGROUP_SIZE,
        walk_width: SAMPLE_WORKGROUP_SIZE,
        segments_per_row: 1,
        rows_per_invocation: 1,
        packet_elements: spec.packet(),
        cached_elements_per_lane: 0,
        elements_per_lane: (shape.cols as u64).div_ceil(u64::from(SAMPLE_WORKGROUP_SIZE)),
        reads_per_element: Some(u32::try_from(sampler.passes()).unwrap_or(u32::MAX)),
        chunks: blocks,
        dispatches: passes.iter().map(|p| p.dispatches).sum(),
        passes,
        linear: None,
        notes: vec![
            "the sampler's own kernel: one workgroup per row; each full pass reads the row once (top-k and \
             top-p each select their key 4 bits a pass, 8 passes at most: once 512 keys or fewer remain \
             candidates, one pass gathers and sorts them and the search ends; reads per element counts the \
             worst case)"
                .to_owned(),
        ],
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wgsl_eval;
