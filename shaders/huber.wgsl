// Huber loss with threshold δ = params.loss.delta > 0, d = p − t:
//   ℓ = ½ d²              if |d| ≤ δ,   else δ (|d| − ½ δ)
//   ∂ℓ/∂p = d             if |d| ≤ δ,   else δ sign(d)
// CPU reference: src/losses/huber.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

struct LossParams {
    delta: f32,
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let d = p - t;
    let a = abs(d);
    let delta = params.loss.delta;
    if (a <= delta) {
        return vec2<f32>(0.5 * d * d, d);
    }
    // d NaN (p − t = ∞ − ∞) lands here: the gradient keeps it (sign(NaN) may be 0).
    return vec2<f32>(delta * (a - 0.5 * delta), keep_nan(d, delta * sign(d)));
}
