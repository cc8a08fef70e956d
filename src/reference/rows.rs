//! The row-wise family in [`super::compute`]: the range and domain checks, the per-row
//! formulas of the per-loss files, the reduction and the upstream gradient.

use super::RowTarget;
use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};
use crate::losses::{Family, def};

/// Row-wise [`super::compute`], after [`LossArgs::validate`] has passed.
pub(super) fn compute(loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f64>> {
    let (b, c) = args.rows_cols();
    let ignore_index = loss.ignore_index();
    let Family::Rows(kernel) = def(loss).family() else {
        return Err(Error::Gpu(format!(
            "the {} loss is not row-wise",
            loss.name()
        )));
    };
    // Class indices (softmax cross entropy only; validate rejects them elsewhere).
    let classes: Option<Vec<i64>> = args.target.is_classes().then(|| args.target.classes());
    if let Some(cls) = &classes {
        if let Some((row, &class)) = cls
            .iter()
            .enumerate()
            .find(|(_, k)| Some(**k) != ignore_index && !(0..c as i64).contains(*k))
        {
            return Err(Error::ClassOutOfRange {
                row,
                class,
                classes: c,
            });
        }
    }
    if loss.checks_domain() {
        super::check_probabilities(args)?;
    }

    let to_f64 = |a: &ndarray::ArrayViewD<'_, f32>| -> Vec<f64> {
        a.iter().map(|&v| f64::from(v)).collect()
    };
    let pred = to_f64(&args.pred);
    let dense = args.target.dense().map(to_f64);
    let weight = args.weight.as_ref().map(to_f64);
    let upstream = match &args.upstream {
        Upstream::Array(g) => Some(to_f64(g)),
        _ => None,
    };
    let g = match args.upstream {
        Upstream::Scalar(g) => f64::from(g),
        _ => 1.0,
    };

    // Per row: Some((ℓ_r, ∂ℓ_r/∂p_r)), or None for an ignored row (never read).
    let mut rows: Vec<Option<(f64, Vec<f64>)>> = Vec::with_capacity(b);
    let mut counted = 0usize;
    let mut weight_sum = 0.0f64;
    for r in 0..b {
        let x = &pred[r * c..(r + 1) * c];
        let t = dense.as_ref().map(|t| &t[r * c..(r + 1) * c]);
        let target = match (&classes, t) {
            (Some(cls), _) if Some(cls[r]) == ignore_index => None,
            (Some(cls), _) => {
                let k = cls[r] as usize;
                weight_sum += weight.as_ref().map_or(1.0, |w| w[k]);
                Some(RowTarget::Class(k))
            }
            (None, _) => t.map(RowTarget::Probs),
        };
        let row = target.map(|target| kernel.reference(loss, x, target, weight.as_deref()));
        if row.is_some() {
            counted += 1;
        }
        // A row whose loss is NaN (NaN inputs, or no finite logit at all) has a NaN gradient
        // throughout, as on the GPU.
        let row = row.map(|(l, mut d)| {
            if l.is_nan() {
                d.fill(f64::NAN);
            }
            (l, d)
        });
        rows.push(row);
    }

    // The mean's divisor D: the weight sum of the counted rows for class-index targets (their
    // count without weights), else B.
    let divisor = args.fixed_divisor().unwrap_or(if classes.is_some() {
        weight_sum
    } else {
        b as f64
    });
    let mut sum = 0.0f64;
    for (l, _) in rows.iter().flatten() {
        sum += l;
    }
    let value = match args.reduction {
        Reduction::None => None,
        Reduction::Sum => Some(sum),
        Reduction::Mean | Reduction::BatchMean if divisor == 0.0 => Some(0.0),
        Reduction::Mean | Reduction::BatchMean => Some(sum / divisor),
    };
    let losses = (args.reduction == Reduction::None).then(|| {
        rows.iter()
            .map(|row| row.as_ref().map_or(0.0, |(l, _)| *l))
            .collect::<Vec<f64>>()
    });
    let grad = args.want_grad.then(|| {
        let mut grad = Vec::with_capacity(b * c);
        for (r, row) in rows.iter().enumerate() {
            match row {
                None => grad.extend(std::iter::repeat_n(0.0, c)),
                Some(_) if args.reduction.divides() && divisor == 0.0 => {
                    grad.extend(std::iter::repeat_n(0.0, c));
                }
                Some((_, d)) => {
                    let g_r = upstream.as_ref().map_or(g, |u| u[r]);
                    grad.extend(d.iter().map(|&dj| match args.reduction {
                        Reduction::Mean | Reduction::BatchMean => g_r * dj / divisor,
                        Reduction::Sum | Reduction::None => g_r * dj,
                    }));
                }
            }
        }
        grad
    });
    let (_, grad) = LossOutput::shape_arrays(args.pred.shape(), None, grad);
    let (losses, _) = LossOutput::<f64>::shape_arrays(args.row_shape(), losses, None);
    // Every row's log-sum-exp, ignored rows' too.
    let lse = args.want_lse.then(|| {
        (0..b)
            .map(|r| {
                kernel
                    .reference_lse(loss, &pred[r * c..(r + 1) * c])
                    .unwrap_or(f64::NAN)
            })
            .collect::<Vec<f64>>()
    });
    let (lse, _) = LossOutput::<f64>::shape_arrays(args.row_shape(), lse, None);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted,
        lse,
    })
}
