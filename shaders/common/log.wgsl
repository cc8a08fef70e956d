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
// countLeadingZeros), and ln(1 + f) of the reduced mantissa is Cephes' `logf` reduction with
// the fast CPU path's polynomial (src/simd/math.rs `ln`).
//
//     x = 2^e · m, m ∈ [√½, √2)     ln x = e ln 2 + f − f²/2 + f³·P(f),  f = m − 1 (exact)
//
// Special values as IEEE 754: ln(±0) = −∞, ln(+∞) = +∞, a negative number or NaN gives NaN.
// `exp_accurate` is the matching `exp` (Cephes' `expf`, src/simd/math.rs `exp`), for the one
// place where WGSL's `exp` (3 + 2|x| ulp) is not enough: bce_with_logits.wgsl's e^(−|x|).
// Needs no other file.

// ln 2 in a high part of 9 bits (so e · LN2_HI is exact for |e| ≤ 255) and the rest.
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const SQRT_TWO: f32 = 1.41421356;

// e ln 2 + ln(1 + f) for |f| ≤ √2 − 1, to about 1 ulp of the result. P has degree 6 (the
// fast CPU path's coefficients, fitted by scripts/fit_ln.py: 1.15 ulp at worst in f32
// arithmetic without fused multiply-adds), evaluated by Estrin's scheme in the CPU's order
// (pairs, then powers of f²): independent chains, which a SIMD adapter (llvmpipe) runs faster.
fn ln_reduced(e: f32, f: f32) -> f32 {
    let z = f * f;
    let z2 = z * z;
    let a0 = -2.500134e-1 * f + 3.3333912e-1;
    let a1 = -1.6577585e-1 * f + 1.9963062e-1;
    let a2 = -1.426749e-1 * f + 1.491479e-1;
    let poly = (8.700368e-2 * z + a2) * z2 + (a1 * z + a0);
    let p = poly * f * z;
    return (f + ((p + e * LN2_LO) - 0.5 * z)) + e * LN2_HI;
}

// ln x of the f32 whose bits are `b`. Branch-free (selects), so that lanes of a SIMD adapter
// never diverge: the special values replace the result at the end.
fn ln_bits(b: u32) -> f32 {
    // A subnormal b · 2^-149 is 2^(−126 − s) · 1.mant with its leading 1 shifted to bit 23.
    let sub = b < 0x00800000u;
    let s = countLeadingZeros(b) - 8u;
    let mant = select(b & 0x007fffffu, (b << s) & 0x007fffffu, sub);
    var e = select(i32(b >> 23u) - 127, -126 - i32(s), sub);
    // m ∈ [1, 2), then into [√½, √2) so that f = m − 1 (exact) is small on both sides of 1.
    let m1 = bitcast<f32>(mant | 0x3f800000u);
    let big = m1 > SQRT_TWO;
    let m = select(m1, 0.5 * m1, big);
    e = e + select(0, 1, big);
    var r = ln_reduced(f32(e), m - 1.0);
    r = select(r, bitcast<f32>(0x7fc00000u), b > 0x7f800000u); // NaN, or a negative number
    r = select(r, bitcast<f32>(0x7f800000u), b == 0x7f800000u); // ln(+∞) = +∞
    r = select(r, bitcast<f32>(0xff800000u), (b & 0x7fffffffu) == 0u); // ln(±0) = −∞
    return r;
}

// ln x.
fn ln_f32(x: f32) -> f32 {
    return ln_bits(bitcast<u32>(x));
}

// ln x for x = +0 (−∞) or a positive normal number, as `ln_bits` without its subnormal
// normalisation and its NaN and ∞ cases: for `ln_one_minus` and `ln_1p`, whose u = 1 ∓ p is
// never subnormal (it is 0 or at least 2^-24), whose NaN the drivers propagate themselves,
// and whose other arguments (p outside [0, 1], an infinite y) are not used. About a tenth of
// the instructions of `ln_bits` fewer, on the kernels that take two logs per element.
fn ln_normal(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    let m1 = bitcast<f32>((b & 0x007fffffu) | 0x3f800000u);
    let big = m1 > SQRT_TWO;
    let m = select(m1, 0.5 * m1, big);
    let e = i32(b >> 23u) - select(127, 126, big);
    return select(ln_reduced(f32(e), m - 1.0), bitcast<f32>(0xff800000u), b == 0u);
}

// ln(1 − p) for p ≤ 1 (a probability), to about 1 ulp: for p ≥ ½, 1 − p is exact (Sterbenz);
// below, u = 1 − p rounded and its rounding error c = (1 − p) − u give
// ln(1 − p) = ln u + ln(1 + c/u) ≈ ln u + c/u. So ln(1 − 1e-10) is −1e-10, not 0. A NaN p gives
// an unspecified number (the drivers make such an element NaN themselves).
// Branch-free, as `ln_bits`.
//
// c is Fast2Sum's error term, d − p with d = 1 − u (exact), and must not be written as
// (1 − u) − p: compilers that treat float arithmetic as real arithmetic (Mesa's NIR, WGSL has no
// `precise`) fold ((1 − (1 − p)) − p) to 0. So d is taken from u's bits, where no algebra sees
// it: u ∈ [½, 1), exponent −1, is ½ + m·2^-24 with m its mantissa field, so
// d = (2^23 − m)·2^-24; u = 1 gives 0. The test on u is on its bits too: `u < 1.0` is folded
// to `p > 0.0` by the same algebra, which is true for a subnormal p that u = 1 has rounded away.
fn ln_one_minus(p: f32) -> f32 {
    let u = 1.0 - p;
    let ub = bitcast<u32>(u);
    let d = select(f32(0x00800000u - (ub & 0x007fffffu)) * 0x1p-24, 0.0, ub >= 0x3f800000u);
    // c/u, as c (1 + d + d²): 1/u = 1/(1 − d), and the d³ left out is negligible against the
    // size of the correction (|c| ≤ 2^-25) relative to ln u (≥ d in size).
    let c = d - p;
    let l = ln_normal(u);
    return select(l + c * (1.0 + d * (1.0 + d)), l, p >= 0.5);
}

// ln(1 + y) for 0 ≤ y ≤ 1, to about 1 ulp, as `ln_one_minus`: u = 1 + y rounded, its error
// c = y − (u − 1), ln(1 + y) ≈ ln u + c/u, with u − 1 taken from u's bits (u ∈ [1, 2) is
// 1 + m·2^-23; u = 2 gives 1).
fn ln_1p(y: f32) -> f32 {
    let u = 1.0 + y;
    let ub = bitcast<u32>(u);
    let d = select(f32(ub & 0x007fffffu) * 0x1p-23, 1.0, ub >= 0x40000000u);
    let c = y - d;
    return ln_normal(u) + c / u;
}

// e^x for x ≤ 0, to about 1 ulp while the result is a normal number (x ≥ −87.33; below, 0):
//     x = n ln 2 + r, |r| ≤ ½ ln 2     e^x = 2^n (1 + r + r² P(r))
fn exp_accurate(x: f32) -> f32 {
    let n = round(x * 1.44269504);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // 1 + r + r² P(r), P of degree 5 by Estrin's scheme (as `ln_reduced`).
    let r2 = r * r;
    let poly = (0.5 + 1.6666665e-1 * r) + r2 * (4.1665796e-2 + 8.3334519e-3 * r)
        + (r2 * r2) * (1.3981999e-3 + 1.9875691e-4 * r);
    let y = poly * r2 + r + 1.0;
    return select(ldexp(y, i32(n)), 0.0, x < -87.33654);
}

// e^x for every x, from `exp_accurate`: 1 / e^(−x) for x > 0, so it overflows to +∞ from
// x = 87.34 (the true value from 88.72); poisson_nll.wgsl and kl_div.wgsl.
// One exp_accurate for both sides: −|x| is x itself for x ≤ 0 (−0 included).
fn exp_any(x: f32) -> f32 {
    let e = exp_accurate(-abs(x));
    return select(1.0 / e, e, x <= 0.0);
}

// ln S of a softmax's sum S = 1 + rest, from rest = S − 1 ∈ [0, C − 1] (the row statistics keep
// S − 1, so a confident row's small S − 1 is not rounded away): `ln_1p` up to 1, `ln_f32` above;
// softmax_cross_entropy.wgsl, distill.wgsl, jsd.wgsl.
fn ln_sum(rest: f32) -> f32 {
    return select(ln_f32(1.0 + rest), ln_1p(rest), rest <= 1.0);
}
