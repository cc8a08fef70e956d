//! Huber loss, reference for `shaders/huber.wgsl`.

/// `(ℓ, ∂ℓ/∂p)` for one element, `d = p − t`, threshold `delta > 0`:
///
/// ```text
/// ℓ = ½ d²            if |d| ≤ δ,  else δ (|d| − ½ δ)
/// ∂ℓ/∂p = d           if |d| ≤ δ,  else δ sign(d)
/// ```
pub fn loss_and_grad(p: f64, t: f64, delta: f64) -> (f64, f64) {
    let d = p - t;
    if d.abs() <= delta {
        (0.5 * d * d, d)
    } else {
        // d NaN (p − t = ∞ − ∞) lands here: signum(NaN) is NaN, so the gradient is NaN.
        (delta * (d.abs() - 0.5 * delta), delta * d.signum())
    }
}
