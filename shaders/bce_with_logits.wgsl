// Binary cross entropy with logits x, optional weight w and pos_weight q (default 1):
//   ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
//   ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t]
// ln(1 + e^(−|x|)) + max(−x, 0) is softplus(−x) written so that exp never overflows.
// CPU reference: src/reference/bce_with_logits.rs.
// Composed after common/elementwise.wgsl + common/weight.wgsl.

// [q_len] pos_weight, broadcast along the trailing dimensions; a 1-element dummy when q_len = 0.
@group(0) @binding(8) var<storage, read> pos_weight: array<f32>;

fn pos_weight_at(i: u32) -> f32 {
    if (params.q_len == 0u) {
        return 1.0;
    }
    return pos_weight[broadcast_at(params.q_len, params.q_phase, i)];
}

// ln(1 + y) for y ≥ 0, accurate for small y (WGSL has no log1p).
fn log1p(y: f32) -> f32 {
    let u = 1.0 + y;
    if (u == 1.0) {
        return y;
    }
    return log(u) * (y / (u - 1.0));
}

fn loss_and_grad(i: u32, x: f32, t: f32) -> vec2<f32> {
    let w = weight_at(i);
    let q = pos_weight_at(i);
    let lw = 1.0 + (q - 1.0) * t;
    let e = exp(-abs(x));
    let softplus_neg = log1p(e) + max(-x, 0.0);
    let sigmoid = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    let loss = w * ((1.0 - t) * x + lw * softplus_neg);
    let g = w * (lw * sigmoid - q * t);
    return vec2<f32>(loss, g);
}
