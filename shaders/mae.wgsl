// Mean absolute error (L1).  ℓ = |p − t|,  ∂ℓ/∂p = sign(p − t), 0 at 0.
// CPU reference: src/reference/mae.rs. Composed after common/elementwise.wgsl.

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let d = p - t;
    return vec2<f32>(abs(d), sign(d));
}
