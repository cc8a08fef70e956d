// Smooth L1 loss (PyTorch `smooth_l1_loss`) with threshold β = params.loss.beta ≥ 0, d = p − t:
//   ℓ = ½ d² / β          if |d| < β,   else |d| − ½ β
//   ∂ℓ/∂p = d / β         if |d| < β,   else sign(d)
// β = 0 is the L1 loss (|d| < 0 never holds; sign(0) = 0). CPU reference:
// src/losses/smooth_l1.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

struct LossParams {
    beta: f32,
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let d = p - t;
    let a = abs(d);
    let beta = params.loss.beta;
    if (a < beta) {
        return vec2<f32>(0.5 * d * d / beta, d / beta);
    }
    // d NaN (p − t = ∞ − ∞) lands here: the gradient keeps it (sign(NaN) may be 0).
    return vec2<f32>(a - 0.5 * beta, keep_nan(d, sign(d)));
}
