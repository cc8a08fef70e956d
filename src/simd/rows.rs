//! The fast CPU path's row-wise driver: groups of whole rows in parallel, each row computed
//! by its loss's row kernel ([`RowKernel`], from its file in `src/losses/`) in one pass over
//! memory.

use std::borrow::Cow;

use super::{BLOCK, run_tasks};

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
    /// As [`RowKernel::row`], and the row's log-sum-exp into `lse`, for a loss that has one
    /// ([`crate::Loss::has_lse`]; the others are never asked, and leave `lse` as it is).
    #[inline(always)]
    fn row_lse(&self, row: &Row<'_>, grad: &mut [f32], lse: &mut f32) -> Result<f64, usize> {
        let _ = lse;
        self.row(row, grad)
    }
}

/// What a row kernel is built from: the row length, the class weights, whether the targets
/// are class indices.
pub(crate) struct Setup<'a> {
    pub(crate) c: usize,
    pub(crate) weight: Option<&'a [f32]>,
    pub(crate) classes: bool,
}

/// The inputs of one call, contiguous.
pub(crate) struct Data<'a> {
    pub(crate) c: usize,
    pub(crate) x: &'a Cow<'a, [f32]>,
    /// Float targets (empty for class indices).
    pub(crate) t: &'a [f32],
    pub(crate) classes: Option<&'a [i64]>,
    pub(crate) ignore_index: Option<i64>,
    pub(crate) factor: &'a (dyn Fn(usize) -> f32 + Sync),
}

/// The outputs, each empty when not wanted (the gradient also when `D = 0` makes it 0).
pub(crate) struct Outputs<'a> {
    pub(crate) grad: &'a mut [f32],
    pub(crate) losses: &'a mut [f32],
    /// Each row's log-sum-exp (a loss with one).
    pub(crate) lse: &'a mut [f32],
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
    let mut lse = out.lse.chunks_mut(rows);
    let tasks: Vec<_> = (0..b)
        .step_by(rows)
        .map(|r0| {
            let g = grad.next().unwrap_or_default();
            let l = losses.next().unwrap_or_default();
            let e = lse.next().unwrap_or_default();
            (
                r0..(r0 + rows).min(b),
                Group {
                    grad: g,
                    losses: l,
                    lse: e,
                },
            )
        })
        .collect();
    run_tasks(tasks, |(range, out)| {
        #[cfg(target_arch = "x86_64")]
        if super::avx512() {
            // SAFETY: the CPU has these AVX-512 subsets, checked just above.
            return unsafe { group_avx512(kernel, data, range, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if super::avx2() {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { group_avx2(kernel, data, range, out) };
        }
        group(kernel, data, range, out)
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
    out: Group<'_>,
) -> Result<f64, usize> {
    group(kernel, data, range, out)
}

/// [`group`] compiled for AVX-512 (see [`super::avx512`]): bit-identical to [`group_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512dq")]
fn group_avx512<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    range: std::ops::Range<usize>,
    out: Group<'_>,
) -> Result<f64, usize> {
    group(kernel, data, range, out)
}

/// One group's part of [`Outputs`], each empty when not wanted.
struct Group<'a> {
    grad: &'a mut [f32],
    losses: &'a mut [f32],
    lse: &'a mut [f32],
}

/// One group of rows: each row's loss (0 for an ignored row, which is read only for its
/// log-sum-exp) into `losses`, its gradient into `grad` (NaN throughout where the loss is
/// NaN, as the reference), its log-sum-exp into `lse`; returns the sum of the counted rows'
/// losses, or the flat index of the first out-of-domain prediction.
#[inline(always)]
fn group<K: RowKernel>(
    kernel: &K,
    data: &Data<'_>,
    range: std::ops::Range<usize>,
    out: Group<'_>,
) -> Result<f64, usize> {
    let Group { grad, losses, lse } = out;
    let c = data.c;
    let r0 = range.start;
    let mut sum = 0.0f64;
    let x_of = |r: usize| &data.x[r * c..(r + 1) * c];
    for r in range {
        let cls = match data.classes {
            Some(cls) if Some(cls[r]) == data.ignore_index => {
                // An ignored row's gradient is 0 (a fresh gradient is zeros already, a
                // caller's may hold anything).
                if !grad.is_empty() {
                    grad[(r - r0) * c..(r - r0 + 1) * c].fill(0.0);
                }
                if !lse.is_empty() {
                    // Its log-sum-exp alone: the row as one without a target, no gradient.
                    let row = Row {
                        x: x_of(r),
                        t: &[],
                        cls: None,
                        f: 0.0,
                    };
                    kernel
                        .row_lse(&row, &mut [], &mut lse[r - r0])
                        .map_err(|j| r * c + j)?;
                }
                continue;
            }
            Some(cls) => Some(cls[r] as usize),
            None => None,
        };
        let row = Row {
            x: x_of(r),
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
        let l = if lse.is_empty() {
            kernel.row(&row, g)
        } else {
            kernel.row_lse(&row, g, &mut lse[r - r0])
        }
        .map_err(|j| r * c + j)?;
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
