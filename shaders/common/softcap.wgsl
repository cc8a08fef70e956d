// Logit soft-capping (Gemma 2) for softmax_cross_entropy.wgsl: a logit x becomes
// y = c·tanh(x/c), and the gradient goes through the cap, ∂y/∂x = 1 − tanh²(x/c).
// CPU counterpart: src/simd/math.rs `softcap`; f64 reference:
// src/losses/softmax_cross_entropy.rs `reference::capped_loss_and_grad`.
//
// tanh is Cephes' `tanhf` (about 2 ulp) with common/log.wgsl's `exp_accurate` (as the CPU's),
// not WGSL's `tanh`, whose accuracy the spec inherits from sinh/cosh (which overflow for
// |z| > 89):
//     |z| < 0.625   tanh z = z + z·s·P(s), s = z²   (no cancellation near 0)
//     otherwise     tanh|z| = 1 − 2e/(1 + e), e = e^(−2|z|) ≤ 0.29, |z| clamped to 44 first
// and 1 − tanh² = (1 − t)(1 + t) below 0.625, 4e/(1 + e)² above (relative to e, where 1 − t
// would carry t's rounding). ±∞ gives
// y = ±c and a derivative of 0; a NaN stays NaN (by its bits: common/nan.wgsl).

#import common/log.wgsl
#import common/nan.wgsl

// Both forms are computed and selected: an `if` on a < 0.625 cost llvmpipe more (1.46× the
// plain kernel's step against 1.37×, docs/TUNING.md).
// (y, ∂y/∂x) for the cap c and its inverse.
fn softcap(x: f32, c: f32, inv_c: f32) -> vec2<f32> {
    let z = x * inv_c;
    let a = abs(z);
    let s = z * z;
    let p = ((((-5.70498872745e-3 * s + 2.06390887954e-2) * s - 5.37397155531e-2) * s
        + 1.33314422036e-1) * s - 3.33332819422e-1) * s;
    let e = exp_accurate(-2.0 * min(a, 44.0));
    let q = 1.0 / (1.0 + e);
    let small = a + a * p;
    let t = select(1.0 - 2.0 * e * q, small, a < 0.625);
    let d = select(4.0 * e * (q * q), (1.0 - small) * (1.0 + small), a < 0.625);
    let y = select(c * t, -(c * t), z < 0.0);
    return select(vec2<f32>(y, d), vec2<f32>(x, x), is_nan(x));
}
