//! Mean absolute error (L1), the fast CPU counterpart of `src/reference/mae.rs`.

/// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = |p − t|`, `∂ℓ/∂p = sign(p − t)`, 0 at 0 (PyTorch's
/// choice), as selects.
#[inline(always)]
pub(super) fn loss_and_grad(p: f32, t: f32) -> (f32, f32) {
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
