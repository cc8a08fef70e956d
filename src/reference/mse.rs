//! Mean squared error, reference for `shaders/mse.wgsl`.

/// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = (p − t)²`, `∂ℓ/∂p = 2 (p − t)`.
pub fn loss_and_grad(p: f64, t: f64) -> (f64, f64) {
    let d = p - t;
    (d * d, 2.0 * d)
}
