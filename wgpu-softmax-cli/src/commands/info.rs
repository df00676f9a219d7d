//! `wgpu-softmax info`: the adapters found, what of them this crate uses, and the kernel
//! strategy each would pick for a few shapes.

use std::io::Write as _;
use std::process::ExitCode;

use wgpu_softmax::wgpu;
use wgpu_softmax::{Context, OPTIONAL_FEATURES, Shape, Softmax};

use crate::args::{Cli, InfoArgs};
use crate::error::CliError;

/// Shapes to show the planner's choice for: narrow, middling, wide and very wide rows.
const SHAPES: [Shape; 4] =
    [Shape::new(65_536, 10), Shape::new(4096, 1000), Shape::new(64, 131_072), Shape::new(8, 262_144)];

/// Lists every adapter on the selected backends and marks the one the other commands use;
/// with `--json`, prints the selected adapter's profile instead.
///
/// # Errors
///
/// When no adapter is found, or the one `--adapter` / `WGPU_ADAPTER_NAME` asks for is not
/// among them; writing to stdout failing.
pub fn run(cli: &Cli, args: &InfoArgs) -> Result<ExitCode, CliError> {
    if args.json {
        // The device the other commands would run on, as the planner reads it: the
        // adapter's limits and the optional features this crate asks for.
        let ctx = cli.context("info: selecting an adapter")?;
        std::io::stdout().lock().write_all(crate::profile::to_json(ctx.profile()).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let backends = cli.backends();
    let adapters = enumerate(backends);
    // The adapter the other commands would run on: through their own selection.
    let selected = cli.context("info: selecting an adapter");

    let mut out = std::io::stdout().lock();
    let backend_names: Vec<String> = backends.iter_names().map(|(name, _)| name.to_lowercase()).collect();
    writeln!(out, "backends searched: {}", backend_names.join(", "))?;
    if adapters.is_empty() {
        writeln!(out, "no adapter found")?;
    }
    for (index, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let is_selected = selected.as_ref().is_ok_and(|ctx| *ctx.adapter_info() == info);
        writeln!(out)?;
        writeln!(out, "adapter {index}: {}{}", info.name, if is_selected { "  [selected]" } else { "" })?;
        writeln!(out, "  backend:      {:?}", info.backend)?;
        writeln!(out, "  device type:  {:?}", info.device_type)?;
        let driver: Vec<&str> =
            [info.driver.trim(), info.driver_info.trim()].into_iter().filter(|s| !s.is_empty()).collect();
        writeln!(out, "  driver:       {}", driver.join(" "))?;
        writeln!(out, "  ids:          vendor {:#06x}, device {:#06x}", info.vendor, info.device)?;
        let features = adapter.features();
        for (name, feature) in [
            ("SUBGROUP", wgpu::Features::SUBGROUP),
            ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
            ("SHADER_F16", wgpu::Features::SHADER_F16),
        ] {
            writeln!(out, "  {name:<16} {}", if features.contains(feature) { "yes" } else { "no" })?;
        }
        if features.contains(wgpu::Features::SUBGROUP) {
            writeln!(out, "  subgroup size: {}..{}", info.subgroup_min_size, info.subgroup_max_size)?;
        }
        let limits = adapter.limits();
        writeln!(out, "  limits:")?;
        for (name, value) in [
            ("max_storage_buffer_binding_size", limits.max_storage_buffer_binding_size),
            ("max_buffer_size", limits.max_buffer_size),
            ("max_compute_workgroups_per_dimension", u64::from(limits.max_compute_workgroups_per_dimension)),
            ("max_storage_buffers_per_shader_stage", u64::from(limits.max_storage_buffers_per_shader_stage)),
        ] {
            writeln!(out, "    {name:<38} {value}")?;
        }
        // Plan on the selected context, or on a device created as Context::new creates
        // one: the optional features the adapter has, all its limits.
        let ctx = match &selected {
            Ok(ctx) if is_selected => Ok(ctx.clone()),
            _ => pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-softmax info"),
                required_features: OPTIONAL_FEATURES & features,
                required_limits: limits,
                ..Default::default()
            }))
            .map(|(device, queue)| Context::from_device(device, queue)),
        };
        match ctx {
            Ok(ctx) => {
                if let Some(limit) = ctx.loop_iteration_limit() {
                    writeln!(out, "  loop limit:   {limit} iterations per invocation (llvmpipe)")?;
                }
                writeln!(out, "  softmax strategy by shape:")?;
                for shape in SHAPES {
                    match Softmax::new().plan(&ctx, shape) {
                        Ok(plan) => writeln!(
                            out,
                            "    {:<12} {:<16} (rows per workgroup: {})",
                            shape.to_string(),
                            format!("{:?}", plan.strategy()),
                            plan.rows_per_group()
                        )?,
                        Err(error) => writeln!(out, "    {:<12} cannot run: {error}", shape.to_string())?,
                    }
                }
            }
            Err(error) => writeln!(out, "  cannot create a device to plan on: {error}")?,
        }
    }
    writeln!(out)?;
    match &selected {
        Ok(ctx) => {
            writeln!(out, "selected: {}", ctx.describe())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            out.flush()?;
            Err(CliError::new(error.to_string()))
        }
    }
}

/// The adapters of a new instance on `backends`.
fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backends;
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.enumerate_adapters(backends))
}
