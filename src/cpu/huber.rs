//! Huber loss, the fast CPU counterpart of `src/reference/huber.rs`.

/// `(ℓ, ∂ℓ/∂p)` for one element, `d = p − t`, threshold `delta > 0`, both branches computed
/// and one selected:
///
/// ```text
/// ℓ = ½ d²            if |d| ≤ δ,  else δ (|d| − ½ δ)
/// ∂ℓ/∂p = d           if |d| ≤ δ,  else δ sign(d)
/// ```
#[inline(always)]
pub(super) fn loss_and_grad(p: f32, t: f32, delta: f32) -> (f32, f32) {
    let d = p - t;
    let a = d.abs();
    if a <= delta {
        (0.5 * d * d, d)
    } else {
        // d NaN (p − t = ∞ − ∞) lands here; copysign would make it ±δ: keep the NaN.
        (
            delta * (a - 0.5 * delta),
            if d.is_nan() { d } else { delta.copysign(d) },
        )
    }
}
