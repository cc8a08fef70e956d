//! Cosine proximity (negative cosine similarity), reference for
//! `shaders/cosine_proximity.wgsl`.

/// `(ℓ_r, ∂ℓ_r/∂p_r)` for one row: prediction `p` and target `t` (`C` values each), norm
/// floor `eps > 0`:
///
/// ```text
/// cos = p·t / (max(‖p‖, ε) · max(‖t‖, ε)),   ℓ_r = −cos
/// ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos · p_j / ‖p‖²   if ‖p‖ > ε
///           = −t_j / (ε · max(‖t‖, ε))                               otherwise
/// ```
///
/// (Keras `CosineSimilarity`.) A zero row (`p = 0` or `t = 0`) gives loss 0, never NaN. If
/// any `p_j` or `t_j` is NaN, the loss and every gradient entry are NaN. `p` and `t` have the
/// same length.
pub fn loss_and_grad(p: &[f64], t: &[f64], eps: f64) -> (f64, Vec<f64>) {
    debug_assert_eq!(p.len(), t.len());
    if super::has_nan(p) || super::has_nan(t) {
        return super::nan_row(p.len());
    }
    let (mut dot, mut pp, mut tt) = (0.0f64, 0.0f64, 0.0f64);
    for (&pj, &tj) in p.iter().zip(t) {
        dot += pj * tj;
        pp += pj * pj;
        tt += tj * tj;
    }
    let (np, nt) = (pp.sqrt(), tt.sqrt());
    let den = np.max(eps) * nt.max(eps);
    let cos = dot / den;
    let grad = p
        .iter()
        .zip(t)
        .map(|(&pj, &tj)| {
            if np > eps {
                -tj / den + cos * pj / pp
            } else {
                -tj / (eps * nt.max(eps))
            }
        })
        .collect();
    (-cos, grad)
}
