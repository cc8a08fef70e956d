//! [`GpuContext`]: owns (or wraps) a device and queue, builds each pipeline once, and keeps
//! reusable buffers. All loss calls go through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

use super::pool::BufferPool;

/// Options for [`GpuContext::with_options`] and [`GpuContext::from_device`].
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Use subgroup operations in the reductions when the device has `Features::SUBGROUP`
    /// (default `true`). The results are deterministic either way; the bits differ between
    /// the two settings because the additions are grouped differently.
    pub subgroups: bool,
    /// Largest number of elements bound at once. Default: what one storage binding holds
    /// (`max_storage_buffer_binding_size / 4`, 128 MiB → 2^25 elements on llvmpipe). Larger
    /// inputs are processed as successive chunks; a smaller value is useful for tests.
    pub max_chunk_elements: Option<usize>,
    /// Whether the loss kernels' main loops take four units (words) per trip with their loads
    /// issued together, for memory-level parallelism. Default `None`: yes on GPUs, no on
    /// software adapters (device type `Cpu`), where it cost the elementwise kernels a third of
    /// their speed on llvmpipe. Never on vec4 storage (four f32 or eight 16-bit elements per
    /// unit), whose lanes already move 16 bytes per array per trip (for f32 elementwise calls
    /// it cost 3–9% on an H100; it made long rows 1.7–1.8× faster). The results are the same bits either way (the same additions in the
    /// same order).
    pub unroll: Option<bool>,
    /// Elements of a row each lane of a row-wise kernel aims to own, which sets how many lanes
    /// share a row: the power of two at or above `C / this`, at most a workgroup (256), and
    /// at least what keeps each lane's loop under its trip bound. Default `None`:
    /// 16 on GPUs (the elements a lane keeps in registers), so a row of up to 4096 elements
    /// is read once by many lanes; on software adapters (device type `Cpu`)
    /// [`CPU_ROW_ELEMENTS_PER_LANE`] (4096) with at most [`CPU_ROW_MAX_LANES`] (8) lanes a
    /// row (more only where the trip bound needs them), since each combine step of a row's
    /// lanes is a workgroup barrier, llvmpipe's costliest operation, and a row whose lanes
    /// run in several of its coroutines is re-read from memory rather than cache. Softmax
    /// cross entropy over 1024 × 32 000 and 256 × 128 256 ran 1.8× and 2.5–3.0× faster than
    /// with the earlier default of 1024 elements per lane and no cap (`docs/TUNING.md`). The
    /// rule depends on C alone, so a row's results do not depend on how many rows a call
    /// or a chunk has. A lane's share of a row's sums is summed in blocks of 16 units and
    /// spans of 16 blocks, so its rounding grows with its spans (C / 8192 for a long f32 row
    /// of vec4 units over 8 lanes), not with C.
    /// `Some(0)` is taken as 1; a value given is used without the cap. The results differ in
    /// the last bits between settings (the sums are grouped differently); each is
    /// deterministic.
    pub row_elements_per_lane: Option<usize>,
    /// Rows of a row-wise loss that can be split (softmax cross entropy, categorical cross
    /// entropy, distillation; not cosine proximity or the JSD) longer than this
    /// many elements are split into segments of at most this many, one workgroup each: a
    /// first dispatch writes each segment's statistics, a second combines each row's in a
    /// fixed order and finishes the row (one lane a row), a third writes each segment's
    /// gradient. Each row is read twice, and a few long rows (256 × 128 256) still occupy
    /// every core of a GPU instead of one workgroup a row. Default `None`: [`GPU_SPLIT_ROWS`] (32 768) on
    /// GPUs; never on software adapters (device type `Cpu`), whose few threads the rows
    /// already fill. `Some(usize::MAX)` never splits. The results differ in the last bits
    /// from the unsplit kernel's (the sums are grouped differently); each is deterministic,
    /// and the rule depends on C alone.
    pub split_rows: Option<usize>,
    /// Bytes of chunk buffers a host-array call ([`GpuContext::compute`]) holds at once, device
    /// and staging buffers together (default 256 MiB). The inputs stream through two sets of
    /// chunk buffers sized to fit (a power of two of elements, at least 64, and at least one
    /// row of a row-wise loss), so a call's memory is its host arrays plus this, whatever
    /// their size, and inputs larger than the device's memory run. Smaller budgets mean more,
    /// smaller submissions. The chunking changes how the value's partial sums are grouped, so
    /// different budgets may give values that differ in the last bits (each is deterministic).
    pub memory_budget: Option<u64>,
    /// The backends [`GpuContext::with_options`] looks for adapters on (default `None`: all,
    /// or those `WGPU_BACKEND` names). `Some(wgpu::Backends::GL)` picks OpenGL, say, where
    /// Vulkan would otherwise be preferred. Ignored by [`GpuContext::from_device`].
    pub backends: Option<wgpu::Backends>,
    /// A case-insensitive part of the name of the adapter [`GpuContext::with_options`] picks
    /// (default `None`: the `WGPU_ADAPTER_NAME` environment variable's, else the preferred
    /// adapter), for callers that cannot set the environment (a library, a Python thread).
    /// Ignored by [`GpuContext::from_device`].
    pub adapter_name: Option<String>,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            subgroups: true,
            max_chunk_elements: None,
            memory_budget: None,
            unroll: None,
            row_elements_per_lane: None,
            split_rows: None,
            backends: None,
            adapter_name: None,
        }
    }
}

/// Storage placeholders a context keeps ([`GpuContext::placeholder`]): at least one per
/// binding slot (`crate::bindings::Slot`, 17 of them), so that no two dummies of one bind
/// group share a buffer.
const PLACEHOLDERS: usize = 24;

/// [`ContextOptions::row_elements_per_lane`]'s default on GPUs: the elements a lane of the
/// row kernels keeps in registers (`ROW_REGS` in `shaders/common/rows.wgsl`; src/kernels/rows.rs
/// checks that they agree).
pub(crate) const GPU_ROW_ELEMENTS_PER_LANE: usize = 16;

/// The most lanes a row gets on GPUs, and wherever [`ContextOptions::row_elements_per_lane`]
/// is given: a workgroup of the row kernels (src/kernels/rows.rs checks that they agree).
pub(crate) const GPU_ROW_MAX_LANES: u32 = 256;

/// Lanes for a row of `cols` elements, each lane aiming at `per_lane` of them (0 taken as 1):
/// the power of two at or above `cols / per_lane`, at most `max_lanes` (a power of two).
pub(crate) fn lanes_by_length(cols: usize, per_lane: usize, max_lanes: u32) -> u32 {
    cols.div_ceil(per_lane.max(1))
        .max(1)
        .next_power_of_two()
        .min(max_lanes as usize) as u32
}

/// [`ContextOptions::split_rows`]'s default on GPUs: rows longer than 32 768 elements are
/// split into segments of at most that many. Shorter rows keep the unsplit kernel, which holds
/// the first 4096 elements of a row in registers and reads only the rest twice (a split row
/// is read twice whole: 1.5–7% more reads from 32 768 on, 12% at 32 000).
pub const GPU_SPLIT_ROWS: usize = 32_768;

/// [`ContextOptions::row_elements_per_lane`]'s default on software adapters: one lane per row
/// up to 4096 elements.
pub const CPU_ROW_ELEMENTS_PER_LANE: usize = 4096;

/// The most lanes a row gets on software adapters with the default
/// [`ContextOptions::row_elements_per_lane`] (more only where a lane's loop bound needs
/// them): a SIMD group of llvmpipe's (8), so from C = 32 768 on a lane owns C / 8. Measured
/// on llvmpipe (softmax-ce, `docs/TUNING.md`): 1024 × 32 000 at 1 and 4 lanes 83–85 ms, at 32
/// 144–147; 256 × 128 256 at 2, 4 and 8 lanes 81–85 ms, at 16 161, at 128 215–219; 64 × 32 000
/// at 8 lanes 5.5 ms, at 1 10.4, at 16 7.9.
pub const CPU_ROW_MAX_LANES: u32 = 8;

/// [`ContextOptions::memory_budget`]'s default.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;

/// A kernel's pipeline and bind-group layout, built once per context.
pub(crate) struct KernelPipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

/// The GPU side of `wgpu-loss`: a device and queue, the pipelines (built once per kernel, on
/// first use, then reused), 1-element placeholder buffers for unused bindings, and a pool of
/// buffers reused from call to call.
///
/// Create one with [`GpuContext::new`] (finds an adapter) or [`GpuContext::from_device`]
/// (your own device and queue), then call [`GpuContext::compute`]. A context is `Send + Sync`:
/// threads may share it. On the OpenGL backend, whose one GL context wgpu locks with a
/// timeout (it panics when a thread waits more than 6 s for it), the context's calls run one
/// at a time; on the others they run concurrently.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    /// Whether the reductions use subgroup operations.
    subgroups: bool,
    /// Whether WGSL's `pack2x16float`/`unpack2x16float` can be used (f16 storage).
    f16_storage: bool,
    /// The loss drivers' `UNROLL` override ([`ContextOptions::unroll`]).
    unroll: bool,
    /// [`ContextOptions::row_elements_per_lane`], resolved.
    row_elements_per_lane: usize,
    /// The most lanes a row gets for its length ([`GpuContext::row_max_lanes`]).
    row_max_lanes: u32,
    /// [`ContextOptions::split_rows`], resolved.
    split_rows: usize,
    pub(crate) max_chunk_elements: usize,
    memory_budget: u64,
    pipelines: Mutex<HashMap<String, Arc<KernelPipeline>>>,
    /// 16-byte placeholders for bindings a call leaves unused: [`PLACEHOLDERS`] storage
    /// buffers (distinct ones, since one buffer cannot be bound both read-only and read-write
    /// in a dispatch), then a uniform one.
    dummies: Vec<wgpu::Buffer>,
    pub(crate) pool: BufferPool,
    /// Held for the whole of each call that touches the device, where the backend needs calls
    /// serialised ([`GpuContext::exclusive`]); `None` elsewhere.
    serial: Option<Mutex<()>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("subgroups", &self.subgroups)
            .field("max_chunk_elements", &self.max_chunk_elements)
            .finish_non_exhaustive()
    }
}

/// Lower is preferred: real GPUs first, software adapters last.
fn device_type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuContext {
    /// Finds an adapter and creates a device on it with the adapter's own limits (so large
    /// buffers work), with default [`ContextOptions`].
    ///
    /// Adapter choice: real GPUs before virtual and software ones, Vulkan/Metal/DX12 before
    /// OpenGL, among adapters that can run compute shaders. Environment variables:
    /// `WGPU_ADAPTER_NAME` (a case-insensitive part of the adapter's name) picks one
    /// ([`ContextOptions::adapter_name`] takes its place from code);
    /// `WGPU_BACKEND` (`vulkan`, `metal`, `dx12`, `gl`) restricts the backends.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] (the message says how to install a driver, and lists the adapters
    /// seen when `WGPU_ADAPTER_NAME` matched none), [`Error::RequestDevice`].
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// [`GpuContext::new`] with options.
    ///
    /// # Errors
    /// As [`GpuContext::new`].
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::create(options))
    }

    async fn create(options: ContextOptions) -> Result<Self> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backends) = options.backends {
            descriptor.backends = backends;
        }
        let instance = wgpu::Instance::new(descriptor);
        let mut adapters: Vec<wgpu::Adapter> = instance
            .enumerate_adapters(wgpu::Backends::all())
            .await
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .collect();
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                detail: String::new(),
            });
        }
        let wanted = match options.adapter_name.clone() {
            Some(name) => Some(("ContextOptions::adapter_name", name)),
            None => std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .map(|name| ("WGPU_ADAPTER_NAME", name)),
        };
        if let Some((source, wanted)) = wanted {
            let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            let wanted_lc = wanted.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&wanted_lc));
            if adapters.is_empty() {
                return Err(Error::NoAdapter {
                    detail: format!(": none matches {source}={wanted:?} (adapters seen: {seen:?})"),
                });
            }
        }
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (
                device_type_rank(info.device_type),
                info.backend == wgpu::Backend::Gl,
            )
        });
        let adapter = adapters.swap_remove(0);
        let use_subgroups =
            options.subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        let mut required_features = if use_subgroups {
            wgpu::Features::SUBGROUP
        } else {
            wgpu::Features::empty()
        };
        // Mesa's Vulkan drivers convert f16 (pack2x16float, used by f16 storage) only with it.
        required_features |= adapter.features() & wgpu::Features::SHADER_F16;
        let f16_storage = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        // Timestamp queries let the benchmarks time kernels on the device's own clock
        // (`bench::GpuTimer`); requested only where the adapter has them, and nothing else
        // depends on them.
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // A software adapter's device memory is the host's: storage buffers the host maps
        // directly spare the host-array path a device copy per array each way
        // (`GpuContext::maps_storage`).
        if adapter.get_info().device_type == wgpu::DeviceType::Cpu {
            required_features |= adapter.features() & wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-loss device"),
                required_features,
                required_limits: adapter.limits(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await?;
        // Errors are captured per call with error scopes; anything that still escapes is
        // logged instead of wgpu's default of panicking.
        device.on_uncaptured_error(Arc::new(|e| {
            log::error!("wgpu-loss: uncaptured wgpu error: {e}")
        }));
        Ok(Self::build(
            device,
            queue,
            Some(adapter.get_info()),
            Some(f16_storage),
            &options,
        ))
    }

    /// Wraps a device and queue the caller already has (a training loop's, say). The
    /// reductions use subgroup operations if the device was created with
    /// `Features::SUBGROUP` and `options.subgroups` is set. The caller's uncaptured-error
    /// handler is left alone; this crate's calls capture their own errors.
    ///
    /// f16 storage ([`crate::Dtype::F16`]) is taken as available when the device has
    /// `Features::SHADER_F16`, or runs on Vulkan, Metal or DX12 outside Mesa's drivers (which
    /// need that feature for f16 conversions); see [`GpuContext::supports_f16`].
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, options: ContextOptions) -> Self {
        Self::build(device, queue, None, None, &options)
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: Option<wgpu::AdapterInfo>,
        f16_storage: Option<bool>,
        options: &ContextOptions,
    ) -> Self {
        let info = info.unwrap_or_else(|| device.adapter_info());
        let f16_storage = f16_storage.unwrap_or_else(|| {
            let mesa = [&info.name, &info.driver, &info.driver_info]
                .iter()
                .any(|s| {
                    s.to_lowercase().contains("mesa") || s.to_lowercase().contains("llvmpipe")
                });
            device.features().contains(wgpu::Features::SHADER_F16)
                || (info.backend != wgpu::Backend::Gl && !mesa)
        });
        let limits = device.limits();
        let subgroups = options.subgroups && device.features().contains(wgpu::Features::SUBGROUP);
        let binding_elems = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            / 4;
        // Multiples of 64 elements (256 bytes) keep every chunk boundary aligned for any
        // storage offset alignment wgpu allows.
        let hw_max = ((binding_elems / 64) * 64).max(64) as usize;
        let max_chunk_elements = options
            .max_chunk_elements
            .map_or(hw_max, |m| m.clamp(1, hw_max));
        let placeholder = |label: &str, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        let dummies = (0..PLACEHOLDERS)
            .map(|_| {
                placeholder(
                    "wgpu-loss placeholder (storage)",
                    wgpu::BufferUsages::STORAGE,
                )
            })
            .chain([placeholder(
                "wgpu-loss placeholder (uniform)",
                wgpu::BufferUsages::UNIFORM,
            )])
            .collect();
        let unroll = options
            .unroll
            .unwrap_or(info.device_type != wgpu::DeviceType::Cpu);
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let row_elements_per_lane = options
            .row_elements_per_lane
            .unwrap_or(if cpu {
                CPU_ROW_ELEMENTS_PER_LANE
            } else {
                GPU_ROW_ELEMENTS_PER_LANE
            })
            .max(1);
        let row_max_lanes = if cpu && options.row_elements_per_lane.is_none() {
            CPU_ROW_MAX_LANES
        } else {
            GPU_ROW_MAX_LANES
        };
        let split_rows = options
            .split_rows
            .unwrap_or(if cpu { usize::MAX } else { GPU_SPLIT_ROWS })
            .max(1);
        // wgpu-hal's GL backend shares one GL context between threads behind a lock it waits
        // for at most 6 s, then panics ("Could not lock adapter context"): a call waiting for
        // the GPU holds it that long on a slow adapter. Serialising this context's calls keeps
        // every wait on our own lock, which has no timeout.
        let serial = (info.backend == wgpu::Backend::Gl).then(|| Mutex::new(()));
        GpuContext {
            device,
            queue,
            serial,
            info,
            limits,
            subgroups,
            f16_storage,
            unroll,
            row_elements_per_lane,
            row_max_lanes,
            split_rows,
            max_chunk_elements,
            memory_budget: options.memory_budget.unwrap_or(DEFAULT_MEMORY_BUDGET),
            pipelines: Mutex::new(HashMap::new()),
            dummies,
            pool: BufferPool::default(),
        }
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's name, backend and type.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// A one-line description of the adapter, for logs and tables:
    /// `"llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu, subgroups)"`.
    pub fn adapter_summary(&self) -> String {
        format!(
            "{} ({:?}, {:?}{})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            if self.uses_subgroups() {
                ", subgroups"
            } else {
                ""
            }
        )
    }

    /// Whether f16 storage ([`crate::Dtype::F16`]) works here: WGSL's `pack2x16float` and
    /// `unpack2x16float` (wgpu's `DownlevelFlags::SHADER_F16_IN_F32`). bf16 needs nothing.
    pub fn supports_f16(&self) -> bool {
        self.f16_storage
    }

    /// Whether the device can write timestamp queries (`Features::TIMESTAMP_QUERY`), which
    /// a timer of GPU work needs (the CLI's `wgpu-loss bench` uses them to time kernels on the
    /// device's clock).
    /// [`GpuContext::new`] requests them where the adapter has them; a context from
    /// [`GpuContext::from_device`] has them if the caller's device was created with them.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether the reductions use subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }

    /// The largest number of elements bound at once (see [`ContextOptions::max_chunk_elements`]).
    pub fn max_chunk_elements(&self) -> usize {
        self.max_chunk_elements
    }

    /// Bytes of chunk buffers a host-array call holds at once (see
    /// [`ContextOptions::memory_budget`]).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    /// Elements per chunk of a host-array call whose streams move `bytes_per_element` bytes
    /// per element in all (inputs and outputs): the largest power of two whose chunk buffers
    /// (two slots; per stream a device and a staging buffer, or one buffer where the host
    /// maps the bound buffers, [`GpuContext::maps_storage`]) fit the memory budget, at least
    /// 64, at most [`GpuContext::max_chunk_elements`].
    pub(crate) fn stream_chunk_elements(&self, bytes_per_element: f64) -> usize {
        let buffers = if self.maps_storage() { 1 } else { 2 };
        let per_element = bytes_per_element * (buffers * super::stream::RING_SLOTS) as f64;
        let fit = (self.memory_budget as f64 / per_element.max(1.0)) as usize;
        let pow = if fit < 64 {
            64
        } else {
            1usize << (usize::BITS - 1 - fit.leading_zeros())
        };
        pow.min(self.max_chunk_elements)
    }

    /// Drops the buffers kept for reuse, giving their memory back to the device.
    pub fn release_buffers(&self) {
        self.pool.clear();
    }

    /// A guard that serialises the calls of this context on backends that need it (OpenGL);
    /// `None` (no lock) elsewhere. Every call of this crate that touches the device takes it
    /// for the whole call; take it too around your own work on [`GpuContext::device`] and
    /// [`GpuContext::queue`] when threads share the context, and release it before calling
    /// into this crate again (it is not reentrant: taking it twice on one thread deadlocks).
    pub fn exclusive(&self) -> Option<MutexGuard<'_, ()>> {
        self.serial
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether this context's calls run one at a time (OpenGL; see [`GpuContext`]).
    pub fn serialises_calls(&self) -> bool {
        self.serial.is_some()
    }

    /// A 16-byte placeholder for a binding a call leaves unused: the uniform one, or storage
    /// placeholder `index` (modulo [`PLACEHOLDERS`]; the caller gives each binding of a
    /// dispatch its own index).
    pub(crate) fn placeholder(&self, uniform: bool, index: usize) -> &wgpu::Buffer {
        if uniform {
            &self.dummies[PLACEHOLDERS]
        } else {
            &self.dummies[index % PLACEHOLDERS]
        }
    }

    /// The pipeline cached under `key`, built by `build` on first use and kept. The key is
    /// opaque here: the layer that builds pipelines (`crate::kernels`) names them.
    ///
    /// # Errors
    /// What `build` returns.
    pub(crate) fn cached_pipeline(
        &self,
        key: &str,
        build: &dyn Fn() -> Result<KernelPipeline>,
    ) -> Result<Arc<KernelPipeline>> {
        let mut cache = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = cache.get(key) {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(build()?);
        cache.insert(key.to_string(), Arc::clone(&p));
        Ok(p)
    }

    /// Whether the loss drivers' main loops take four units per trip
    /// ([`ContextOptions::unroll`]).
    pub(crate) fn unroll(&self) -> bool {
        self.unroll
    }

    /// Whether the host-array path binds the buffers it maps (`src/gpu/stream.rs`): on a
    /// software adapter (device type `Cpu`) whose device has
    /// `Features::MAPPABLE_PRIMARY_BUFFERS` ([`GpuContext::new`] asks for it there). Elsewhere
    /// mapped storage is slower for the device, so the path stages through copies.
    pub(crate) fn maps_storage(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
            && self
                .device
                .features()
                .contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
    }

    /// Elements of a row each lane of a row-wise kernel aims to own
    /// ([`ContextOptions::row_elements_per_lane`], resolved for this adapter): it sets how
    /// many terms each lane's share of a row's sums has, and so their rounding error.
    pub fn row_elements_per_lane(&self) -> usize {
        self.row_elements_per_lane
    }

    /// The most lanes a row-wise kernel gives a row for its length: [`CPU_ROW_MAX_LANES`]
    /// on software adapters with the default [`ContextOptions::row_elements_per_lane`], else
    /// a workgroup (256). A lane's loop bound (16 384 units) may need more: rows beyond
    /// 2^16 f32 elements (2^17 16-bit ones, 2^14 where the row is not a whole number of
    /// vec4 units) per lane.
    pub fn row_max_lanes(&self) -> u32 {
        self.row_max_lanes
    }

    /// Rows longer than this are split across workgroups where the loss allows it
    /// ([`ContextOptions::split_rows`], resolved for this adapter: `usize::MAX` for never).
    pub fn split_rows(&self) -> usize {
        self.split_rows
    }

    /// Lanes a row-wise kernel gives a row of `cols` elements by its length
    /// ([`ContextOptions::row_elements_per_lane`] each, at most
    /// [`GpuContext::row_max_lanes`]): the kernels raise it only where a lane's loop bound
    /// needs more (see [`GpuContext::row_max_lanes`]).
    pub fn row_lanes(&self, cols: usize) -> u32 {
        lanes_by_length(cols, self.row_elements_per_lane, self.row_max_lanes)
    }
}
