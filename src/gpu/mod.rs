//! The device layer: the context (device, queue, the pipeline cache, placeholder buffers), the
//! pool of reusable buffers, and the host-array path's transfers (`stream.rs`, the executor;
//! `readback.rs`, mapping). It knows no loss: pipelines are built by the layers above
//! ([`crate::kernels`]) and cached here under their keys.

mod context;
mod pool;
pub(crate) mod readback;
pub(crate) mod stream;

pub(crate) use context::KernelPipeline;
pub use context::{
    CPU_ROW_ELEMENTS_PER_LANE, CPU_ROW_MAX_LANES, ContextOptions, DEFAULT_MEMORY_BUDGET,
    GPU_SPLIT_ROWS, GpuContext,
};
pub(crate) use context::{GPU_ROW_ELEMENTS_PER_LANE, GPU_ROW_MAX_LANES, lanes_by_length};
pub(crate) use pool::Pooled;
