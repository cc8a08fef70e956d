//! Mean squared error, the fast CPU counterpart of `src/reference/mse.rs`.

/// `(ℓ, ∂ℓ/∂p)` for one element: `ℓ = (p − t)²`, `∂ℓ/∂p = 2 (p − t)`.
#[inline(always)]
pub(super) fn loss_and_grad(p: f32, t: f32) -> (f32, f32) {
    let d = p - t;
    (d * d, 2.0 * d)
}
