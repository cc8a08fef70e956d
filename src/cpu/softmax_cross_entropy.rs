//! Softmax cross entropy from logits (PyTorch `cross_entropy`), the fast CPU counterpart of
//! `src/reference/softmax_cross_entropy.rs`; the formulation of
//! `shaders/softmax_cross_entropy.wgsl`.

use super::math::exp;
use super::rows::{Row, RowKernel};
use super::{Acc, CHUNK, LANES, chunk, chunk_mut, shift, shift64};

/// Softmax cross entropy's row kernel: options and class weights of one call.
///
/// With `m` the row maximum and `e_j = exp(x_j − m)`, a row's statistics are
///
/// ```text
/// S = Σ_j e_j,   d = Σ_j wt_j (x_j − m) ≤ 0,   tw = Σ_j wt_j
/// wt_j = w_j ((1 − ε) t_j + ε/C)   probability targets
///      = w_j ε/C                   class-index targets (the class adds (1 − ε) w_c apart)
/// ```
///
/// and then, with `lse = m + ln S`,
///
/// ```text
/// ℓ = tw ln S − d [+ (1 − ε) w_c (m − x_c + ln S)] [+ λ lse²]
/// ∂ℓ/∂x_j = (A/S) e_j − wt_j [− (1 − ε) w_c [j = c]],  A = tw [+ (1 − ε) w_c] [+ 2λ lse]
/// ```
///
/// Every term of the loss is non-negative, so nothing cancels; a zero weight contributes 0
/// even against `x = −∞` ([`shift`]); `ln(softmax)` is never formed. A row takes three
/// sweeps: the maximum (from memory), then `e_j` (stored in the gradient's place) and the
/// sums, then the gradient (both from cache). Where class-index targets have no smoothing,
/// `wt = 0` and the second sweep computes `S` alone.
pub(super) struct Softmax<'a> {
    /// Class weights `[C]`.
    w: Option<&'a [f32]>,
    /// Which `wt` the rows have: [`NONE`], [`CONST`] or [`PROBS`].
    kind: u8,
    /// `1 − ε`, the weight of the target (f32 for `wt`, f64 for the class term).
    keep: f32,
    keep64: f64,
    /// `ε/C`.
    smooth: f32,
    /// `tw` of class-index rows: `ε/C · Σ_j w_j`.
    tw_const: f64,
    /// The z-loss coefficient λ.
    z_loss: f64,
}

/// Class-index targets without smoothing: `wt = 0`.
const NONE: u8 = 0;
/// Class-index targets with smoothing: `wt_j = w_j ε/C`.
const CONST: u8 = 1;
/// Probability targets: `wt_j = w_j ((1 − ε) t_j + ε/C)`.
const PROBS: u8 = 2;

impl<'a> Softmax<'a> {
    /// The kernel for rows of `c` classes, class weights `w` (`[C]`), class-index targets
    /// or not, label smoothing ε and z-loss λ.
    pub(super) fn new(
        c: usize,
        w: Option<&'a [f32]>,
        classes: bool,
        label_smoothing: f32,
        z_loss: f32,
    ) -> Softmax<'a> {
        let eps = f64::from(label_smoothing);
        let smooth = eps / c as f64;
        let w_sum = w.map_or(c as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
        let kind = match (classes, label_smoothing == 0.0) {
            (true, true) => NONE,
            (true, false) => CONST,
            (false, _) => PROBS,
        };
        Softmax {
            w,
            kind,
            keep: (1.0 - eps) as f32,
            keep64: 1.0 - eps,
            smooth: smooth as f32,
            tw_const: smooth * w_sum,
            z_loss: f64::from(z_loss),
        }
    }

    /// `wt_j` from the class weight `w` and the target `t` of one element.
    #[inline(always)]
    fn dense<const W: bool, const KIND: u8>(&self, w: f32, t: f32) -> f32 {
        let w = if W { w } else { 1.0 };
        if KIND == PROBS {
            w * (self.keep * t + self.smooth)
        } else {
            w * self.smooth
        }
    }

    #[inline(always)]
    fn pass<const W: bool, const KIND: u8, const G: bool>(
        &self,
        row: &Row<'_>,
        grad: &mut [f32],
    ) -> f64 {
        let x = row.x;
        let c = x.len();
        // Inputs a variant does not read are given as `x`, so every slice is `C` long.
        let t = if KIND == PROBS { row.t } else { x };
        let w = match self.w {
            Some(w) if W => w,
            _ => x,
        };
        let whole = c - c % CHUNK;
        let m = max(x);

        // Sweep 2: e_j (into the gradient), S, d, tw. S is summed as S − 1: the exp(0) = 1 of
        // the elements at the maximum are counted apart (`ties`), so that ln S = ln_1p(S − 1)
        // keeps a confident row's small loss, which 1 + 1e-9 in an f32 lane sum would lose.
        let (mut s_acc, mut d_acc, mut tw_acc) = (Acc::default(), Acc::default(), Acc::default());
        let (mut e_buf, mut r_buf, mut d_buf, mut tw_buf) = (
            [0.0f32; CHUNK],
            [0.0f32; CHUNK],
            [0.0f32; CHUNK],
            [0.0f32; CHUNK],
        );
        let mut ties = 0u32;
        for a in (0..whole).step_by(CHUNK) {
            let (xc, tc, wc) = (chunk(x, a), chunk(t, a), chunk(w, a));
            let ec = if G { chunk_mut(grad, a) } else { &mut e_buf };
            for i in 0..CHUNK {
                let v = xc[i] - m;
                let e = exp(v);
                ec[i] = e;
                r_buf[i] = if v == 0.0 { 0.0 } else { e };
                ties += u32::from(v == 0.0);
                if KIND != NONE {
                    let wt = self.dense::<W, KIND>(wc[i], tc[i]);
                    d_buf[i] = shift(wt, v);
                    tw_buf[i] = wt;
                }
            }
            s_acc.add_chunk(&r_buf);
            if KIND != NONE {
                d_acc.add_chunk(&d_buf);
            }
            if KIND == PROBS {
                tw_acc.add_chunk(&tw_buf);
            }
        }
        for j in whole..c {
            let v = x[j] - m;
            let e = exp(v);
            if G {
                grad[j] = e;
            }
            if v == 0.0 {
                ties += 1;
            } else {
                s_acc.add(e);
            }
            if KIND != NONE {
                let wt = self.dense::<W, KIND>(w[j], t[j]);
                d_acc.add(shift(wt, v));
                tw_acc.add(wt);
            }
        }

        // The row's loss and the gradient's coefficients, in f64. S − 1 = (ties − 1) + the rest
        // (no ties: every logit −∞, or a NaN maximum).
        let rest = f64::from(ties) - 1.0 + s_acc.total();
        let s = 1.0 + rest;
        let d = d_acc.total();
        let tw = match KIND {
            PROBS => tw_acc.total(),
            CONST => self.tw_const,
            _ => 0.0,
        };
        if s.is_nan() || s < 1.0 || tw.is_nan() {
            // S is NaN (a NaN or +∞ logit: ∞ − ∞) or 0 (every logit −∞), or a target is NaN:
            // the row is NaN, as in the reference, even where a zero weight would hide it.
            return f64::NAN;
        }
        let ln_s = rest.ln_1p();
        let m64 = f64::from(m);
        let lse = m64 + ln_s;
        let mut loss = shift64(tw, ln_s) - d;
        let mut big_a = tw;
        let mut wc = 0.0;
        if let Some(k) = row.cls {
            wc = self.keep64 * self.w.map_or(1.0, |w| f64::from(w[k]));
            loss += shift64(wc, (m64 - f64::from(x[k])) + ln_s);
            big_a += wc;
        }
        if self.z_loss != 0.0 {
            loss += self.z_loss * lse * lse;
            big_a += 2.0 * self.z_loss * lse;
        }

        // Sweep 3: f · ∂ℓ/∂x_j = (f A/S) e_j − f wt_j, and the target class's entry apart.
        if G {
            let f = row.f;
            // e_c, before sweep 3 turns it into the target's gradient.
            let e_cls = row.cls.map(|cls| f64::from(grad[cls]));
            let k = (f64::from(f) * big_a / s) as f32;
            for a in (0..whole).step_by(CHUNK) {
                let (tc, wc) = (chunk(t, a), chunk(w, a));
                let gc = chunk_mut(grad, a);
                for i in 0..CHUNK {
                    gc[i] = if KIND == NONE {
                        k * gc[i]
                    } else {
                        k * gc[i] - f * self.dense::<W, KIND>(wc[i], tc[i])
                    };
                }
            }
            for j in whole..c {
                grad[j] = if KIND == NONE {
                    k * grad[j]
                } else {
                    k * grad[j] - f * self.dense::<W, KIND>(w[j], t[j])
                };
            }
            if let (Some(cls), Some(e)) = (row.cls, e_cls) {
                // f ((A − wc) e_c/S − wc ((1 − e_c) + (S − 1))/S − wt_c): wc (e_c/S − 1) without
                // the cancellation of 1/S − 1 (a confident row's S − 1 is far below S's ulp).
                let wt = if KIND == NONE {
                    0.0
                } else {
                    f64::from(self.dense::<W, KIND>(w[cls], t[cls]))
                };
                let d = (big_a - wc) * e / s - wc * ((1.0 - e) + rest) / s - wt;
                grad[cls] = (f64::from(f) * d) as f32;
            }
        }
        loss
    }
}

impl RowKernel for Softmax<'_> {
    #[inline(always)]
    fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
        let g = !grad.is_empty();
        let w = self.w.is_some();
        Ok(match (self.kind, w, g) {
            (NONE, _, false) => self.pass::<false, NONE, false>(row, grad),
            (NONE, _, true) => self.pass::<false, NONE, true>(row, grad),
            (CONST, false, false) => self.pass::<false, CONST, false>(row, grad),
            (CONST, false, true) => self.pass::<false, CONST, true>(row, grad),
            (CONST, true, false) => self.pass::<true, CONST, false>(row, grad),
            (CONST, true, true) => self.pass::<true, CONST, true>(row, grad),
            (_, false, false) => self.pass::<false, PROBS, false>(row, grad),
            (_, false, true) => self.pass::<false, PROBS, true>(row, grad),
            (_, true, false) => self.pass::<true, PROBS, false>(row, grad),
            (_, true, true) => self.pass::<true, PROBS, true>(row, grad),
        })
    }
}

/// The maximum of `x` (−∞ for a row of −∞; NaN is skipped, as by `f64::max`, and then makes
/// `S` NaN), over [`LANES`] lanes.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut groups = x.chunks_exact(LANES);
    for g in &mut groups {
        for (m, &v) in m.iter_mut().zip(g) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &v in m.iter().chain(groups.remainder()) {
        best = if v > best { v } else { best };
    }
    best
}
