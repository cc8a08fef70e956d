#!/usr/bin/env python3
"""Fits the seven coefficients of the fast CPU path's `ln` (`src/simd/math.rs`, `ln_of_bits`).

    x = 2^e m, m in (sqrt(1/2), sqrt(2)], f = m - 1
    ln x = e ln2 + f - f^2/2 + f^3 P(f),   P(f) = c0 + c1 f + ... + c6 f^6

P is fitted to (ln(1 + f) - f + f^2/2) / f^3 by Lawson's iteratively reweighted least
squares, weighted for ln's relative error (near-minimax); its f32 coefficients are then
nudged by a few ulp, one at a time, while that lowers the worst error, in ulp of f32, of
`ln_of_bits` evaluated exactly as the Rust code does (the same f32 operations in the same
order: numpy's float32 arithmetic rounds each one as IEEE 754 does) over every mantissa
of the range, for e = -1, 0 and 1. Prints the coefficients and the worst case.

Needs numpy only. About a minute: python3 scripts/fit_ln.py
"""
import numpy as np

f32 = np.float32
LN2_HI = f32(0.693359375)
LN2_LO = f32(-2.12194440e-4)
A, B = np.sqrt(0.5) - 1, np.sqrt(2.0) - 1


def target(f):
    """(ln(1 + f) - f + f^2/2) / f^3 in f64, by its series near 0."""
    f = np.asarray(f, dtype=np.float64)
    out = np.empty_like(f)
    small = np.abs(f) < 1e-2
    fs = f[small]
    out[small] = sum((-1) ** (n + 1) * fs ** (n - 3) / n for n in range(3, 25))
    fl = f[~small]
    out[~small] = (np.log1p(fl) - fl + fl * fl / 2) / fl**3
    return out


def lawson(k=7, iterations=60):
    x = np.cos(np.linspace(0, np.pi, 4000)) * (B - A) / 2 + (B + A) / 2
    v = np.vander(x, k, increasing=True)
    y = target(x)
    # An error d in P is an error f^3 d in ln(1 + f), relative to ln(1 + f).
    scale = np.abs(x) ** 3 / np.abs(np.log1p(x))
    w = np.ones_like(x)
    for _ in range(iterations):
        a = v * (np.sqrt(w) * scale)[:, None]
        c, *_ = np.linalg.lstsq(a, y * np.sqrt(w) * scale, rcond=None)
        w = w * np.abs((v @ c - y) * scale)
        w /= w.sum()
    return [f32(v) for v in c]


def ln_of_bits(m, e, c):
    """The Rust code's operations, in f32, on mantissas m and exponent e."""
    f = m - f32(1)
    z = f * f
    z2 = z * z
    a0 = c[1] * f + c[0]
    a1 = c[3] * f + c[2]
    a2 = c[5] * f + c[4]
    b0 = a1 * z + a0
    q = (c[6] * z + a2) * z2 + b0
    p = q * f * z
    return (f + ((p + e * LN2_LO) - f32(0.5) * z)) + e * LN2_HI


MANTISSAS = np.arange(
    f32(np.sqrt(0.5)).view(np.uint32) + 1, f32(np.sqrt(2.0)).view(np.uint32) + 1, dtype=np.uint32
).view(np.float32)


def worst_ulp(c):
    worst = 0.0
    for e in (-1, 0, 1):
        got = ln_of_bits(MANTISSAS, f32(e), c).astype(np.float64)
        want = np.log(MANTISSAS.astype(np.float64)) + e * np.log(2.0)
        nz = want != 0
        ulp = np.spacing(np.abs(want[nz]).astype(np.float32)).astype(np.float64)
        worst = max(worst, float((np.abs(got[nz] - want[nz]) / ulp).max()))
    return worst


def nudge(c, steps=(-4, -2, -1, 1, 2, 4), rounds=3):
    best = worst_ulp(c)
    for _ in range(rounds):
        improved = False
        for i in range(len(c)):
            for d in steps:
                cc = list(c)
                cc[i] = np.array([c[i].view(np.int32) + d], dtype=np.int32).view(np.float32)[0]
                w = worst_ulp(cc)
                if w < best:
                    best, c, improved = w, cc, True
        if not improved:
            break
    return c, best


if __name__ == "__main__":
    c, worst = nudge(lawson())
    for i, v in enumerate(c):
        print(f"c{i} = {np.format_float_positional(v, unique=True)}")
    print(f"worst error over every mantissa, e = -1, 0, 1: {worst:.3f} ulp")
