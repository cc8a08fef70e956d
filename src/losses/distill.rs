//! Distillation from logits (Hinton et al.'s soft targets; Liger-Kernel's distillation
//! losses): the student's logits `s` (the prediction, `[B, C]`) against the teacher's `u`
//! (the target, `[B, C]`), temperature `T > 0`:
//!
//! ```text
//! P = softmax(u/T), Q = softmax(s/T)
//! ℓ_r = T² Σ_j P_rj (ln P_rj − ln Q_rj)        ∂ℓ_r/∂s_rj = T (Q_rj − P_rj)
//! ```
//!
//! PyTorch: `T**2 * F.kl_div(F.log_softmax(s / T, -1), F.softmax(u / T, -1),
//! reduction="batchmean")` is this loss's `Mean` over `[B, C]` rows; `reduction="sum"` is
//! `Sum`. The teacher gets no gradient.
//!
//! Shader `shaders/distill.wgsl` (`LossParams { temperature, inv_t }`); tests
//! `tests/gpu/distill.rs`.

use super::{Family, Loss, LossDef, LossOption, Options, RowTarget, Rows, Synthetic};
use crate::error::{Error, Result};
use crate::simd::rows::{Data, Outputs, Setup, groups};

/// The descriptor.
pub(crate) struct Def;

/// The temperature.
fn options(loss: &Loss) -> f32 {
    match *loss {
        Loss::Distill { temperature } => temperature,
        _ => 1.0,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Distill { .. })
    }
    fn name(&self) -> &'static str {
        "distill"
    }
    fn about(&self) -> &'static str {
        "Distillation T^2 KL(softmax(u/T) || softmax(s/T)) of student logits s against teacher \
         logits u, both [B, C]"
    }
    fn options(&self) -> &'static [LossOption] {
        &[TEMPERATURE]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::Distill {
            temperature: value("temperature").map_or(1.0, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        check_temperature(options(loss))
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/distill.wgsl",
            include_str!("../../shaders/distill.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        let t = options(loss);
        [t, 1.0 / t, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["temperature", "inv_t"]
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
}

/// The temperature option, shared with `jsd`.
pub(crate) const TEMPERATURE: LossOption = LossOption {
    name: "temperature",
    help: "Temperature T > 0 both logits are divided by (default 1)",
    default: 1.0,
    integer: false,
    flag: false,
};

/// A temperature must be finite and > 0.
pub(crate) fn check_temperature(t: f32) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "temperature",
            reason: format!("the temperature must be finite and > 0, got {t}"),
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
        match target {
            RowTarget::Probs(u) => reference::loss_and_grad(x, u, f64::from(options(loss))),
            // Validation refuses class ids for this loss.
            RowTarget::Class(_) => crate::losses::nan_row(x.len()),
        }
    }
    fn cpu(
        &self,
        loss: &Loss,
        _: &Setup<'_>,
        data: &Data<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        groups(&cpu::Distill::new(options(loss)), data, out)
    }
    fn main_job_cols(&self) -> usize {
        32000
    }
    // Both softmaxes' running statistics and d combine across segments as across lanes.
    fn splits(&self) -> bool {
        true
    }
}

/// The builder of a distillation loss ([`Loss::Distill`]), from [`Loss::distill`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::distill().temperature(2.0).build()?;
/// assert_eq!(loss.name(), "distill");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Distill {
    temperature: f32,
}

impl Default for Distill {
    fn default() -> Self {
        Distill { temperature: 1.0 }
    }
}

impl Distill {
    /// The temperature `T > 0` both rows of logits are divided by (default 1).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a temperature that is not finite and > 0.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::Distill {
            temperature: self.temperature,
        };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a distillation loss with default options ([`Distill`]).
    pub fn distill() -> Distill {
        Distill::default()
    }
}

/// The f64 reference.
pub mod reference {
    /// A row's `(log-softmax, softmax)` of `v / T`: `ln p_j = (v_j/T − m) − ln S`, never
    /// `ln` of a softmax; `None` for a row with a `+∞` entry or only `−∞` entries.
    pub fn log_softmax(v: &[f64], temperature: f64) -> Option<(Vec<f64>, Vec<f64>)> {
        let a: Vec<f64> = v.iter().map(|&v| v / temperature).collect();
        let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m.is_infinite() {
            return None;
        }
        let top = a.iter().position(|&aj| aj == m).unwrap_or(0);
        let rest: f64 = (0..a.len())
            .filter(|&j| j != top)
            .map(|j| (a[j] - m).exp())
            .sum();
        let ln_s = rest.ln_1p();
        let logp: Vec<f64> = a.iter().map(|&aj| (aj - m) - ln_s).collect();
        let p = logp.iter().map(|l| l.exp()).collect();
        Some((logp, p))
    }

    /// `(ℓ_r, ∂ℓ_r/∂s_r)` for one row of student logits `s` against teacher logits `u` (`C`
    /// values each), temperature `T`:
    ///
    /// ```text
    /// P = softmax(u/T), Q = softmax(s/T)
    /// ℓ_r = T² Σ_j P_j (ln P_j − ln Q_j)        ∂ℓ_r/∂s_j = T (Q_j − P_j)
    /// ```
    ///
    /// A term with `P_j = 0` contributes 0 (a teacher logit of `−∞`); a student logit of `−∞`
    /// where `P_j > 0` gives `ℓ = +∞`. A NaN or `+∞` logit in either row, or a row of `−∞`
    /// logits, gives loss NaN and a NaN gradient.
    pub fn loss_and_grad(s: &[f64], u: &[f64], temperature: f64) -> (f64, Vec<f64>) {
        let c = s.len();
        if crate::losses::has_nan(s) || crate::losses::has_nan(u) {
            return crate::losses::nan_row(c);
        }
        let (Some((log_p, p)), Some((log_q, q))) =
            (log_softmax(u, temperature), log_softmax(s, temperature))
        else {
            return crate::losses::nan_row(c);
        };
        let mut kl = 0.0f64;
        for j in 0..c {
            if p[j] != 0.0 {
                kl += p[j] * (log_p[j] - log_q[j]);
            }
        }
        let grad = (0..c).map(|j| temperature * (q[j] - p[j])).collect();
        (temperature * temperature * kl, grad)
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    use crate::simd::math::{exp_below_hi, ln_1p_f64};
    use crate::simd::rows::{Row, RowKernel};
    use crate::simd::{Acc, CHUNK, TAIL, chunk, chunk_mut, lanes, lanes_mut, max, padded};

    /// The distillation row kernel, the formulation of `shaders/distill.wgsl`: with
    /// `a = u/T`, `b = s/T`, their maxima `ma`, `mb`,
    ///
    /// ```text
    /// SA = Σ_j e^(a_j − ma),  SB = Σ_j e^(b_j − mb),  d = Σ_j e^(a_j − ma) (a_j − b_j)
    /// ℓ = T² (d/SA − (ma − mb) − (ln SA − ln SB))
    /// f ∂ℓ/∂s_j = (f T/SB) e^(b_j − mb) − (f T/SA) e^(a_j − ma)
    /// ```
    ///
    /// Two sweeps over memory (the maxima, then the sums with `e^(b − mb)` kept in the
    /// gradient's place and `e^(a − ma)` in a buffer of the thread's; a row's tail's in padded
    /// chunks), the gradient from cache without another `exp`.
    pub(crate) struct Distill {
        t: f32,
        inv: f32,
    }

    thread_local! {
        /// A row's teacher terms `e^(a_j − ma)`, kept between the rows of a thread.
        static TEACHER: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    }

    impl Distill {
        pub(crate) fn new(temperature: f32) -> Distill {
            Distill {
                t: temperature,
                inv: 1.0 / temperature,
            }
        }

        /// The sums' work on `N` elements (a chunk, or [`TAIL`] of a row's tail) of teacher
        /// logits `uc` and student logits `xc`, scaled by 1/T here, with the scaled maxima `ma`
        /// and `mb`: the terms of `SA − 1`, `SB − 1` and `d` into `ra`, `rb`, `dd` (0 for the
        /// ties at a maximum, whose counts are returned), `e^(b − mb)` into `eb` and
        /// `e^(a − ma)` into `ea` (`a ≤ ma`, so [`exp_below_hi`]). A pure function of each
        /// element (the counts returned, not captured: a closure that captured them kept the
        /// loop from vectorising).
        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn sums<const N: usize>(
            &self,
            ma: f32,
            mb: f32,
            uc: &[f32; N],
            xc: &[f32; N],
            ra: &mut [f32; N],
            rb: &mut [f32; N],
            dd: &mut [f32; N],
            eb: &mut [f32; N],
            ea: &mut [f32; N],
        ) -> (u32, u32) {
            let (mut ties_a, mut ties_b) = (0u32, 0u32);
            for i in 0..N {
                let (a, b) = (uc[i] * self.inv, xc[i] * self.inv);
                let (va, vb) = (a - ma, b - mb);
                let (e_a, e_b) = (exp_below_hi(va), exp_below_hi(vb));
                ra[i] = if va == 0.0 { 0.0 } else { e_a };
                rb[i] = if vb == 0.0 { 0.0 } else { e_b };
                dd[i] = if e_a == 0.0 { 0.0 } else { e_a * (a - b) };
                eb[i] = e_b;
                ea[i] = e_a;
                ties_a += u32::from(va == 0.0);
                ties_b += u32::from(vb == 0.0);
            }
            (ties_a, ties_b)
        }

        #[inline(always)]
        fn pass<const G: bool>(&self, row: &Row<'_>, grad: &mut [f32]) -> f64 {
            let (x, u, inv) = (row.x, row.t, self.inv);
            let c = x.len();
            let whole = c - c % CHUNK;
            // T > 0, and rounding is monotone: max(u) / T is the largest u_j / T.
            let (ma, mb) = (max(u) * inv, max(x) * inv);
            let (mut sa, mut sb, mut d) = (Acc::default(), Acc::default(), Acc::default());
            let (mut ra, mut rb, mut dd, mut eb_buf, mut ea_buf) = (
                [0.0f32; CHUNK],
                [0.0f32; CHUNK],
                [0.0f32; CHUNK],
                [0.0f32; CHUNK],
                [0.0f32; CHUNK],
            );
            let (mut ties_a, mut ties_b) = (0u32, 0u32);
            // The teacher's e^(a − ma) kept for the gradient sweep, so it needs no exp.
            let mut ea_row = if G { TEACHER.take() } else { Vec::new() };
            ea_row.resize(if G { whole } else { 0 }, 0.0);
            for at in (0..whole).step_by(CHUNK) {
                let (xc, uc) = (chunk(x, at), chunk(u, at));
                let ec = if G { chunk_mut(grad, at) } else { &mut eb_buf };
                let tc = if G { chunk_mut(&mut ea_row, at) } else { &mut ea_buf };
                let (ta, tb) = self.sums::<CHUNK>(ma, mb, uc, xc, &mut ra, &mut rb, &mut dd, ec, tc);
                ties_a += ta;
                ties_b += tb;
                sa.add_chunk(&ra);
                sb.add_chunk(&rb);
                d.add_chunk(&dd);
            }
            // The tail in a padded chunk (simd::padded), TAIL elements at a time as far as its
            // n elements reach, the rest of the chunk's terms 0: the same bits as a whole padded
            // chunk with its padding's terms replaced by 0. The padding is −∞ in both, whose e
            // is 0 (so its d term is 0) and never a tie: no masks (where a maximum is −∞ too,
            // the row's own terms are NaN already). Its e stay in eb_buf and ea_buf for the
            // gradient.
            let n = c - whole;
            if n > 0 {
                let (x_pad, u_pad) = (
                    padded(&x[whole..], f32::NEG_INFINITY),
                    padded(&u[whole..], f32::NEG_INFINITY),
                );
                (ra, rb, dd) = ([0.0f32; CHUNK], [0.0f32; CHUNK], [0.0f32; CHUNK]);
                for g in (0..n).step_by(TAIL) {
                    let (ta, tb) = self.sums::<TAIL>(
                        ma,
                        mb,
                        lanes(&u_pad, g),
                        lanes(&x_pad, g),
                        lanes_mut(&mut ra, g),
                        lanes_mut(&mut rb, g),
                        lanes_mut(&mut dd, g),
                        lanes_mut(&mut eb_buf, g),
                        lanes_mut(&mut ea_buf, g),
                    );
                    ties_a += ta;
                    ties_b += tb;
                }
                sa.add_chunk(&ra);
                sb.add_chunk(&rb);
                d.add_chunk(&dd);
            }
            // S − 1 = (ties − 1) + the rest (no ties: every logit −∞, or a NaN maximum).
            let rest_a = f64::from(ties_a) - 1.0 + sa.total();
            let rest_b = f64::from(ties_b) - 1.0 + sb.total();
            let (big_sa, big_sb, d) = (1.0 + rest_a, 1.0 + rest_b, d.total());
            if !(big_sa >= 1.0 && big_sb >= 1.0) || d.is_nan() {
                // A NaN or +∞ logit (∞ − ∞), or a row of −∞: NaN, as the reference.
                return f64::NAN;
            }
            let kl = d / big_sa
                - (f64::from(ma) - f64::from(mb))
                - (ln_1p_f64(rest_a) - ln_1p_f64(rest_b));
            let t = f64::from(self.t);
            if G {
                let ft = f64::from(row.f) * t;
                let (ka, kb) = ((ft / big_sa) as f32, (ft / big_sb) as f32);
                for at in (0..whole).step_by(CHUNK) {
                    grads(ka, kb, chunk(&ea_row, at), chunk_mut(grad, at));
                }
                if n > 0 {
                    for g in (0..n).step_by(TAIL) {
                        grads::<TAIL>(ka, kb, lanes(&ea_buf, g), lanes_mut(&mut eb_buf, g));
                    }
                    grad[whole..].copy_from_slice(&eb_buf[..n]);
                }
            }
            if G {
                TEACHER.set(ea_row);
            }
            t * t * kl
        }
    }

    /// The gradient's work on `N` elements: `e^(b − mb)` in `g` turned into
    /// `kb e^(b − mb) − ka e^(a − ma)`, the teacher's terms from `ea`.
    #[inline(always)]
    fn grads<const N: usize>(ka: f32, kb: f32, ea: &[f32; N], g: &mut [f32; N]) {
        for i in 0..N {
            g[i] = kb * g[i] - ka * ea[i];
        }
    }

    impl RowKernel for Distill {
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            Ok(if grad.is_empty() {
                self.pass::<false>(row, grad)
            } else {
                self.pass::<true>(row, grad)
            })
        }
    }
}
