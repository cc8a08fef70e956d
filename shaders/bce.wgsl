// Binary cross entropy on probabilities p ∈ [0, 1], optional weight w (PyTorch's guards):
//   ℓ = −w [t · max(ln p, −100) + (1 − t) · max(ln(1 − p), −100)]
//   ∂ℓ/∂p = w (p − t) / max(p (1 − p), 1e-12)
// ln p and ln(1 − p) are common/log.wgsl's, accurate to about 1 ulp relative for every p,
// including p within 2^-24 of 1 and subnormal p (WGSL's `log` is not, and some adapters flush
// subnormals before it sees them).
// A p outside [0, 1] is recorded in `domain_error` (the smallest such global index, kept as
// u32::MAX − index with atomicMax so that a buffer cleared to zero means "none");
// the host turns it into Error::OutOfDomain. The test is on p's bits, so a negative subnormal
// is outside even where the adapter flushes it to −0. NaN is not "outside": it propagates (the
// driver makes an element with a NaN input NaN, whatever a driver's `max` does with it).
// CPU reference: src/losses/bce.rs (`reference`). The hooks of common/elementwise.wgsl.

#import common/elementwise.wgsl

// No options.
struct LossParams {
    _unused: f32,
}
#import common/weight.wgsl
#import common/log.wgsl
#import common/nan.wgsl

// [1] u32::MAX − (the smallest global index whose p is outside [0, 1]); 0 when there is none.
@group(0) @binding(8) var<storage, read_write> domain_error: array<atomic<u32>>;

// max(l, −100), with l = −∞ (ln 0) written out rather than left to the compiler.
fn clamp_log(l: f32) -> f32 {
    return select(l, -100.0, l < -100.0);
}

fn loss_and_grad(i: u32, p: f32, t: f32) -> vec2<f32> {
    let b = bitcast<u32>(p);
    if (outside_unit_interval(b)) {
        atomicMax(&domain_error[0], 0xffffffffu - (params.index_base + i));
    }
    let w = weight_at(i);
    let loss = -w * (t * clamp_log(ln_bits(b)) + (1.0 - t) * clamp_log(ln_one_minus(p)));
    let g = w * (p - t) / max(p * (1.0 - p), 1e-12);
    return vec2<f32>(loss, g);
}
