//! # wgpu-loss
//!
//! GPU-accelerated, batched loss functions for Rust: each loss returns its **value and its
//! gradient** with respect to the prediction, computed by WGSL compute shaders through
//! [wgpu](https://wgpu.rs) (Vulkan, Metal, DX12; Mesa's software Vulkan without a GPU).
//! A CPU reference in f64 ([`reference`](mod@reference)) implements the same formulas literally and is the
//! oracle for every GPU test.
//!
//! ```no_run
//! use ndarray::ArrayD;
//! use wgpu_loss::{GpuContext, Loss, LossArgs, Reduction};
//!
//! let ctx = GpuContext::new()?;
//! let pred = ArrayD::<f32>::from_elem(vec![4, 1000], 0.5);
//! let target = ArrayD::<f32>::zeros(vec![4, 1000]);
//! let out = ctx.compute(&Loss::Mse, &LossArgs::new(pred.view(), target.view()).reduction(Reduction::Mean))?;
//! assert_eq!(out.value, Some(0.25));
//! let grad = out.grad.unwrap(); // 2 (p − t) / N for every element
//! # Ok::<(), wgpu_loss::Error>(())
//! ```
//!
//! Inside a GPU training loop, [`resident`] records a loss into the caller's command encoder
//! over the caller's buffers, with no host round trip.
//!
//! Layout: a loss is two files, `src/losses/<loss>.rs` (its descriptor, options, f64
//! reference and fast CPU kernel; [`losses`] lists them) and `shaders/<loss>.wgsl` (its
//! kernel's hooks); `tests/gpu/<loss>.rs` compares the two. [`kernels`] composes the shaders
//! and plans the dispatches, [`GpuContext`] holds the device, pipelines and buffers. [`cpu`]
//! is the fast CPU path's drivers (f32, every core, SIMD) with the same semantics, tested
//! against the reference in `tests/cpu.rs`: what the benchmarks compare the GPU with.
//! `docs/DESIGN.md` traces one call through the layers.

#![warn(missing_docs)]

mod bindings;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod loss;
pub mod losses;
pub mod reference;
pub mod resident;
mod simd;
#[cfg(feature = "synthetic")]
pub mod synthetic;

pub use error::{Error, Result};
pub use gpu::{ContextOptions, GpuContext};
pub use kernels::{ClassType, Dtype};
pub use loss::{Loss, LossArgs, LossOutput, Reduction, Target, Upstream};

impl GpuContext {
    /// Computes `loss` on the GPU: the value (`Mean`, `Sum`) or per-element losses (`None`),
    /// and the gradient unless `args.want_grad` is false. The inputs stream through the GPU
    /// in chunks (each chunk's upload overlapping the previous chunk's kernels and readback),
    /// and the results are read back before this returns. A call holds its host arrays plus
    /// [`ContextOptions::memory_budget`] bytes of chunk buffers (256 MiB by default), however
    /// large the inputs, so inputs larger than the GPU's memory run.
    ///
    /// The value is reduced on the GPU in a fixed order: the same inputs give bit-identical
    /// values and gradients on the same device with the same options.
    ///
    /// # Shapes
    /// As [`LossArgs`]; the outputs have the prediction's shape.
    ///
    /// # Errors
    /// Everything [`LossArgs::validate`] rejects; [`Error::OutOfDomain`] for a BCE probability
    /// outside [0, 1] (the first in row-major order, found on the GPU); [`Error::DeviceLimit`]
    /// for inputs of 2^32 − 1 elements or more; [`Error::Gpu`], [`Error::Map`] and
    /// [`Error::Poll`] when the device fails.
    pub fn compute(&self, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
        let _serial = self.exclusive();
        if loss.is_row_wise() {
            kernels::rows::run(self, loss, args)
        } else {
            kernels::elementwise::run(self, loss, args)
        }
    }
}
