// Mean absolute error (L1).  ℓ = |p − t|,  ∂ℓ/∂p = sign(p − t), 0 at 0.
// CPU reference: src/losses/mae.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

// No options.
struct LossParams {
    _unused: f32,
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let d = p - t;
    // sign(NaN) may be 0: a NaN difference (p − t = ∞ − ∞) keeps its NaN.
    return vec2<f32>(abs(d), keep_nan(d, sign(d)));
}
