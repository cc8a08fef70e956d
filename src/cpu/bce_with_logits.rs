//! Binary cross entropy with logits, the fast CPU counterpart of
//! `src/reference/bce_with_logits.rs`.

use super::math::{exp, ln_1p};

/// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, weight `w`, `pos_weight` `q`:
///
/// ```text
/// ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
/// ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
/// ```
///
/// One `exp`, of `−|x| ≤ 0`, serves both `softplus(−x)` and `σ(x)` (`1/(1 + e)` for `x ≥ 0`,
/// `e/(1 + e)` below): nothing overflows for any finite logit.
#[inline(always)]
pub(super) fn loss_and_grad(x: f32, t: f32, w: f32, q: f32) -> (f32, f32) {
    let lw = 1.0 + (q - 1.0) * t;
    let e = exp(-x.abs());
    let softplus_neg = ln_1p(e) + if x < 0.0 { -x } else { 0.0 };
    let sigmoid = if x >= 0.0 { 1.0 } else { e } / (1.0 + e);
    (
        w * ((1.0 - t) * x + lw * softplus_neg),
        w * (lw * sigmoid - q * t),
    )
}
