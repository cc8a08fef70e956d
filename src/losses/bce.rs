//! Binary cross entropy on probabilities, PyTorch `binary_cross_entropy`, optional weight `w`:
//! `ℓ = −w[t·max(ln p, −100) + (1−t)·max(ln(1−p), −100)]`,
//! `∂ℓ/∂p = w(p − t) / max(p(1−p), 1e-12)`. A prediction outside [0, 1] is an error.
//!
//! Shader `shaders/bce.wgsl`; tests `tests/gpu/bce.rs`.

use super::{Loss, Options, Elementwise, Family, LossDef, Synthetic};
use crate::simd::elementwise::{Element, Inputs, Outputs, dispatch};
use crate::bindings::{Access, Binding, ELEMENTWISE_BINDINGS, Slot, binding, concat};

/// The descriptor.
pub(crate) struct Def;

/// The elementwise driver's, the weight and the domain-error atomic.
const BINDINGS: [Binding; 9] = concat(
    ELEMENTWISE_BINDINGS,
    [
        binding(7, Slot::Weight, Access::Read),
        binding(8, Slot::DomainError, Access::ReadWrite),
    ],
);

impl LossDef for Def {
    fn is(&self, loss: &Loss) -> bool {
        matches!(loss, Loss::Bce)
    }
    fn name(&self) -> &'static str {
        "bce"
    }
    fn about(&self) -> &'static str {
        "Binary cross entropy on probabilities (PyTorch binary_cross_entropy)"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["binary-cross-entropy"]
    }
    fn build(&self, _: &Options<'_>) -> Loss {
        Loss::Bce
    }
    fn takes_weight(&self) -> bool {
        true
    }
    fn checks_domain(&self) -> bool {
        true
    }
    fn shader(&self) -> (&'static str, &'static str) {
        (
            "shaders/bce.wgsl",
            include_str!("../../shaders/bce.wgsl"),
        )
    }
    fn bindings(&self) -> &'static [Binding] {
        &BINDINGS
    }
    fn synthetic(&self) -> Synthetic {
        Synthetic {
            pred: (0.0005, 0.9995),
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
    fn eval(&self, p: f32, t: f32, w: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad(p, t, w)
    }
    const ORDINARY: bool = true;
    #[inline(always)]
    fn ordinary(&self, p: f32, t: f32) -> bool {
        cpu::ordinary(p, t)
    }
    #[inline(always)]
    fn eval_ordinary(&self, p: f32, t: f32, w: f32, _: f32) -> (f32, f32) {
        cpu::loss_and_grad_ordinary(p, t, w)
    }
}

impl Elementwise for Def {
    fn reference(&self, _: &Loss, p: f64, t: f64, w: f64, _: f64) -> (f64, f64) {
        reference::loss_and_grad(p, t, w)
    }
    fn cpu(&self, _: &Loss, inputs: &Inputs<'_>, out: Outputs<'_>) -> Vec<Result<f64, usize>> {
        // The domain check in the same pass.
        dispatch::<_, true>(Kernel, inputs, out)
    }
}

/// Binary cross entropy on probabilities, reference for `shaders/bce.wgsl`.
pub mod reference {
    /// `(ℓ, ∂ℓ/∂p)` for one element, probability `p ∈ [0, 1]`, target `t`, weight `w`:
    ///
    /// ```text
    /// ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
    /// ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
    /// ```
    ///
    /// `ln(1 − p)` is evaluated as `ln_1p(−p)`, exact for every f32 `p` (in f64, `1 − 1e-40`
    /// rounds to 1). The clamps are PyTorch's: they keep `p = 0` and `p = 1` finite. (Clipping
    /// `p` to [1e-15, 1 − 1e-15] instead, as some libraries do, does nothing at the top in
    /// f32, where `1 − 1e-15 == 1`.)
    pub fn loss_and_grad(p: f64, t: f64, w: f64) -> (f64, f64) {
        let loss = -w * (t * p.ln().max(-100.0) + (1.0 - t) * (-p).ln_1p().max(-100.0));
        let grad = w * (p - t) / (p * (1.0 - p)).max(1e-12);
        (loss, grad)
    }
}

/// Binary cross entropy on probabilities, the fast CPU counterpart of [`reference`].
pub(crate) mod cpu {
    use crate::simd::math::{ln, ln_1m, ln_1m_normal, ln_normal};

    /// `(ℓ, ∂ℓ/∂p)` for one element, probability `p ∈ [0, 1]`, target `t`, weight `w`:
    ///
    /// ```text
    /// ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
    /// ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
    /// ```
    ///
    /// PyTorch's clamps keep `p = 0` and `p = 1` finite. `ln(1 − p)` is [`ln_1m`], accurate for
    /// small `p` where `1 − p` rounds (PyTorch's `log1p(−p)`). (The driver makes the result NaN
    /// where `p` or `t` is NaN, which the clamps would otherwise swallow.)
    #[inline(always)]
    pub(crate) fn loss_and_grad(p: f32, t: f32, w: f32) -> (f32, f32) {
        let clamp = |v: f32| if v < -100.0 { -100.0 } else { v };
        from_logs(p, t, w, clamp(ln(p)), clamp(ln_1m(p)))
    }

    /// `(ℓ, ∂ℓ/∂p)` from the two (clamped) logarithms `lp = ln p` and `lq = ln(1 − p)`.
    #[inline(always)]
    fn from_logs(p: f32, t: f32, w: f32, lp: f32, lq: f32) -> (f32, f32) {
        let loss = -w * (t * lp + (1.0 - t) * lq);
        let den = p * (1.0 - p);
        let grad = w * (p - t) / if den > 1e-12 { den } else { 1e-12 };
        (loss, grad)
    }

    /// Whether `(p, t)` is ordinary: `f32::MIN_POSITIVE ≤ p < 1` and `t` not NaN. There `p`
    /// and `1 − p ≥ 2^-24` are normal, so both logarithms take [`ln_normal`]'s form, and
    /// both are above −88, so the clamps at −100 do nothing.
    #[inline(always)]
    pub(crate) fn ordinary(p: f32, t: f32) -> bool {
        (f32::MIN_POSITIVE..1.0).contains(&p) & !t.is_nan()
    }

    /// [`loss_and_grad`] for an [`ordinary`] `(p, t)`: the same bits, without the special
    /// values' selects and the clamps.
    #[inline(always)]
    pub(crate) fn loss_and_grad_ordinary(p: f32, t: f32, w: f32) -> (f32, f32) {
        from_logs(p, t, w, ln_normal(p), ln_1m_normal(p))
    }
}
