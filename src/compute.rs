//! [`Compute`]: the calls every device offers (the GPU, [`GpuContext`]; the fast CPU path,
//! [`Cpu`]; the f64 reference, [`Reference`]), and [`ValueAndGrad`], the result of the most
//! common one.

use ndarray::{Array, ArrayD, ArrayViewMutD, Dimension};

use crate::GpuContext;
use crate::cpu::Cpu;
use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction};
use crate::reference::Reference;

/// A loss value and its gradient with respect to the prediction, from
/// [`Compute::value_and_grad`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ValueAndGrad {
    /// The loss value (the mean or the sum of the per-element losses, as the call's
    /// [`Reduction`]).
    pub value: f32,
    /// `∂ value / ∂ pred`, times the upstream gradient, shaped like the prediction.
    pub grad: ArrayD<f32>,
    /// What counted: elements (elementwise losses) or rows that are not ignored (row-wise).
    pub counted: usize,
}

impl ValueAndGrad {
    /// A copy of the gradient's elements in row-major order.
    pub fn grad_vec(&self) -> Vec<f32> {
        self.grad.iter().copied().collect()
    }

    /// The gradient's elements in row-major order, without a copy.
    pub fn into_grad_vec(self) -> Vec<f32> {
        let n = self.grad.len();
        if self.grad.is_standard_layout() {
            let (mut v, offset) = self.grad.into_raw_vec_and_offset();
            let o = offset.unwrap_or(0);
            if o == 0 && v.len() == n {
                return v;
            }
            v.drain(..o);
            v.truncate(n);
            return v;
        }
        self.grad.iter().copied().collect()
    }

    /// The gradient as an array of dimension `D`, the prediction's (`Ix2` for an `Array2`
    /// prediction).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the prediction did not have `D`'s number of axes.
    pub fn grad_into<D: Dimension>(self) -> Result<Array<f32, D>> {
        let got = self.grad.shape().to_vec();
        self.grad
            .into_dimensionality::<D>()
            .map_err(|_| Error::ShapeMismatch {
                what: "gradient (the dimension asked for)",
                expected: vec![0; D::NDIM.unwrap_or(0)],
                got,
            })
    }
}

/// The loss calls of a device: the GPU ([`GpuContext`]), the fast CPU path ([`Cpu`]) and the
/// f64 reference ([`Reference`], rounded once to f32) give the same results within the
/// tolerances the tests hold them to (`docs/TESTING.md` in the repository), and reject the
/// same inputs with the same errors.
///
/// ```no_run
/// use wgpu_loss::{Compute, GpuContext, Loss, LossArgs, cpu::Cpu};
///
/// let (pred, target) = (vec![0.5f32; 6], vec![0.0f32; 6]);
/// let gpu = GpuContext::new()?.value_and_grad(&Loss::Mse, LossArgs::new(&pred, &target))?;
/// let cpu = Cpu.value_and_grad(&Loss::Mse, LossArgs::new(&pred, &target))?;
/// assert!((gpu.value - cpu.value).abs() <= 1e-6);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub trait Compute {
    /// The loss over `args`: the value (`Mean`, `Sum`) or the per-element losses (`None`),
    /// and the gradient unless `args.want_grad` is false.
    ///
    /// # Errors
    /// Everything [`LossArgs::validate`] rejects, the domain and class-range errors of the
    /// loss, and the device's own ([`Error::Gpu`] and the like on the GPU).
    fn compute(&self, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>>;

    /// As [`Compute::compute`], with the gradient written into `grad` (shaped like the
    /// prediction) instead of a fresh array, and left out of the result: for a loop that
    /// keeps its gradient buffer from step to step. The GPU and the fast CPU path write it
    /// directly ([`GpuContext::compute_into`], [`crate::cpu::compute_into`]); the reference
    /// copies it from its result. Every element is written, the same bits as `compute`'s.
    ///
    /// # Errors
    /// As [`Compute::compute`]; then [`Error::InvalidOption`] (`option: "grad"`) for
    /// loss-only arguments and [`Error::ShapeMismatch`] (`what: "grad"`) for a `grad` not
    /// shaped like the prediction, both before any work and with `grad` untouched, as for
    /// every error of [`LossArgs::validate`].
    fn compute_into(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        grad: ArrayViewMutD<'_, f32>,
    ) -> Result<LossOutput<f32>> {
        crate::loss::into_checked(loss, args, grad, || self.compute(loss, args), None)
    }

    /// The value and the gradient (`args`' reduction, `Mean` unless set; the gradient is
    /// computed whatever `args.want_grad` says).
    ///
    /// # Errors
    /// As [`Compute::compute`], and [`Error::InvalidOption`] for [`Reduction::None`] (use
    /// [`Compute::compute`], whose result holds the per-element losses).
    fn value_and_grad(&self, loss: &Loss, args: LossArgs<'_>) -> Result<ValueAndGrad> {
        let out = self.compute(loss, &reduced(args)?.want_grad(true))?;
        match (out.value, out.grad) {
            (Some(value), Some(grad)) => Ok(ValueAndGrad {
                value,
                grad,
                counted: out.counted,
            }),
            _ => Err(missing("value_and_grad")),
        }
    }

    /// The value alone: no gradient is computed or written.
    ///
    /// # Errors
    /// As [`Compute::value_and_grad`].
    fn value(&self, loss: &Loss, args: LossArgs<'_>) -> Result<f32> {
        let out = self.compute(loss, &reduced(args)?.loss_only())?;
        out.value.ok_or_else(|| missing("value"))
    }

    /// The unreduced losses, without the gradient: per element (elementwise losses, the
    /// prediction's shape) or per row (row-wise losses, the shape of the rows).
    ///
    /// # Errors
    /// As [`Compute::compute`].
    fn losses(&self, loss: &Loss, args: LossArgs<'_>) -> Result<ArrayD<f32>> {
        let out = self.compute(loss, &args.reduction(Reduction::None).loss_only())?;
        out.losses.ok_or_else(|| missing("losses"))
    }
}

/// `args` if its reduction gives a value.
fn reduced(args: LossArgs<'_>) -> Result<LossArgs<'_>> {
    if args.reduction == Reduction::None {
        return Err(Error::InvalidOption {
            option: "reduction",
            reason: "`none` gives per-element losses, not a value: call `losses` or `compute`"
                .into(),
        });
    }
    Ok(args)
}

/// A part a device left out though the call asked for it (a bug, not bad input).
fn missing(call: &str) -> Error {
    Error::Gpu(format!(
        "internal error: `{call}` got a result without its parts"
    ))
}

impl Compute for GpuContext {
    fn compute(&self, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
        GpuContext::compute(self, loss, args)
    }

    fn compute_into(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        grad: ArrayViewMutD<'_, f32>,
    ) -> Result<LossOutput<f32>> {
        GpuContext::compute_into(self, loss, args, grad)
    }
}

impl Compute for Cpu {
    fn compute(&self, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
        crate::cpu::compute(loss, args)
    }

    fn compute_into(
        &self,
        loss: &Loss,
        args: &LossArgs<'_>,
        grad: ArrayViewMutD<'_, f32>,
    ) -> Result<LossOutput<f32>> {
        crate::cpu::compute_into(loss, args, grad)
    }
}

impl Compute for Reference {
    fn compute(&self, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
        let out = crate::reference::compute(loss, args)?;
        let round = |a: ArrayD<f64>| a.mapv(|x| x as f32);
        Ok(LossOutput {
            value: out.value.map(|v| v as f32),
            losses: out.losses.map(round),
            grad: out.grad.map(round),
            counted: out.counted,
            lse: out.lse.map(round),
        })
    }
}
