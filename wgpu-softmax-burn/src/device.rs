//! One wgpu device for Burn and for the library: the setup this crate makes (or the
//! caller's), registered with Burn's wgpu runtime, and a library context over the same
//! device and queue.

use std::sync::{Mutex, PoisonError};

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuSetup, wgpu};
use burn_cubecl::CubeDevice;
use burn_dispatch::DispatchDevice;
use wgpu_softmax::Context;

use crate::error::{Error, Result};

/// The contexts of the devices this crate set up, by Burn's device. A handful per process.
static CONTEXTS: Mutex<Vec<(CubeDevice, Context)>> = Mutex::new(Vec::new());

/// A wgpu device shared by Burn and this crate's kernels: Burn's tensors live in its
/// buffers, Burn's kernels and this crate's run on its queue. Make the model's tensors on
/// [`BurnDevice::device`] (or [`BurnDevice::autodiff`] to train), and pass them to this
/// crate's ops; nothing is copied between the two.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax_burn::Error> {
/// use burn::tensor::{Distribution, Tensor};
/// let shared = wgpu_softmax_burn::BurnDevice::new()?;
/// let x = Tensor::<2>::random([8, 100], Distribution::Default, &shared.device());
/// let p = wgpu_softmax_burn::softmax(x, 1)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BurnDevice {
    device: Device,
    context: Context,
}

impl BurnDevice {
    /// Sets up a device on the adapter the `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// `WGPU_POWER_PREF` environment variables select (else wgpu's default), with every
    /// feature and limit the adapter offers, and registers it with Burn's wgpu runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] when no adapter matches (the message says what was looked for),
    /// the adapter refuses the device, or Burn refuses the setup.
    pub fn new() -> Result<Self> {
        Self::from_setup(default_setup()?)
    }

    /// Registers the caller's wgpu setup with Burn's wgpu runtime and builds this crate's
    /// context over the same device and queue. The device should have the adapter's
    /// features (less `MAPPABLE_PRIMARY_BUFFERS`) and limits, as Burn asks for them;
    /// register a setup once, and clone the result to share it.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] when Burn refuses the setup.
    pub fn from_setup(setup: WgpuSetup) -> Result<Self> {
        let context = Context::from_device(setup.device.clone(), setup.queue.clone());
        let device =
            Device::wgpu_options().setup(setup).init().map_err(|e| Error::Setup(format!("{e:?}")))?;
        let cube = cube_device(&device).ok_or_else(|| {
            Error::Setup(format!("Burn registered the setup as {device:?}, not as a wgpu device"))
        })?;
        CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner).push((cube, context.clone()));
        Ok(Self { device, context })
    }

    /// Burn's device, without autodiff: for inference.
    #[must_use]
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Burn's device with autodiff: tensors made on it track gradients through this
    /// crate's ops as through Burn's.
    #[must_use]
    pub fn autodiff(&self) -> Device {
        self.device.clone().autodiff()
    }

    /// The library's context over the shared device and queue.
    #[must_use]
    pub const fn context(&self) -> &Context {
        &self.context
    }
}

/// The context of the device `cube` (a device [`BurnDevice`] set up).
pub(crate) fn context_for(what: &'static str, cube: &CubeDevice) -> Result<Context> {
    CONTEXTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(known, _)| known == cube)
        .map(|(_, context)| context.clone())
        .ok_or_else(|| Error::UnknownDevice { what, device: format!("{cube:?}") })
}

/// The setup [`BurnDevice::new`] makes: the adapter the environment selects, with all its
/// features (less the one Burn leaves out) and limits.
fn default_setup() -> Result<WgpuSetup> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    let wanted = std::env::var("WGPU_ADAPTER_NAME").ok().filter(|name| !name.is_empty());
    let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
    let rank = |adapter: &wgpu::Adapter| match adapter.get_info().device_type {
        wgpu::DeviceType::IntegratedGpu if low_power => 0,
        wgpu::DeviceType::DiscreteGpu => 1,
        wgpu::DeviceType::IntegratedGpu => 2,
        wgpu::DeviceType::VirtualGpu => 3,
        wgpu::DeviceType::Other => 4,
        wgpu::DeviceType::Cpu => 5,
    };
    let adapter = match &wanted {
        Some(name) => {
            let needle = name.to_lowercase();
            adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&needle))
        }
        None => adapters.into_iter().min_by_key(rank),
    }
    .ok_or_else(|| {
        Error::Setup(format!(
            "no wgpu adapter on backends {backends:?}{}; adapters present: {names:?} (install a \
             Vulkan driver such as Mesa's lavapipe, or set WGPU_BACKEND)",
            wanted.map(|n| format!(" named like '{n}'")).unwrap_or_default()
        ))
    })?;
    let info = adapter.get_info();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("wgpu-softmax-burn"),
        required_features: adapter.features().difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
        required_limits: adapter.limits(),
        memory_hints: wgpu::MemoryHints::MemoryUsage,
        ..Default::default()
    }))
    .map_err(|e| Error::Setup(format!("the adapter {} refused the device: {e}", info.name)))?;
    Ok(WgpuSetup { instance, adapter, device, queue, backend: info.backend })
}

/// The CubeCL device under Burn's device, where it is one.
fn cube_device(device: &Device) -> Option<CubeDevice> {
    #[allow(unreachable_patterns)] // other backends, in builds that enable them
    match device.as_dispatch() {
        DispatchDevice::Cube(cube) => Some(cube.clone()),
        _ => None,
    }
}
