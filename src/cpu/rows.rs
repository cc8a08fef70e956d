//! The row-wise family of [`super::compute`]: the range check and the mean's divisor first
//! (both O(B)), then the loss's row kernel run by the driver (`crate::simd::rows`).

use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};
use crate::losses::{Family, def};
use crate::simd::rows::{Data, Outputs, Setup};
use crate::simd::{contiguous, ordered_sum};

/// Row-wise [`super::compute`], after [`LossArgs::validate`] has passed: the gradient into
/// `into` where given (the prediction's length, `args.want_grad` true), else into a fresh
/// array returned in the output.
pub(super) fn compute(
    loss: &Loss,
    args: &LossArgs<'_>,
    into: Option<&mut [f32]>,
) -> Result<LossOutput<f32>> {
    let (b, c) = args.rows_cols();
    let ignore_index = loss.ignore_index();
    // Class indices (softmax cross entropy only; validate rejects them elsewhere).
    let classes: Option<Vec<i64>> = args.target.is_classes().then(|| args.target.classes());
    if let Some(cls) = &classes {
        check_classes(cls, c, ignore_index)?;
    }
    let pred = contiguous(&args.pred);
    let dense = args.target.dense().map(contiguous);
    let weight = args.weight.as_ref().map(contiguous);
    let upstream = match &args.upstream {
        Upstream::Array(g) => Some(contiguous(g)),
        _ => None,
    };
    let g = match args.upstream {
        Upstream::Scalar(g) => f64::from(g),
        _ => 1.0,
    };

    // The mean's divisor D: the weight sum of the counted rows for class-index targets (their
    // count without weights), else B; summed in f64 in row order, as the reference does.
    let (divisor, counted) = match &classes {
        Some(cls) => {
            let (mut sum, mut counted) = (0.0f64, 0usize);
            for &k in cls.iter().filter(|&&k| Some(k) != ignore_index) {
                sum += weight.as_ref().map_or(1.0, |w| f64::from(w[k as usize]));
                counted += 1;
            }
            (sum, counted)
        }
        None => (b as f64, b),
    };
    let divisor = args.fixed_divisor().unwrap_or(divisor);
    // D = 0 with the mean: value 0 and gradient 0, whatever the rows hold.
    let zero_grad = args.reduction.divides() && divisor == 0.0;
    let factor = |r: usize| -> f32 {
        let g_r = upstream.as_ref().map_or(g, |u| f64::from(u[r]));
        match args.reduction {
            Reduction::Mean | Reduction::BatchMean => (g_r / divisor) as f32,
            Reduction::Sum | Reduction::None => g_r as f32,
        }
    };

    let want_losses = args.reduction == Reduction::None;
    let want_grad = args.want_grad && !zero_grad;
    let fresh = into.is_none();
    let mut own = Vec::new();
    let grad: &mut [f32] = match into {
        Some(g) => {
            // A fresh gradient starts as zeros; the caller's may hold anything.
            if zero_grad {
                g.fill(0.0);
            }
            g
        }
        None => {
            own = vec![0.0f32; if args.want_grad { b * c } else { 0 }];
            &mut own
        }
    };
    let mut losses = vec![0.0f32; if want_losses { b } else { 0 }];
    let mut lse = vec![0.0f32; if args.want_lse { b } else { 0 }];
    let data = Data {
        c,
        x: &pred,
        t: dense.as_deref().unwrap_or(&[]),
        classes: classes.as_deref(),
        ignore_index,
        factor: &factor,
    };
    let out = Outputs {
        grad: if want_grad { grad } else { &mut [] },
        losses: &mut losses,
        lse: &mut lse,
    };
    let Family::Rows(kernel) = def(loss).family() else {
        return Err(Error::Gpu(format!(
            "the {} loss is not row-wise",
            loss.name()
        )));
    };
    let setup = Setup {
        c,
        weight: weight.as_deref(),
        classes: classes.is_some(),
    };
    let sums = kernel.cpu(loss, &setup, &data, out);
    let sum = ordered_sum(sums, &pred)?;
    let value = match args.reduction {
        Reduction::None => None,
        Reduction::Sum => Some(sum as f32),
        Reduction::Mean | Reduction::BatchMean if divisor == 0.0 => Some(0.0),
        Reduction::Mean | Reduction::BatchMean => Some((sum / divisor) as f32),
    };
    let (_, grad) = LossOutput::shape_arrays(
        args.pred.shape(),
        None,
        (args.want_grad && fresh).then_some(own),
    );
    let (losses, _) =
        LossOutput::<f32>::shape_arrays(args.row_shape(), want_losses.then_some(losses), None);
    let (lse, _) =
        LossOutput::<f32>::shape_arrays(args.row_shape(), args.want_lse.then_some(lse), None);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted,
        lse,
    })
}

/// The range check of class indices, as the reference's: the first row whose index is
/// neither in `[0, C)` nor `ignore_index` is [`Error::ClassOutOfRange`].
fn check_classes(cls: &[i64], c: usize, ignore_index: Option<i64>) -> Result<()> {
    match cls
        .iter()
        .enumerate()
        .find(|(_, k)| Some(**k) != ignore_index && !(0..c as i64).contains(*k))
    {
        Some((row, &class)) => Err(Error::ClassOutOfRange {
            row,
            class,
            classes: c,
        }),
        None => Ok(()),
    }
}
