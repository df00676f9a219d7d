//! Every WGSL module of the crate parsed, validated and translated by naga to SPIR-V
//! (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL), for every entry point and every
//! value of its overridable constants. Needs no GPU: this is how the Metal and DX12 paths
//! are checked on a machine that has neither.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use super::Shader;
use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// Override sets that give every declared constant each of its values at least once:
/// the defaults (the first value of each), then one constant changed at a time.
fn override_sets(shader: Shader) -> Vec<PipelineConstants> {
    let base: PipelineConstants =
        shader.overrides().iter().map(|&(name, values)| (name.to_owned(), f64::from(values[0]))).collect();
    let mut sets = vec![base.clone()];
    for &(name, values) in shader.overrides() {
        for &value in &values[1..] {
            let mut set = base.clone();
            set.insert(name.to_owned(), f64::from(value));
            sets.push(set);
        }
    }
    sets
}

fn parse_and_validate(shader: Shader, capabilities: Capabilities) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{shader:?} does not parse:\n{}", e.emit_to_string(&source)));
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{shader:?} does not validate:\n{}", e.emit_to_string(&source)));
    (module, info)
}

#[test]
fn the_declared_overrides_are_the_ones_in_the_source() {
    for shader in Shader::ALL {
        let source = shader.source();
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let mut in_source: Vec<&str> =
            module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        let mut declared: Vec<&str> = shader.overrides().iter().map(|&(name, _)| name).collect();
        in_source.sort_unstable();
        declared.sort_unstable();
        assert_eq!(in_source, declared, "{shader:?}");
    }
}

#[test]
fn modules_without_subgroups_validate_without_the_capability() {
    for shader in Shader::ALL.into_iter().filter(|s| !s.needs_subgroups()) {
        parse_and_validate(shader, Capabilities::default());
    }
    // And the subgroup module really needs it: the split between the two is not decorative.
    let source = Shader::SoftmaxSubgroup.source();
    let module = naga::front::wgsl::parse_str(&source).unwrap();
    assert!(Validator::new(ValidationFlags::all(), Capabilities::default()).validate(&module).is_err());
}

#[test]
fn every_entry_point_translates_to_every_backend() {
    let mut translated = 0;
    for shader in Shader::ALL {
        let capabilities =
            if shader.needs_subgroups() { Capabilities::SUBGROUP } else { Capabilities::default() };
        let (module, info) = parse_and_validate(shader, capabilities);
        let defined: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(defined, shader.entry_points(), "{shader:?}: entry points");
        for entry_point in shader.entry_points() {
            for constants in override_sets(shader) {
                let what = format!("{shader:?}::{entry_point} with {constants:?}");
                let stage = Some((naga::ShaderStage::Compute, *entry_point));
                let (module, info) =
                    naga::back::pipeline_constants::process_overrides(&module, &info, stage, &constants)
                        .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                to_spirv(&module, &info, entry_point).unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
                to_msl(&module, &info, entry_point).unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
                to_hlsl(&module, &info, entry_point).unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
                to_glsl(&module, &info, entry_point, shader.needs_subgroups())
                    .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
                translated += 1;
            }
        }
    }
    eprintln!("translated {translated} (module, entry point, overrides) combinations to 4 languages");
    assert!(translated >= 50);
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
