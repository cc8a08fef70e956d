// Binary cross entropy on probabilities p ∈ [0, 1], optional weight w (PyTorch's guards):
//   ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
//   ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
// A p outside [0, 1] is recorded in `domain_error` (the smallest such global index, kept as
// u32::MAX − index with atomicMax so that a buffer cleared to zero means "none");
// the host turns it into Error::OutOfDomain. NaN is not "outside": it propagates (the driver
// makes an element with a NaN input NaN, whatever a driver's `max` does with it).
// CPU reference: src/reference/bce.rs. Composed after common/nan.wgsl +
// common/elementwise.wgsl + common/weight.wgsl.

// [1] u32::MAX − (the smallest global index whose p is outside [0, 1]); 0 when there is none.
@group(0) @binding(8) var<storage, read_write> domain_error: array<atomic<u32>>;

// max(ln x, −100), with ln 0 = −inf written out rather than left to the compiler.
fn clamped_log(x: f32) -> f32 {
    return select(max(log(x), -100.0), -100.0, x <= 0.0);
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    if (p < 0.0 || p > 1.0) {
        atomicMax(&domain_error[0], 0xffffffffu - (params.index_base + i));
    }
    let w = weight_at(i);
    let loss = -w * (t * clamped_log(p) + (1.0 - t) * clamped_log(1.0 - p));
    let g = w * (p - t) / max(p * (1.0 - p), 1e-12);
    return vec2<f32>(loss, g);
}
