// Logarithms accurate to about 1 ulp *relative* for every f32 argument, for the losses that
// take the log of a probability, of one minus it, or of 1 + e^(−|x|) (bce.wgsl,
// categorical_cross_entropy.wgsl, bce_with_logits.wgsl, softmax_cross_entropy.wgsl).
//
// WGSL's `log` is only specified to an absolute error of 2^-21 near 1, so ln p for p near 1,
// ln(1 − p) for p near 0 and ln(1 + y) for small y lose every significant bit (BCE of
// p = 1 − 2e-6 against t = 1 came out 1–4% off on llvmpipe). And adapters that flush
// subnormals (llvmpipe does) turn ln(1e-40) into ln(0) or ln(2^-126) before `log` sees it.
// So `ln_bits` works from the argument's bits, which a flushing adapter leaves alone: the
// exponent and mantissa are taken apart with integer operations (subnormals normalised with
// countLeadingZeros), and ln(1 + f) of the reduced mantissa is Cephes' `logf` polynomial, the
// one the fast CPU path uses (src/cpu/math.rs `ln`).
//
//     x = 2^e · m, m ∈ [√½, √2)     ln x = e ln 2 + f − f²/2 + f³·P(f),  f = m − 1 (exact)
//
// Special values as IEEE 754: ln(±0) = −∞, ln(+∞) = +∞, a negative number or NaN gives NaN.
// `exp_accurate` is the matching `exp` (Cephes' `expf`, src/cpu/math.rs `exp`), for the one
// place where WGSL's `exp` (3 + 2|x| ulp) is not enough: bce_with_logits.wgsl's e^(−|x|).
// Needs no other file.

// ln 2 in a high part of 9 bits (so e · LN2_HI is exact for |e| ≤ 255) and the rest.
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const SQRT_TWO: f32 = 1.41421356;

// e ln 2 + ln(1 + f) for |f| ≤ √2 − 1, to about 1 ulp of the result.
fn ln_reduced(e: f32, f: f32) -> f32 {
    let z = f * f;
    var p = 7.0376836e-2;
    p = p * f - 1.1514610e-1;
    p = p * f + 1.1676999e-1;
    p = p * f - 1.2420141e-1;
    p = p * f + 1.4249323e-1;
    p = p * f - 1.6668057e-1;
    p = p * f + 2.0000714e-1;
    p = p * f - 2.4999994e-1;
    p = p * f + 3.3333331e-1;
    p = p * f * z;
    return (f + ((p + e * LN2_LO) - 0.5 * z)) + e * LN2_HI;
}

// ln x of the f32 whose bits are `b`.
fn ln_bits(b: u32) -> f32 {
    if ((b & 0x7fffffffu) == 0u) {
        return bitcast<f32>(0xff800000u); // ln(±0) = −∞
    }
    if (b == 0x7f800000u) {
        return bitcast<f32>(0x7f800000u); // ln(+∞) = +∞
    }
    if (b > 0x7f800000u) {
        return bitcast<f32>(0x7fc00000u); // NaN, or a negative number
    }
    var e: i32;
    var mant: u32;
    if (b < 0x00800000u) {
        // Subnormal: b · 2^-149 = 2^(−126 − s) · 1.mant with the leading 1 shifted to bit 23.
        let s = countLeadingZeros(b) - 8u;
        mant = (b << s) & 0x007fffffu;
        e = -126 - i32(s);
    } else {
        mant = b & 0x007fffffu;
        e = i32(b >> 23u) - 127;
    }
    // m ∈ [1, 2), then into [√½, √2) so that f = m − 1 is small on both sides of 1.
    var m = bitcast<f32>(mant | 0x3f800000u);
    if (m > SQRT_TWO) {
        m = 0.5 * m;
        e = e + 1;
    }
    return ln_reduced(f32(e), m - 1.0);
}

// ln x.
fn ln_f32(x: f32) -> f32 {
    return ln_bits(bitcast<u32>(x));
}

// ln(1 − p) for p ≤ 1 (a probability), to about 1 ulp: for p ≥ ½, 1 − p is exact (Sterbenz);
// below, u = 1 − p rounded and its rounding error c = (1 − p) − u give
// ln(1 − p) = ln u + ln(1 + c/u) ≈ ln u + c/u. So ln(1 − 1e-10) is −1e-10, not 0. NaN gives NaN.
//
// c is Fast2Sum's error term, d − p with d = 1 − u (exact), and must not be written as
// (1 − u) − p: compilers that treat float arithmetic as real arithmetic (Mesa's NIR, WGSL has no
// `precise`) fold ((1 − (1 − p)) − p) to 0. So d is taken from u's bits, where no algebra sees
// it: u ∈ [½, 1), exponent −1, is ½ + m·2^-24 with m its mantissa field, so
// d = (2^23 − m)·2^-24; u = 1 gives 0. The tests on u are on its bits too: `u < 1.0` is folded
// to `p > 0.0` by the same algebra, which is true for a subnormal p that u = 1 has rounded away.
fn ln_one_minus(p: f32) -> f32 {
    let u = 1.0 - p;
    if (p >= 0.5) {
        return ln_f32(u);
    }
    var d = 0.0;
    if (bitcast<u32>(u) < 0x3f800000u) {
        d = f32(0x00800000u - (bitcast<u32>(u) & 0x007fffffu)) * 0x1p-24;
    }
    let c = d - p;
    return ln_f32(u) + c / u;
}

// ln(1 + y) for 0 ≤ y ≤ 1, to about 1 ulp, as `ln_one_minus`: u = 1 + y rounded, its error
// c = y − (u − 1), ln(1 + y) ≈ ln u + c/u, with u − 1 taken from u's bits (u ∈ [1, 2) is
// 1 + m·2^-23; u = 2 gives 1).
fn ln_1p(y: f32) -> f32 {
    let u = 1.0 + y;
    var d = 1.0;
    if (bitcast<u32>(u) < 0x40000000u) {
        d = f32(bitcast<u32>(u) & 0x007fffffu) * 0x1p-23;
    }
    let c = y - d;
    return ln_f32(u) + c / u;
}

// e^x for x ≤ 0, to about 1 ulp while the result is a normal number (x ≥ −87.33; below, 0):
//     x = n ln 2 + r, |r| ≤ ½ ln 2     e^x = 2^n (1 + r + r² P(r))
fn exp_accurate(x: f32) -> f32 {
    if (x < -87.33654) {
        return 0.0;
    }
    let n = round(x * 1.44269504);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    var p = 1.9875691e-4;
    p = p * r + 1.3981999e-3;
    p = p * r + 8.3334519e-3;
    p = p * r + 4.1665796e-2;
    p = p * r + 1.6666665e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    return ldexp(y, i32(n));
}
