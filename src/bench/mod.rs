//! Benchmark machinery, for `wgpu-loss bench` and `cargo bench`: a timer of recorded GPU work
//! on the device's clock ([`GpuTimer`]), one loss-and-gradient step on buffers already on the
//! GPU ([`KernelStep`], through the resident API), and a copy kernel, the adapter's bandwidth
//! ceiling ([`CopyKernel`]). Computing losses needs none of it.

mod copy;
mod kernel_step;
mod timing;

pub use copy::{COPY_VEC4S_PER_LANE, CopyKernel, CopyTiming};
pub use kernel_step::KernelStep;
pub use timing::{GpuTimer, TimingMethod};
