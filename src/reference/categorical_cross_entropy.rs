//! Categorical cross entropy on probabilities, reference for
//! `shaders/categorical_cross_entropy.wgsl`.

/// `(ℓ_r, ∂ℓ_r/∂p_r)` for one row: probabilities `p` (`C` values in [0, 1]) against targets
/// `t` (`C` values, usually a probability distribution):
///
/// ```text
/// ℓ_r = −Σ_j t_j · max(ln p_j, −100)
/// ∂ℓ_r/∂p_j = −t_j / max(p_j, 1e-12)
/// ```
///
/// The clamps are PyTorch's (as in BCE): `p_j = 0` gives a finite loss and gradient. Rows are
/// not renormalised (Keras divides `p` by its row sum first; this does not). If any `p_j` or
/// `t_j` is NaN, the loss and every gradient entry are NaN. `p` and `t` have the same length.
pub fn loss_and_grad(p: &[f64], t: &[f64]) -> (f64, Vec<f64>) {
    debug_assert_eq!(p.len(), t.len());
    if super::has_nan(p) || super::has_nan(t) {
        return super::nan_row(p.len());
    }
    let mut sum = 0.0f64;
    for (&pj, &tj) in p.iter().zip(t) {
        sum += tj * pj.ln().max(-100.0);
    }
    let grad = p
        .iter()
        .zip(t)
        .map(|(&pj, &tj)| -tj / pj.max(1e-12))
        .collect();
    (-sum, grad)
}
