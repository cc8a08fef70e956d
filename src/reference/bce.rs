//! Binary cross entropy on probabilities, reference for `shaders/bce.wgsl`.

/// `(ℓ, ∂ℓ/∂p)` for one element, probability `p ∈ [0, 1]`, target `t`, weight `w`:
///
/// ```text
/// ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
/// ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
/// ```
///
/// The clamps are PyTorch's: they keep `p = 0` and `p = 1` finite. (The seed notes clip `p`
/// at 1e-15 instead, which does nothing at the top in f32, where `1 − 1e-15 == 1`.)
pub fn loss_and_grad(p: f64, t: f64, w: f64) -> (f64, f64) {
    let loss = -w * (t * p.ln().max(-100.0) + (1.0 - t) * (1.0 - p).ln().max(-100.0));
    let grad = w * (p - t) / (p * (1.0 - p)).max(1e-12);
    (loss, grad)
}
