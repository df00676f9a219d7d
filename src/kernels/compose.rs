//! Composing a module's WGSL from its parts: string assembly, with the host's facts
//! (constants, `Params`, bindings) generated into it rather than written twice.

use std::fmt::Write as _;

use super::params::params_wgsl;
use super::preprocess::preprocess;
use super::{
    Binding, BindingType, EDGE_WORKGROUP_SIZE, FIX_EDGES, KernelSpec, Module, ROW_KERNEL, SPLIT_STATS,
    SPLIT_WRITE, SUBGROUP_TREE_MIN_LANES, Skeleton, Slot, VectorWidth,
};
use crate::dtype::DType;
use crate::strategy::Strategy;

const SPECIAL: &str = include_str!("../../shaders/lib/special.wgsl");
const WORKGROUP_SUM: &str = include_str!("../../shaders/lib/workgroup_sum.wgsl");
const ELEM_F32: &str = include_str!("../../shaders/elem/f32.wgsl");
const ELEM_HALF: &str = include_str!("../../shaders/elem/half.wgsl");
const ELEM_BF16: &str = include_str!("../../shaders/elem/bf16.wgsl");
const ELEM_F16: &str = include_str!("../../shaders/elem/f16.wgsl");
const ELEM_WORDS: &str = include_str!("../../shaders/elem/words.wgsl");
const ROWS: &str = include_str!("../../shaders/strategy/rows.wgsl");
const THREAD: &str = include_str!("../../shaders/strategy/thread.wgsl");
const SUBGROUP: &str = include_str!("../../shaders/strategy/subgroup.wgsl");
const WORKGROUP: &str = include_str!("../../shaders/strategy/workgroup.wgsl");
const SPLIT: &str = include_str!("../../shaders/strategy/split.wgsl");
const EDGES: &str = include_str!("../../shaders/strategy/edges.wgsl");

/// The placeholder a tensor template's functions and binding are named by.
const TENSOR_PLACEHOLDER: &str = "TENSOR";

/// The bindings of the module `spec` names, in binding order: the params uniform, the
/// op's declared bindings, and the split's and the edge pass's scratch.
pub(crate) fn bindings(spec: KernelSpec) -> Vec<Binding> {
    let op = spec.op;
    let scratch =
        |slot, element| Binding { slot, ty: BindingType::Array { element, writable: true }, optional: false };
    let mut bindings = vec![Binding { slot: Slot::Params, ty: BindingType::Params, optional: false }];
    bindings.extend(op.decl().bindings);
    if op.is_row_op() && spec.strategy == Strategy::SplitRow {
        bindings.push(scratch(Slot::SegmentShares, "Share"));
    }
    if spec.has_edges() && !op.decl().packs_extras {
        // Bound only where rows share words (rows of whole words need no edge pass).
        bindings.push(Binding { optional: true, ..scratch(Slot::Edges, "u32") });
    }
    bindings
}

/// Composes the module `spec` names from its op's declaration.
///
/// # Errors
///
/// A message when a part's conditions are malformed (a bug in the parts; the naga test
/// composes every module).
pub(crate) fn compose(spec: KernelSpec) -> Result<Module, String> {
    let decl = spec.op.decl();
    let subgroups = spec.needs_subgroups();
    let mut flags = decl.flags.clone();
    flags.push(("SUBGROUPS", subgroups));
    flags.push(("STRIDED", spec.strided));
    flags.push(("PAIRED", spec.paired));
    flags.push(("HALF", spec.dtype != DType::F32));
    flags.push(("VECTOR", spec.vector == VectorWidth::Vec4));
    flags.push(("FOLDS", decl.folds_reduction));
    let bindings = bindings(spec);

    let mut source =
        format!("// {}: composed from shaders/ by src/kernels; edit the parts.\n\n", spec.label());
    let _ = writeln!(source, "const WORKGROUP_SIZE: u32 = {}u;", spec.workgroup_size());
    let _ = writeln!(source, "const PACKET: u32 = {}u;", spec.packet());
    let _ = writeln!(source, "const CACHE_PACKETS: u32 = {}u;", spec.cache_packets());
    for (name, value) in spec.dtype.format().wgsl_constants() {
        let _ = writeln!(source, "const {name}: u32 = {value};");
    }
    if spec.has_edges() {
        let _ = writeln!(source, "const EDGE_GROUP_SIZE: u32 = {EDGE_WORKGROUP_SIZE}u;");
    }
    for (name, value) in &decl.constants {
        let ty = if value == "true" || value == "false" { "bool" } else { "u32" };
        let _ = writeln!(source, "const {name}: {ty} = {value};");
    }
    source.push('\n');
    source.push_str(&params_wgsl(decl.params.fields));
    source.push('\n');
    for (index, binding) in bindings.iter().enumerate() {
        let _ = writeln!(source, "{}", declaration(index, binding, spec));
    }
    source.push('\n');
    source.push_str(SPECIAL);

    let mut entry_points = Vec::new();
    let mut overrides: Vec<(&'static str, &'static [u32])> = decl.overrides.to_vec();
    match decl.skeleton {
        Skeleton::Rows { after, entry_points: own_entry_points, .. } => {
            source.push_str(&tensor_accessors(spec)?);
            for part in decl.parts {
                source.push_str(&preprocess(part, &flags)?);
            }
            source.push_str(&preprocess(ROWS, &flags)?);
            source.push_str(&packet_cache(spec.cache_packets(), spec.paired));
            let workgroup_sum = matches!(spec.strategy, Strategy::WorkgroupPerRow | Strategy::SplitRow);
            if decl.folds_reduction && !workgroup_sum {
                source.push_str(WORKGROUP_SUM);
            }
            match spec.strategy {
                Strategy::ThreadPerRow => source.push_str(&preprocess(THREAD, &flags)?),
                Strategy::SubgroupPerRow => {
                    source.push_str(&preprocess(SUBGROUP, &flags)?);
                    overrides.push(("ROWS_PER_GROUP", &[8, 1, 2, 4, 16, 32]));
                    overrides.push(("LANES_PER_ROW", &[8, 1, 2, 4, 16, 32]));
                }
                Strategy::WorkgroupPerRow | Strategy::SplitRow => {
                    if spec.group.subgroup_tree {
                        let _ = writeln!(
                            source,
                            "const SUBGROUP_TREE_MIN_LANES: u32 = {SUBGROUP_TREE_MIN_LANES}u;"
                        );
                    }
                    source.push_str(WORKGROUP_SUM);
                    source.push_str(&preprocess(WORKGROUP, &flags)?);
                    overrides.push(("WALK_WIDTH", &[256, 8, 1]));
                }
            }
            entry_points.push(ROW_KERNEL);
            if spec.strategy == Strategy::SplitRow {
                source.push_str(&preprocess(SPLIT, &flags)?);
                entry_points.extend([SPLIT_STATS, SPLIT_WRITE]);
            }
            for part in after {
                source.push_str(&preprocess(part, &flags)?);
            }
            entry_points.extend(own_entry_points);
            if spec.has_edges() {
                source.push_str(EDGES);
                entry_points.push(FIX_EDGES);
            }
        }
        Skeleton::Own { entry_points: own_entry_points, half_entry_points, workgroup_sum, .. } => {
            source.push_str(&half_conversions(spec.dtype));
            if workgroup_sum {
                source.push_str(WORKGROUP_SUM);
            }
            for part in decl.parts {
                source.push_str(&preprocess(part, &flags)?);
            }
            entry_points.extend(own_entry_points);
            if spec.dtype != DType::F32 {
                entry_points.extend(half_entry_points);
            }
        }
    }
    Ok(Module { spec, source, bindings, entry_points, overrides })
}

/// The WGSL declaration of binding `index`.
fn declaration(index: usize, binding: &Binding, spec: KernelSpec) -> String {
    let prefix = format!("@group(0) @binding({index})");
    let name = binding.slot.name();
    match binding.ty {
        BindingType::Params => format!("{prefix} var<uniform> {name}: Params;"),
        BindingType::Tensor { writable } => {
            let word = match spec.dtype {
                DType::F32 => "f32",
                _ if spec.atomic_tensor(writable) => "atomic<u32>",
                _ => "u32",
            };
            let element = match spec.vector {
                VectorWidth::Scalar => word.to_owned(),
                VectorWidth::Vec4 => format!("vec4<{word}>"),
            };
            format!("{prefix} var<storage, {}> {name}: array<{element}>;", access(writable))
        }
        BindingType::Array { element, writable } => {
            format!("{prefix} var<storage, {}> {name}: array<{element}>;", access(writable))
        }
        BindingType::Words => {
            let element = match spec.vector {
                VectorWidth::Scalar => "u32",
                VectorWidth::Vec4 => "vec4<u32>",
            };
            format!("{prefix} var<storage, read> {name}: array<{element}>;")
        }
    }
}

const fn access(writable: bool) -> &'static str {
    if writable { "read_write" } else { "read" }
}

/// Element access for each class-axis tensor of the op (the storage type's template with
/// the tensor's name), and the `result_*` functions the row loops write through.
fn tensor_accessors(spec: KernelSpec) -> Result<String, String> {
    let mut source = String::new();
    source.push_str(&half_conversions(spec.dtype));
    let template = if spec.dtype == DType::F32 { ELEM_F32 } else { ELEM_HALF };
    for tensor in spec.op.tensors() {
        let writable = tensor.ty == BindingType::Tensor { writable: true };
        let flags = [
            ("VECTOR", spec.vector == VectorWidth::Vec4),
            ("WRITABLE", writable),
            ("STRIDED", spec.strided),
            ("PAIRED", spec.paired),
        ];
        source.push_str(&preprocess(template, &flags)?.replace(TENSOR_PLACEHOLDER, tensor.slot.name()));
    }
    if spec.has_edges() {
        // The edge words: a binding of their own, or the packed cross-entropy's extras
        // after its argmax and logsumexp.
        let place =
            if spec.op.decl().packs_extras { "extras[2u * params.extras_rows + i]" } else { "edges[i]" };
        let _ = write!(
            source,
            "fn edge_load(i: u32) -> u32 {{\n    return {place};\n}}\n\
             fn edge_store(i: u32, bits: u32) {{\n    {place} = bits;\n}}\n"
        );
    }
    source.push_str("// The tensor the row loops write.\n");
    match spec.op.output_tensor().map(Slot::name) {
        // A paired invocation stores its two rows' words whole, and nothing else.
        Some(output) if spec.paired => {
            let _ = write!(
                source,
                "fn result_store_pair(k: u32, first: array<f32, PACKET>, second: array<f32, PACKET>) {{\n    \
                 {output}_store_pair(k, first, second);\n}}\n"
            );
        }
        None if spec.paired => source.push_str(
            "fn result_store_pair(k: u32, first: array<f32, PACKET>, second: array<f32, PACKET>) {}\n",
        ),
        Some(output) => {
            let _ = write!(
                source,
                "fn result_store(k: u32, values: array<f32, PACKET>) {{\n    {output}_store(k, values);\n}}\n\
                 fn result_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {{\n    \
                 {output}_store_part(k, values, span);\n}}\n"
            );
            if spec.has_edges() {
                let _ = write!(
                    source,
                    "fn result_word(w: u32) -> u32 {{\n    return {output}_word(w);\n}}\n\
                     fn result_set_word(w: u32, bits: u32) {{\n    {output}_set_word(w, bits);\n}}\n"
                );
            }
        }
        None => {
            source.push_str(
                "fn result_store(k: u32, values: array<f32, PACKET>) {}\n\
                 fn result_store_part(k: u32, values: array<f32, PACKET>, span: RowSpan) {}\n",
            );
        }
    }
    Ok(source)
}

/// `half_to_f32` and `f32_to_half` for a 16-bit storage type, and the access to its
/// elements in words (nothing for f32).
fn half_conversions(dtype: DType) -> String {
    match dtype {
        DType::F32 => String::new(),
        DType::F16 => format!("{ELEM_F16}{ELEM_WORDS}"),
        DType::BF16 => format!("{ELEM_BF16}{ELEM_WORDS}"),
    }
}

/// `PacketCache` and the functions that fill, absorb and write it, slot by slot: straight
/// code with a named field per packet, so that the cache lives in registers without any
/// compiler having to unroll a loop (or spill an array indexed at run time) to get there.
fn packet_cache(slots: u32, paired: bool) -> String {
    let mut fields = String::new();
    let (mut fill, mut absorb, mut write) = (String::new(), String::new(), String::new());
    // A struct needs a member: an empty cache keeps one slot nobody uses.
    for slot in 0..slots.max(1) {
        let _ = writeln!(fields, "    p{slot}: Packet,");
    }
    for slot in 0..slots {
        let _ = write!(
            fill,
            "    if (k < walk.end) {{\n        (*cache).p{slot} = packet_load(k);\n        \
             m = max(m, packet_scan(lane, (*cache).p{slot}, span, k));\n    }}\n    k += walk.stride;\n"
        );
        let _ = write!(
            absorb,
            "    if (k < walk.end) {{\n        var packet = (*cache).p{slot};\n        out = packet_absorb(out, &packet, span, k, m);\n        \
             (*cache).p{slot} = packet;\n    }}\n    k += walk.stride;\n"
        );
        let store = if paired {
            format!(
                "result_store_pair(k, kept_output(a, k, (*cache).p{slot}), \
                 kept_output(b, k + offset, (*second).p{slot}))"
            )
        } else {
            format!("write_packet(span, k, row, own, (*cache).p{slot})")
        };
        let _ = write!(write, "    if (k < walk.end) {{\n        {store};\n    }}\n    k += walk.stride;\n");
    }
    // A paired invocation writes its two rows' packets together, each from its own cache.
    let write_signature = if paired {
        "cache_write_pair(cache: ptr<function, PacketCache>, second: ptr<function, PacketCache>, a: Finished, \
         b: Finished, walk: Walk) {\n    let offset = b.span.first_packet - a.span.first_packet;\n"
    } else {
        "cache_write(cache: ptr<function, PacketCache>, span: RowSpan, walk: Walk, row: Row, own: Share) {\n"
    };
    format!(
        "// An invocation's packets, kept between its looks at its share of a row ({slots} slots).\n\
         struct PacketCache {{\n{fields}}}\n\n\
         fn cache_fill(lane: ptr<function, Lane>, cache: ptr<function, PacketCache>, span: RowSpan, walk: Walk) -> f32 {{\n\
         \x20   var m = LOWEST_FINITE;\n    var k = walk.begin;\n{fill}    return m;\n}}\n\n\
         fn cache_absorb(lane: Lane, cache: ptr<function, PacketCache>, span: RowSpan, walk: Walk, m: f32) -> Lane {{\n\
         \x20   var out = lane;\n    var k = walk.begin;\n{absorb}    return out;\n}}\n\n\
         fn {write_signature}\x20   var k = walk.begin;\n{write}}}\n\n"
    )
}
