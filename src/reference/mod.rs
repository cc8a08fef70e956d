//! The CPU reference: each loss's formula (in [`crate::Loss`] and its file) written literally, in f64, with ndarray in
//! and out. It is the oracle every GPU result is tested against, so it favours being obviously
//! right over being fast: one element at a time, f64 throughout, a plain sequential f64 sum.
//!
//! Each loss's file (`src/losses/<loss>.rs`, its `reference` module) has its per-element
//! `loss_and_grad` (ℓ and ∂ℓ/∂p), or for the row-wise family its per-row `loss_and_grad`
//! (ℓ_r and ∂ℓ_r/∂p_r), beside its shader's name. [`compute`] applies the reduction and the
//! upstream gradient exactly as the GPU path does, and takes the same [`LossArgs`].

mod rows;

use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};
use crate::losses::{Family, def};

pub use crate::losses::RowTarget;

/// The f64 reference as a device: [`crate::Compute`] over [`compute`], its results rounded
/// once to f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reference;

/// Computes `loss` on the CPU in f64: the value (`Mean`, `Sum`) or per-element (elementwise
/// family) or per-row (row-wise family) losses (`None`), and the gradient unless
/// `args.want_grad` is false.
///
/// Row-wise family: the prediction `[..., C]` is `B` rows of `C` in row-major order (a rank-1
/// prediction is one row). A row with NaN in its prediction or float target has loss NaN and
/// NaN in every gradient entry; a row whose class index is `ignore_index` is never read: loss
/// 0, gradient 0, not counted. The mean divides by `D` ([`Reduction`]); if `D = 0` the value
/// and the gradient are 0. [`LossOutput::counted`] is the number of rows not ignored.
///
/// # Shapes
/// As [`LossArgs`]: the gradient has the prediction's shape; the per-element losses the
/// prediction's shape, the per-row losses [`LossArgs::row_shape`].
///
/// # Errors
/// Everything [`LossArgs::validate`] rejects; then [`Error::ClassOutOfRange`] for a class
/// index neither in `[0, C)` nor `ignore_index` (the first row in row-major order), and
/// [`Error::OutOfDomain`] for a BCE or categorical cross entropy probability outside [0, 1]
/// (the first one in row-major order; NaN is not out of domain).
pub fn compute(loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f64>> {
    args.validate(loss)?;
    let Family::Elementwise(kernel) = def(loss).family() else {
        return rows::compute(loss, args);
    };
    if loss.checks_domain() {
        check_probabilities(args)?;
    }
    let n = args.len();
    let Some(target) = args.target.dense() else {
        return Err(Error::Gpu("elementwise loss given class indices".into()));
    };
    let flat = |a: &Option<ndarray::ArrayViewD<'_, f32>>| -> Option<Vec<f64>> {
        a.as_ref()
            .map(|a| a.iter().map(|&v| f64::from(v)).collect())
    };
    let weight = flat(&args.weight);
    let pos_weight = flat(&args.pos_weight);
    // Element k of the prediction uses weight[k % len]: the weight's shape is a trailing part
    // of the prediction's, so row-major order makes broadcasting a modulo.
    let at = |w: &Option<Vec<f64>>, k: usize| w.as_ref().map_or(1.0, |w| w[k % w.len()]);
    let upstream: Option<Vec<f64>> = match &args.upstream {
        Upstream::Array(g) => Some(g.iter().map(|&v| f64::from(v)).collect()),
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

    let mut sum = 0.0f64;
    let mut losses = Vec::with_capacity(if args.reduction == Reduction::None {
        n
    } else {
        0
    });
    let mut grad = Vec::with_capacity(if args.want_grad { n } else { 0 });
    for (k, (&p, &t)) in args.pred.iter().zip(target.iter()).enumerate() {
        let (p, t) = (f64::from(p), f64::from(t));
        let (l, d) = if p.is_nan() || t.is_nan() {
            // NaN propagates (f64::max would otherwise swallow it in the BCE clamps).
            (f64::NAN, f64::NAN)
        } else {
            kernel.reference(loss, p, t, at(&weight, k), at(&pos_weight, k))
        };
        sum += l;
        if args.reduction == Reduction::None {
            losses.push(l);
        }
        if args.want_grad {
            let gk = upstream.as_ref().map_or(g, |u| g * u[k]);
            grad.push(gk * scale * d);
        }
    }
    let value = match args.reduction {
        Reduction::None => None,
        _ => Some(sum * scale),
    };
    let (losses, grad) = LossOutput::shape_arrays(
        args.pred.shape(),
        (args.reduction == Reduction::None).then_some(losses),
        args.want_grad.then_some(grad),
    );
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted: n,
        lse: None,
    })
}

/// The probability-domain check of BCE and categorical cross entropy: the first prediction
/// outside [0, 1] in row-major order is [`Error::OutOfDomain`]; NaN is not out of domain.
pub(crate) fn check_probabilities(args: &LossArgs<'_>) -> Result<()> {
    match args
        .pred
        .iter()
        .enumerate()
        .find(|(_, p)| **p < 0.0 || **p > 1.0)
    {
        Some((index, &value)) => Err(Error::OutOfDomain {
            what: "prediction",
            index,
            value,
            domain: "[0, 1]",
        }),
        None => Ok(()),
    }
}
