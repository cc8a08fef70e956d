// NaN tests for the drivers (elementwise.wgsl, rows.wgsl, composed after this file) and the
// loss files that clamp where the driver cannot see it (categorical_cross_entropy.wgsl: a
// row's loss must come out NaN; the elementwise driver makes any element with a NaN input NaN
// itself).
//
// Vulkan lets a driver assume floats are never NaN unless the shader asks for
// SignedZeroInfNanPreserve, which WGSL cannot: NVIDIA's driver then turns
// `select(l, -100.0, l < -100.0)` into a `max` that returns the other operand for a NaN, and a
// NaN prediction yields a finite loss (measured on an H100, 2026-11-22). The test below reads
// the bits, which no float assumption can fold away, so LOSSES.md's "NaN in the input
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
