//! [`Context`]: the adapter, device and queue the kernels run on, and their compiled
//! pipelines.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::health::Health;
use crate::kernels::{KernelKey, Module, PipelineCache};
use crate::plan::{DeviceCaps, DeviceProfile};

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

struct Shared {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    profile: DeviceProfile,
    caps: DeviceCaps,
    kernels: PipelineCache,
    /// Error checks not settled yet (on the web).
    pending: crate::pending::Pending,
    placeholders: std::sync::OnceLock<Vec<wgpu::Buffer>>,
    health: Arc<Health>,
    tune_cache: crate::tune::TuneCache,
    /// Bytes of the largest buffer the ops have made for themselves.
    largest_scratch: std::sync::atomic::AtomicU64,
    /// Uniforms, bind groups and scratch buffers the ops reuse from call to call.
    reuse: crate::reuse::Reuse,
}

/// How many distinct placeholder buffers a bind group may need at once: one per binding
/// of the largest module, so that no two bindings of one bind group share one.
const PLACEHOLDERS: usize = crate::kernels::MAX_BINDINGS;

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
    cached_rows: Option<bool>,
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
    /// As [`Context::new`]; on the web, [`Error::NeedsAsync`]: use
    /// [`Context::with_options_async`].
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        Self::blocking("Context::new and Context::with_options", "Context::new_async")?;
        pollster::block_on(Self::with_options_async(options))
    }

    /// The async form of [`Context::new`], and the way to create a context on the web
    /// (wasm32 with wgpu's WebGPU backend), where it asks the browser for its WebGPU
    /// adapter (`navigator.gpu`).
    ///
    /// # Errors
    ///
    /// As [`Context::new`]; on the web, [`Error::NoWebGpu`] when the browser has no WebGPU
    /// adapter to give.
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(ContextOptions::default()).await
    }

    /// The async form of [`Context::with_options`]. On the web, the backends and the
    /// adapter's name are not read (the browser offers one adapter).
    ///
    /// # Errors
    ///
    /// As [`Context::new_async`].
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
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use wgpu_softmax::{Context, Shape, Softmax, wgpu};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The application's own instance, adapter, device and queue.
    /// let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    /// let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    /// let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
    ///     required_features: adapter.features() & wgpu_softmax::OPTIONAL_FEATURES,
    ///     required_limits: Context::required_limits(&adapter),
    ///     ..Default::default()
    /// }))?;
    /// let ctx = Context::from_device(device.clone(), queue.clone());
    ///
    /// // The application's fault handler tells the context too.
    /// let for_faults = ctx.clone();
    /// device.on_uncaptured_error(Arc::new(move |error| for_faults.report_fault(error.to_string())));
    ///
    /// // The application's buffers and encoder; the op records, the application submits.
    /// let shape = Shape::new(4, 10);
    /// let input = ctx.upload(&vec![1.0; 40])?;
    /// let output = ctx.storage_buffer(40)?;
    /// let mut encoder = device.create_command_encoder(&Default::default());
    /// Softmax::new().encode(&ctx, &mut encoder, &input, &output, shape)?;
    /// queue.submit([encoder.finish()]);
    /// assert!((ctx.download(&output, 40)?[0] - 0.1).abs() < 1e-6);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::from_parts(device, queue, info, DEFAULT_TIMEOUT)
    }

    /// The limits every op of this crate needs, within what `adapter` offers: WebGPU's
    /// downlevel defaults ([`wgpu::Limits::downlevel_defaults`]) with enough storage buffers
    /// per shader stage for the largest module every op must bind (8, WebGPU's default: on
    /// a device with fewer than its wide kernel binds, the cross-entropy takes a packed
    /// kernel whose argmax, logsumexp and 16-bit edge words share one scratch binding,
    /// copied out after each chunk, and the split strategy gives way to the others), and
    /// the adapter's alignments. Ask for them when creating a device for
    /// [`Context::from_device`].
    ///
    /// Where the adapter offers less than that, the result keeps the adapter's value, and
    /// the ops that need more return [`Error::LimitExceeded`] naming the limit (before
    /// recording anything) instead of failing inside wgpu. Larger tensors than these
    /// limits' storage bindings are taken in chunks, at some cost in speed:
    /// [`Context::preferred_limits`] lifts that.
    ///
    /// ```no_run
    /// use wgpu_softmax::{Context, wgpu};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    /// let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    /// let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
    ///     required_limits: Context::required_limits(&adapter),
    ///     ..Default::default()
    /// }))?;
    /// let ctx = Context::from_device(device, queue);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn required_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
        let offered = adapter.limits();
        let mut limits = wgpu::Limits::downlevel_defaults().using_alignment(offered.clone());
        limits.max_storage_buffers_per_shader_stage =
            limits.max_storage_buffers_per_shader_stage.max(crate::kernels::required_storage_bindings());
        limits.or_worse_values_from(&offered)
    }

    /// The limits that unlock this crate's faster paths on `adapter`, within what it
    /// offers: [`Context::required_limits`], raised to storage buffers for every module
    /// (the linear cross-entropy's forward that reduces each block of logits as it computes
    /// it, instead of storing windows of them), the workgroup memory that kernel uses, and
    /// the adapter's largest storage bindings, buffers and grids (fewer chunks, larger
    /// windows of the linear cross-entropy's workspace). [`Context::new`] asks for all of
    /// the adapter's limits, which include these.
    #[must_use]
    pub fn preferred_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
        let offered = adapter.limits();
        let mut limits = Self::required_limits(adapter);
        limits.max_storage_buffers_per_shader_stage =
            limits.max_storage_buffers_per_shader_stage.max(crate::kernels::preferred_storage_bindings());
        limits.max_compute_workgroup_storage_size =
            limits.max_compute_workgroup_storage_size.max(crate::kernels::LINEAR_WORKGROUP_BYTES);
        limits.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size;
        limits.max_buffer_size = offered.max_buffer_size;
        limits.max_compute_workgroups_per_dimension = offered.max_compute_workgroups_per_dimension;
        limits.or_worse_values_from(&offered)
    }

    fn from_parts(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        timeout: Duration,
    ) -> Self {
        // The planner reads the device through its profile, as it reads a profile of a
        // device that is not here.
        let profile = DeviceProfile::from_parts(&info, device.features(), &device.limits());
        let caps = profile.caps();
        let shared = Shared {
            device,
            queue,
            info,
            profile,
            caps,
            kernels: PipelineCache::default(),
            pending: crate::pending::Pending::default(),
            placeholders: std::sync::OnceLock::new(),
            health: Arc::default(),
            tune_cache: crate::tune::TuneCache::default(),
            largest_scratch: std::sync::atomic::AtomicU64::new(0),
            reuse: crate::reuse::Reuse::default(),
        };
        Self { shared: Arc::new(shared), timeout, autotune: false, cached_rows: None }
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

    /// A clone of this context whose kernels keep (`true`) or do not keep (`false`) each
    /// invocation's share of a row in registers between their passes over it, instead of
    /// the default: kept on GPUs, where a row that fits is then read from memory once
    /// and exponentiated once; not kept on CPU adapters (lavapipe, llvmpipe), where the
    /// second pass reads the CPU's caches and keeping measured slower. Both compute the
    /// same function; this is for measuring and testing either on any adapter.
    #[must_use]
    pub fn with_cached_rows(&self, cached: bool) -> Self {
        Self { cached_rows: Some(cached), ..self.clone() }
    }

    /// Whether kernels on this context keep rows in registers (see
    /// [`Context::with_cached_rows`]).
    #[must_use]
    pub fn cached_rows(&self) -> bool {
        self.cached_rows.unwrap_or(self.shared.caps.keeps_rows_by_default())
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

    /// The device's profile: the adapter's identity, and the limits and features the device
    /// was created with, as the planner reads them. `wgpu-softmax info --json` prints it;
    /// [`DeviceProfile::explain`] plans on it as this context does.
    #[must_use]
    pub fn profile(&self) -> &DeviceProfile {
        &self.shared.profile
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

    /// The size in bytes of the largest buffer this context's ops (and its clones') have
    /// made for their own use since it was created: scratch, workspaces, partial sums.
    /// Buffers the caller passes in and the host API's uploads and results are not
    /// counted. What an op needs beyond its inputs and outputs is bounded by this.
    #[must_use]
    pub fn largest_scratch_bytes(&self) -> u64 {
        self.shared.largest_scratch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that an op made a buffer of `bytes` for its own use.
    pub(crate) fn note_scratch(&self, bytes: u64) {
        self.shared.largest_scratch.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The `index`-th of a few tiny storage buffers that stand in for bindings a kernel
    /// variant never touches (no weight, no gradient...). Distinct buffers, so that no two
    /// writable bindings of one bind group alias.
    pub(crate) fn placeholder(&self, index: usize) -> &wgpu::Buffer {
        let all = self.shared.placeholders.get_or_init(|| {
            (0..PLACEHOLDERS)
                .map(|_| {
                    crate::reuse::count_created();
                    self.device().create_buffer(&wgpu::BufferDescriptor {
                        label: Some("wgpu-softmax: unused binding"),
                        size: 16,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                })
                .collect()
        });
        // An index past them is a bug that the kernel test catches; wrapping keeps it an
        // aliasing error from wgpu rather than a panic.
        &all[index % all.len()]
    }

    /// A bind group of `module`'s layout over `buffers`, binding 0 first: the one made
    /// for the same layout and bindings before, while it is cached (see
    /// [`Context::clear_caches`]).
    ///
    /// # Errors
    ///
    /// What wgpu reports creating it ([`Error::ForeignBuffer`] for a buffer of another
    /// device, [`Error::Validation`]); on the web that comes later, through the pending
    /// checks.
    pub(crate) fn bind_buffers(
        &self,
        module: &Module,
        buffers: &[wgpu::BufferBinding<'_>],
    ) -> Result<wgpu::BindGroup> {
        let layout = self.shared.kernels.layouts(self.device(), module).0;
        self.shared.reuse.bind_group(&layout, buffers, || {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = (0u32..)
                .zip(buffers)
                .map(|(binding, buffer)| wgpu::BindGroupEntry {
                    binding,
                    resource: wgpu::BindingResource::Buffer(buffer.clone()),
                })
                .collect();
            // Its own scope, so that a rejected bind group is not kept for later calls.
            let scope = self.device().push_error_scope(wgpu::ErrorFilter::Validation);
            crate::reuse::count_created();
            let group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("wgpu-softmax"),
                layout: &layout,
                entries: &entries,
            });
            match self.pending().scope(scope.pop()) {
                Some(error) => Err(Error::from_wgpu(&error)),
                None => Ok(group),
            }
        })
    }

    /// A uniform buffer holding `contents` (an op's params): one made for the same bytes
    /// before, while it is cached. Such a buffer is never written again, so commands
    /// recorded with it read the same bytes whenever they are submitted.
    ///
    /// # Errors
    ///
    /// As [`Context::buffer_with`].
    pub(crate) fn uniform(&self, label: &str, contents: &[u8]) -> Result<wgpu::Buffer> {
        self.shared.reuse.uniform(contents, || self.buffer_with(label, contents, wgpu::BufferUsages::UNIFORM))
    }

    /// A scratch buffer of `bytes` (at least 16) for an op's own use while it records into
    /// `recorder`: from the context's pool where one of that size is idle, else new; in
    /// either case cleared to zeros by a command recorded here, before anything the op
    /// records after. The clear ends the recorder's open pass, so ops take their scratch
    /// before their first dispatch. Counted in [`Context::largest_scratch_bytes`]; back to
    /// the pool when dropped.
    ///
    /// # Errors
    ///
    /// As [`Context::storage_buffer`].
    pub(crate) fn scratch_buffer(
        &self,
        recorder: &mut crate::record::Recorder<'_>,
        bytes: u64,
    ) -> Result<crate::reuse::Scratch> {
        let scratch = self.scratch_written_first(bytes)?;
        recorder.encoder().clear_buffer(&scratch, 0, None);
        Ok(scratch)
    }

    /// [`Context::scratch_buffer`] without the clear, for scratch whose every word the op
    /// writes before any is read (the split's segment shares, a split product's partial
    /// products): it records nothing, so it may be taken between dispatches without ending
    /// the recorder's pass. What it holds at first is whatever its last user left.
    ///
    /// # Errors
    ///
    /// As [`Context::storage_buffer`].
    pub(crate) fn scratch_written_first(&self, bytes: u64) -> Result<crate::reuse::Scratch> {
        self.note_scratch(bytes);
        let size = crate::reuse::scratch_size(bytes);
        self.shared.reuse.scratch(size, || self.zeroed_buffer(bytes))
    }

    /// A zeroed buffer of `bytes` an op keeps for itself beyond one recording (not from the
    /// pool), counted in [`Context::largest_scratch_bytes`].
    ///
    /// # Errors
    ///
    /// As [`Context::storage_buffer`].
    pub(crate) fn owned_scratch(&self, bytes: u64) -> Result<wgpu::Buffer> {
        self.note_scratch(bytes);
        self.zeroed_buffer(bytes)
    }

    /// Lets go of the objects the ops keep for reuse: cached bind groups (and so the
    /// buffers they bind, the caller's included), params uniforms, and idle scratch
    /// buffers. The next calls make them again. Commands already recorded are unaffected.
    pub fn clear_caches(&self) {
        self.shared.reuse.clear();
    }

    /// `Ok` on native; on the web, where nothing may wait for the GPU,
    /// [`Error::NeedsAsync`] naming `call` and the async call to use `instead`.
    pub(crate) fn blocking(call: &'static str, instead: &'static str) -> Result<()> {
        if cfg!(target_arch = "wasm32") { Err(Error::NeedsAsync { call, instead }) } else { Ok(()) }
    }

    /// Error checks not settled yet (on the web).
    pub(crate) fn pending(&self) -> &crate::pending::Pending {
        &self.shared.pending
    }

    /// Waits for wgpu's verdict on everything this context (and its clones) recorded so far,
    /// and returns the first error it caught, as the blocking host API returns it at once.
    /// On native the verdict is in already and this returns at once; on the web, where
    /// wgpu reports its errors asynchronously, the ops' `encode` methods cannot return
    /// them, and this (or any async download, which calls it) is where they arrive.
    ///
    /// # Errors
    ///
    /// The first error caught since the last check ([`Error::Validation`],
    /// [`Error::OutOfMemory`], ...), and the context's faults.
    pub async fn check_errors_async(&self) -> Result<()> {
        self.shared.pending.settle().await?;
        self.check_health()
    }

    /// How many pipelines this context (and its clones) has compiled so far: they compile
    /// at an op's first use, or ahead of it through [`Context::prepare`].
    #[must_use]
    pub fn compiled_pipelines(&self) -> usize {
        self.shared.kernels.compiled()
    }

    /// The compiled pipeline for `key`, compiling it on first use.
    ///
    /// # Errors
    ///
    /// The context's fault, or [`Error::Validation`] when a module or pipeline does not
    /// compile (a bug).
    pub(crate) fn pipeline(&self, key: &KernelKey) -> Result<wgpu::ComputePipeline> {
        self.check_health()?;
        self.shared.kernels.pipeline(self.device(), &self.shared.pending, key)
    }

    /// The composed module of `spec`, compiling it on first use.
    ///
    /// # Errors
    ///
    /// As [`Context::pipeline`].
    pub(crate) fn module(&self, spec: crate::kernels::KernelSpec) -> Result<Arc<Module>> {
        self.check_health()?;
        Ok(self.shared.kernels.module(self.device(), &self.shared.pending, spec)?.1)
    }
}

/// GPU objects the calling thread has created through this crate so far, all contexts
/// together.
#[cfg(feature = "testing")]
pub(crate) fn objects_created() -> u64 {
    crate::reuse::objects_created()
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
#[cfg(not(target_arch = "wasm32"))]
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
#[cfg(not(target_arch = "wasm32"))]
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

/// The browser's WebGPU adapter, by the options' power preference: the browser offers one
/// adapter, and no backends or names to choose among.
#[cfg(target_arch = "wasm32")]
async fn select_adapter(_backends: wgpu::Backends, options: &ContextOptions) -> Result<wgpu::Adapter> {
    // Checked first: without `navigator.gpu` (or off the main thread and dedicated
    // workers) wgpu's WebGPU instance cannot be created.
    if !wgpu::util::is_browser_webgpu_supported().await {
        return Err(Error::NoWebGpu("navigator.gpu is missing or requestAdapter() gave none".to_owned()));
    }
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::BROWSER_WEBGPU;
    let instance = wgpu::Instance::new(descriptor);
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: options.power_preference.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoWebGpu(e.to_string()))
}
