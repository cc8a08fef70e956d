//! Sigmoid focal loss on logits, torchvision `sigmoid_focal_loss`, `α` and `γ ≥ 0`, logit `x`,
//! target `t ∈ [0, 1]`, `p = σ(x)`:
//!
//! ```text
//! ce  = −[t ln p + (1 − t) ln(1 − p)]        (BCE with logits)
//! q   = 1 − p_t = t (1 − p) + (1 − t) p
//! α_t = α t + (1 − α)(1 − t)   (1 where α < 0: no weighting)
//! ℓ   = α_t · ce · q^γ
//! ∂ℓ/∂x = α_t [(p − t) q^γ + γ ce q^(γ−1) p (1 − p)(1 − 2t)]
//! ```
//!
//! Shader `shaders/focal.wgsl` (`LossParams { alpha, gamma }`); tests `tests/gpu/focal.rs`.

use super::{Elementwise, Family, Loss, LossDef, LossOption, Options, Synthetic};
use crate::error::{Error, Result};
use crate::simd::CHUNK;
use crate::simd::elementwise::{Chunk, Element, Inputs, Outputs, dispatch};
use crate::simd::math::logistic_chunk;

/// The descriptor.
pub(crate) struct Def;

/// torchvision's defaults.
const ALPHA: f32 = 0.25;
const GAMMA: f32 = 2.0;

/// `(alpha, gamma)`.
fn options(loss: &Loss) -> (f32, f32) {
    match *loss {
        Loss::Focal { alpha, gamma } => (alpha, gamma),
        _ => (ALPHA, GAMMA),
    }
}

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Focal { .. })
    }
    fn name(&self) -> &'static str {
        "focal"
    }
    fn about(&self) -> &'static str {
        "Sigmoid focal loss on logits (torchvision sigmoid_focal_loss)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sigmoid-focal"]
    }
    fn options(&self) -> &'static [LossOption] {
        &[
            LossOption {
                name: "alpha",
                help: "weight of the positive class, in [0, 1]; negative: no weighting (default 0.25)",
                default: 0.25,
                integer: false,
                flag: false,
            },
            LossOption {
                name: "gamma",
                help: "focusing exponent gamma >= 0 on (1 - p_t) (default 2)",
                default: 2.0,
                integer: false,
                flag: false,
            },
        ]
    }
    fn build(&self, value: &Options<'_>) -> Loss {
        Loss::Focal {
            alpha: value("alpha").map_or(ALPHA, |v| v.float() as f32),
            gamma: value("gamma").map_or(GAMMA, |v| v.float() as f32),
        }
    }
    fn validate(&self, loss: &Loss) -> Result<()> {
        let (alpha, gamma) = options(loss);
        if !(alpha.is_finite() && alpha <= 1.0) {
            return Err(Error::InvalidOption {
                option: "alpha",
                reason: format!(
                    "the focal loss's alpha must be in [0, 1] (or negative, for no weighting), got {alpha}"
                ),
            });
        }
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::InvalidOption {
                option: "gamma",
                reason: format!("the focal loss's gamma must be finite and >= 0, got {gamma}"),
            });
        }
        Ok(())
    }
    fn shader(&self) -> (&'static str, &'static str) {
        ("shaders/focal.wgsl", include_str!("../../shaders/focal.wgsl"))
    }
    fn params(&self, loss: &Loss) -> [f32; 4] {
        let (alpha, gamma) = options(loss);
        [alpha, gamma, 0.0, 0.0]
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["alpha", "gamma"]
    }
    fn switches(&self, loss: &Loss) -> &'static [(&'static str, bool)] {
        // q^γ as q · q at torchvision's default γ = 2, without its `ln` and `exp`.
        if options(loss).1 == 2.0 {
            &[("GAMMA_TWO", true)]
        } else {
            &[("GAMMA_TWO", false)]
        }
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (-6.0, 6.0),
            target: (0.0, 1.0),
            ..Synthetic::SIGNED
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

/// The builder of a sigmoid focal loss ([`Loss::Focal`]), from [`Loss::focal`]: options set
/// by name, the loss validated once by [`Focal::build`].
///
/// ```
/// # use wgpu_loss::Loss;
/// let loss = Loss::focal().alpha(0.5).gamma(1.0).build()?;
/// assert_eq!(loss.name(), "focal");
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Focal {
    alpha: f32,
    gamma: f32,
}

impl Default for Focal {
    fn default() -> Self {
        Focal {
            alpha: ALPHA,
            gamma: GAMMA,
        }
    }
}

impl Focal {
    /// The weight α of the positive class, in [0, 1]; a negative α turns the weighting off
    /// (torchvision's convention; default 0.25).
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    /// The focusing exponent γ ≥ 0 on `1 − p_t`; 0 is BCE with logits times `α_t`
    /// (default 2).
    pub fn gamma(mut self, gamma: f32) -> Self {
        self.gamma = gamma;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an `alpha` above 1 or not finite, or a `gamma` that is
    /// negative or not finite.
    pub fn build(self) -> Result<Loss> {
        let loss = Loss::Focal {
            alpha: self.alpha,
            gamma: self.gamma,
        };
        loss.validate()?;
        Ok(loss)
    }
}

impl Loss {
    /// The builder of a sigmoid focal loss with torchvision's defaults ([`Focal`]).
    pub fn focal() -> Focal {
        Focal::default()
    }
}

/// The f64 reference.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, `alpha`, `gamma`:
    ///
    /// ```text
    /// p = σ(x), q = t (1 − p) + (1 − t) p, α_t = α t + (1 − α)(1 − t) (1 if α < 0)
    /// ce = ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −t x)
    /// ℓ = α_t ce q^γ
    /// ∂ℓ/∂x = α_t [(p − t) q^γ + γ ce q^(γ−1) p (1 − p)(1 − 2t)]
    /// ```
    ///
    /// `p` and `1 − p` are each taken from `e^(−|x|)`, so neither cancels for a confident
    /// logit; `p − t` is `(1 − t) − (1 − p)` for `x ≥ 0`. Where `q = 0` (a certain, correct
    /// prediction) the second term is 0 (its limit: `p (1 − p) = 0` there), and `q^0 = 1`.
    pub fn loss_and_grad(x: f64, t: f64, alpha: f64, gamma: f64) -> (f64, f64) {
        // a · v, 0 where a is 0 even against an infinite v (an infinite logit gives the
        // loss's limit, never 0 · ∞ = NaN).
        let w = |a: f64, v: f64| if a == 0.0 { 0.0 } else { a * v };
        let e = (-x.abs()).exp();
        let (p, pm) = if x >= 0.0 {
            (1.0 / (1.0 + e), e / (1.0 + e))
        } else {
            (e / (1.0 + e), 1.0 / (1.0 + e))
        };
        let ce = e.ln_1p() + if x >= 0.0 { w(1.0 - t, x) } else { w(-t, x) };
        let q = t * pm + (1.0 - t) * p;
        let at = if alpha >= 0.0 {
            alpha * t + (1.0 - alpha) * (1.0 - t)
        } else {
            1.0
        };
        let m = if gamma == 0.0 { 1.0 } else { q.powf(gamma) };
        let p_minus_t = if x >= 0.0 { (1.0 - t) - pm } else { p - t };
        // ce p (1 − p) → 0 as |x| → ∞ (x e^(−|x|)): 0 where p (1 − p) is.
        let focus = if q > 0.0 && gamma != 0.0 {
            gamma * w(p * pm, ce) * (m / q) * (1.0 - 2.0 * t)
        } else {
            0.0
        };
        (w(at * m, ce), at * (p_minus_t * m + focus))
    }
}

/// The fast CPU kernel.
pub(crate) mod cpu {
    use crate::simd::math::{exp, ln, logistic};
    use crate::simd::shift;

    /// `(ℓ, ∂ℓ/∂x)` for one element, as [`super::reference::loss_and_grad`] in f32; `q^γ` as
    /// `e^(γ ln q)`, or `q·q` where `SQUARE` (`γ = 2`, the default: torchvision's and the
    /// paper's), which saves an `exp`, a `ln` and the division of `q^γ/q`.
    #[inline(always)]
    pub(crate) fn loss_and_grad<const SQUARE: bool>(
        x: f32,
        t: f32,
        alpha: f32,
        gamma: f32,
    ) -> (f32, f32) {
        from_logistic::<SQUARE>(x, t, alpha, gamma, logistic(x))
    }

    /// [`loss_and_grad`] from `x`'s [`logistic`] parts `(e, ln(1 + e), 1/(1 + e))`, which the
    /// chunk form computes in loops of their own.
    #[inline(always)]
    pub(crate) fn from_logistic<const SQUARE: bool>(
        x: f32,
        t: f32,
        alpha: f32,
        gamma: f32,
        (e, sp, r): (f32, f32, f32),
    ) -> (f32, f32) {
        let (p, pm) = if x >= 0.0 { (r, e * r) } else { (e * r, r) };
        let ce = sp + if x >= 0.0 { shift(1.0 - t, x) } else { shift(-t, x) };
        let q = t * pm + (1.0 - t) * p;
        let at = if alpha >= 0.0 {
            alpha * t + (1.0 - alpha) * (1.0 - t)
        } else {
            1.0
        };
        let m = if SQUARE {
            q * q
        } else if gamma == 0.0 {
            1.0
        } else if q > 0.0 {
            exp(gamma * ln(q))
        } else {
            0.0
        };
        // q^γ / q, for q > 0.
        let m_over_q = if SQUARE { q } else { m / q };
        let p_minus_t = if x >= 0.0 { (1.0 - t) - pm } else { p - t };
        let focus = if q > 0.0 && gamma != 0.0 {
            gamma * shift(p * pm, ce) * m_over_q * (1.0 - 2.0 * t)
        } else {
            0.0
        };
        (shift(at * m, ce), at * (p_minus_t * m + focus))
    }
}

/// `(alpha, gamma)`; `SQUARE` where `gamma` is 2.
struct Kernel<const SQUARE: bool>(f32, f32);

impl<const SQUARE: bool> Element for Kernel<SQUARE> {
    #[inline(always)]
    fn eval(&self, x: f32, t: f32, _: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad::<SQUARE>(x, t, self.0, self.1)
    }
    /// The chunk's [`logistic_chunk`] first, then the rest.
    #[inline(always)]
    fn eval_chunk(&self, x: &Chunk<'_>, l: &mut [f32; CHUNK], d: &mut [f32; CHUNK]) {
        let [e, sp, r] = logistic_chunk(x.p);
        for i in 0..CHUNK {
            let parts = (e[i], sp[i], r[i]);
            (l[i], d[i]) = cpu::from_logistic::<SQUARE>(x.p[i], x.t[i], self.0, self.1, parts);
        }
    }
}

impl Elementwise for Def {
    fn reference(&self, loss: &Loss, x: f64, t: f64, _: f64, _: f64) -> (f64, f64) {
        let (alpha, gamma) = options(loss);
        reference::loss_and_grad(x, t, f64::from(alpha), f64::from(gamma))
    }
    fn cpu(
        &self,
        loss: &Loss,
        inputs: &Inputs<'_>,
        out: Outputs<'_>,
    ) -> Vec<std::result::Result<f64, usize>> {
        let (alpha, gamma) = options(loss);
        if gamma == 2.0 {
            dispatch::<_, false>(Kernel::<true>(alpha, gamma), inputs, out)
        } else {
            dispatch::<_, false>(Kernel::<false>(alpha, gamma), inputs, out)
        }
    }
}
