//! The row-wise family's driver: the range check and the mean's divisor first (both O(B)),
//! then groups of whole rows in parallel, each row computed by its loss's row kernel in one
//! pass over memory.

use std::borrow::Cow;

use super::{BLOCK, contiguous, ordered_sum, run_tasks};
use crate::error::{Error, Result};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};
use crate::losses::{Family, def};

/// What a row kernel is given: row `r`'s prediction `x` (`C` values), its float target `t`
/// (`C` values; empty for class indices) or class index `cls`, and the factor `f` its
/// gradient is multiplied by (`g_r`, divided by `D` for the mean).
pub(crate) struct Row<'a> {
    pub x: &'a [f32],
    pub t: &'a [f32],
    pub cls: Option<usize>,
    pub f: f32,
}

/// A row-wise loss's kernel.
pub(crate) trait RowKernel: Sync {
    /// Computes row `row`'s loss ℓ_r (in f64, from f64 statistics) and, if `grad` is not
    /// empty, writes `f · ∂ℓ_r/∂x_r` into it (`C` values). `Err(j)`: element `j` of the
    /// prediction is outside the loss's domain (categorical cross entropy). Implementations
    /// are `#[inline(always)]`, so that they compile for the driver's instruction set.
    fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize>;
}

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
    // D = 0 with the mean: value 0 and gradient 0, whatever the rows hold.
    let zero_grad = args.reduction == Reduction::Mean && divisor == 0.0;
    let factor = |r: usize| -> f32 {
        let g_r = upstream.as_ref().map_or(g, |u| f64::from(u[r]));
        match args.reduction {
            Reduction::Mean => (g_r / divisor) as f32,
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
        Reduction::Mean if divisor == 0.0 => Some(0.0),
        Reduction::Mean => Some((sum / divisor) as f32),
    };
    let (_, grad) = LossOutput::shape_arrays(
        args.pred.shape(),
        None,
        (args.want_grad && fresh).then_some(own),
    );
    let (losses, _) =
        LossOutput::<f32>::shape_arrays(args.row_shape(), want_losses.then_some(losses), None);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted,
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

/// What a row kernel is built from: the row length, the class weights, whether the targets
/// are class indices.
pub(crate) struct Setup<'a> {
    pub c: usize,
    pub weight: Option<&'a [f32]>,
    pub classes: bool,
}

/// The inputs of one call, contiguous.
pub(crate) struct Data<'a> {
    c: usize,
    x: &'a Cow<'a, [f32]>,
    /// Float targets (empty for class indices).
    t: &'a [f32],
    classes: Option<&'a [i64]>,
    ignore_index: Option<i64>,
    factor: &'a (dyn Fn(usize) -> f32 + Sync),
}

/// The outputs, each empty when not wanted (the gradient also when `D = 0` makes it 0).
pub(crate) struct Outputs<'a> {
    grad: &'a mut [f32],
    losses: &'a mut [f32],
}

/// Cuts the rows into groups of about [`BLOCK`] elements (at least one row) and runs
/// [`group`] on each, in parallel; one result per group, in order.
pub(crate) fn groups<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    out: Outputs<'_>,
) -> Vec<Result<f64, usize>> {
    let c = data.c;
    let b = data.x.len() / c;
    let rows = (BLOCK / c).max(1);
    let mut grad = out.grad.chunks_mut(rows * c);
    let mut losses = out.losses.chunks_mut(rows);
    let tasks: Vec<_> = (0..b)
        .step_by(rows)
        .map(|r0| {
            let g = grad.next().unwrap_or_default();
            let l = losses.next().unwrap_or_default();
            (r0..(r0 + rows).min(b), g, l)
        })
        .collect();
    run_tasks(tasks, |(range, g, l)| {
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
            // SAFETY: the CPU has these AVX-512 subsets, checked just above.
            return unsafe { group_avx512(kernel, data, range, g, l) };
        }
        #[cfg(target_arch = "x86_64")]
        if super::avx2() {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { group_avx2(kernel, data, range, g, l) };
        }
        group(kernel, data, range, g, l)
    })
}

/// [`group`] compiled for AVX2, with the row kernel inlined (8 lanes of f32 per instruction
/// instead of SSE2's 4). The operations are the same, in the same order (no FMA: Rust never
/// fuses `a * b + c`), so the results are bit-identical to the baseline's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn group_avx2<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    range: std::ops::Range<usize>,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize> {
    group(kernel, data, range, grad, losses)
}

/// [`group`] compiled for AVX-512 (see [`super::avx512`]): bit-identical to [`group_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq")]
fn group_avx512<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    range: std::ops::Range<usize>,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize> {
    group(kernel, data, range, grad, losses)
}

/// One group of rows: each row's loss (0 for an ignored row, which is never read) into
/// `losses`, its gradient into `grad` (NaN throughout where the loss is NaN, as the
/// reference); returns the sum of the counted rows' losses, or the flat index of the first
/// out-of-domain prediction.
#[inline(always)]
fn group<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    range: std::ops::Range<usize>,
    grad: &mut [f32],
    losses: &mut [f32],
) -> Result<f64, usize> {
    let c = data.c;
    let r0 = range.start;
    let mut sum = 0.0f64;
    for r in range {
        let cls = match data.classes {
            Some(cls) if Some(cls[r]) == data.ignore_index => {
                // An ignored row's gradient is 0 (a fresh gradient is zeros already, a
                // caller's may hold anything).
                if !grad.is_empty() {
                    grad[(r - r0) * c..(r - r0 + 1) * c].fill(0.0);
                }
                continue;
            }
            Some(cls) => Some(cls[r] as usize),
            None => None,
        };
        let row = Row {
            x: &data.x[r * c..(r + 1) * c],
            t: if data.t.is_empty() {
                &[]
            } else {
                &data.t[r * c..(r + 1) * c]
            },
            cls,
            f: (data.factor)(r),
        };
        let g = if grad.is_empty() {
            &mut []
        } else {
            &mut grad[(r - r0) * c..(r - r0 + 1) * c]
        };
        let l = kernel.row(&row, g).map_err(|j| r * c + j)?;
        if l.is_nan() {
            g.fill(f32::NAN);
        }
        sum += l;
        if !losses.is_empty() {
            losses[r - r0] = l as f32;
        }
    }
    Ok(sum)
}
