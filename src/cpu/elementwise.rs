//! The elementwise family of [`super::compute`]: the arrays made contiguous, then the loss's
//! element kernel run by the driver (`crate::simd::elementwise`).

use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};
use crate::losses::{Family, def};
use crate::simd::elementwise::{Inputs, Outputs, Tile};
use crate::simd::{contiguous, ordered_sum};

/// Elementwise [`super::compute`], after [`LossArgs::validate`] has passed: the gradient
/// into `into` where given (the prediction's length, `args.want_grad` true), else into a fresh
/// array returned in the output.
pub(super) fn compute(
    loss: &Loss,
    args: &LossArgs<'_>,
    into: Option<&mut [f32]>,
) -> Result<LossOutput<f32>> {
    let n = args.len();
    let Some(target) = args.target.dense() else {
        return Err(Error::InvalidOption {
            option: "target",
            reason: format!("the {} loss takes f32 targets", loss.name()),
        });
    };
    let pred = contiguous(&args.pred);
    let target = contiguous(target);
    let upstream = match &args.upstream {
        Upstream::Array(g) => Some(contiguous(g)),
        _ => None,
    };
    let g = match args.upstream {
        Upstream::Scalar(g) => f64::from(g),
        _ => 1.0,
    };
    let scale = if args.reduction.divides() {
        crate::loss::divided_scales(1.0, args.fixed_divisor().unwrap_or(n as f64)).1
    } else {
        1.0
    };
    let inputs = Inputs {
        p: &pred,
        t: &target,
        w: Tile::new(args.weight.as_ref()),
        q: Tile::new(args.pos_weight.as_ref()),
        u: upstream.as_deref().unwrap_or(&[]),
        c: (g * scale) as f32,
    };
    let want_losses = args.reduction == Reduction::None;
    let fresh = into.is_none();
    let mut own = Vec::new();
    let grad: &mut [f32] = match into {
        Some(g) => g,
        None => {
            own = vec![0.0f32; if args.want_grad { n } else { 0 }];
            &mut own
        }
    };
    let mut losses = vec![0.0f32; if want_losses { n } else { 0 }];
    let outputs = Outputs {
        grad,
        losses: &mut losses,
    };
    let Family::Elementwise(kernel) = def(loss).family() else {
        return Err(Error::Gpu(format!(
            "the {} loss is not elementwise",
            loss.name()
        )));
    };
    let sums = kernel.cpu(loss, &inputs, outputs);
    let sum = ordered_sum(sums, &pred)?;
    let value = (!want_losses).then_some((sum * scale) as f32);
    let (losses, grad) = LossOutput::shape_arrays(
        args.pred.shape(),
        want_losses.then_some(losses),
        (args.want_grad && fresh).then_some(own),
    );
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted: n,
        lse: None,
    })
}
