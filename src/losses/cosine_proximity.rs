//! Cosine proximity, the negative cosine similarity of each row of `p` and `t` (Keras
//! `CosineSimilarity`), norm floor `ε > 0`:
//! `cos_r = p_r·t_r / (max(‖p_r‖, ε) max(‖t_r‖, ε))`, `ℓ_r = −cos_r`; its gradient in
//! [`reference::loss_and_grad`]. Scale-safe: no row of finite elements overflows or underflows.
//!
//! Shader `shaders/cosine_proximity.wgsl` (`LossParams { eps }`); tests
//! `tests/gpu/cosine_proximity.rs`.

use super::{Loss, Options, Family, LossDef, LossOption, Rows};
use crate::simd::rows::{Data, Outputs, Setup, groups};
use crate::error::{Error, Result};
use super::RowTarget;

/// The descriptor.
pub(crate) struct Def;

fn eps(loss: &Loss) -> f32 {
    match *loss {
        Loss::CosineProximity { eps } => eps,
        _ => 1e-8,
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::CosineProximity { .. })
    }
    fn name(&self) -> &'static str {
        "cosine"
    }
    fn about(&self) -> &'static str {
        "Cosine proximity of the rows of `[B, C]`"
    }
    fn options(&self) -> &'static [LossOption] {
        &[LossOption {
            name: "eps",
            help: "Cosine's floor eps > 0 of each row's norm",
            default: 1e-8,
            integer: false,
            flag: false,
        }]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::CosineProximity {
            eps: value("eps").map_or(1e-8, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let eps = eps(loss);
        if eps.is_finite() && eps > 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "eps",
                reason: format!("cosine's eps must be finite and > 0, got {eps}"),
            })
        }
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/cosine_proximity.wgsl",
            include_str!("../../shaders/cosine_proximity.wgsl"),
        )
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        [eps(loss), 0.0, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["eps"]
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
        _: Option<&[f64]>,
    ) -> (f64, Vec<f64>) {
        match target {
            RowTarget::Probs(t) => reference::loss_and_grad(x, t, f64::from(eps(loss))),
            // validate() admits only float targets.
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
        groups(&cpu::Cosine::new(eps(loss)), data, out)
    }
    fn main_job_cols(&self) -> usize {
        768
    }
}

/// The builder of a cosine proximity ([`Loss::CosineProximity`]), from [`Loss::cosine_proximity`]: options set by name,
/// the loss validated once by [`CosineProximity::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::cosine_proximity().eps(1e-6).build()?;
/// assert_eq!(loss.name(), "cosine");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct CosineProximity {
    eps: f32,
}

impl Default for CosineProximity {
    fn default() -> Self {
        CosineProximity {
            eps: 1e-8,
        }
    }
}

impl CosineProximity {
    /// The floor ε of each row's norm: finite and > 0 (default 1e-8).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a `eps` that is not finite and > 0.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::CosineProximity { eps: self.eps };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a cosine proximity with default options ([`CosineProximity`]).
    pub fn cosine_proximity() -> CosineProximity {
        CosineProximity::default()
    }
}


/// Cosine proximity (negative cosine similarity), reference for `shaders/cosine_proximity.wgsl`.
pub mod reference {
    /// `(ℓ_r, ∂ℓ_r/∂p_r)` for one row: prediction `p` and target `t` (`C` values each), norm
    /// floor `eps > 0`:
    ///
    /// ```text
    /// cos = p·t / (max(‖p‖, ε) · max(‖t‖, ε)),   ℓ_r = −cos
    /// ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos · p_j / ‖p‖²   if ‖p‖ > ε
    ///           = −t_j / (ε · max(‖t‖, ε))                               otherwise
    /// ```
    ///
    /// (Keras `CosineSimilarity`.) A zero row (`p = 0` or `t = 0`) gives loss 0, never NaN. If
    /// any `p_j` or `t_j` is NaN, the loss and every gradient entry are NaN. `p` and `t` have the
    /// same length.
    pub fn loss_and_grad(p: &[f64], t: &[f64], eps: f64) -> (f64, Vec<f64>) {
        debug_assert_eq!(p.len(), t.len());
        if crate::losses::has_nan(p) || crate::losses::has_nan(t) {
            return crate::losses::nan_row(p.len());
        }
        let (mut dot, mut pp, mut tt) = (0.0f64, 0.0f64, 0.0f64);
        for (&pj, &tj) in p.iter().zip(t) {
            dot += pj * tj;
            pp += pj * pj;
            tt += tj * tj;
        }
        let (np, nt) = (pp.sqrt(), tt.sqrt());
        let den = np.max(eps) * nt.max(eps);
        let cos = dot / den;
        let grad = p
            .iter()
            .zip(t)
            .map(|(&pj, &tj)| {
                if np > eps {
                    -tj / den + cos * pj / pp
                } else {
                    -tj / (eps * nt.max(eps))
                }
            })
            .collect();
        (-cos, grad)
    }
}

/// Cosine proximity (negative cosine similarity), the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    use crate::simd::rows::{Row, RowKernel};
    use crate::simd::{Acc, CHUNK, chunk, chunk_mut};

    /// Cosine proximity's row kernel, norm floor `eps`. Per row, prediction `p` and target `t`:
    ///
    /// ```text
    /// cos = p·t / (max(‖p‖, ε) · max(‖t‖, ε)),   ℓ_r = −cos
    /// ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos · p_j / ‖p‖²   if ‖p‖ > ε
    ///           = −t_j / (ε · max(‖t‖, ε))                               otherwise
    /// ```
    ///
    /// One pass over the row for `p·t`, `‖p‖²`, `‖t‖²` (f32 products, accumulated as [`Acc`]);
    /// the cosine and the gradient's two coefficients in f64; then the gradient `a t_j + b p_j`
    /// from the row, now in cache. The loss does not depend on the scale of `p` or `t`, but f32
    /// products overflow from elements of 1.8e19 and lose bits to underflow below 1e-19: where a
    /// sum of squares comes out non-finite or below 2^-100 (scale-safe sums are at least that,
    /// and then no product that matters underflowed), the row is taken again in f64, and its
    /// gradient formed as `rp (c (p_j rp) − t_j rt)` with `rp = 1/max(‖p‖, ε)`,
    /// `rt = 1/max(‖t‖, ε)` and `c` the cosine (0 when `‖p‖ ≤ ε`), each factor an f32 without
    /// overflow or needless underflow (for norms of 1e20, `a` alone would underflow).
    pub(crate) struct Cosine {
        eps: f64,
    }

    impl Cosine {
        pub(crate) fn new(eps: f32) -> Cosine {
            Cosine {
                eps: f64::from(eps),
            }
        }
    }

    /// Below this, an f32 sum of squares may have lost bits to underflow (2^-100).
    const SAFE_SUM: f64 = 7.888_609_052_210_118e-31;

    /// Whether an f32 sum of squares is free of overflow and of underflow that matters.
    fn safe(sum: f64) -> bool {
        (SAFE_SUM..f64::from(f32::MAX)).contains(&sum)
    }

    /// `(p·t, ‖p‖², ‖t‖²)` from f64 products: exact enough at any f32 scale.
    fn sums_f64(p: &[f32], t: &[f32]) -> (f64, f64, f64) {
        let (mut dot, mut pp, mut tt) = (0.0f64, 0.0f64, 0.0f64);
        for (&pj, &tj) in p.iter().zip(t) {
            let (pj, tj) = (f64::from(pj), f64::from(tj));
            dot += pj * tj;
            pp += pj * pj;
            tt += tj * tj;
        }
        (dot, pp, tt)
    }

    impl RowKernel for Cosine {
        #[inline(always)]
        fn row(&self, row: &Row<'_>, grad: &mut [f32]) -> Result<f64, usize> {
            let (p, t) = (row.x, row.t);
            let c = p.len();
            let whole = c - c % CHUNK;
            let (mut dot, mut pp, mut tt) = (Acc::default(), Acc::default(), Acc::default());
            let mut buf = [[0.0f32; CHUNK]; 3];
            for a in (0..whole).step_by(CHUNK) {
                let (pc, tc) = (chunk(p, a), chunk(t, a));
                for i in 0..CHUNK {
                    buf[0][i] = pc[i] * tc[i];
                    buf[1][i] = pc[i] * pc[i];
                    buf[2][i] = tc[i] * tc[i];
                }
                dot.add_chunk(&buf[0]);
                pp.add_chunk(&buf[1]);
                tt.add_chunk(&buf[2]);
            }
            if whole < c {
                // The tail's terms at the front of the buffers, summed in lanes (Acc::add_first).
                let n = c - whole;
                for (i, (&pj, &tj)) in p[whole..].iter().zip(&t[whole..]).enumerate() {
                    buf[0][i] = pj * tj;
                    buf[1][i] = pj * pj;
                    buf[2][i] = tj * tj;
                }
                dot.add_first(&buf[0], n);
                pp.add_first(&buf[1], n);
                tt.add_first(&buf[2], n);
            }
            let (mut dot, mut pp, mut tt) = (dot.total(), pp.total(), tt.total());
            let scaled = !(safe(pp) && safe(tt) && dot.is_finite());
            if scaled {
                (dot, pp, tt) = sums_f64(p, t);
            }
            let eps = self.eps;
            let (np, nt) = (pp.sqrt(), tt.sqrt());
            let (dp, dt) = (np.max(eps), nt.max(eps));
            if c == 1 && np > eps && nt > eps && (dot + pp + tt).is_finite() {
                // One feature: cos = ±1 exactly, and the gradient's two terms cancel exactly (in
                // rounded arithmetic they leave an ulp of 1/(‖p‖‖t‖)).
                grad.fill(0.0);
                return Ok(-dot.signum());
            }
            let cos = dot / dp / dt;
            if !grad.is_empty() {
                let f = f64::from(row.f);
                if scaled {
                    // f · ∂ℓ_r/∂p_j = rp (k (p_j rp) − t_j rt), with f folded into k and rt.
                    let rp = (1.0 / dp) as f32;
                    let rt = (f / dt) as f32;
                    let k = if np > eps { (f * cos) as f32 } else { 0.0 };
                    for j in 0..c {
                        grad[j] = rp * (k * (p[j] * rp) - t[j] * rt);
                    }
                } else {
                    // f · ∂ℓ_r/∂p_j = a t_j + b p_j.
                    let (a, b) = if np > eps {
                        (-f / (dp * dt), f * cos / pp)
                    } else {
                        (-f / (eps * dt), 0.0)
                    };
                    let (a, b) = (a as f32, b as f32);
                    for a_ in (0..whole).step_by(CHUNK) {
                        let (pc, tc, gc) = (chunk(p, a_), chunk(t, a_), chunk_mut(grad, a_));
                        for i in 0..CHUNK {
                            gc[i] = a * tc[i] + b * pc[i];
                        }
                    }
                    for j in whole..c {
                        grad[j] = a * t[j] + b * p[j];
                    }
                }
            }
            Ok(-cos)
        }
    }
}
