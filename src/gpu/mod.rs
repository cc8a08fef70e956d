//! The host side of the GPU path: the context (device, queue, cached pipelines), the pool of
//! reusable buffers, staging readback, and a timer for benchmarks.

mod context;
mod kernel_step;
mod pool;
pub(crate) mod readback;
pub(crate) mod stream;
mod timing;

pub(crate) use context::KernelPipeline;
pub use context::{ContextOptions, DEFAULT_MEMORY_BUDGET, GpuContext};
pub use kernel_step::KernelStep;
pub(crate) use pool::Pooled;
pub use timing::{GpuTimer, TimingMethod};

/// The copy kernel, the bandwidth ceiling of the benchmarks (`shaders/copy.wgsl`).
pub use crate::kernels::copy::{COPY_VEC4S_PER_LANE, CopyKernel, CopyTiming};
