//! Binary cross entropy on probabilities, reference for `shaders/bce.wgsl`.

/// `(ℓ, ∂ℓ/∂p)` for one element, probability `p ∈ [0, 1]`, target `t`, weight `w`:
///
/// ```text
/// ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
/// ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
/// ```
///
/// `ln(1 − p)` is evaluated as `ln_1p(−p)`, exact for every f32 `p` (in f64, `1 − 1e-40`
/// rounds to 1). The clamps are PyTorch's: they keep `p = 0` and `p = 1` finite. (The seed notes clip `p`
/// at 1e-15 instead, which does nothing at the top in f32, where `1 − 1e-15 == 1`.)
pub fn loss_and_grad(p: f64, t: f64, w: f64) -> (f64, f64) {
    let loss = -w * (t * p.ln().max(-100.0) + (1.0 - t) * (-p).ln_1p().max(-100.0));
    let grad = w * (p - t) / (p * (1.0 - p)).max(1e-12);
    (loss, grad)
}
