//! The host side of the GPU path: the context (device, queue, cached pipelines), the pool of
//! reusable buffers, and staging readback.

mod context;
mod pool;
mod readback;

pub(crate) use context::KernelPipeline;
pub use context::{ContextOptions, GpuContext};
pub(crate) use pool::Pooled;
pub(crate) use readback::Readback;
