//! [`Context`]: the adapter, device and queue the kernels run on, and their compiled
//! pipelines.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::Health;
use crate::plan::DeviceCaps;
use crate::shaders::{BindingLayout, Shader};

/// The optional features this crate uses when the adapter has them.
/// (Timestamps inside encoders let the benchmark time exactly the passes of one op.)
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::SHADER_F16);

/// How long a host-API call waits for the GPU by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How [`Context::with_options`] picks and sets up its device. Fields left `None` follow
/// the `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF` environment variables.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ContextOptions {
    /// Backends to look for adapters on (default: `WGPU_BACKEND`, else all).
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this, case-insensitively (default:
    /// `WGPU_ADAPTER_NAME`, else wgpu's choice).
    pub adapter_name: Option<String>,
    /// Power preference (default: `WGPU_POWER_PREF`, else none).
    pub power_preference: Option<wgpu::PowerPreference>,
    /// Optional features to ask for where the adapter has them (default:
    /// [`OPTIONAL_FEATURES`]). Leave one out to test the paths that do without it.
    pub features: wgpu::Features,
    /// Limits to ask for (default: everything the adapter offers).
    pub limits: Option<wgpu::Limits>,
    /// How long host-API calls wait for the GPU (default: [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            backends: None,
            adapter_name: None,
            power_preference: None,
            features: OPTIONAL_FEATURES,
            limits: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Identifies one compiled pipeline: a module, an entry point and the values of its
/// overridable constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    pub shader: Shader,
    pub entry_point: &'static str,
    pub constants: Vec<(&'static str, u32)>,
}

struct Shared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    caps: DeviceCaps,
    layouts: RwLock<HashMap<BindingLayout, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    modules: RwLock<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: RwLock<HashMap<KernelKey, wgpu::ComputePipeline>>,
    placeholders: std::sync::OnceLock<Vec<wgpu::Buffer>>,
    health: Arc<Health>,
    tune_cache: crate::tune::TuneCache,
}

/// How many distinct placeholder buffers a bind group may need at once.
const PLACEHOLDERS: usize = 6;

/// The GPU the kernels run on: device, queue, what the adapter offers, and a cache of
/// compiled pipelines.
///
/// Cheap to clone (clones share the device and the cache), `Send` and `Sync`. Either let
/// it create a device ([`Context::new`]) or wrap your own ([`Context::from_device`]).
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    timeout: Duration,
    autotune: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.shared.info.name)
            .field("backend", &self.shared.info.backend)
            .field("caps", &self.shared.caps)
            .field("timeout", &self.timeout)
            .field("autotune", &self.autotune)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Creates a context on the adapter the `WGPU_*` environment variables select (else
    /// wgpu's default), with the optional features it has and all its limits.
    ///
    /// # Errors
    ///
    /// [`Error::NoAdapter`] when no adapter matches (its message says what to install),
    /// [`Error::DeviceRequest`] when the adapter refuses the device.
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// Creates a context as [`Context::new`] does, with explicit options.
    ///
    /// # Errors
    ///
    /// As [`Context::new`].
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// The async form of [`Context::with_options`].
    ///
    /// # Errors
    ///
    /// As [`Context::new`].
    pub async fn with_options_async(options: ContextOptions) -> Result<Self> {
        let backends =
            options.backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()));
        let adapter = select_adapter(backends, &options).await?;
        let info = adapter.get_info();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("wgpu-softmax"),
            required_features: options.features & adapter.features(),
            required_limits: options.limits.clone().unwrap_or_else(|| adapter.limits()),
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&descriptor)
            .await
            .map_err(|e| Error::DeviceRequest { adapter: info.name.clone(), message: e.to_string() })?;
        let context = Self::from_parts(device, queue, info, options.timeout);
        // This device is ours: its faults mark the context, instead of wgpu's default
        // handler panicking or later calls waiting on a dead device.
        let health = Arc::clone(&context.shared.health);
        context.device().on_uncaptured_error(Arc::new(move |error| health.uncaptured(error.to_string())));
        let health = Arc::clone(&context.shared.health);
        context.device().set_device_lost_callback(move |reason, message| {
            health.device_lost(format!("{reason:?}: {message}"));
        });
        Ok(context)
    }

    /// Wraps a device and queue the caller already has: the kernels run on them, next to
    /// the caller's own work. The context uses whatever features and limits the device was
    /// created with (subgroup kernels only where it has `Features::SUBGROUP`).
    ///
    /// The device's uncaptured-error handler and device-lost callback stay the caller's:
    /// call [`Context::report_device_lost`] or [`Context::report_fault`] from them so that
    /// this context stops taking work too.
    #[must_use]
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::from_parts(device, queue, info, DEFAULT_TIMEOUT)
    }

    fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        timeout: Duration,
    ) -> Self {
        let limits = device.limits();
        let caps = DeviceCaps {
            subgroups: device.features().contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            is_cpu: info.device_type == wgpu::DeviceType::Cpu,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
            storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
            max_loop_iterations: DeviceCaps::loop_limit_of(&info),
        };
        let shared = Shared {
            device,
            queue,
            info,
            caps,
            layouts: RwLock::default(),
            modules: RwLock::default(),
            pipelines: RwLock::default(),
            placeholders: std::sync::OnceLock::new(),
            health: Arc::default(),
            tune_cache: crate::tune::TuneCache::default(),
        };
        Self { shared: Arc::new(shared), timeout, autotune: false }
    }

    /// Marks the device lost: every later call on this context (and its clones) returns
    /// [`Error::DeviceLost`]. For embedders' own device-lost callbacks.
    pub fn report_device_lost(&self, message: impl Into<String>) {
        self.shared.health.device_lost(message.into());
    }

    /// Marks the device faulty: every later call returns [`Error::Unhealthy`]. For
    /// embedders' own uncaptured-error handlers.
    pub fn report_fault(&self, message: impl Into<String>) {
        self.shared.health.uncaptured(message.into());
    }

    /// `Ok` while the device has reported no fault.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceLost`] after the device was lost, [`Error::Unhealthy`] after an
    /// error outside any error scope.
    pub fn check_health(&self) -> Result<()> {
        self.shared.health.check()
    }

    /// A clone of this context whose host-API calls wait at most `timeout` for the GPU.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { timeout, ..self.clone() }
    }

    /// A clone of this context that autotunes: where an op's strategy is not forced, it
    /// times every strategy the device can run on a sample of the shape's bucket (once
    /// per op family and bucket, cached on the device) and uses the fastest, instead of
    /// the planner's heuristics. Tuning costs a few dispatches the first time a bucket is
    /// seen, synchronously, so it suits programs that run the same shapes many times.
    #[must_use]
    pub fn with_autotune(&self, autotune: bool) -> Self {
        Self { autotune, ..self.clone() }
    }

    /// Whether this context autotunes.
    #[must_use]
    pub fn autotune(&self) -> bool {
        self.autotune
    }

    pub(crate) fn tune_cache(&self) -> &crate::tune::TuneCache {
        &self.shared.tune_cache
    }

    /// How long host-API calls wait for the GPU.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &wgpu::Device {
        &self.shared.device
    }

    /// The queue.
    #[must_use]
    pub fn queue(&self) -> &wgpu::Queue {
        &self.shared.queue
    }

    /// The adapter's name, backend, driver and type.
    #[must_use]
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.shared.info
    }

    /// What the planner knows of this device.
    pub(crate) fn caps(&self) -> &DeviceCaps {
        &self.shared.caps
    }

    /// Whether the device has subgroup operations (`Features::SUBGROUP`), which
    /// [`crate::Strategy::SubgroupPerRow`] needs.
    #[must_use]
    pub fn has_subgroups(&self) -> bool {
        self.shared.caps.subgroups
    }

    /// The loop iterations one shader invocation may run in total before this driver
    /// silently stops its loops, where it has such a limit: Mesa's llvmpipe (lavapipe on
    /// Vulkan, llvmpipe on GL) stops them after 65,535. The planner keeps every kernel
    /// under it and refuses a forced strategy that would exceed it.
    #[must_use]
    pub fn loop_iteration_limit(&self) -> Option<u64> {
        self.shared.caps.max_loop_iterations
    }

    /// One line naming the adapter, its backend and driver, for logs and test output.
    #[must_use]
    pub fn describe(&self) -> String {
        let info = &self.shared.info;
        format!(
            "{} ({:?}, {:?}, driver {} {}; subgroups: {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            if self.shared.caps.subgroups {
                format!("{}..{} lanes", info.subgroup_min_size, info.subgroup_max_size)
            } else {
                "no".to_owned()
            }
        )
    }

    /// The bind group and pipeline layouts of `layout`, created on first use.
    fn layouts(&self, layout: BindingLayout) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        if let Some(found) = read_lock(&self.shared.layouts).get(&layout) {
            return found.clone();
        }
        let device = &self.shared.device;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = (0u32..)
            .zip(layout.bindings())
            .map(|(binding, &ty)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
                count: None,
            })
            .collect();
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-softmax"),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgpu-softmax"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let mut layouts = write_lock(&self.shared.layouts);
        layouts.entry(layout).or_insert((bind_group_layout, pipeline_layout)).clone()
    }

    /// The `index`-th of a few tiny storage buffers that stand in for bindings a kernel
    /// variant never touches (no weight, no gradient...). Distinct buffers, so that no two
    /// writable bindings of one bind group alias.
    pub(crate) fn placeholder(&self, index: usize) -> &wgpu::Buffer {
        let all = self.shared.placeholders.get_or_init(|| {
            (0..PLACEHOLDERS)
                .map(|_| {
                    self.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("wgpu-softmax: unused binding"),
                        size: 16,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                })
                .collect()
        });
        &all[index % all.len()]
    }

    /// Records one compute pass running `pipeline` over `grid` workgroups.
    pub(crate) fn dispatch(
        encoder: &mut wgpu::CommandEncoder,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        grid: [u32; 2],
    ) {
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], 1);
    }

    /// A bind group of `layout` over `buffers`, binding 0 first.
    pub(crate) fn bind_buffers(
        &self,
        layout: BindingLayout,
        buffers: &[wgpu::BufferBinding<'_>],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = (0u32..)
            .zip(buffers)
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(buffer.clone()),
            })
            .collect();
        self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-softmax"),
            layout: &self.layouts(layout).0,
            entries: &entries,
        })
    }

    /// The compiled pipeline for `key`, compiling it on first use. Compilation runs
    /// outside the lock; a racing thread's pipeline is kept and the later one dropped, so
    /// every caller sees the same pipeline.
    pub(crate) fn pipeline(&self, key: &KernelKey) -> Result<wgpu::ComputePipeline> {
        self.check_health()?;
        if let Some(found) = read_lock(&self.shared.pipelines).get(key) {
            return Ok(found.clone());
        }
        let module = self.module(key.shader)?;
        let constants: Vec<(&str, f64)> =
            key.constants.iter().map(|&(name, value)| (name, f64::from(value))).collect();
        let device = &self.shared.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry_point),
            layout: Some(&self.layouts(key.shader.layout()).1),
            module: &module,
            entry_point: Some(key.entry_point),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its shared memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::from_wgpu(&error));
        }
        let mut pipelines = write_lock(&self.shared.pipelines);
        Ok(pipelines.entry(key.clone()).or_insert(pipeline).clone())
    }

    fn module(&self, shader: Shader) -> Result<wgpu::ShaderModule> {
        if let Some(found) = read_lock(&self.shared.modules).get(&shader) {
            return Ok(found.clone());
        }
        let device = &self.shared.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.label()),
            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::from_wgpu(&error));
        }
        let mut modules = write_lock(&self.shared.modules);
        Ok(modules.entry(shader).or_insert(module).clone())
    }
}

/// The adapters of this process's one wgpu instance for `backends`, enumerated once.
///
/// Contexts made by [`Context::new`] share the instance and its adapter objects, so that:
/// - a buffer of one context's device passed to another context's op is a device mismatch
///   that wgpu reports (and this crate turns into [`Error::ForeignBuffer`]), instead of an
///   id that one instance's tables do not hold (a panic inside wgpu-core) or, worse, hold
///   for a different buffer of their own;
/// - on GL, whose instance has one EGL context, every device goes through the same
///   adapter and so the same context lock, instead of two adapter objects making one EGL
///   context current on two threads at once (which EGL refuses, and wgpu-hal panics on).
async fn shared_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    type Cache = Vec<(wgpu::Backends, Vec<wgpu::Adapter>)>;
    static ADAPTERS: std::sync::OnceLock<futures_intrusive::sync::Mutex<Cache>> = std::sync::OnceLock::new();
    let mut cache =
        ADAPTERS.get_or_init(|| futures_intrusive::sync::Mutex::new(Vec::new(), false)).lock().await;
    if let Some((_, found)) = cache.iter().find(|(b, _)| *b == backends) {
        return found.clone();
    }
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backends;
    let instance = wgpu::Instance::new(descriptor);
    // Enumerated once, under the lock: on GL this makes the EGL context current, which
    // must not happen while another thread works in it.
    let adapters = instance.enumerate_adapters(backends).await;
    cache.push((backends, adapters.clone()));
    adapters
}

/// The adapter `options` ask for among this process's adapters on `backends`: the first
/// whose name contains the wanted name, else the first by power preference (discrete GPUs
/// first for high performance and by default, integrated first for low power, CPU
/// adapters last).
async fn select_adapter(backends: wgpu::Backends, options: &ContextOptions) -> Result<wgpu::Adapter> {
    let adapters = shared_adapters(backends).await;
    let wanted_name = options
        .adapter_name
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|name| !name.is_empty());
    if let Some(name) = wanted_name {
        let needle = name.to_lowercase();
        let found: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&needle)).ok_or_else(
            || Error::NoAdapter {
                request: format!(
                    "backends {backends:?}, name containing '{name}'; adapters present: {found:?}"
                ),
            },
        );
    }
    let power_preference =
        options.power_preference.or_else(wgpu::PowerPreference::from_env).unwrap_or_default();
    let rank = |adapter: &wgpu::Adapter| match (adapter.get_info().device_type, power_preference) {
        (wgpu::DeviceType::IntegratedGpu, wgpu::PowerPreference::LowPower) => 0,
        (wgpu::DeviceType::DiscreteGpu, _) => 1,
        (wgpu::DeviceType::IntegratedGpu, _) => 2,
        (wgpu::DeviceType::VirtualGpu, _) => 3,
        (wgpu::DeviceType::Other, _) => 4,
        (wgpu::DeviceType::Cpu, _) => 5,
    };
    adapters
        .into_iter()
        .min_by_key(rank)
        .ok_or_else(|| Error::NoAdapter { request: format!("backends {backends:?}: none found") })
}

// A poisoned lock only means another thread panicked mid-insert into a cache of
// immutable handles; the map itself is still consistent, so keep using it.
fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
