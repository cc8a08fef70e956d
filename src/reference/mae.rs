//! Mean absolute error (L1), reference for `shaders/mae.wgsl`.

/// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = |p − t|`, `∂ℓ/∂p = sign(p − t)`, 0 at 0 (PyTorch's choice).
pub fn loss_and_grad(p: f64, t: f64) -> (f64, f64) {
    let d = p - t;
    let sign = if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else if d.is_nan() {
        d // p − t is NaN (∞ − ∞): NaN propagates to the gradient
    } else {
        0.0
    };
    (d.abs(), sign)
}
