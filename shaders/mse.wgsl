// Mean squared error.  ℓ = (p − t)²,  ∂ℓ/∂p = 2 (p − t).
// CPU reference: src/losses/mse.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

// No options.
struct LossParams {
    _unused: f32,
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let d = p - t;
    return vec2<f32>(d * d, 2.0 * d);
}
