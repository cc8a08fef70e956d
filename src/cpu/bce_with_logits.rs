//! Binary cross entropy with logits, the fast CPU counterpart of
//! `src/reference/bce_with_logits.rs`.

use super::math::{exp, ln_1p};
use super::shift;

/// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, weight `w`, `pos_weight` `q`:
///
/// ```text
/// ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
/// ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
/// ```
///
/// One `exp`, of `−|x| ≤ 0`, serves both `softplus(−x)` and `σ(x)` (`1/(1 + e)` for `x ≥ 0`,
/// `e/(1 + e)` below): nothing overflows for any finite logit. The loss is evaluated as
/// `w [lw ln(1 + e) + ((1 − t) x if x ≥ 0, else −q t x)]`, the same value without the
/// cancellation of `(1 − t) x` against `lw · (−x)` for confident negative logits (see the
/// reference).
#[inline(always)]
pub(super) fn loss_and_grad(x: f32, t: f32, w: f32, q: f32) -> (f32, f32) {
    let lw = 1.0 + (q - 1.0) * t;
    let e = exp(-x.abs());
    // (1 − t) x + lw · max(−x, 0), without the cancellation of its two terms for x < 0.
    let linear = if x >= 0.0 {
        shift(1.0 - t, x)
    } else {
        shift(-q * t, x)
    };
    // lw σ(x) − q t as (1 − t) − lw f for x ≥ 0 and lw f − q t below, f = e/(1 + e) = σ(−|x|):
    // no cancellation of σ(x) − 1 for confident logits.
    let f = e / (1.0 + e);
    let g = if x >= 0.0 {
        (1.0 - t) - lw * f
    } else {
        lw * f - q * t
    };
    (shift(w, lw * ln_1p(e) + linear), w * g)
}
