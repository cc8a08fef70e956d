//! Binary cross entropy on probabilities, the fast CPU counterpart of `src/reference/bce.rs`.

use super::math::{ln, ln_1m};

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
pub(super) fn loss_and_grad(p: f32, t: f32, w: f32) -> (f32, f32) {
    let clamp = |v: f32| if v < -100.0 { -100.0 } else { v };
    let loss = -w * (t * clamp(ln(p)) + (1.0 - t) * clamp(ln_1m(p)));
    let den = p * (1.0 - p);
    let grad = w * (p - t) / if den > 1e-12 { den } else { 1e-12 };
    (loss, grad)
}
