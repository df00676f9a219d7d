//! Evaluating the WGSL's own cache test on the CPU, to check the host's twin of it
//! ([`super::reads_per_element`]) against the composed modules: a tiny
//! interpreter of naga's IR for pure integer functions (literals, constants, overrides,
//! arguments, a uniform's fields, arithmetic, comparisons, `min`/`max`, calls, locals,
//! `if` and `return`), enough for `run_packets`, `row_cached`, `segment_cached` and
//! `walk_width`. Anything else panics, naming what it met: a change to those functions
//! that leaves this subset shows up as a failing test, not as a silent pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure

use std::collections::HashMap;

use naga::{BinaryOperator, Expression, Function, Handle, Literal, MathFunction, Module, Statement};

use crate::dtype::DType;
use crate::kernels::{GroupShape, KernelSpec, OpKernel, VectorWidth, compose};
use crate::plan::{DeviceCaps, Plan};
use crate::plan::{reads_per_element, run_packets, share_packets};
use crate::strategy::Strategy;

/// A WGSL value: the u32, i32 and bool scalars these functions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    U32(u32),
    I32(i32),
    Bool(bool),
}

impl Value {
    fn u32(self) -> u32 {
        match self {
            Self::U32(v) => v,
            other => panic!("expected a u32, got {other:?}"),
        }
    }

    fn bool(self) -> bool {
        match self {
            Self::Bool(v) => v,
            other => panic!("expected a bool, got {other:?}"),
        }
    }
}

/// A parsed module, and the values of its overrides and of its uniform's fields.
struct Evaluator {
    module: Module,
    overrides: HashMap<&'static str, u32>,
    uniforms: HashMap<&'static str, u32>,
}

/// A function's evaluation: its arguments, call results and locals.
struct Frame<'f> {
    function: &'f Function,
    args: Vec<Value>,
    results: HashMap<Handle<Expression>, Value>,
    locals: HashMap<Handle<naga::LocalVariable>, Value>,
}

impl Evaluator {
    fn new(source: &str) -> Self {
        let module =
            naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
        Self { module, overrides: HashMap::new(), uniforms: HashMap::new() }
    }

    /// Calls the module's function `name`.
    fn call(&self, name: &str, args: &[Value]) -> Value {
        let (_, function) = self
            .module
            .functions
            .iter()
            .find(|(_, f)| f.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no function {name}"));
        self.run(function, args.to_vec())
    }

    fn run(&self, function: &Function, args: Vec<Value>) -> Value {
        let mut frame = Frame { function, args, results: HashMap::new(), locals: HashMap::new() };
        for (handle, local) in function.local_variables.iter() {
            if let Some(init) = local.init {
                let value = self.eval(&mut frame, init);
                frame.locals.insert(handle, value);
            }
        }
        self.block(&mut frame, &function.body).expect("a function without a return value")
    }

    /// Runs a block; `Some` when it returned.
    fn block(&self, frame: &mut Frame<'_>, block: &naga::Block) -> Option<Value> {
        for statement in block.iter() {
            match statement {
                Statement::Emit(_) => {}
                Statement::Block(inner) => {
                    if let Some(v) = self.block(frame, inner) {
                        return Some(v);
                    }
                }
                Statement::If { condition, accept, reject } => {
                    let taken = if self.eval(frame, *condition).bool() { accept } else { reject };
                    if let Some(v) = self.block(frame, taken) {
                        return Some(v);
                    }
                }
                Statement::Return { value } => return Some(self.eval(frame, value.expect("a value"))),
                Statement::Call { function, arguments, result } => {
                    let args: Vec<Value> = arguments.iter().map(|&a| self.eval(frame, a)).collect();
                    let value = self.run(&self.module.functions[*function], args);
                    if let Some(result) = result {
                        frame.results.insert(*result, value);
                    }
                }
                Statement::Store { pointer, value } => {
                    let Expression::LocalVariable(local) = frame.function.expressions[*pointer] else {
                        panic!("a store to something other than a local");
                    };
                    let value = self.eval(frame, *value);
                    frame.locals.insert(local, value);
                }
                other => panic!("unsupported statement {other:?}"),
            }
        }
        None
    }

    fn eval(&self, frame: &mut Frame<'_>, handle: Handle<Expression>) -> Value {
        let expression = frame.function.expressions[handle].clone();
        match expression {
            Expression::FunctionArgument(i) => frame.args[i as usize],
            Expression::CallResult(_) => frame.results[&handle],
            Expression::Load { pointer } => match frame.function.expressions[pointer] {
                Expression::LocalVariable(local) => frame.locals[&local],
                Expression::AccessIndex { base, index } => {
                    let Expression::GlobalVariable(global) = frame.function.expressions[base] else {
                        panic!("a load of something other than a uniform's field");
                    };
                    let ty = self.module.global_variables[global].ty;
                    let naga::TypeInner::Struct { members, .. } = &self.module.types[ty].inner else {
                        panic!("a uniform that is not a struct");
                    };
                    let name = members[index as usize].name.as_deref().expect("a named field");
                    Value::U32(
                        *self.uniforms.get(name).unwrap_or_else(|| panic!("no value for params.{name}")),
                    )
                }
                ref other => panic!("unsupported load of {other:?}"),
            },
            Expression::Binary { op, left, right } => {
                let (l, r) = (self.eval(frame, left), self.eval(frame, right));
                binary(op, l, r)
            }
            Expression::Math { fun, arg, arg1, .. } => {
                let a = self.eval(frame, arg).u32();
                let b = self.eval(frame, arg1.expect("a second argument")).u32();
                match fun {
                    MathFunction::Min => Value::U32(a.min(b)),
                    MathFunction::Max => Value::U32(a.max(b)),
                    other => panic!("unsupported math function {other:?}"),
                }
            }
            Expression::Select { condition, accept, reject } => {
                if self.eval(frame, condition).bool() {
                    self.eval(frame, accept)
                } else {
                    self.eval(frame, reject)
                }
            }
            other => self.eval_global_like(&other),
        }
    }

    /// Literals, constants and overrides, wherever they appear.
    fn eval_global_like(&self, expression: &Expression) -> Value {
        match *expression {
            Expression::Literal(literal) => match literal {
                Literal::U32(v) => Value::U32(v),
                Literal::I32(v) => Value::I32(v),
                Literal::Bool(v) => Value::Bool(v),
                Literal::AbstractInt(v) => Value::U32(u32::try_from(v).expect("a u32")),
                other => panic!("unsupported literal {other:?}"),
            },
            Expression::Constant(constant) => {
                let init = self.module.constants[constant].init;
                self.eval_global(init)
            }
            Expression::Override(handle) => {
                let o = &self.module.overrides[handle];
                let name = o.name.as_deref().expect("a named override");
                match self.overrides.get(name) {
                    Some(&v) => Value::U32(v),
                    None => self.eval_global(o.init.expect("an override with a default")),
                }
            }
            ref other => panic!("unsupported expression {other:?}"),
        }
    }

    fn eval_global(&self, handle: Handle<Expression>) -> Value {
        match self.module.global_expressions[handle] {
            Expression::Binary { op, left, right } => {
                binary(op, self.eval_global(left), self.eval_global(right))
            }
            ref other => self.eval_global_like(other),
        }
    }
}

/// WGSL's u32 arithmetic (wrapping, division by zero is a failed test) and comparisons.
fn binary(op: BinaryOperator, l: Value, r: Value) -> Value {
    use BinaryOperator as B;
    match (l, r) {
        (Value::U32(a), Value::U32(b)) => match op {
            B::Add => Value::U32(a.wrapping_add(b)),
            B::Subtract => Value::U32(a.wrapping_sub(b)),
            B::Multiply => Value::U32(a.wrapping_mul(b)),
            B::Divide => Value::U32(a.checked_div(b).expect("division by zero")),
            B::Modulo => Value::U32(a.checked_rem(b).expect("division by zero")),
            B::Equal => Value::Bool(a == b),
            B::NotEqual => Value::Bool(a != b),
            B::Less => Value::Bool(a < b),
            B::LessEqual => Value::Bool(a <= b),
            B::Greater => Value::Bool(a > b),
            B::GreaterEqual => Value::Bool(a >= b),
            other => panic!("unsupported u32 operator {other:?}"),
        },
        (Value::Bool(a), Value::Bool(b)) => match op {
            B::LogicalAnd => Value::Bool(a && b),
            B::LogicalOr => Value::Bool(a || b),
            B::Equal => Value::Bool(a == b),
            B::NotEqual => Value::Bool(a != b),
            other => panic!("unsupported bool operator {other:?}"),
        },
        other => panic!("unsupported operands {other:?}"),
    }
}

fn spec(strategy: Strategy, dtype: DType, vector: VectorWidth, cached: bool) -> KernelSpec {
    KernelSpec {
        op: OpKernel::Softmax,
        strategy,
        dtype,
        vector,
        cached,
        strided: false,
        paired: false,
        group: GroupShape::DEFAULT,
    }
}

/// Widths around every threshold of the cache test, and the list.
const WIDTHS: [u32; 34] = [
    1, 7, 10, 23, 24, 27, 28, 100, 500, 1000, 1007, 1008, 1019, 1020, 1024, 1025, 4096, 4097, 8175, 8176,
    8183, 8184, 8187, 8188, 8192, 16384, 16385, 32760, 32767, 32768, 65535, 65536, 128_256, 262_144,
];

#[test]
fn the_hosts_cache_test_is_the_wgsls() {
    // (lanes, walk width) as each strategy passes them: a thread (1, 1), a subgroup's
    // lanes per row (n, n), a workgroup (its size, its walk width).
    let shares: [(u32, u32); 12] = [
        (1, 1),
        (2, 2),
        (4, 4),
        (8, 8),
        (16, 16),
        (32, 32),
        (256, 256),
        (256, 8),
        (256, 1),
        (512, 512),
        (1024, 1024),
        (1024, 8),
    ];
    for dtype in DType::ALL {
        for vector in VectorWidth::ALL {
            for cached in [false, true] {
                let spec = spec(Strategy::WorkgroupPerRow, dtype, vector, cached);
                let module = compose(spec).unwrap();
                let mut eval = Evaluator::new(&module.source);
                let packet = u64::from(spec.packet());
                let cache = u64::from(spec.cache_packets());
                for cols in WIDTHS {
                    eval.uniforms.insert("cols", cols);
                    for (lanes, width) in shares {
                        let wgsl = eval.call("row_cached", &[Value::U32(lanes), Value::U32(width)]).bool();
                        let packets =
                            share_packets(u64::from(cols), packet, u64::from(lanes), u64::from(width));
                        let host = cache != 0 && packets <= cache;
                        assert_eq!(wgsl, host, "{} cols {cols}, lanes {lanes}, width {width}", spec.label());
                        let count = u64::from(cols) / packet + 2;
                        let run = eval
                            .call(
                                "run_packets",
                                &[
                                    Value::U32(u32::try_from(count).unwrap()),
                                    Value::U32(lanes),
                                    Value::U32(width),
                                ],
                            )
                            .u32();
                        assert_eq!(u64::from(run), run_packets(count, u64::from(lanes), u64::from(width)));
                    }
                }
            }
        }
    }
}

#[test]
fn the_hosts_split_cache_test_is_the_wgsls() {
    // Rows of few and many segments, a segment's packets just under, at and over what the
    // cache holds (256 lanes of 9 or 33 packets), rows of whole packets and not.
    let rows_and_segments = [
        (1usize << 20, 256usize),
        (1 << 20, 30),
        (1 << 20, 114),
        (1 << 20, 113),
        (73_728, 8),
        (73_729, 8),
        (73_730, 9),
        (300_007, 65),
        (4_099, 1),
        (9_000, 1),
    ];
    let mut kept = [0; 2];
    for dtype in DType::ALL {
        for vector in VectorWidth::ALL {
            for cached in [false, true] {
                let spec = spec(Strategy::SplitRow, dtype, vector, cached);
                let module = compose(spec).unwrap();
                let mut eval = Evaluator::new(&module.source);
                for (cols, segments) in rows_and_segments {
                    eval.uniforms.insert("cols", u32::try_from(cols).unwrap());
                    eval.uniforms.insert("segments", u32::try_from(segments).unwrap());
                    for walk in [256, 8, 1] {
                        eval.overrides.insert("WALK_WIDTH", walk);
                        let wgsl = eval.call("segment_cached", &[]).bool();
                        let width = eval.call("walk_width", &[]).u32();
                        assert_eq!(width, walk.min(spec.workgroup_size()));
                        let plan = Plan {
                            strategy: Strategy::SplitRow,
                            group: spec.group,
                            rows_per_group: 1,
                            lanes_per_row: 256,
                            walk_width: walk,
                            segments,
                            paired: false,
                            chunks: Vec::new(),
                        };
                        let (reads, _) = reads_per_element(&spec, &plan, cols);
                        let what = format!("{} walk {walk}, {cols} cols in {segments}", spec.label());
                        assert_eq!(reads, if wgsl { 2 } else { 3 }, "{what}");
                        kept[usize::from(wgsl)] += 1;
                    }
                }
            }
        }
    }
    // Both answers came up: the cases reach past the cache and stay inside it.
    assert!(kept[0] > 0 && kept[1] > 0, "{kept:?}");
}

#[test]
fn each_strategy_asks_the_cache_test_with_the_lanes_the_host_counts() {
    // The calls the host's reads_per_element mirrors, as the strategies' WGSL makes them.
    for (strategy, call) in [
        (Strategy::ThreadPerRow, "row_cached(1u, 1u)"),
        (Strategy::SubgroupPerRow, "row_cached(LANES_PER_ROW, LANES_PER_ROW)"),
        (Strategy::WorkgroupPerRow, "row_cached(WORKGROUP_SIZE, walk_width())"),
    ] {
        let module = compose(spec(strategy, DType::F32, VectorWidth::Vec4, true)).unwrap();
        let calls = module.source.matches("row_cached(").count();
        // The definition and this one call.
        assert_eq!(calls, 2, "{strategy:?}");
        assert!(module.source.contains(call), "{strategy:?}: {call}");
    }
    let split = compose(spec(Strategy::SplitRow, DType::F32, VectorWidth::Vec4, true)).unwrap();
    assert!(split.source.contains("let cached = segment_cached();"));
}

#[test]
fn reads_follow_the_register_cache_on_a_gpu_and_not_on_a_cpu() {
    let gpu = DeviceCaps {
        subgroups: true,
        subgroup_min_size: 32,
        is_cpu: false,
        max_workgroups_per_dimension: 65535,
        max_storage_binding_bytes: 1 << 31,
        max_buffer_bytes: 1 << 32,
        storage_offset_alignment: 16,
        max_loop_iterations: None,
        max_storage_buffers_per_stage: 64,
        max_workgroup_storage_bytes: 48 << 10,
        max_workgroup_lanes: 1024,
    };
    let reads = |caps: &DeviceCaps, dtype: DType, cols: usize| {
        let shape = crate::shape::Shape::new(4096, cols);
        let keeps = caps.keeps_rows_by_default();
        let kernel = (OpKernel::Softmax, dtype);
        let row_bytes = [cols as u64 * dtype.size(); 2];
        let plan = crate::ops::rows::plan_rows_on(caps, kernel, shape, None, &row_bytes, keeps).unwrap();
        let requested = KernelSpec { cached: keeps, ..spec(plan.strategy, dtype, VectorWidth::Vec4, true) };
        let spec = crate::ops::rows::planned_spec(requested, &plan, shape);
        reads_per_element(&spec, &plan, cols).0
    };
    // A 32-lane subgroup keeps up to 32 x 36 f32 (32 words and a packet more for rows
    // that start mid-packet); wider rows take a workgroup of as many lanes as hold them,
    // up to 1024 lanes of 36 f32 or 72 16-bit elements.
    for (cols, f32_reads, bf16_reads) in [
        (10, 1, 1),
        (1000, 1, 1),
        (1019, 1, 1),
        (1020, 1, 1),
        (1025, 1, 1),
        (4096, 1, 1),
        (4097, 1, 1),
        (8192, 1, 1),
        (8193, 1, 1),
        (32767, 1, 1),
        (32768, 1, 1),
        (32769, 1, 1),
        (36864, 1, 1),
        (36868, 2, 1),
        (65535, 2, 1),
        (65536, 2, 1),
        (73728, 2, 1),
        (73736, 2, 2),
        (128_256, 2, 2),
    ] {
        assert_eq!(reads(&gpu, DType::F32, cols), f32_reads, "f32 {cols}");
        assert_eq!(reads(&gpu, DType::BF16, cols), bf16_reads, "bf16 {cols}");
    }
    let cpu = DeviceCaps { is_cpu: true, subgroup_min_size: 8, max_loop_iterations: Some(65_535), ..gpu };
    for cols in [10, 1000, 4097] {
        assert_eq!(reads(&cpu, DType::F32, cols), 2, "{cols}");
    }
}
