//! Binary cross entropy with logits, reference for `shaders/bce_with_logits.wgsl`.

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
