//! Binary cross entropy with logits, reference for `shaders/bce_with_logits.wgsl`.

/// `(ℓ, ∂ℓ/∂x)` for one element, logit `x`, target `t`, weight `w`, `pos_weight` `q`:
///
/// ```text
/// ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
/// ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
/// ```
///
/// `ln(1 + e^(−|x|)) + max(−x, 0)` is `softplus(−x) = −ln σ(x)`, written so that `exp` only
/// ever sees a non-positive argument (PyTorch's form): no overflow for any finite logit. The
/// loss is evaluated as the same value without cancellation, both terms `≥ 0` for `t ∈ [0, 1]`,
/// `q ≥ 0` (even f64 loses every digit of `−80 + (80 + e^-80)`):
///
/// ```text
/// ℓ = w [(1 + (q − 1) t) ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −q t x)]
/// ```
pub fn loss_and_grad(x: f64, t: f64, w: f64, q: f64) -> (f64, f64) {
    let lw = 1.0 + (q - 1.0) * t;
    let linear = if x >= 0.0 { (1.0 - t) * x } else { -q * t * x };
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    };
    (
        w * (lw * (-x.abs()).exp().ln_1p() + linear),
        w * (lw * sigmoid - q * t),
    )
}
