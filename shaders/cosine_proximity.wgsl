// Cosine proximity (Keras `CosineSimilarity`), composed after common/rows.wgsl.
// CPU reference: src/reference/cosine_proximity.rs.
//   cos_r = p·t / (max(‖p‖, ε) max(‖t‖, ε)),  ℓ_r = −cos_r
//   ∂ℓ_r/∂p_j = −t_j / (max(‖p‖, ε) max(‖t‖, ε)) + cos_r p_j / ‖p‖²   if ‖p‖ > ε
//             = −t_j / (ε max(‖t‖, ε))                                 otherwise
// Statistics s = (p·t, ‖p‖², ‖t‖², 0). A zero row gives ℓ = 0, never NaN.

fn row_identity() -> vec4<f32> {
    return vec4<f32>(0.0);
}

fn row_push(s: vec4<f32>, row: RowCtx, j: u32, p: f32, t: f32) -> vec4<f32> {
    return s + vec4<f32>(p * t, p * p, t * t, 0.0);
}

fn row_combine(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return a + b;
}

fn row_finish(s: vec4<f32>, row: RowCtx) -> RowOut {
    let eps = params.eps;
    let np = sqrt(s.y);
    let den = max(np, eps) * max(sqrt(s.z), eps);
    let cos = s.x / den;
    var b = 0.0;
    if (np > eps) {
        b = cos / s.y;
    }
    // k = (1 / den, cos / ‖p‖² or 0, unused)
    return RowOut(-cos, vec3<f32>(1.0 / den, b, 0.0));
}

fn row_grad(r: RowOut, row: RowCtx, j: u32, p: f32, t: f32) -> f32 {
    return -t * r.k.x + r.k.y * p;
}
