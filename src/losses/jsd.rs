//! The generalised Jensen–Shannon divergence from logits (Liger-Kernel's `LigerJSD`, with a
//! temperature): the student's logits `s` (the prediction, `[B, C]`) against the teacher's `u`
//! (the target, `[B, C]`), weight `β ∈ [0, 1]`, temperature `T > 0`:
//!
//! ```text
//! P = softmax(u/T), Q = softmax(s/T), M = β P + (1 − β) Q
//! ℓ_r = β KL(P ‖ M) + (1 − β) KL(Q ‖ M)    ∂ℓ_r/∂s_j = (1 − β)/T · Q_j (ln(Q_j/M_j) − KL(Q ‖ M))
//! β = 0: ℓ_r = KL(P ‖ Q)                   ∂ℓ_r/∂s_j = (Q_j − P_j)/T
//! β = 1: ℓ_r = KL(Q ‖ P)                   ∂ℓ_r/∂s_j = Q_j (ln Q_j − ln P_j − KL(Q ‖ P))/T
//! ```
//!
//! `β = 0.5` is the symmetric Jensen–Shannon divergence (≤ ln 2). Unlike [`Loss::Distill`]
//! there is no `T²` factor: the loss at `T` is the divergence of the softened distributions
//! itself. Liger-Kernel's `LigerJSD(beta)` takes log-probabilities (`log_softmax` outputs) and
//! has no temperature: it is this loss at `T = 1` on logits (whose `log_softmax` it is given),
//! and its `batchmean` over `B` rows is this loss's `Mean`. The teacher gets no gradient.
//!
//! Shader `shaders/jsd.wgsl` (`LossParams { beta, inv_t }`, the row driver's second
//! statistics sweep); tests `tests/gpu/jsd.rs`.

use super::distill::{TEMPERATURE, check_temperature};
use super::{Family, Loss, LossDef, LossOption, Options, RowTarget, Rows, Synthetic};
use crate::error::{Error, Result};
use crate::simd::rows::{Data, Outputs, Setup, groups};

/// The descriptor.
pub(crate) struct Def;

/// `(β, T)`.
fn options(loss: &Loss) -> (f32, f32) {
    match *loss {
        Loss::Jsd { beta, temperature } => (beta, temperature),
        _ => (0.5, 1.0),
    }
}

/// The weight β of the teacher's distribution in the mixture `M`.
const BETA: LossOption = LossOption {
    name: "beta",
    help: "JSD's weight beta in [0, 1] of the teacher in M = beta P + (1 - beta) Q (0: KL(P || Q), \
           1: KL(Q || P))",
    default: 0.5,
    integer: false,
    flag: false,
};

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Jsd { .. })
    }
    fn name(&self) -> &'static str {
        "jsd"
    }
    fn about(&self) -> &'static str {
        "Generalised Jensen-Shannon divergence beta KL(P || M) + (1 - beta) KL(Q || M) of student \
         logits s against teacher logits u [B, C], P = softmax(u/T), Q = softmax(s/T)"
    }
    fn options(&self) -> &'static [LossOption] {
        &[BETA, TEMPERATURE]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::Jsd {
            beta: value("beta").map_or(0.5, |v| v.float() as f32),
            temperature: value("temperature").map_or(1.0, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let (beta, t) = options(loss);
        check_beta(beta)?;
        check_temperature(t)
    }
    fn shader(&self) -> (&'static str, &'static str) {
        ("shaders/jsd.wgsl", include_str!("../../shaders/jsd.wgsl"))
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        let (beta, t) = options(loss);
        [beta, 1.0 / t, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["beta", "inv_t"]
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (-8.0, 8.0),
            target: (-8.0, 8.0),
            normalise_pred: false,
            normalise_target: false,
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Rows(self)
    }
    /// `(w/T) Q_j (ln Q_j − ln M_j − KL)` carries the rounding of `ln P_j − ln Q_j`, a
    /// difference of logits (`|a − b|` up to 16 for the main job's U(−8, 8) rows: half an ulp
    /// is 9.5e-7 absolute), into a result of order `Q_j`: the main job's 4096 × 32 000 batch
    /// shows 1.4e-6 of max |∂ℓ| on llvmpipe, so 4e-6 (the tests bound it per element on the
    /// logs' scale, `jsd_scales` in tests/gpu/common.rs).
    fn grad_rtol(&self) -> f64 {
        4e-6
    }
}

/// β must lie in [0, 1].
fn check_beta(beta: f32) -> Result<()> {
    if (0.0..=1.0).contains(&beta) {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "beta",
            reason: format!("JSD's beta must be in [0, 1], got {beta}"),
        })
    }
}

impl Rows for Def {
    fn reference(
        &self,
        loss: &Loss,
        x: &[f64],
        target: RowTarget<'_>,
        _: Option<&[f64]>,
    ) -> (f64, Vec<f64>) {
        let (beta, t) = options(loss);
        match target {
            RowTarget::Probs(u) => {
                reference::loss_and_grad(x, u, f64::from(beta), f64::from(t))
            }
            // Validation refuses class ids for this loss.
            RowTarget::Class(_) => crate::losses::nan_row(x.len()),
        }
    }
    // The second sweep: Σ_j P_j ln(P_j / M_j) needs the row's maxima and sums.
    fn sweeps(&self) -> u64 {
        2
    }
    fn cpu(
        &self,
        loss: &Loss,
        _: &Setup<'_>,
        data: &Data<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        let (beta, t) = options(loss);
        groups(&cpu::Jsd::new(beta, t), data, out)
    }
    fn main_job_cols(&self) -> usize {
        32000
    }
}

/// The builder of a generalised Jensen–Shannon divergence ([`Loss::Jsd`]), from [`Loss::jsd`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::jsd().beta(0.1).temperature(2.0).build()?;
/// assert_eq!(loss.name(), "jsd");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Jsd {
    beta: f32,
    temperature: f32,
}

impl Default for Jsd {
    fn default() -> Self {
        Jsd {
            beta: 0.5,
            temperature: 1.0,
        }
    }
}

impl Jsd {
    /// The weight `β ∈ [0, 1]` of the teacher's distribution in `M = β P + (1 − β) Q`
    /// (default 0.5; 0 gives `KL(P ‖ Q)`, 1 gives `KL(Q ‖ P)`).
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// The temperature `T > 0` both rows of logits are divided by (default 1; no `T²` factor).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `beta` outside [0, 1] (NaN included) or a temperature
    /// that is not finite and > 0.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::Jsd {
            beta: self.beta,
            temperature: self.temperature,
        };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a generalised Jensen–Shannon divergence with default options ([`Jsd`]).
    pub fn jsd() -> Jsd {
        Jsd::default()
    }
}

/// The f64 reference.
pub mod reference {
    use crate::losses::distill::reference::log_softmax;

    /// `ln(e^x + e^y)`, `−∞` when both are `−∞`.
    fn log_add_exp(x: f64, y: f64) -> f64 {
        let (hi, lo) = if x >= y { (x, y) } else { (y, x) };
        if hi == f64::NEG_INFINITY {
            hi
        } else {
            hi + (lo - hi).exp().ln_1p()
        }
    }

    /// `(ℓ_r, ∂ℓ_r/∂s_r)` for one row of student logits `s` against teacher logits `u` (`C`
    /// values each), weight `β ∈ [0, 1]`, temperature `T`:
    ///
    /// ```text
    /// P = softmax(u/T), Q = softmax(s/T), M = β P + (1 − β) Q
    /// 0 < β < 1: ℓ = β KL(P ‖ M) + (1 − β) KL(Q ‖ M)
    ///            ∂ℓ/∂s_j = (1 − β)/T · Q_j (ln Q_j − ln M_j − KL(Q ‖ M))
    /// β = 0:     ℓ = KL(P ‖ Q),  ∂ℓ/∂s_j = (Q_j − P_j)/T
    /// β = 1:     ℓ = KL(Q ‖ P),  ∂ℓ/∂s_j = Q_j (ln Q_j − ln P_j − KL(Q ‖ P))/T
    /// ```
    ///
    /// `ln P_j = (u_j/T − max) − ln Σ`, never `ln` of a softmax, and `ln M_j` is the
    /// log-add-exp of `ln β + ln P_j` and `ln(1 − β) + ln Q_j`.
    ///
    /// IEEE semantics, as [`crate::losses::distill::reference::loss_and_grad`]: a NaN or
    /// `+∞` logit in either row, or a row (either) of only `−∞` logits, gives loss NaN and a
    /// NaN gradient. A `−∞` logit among finite ones is a probability of 0, and a term
    /// `P_j ln(P_j/M_j)` or `Q_j ln(Q_j/M_j)` with `P_j = 0` (`Q_j = 0`) contributes 0, as does
    /// the gradient's term where `Q_j = 0`. So for `0 < β < 1` every row of finite `ℓ`
    /// (`ℓ ≤ −β ln β − (1 − β) ln(1 − β)`) has a finite gradient; `β = 0` with a student `−∞`
    /// where `P_j > 0` gives `ℓ = +∞` and the finite gradient `(Q − P)/T`; `β = 1` with a
    /// teacher `−∞` where `Q_j > 0` gives `ℓ = +∞` and a NaN gradient (`∞ − ∞`).
    pub fn loss_and_grad(s: &[f64], u: &[f64], beta: f64, temperature: f64) -> (f64, Vec<f64>) {
        let c = s.len();
        if crate::losses::has_nan(s) || crate::losses::has_nan(u) {
            return crate::losses::nan_row(c);
        }
        let (Some((log_p, p)), Some((log_q, q))) =
            (log_softmax(u, temperature), log_softmax(s, temperature))
        else {
            return crate::losses::nan_row(c);
        };
        let inv = 1.0 / temperature;
        if beta == 0.0 {
            let kl: f64 = (0..c)
                .filter(|&j| p[j] != 0.0)
                .map(|j| p[j] * (log_p[j] - log_q[j]))
                .sum();
            return (kl, (0..c).map(|j| inv * (q[j] - p[j])).collect());
        }
        // ln Q_j − ln M_j for every j, and for 0 < β < 1 ln P_j − ln M_j.
        let (lqm, lpm): (Vec<f64>, Vec<f64>) = if beta == 1.0 {
            ((0..c).map(|j| log_q[j] - log_p[j]).collect(), vec![0.0; c])
        } else {
            let (lb, l1b) = (beta.ln(), (1.0 - beta).ln());
            (0..c)
                .map(|j| {
                    let lm = log_add_exp(lb + log_p[j], l1b + log_q[j]);
                    (log_q[j] - lm, log_p[j] - lm)
                })
                .unzip()
        };
        let kq: f64 = (0..c).filter(|&j| q[j] != 0.0).map(|j| q[j] * lqm[j]).sum();
        let kp: f64 = if beta == 1.0 {
            0.0
        } else {
            (0..c).filter(|&j| p[j] != 0.0).map(|j| p[j] * lpm[j]).sum()
        };
        let (loss, w) = if beta == 1.0 {
            (kq, 1.0)
        } else {
            (beta * kp + (1.0 - beta) * kq, 1.0 - beta)
        };
        if kq == f64::INFINITY {
            // β = 1 and a teacher −∞ where Q_j > 0: ∞ − ∞ in the gradient.
            return (loss, vec![f64::NAN; c]);
        }
        let grad = (0..c)
            .map(|j| {
                if q[j] == 0.0 {
                    0.0
                } else {
                    w * inv * q[j] * (lqm[j] - kq)
                }
            })
            .collect();
        (loss, grad)
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    use crate::simd::math::{exp, ln, ln_1p_f64};
    use crate::simd::rows::{Row, RowKernel};
    use crate::simd::{Acc, CHUNK, TAIL, chunk, chunk_mut, lanes, lanes_mut, max, padded};

    /// Which formula (a const parameter of the hot loops, so each compiles without branches
    /// on it): β = 0, 0 < β < 1, β = 1.
    const FORWARD: u8 = 0;
    const MIXED: u8 = 1;
    const REVERSE: u8 = 2;

    /// The JSD row kernel, the formulation of `shaders/jsd.wgsl` (which forms `ln Q_j − ln M_j`
    /// of the gradient from `P_j/Q_j` instead): with `a = u/T`, `b = s/T`,
    /// their maxima `ma`, `mb` and sums `SA`, `SB` (first sweep, in f64 from f32 terms),
    ///
    /// ```text
    /// ln P_j = (a_j − ma) − ln SA,  ln Q_j = (b_j − mb) − ln SB,  M_j = β P_j + (1 − β) Q_j
    /// kp = Σ_j P_j (ln P_j − ln M_j),  kq = Σ_j Q_j (ln Q_j − ln M_j)   (second sweep)
    /// ∂ℓ/∂s_j = (w/T) Q_j (ln Q_j − ln M_j − kq)                         (third sweep)
    /// ```
    ///
    /// The second sweep keeps `Q_j` in the gradient's place and `ln Q_j − ln M_j` (`P_j` for
    /// β = 0) in a buffer of the thread's, so the third takes no `exp` or `ln`.
    ///
    /// `ln M_j` is `ln` of the sum in f32 (of two non-negative terms: no cancellation), where
    /// that sum is a normal number; a term whose `M_j` underflows (both probabilities below
    /// 2^-126) is dropped, as is every term with `P_j = 0` (`Q_j = 0`).
    /// A row's statistics, as the per-element steps read them.
    struct Stats {
        inv: f32,
        ma: f32,
        mb: f32,
        lsa: f32,
        lsb: f32,
        /// The row's gradient factor, and it times the weight `w` of the gradient.
        f: f32,
        fw: f32,
        kq: f32,
    }

    impl Stats {
        /// `ln P_j = (a_j − ma) − ln SA` from the teacher's logit.
        #[inline(always)]
        fn lp(&self, t: f32) -> f32 {
            (t * self.inv - self.ma) - self.lsa
        }
        /// `ln Q_j = (b_j − mb) − ln SB` from the student's logit.
        #[inline(always)]
        fn lq(&self, s: f32) -> f32 {
            (s * self.inv - self.mb) - self.lsb
        }
    }

    thread_local! {
        /// A row's `P_j` (β = 0) or `ln Q_j − ln M_j`, kept between the rows of a thread.
        static KEPT: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    }

    pub(crate) struct Jsd {
        mode: u8,
        beta: f32,
        inv: f32,
    }

    impl Jsd {
        pub(crate) fn new(beta: f32, temperature: f32) -> Jsd {
            Jsd {
                mode: if beta == 0.0 {
                    FORWARD
                } else if beta == 1.0 {
                    REVERSE
                } else {
                    MIXED
                },
                beta,
                inv: 1.0 / temperature,
            }
        }

        /// `ln M` for `M = β P + (1 − β) Q`, and whether it is usable (a normal number).
        #[inline(always)]
        fn ln_m<const MODE: u8>(&self, p: f32, q: f32, lp: f32, lq: f32) -> (f32, bool) {
            match MODE {
                FORWARD => (lq, true),
                REVERSE => (lp, true),
                _ => {
                    let m = self.beta * p + (1.0 - self.beta) * q;
                    (ln(m), m >= f32::MIN_POSITIVE)
                }
            }
        }

        /// The terms `(P (ln P − ln M), Q (ln Q − ln M))` of one element, and what its
        /// gradient needs from them ([`Self::grad_elem`]): `(Q, P)` for β = 0, else `Q` (0
        /// where the term is dropped) and `ln Q − ln M`.
        #[inline(always)]
        fn terms<const MODE: u8>(&self, lp: f32, lq: f32) -> (f32, f32, f32, f32) {
            let (p, q) = (exp(lp), exp(lq));
            let (lm, ok) = self.ln_m::<MODE>(p, q, lp, lq);
            let (tp, tq) = (
                if p == 0.0 || !ok { 0.0 } else { p * (lp - lm) },
                if q == 0.0 || !ok { 0.0 } else { q * (lq - lm) },
            );
            if MODE == FORWARD {
                (tp, tq, q, p)
            } else {
                (tp, tq, if q == 0.0 || !ok { 0.0 } else { q }, lq - lm)
            }
        }

        /// `∂ℓ/∂s_j` times the row's factor `f`, `fw = f` or `f (1 − β)`, from what
        /// [`Self::terms`] kept: `f (Q − P)` for β = 0, else `fw Q (ln Q − ln M − kq)`.
        #[inline(always)]
        fn grad_elem<const MODE: u8>(&self, st: &Stats, g: f32, k: f32) -> f32 {
            if MODE == FORWARD {
                return st.f * (g - k);
            }
            if g == 0.0 { 0.0 } else { st.fw * g * (k - st.kq) }
        }

        /// The first sweep's work on `N` elements (a chunk, or [`TAIL`] of a row's tail): the
        /// terms of `SA − 1` and `SB − 1` into `ra` and `rb` (0 for the ties at a maximum,
        /// whose counts are returned), from teacher logits `uc` and student logits `xc` and
        /// their scaled maxima `ma`, `mb`.
        #[inline(always)]
        fn stats<const N: usize>(
            &self,
            ma: f32,
            mb: f32,
            uc: &[f32; N],
            xc: &[f32; N],
            ra: &mut [f32; N],
            rb: &mut [f32; N],
        ) -> (u32, u32) {
            let (mut ties_a, mut ties_b) = (0u32, 0u32);
            for i in 0..N {
                let (va, vb) = (uc[i] * self.inv - ma, xc[i] * self.inv - mb);
                ties_a += u32::from(va == 0.0);
                ties_b += u32::from(vb == 0.0);
                ra[i] = if va == 0.0 { 0.0 } else { exp(va) };
                rb[i] = if vb == 0.0 { 0.0 } else { exp(vb) };
            }
            (ties_a, ties_b)
        }

        /// The second sweep's work on `N` elements: [`Self::terms`] of each into `tp`, `tq`
        /// (summed) and `g`, `k` (kept for the gradient).
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn kl_terms<const MODE: u8, const N: usize>(
            &self,
            st: &Stats,
            uc: &[f32; N],
            xc: &[f32; N],
            tp: &mut [f32; N],
            tq: &mut [f32; N],
            g: &mut [f32; N],
            k: &mut [f32; N],
        ) {
            for i in 0..N {
                (tp[i], tq[i], g[i], k[i]) = self.terms::<MODE>(st.lp(uc[i]), st.lq(xc[i]));
            }
        }

        /// The third sweep's work on `N` elements: what the second kept in `g` and `k` turned
        /// into the gradient ([`Self::grad_elem`]), in `g`.
        #[inline(always)]
        fn grads<const MODE: u8, const N: usize>(&self, st: &Stats, k: &[f32; N], g: &mut [f32; N]) {
            for i in 0..N {
                g[i] = self.grad_elem::<MODE>(st, g[i], k[i]);
            }
        }

        #[inline(always)]
        fn pass<const G: bool, const MODE: u8>(&self, row: &Row<'_>, grad: &mut [f32]) -> f64 {
            let (x, u, inv) = (row.x, row.t, self.inv);
            let c = x.len();
            let whole = c - c % CHUNK;
            // T > 0, and rounding is monotone: max(u) / T is the largest u_j / T.
            let (ma, mb) = (max(u) * inv, max(x) * inv);
            let (mut sa, mut sb) = (Acc::default(), Acc::default());
            let (mut ra, mut rb) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
            let (mut ties_a, mut ties_b) = (0u32, 0u32);
            for at in (0..whole).step_by(CHUNK) {
                let (xc, uc) = (chunk(x, at), chunk(u, at));
                let (ta, tb) = self.stats::<CHUNK>(ma, mb, uc, xc, &mut ra, &mut rb);
                ties_a += ta;
                ties_b += tb;
                sa.add_chunk(&ra);
                sb.add_chunk(&rb);
            }
            // The tail in a padded chunk (simd::padded), TAIL elements at a time as far as its
            // n elements reach. The padding is −∞ in both: in the first sweep its e is 0 and
            // it is never a tie (no masks: where a maximum is −∞ too, the row's own terms are
            // NaN already), so the rest of the chunk's terms are 0, the same bits as a whole
            // padded chunk masked; the second sweep's sums take the first n (add_first).
            let n = c - whole;
            let (u_pad, x_pad) = (
                padded(&u[whole..], f32::NEG_INFINITY),
                padded(&x[whole..], f32::NEG_INFINITY),
            );
            if n > 0 {
                (ra, rb) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
                for g in (0..n).step_by(TAIL) {
                    let (ta, tb) = self.stats::<TAIL>(
                        ma,
                        mb,
                        lanes(&u_pad, g),
                        lanes(&x_pad, g),
                        lanes_mut(&mut ra, g),
                        lanes_mut(&mut rb, g),
                    );
                    ties_a += ta;
                    ties_b += tb;
                }
                sa.add_chunk(&ra);
                sb.add_chunk(&rb);
            }
            // S − 1 = (ties − 1) + the rest (no ties: every logit −∞, or a NaN maximum).
            let rest_a = f64::from(ties_a) - 1.0 + sa.total();
            let rest_b = f64::from(ties_b) - 1.0 + sb.total();
            if !(rest_a >= 0.0 && rest_b >= 0.0) {
                // A NaN or +∞ logit (∞ − ∞), or a row of −∞: NaN, as the reference.
                return f64::NAN;
            }
            let (lsa, lsb) = (ln_1p_f64(rest_a) as f32, ln_1p_f64(rest_b) as f32);
            // The second sweep.
            let (mut kp, mut kq) = (Acc::default(), Acc::default());
            let (mut tp, mut tq) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
            let mut st = Stats {
                inv,
                ma,
                mb,
                lsa,
                lsb,
                f: 0.0,
                fw: 0.0,
                kq: 0.0,
            };
            // What the gradient needs of each element, kept in its place and in a buffer of
            // the thread's, so that the third sweep takes no exp or ln.
            let mut kept = if G { KEPT.take() } else { Vec::new() };
            kept.resize(if G { whole } else { 0 }, 0.0);
            let (mut g_buf, mut k_buf) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
            for at in (0..whole).step_by(CHUNK) {
                let (xc, uc) = (chunk(x, at), chunk(u, at));
                let gc = if G { chunk_mut(grad, at) } else { &mut g_buf };
                let kc = if G { chunk_mut(&mut kept, at) } else { &mut k_buf };
                self.kl_terms::<MODE, CHUNK>(&st, uc, xc, &mut tp, &mut tq, gc, kc);
                kp.add_chunk(&tp);
                kq.add_chunk(&tq);
            }
            if n > 0 {
                // The tail's kept values stay in g_buf and k_buf for the third sweep.
                for g in (0..n).step_by(TAIL) {
                    self.kl_terms::<MODE, TAIL>(
                        &st,
                        lanes(&u_pad, g),
                        lanes(&x_pad, g),
                        lanes_mut(&mut tp, g),
                        lanes_mut(&mut tq, g),
                        lanes_mut(&mut g_buf, g),
                        lanes_mut(&mut k_buf, g),
                    );
                }
                kp.add_first(&tp, n);
                kq.add_first(&tq, n);
            }
            let (kp, kq) = (kp.total(), kq.total());
            let beta = f64::from(self.beta);
            let loss = match MODE {
                FORWARD => kp,
                REVERSE => kq,
                _ => beta * kp + (1.0 - beta) * kq,
            };
            if G {
                let f = row.f * inv;
                if MODE == REVERSE && kq == f64::INFINITY {
                    // β = 1 and a teacher −∞ where Q_j > 0: ∞ − ∞.
                    grad.fill(f32::NAN);
                    KEPT.set(kept);
                    return loss;
                }
                st.f = f;
                st.fw = if MODE == MIXED {
                    f * (1.0 - self.beta)
                } else {
                    f
                };
                st.kq = kq as f32;
                for at in (0..whole).step_by(CHUNK) {
                    self.grads::<MODE, CHUNK>(&st, chunk(&kept, at), chunk_mut(grad, at));
                }
                if n > 0 {
                    for g in (0..n).step_by(TAIL) {
                        let gc = lanes_mut(&mut g_buf, g);
                        self.grads::<MODE, TAIL>(&st, lanes(&k_buf, g), gc);
                    }
                    grad[whole..].copy_from_slice(&g_buf[..n]);
                }
                KEPT.set(kept);
            }
            loss
        }

        #[inline(always)]
        fn run<const MODE: u8>(&self, row: &Row<'_>, grad: &mut [f32]) -> f64 {
            if grad.is_empty() {
                self.pass::<false, MODE>(row, grad)
            } else {
                self.pass::<true, MODE>(row, grad)
            }
        }
    }

    impl RowKernel for Jsd {
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            Ok(match self.mode {
                FORWARD => self.run::<FORWARD>(row, grad),
                REVERSE => self.run::<REVERSE>(row, grad),
                _ => self.run::<MIXED>(row, grad),
            })
        }
    }
}
