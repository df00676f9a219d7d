//! Every composed module (op x strategy x storage type x vector width) parsed, validated
//! and translated by naga to SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL), and
//! checked against what the host assumes of it: its bindings, its `Params` layout, its
//! workgroup sizes, its entry points, its overridable constants and the size of the
//! split's lanes. Needs no GPU: this is how the Metal and DX12 paths are checked on a
//! machine that has neither.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ValidationFlags, Validator};

use super::catalog::MATMUL_SIDE;
use super::{BindingType, EDGE_WORKGROUP_SIZE, FIX_EDGES, KernelSpec, LINEAR_STATS, Module, compose};
use crate::dtype::DType;
use crate::strategy::Strategy;

/// Override sets that give every declared constant each of its values at least once:
/// the defaults (the first value of each), then one constant changed at a time.
fn override_sets(module: &Module) -> Vec<PipelineConstants> {
    let base: PipelineConstants =
        module.overrides.iter().map(|&(name, values)| (name.to_owned(), f64::from(values[0]))).collect();
    let mut sets = vec![base.clone()];
    for &(name, values) in &module.overrides {
        for &value in &values[1..] {
            let mut set = base.clone();
            set.insert(name.to_owned(), f64::from(value));
            sets.push(set);
        }
    }
    sets
}

fn parse_and_validate(
    module: &Module,
    capabilities: Capabilities,
) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = &module.source;
    let what = module.spec.label();
    let parsed = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{what} does not parse:\n{}\n{source}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&parsed)
        .unwrap_or_else(|e| panic!("{what} does not validate:\n{}", e.emit_to_string(source)));
    (parsed, info)
}

fn capabilities(spec: KernelSpec) -> Capabilities {
    if spec.needs_subgroups() { Capabilities::SUBGROUP } else { Capabilities::default() }
}

/// Every composed module, once.
fn all_modules() -> Vec<Module> {
    KernelSpec::all()
        .into_iter()
        .map(|spec| compose(spec).unwrap_or_else(|e| panic!("{spec:?}: {e}")))
        .collect()
}

#[test]
fn every_op_storage_type_and_width_is_composed() {
    let specs = KernelSpec::all();
    // Each op kernel, with each strategy it has, storage type and access width it
    // declares, once: the registry covers every declaration and nothing twice.
    for op in super::OpKernel::ALL {
        let decl = op.decl();
        let mine: Vec<&KernelSpec> = specs.iter().filter(|s| s.op == op).collect();
        for &dtype in decl.variants.dtypes {
            for &vector in decl.variants.vectors {
                let found = mine.iter().filter(|s| s.dtype == dtype && s.vector == vector && !s.strided);
                let strategies: Vec<Strategy> = found.map(|s| s.strategy).collect();
                match decl.skeleton {
                    super::Skeleton::Rows { strategies: declared, .. } => {
                        for strategy in declared {
                            assert!(strategies.contains(strategy), "{op:?} {dtype} {vector:?} {strategy:?}");
                        }
                    }
                    super::Skeleton::Own { .. } => {
                        assert!(!strategies.is_empty(), "{op:?} {dtype} {vector:?}");
                    }
                }
            }
        }
        // A strided class axis: scalar accesses only, where the op has the variant.
        assert_eq!(mine.iter().any(|s| s.strided), decl.variants.strided, "{op:?}");
        assert!(mine.iter().filter(|s| s.strided).all(|s| s.vector == super::VectorWidth::Scalar), "{op:?}");
    }
    let distinct: std::collections::HashSet<&KernelSpec> = specs.iter().collect();
    assert_eq!(distinct.len(), specs.len(), "a module listed twice");
    for module in all_modules() {
        let spec = module.spec;
        assert!(module.source.contains(&format!("const PACKET: u32 = {}u;", spec.packet())), "{spec:?}");
    }
}

#[test]
fn the_bindings_params_and_workgroup_sizes_are_the_hosts() {
    for module in all_modules() {
        let spec = module.spec;
        let (parsed, _) = parse_and_validate(&module, capabilities(spec));
        let what = spec.label();
        // Bindings: group 0, numbered in the host's order, with the host's names and
        // address spaces.
        let mut globals: Vec<(u32, String, naga::AddressSpace)> = parsed
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                g.binding.as_ref().map(|b| (b.group, b.binding, g.name.clone().unwrap_or_default(), g.space))
            })
            .map(|(group, binding, name, space)| {
                assert_eq!(group, 0, "{what}: {name}");
                (binding, name, space)
            })
            .collect();
        globals.sort_by_key(|g| g.0);
        assert_eq!(globals.len(), module.bindings.len(), "{what}");
        // Each binding the dispatch leaves unused gets its own placeholder buffer.
        assert!(module.bindings.len() <= super::MAX_BINDINGS, "{what}: more bindings than placeholders");
        if spec.op == super::OpKernel::LinearCrossEntropy {
            let storage = module.bindings.iter().filter(|b| b.ty != BindingType::Params).count();
            assert_eq!(storage, super::LINEAR_STORAGE_BINDINGS as usize, "{what}: storage bindings");
            // The workgroup memory of linear_stats: the tile's slabs and the lanes.
            let bytes: u32 = parsed
                .global_variables
                .iter()
                .filter(|(_, g)| matches!(g.name.as_deref(), Some("staging" | "row_lanes")))
                .map(|(_, g)| parsed.types[g.ty].inner.size(parsed.to_ctx()))
                .sum();
            assert_eq!(bytes, super::LINEAR_WORKGROUP_BYTES, "{what}: workgroup memory");
        }
        for (index, ((binding, name, space), declared)) in globals.iter().zip(&module.bindings).enumerate() {
            assert_eq!(*binding as usize, index, "{what}");
            assert_eq!(name, declared.slot.name(), "{what}");
            let expected = match declared.ty {
                BindingType::Params => naga::AddressSpace::Uniform,
                BindingType::Tensor { writable } | BindingType::Array { writable, .. } => {
                    naga::AddressSpace::Storage {
                        access: if writable {
                            naga::StorageAccess::LOAD | naga::StorageAccess::STORE
                        } else {
                            naga::StorageAccess::LOAD
                        },
                    }
                }
                BindingType::Words => naga::AddressSpace::Storage { access: naga::StorageAccess::LOAD },
            };
            assert_eq!(*space, expected, "{what}: {name}");
        }
        // Params: the host's fields at the host's offsets.
        let super::catalog::ParamsLayout { fields, bytes: params_size } = spec.op.decl().params;
        let params = parsed.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")).unwrap().1;
        let naga::TypeInner::Struct { members, span } = &params.inner else { panic!("{what}: Params") };
        assert_eq!(*span as usize, params_size, "{what}: Params size");
        assert_eq!(members.len(), fields.len(), "{what}: Params fields");
        for (i, (member, &(name, _))) in members.iter().zip(fields).enumerate() {
            assert_eq!(member.name.as_deref(), Some(name), "{what}");
            assert_eq!(member.offset, 4 * i as u32, "{what}: {name}");
        }
        // The split's scratch holds lanes of the size the host allocates for.
        if spec.strategy == Strategy::SplitRow && spec.op.is_row_op() {
            let scratch = parsed
                .global_variables
                .iter()
                .find(|(_, g)| g.name.as_deref() == Some("segment_shares"))
                .unwrap()
                .1;
            let naga::TypeInner::Array { stride, .. } = parsed.types[scratch.ty].inner else {
                panic!("{what}: lanes")
            };
            assert_eq!(u64::from(stride), spec.op.share_bytes(), "{what}: Share");
        }
        // Entry points: the host's, with the host's workgroup sizes.
        let defined: Vec<&str> = parsed.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(defined, module.entry_points, "{what}: entry points");
        for entry in &parsed.entry_points {
            let expected = match entry.name.as_str() {
                FIX_EDGES => EDGE_WORKGROUP_SIZE,
                LINEAR_STATS => MATMUL_SIDE * MATMUL_SIDE,
                "combine_total_weight" | "finish" | "finish_z_loss" => 1,
                _ => spec.workgroup_size(),
            };
            assert_eq!(entry.workgroup_size, [expected, 1, 1], "{what}: {}", entry.name);
        }
        // Overrides: the ones the host sets.
        let mut in_source: Vec<&str> =
            parsed.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        let mut declared: Vec<&str> = module.overrides.iter().map(|&(name, _)| name).collect();
        in_source.sort_unstable();
        declared.sort_unstable();
        assert_eq!(in_source, declared, "{what}");
    }
}

#[test]
fn modules_without_subgroups_validate_without_the_capability() {
    let mut with_subgroups = 0;
    for module in all_modules() {
        if module.spec.needs_subgroups() {
            // And they really need it: the split between the two is not decorative.
            let parsed = naga::front::wgsl::parse_str(&module.source).unwrap();
            assert!(
                Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&parsed).is_err()
            );
            with_subgroups += 1;
        } else {
            parse_and_validate(&module, Capabilities::default());
        }
    }
    assert!(with_subgroups > 0);
}

#[test]
fn every_module_translates_to_every_backend() {
    let mut translated = 0;
    for module in all_modules() {
        let spec = module.spec;
        let (parsed, info) = parse_and_validate(&module, capabilities(spec));
        // Every override value on f32 scalar modules; the defaults on the others (the
        // overrides select branches, not types, so they do not vary with storage), but
        // every value on the matmul, whose overrides pick 16-bit conversions.
        let plain = spec.dtype == DType::F32 && spec.vector == super::VectorWidth::Scalar && !spec.cached;
        let sets = if plain || spec.op == super::OpKernel::Matmul {
            override_sets(&module)
        } else {
            override_sets(&module).into_iter().take(1).collect()
        };
        for entry_point in &module.entry_points {
            for constants in &sets {
                let what = format!("{}::{entry_point} with {constants:?}", spec.label());
                let stage = Some((naga::ShaderStage::Compute, *entry_point));
                let (processed, processed_info) =
                    naga::back::pipeline_constants::process_overrides(&parsed, &info, stage, constants)
                        .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                to_spirv(&processed, &processed_info, entry_point)
                    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
                to_msl(&processed, &processed_info, entry_point)
                    .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
                to_hlsl(&processed, &processed_info, entry_point)
                    .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
                to_glsl(&processed, &processed_info, entry_point, spec.needs_subgroups())
                    .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
                translated += 1;
            }
        }
    }
    eprintln!("translated {translated} (module, entry point, overrides) combinations to 4 languages");
    assert!(translated >= 300);
}

fn to_spirv(module: &naga::Module, info: &naga::valid::ModuleInfo, entry_point: &str) -> Result<(), String> {
    let options = naga::back::spv::Options { lang_version: (1, 3), ..naga::back::spv::Options::default() };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry_point.to_owned(),
    };
    let words =
        naga::back::spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| e.to_string())?;
    if words.first() == Some(&0x0723_0203) { Ok(()) } else { Err("no SPIR-V magic number".into()) }
}

fn to_msl(module: &naga::Module, info: &naga::valid::ModuleInfo, entry_point: &str) -> Result<(), String> {
    let options = naga::back::msl::Options { lang_version: (2, 4), ..naga::back::msl::Options::default() };
    let pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry_point.to_owned())),
        ..naga::back::msl::PipelineOptions::default()
    };
    let (text, _) =
        naga::back::msl::write_string(module, info, &options, &pipeline).map_err(|e| e.to_string())?;
    if text.contains("kernel void") { Ok(()) } else { Err(format!("no kernel in:\n{text}")) }
}

fn to_hlsl(module: &naga::Module, info: &naga::valid::ModuleInfo, entry_point: &str) -> Result<(), String> {
    let options = naga::back::hlsl::Options {
        shader_model: naga::back::hlsl::ShaderModel::V6_0,
        ..naga::back::hlsl::Options::default()
    };
    let pipeline = naga::back::hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry_point.to_owned())),
    };
    let mut text = String::new();
    naga::back::hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| e.to_string())?;
    if text.contains("[numthreads(") { Ok(()) } else { Err(format!("no numthreads in:\n{text}")) }
}

fn to_glsl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry_point: &str,
    subgroups: bool,
) -> Result<(), String> {
    // wgpu's GL backend targets GLES 3.1 compute; subgroup operations need desktop GLSL
    // with GL_KHR_shader_subgroup (wgpu offers no subgroups on GL, so this is the most any
    // GL driver would see).
    let version = if subgroups {
        naga::back::glsl::Version::Desktop(430)
    } else {
        naga::back::glsl::Version::Embedded { version: 310, is_webgl: false }
    };
    let options = naga::back::glsl::Options { version, ..naga::back::glsl::Options::default() };
    let pipeline = naga::back::glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry_point.to_owned(),
        multiview: None,
    };
    let mut text = String::new();
    let mut writer = naga::back::glsl::Writer::new(
        &mut text,
        module,
        info,
        &options,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| e.to_string())?;
    writer.write().map_err(|e| e.to_string())?;
    if text.contains("void main()") { Ok(()) } else { Err(format!("no main in:\n{text}")) }
}
