//! Softmax cross entropy from logits `[B, C]` against probability targets `[B, C]` or class
//! indices `[B]` (PyTorch `cross_entropy`), with optional class weights `[C]`, label smoothing,
//! z-loss, `ignore_index` and logit soft-capping; the formulas in [`reference::loss_and_grad`].
//!
//! Shader `shaders/softmax_cross_entropy.wgsl` (`LossParams { label_smoothing, z_loss,
//! softcap, inv_softcap }`);
//! tests `tests/gpu/softmax_cross_entropy.rs`.

use super::{Loss, Options, Family, LossDef, LossOption, Rows, Synthetic};
use crate::simd::rows::{Data, Outputs, Setup, groups};
use crate::error::{Error, Result};
use super::RowTarget;

/// The descriptor.
pub(crate) struct Def;

/// `(label_smoothing, z_loss, ignore_index)`.
fn options(loss: &Loss) -> (f32, f32, i64) {
    match *loss {
        Loss::SoftmaxCrossEntropy {
            label_smoothing,
            z_loss,
            ignore_index,
            ..
        } => (label_smoothing, z_loss, ignore_index),
        _ => (0.0, 0.0, -100),
    }
}

/// The soft cap `c` (0: none).
fn softcap(loss: &Loss) -> f32 {
    match *loss {
        Loss::SoftmaxCrossEntropy { softcap, .. } => softcap,
        _ => 0.0,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::SoftmaxCrossEntropy { .. })
    }
    fn name(&self) -> &'static str {
        "softmax-ce"
    }
    fn about(&self) -> &'static str {
        "Softmax cross entropy from logits `[B, C]`: probability targets `[B, C]` or class \
         indices `[B]`"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["cross-entropy"]
    }
    fn options(&self) -> &'static [LossOption] {
        &[
            LossOption {
                name: "label-smoothing",
                help: "Label smoothing in [0, 1)",
                default: 0.0,
                integer: false,
                flag: false,
            },
            LossOption {
                name: "z-loss",
                help: "z-loss coefficient >= 0: adds z * lse^2 per row",
                default: 0.0,
                integer: false,
                flag: false,
            },
            LossOption {
                name: "ignore-index",
                help: "Class-index targets equal to this are ignored",
                default: -100.0,
                integer: true,
                flag: false,
            },
            LossOption {
                name: "softcap",
                help: "Logit soft cap c > 0: logits become c * tanh(x / c) (0: none)",
                default: 0.0,
                integer: false,
                flag: false,
            },
        ]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::SoftmaxCrossEntropy {
            label_smoothing: value("label-smoothing").map_or(0.0, |v| v.float() as f32),
            z_loss: value("z-loss").map_or(0.0, |v| v.float() as f32),
            ignore_index: value("ignore-index").map_or(-100, |v| v.int()),
            softcap: value("softcap").map_or(0.0, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let (label_smoothing, z_loss, _) = options(loss);
        if !(0.0..1.0).contains(&label_smoothing) {
            return Err(Error::InvalidOption {
                option: "label_smoothing",
                reason: format!("label smoothing must be in [0, 1), got {label_smoothing}"),
            });
        }
        if !(z_loss.is_finite() && z_loss >= 0.0) {
            return Err(Error::InvalidOption {
                option: "z_loss",
                reason: format!("the z-loss coefficient must be finite and >= 0, got {z_loss}"),
            });
        }
        let cap = softcap(loss);
        if !(cap.is_finite() && cap >= 0.0) {
            return Err(Error::InvalidOption {
                option: "softcap",
                reason: format!("the soft cap must be finite and > 0 (or 0 for none), got {cap}"),
            });
        }
        Ok(())
    }
    fn takes_weight(&self) -> bool {
        true
    }
    fn takes_classes(&self) -> bool {
        true
    }
    fn has_lse(&self) -> bool {
        true
    }
    fn ignore_index(&self, loss: &Loss) -> Option<i64> {
        Some(options(loss).2)
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/softmax_cross_entropy.wgsl",
            include_str!("../../shaders/softmax_cross_entropy.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        let (label_smoothing, z_loss, _) = options(loss);
        let cap = softcap(loss);
        let inv = if cap > 0.0 { 1.0 / cap } else { 0.0 };
        [label_smoothing, z_loss, cap, inv]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["label_smoothing", "z_loss", "softcap", "inv_softcap"]
    }
    fn switches(&self, loss: &Loss) -> &'static [(&'static str, bool)] {
        // The cap compiled out of the plain kernel (a uniform branch on the cap cost llvmpipe
        // 1.5× on every row).
        if softcap(loss) > 0.0 {
            &[("SOFTCAP", true)]
        } else {
            &[("SOFTCAP", false)]
        }
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (-8.0, 8.0),
            target: (0.0, 1.0),
            normalise_pred: false,
            normalise_target: true,
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Rows(self)
    }
}

impl Rows for Def {
    fn reference(
        &self,
        loss: &Loss,
        x: &[f64],
        target: RowTarget<'_>,
        weight: Option<&[f64]>,
    ) -> (f64, Vec<f64>) {
        let (label_smoothing, z_loss, _) = options(loss);
        reference::capped_loss_and_grad(
            x,
            target,
            weight,
            f64::from(label_smoothing),
            f64::from(z_loss),
            f64::from(softcap(loss)),
        )
    }
    fn cpu(
        &self,
        loss: &Loss,
        setup: &Setup<'_>,
        data: &Data<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        let (label_smoothing, z_loss, _) = options(loss);
        let kernel = cpu::Softmax::new(
            setup.c,
            setup.weight,
            setup.classes,
            label_smoothing,
            z_loss,
        );
        let cap = softcap(loss);
        if cap > 0.0 {
            groups(&cpu::Capped::new(kernel, cap), data, out)
        } else {
            groups(&kernel, data, out)
        }
    }
    fn main_job_cols(&self) -> usize {
        32000
    }
    fn reference_lse(&self, loss: &Loss, x: &[f64]) -> Option<f64> {
        Some(reference::lse(x, f64::from(softcap(loss))))
    }
    // The statistics (m, S − 1, d, tw) combine across segments as across lanes.
    fn splits(&self) -> bool {
        true
    }
}

/// The builder of a softmax cross entropy ([`Loss::SoftmaxCrossEntropy`]), from [`Loss::softmax_cross_entropy`]: options set by name,
/// the loss validated once by [`SoftmaxCrossEntropy::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::softmax_cross_entropy().label_smoothing(0.1).ignore_index(-1).build()?;
/// assert_eq!(loss.name(), "softmax-ce");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct SoftmaxCrossEntropy {
    label_smoothing: f32,
    z_loss: f32,
    ignore_index: i64,
    softcap: f32,
}

impl Default for SoftmaxCrossEntropy {
    fn default() -> Self {
        SoftmaxCrossEntropy {
            label_smoothing: 0.0,
            z_loss: 0.0,
            ignore_index: -100,
            softcap: 0.0,
        }
    }
}

impl SoftmaxCrossEntropy {
    /// Label smoothing ε in [0, 1), PyTorch's `label_smoothing` (default 0).
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// z-loss coefficient λ ≥ 0: adds `λ lse²` per row, PaLM's auxiliary loss (default 0).
    pub fn z_loss(mut self, z_loss: f32) -> Self {
        self.z_loss = z_loss;
        self
    }

    /// Class-index targets equal to this are ignored, PyTorch's `ignore_index` (default −100).
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Logit soft-capping `c > 0` (Gemma 2's final-logit soft cap, 30 there): each logit `x`
    /// becomes `c·tanh(x/c)` before the softmax and the gradient is taken through the cap;
    /// 0 (the default) for none.
    pub fn softcap(mut self, softcap: f32) -> Self {
        self.softcap = softcap;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `label_smoothing` outside [0, 1), or a `z_loss` or
    /// `softcap` that is negative or not finite.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::SoftmaxCrossEntropy {
            label_smoothing: self.label_smoothing,
            z_loss: self.z_loss,
            ignore_index: self.ignore_index,
            softcap: self.softcap,
        };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a softmax cross entropy with default options ([`SoftmaxCrossEntropy`]).
    pub fn softmax_cross_entropy() -> SoftmaxCrossEntropy {
        SoftmaxCrossEntropy::default()
    }
}


/// Softmax cross entropy from logits (PyTorch `cross_entropy`), reference for `shaders/softmax_cross_entropy.wgsl`.
pub mod reference {
    pub use crate::losses::RowTarget;

    /// `(ℓ_r, ∂ℓ_r/∂x_r)` for one row of logits `x` (`C` values), with optional class weights
    /// `w` (`C` values, default all 1, `W = Σ_j w_j`), label smoothing `ε = label_smoothing` in
    /// [0, 1) and z-loss coefficient `λ = z_loss ≥ 0`. With `lse = ln Σ_j exp x_j` (computed as
    /// `m + ln Σ_j exp(x_j − m)`, `m` the row maximum) and `s = softmax(x)`, `s_j = exp(x_j − lse)`:
    ///
    /// ```text
    /// probability targets t, t' = (1 − ε) t + ε/C:
    ///     ℓ_r = −Σ_j w_j t'_j ln s_j = Σ_j w_j t'_j (lse − x_j)
    ///     ∂ℓ_r/∂x_j = (Σ_k w_k t'_k) s_j − w_j t'_j
    /// class index c:
    ///     ℓ_r = (1 − ε) w_c (lse − x_c) + (ε/C) Σ_j w_j (lse − x_j)
    ///     ∂ℓ_r/∂x_j = (1 − ε) w_c (s_j − [j = c]) + (ε/C)(W s_j − w_j)
    /// z-loss, both kinds:
    ///     ℓ_r += λ lse²,   ∂ℓ_r/∂x_j += 2 λ lse s_j
    /// ```
    ///
    /// Each `lse − x_j` is formed as `(m − x_j) + ln Σ_k exp(x_k − m)`, never as a difference of
    /// two large numbers: a uniform row of logits 1e20 has loss `ln C`, not `1e20 − 1e20 = 0`.
    /// A term whose weight (`w_j t'_j`, `(ε/C) w_j`, `(1 − ε) w_c` or `λ`) is exactly 0 contributes
    /// 0 even where `x_j = −∞` (never `0 · ∞ = NaN`): a row of `−∞` logits but one finite, with
    /// its target on the finite one, has loss 0 and a finite gradient; a target weight on a `−∞`
    /// logit gives loss `+∞`. `ln(softmax)` is never formed. If any `x_j` (or probability target
    /// `t_j`) is NaN, any `x_j` is `+∞`, or every `x_j` is `−∞`, the loss and every gradient entry
    /// are NaN (as PyTorch's `log_softmax` makes them).
    ///
    /// # Panics
    /// If a class index is not below `C` (the caller checks the range), or `t`/`w` is shorter
    /// than `x`.
    pub fn loss_and_grad(
        x: &[f64],
        target: RowTarget<'_>,
        w: Option<&[f64]>,
        label_smoothing: f64,
        z_loss: f64,
    ) -> (f64, Vec<f64>) {
        let c = x.len();
        let target_nan = match target {
            RowTarget::Probs(t) => crate::losses::has_nan(t),
            RowTarget::Class(_) => false,
        };
        if crate::losses::has_nan(x) || target_nan {
            return crate::losses::nan_row(c);
        }
        let eps = label_smoothing;
        let cf = c as f64;
        let weight = |j: usize| w.map_or(1.0, |w| w[j]);

        // lse with the row maximum subtracted.
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m.is_infinite() {
            // A +∞ logit (∞ − ∞ in every form of the softmax), or no finite logit at all.
            return crate::losses::nan_row(c);
        }
        // S = 1 + Σ of the others, the first maximum's exp(0) = 1 left out of the sum, so that
        // ln S = ln_1p(rest) keeps a confident row's small loss (1 + 2e-17 would round to 1).
        let top = x.iter().position(|&xj| xj == m).unwrap_or(0);
        let mut rest = 0.0f64;
        for (j, &xj) in x.iter().enumerate() {
            if j != top {
                rest += (xj - m).exp();
            }
        }
        let sum_exp = 1.0 + rest;
        let ln_s = rest.ln_1p();
        let lse = m + ln_s;
        let s: Vec<f64> = x.iter().map(|&xj| (xj - m).exp() / sum_exp).collect();
        // One term `a · (lse − x_j)`, as `a · ((m − x_j) + ln S)`; 0 when its weight `a` is 0.
        let term = |a: f64, xj: f64| if a == 0.0 { 0.0 } else { a * ((m - xj) + ln_s) };

        let (mut loss, mut grad) = match target {
            RowTarget::Probs(t) => {
                // wt_j = w_j t'_j
                let wt: Vec<f64> = (0..c)
                    .map(|j| weight(j) * ((1.0 - eps) * t[j] + eps / cf))
                    .collect();
                let mut total = 0.0f64;
                let mut loss = 0.0f64;
                for j in 0..c {
                    total += wt[j];
                    loss += term(wt[j], x[j]);
                }
                let grad = (0..c).map(|j| total * s[j] - wt[j]).collect::<Vec<_>>();
                (loss, grad)
            }
            RowTarget::Class(cls) => {
                let wc = (1.0 - eps) * weight(cls);
                let mut big_w = 0.0f64;
                let mut smooth = 0.0f64;
                for (j, &xj) in x.iter().enumerate() {
                    big_w += weight(j);
                    smooth += term(eps / cf * weight(j), xj);
                }
                let loss = term(wc, x[cls]) + smooth;
                // s_c − 1 = −(S − e_c)/S = −((1 − e_c) + rest)/S: a confident row's target entry
                // keeps its digits (1/S − 1 is 0 in f64 once S − 1 < 1e-16).
                let e_c = (x[cls] - m).exp();
                let s_c_minus_1 = -((1.0 - e_c) + rest) / sum_exp;
                let grad = (0..c)
                    .map(|j| {
                        let ds = if j == cls { s_c_minus_1 } else { s[j] };
                        wc * ds + eps / cf * (big_w * s[j] - weight(j))
                    })
                    .collect::<Vec<_>>();
                (loss, grad)
            }
        };
        if z_loss != 0.0 {
            loss += z_loss * lse * lse;
            for (gj, sj) in grad.iter_mut().zip(&s) {
                *gj += 2.0 * z_loss * lse * sj;
            }
        }
        (loss, grad)
    }

    /// [`loss_and_grad`] of the soft-capped logits `y_j = c·tanh(x_j/c)` (for `c > 0`; `c = 0`
    /// is [`loss_and_grad`] of `x` itself), with the gradient through the cap:
    ///
    /// ```text
    /// ℓ_r(x) = ℓ_r(y),   ∂ℓ_r/∂x_j = ∂ℓ_r/∂y_j · (1 − tanh²(x_j/c))
    /// ```
    ///
    /// A logit of `±∞` is capped to `±c` (its gradient is 0); a NaN stays NaN.
    ///
    /// # Panics
    /// As [`loss_and_grad`].
    pub fn capped_loss_and_grad(
        x: &[f64],
        target: RowTarget<'_>,
        w: Option<&[f64]>,
        label_smoothing: f64,
        z_loss: f64,
        softcap: f64,
    ) -> (f64, Vec<f64>) {
        if softcap == 0.0 {
            return loss_and_grad(x, target, w, label_smoothing, z_loss);
        }
        let tanh: Vec<f64> = x.iter().map(|&xj| (xj / softcap).tanh()).collect();
        let y: Vec<f64> = tanh.iter().map(|&t| softcap * t).collect();
        let (loss, mut grad) = loss_and_grad(&y, target, w, label_smoothing, z_loss);
        for (g, t) in grad.iter_mut().zip(&tanh) {
            *g *= 1.0 - t * t;
        }
        (loss, grad)
    }

    /// The row's log-sum-exp over the logits the softmax sees, `y_j = c·tanh(x_j/c)` for a
    /// soft cap `c > 0` (else `y = x`):
    ///
    /// ```text
    /// lse = ln Σ_j exp y_j = m + ln(1 + Σ_{j ≠ top} exp(y_j − m)),   m = max_j y_j
    /// ```
    ///
    /// (`ln_1p` of the sum without the maximum's own 1, as the loss forms it). NaN if any
    /// `y_j` is NaN or `+∞` (the rows whose loss is NaN), `−∞` if every `y_j` is `−∞`.
    pub fn lse(x: &[f64], softcap: f64) -> f64 {
        let y: Vec<f64> = if softcap == 0.0 {
            x.to_vec()
        } else {
            x.iter().map(|&xj| softcap * (xj / softcap).tanh()).collect()
        };
        if crate::losses::has_nan(&y) {
            return f64::NAN;
        }
        let m = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::INFINITY {
            return f64::NAN;
        }
        if m == f64::NEG_INFINITY {
            return m;
        }
        let top = y.iter().position(|&yj| yj == m).unwrap_or(0);
        let rest: f64 = y
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != top)
            .map(|(_, &yj)| (yj - m).exp())
            .sum();
        m + rest.ln_1p()
    }
}

/// Softmax cross entropy from logits (PyTorch `cross_entropy`), the fast CPU counterpart of [`reference`]; the formulation of
/// `shaders/softmax_cross_entropy.wgsl`.
pub(crate) mod cpu {
    use crate::simd::math::{exp_below_hi, ln_1p_f64, softcap};
    use crate::simd::rows::{Row, RowKernel};
    use crate::simd::{Acc, CHUNK, TAIL, chunk, chunk_mut, lanes, lanes_mut, max, padded, shift, shift64};

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
    pub(crate) struct Softmax<'a> {
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
        pub(crate) fn new(
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

        /// Sweep 2's work on `N` elements (a chunk, or [`TAIL`] of a row's tail) of logits
        /// `xc`, targets `tc` and class weights `wc`, the row maximum `m`: `e_j = exp(x_j − m)`
        /// into `e`, the terms of `S − 1` into `r` (0 for the ties at the maximum, which are
        /// counted and returned), those of `d` and `tw` into `d` and `tw` (where `KIND` has
        /// them).
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn sums<const W: bool, const KIND: u8, const N: usize>(
            &self,
            xc: &[f32; N],
            tc: &[f32; N],
            wc: &[f32; N],
            m: f32,
            e: &mut [f32; N],
            r: &mut [f32; N],
            d: &mut [f32; N],
            tw: &mut [f32; N],
        ) -> u32 {
            let mut ties = 0u32;
            for i in 0..N {
                let v = xc[i] - m;
                let ei = exp_below_hi(v);
                e[i] = ei;
                r[i] = if v == 0.0 { 0.0 } else { ei };
                ties += u32::from(v == 0.0);
                if KIND != NONE {
                    let wt = self.dense::<W, KIND>(wc[i], tc[i]);
                    d[i] = shift(wt, v);
                    tw[i] = wt;
                }
            }
            ties
        }

        /// Sweep 3's work on `N` elements: `e_j` in `g` turned into `k e_j − f wt_j`, with
        /// `k = f A/S` (the target class's entry is written apart).
        #[inline(always)]
        fn grads<const W: bool, const KIND: u8, const N: usize>(
            &self,
            k: f32,
            f: f32,
            tc: &[f32; N],
            wc: &[f32; N],
            g: &mut [f32; N],
        ) {
            for i in 0..N {
                g[i] = if KIND == NONE {
                    k * g[i]
                } else {
                    k * g[i] - f * self.dense::<W, KIND>(wc[i], tc[i])
                };
            }
        }

        /// The row's loss and log-sum-exp, its gradient into `grad` (`G`).
        #[inline(always)]
        fn pass<const W: bool, const KIND: u8, const G: bool>(
            &self,
            row: &Row<'_>,
            grad: &mut [f32],
        ) -> (f64, f64) {
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
                let ec = if G { chunk_mut(grad, a) } else { &mut e_buf };
                let (xc, tc, wc) = (chunk(x, a), chunk(t, a), chunk(w, a));
                ties += self.sums::<W, KIND, CHUNK>(xc, tc, wc, m, ec, &mut r_buf, &mut d_buf, &mut tw_buf);
                s_acc.add_chunk(&r_buf);
                if KIND != NONE {
                    d_acc.add_chunk(&d_buf);
                }
                if KIND == PROBS {
                    tw_acc.add_chunk(&tw_buf);
                }
            }
            // The tail in a padded chunk (simd::padded), TAIL elements at a time as far as its
            // n elements reach, the rest of the chunk's S terms 0: the same bits as a whole
            // padded chunk with its padding's terms replaced by 0 (d's and tw's are, by
            // add_first). The logits' padding is −∞, whose e is 0 and never a tie, so S needs no
            // mask (where the maximum is −∞ too, the row's own e are NaN already). The tail's e
            // stay in e_buf for sweep 3.
            let n = c - whole;
            let (x_pad, t_pad, w_pad) = (
                padded(&x[whole..], f32::NEG_INFINITY),
                padded(&t[whole..], 0.0),
                padded(&w[whole..], 0.0),
            );
            if n > 0 {
                r_buf = [0.0f32; CHUNK];
                for g in (0..n).step_by(TAIL) {
                    ties += self.sums::<W, KIND, TAIL>(
                        lanes(&x_pad, g),
                        lanes(&t_pad, g),
                        lanes(&w_pad, g),
                        m,
                        lanes_mut(&mut e_buf, g),
                        lanes_mut(&mut r_buf, g),
                        lanes_mut(&mut d_buf, g),
                        lanes_mut(&mut tw_buf, g),
                    );
                }
                s_acc.add_chunk(&r_buf);
                if KIND != NONE {
                    d_acc.add_first(&d_buf, n);
                }
                if KIND == PROBS {
                    tw_acc.add_first(&tw_buf, n);
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
            let m64 = f64::from(m);
            if s.is_nan() || s < 1.0 || tw.is_nan() {
                // S is NaN (a NaN or +∞ logit: ∞ − ∞) or 0 (every logit −∞), or a target is NaN:
                // the row is NaN, as in the reference, even where a zero weight would hide it.
                // Its log-sum-exp: −∞ for no finite logit (the maximum −∞: S is then NaN
                // here), NaN where S is, else as below.
                let lse = if m == f32::NEG_INFINITY {
                    f64::NEG_INFINITY
                } else if s.is_nan() {
                    f64::NAN
                } else {
                    m64 + ln_1p_f64(rest)
                };
                return (f64::NAN, lse);
            }
            let ln_s = ln_1p_f64(rest);
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
                let e_cls = row
                    .cls
                    .map(|cls| f64::from(if cls < whole { grad[cls] } else { e_buf[cls - whole] }));
                let k = (f64::from(f) * big_a / s) as f32;
                for a in (0..whole).step_by(CHUNK) {
                    self.grads::<W, KIND, CHUNK>(k, f, chunk(t, a), chunk(w, a), chunk_mut(grad, a));
                }
                if n > 0 {
                    for g in (0..n).step_by(TAIL) {
                        let ec = lanes_mut(&mut e_buf, g);
                        self.grads::<W, KIND, TAIL>(k, f, lanes(&t_pad, g), lanes(&w_pad, g), ec);
                    }
                    grad[whole..].copy_from_slice(&e_buf[..n]);
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
            (loss, lse)
        }
    }

    /// Softmax cross entropy of soft-capped logits: [`Softmax`] on `y_j = c·tanh(x_j/c)`
    /// ([`softcap`]), each row capped into a buffer of the thread's first, and the gradient
    /// times `∂y_j/∂x_j` afterwards.
    pub(crate) struct Capped<'a> {
        inner: Softmax<'a>,
        c: f32,
        inv: f32,
    }

    impl<'a> Capped<'a> {
        /// `inner` on logits capped at `c > 0`.
        pub(crate) fn new(inner: Softmax<'a>, c: f32) -> Capped<'a> {
            Capped {
                inner,
                c,
                inv: 1.0 / c,
            }
        }
    }

    thread_local! {
        /// A row's capped logits and their derivatives, kept between the rows of a thread.
        static CAPPED: std::cell::Cell<(Vec<f32>, Vec<f32>)> =
            const { std::cell::Cell::new((Vec::new(), Vec::new())) };
    }

    impl RowKernel for Capped<'_> {
        /// The buffers are taken out of the thread-local and put back (no closure), so that
        /// the loops here and [`Softmax`]'s are inlined into the driver's instruction-set
        /// builds.
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            let mut lse = 0.0;
            self.row_lse(row, grad, &mut lse)
        }

        #[inline(always)]
        fn row_lse(&self, row: &Row<'_>, grad: &mut [f32], lse: &mut f32) -> Result<f64, usize> {
            let (mut y, mut dy) = CAPPED.take();
            y.resize(row.x.len(), 0.0);
            dy.resize(row.x.len(), 0.0);
            for ((yj, dj), &x) in y.iter_mut().zip(dy.iter_mut()).zip(row.x) {
                (*yj, *dj) = softcap(x, self.c, self.inv);
            }
            let capped = Row {
                x: &y,
                t: row.t,
                cls: row.cls,
                f: row.f,
            };
            let loss = self.inner.row_lse(&capped, grad, lse);
            for (g, &d) in grad.iter_mut().zip(dy.iter()) {
                *g *= d;
            }
            CAPPED.set((y, dy));
            loss
        }
    }

    impl RowKernel for Softmax<'_> {
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            let mut lse = 0.0;
            self.row_lse(row, grad, &mut lse)
        }

        #[inline(always)]
        fn row_lse(&self, row: &Row<'_>, grad: &mut [f32], lse: &mut f32) -> Result<f64, usize> {
            let g = !grad.is_empty();
            let w = self.w.is_some();
            let (loss, l) = match (self.kind, w, g) {
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
            };
            *lse = l as f32;
            Ok(loss)
        }
    }
}
