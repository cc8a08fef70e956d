// Binary cross entropy with logits x, optional weight w and pos_weight q (default 1):
//   ℓ = w [(1 − t) x + (1 + (q − 1) t) (ln(1 + e^(−|x|)) + max(−x, 0))]
//   ∂ℓ/∂x = w [(1 + (q − 1) t) σ(x) − q t], evaluated as w [(1 − t) − lw σ(−x)] for x ≥ 0 (the
//   same value: σ(20) − 1 is −2.1e-9, not 0)
// ln(1 + e^(−|x|)) + max(−x, 0) is softplus(−x) written so that exp never overflows. It is
// evaluated as the same value without cancellation (both terms ≥ 0 for t ∈ [0, 1], q ≥ 0):
//   ℓ = w [(1 + (q − 1) t) ln(1 + e^(−|x|)) + ((1 − t) x if x ≥ 0, else −q t x)]
// (for x < 0, (1 − t) x + (1 + (q − 1) t)(−x) = −q t x): the formula as written gives
// −19.4 + (19.4 + 3.7e-9) = 0 for x = −19.4, t = 0, where ℓ = 3.7e-9. For a confident logit
// ℓ is about e^(−|x|), so e^(−|x|) and ln(1 + ·) are common/log.wgsl's, accurate to about
// 1 ulp (WGSL's `exp` is 3 + 2|x| ulp, its `log` only 2^-21 absolute near 1).
// CPU reference: src/losses/bce_with_logits.rs (`reference`).
// The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

// No options.
struct LossParams {
    _unused: f32,
}
#import common/weight.wgsl
#import common/log.wgsl
#import common/nan.wgsl

// [q_len] pos_weight, broadcast along the trailing dimensions (POS_WEIGHT); else a
// 1-element dummy.
@group(0) @binding(8) var<storage, read> pos_weight: array<f32>;

fn pos_weight_at(i: u32) -> f32 {
    if (!POS_WEIGHT) {
        return 1.0;
    }
    return pos_weight[broadcast_at(params.q_len, params.q_phase, i)];
}

// `weighted` (a · v, 0 where a is 0) is common/nan.wgsl's.

fn loss_and_grad(i: u32, x: f32, t: f32) -> vec2<f32> {
    let w = weight_at(i);
    let q = pos_weight_at(i);
    let lw = 1.0 + (q - 1.0) * t;
    let e = exp_accurate(-abs(x));
    let linear = select(weighted(-q * t, x), weighted(1.0 - t, x), x >= 0.0);
    // lw σ(x) − q t without σ(x) − 1's cancellation: with f = e/(1 + e) = σ(−|x|), it is
    // (1 − t) − lw f for x ≥ 0 (σ = 1 − f) and lw f − q t below.
    let f = e / (1.0 + e);
    let loss = weighted(w, lw * ln_1p(e) + linear);
    let g = w * select(lw * f - q * t, (1.0 - t) - lw * f, x >= 0.0);
    return vec2<f32>(loss, g);
}
