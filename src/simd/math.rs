//! `exp` and `ln` in f32 written for the vectoriser: straight-line code of multiplies, adds,
//! integer bit operations and selects, no calls and no branches, so a loop over a slice that
//! uses them compiles to SIMD instructions (the standard library's `f32::exp` and `f32::ln`
//! are calls into libm, one element at a time).
//!
//! Both follow Cephes' single-precision algorithms (`expf.c`, `logf.c`: a range reduction by
//! powers of two and a minimax polynomial; `ln`'s polynomial refitted with seven coefficients
//! instead of nine, `scripts/fit_ln.py`), accurate to about 1 ulp, with the special values of
//! IEEE 754 handled by selects. Rounding to an integer uses the `1.5 · 2^23` trick
//! (adding it rounds to nearest on every target, without SSE4.1's `roundps`).

use super::CHUNK;

/// 1.5 · 2^23: adding it to |v| < 2^22 rounds v to the nearest integer, which then sits in
/// the low mantissa bits.
const ROUND: f32 = 12_582_912.0;
/// ln 2 split in a high part with few bits (`n · LN2_HI` is exact for |n| < 2^15) and the rest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// The smallest argument whose `exp` is a normal number: `ln(f32::MIN_POSITIVE)`.
const EXP_LO: f32 = -87.336_54;
/// The largest argument for which `n = round(x / ln 2) ≤ 127`: 127.5 · ln 2.
const EXP_HI: f32 = 88.376_26;

/// `e^x` in f32 for any `x`, to about 1 ulp.
///
/// ```text
/// x = n ln2 + r, |r| ≤ ½ ln2     e^x = 2^n · (1 + r + r²·P(r))
/// ```
///
/// Special values: `exp(−∞) = 0`, NaN gives NaN. Two simplifications, both outside what the
/// losses use (they only take `exp` of non-positive numbers and of numbers ≥ −104):
/// results below `f32::MIN_POSITIVE` (x < −87.34) are flushed to 0, and x > 88.38 gives +∞
/// (the true value overflows from 88.72).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // NaN passes through the clamp.
    let e = exp_reduced(x.clamp(EXP_LO, EXP_HI));
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f32::INFINITY
    } else {
        e
    }
}

/// `e^x` for `EXP_LO ≤ x ≤ EXP_HI` (or NaN), [`exp`]'s range reduction and polynomial.
#[inline(always)]
fn exp_reduced(xc: f32) -> f32 {
    let k = xc * std::f32::consts::LOG2_E + ROUND;
    let n = k - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let z = r * r;
    // Cephes' polynomial ½ + c1 r + ... + c5 r^5 by Estrin's scheme (pairs, then powers of
    // r²): a chain of 6 operations instead of Horner's 10.
    let a0 = 1.666_666_5e-1 * r + 0.5;
    let a1 = 8.333_452e-3 * r + 4.166_579_6e-2;
    let a2 = 1.987_569_2e-4 * r + 1.398_199_9e-3;
    let p = (a2 * z + a1) * z + a0;
    let y = p * z + r + 1.0;
    // k's bits are ROUND's plus n: n + 127 is the exponent field of 2^n (1 ..= 254 here).
    let n_bits = k.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    y * scale
}

/// [`exp`] of an `x ≤ 88.38` (or NaN; a softmax's `x − max ≤ 0`): the same bits, without
/// the upper clamp and the +∞ select that only larger arguments need.
#[inline(always)]
pub(crate) fn exp_below_hi(x: f32) -> f32 {
    // NaN passes the comparison.
    let e = exp_reduced(if x < EXP_LO { EXP_LO } else { x });
    if x < EXP_LO { 0.0 } else { e }
}

/// The natural logarithm in f32, to about 1 ulp, subnormal arguments included.
///
/// ```text
/// x = 2^e · m, m ∈ (√½, √2]     ln x = e ln2 + f − f²/2 + f³·P(f),  f = m − 1
/// ```
///
/// Special values as IEEE 754: `ln(±0) = −∞`, `ln(+∞) = +∞`, negative or NaN gives NaN.
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    // Subnormals (and 0, negatives) are scaled by 2^23 first, so the exponent field is right.
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 8_388_608.0 } else { x };
    let y = ln_of_bits(xs.to_bits(), if sub { 150 } else { 127 });
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        f32::INFINITY
    } else if x.is_nan() || x < 0.0 {
        f32::NAN
    } else {
        y
    }
}

/// [`ln`] of a positive, normal, finite `x` (`f32::MIN_POSITIVE ≤ x < ∞`), without the
/// selects for the other values: the same bits as `ln(x)` there (the same operations), and
/// an unspecified finite value or NaN anywhere else. For callers that know their argument's
/// range (`ln_1p_recip`'s `1 + y`), or have checked it for a whole chunk (BCE's ordinary chunks,
/// [`super::elementwise::Element::ordinary`]).
#[inline(always)]
pub(crate) fn ln_normal(x: f32) -> f32 {
    ln_of_bits(x.to_bits(), 127)
}

/// [`ln`]'s reduction and polynomial for the bits of `2^k · x`, `x` normal, where `bias` is
/// `127 + k` (the exponent field's bias plus the pre-scaling).
#[inline(always)]
fn ln_of_bits(bits: u32, bias: i32) -> f32 {
    // The exponent and mantissa with the mantissa's range shifted from [1, 2) to (√½, √2]
    // by integer operations alone: subtracting the bits of the smallest `m` above √½ (the f32
    // after √½) borrows from the exponent field exactly where the mantissa field is below it,
    // i.e. where `1.M ≤ √2`; adding it back gives `1.M` there and `1.M / 2` elsewhere.
    const OFFSET: u32 = 0x3f35_04f4;
    let ix = bits.wrapping_sub(OFFSET);
    let e = ((ix as i32 >> 23) + (127 - bias)) as f32;
    let m = f32::from_bits((ix & 0x007f_ffff).wrapping_add(OFFSET));
    let f = m - 1.0;
    let z = f * f;
    // P(f) = c0 + c1 f + ... + c6 f^6, fitted for this range by scripts/fit_ln.py
    // (near-minimax in ln's relative error, its f32 coefficients then nudged by a few ulp to
    // the smallest worst case over every mantissa: 1.15 ulp, against 0.84 for Cephes' nine
    // coefficients, two multiply-adds more; `docs/TUNING.md`, "`ln` with seven
    // coefficients"). By Estrin's scheme: pairs, then powers of f², so the longest chain is 5
    // operations instead of Horner's 12.
    let z2 = z * z;
    let a0 = -2.500_134e-1 * f + 3.333_391_2e-1;
    let a1 = -1.657_758_5e-1 * f + 1.996_306_2e-1;
    let a2 = -1.426_749e-1 * f + 1.491_479e-1;
    let b0 = a1 * z + a0;
    let q = (8.700_368e-2 * z + a2) * z2 + b0;
    let p = q * f * z;
    (f + ((p + e * LN2_LO) - 0.5 * z)) + e * LN2_HI
}

/// `ln(1 − p)` for `p ≤ 1`, to about 1 ulp, even where `1 − p` rounds (small `p`):
/// `u = 1 − p` rounded and its rounding error `c = (1 − u) − p`, exact by Fast2Sum, give
/// `ln(1 − p) = ln u + ln(1 + c/u) ≈ ln u + c/u`, with `1/u = 1/(1 − d)` taken as
/// `1 + d + d²` (`d = 1 − u`; the `d³` left out is negligible against the size of the
/// correction, `|c| ≤ 2^-25`, relative to `ln u`), so no division. `c = 0` wherever `1 − p` is
/// exact (`p ≥ ½` among them), so `ln(1 − 1) = −∞ + 0` stays `−∞`.
#[inline(always)]
pub(crate) fn ln_1m(p: f32) -> f32 {
    ln_1m_by(p, ln)
}

/// [`ln_1m`] for `0 ≤ p < 1`, where `1 − p ≥ 2^-24` is normal: [`ln_normal`] for its `ln`,
/// the same bits as `ln_1m(p)` there.
#[inline(always)]
pub(crate) fn ln_1m_normal(p: f32) -> f32 {
    ln_1m_by(p, ln_normal)
}

#[inline(always)]
fn ln_1m_by(p: f32, ln: impl Fn(f32) -> f32) -> f32 {
    let u = 1.0 - p;
    let d = 1.0 - u;
    let c = d - p;
    ln(u) + c * (1.0 + d * (1.0 + d))
}

/// `(ln(1 + y), 1/(1 + y))` for `0 ≤ y ≤ 1` (what the losses pass: `e^(−|x|)`, whose
/// sigmoid wants the same reciprocal). `ln(1 + y)` stays accurate for small `y`, where
/// `u = 1 + y` rounds: `1 + y = u + c` with `c = y − (u − 1)` exact, so
/// `ln(1 + y) = ln u + ln(1 + c/u) = ln u + c/u` to within `(c/u)²/2 ≤ 2^-51` (`|c| ≤ 2^-25`),
/// and `y` itself where `u = 1`, with no division beyond the reciprocal. `u ∈ [1, 2]` is
/// normal and finite, so its `ln` is [`ln_normal`]; a NaN `y` gives NaNs.
#[inline(always)]
pub(crate) fn ln_1p_recip(y: f32) -> (f32, f32) {
    let u = 1.0 + y;
    let r = 1.0 / u;
    let c = y - (u - 1.0);
    (ln_normal(u) + c * r, r)
}

/// The logistic function's parts for a logit `x`: `e = e^(−|x|)`, `ln(1 + e)` and `1/(1 + e)`
/// ([`exp`], then [`ln_1p_recip`]). With them `softplus(−x) = ln(1 + e) + max(−x, 0)` and
/// `σ(x)` is `1/(1 + e)` for `x ≥ 0`, `e/(1 + e)` below: the BCE-with-logits and focal losses
/// take both from one `exp` that never overflows.
#[inline(always)]
pub(crate) fn logistic(x: f32) -> (f32, f32, f32) {
    let e = exp(-x.abs());
    let (sp, r) = ln_1p_recip(e);
    (e, sp, r)
}

/// [`logistic`] over a chunk, `[e, ln(1 + e), 1/(1 + e)]`, one loop per stage: the `exp`s,
/// then the `ln`s and reciprocals of their results. One loop over [`logistic`] is a chain of
/// about 60 dependent operations per element, longer than the CPU's reorder window covers
/// for more than one or two vectors at a time; each stage's loop is short enough for many.
/// The same operations, so the same bits as [`logistic`] (`docs/TUNING.md`, "Loop fission").
#[inline(always)]
pub(crate) fn logistic_chunk(x: &[f32; CHUNK]) -> [[f32; CHUNK]; 3] {
    let mut e = [0.0f32; CHUNK];
    for i in 0..CHUNK {
        e[i] = exp(-x[i].abs());
    }
    let (mut sp, mut r) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
    for i in 0..CHUNK {
        (sp[i], r[i]) = ln_1p_recip(e[i]);
    }
    [e, sp, r]
}

/// Logit soft-capping: `(c·tanh(x/c), 1 − tanh²(x/c))` for the cap `c > 0` and `inv_c = 1/c`,
/// the formulation of `shaders/common/softcap.wgsl`. `tanh` is Cephes' `tanhf` (about 2 ulp):
///
/// ```text
/// |z| < 0.625   tanh z = z + z·s·P(s), s = z²
/// otherwise     tanh |z| = 1 − 2e/(1 + e), e = e^(−2 min(|z|, 44))
/// ```
///
/// and `1 − tanh² = (1 − t)(1 + t)` below 0.625, `4e/(1 + e)²` above (relative to `e`, where
/// `1 − t` would carry `t`'s rounding). `±∞` gives
/// `(±c, 0)`, NaN gives `(NaN, NaN)`.
#[inline(always)]
pub(crate) fn softcap(x: f32, c: f32, inv_c: f32) -> (f32, f32) {
    let z = x * inv_c;
    let a = z.abs();
    let s = z * z;
    let p = ((((-5.704_988_7e-3 * s + 2.063_908_8e-2) * s - 5.373_971_6e-2) * s + 1.333_144_2e-1)
        * s
        - 3.333_328e-1)
        * s;
    let e = exp(-2.0 * a.min(44.0));
    let q = 1.0 / (1.0 + e);
    let small = a + a * p;
    let (t, d) = if a < 0.625 {
        (small, (1.0 - small) * (1.0 + small))
    } else {
        (1.0 - 2.0 * e * q, 4.0 * e * (q * q))
    };
    let y = if z < 0.0 { -(c * t) } else { c * t };
    if x.is_nan() { (x, x) } else { (y, d) }
}

/// `ln(1 + x)` in f64 for a finite `x ≥ 0`, to about 1 ulp: the `ln S = ln(1 + (S − 1))` of
/// each softmax row (softmax CE, distillation, JSD), once per row. In plain f64 arithmetic, so
/// the result is the same on every CPU: glibc's `log1p` has an FMA and an SSE2 build, picked
/// by CPU, whose results differ in the last bit for about one argument in 8000
/// (`docs/TUNING.md`, "One `ln` per row").
///
/// ```text
/// u = 1 + x rounded, c = x − (u − 1) exact     ln(1 + x) = ln u + c/u  (to (c/u)²/2 ≤ 2^-107)
/// u = 2^k · m, m ∈ [√½, √2), f = m − 1, s = f/(2 + f)
/// ln m = f − f²/2 + s (f²/2 + R(s²))             fdlibm's `log` (e_log.c), R of degree 7 in s²
/// ```
///
/// `c` is exact: for `x ≤ 1`, `u − 1` is exact (Sterbenz) and `c` is Fast2Sum's error; above,
/// `u − 1` is exact again (`u ≥ 2`) and within a factor 2 of `x`. Any other `x` gives an
/// unspecified value.
#[inline(always)]
pub(crate) fn ln_1p_f64(x: f64) -> f64 {
    const LN2_HI: f64 = 0.6931471803691238;
    const LN2_LO: f64 = 1.9082149292705877e-10;
    const LG: [f64; 7] = [
        0.6666666666666735,
        0.3999999999940942,
        0.2857142874366239,
        0.22222198432149784,
        0.1818357216161805,
        0.15313837699209373,
        0.14798198605116586,
    ];
    // The bits of the f64 whose high word is √½'s (0x3fe6a09e) and whose low word is 0:
    // subtracting it borrows from the exponent exactly where u's mantissa is below √2's, so
    // that adding it back to the mantissa field gives m ∈ [√½, √2) (as `ln_of_bits`).
    const OFFSET: u64 = 0x3fe6_a09e_0000_0000;
    let u = 1.0 + x;
    let c = x - (u - 1.0);
    let ix = u.to_bits().wrapping_sub(OFFSET);
    let k = ((ix as i64) >> 52) as f64;
    let m = f64::from_bits((ix & 0x000f_ffff_ffff_ffff).wrapping_add(OFFSET));
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG[1] + w * (LG[3] + w * LG[5]));
    let t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])));
    let ln_u = k * LN2_HI - ((hfsq - (s * (hfsq + (t1 + t2)) + k * LN2_LO)) - f);
    ln_u + c / u
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against f64, in units of f32's epsilon.
    fn ulps(got: f32, want: f64) -> f64 {
        ((f64::from(got) - want) / want.abs().max(f64::from(f32::MIN_POSITIVE)))
            / f64::from(f32::EPSILON)
    }

    /// `softcap`'s `tanh` against f64 over |z| ≤ 50, across the branch at 0.625, and its
    /// special values: within 3 ulp (Cephes' bound for `tanhf` is about 2; the product `x/c`
    /// adds one rounding), and the derivative within 6 ulp of `sech²` down to 1e-30
    /// (`e` within 2 ulp, `x/c`'s rounding magnified by `2|z|`, and three roundings).
    #[test]
    fn softcap_is_tanh_within_three_ulp() {
        let c = 30.0f32;
        let inv = 1.0 / c;
        let mut worst = (0.0f64, 0.0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 7.5e-3;
            let (y, d) = softcap(x, c, inv);
            let z = f64::from(x * inv);
            let t = z.tanh();
            let dy = ulps(y / c, t).abs();
            worst.0 = worst.0.max(dy);
            let want_d = 1.0 / z.cosh().powi(2);
            // (Below 1e-30, e^(−2|z|) nears exp's flush to 0 at 2^-126.)
            if want_d >= 1e-30 {
                worst.1 = worst.1.max(ulps(d, want_d).abs());
            }
        }
        assert!(worst.0 <= 3.0 && worst.1 <= 4.0, "{worst:?}");
        assert_eq!(softcap(f32::INFINITY, c, inv), (c, 0.0));
        assert_eq!(softcap(f32::NEG_INFINITY, c, inv), (-c, 0.0));
        assert_eq!(softcap(0.0, c, inv), (0.0, 1.0));
        let (y, d) = softcap(f32::NAN, c, inv);
        assert!(y.is_nan() && d.is_nan());
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.3f32;
        while x < 88.3 {
            worst = worst.max(ulps(exp(x), f64::from(x).exp()).abs());
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn ln_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..2_000_000u32 {
            // Every binade from subnormals to large numbers, and densely around 1.
            let x = f32::from_bits(1 + i * 1063);
            if x.is_finite() {
                worst = worst.max(ulps(ln(x), f64::from(x).ln()).abs());
            }
            let y = 0.5 + i as f32 * 5e-7;
            worst = worst.max(ulps(ln(y), f64::from(y).ln()).abs());
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f32::NAN).is_nan());
        // A subnormal: ln(2^-140).
        let tiny = f32::from_bits(1 << 9);
        assert!(ulps(ln(tiny), -140.0 * std::f64::consts::LN_2).abs() <= 1.0);
    }

    /// Every mantissa of `ln`'s reduced range `(√½, √2]` at exponents −1, 0 and 1 (where the
    /// polynomial's error weighs most against the result; above them `e ln 2` dominates): within
    /// the 1.15 ulp that `scripts/fit_ln.py` found for its coefficients.
    #[test]
    fn ln_is_within_its_fitted_bound_over_every_mantissa() {
        let (lo, hi) = (
            std::f32::consts::FRAC_1_SQRT_2.to_bits() + 1,
            2.0f32.sqrt().to_bits(),
        );
        // In ulp of the result (the spacing of f32 at it), as the script measures.
        let ulp = |v: f64| {
            let a = v.abs() as f32;
            f64::from(f32::from_bits(a.to_bits() + 1)) - f64::from(a)
        };
        let mut worst = 0.0f64;
        for b in lo..=hi {
            let m = f32::from_bits(b);
            for x in [0.5 * m, m, 2.0 * m] {
                let want = f64::from(x).ln();
                if want != 0.0 {
                    worst = worst.max((f64::from(ln(x)) - want).abs() / ulp(want));
                }
            }
        }
        assert!(worst <= 1.15, "worst {worst} ulp");
    }

    #[test]
    fn ln_1m_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..1_000_000u32 {
            // Every binade of p up to ½, and densely below 1.
            for p in [f32::from_bits(1 + i * 1063), 1.0 - i as f32 * 5.96e-8] {
                if p > 0.0 && p < 1.0 {
                    worst = worst.max(ulps(ln_1m(p), (-f64::from(p)).ln_1p()).abs());
                }
            }
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(ln_1m(0.0), 0.0);
        assert_eq!(ln_1m(1.0), f32::NEG_INFINITY);
        assert_eq!(ln_1m(1e-10), -1e-10);
        assert!(ln_1m(f32::NAN).is_nan());
    }

    /// The range-restricted forms are the general ones, bit for bit, where they apply: every
    /// 997th f32 from `f32::MIN_POSITIVE` to the largest finite (`ln_normal`), and every 61st
    /// below 1 (`ln_1m_normal`).
    #[test]
    fn restricted_logs_are_the_general_ones_bit_for_bit() {
        let (lo, hi) = (f32::MIN_POSITIVE.to_bits(), f32::MAX.to_bits());
        for b in (lo..=hi).step_by(997).chain([lo, hi]) {
            let x = f32::from_bits(b);
            assert_eq!(ln_normal(x).to_bits(), ln(x).to_bits(), "ln_normal({x:e})");
        }
        for b in (0..1.0f32.to_bits()).step_by(61) {
            let p = f32::from_bits(b);
            assert_eq!(
                ln_1m_normal(p).to_bits(),
                ln_1m(p).to_bits(),
                "ln_1m_normal({p:e})"
            );
        }
        let below_one = f32::from_bits(1.0f32.to_bits() - 1);
        assert_eq!(
            ln_1m_normal(below_one).to_bits(),
            ln_1m(below_one).to_bits()
        );
    }

    /// `ln_1p_recip`'s logarithm within 2 ulp of f64 over [0, 1] (every 251st f32, and small
    /// arguments from 1e-30 to 1e-4 where `1 + y` rounds; `ln` is within 1.15 and the
    /// correction adds a rounding), its reciprocal within 1 ulp (one division), and NaN
    /// stays NaN.
    #[test]
    fn ln_1p_recip_is_accurate_over_its_domain() {
        let mut worst = 0.0f64;
        let small = [0.0f32, 1e-30, 1e-10, 3e-8, 1e-7, 1e-4, 0.1, 0.5].map(f32::to_bits);
        for b in (0..=1.0f32.to_bits())
            .step_by(251)
            .chain([1.0f32.to_bits()])
            .chain(small)
        {
            let y = f32::from_bits(b);
            let (l, r) = ln_1p_recip(y);
            let want = f64::from(y).ln_1p();
            if y > 0.0 {
                worst = worst.max(ulps(l, want).abs());
            } else {
                assert_eq!(l, 0.0);
            }
            assert!(
                ulps(r, 1.0 / (1.0 + f64::from(y))).abs() <= 1.0,
                "1/(1 + {y:e})"
            );
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        let (l, r) = ln_1p_recip(f32::NAN);
        assert!(l.is_nan() && r.is_nan());
    }

    /// `ln_1p_f64` against libm's `ln_1p` within 2 ulp of f64 (fdlibm's `log` is within 1,
    /// the correction `c/u` adds a rounding), over every binade from 1e-300 to 2^40 and
    /// densely over [0, 4], where rows' `S − 1` mostly lies; and exact at 0.
    #[test]
    fn ln_1p_f64_is_within_two_ulp() {
        let ulps = |got: f64, want: f64| ((got - want) / want).abs() / f64::EPSILON;
        let mut worst = 0.0f64;
        let (lo, hi) = (1e-300f64.to_bits(), 2f64.powi(40).to_bits());
        for b in (lo..hi).step_by(((hi - lo) / 1_000_000) as usize) {
            let x = f64::from_bits(b);
            worst = worst.max(ulps(ln_1p_f64(x), x.ln_1p()));
        }
        for i in 1..=1_000_000 {
            let x = f64::from(i) * 4e-6;
            worst = worst.max(ulps(ln_1p_f64(x), x.ln_1p()));
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(ln_1p_f64(0.0), 0.0);
        assert_eq!(ln_1p_f64(1.0), std::f64::consts::LN_2);
    }
}
