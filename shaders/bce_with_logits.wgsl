// Binary cross entropy with logits x, optional weight w and pos_weight q (default 1):
//   ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
//   ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
// ln(1 + e^(−|x|)) + max(−x, 0) is softplus(−x) written so that exp never overflows. It is
// evaluated as the same value without cancellation (both terms ≥ 0 for t ∈ [0, 1], q ≥ 0):
//   ℓ = w [(1 + (q − 1) t) ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −q t x)]
// (for x < 0, (1 − t) x + (1 + (q − 1) t)(−x) = −q t x): the formula as written gives
// −19.4 + (19.4 + 3.7e-9) = 0 for x = −19.4, t = 0, where ℓ = 3.7e-9. For a confident logit
// ℓ is about e^(−|x|), so e^(−|x|) and ln(1 + ·) are common/log.wgsl's, accurate to about
// 1 ulp (WGSL's `exp` is 3 + 2|x| ulp, its `log` only 2^-21 absolute near 1).
// CPU reference: src/reference/bce_with_logits.rs.
// Composed after common/nan.wgsl + common/log.wgsl + common/elementwise.wgsl +
// common/weight.wgsl.

// [q_len] pos_weight, broadcast along the trailing dimensions; a 1-element dummy when q_len = 0.
@group(0) @binding(8) var<storage, read> pos_weight: array<f32>;

fn pos_weight_at(i: u32) -> f32 {
    if (params.q_len == 0u) {
        return 1.0;
    }
    return pos_weight[broadcast_at(params.q_len, params.q_phase, i)];
}

fn loss_and_grad(i: u32, x: f32, t: f32) -> vec2<f32> {
    let w = weight_at(i);
    let q = pos_weight_at(i);
    let lw = 1.0 + (q - 1.0) * t;
    let e = exp_accurate(-abs(x));
    let linear = select(-q * t * x, (1.0 - t) * x, x >= 0.0);
    let sigmoid = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    let loss = w * (lw * ln_1p(e) + linear);
    let g = w * (lw * sigmoid - q * t);
    return vec2<f32>(loss, g);
}
