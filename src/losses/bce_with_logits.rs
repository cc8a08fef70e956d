//! Binary cross entropy on logits, PyTorch `binary_cross_entropy_with_logits`, optional weight
//! `w` and `pos_weight` `q`: `ℓ = w[(1−t)x + (1+(q−1)t)(ln(1+e^(−|x|)) + max(−x, 0))]`,
//! `∂ℓ/∂x = w[(1+(q−1)t)σ(x) − qt]`.
//!
//! Shader `shaders/bce_with_logits.wgsl`; tests `tests/gpu/bce_with_logits.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef, Synthetic};
use crate::simd::CHUNK;
use crate::simd::math::logistic_chunk;
use crate::simd::elementwise::{Chunk, Element, Inputs, Outputs, dispatch};
use crate::bindings::{Access, Binding, ELEMENTWISE_BINDINGS, Slot, binding, concat};

/// The descriptor.
pub(crate) struct Def;

/// The elementwise driver's, the weight and `pos_weight`.
const BINDINGS: [Binding; 9] = concat(
    ELEMENTWISE_BINDINGS,
    [
        binding(7, Slot::Weight, Access::Read),
        binding(8, Slot::PosWeight, Access::Read),
    ],
);

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::BceWithLogits)
    }
    fn name(&self) -> &'static str {
        "bce-with-logits"
    }
    fn about(&self) -> &'static str {
        "Binary cross entropy on logits (PyTorch binary_cross_entropy_with_logits)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["bce-logits", "binary-cross-entropy-with-logits"]
    }
    fn build(&self, _: &Options<'_>) -> Loss {
        Loss::BceWithLogits
    }
    fn takes_weight(&self) -> bool {
        true
    }
    fn takes_pos_weight(&self) -> bool {
        true
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/bce_with_logits.wgsl",
            include_str!("../../shaders/bce_with_logits.wgsl"),
        )
    }
    fn bindings(&self) -> &'static [Binding] {
        &BINDINGS
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (-8.0, 8.0),
            target: (0.0, 1.0),
            ..Synthetic::SIGNED
        }
    }
    fn family(&self) -> Family<'_> {
        Family::Elementwise(self)
    }
}

struct Kernel;

impl Element for Kernel {
    #[inline(always)]
    fn eval(&self, x: f32, t: f32, w: f32, q: f32) -> (f32, f32) {
        cpu::loss_and_grad(x, t, w, q)
    }
    /// The chunk's [`logistic_chunk`] first, then the rest.
    #[inline(always)]
    fn eval_chunk(&self, x: &Chunk<'_>, l: &mut [f32; CHUNK], d: &mut [f32; CHUNK]) {
        let [e, sp, r] = logistic_chunk(x.p);
        for i in 0..CHUNK {
            (l[i], d[i]) = cpu::from_logistic(x.p[i], x.t[i], x.w[i], x.q[i], (e[i], sp[i], r[i]));
        }
    }
}

impl Elementwise for Def {
    fn reference(&self, _: &Loss, x: f64, t: f64, w: f64, q: f64) -> (f64, f64) {
        reference::loss_and_grad(x, t, w, q)
    }
    fn cpu(&self, _: &Loss, inputs: &Inputs<'_>, out: Outputs<'_>) -> Vec<Result<f64, usize>> {
        dispatch::<_, false>(Kernel, inputs, out)
    }
}

/// Binary cross entropy with logits, reference for `shaders/bce_with_logits.wgsl`.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, weight `w`, `pos_weight` `q`:
    ///
    /// ```text
    /// ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
    /// ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
    /// ```
    ///
    /// (the gradient evaluated as `w [(1 − t) − (1 + (q − 1) t) σ(−x)]` for `x ≥ 0`: the same value,
    /// with no cancellation of `σ(x) − 1`).
    ///
    /// `ln(1 + e^(−|x|)) + max(−x, 0)` is `softplus(−x) = −ln σ(x)`, written so that `exp` only
    /// ever sees a non-positive argument (PyTorch's form): no overflow for any finite logit. The
    /// loss is evaluated as the same value without cancellation, both terms `≥ 0` for `t ∈ [0, 1]`,
    /// `q ≥ 0` (even f64 loses every digit of `−80 + (80 + e^-80)`):
    ///
    /// ```text
    /// ℓ = w [(1 + (q − 1) t) ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −q t x)]
    /// ```
    ///
    /// A factor that is exactly 0 (`w`, `1 − t`, `q t`) makes its term 0 even against an infinite
    /// logit, so `x = ±∞` gives the loss's limit (0, or +∞ where a target weighs on it) where the
    /// formula as written, and PyTorch, give `∞ − ∞ = NaN`.
    pub fn loss_and_grad(x: f64, t: f64, w: f64, q: f64) -> (f64, f64) {
        let lw = 1.0 + (q - 1.0) * t;
        // a · v, 0 where the weight a is 0 even against an infinite logit (never 0 · ∞ = NaN).
        let weighted = |a: f64, v: f64| if a == 0.0 { 0.0 } else { a * v };
        let linear = if x >= 0.0 {
            weighted(1.0 - t, x)
        } else {
            weighted(-q * t, x)
        };
        // lw σ(x) − q t, as (1 − t) − lw σ(−x) for x ≥ 0: σ(x) − 1 for a confident logit is
        // −σ(−x), not a difference that rounds to 0.
        let e = (-x.abs()).exp();
        let f = e / (1.0 + e); // σ(−|x|)
        let g = if x >= 0.0 {
            (1.0 - t) - lw * f
        } else {
            lw * f - q * t
        };
        (weighted(w, lw * e.ln_1p() + linear), w * g)
    }
}

/// Binary cross entropy with logits, the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    use crate::simd::math::logistic;
    use crate::simd::shift;

    /// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, weight `w`, `pos_weight` `q`:
    ///
    /// ```text
    /// ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
    /// ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
    /// ```
    ///
    /// One `exp`, of `−|x| ≤ 0`, and one reciprocal `r = 1/(1 + e)` serve both `softplus(−x)`
    /// and `σ(x)` (`r` for `x ≥ 0`, `e·r` below; `ln_1p_recip`): nothing overflows for any
    /// finite logit. The loss is evaluated as
    /// `w [lw ln(1 + e) + ((1 − t) x if x ≥ 0, else −q t x)]`, the same value without the
    /// cancellation of `(1 − t) x` against `lw · (−x)` for confident negative logits (see the
    /// reference).
    #[inline(always)]
    pub(crate) fn loss_and_grad(x: f32, t: f32, w: f32, q: f32) -> (f32, f32) {
        from_logistic(x, t, w, q, logistic(x))
    }

    /// [`loss_and_grad`] from `x`'s [`logistic`] parts `(e, ln(1 + e), 1/(1 + e))`, which the
    /// chunk form computes in loops of their own.
    #[inline(always)]
    pub(crate) fn from_logistic(
        x: f32,
        t: f32,
        w: f32,
        q: f32,
        (e, sp, r): (f32, f32, f32),
    ) -> (f32, f32) {
        let lw = 1.0 + (q - 1.0) * t;
        // (1 − t) x + lw · max(−x, 0), without the cancellation of its two terms for x < 0.
        let linear = if x >= 0.0 {
            shift(1.0 - t, x)
        } else {
            shift(-q * t, x)
        };
        // lw σ(x) − q t as (1 − t) − lw f for x ≥ 0 and lw f − q t below, f = e/(1 + e) = σ(−|x|):
        // no cancellation of σ(x) − 1 for confident logits.
        let f = e * r;
        let g = if x >= 0.0 {
            (1.0 - t) - lw * f
        } else {
            lw * f - q * t
        };
        (shift(w, lw * sp + linear), w * g)
    }
}
