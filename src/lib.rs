//! # wgpu-loss
//!
//! GPU-accelerated, batched loss functions: each loss returns its **value and its gradient**
//! with respect to the prediction, computed by fused WGSL compute shaders through
//! [wgpu](https://wgpu.rs) (Vulkan, Metal, DX12; Mesa's software Vulkan without a GPU),
//! deterministically (the same inputs give the same bits on the same device). The same losses
//! run on the CPU, fast ([`cpu::Cpu`], f32 on every core) or as an f64 reference that writes
//! the formulas literally ([`reference::Reference`]), the oracle of every test.
//!
//! ```no_run
//! use wgpu_loss::{Compute, GpuContext, Loss, LossArgs};
//!
//! let ctx = GpuContext::new()?;
//! let (pred, target) = (vec![0.5f32; 8], vec![0.0f32; 8]);
//! let mse = ctx.value_and_grad(&Loss::Mse, LossArgs::new(&pred, &target))?;
//! assert_eq!(mse.value, 0.25);
//! assert_eq!(mse.grad_vec(), vec![0.125; 8]); // 2 (p − t) / N
//!
//! let logits = vec![0.0f32; 4 * 10]; // 4 rows of 10 classes
//! let classes: Vec<i64> = vec![1, 2, 3, 9];
//! let ce = Loss::softmax_cross_entropy().label_smoothing(0.1).build()?;
//! let out = ctx.value_and_grad(&ce, LossArgs::from_slices(&logits, &[4, 10], &classes)?)?;
//! assert!((out.value - 10f32.ln()).abs() < 1e-6);
//! # Ok::<(), wgpu_loss::Error>(())
//! ```
//!
//! - The losses: [`Loss`] (the formulas, and the builders of the losses with options);
//!   [`losses::LossInfo`] lists them with their options, as the CLI does.
//! - The arguments: [`LossArgs`] (prediction, target, weights, reduction, upstream gradient),
//!   from any `f32` array, view or slice; class ids as `i32`, `i64` or `u32` ([`Target`]).
//! - The devices: [`Compute`], implemented by [`GpuContext`], [`cpu::Cpu`] and
//!   [`reference::Reference`]; results as [`ValueAndGrad`] or [`LossOutput`]. Host arrays
//!   stream through the GPU in chunks within [`ContextOptions::memory_budget`].
//! - Inside a GPU training loop: [`resident`] records a loss into your command encoder over
//!   your buffers (f32, f16 or bf16), with no host round trip; [`GpuContext::from_device`]
//!   wraps your device and queue.
//! - Errors: every bad input is an [`Error`] before any work; nothing panics.
//!
//! The crate re-exports the [`ndarray`] (0.17) and [`wgpu`] (30) it uses: take arrays and
//! devices from those (or the same versions).
//!
//! # Features
//! - `synthetic`: the module `synthetic`, seeded random batches suited to each loss (for
//!   benchmarks and tests; pulls in `rand`).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bindings;
mod compute;
pub mod cpu;
mod error;
mod gpu;
mod kernels;
mod loss;
pub mod losses;
pub mod reference;
pub mod resident;
pub mod sharded;
mod simd;
#[cfg(feature = "synthetic")]
#[cfg_attr(docsrs, doc(cfg(feature = "synthetic")))]
pub mod synthetic;

pub use compute::{Compute, ValueAndGrad};
pub use error::{Error, Result};
pub use gpu::{
    CPU_ROW_ELEMENTS_PER_LANE, CPU_ROW_MAX_LANES, ContextOptions, DEFAULT_MEMORY_BUDGET,
    GPU_SPLIT_ROWS, GpuContext,
};
pub use kernels::{ClassType, Dtype};
pub use loss::{IntoTarget, Loss, LossArgs, LossOutput, Reduction, Target, TargetElem, Upstream};
/// The `ndarray` this crate takes and returns arrays of (0.17).
pub use ndarray;
/// The `wgpu` this crate runs on (30): use it (or the same version) for the resident API's
/// devices and buffers.
pub use wgpu;

/// The README's snippets, compiled (and, where they need no GPU, run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

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
        self.run(loss, args, None)
    }

    /// As [`GpuContext::compute`], with the gradient read back into `grad` (shaped like the
    /// prediction) instead of a fresh array, and left out of the result (`grad: None`). A
    /// fresh gradient is a fresh allocation, whose pages the operating system maps in (and
    /// zeroes) as the readback first touches them: at 2^24 elements 30–46 ms on the software
    /// adapters measured (`docs/TUNING.md`), from a quarter of mse's kernel step to nearly
    /// twice it. A loop that keeps its gradient array from step to step pays it once. Each
    /// chunk's gradient is copied from the buffer the host maps (a staging buffer, or on a
    /// software adapter the bound buffer itself) straight into its part of `grad`, the same
    /// bits as `compute`'s.
    ///
    /// `grad` may hold anything: every element is written (0 for an ignored row, and
    /// everywhere when the mean's divisor `D` is 0). A view that is not contiguous in
    /// row-major order is written from a temporary array.
    ///
    /// # Shapes
    /// As [`LossArgs`]; `grad` has the prediction's shape.
    ///
    /// # Errors
    /// Those of [`GpuContext::compute`], in the same order; then [`Error::InvalidOption`]
    /// (`option: "grad"`) for loss-only arguments (`args.want_grad` false: use `compute`) and
    /// [`Error::ShapeMismatch`] (`what: "grad"`) for a `grad` not shaped like the prediction.
    /// Both of these leave `grad` untouched, as does every error of [`LossArgs::validate`];
    /// after a later error (a class out of range, [`Error::OutOfDomain`], the device's) its
    /// contents are unspecified.
    ///
    /// ```no_run
    /// use ndarray::ArrayD;
    /// use wgpu_loss::{GpuContext, Loss, LossArgs};
    ///
    /// let ctx = GpuContext::new()?;
    /// let pred = ArrayD::<f32>::from_elem(vec![4, 1000], 0.5);
    /// let target = ArrayD::<f32>::zeros(vec![4, 1000]);
    /// let mut grad = ArrayD::<f32>::zeros(vec![4, 1000]); // allocated once, reused every step
    /// let args = LossArgs::new(pred.view(), target.view());
    /// let out = ctx.compute_into(&Loss::Mse, &args, grad.view_mut())?;
    /// assert_eq!(out.value, Some(0.25));
    /// assert_eq!(out.grad, None);
    /// assert_eq!(grad[[0, 0]], 2.0 * 0.5 / 4000.0);
    /// # Ok::<(), wgpu_loss::Error>(())
    /// ```
    pub fn compute_into(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        grad: ndarray::ArrayViewMutD<'_, f32>,
    ) -> Result<LossOutput<f32>> {
        let mut direct = |slice: &mut [f32]| self.run(loss, args, Some(slice));
        loss::into_checked(
            loss,
            args,
            grad,
            || self.compute(loss, args),
            Some(&mut direct),
        )
    }

    /// The host path of both families, the gradient into a fresh array or into `into`.
    fn run(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        into: Option<&mut [f32]>,
    ) -> Result<LossOutput<f32>> {
        let _serial = self.exclusive();
        if loss.is_row_wise() {
            kernels::rows::run(self, loss, args, into)
        } else {
            kernels::elementwise::run(self, loss, args, into)
        }
    }
}
