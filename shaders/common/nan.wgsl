// Tests by bits, for the drivers (elementwise.wgsl, rows.wgsl, which import this file) and
// the loss files: NaN tests for the loss files that clamp where the driver cannot see it
// (categorical_cross_entropy.wgsl: a row's loss must come out NaN; the elementwise driver
// makes any element with a NaN input NaN itself), and the probability-domain test of bce.wgsl
// and categorical_cross_entropy.wgsl.
//
// Vulkan lets a driver assume floats are never NaN unless the shader asks for
// SignedZeroInfNanPreserve, which WGSL cannot: NVIDIA's driver then turns
// `select(l, -100.0, l < -100.0)` into a `max` that returns the other operand for a NaN, and a
// NaN prediction yields a finite loss (measured on an H100, 2026-11-22). The test below reads
// the bits, which no float assumption can fold away, so the crate's rule "NaN in the input
// propagates to the output" holds on every driver.

// Whether x is a NaN, by its bits: exponent all ones and a nonzero mantissa. (`x != x` may fold
// away under the same assumption.)
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// `clamped` where `x` is a number, `x` itself (a NaN) where it is not.
fn keep_nan(x: f32, clamped: f32) -> f32 {
    return select(clamped, x, is_nan(x));
}

// Whether the f32 of bits `b` is outside [0, 1]: a negative number other than −0 (a negative
// subnormal included, which an adapter that flushes subnormals would compare as −0), or a
// number above 1, +∞ included. NaN is not outside.
fn outside_unit_interval(b: u32) -> bool {
    return (b > 0x80000000u && b <= 0xff800000u) || (b > 0x3f800000u && b <= 0x7f800000u);
}

// a · v, and 0 where a is 0 even if v is infinite: a term of weight 0 contributes nothing, so
// an infinite logit gives the loss's limit (0, or +∞ where a target weighs on it), never
// 0 · ∞ = NaN (bce_with_logits.wgsl, focal.wgsl).
fn weighted(a: f32, v: f32) -> f32 {
    return select(a * v, 0.0, a == 0.0);
}
