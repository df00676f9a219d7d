//! The compiled kernels of one device: composed modules, their layouts and their
//! pipelines, each made on first use and kept. Creation runs outside the locks; a racing
//! thread's object is kept and the later one dropped, so every caller sees the same one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{KernelSpec, Module, compose};
use crate::error::{Error, Result};
use crate::pending::Pending;

/// Identifies one compiled pipeline: a module, an entry point and the values of its
/// overridable constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    /// The module.
    pub(crate) spec: KernelSpec,
    /// The entry point.
    pub(crate) entry_point: &'static str,
    /// Overridable constants and their values (booleans as 0 and 1).
    pub(crate) constants: Vec<(&'static str, u32)>,
}

type Layouts = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

/// The compiled kernels of one device.
#[derive(Debug, Default)]
pub(crate) struct PipelineCache {
    modules: RwLock<HashMap<KernelSpec, (wgpu::ShaderModule, Arc<Module>)>>,
    layouts: RwLock<HashMap<Vec<wgpu::BufferBindingType>, Layouts>>,
    pipelines: RwLock<HashMap<KernelKey, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    /// The composed module `spec` and its compiled shader module.
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`] when the device allows fewer storage buffers per shader
    /// stage than the module binds, [`Error::Validation`] when the parts do not compose or
    /// wgpu rejects the module (a bug: the naga test composes and validates every module).
    /// On the web, wgpu's verdict comes later, through `pending`.
    pub(crate) fn module(
        &self,
        device: &wgpu::Device,
        pending: &Pending,
        spec: KernelSpec,
    ) -> Result<(wgpu::ShaderModule, Arc<Module>)> {
        if let Some(found) = read_lock(&self.modules).get(&spec) {
            return Ok(found.clone());
        }
        let composed =
            Arc::new(compose(spec).map_err(|e| Error::Validation(format!("{}: {e}", spec.label())))?);
        // A typed error where the device cannot bind this many storage buffers, before wgpu
        // would report it as a validation error at the layout.
        super::check_storage_bindings(
            composed.storage_bindings(),
            device.limits().max_storage_buffers_per_shader_stage,
        )?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let label = spec.label();
        crate::reuse::count_created();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(composed.source.as_str().into()),
        });
        if let Some(error) = pending.scope(scope.pop()) {
            return Err(Error::from_wgpu(&error));
        }
        let mut modules = write_lock(&self.modules);
        Ok(modules.entry(spec).or_insert((module, composed)).clone())
    }

    /// The bind group and pipeline layouts of `module`'s bindings.
    pub(crate) fn layouts(&self, device: &wgpu::Device, module: &Module) -> Layouts {
        let key = module.layout();
        if let Some(found) = read_lock(&self.layouts).get(&key) {
            return found.clone();
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = (0u32..)
            .zip(&key)
            .map(|(binding, &ty)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
                count: None,
            })
            .collect();
        crate::reuse::count_created();
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-softmax"),
            entries: &entries,
        });
        crate::reuse::count_created();
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgpu-softmax"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let mut layouts = write_lock(&self.layouts);
        layouts.entry(key).or_insert((bind_group_layout, pipeline_layout)).clone()
    }

    /// How many pipelines are compiled.
    pub(crate) fn compiled(&self) -> usize {
        read_lock(&self.pipelines).len()
    }

    /// The compiled pipeline for `key`.
    ///
    /// # Errors
    ///
    /// As [`PipelineCache::module`], and [`Error::Validation`] when wgpu rejects the
    /// pipeline (on the web, later, through `pending`).
    pub(crate) fn pipeline(
        &self,
        device: &wgpu::Device,
        pending: &Pending,
        key: &KernelKey,
    ) -> Result<wgpu::ComputePipeline> {
        if let Some(found) = read_lock(&self.pipelines).get(key) {
            return Ok(found.clone());
        }
        let (shader, module) = self.module(device, pending, key.spec)?;
        let constants: Vec<(&str, f64)> =
            key.constants.iter().map(|&(name, value)| (name, f64::from(value))).collect();
        let layout = self.layouts(device, &module).1;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        crate::reuse::count_created();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry_point),
            layout: Some(&layout),
            module: &shader,
            entry_point: Some(key.entry_point),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its shared memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(error) = pending.scope(scope.pop()) {
            return Err(Error::from_wgpu(&error));
        }
        let mut pipelines = write_lock(&self.pipelines);
        Ok(pipelines.entry(key.clone()).or_insert(pipeline).clone())
    }
}

// A poisoned lock only means another thread panicked mid-insert into a cache of
// immutable handles; the map itself is still consistent, so keep using it.
fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
