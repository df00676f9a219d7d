//! [`DeviceProfile`]: what the planner knows of a device, as plain data, so that plans can
//! be made and explained for a device that is not here (a profile written down from public
//! limit tables) as well as for the one a [`crate::Context`] runs on.

use super::DeviceCaps;

/// The limits of a device that the planner and the ops read: a plain copy of those fields
/// of [`wgpu::Limits`], as wgpu reports them for the adapter (after its own caps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileLimits {
    /// `max_compute_workgroup_size_x`.
    pub max_compute_workgroup_size_x: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub max_compute_invocations_per_workgroup: u32,
    /// `max_compute_workgroups_per_dimension`: the grid's side; larger grids spread over y,
    /// and larger matrices are split into chunks of rows.
    pub max_compute_workgroups_per_dimension: u32,
    /// `max_compute_workgroup_storage_size`: whether the linear cross-entropy's forward
    /// that never stores logits fits.
    pub max_compute_workgroup_storage_size: u32,
    /// `max_storage_buffer_binding_size`: what one chunk of rows (and the linear
    /// cross-entropy's workspace) may span.
    pub max_storage_buffer_binding_size: u64,
    /// `max_buffer_size`: what one buffer may hold (the host API's pieces, the workspace).
    pub max_buffer_size: u64,
    /// `max_storage_buffers_per_shader_stage`: which modules the device can bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// `min_storage_buffer_offset_alignment`: where a chunk or window of rows may start.
    pub min_storage_buffer_offset_alignment: u32,
    /// `max_uniform_buffer_binding_size`.
    pub max_uniform_buffer_binding_size: u64,
}

impl ProfileLimits {
    /// The fields' names, in declaration order (the names of [`wgpu::Limits`]' fields).
    pub const NAMES: [&'static str; 9] = [
        "max_compute_workgroup_size_x",
        "max_compute_invocations_per_workgroup",
        "max_compute_workgroups_per_dimension",
        "max_compute_workgroup_storage_size",
        "max_storage_buffer_binding_size",
        "max_buffer_size",
        "max_storage_buffers_per_shader_stage",
        "min_storage_buffer_offset_alignment",
        "max_uniform_buffer_binding_size",
    ];

    /// Those fields of `limits`.
    #[must_use]
    pub const fn from_wgpu(limits: &wgpu::Limits) -> Self {
        Self {
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            max_uniform_buffer_binding_size: limits.max_uniform_buffer_binding_size,
        }
    }

    /// The fields as `(name, value)` pairs, in the order of [`ProfileLimits::NAMES`].
    #[must_use]
    pub fn values(&self) -> [(&'static str, u64); 9] {
        let values = [
            u64::from(self.max_compute_workgroup_size_x),
            u64::from(self.max_compute_invocations_per_workgroup),
            u64::from(self.max_compute_workgroups_per_dimension),
            u64::from(self.max_compute_workgroup_storage_size),
            self.max_storage_buffer_binding_size,
            self.max_buffer_size,
            u64::from(self.max_storage_buffers_per_shader_stage),
            u64::from(self.min_storage_buffer_offset_alignment),
            self.max_uniform_buffer_binding_size,
        ];
        let mut out = [("", 0); 9];
        for (slot, (name, value)) in out.iter_mut().zip(Self::NAMES.into_iter().zip(values)) {
            *slot = (name, value);
        }
        out
    }
}

/// The optional features that matter to this crate, as the device has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProfileFeatures {
    /// `Features::SUBGROUP`: the subgroup-per-row strategy.
    pub subgroups: bool,
    /// `Features::SHADER_F16` (the kernels convert f16 without it; noted for later use).
    pub shader_f16: bool,
    /// `Features::TIMESTAMP_QUERY`: GPU timings in the benchmark.
    pub timestamp_query: bool,
}

impl ProfileFeatures {
    /// The fields' names, in declaration order.
    pub const NAMES: [&'static str; 3] = ["subgroups", "shader_f16", "timestamp_query"];

    /// Those of `features`.
    #[must_use]
    pub const fn from_wgpu(features: wgpu::Features) -> Self {
        Self {
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }

    /// The fields as `(name, value)` pairs, in the order of [`ProfileFeatures::NAMES`].
    #[must_use]
    pub const fn values(&self) -> [(&'static str, bool); 3] {
        [
            (Self::NAMES[0], self.subgroups),
            (Self::NAMES[1], self.shader_f16),
            (Self::NAMES[2], self.timestamp_query),
        ]
    }
}

/// A device as the planner sees it: the adapter's identity, the limits and features the
/// planner and the ops read, and the subgroup sizes. Plain data: write one down for a
/// device that is not here (the `profiles/` directory of the repository holds some, and
/// `wgpu-softmax info --json` prints the selected adapter's) and ask
/// [`DeviceProfile::explain`] what an op would do on it, without a GPU. A
/// [`crate::Context`]'s own is [`crate::Context::profile`]; the context plans from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceProfile {
    /// The adapter's name (`wgpu::AdapterInfo::name`).
    pub name: String,
    /// Discrete, integrated, virtual, CPU or other: CPU adapters plan differently.
    pub device_type: wgpu::DeviceType,
    /// The PCI vendor id (`0x10de` NVIDIA, `0x1002` AMD, `0x8086` Intel; 0 where the
    /// backend reports none, as Metal).
    pub vendor: u32,
    /// The backend wgpu reached the adapter through.
    pub backend: wgpu::Backend,
    /// The driver's name (`wgpu::AdapterInfo::driver`): `llvmpipe` there marks Mesa's
    /// software rasteriser, whose loop limit the planner respects.
    pub driver: String,
    /// The driver's version text (`wgpu::AdapterInfo::driver_info`).
    pub driver_info: String,
    /// The limits the planner and the ops read.
    pub limits: ProfileLimits,
    /// The optional features that matter here.
    pub features: ProfileFeatures,
    /// The smallest subgroup size the adapter may use (`AdapterInfo::subgroup_min_size`):
    /// the subgroup strategy gives a row at most this many lanes.
    pub subgroup_min_size: u32,
    /// The largest (`AdapterInfo::subgroup_max_size`).
    pub subgroup_max_size: u32,
}

impl DeviceProfile {
    /// The profile of a device created on an adapter of `info` with `features` and
    /// `limits` (a device's, or the adapter's to describe what it offers).
    #[must_use]
    pub fn from_parts(info: &wgpu::AdapterInfo, features: wgpu::Features, limits: &wgpu::Limits) -> Self {
        Self {
            name: info.name.clone(),
            device_type: info.device_type,
            vendor: info.vendor,
            backend: info.backend,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            limits: ProfileLimits::from_wgpu(limits),
            features: ProfileFeatures::from_wgpu(features),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
        }
    }

    /// What `adapter` offers: its information, features and limits (a device that
    /// [`crate::Context::new`] creates on it gets all of them, and the optional features
    /// of [`crate::OPTIONAL_FEATURES`] among them).
    #[must_use]
    pub fn of_adapter(adapter: &wgpu::Adapter) -> Self {
        Self::from_parts(&adapter.get_info(), adapter.features(), &adapter.limits())
    }

    /// Whether this is a CPU adapter (a software rasteriser such as lavapipe).
    #[must_use]
    pub fn is_cpu(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// The loop iterations one shader invocation may run before this driver silently
    /// stops its loops, where it has such a limit (Mesa's llvmpipe: 65,535), recognised
    /// from the name and driver.
    #[must_use]
    pub fn loop_iteration_limit(&self) -> Option<u64> {
        DeviceCaps::loop_limit_of(&self.name, &self.driver)
    }

    /// Whether kernels on this device keep rows in registers unless told otherwise (see
    /// [`crate::Context::with_cached_rows`]): on GPUs, not on CPU adapters.
    #[must_use]
    pub fn keeps_rows_by_default(&self) -> bool {
        self.caps().keeps_rows_by_default()
    }

    /// What the planner reads of it.
    pub(crate) fn caps(&self) -> DeviceCaps {
        let limits = &self.limits;
        DeviceCaps {
            subgroups: self.features.subgroups,
            subgroup_min_size: self.subgroup_min_size,
            is_cpu: self.is_cpu(),
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
            storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
            max_loop_iterations: self.loop_iteration_limit(),
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_workgroup_lanes: limits
                .max_compute_invocations_per_workgroup
                .min(limits.max_compute_workgroup_size_x),
        }
    }
}

#[cfg(test)]
impl DeviceProfile {
    /// A profile as public limit tables give it, without a GPU.
    pub(crate) fn for_tests(name: &str, device_type: wgpu::DeviceType, subgroup_min_size: u32) -> Self {
        Self {
            name: name.to_owned(),
            device_type,
            vendor: 0x10de,
            backend: wgpu::Backend::Vulkan,
            driver: String::new(),
            driver_info: String::new(),
            limits: ProfileLimits {
                max_compute_workgroup_size_x: 1024,
                max_compute_invocations_per_workgroup: 1024,
                max_compute_workgroups_per_dimension: 65535,
                max_compute_workgroup_storage_size: 48 << 10,
                max_storage_buffer_binding_size: (1 << 31) - 4,
                max_buffer_size: (1 << 32) - 1,
                max_storage_buffers_per_shader_stage: 1 << 16,
                min_storage_buffer_offset_alignment: 32,
                max_uniform_buffer_binding_size: 1 << 16,
            },
            features: ProfileFeatures { subgroups: true, shader_f16: true, timestamp_query: true },
            subgroup_min_size,
            subgroup_max_size: subgroup_min_size,
        }
    }
}
