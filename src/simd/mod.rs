//! The fast CPU path's drivers and arithmetic: f32 on every core (rayon), in SIMD-friendly
//! chunks, deterministic. The losses' CPU kernels (`src/losses/<loss>.rs`, their `cpu`
//! modules) plug into the two drivers, [`elementwise`] and [`rows`]; [`crate::cpu`] is the
//! public entry that picks them.

pub(crate) mod elementwise;
pub(crate) mod math;
pub(crate) mod rows;

use rayon::prelude::*;

use crate::error::{Error, Result};
use std::borrow::Cow;

use ndarray::ArrayViewD;

/// Elements per parallel task: a block of the elementwise family, or about the size of a
/// group of rows of the row-wise family (at least one row). 64 Ki elements is 256 KiB of
/// each input, large enough that scheduling costs nothing and small enough that even 2^20
/// elements give every core several tasks.
pub(crate) const BLOCK: usize = 1 << 16;

/// Outputs of at least this many elements (64 MiB of f32, far beyond any core's L2 and most
/// L3 shares) are written with streaming stores ([`store_chunk`]): they go to memory without
/// the read of each cache line that an ordinary store's write-allocate costs, a quarter of an
/// elementwise loss's memory traffic. Smaller outputs are written as usual, so that a caller who
/// reads them next finds them in cache (`docs/TUNING.md`, "`ln` with seven coefficients, and
/// streaming stores").
pub(crate) const STREAM_MIN: usize = 1 << 24;

/// Whether outputs of `n` elements are streamed ([`STREAM_MIN`]).
#[inline(always)]
pub(crate) fn streams(n: usize) -> bool {
    #[cfg(test)]
    if FORCE_STREAM.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    n >= STREAM_MIN
}

/// Makes [`streams`] answer true at any size in unit tests, so that they can compare the
/// streamed outputs' bits with the ordinary stores' on small arrays.
#[cfg(test)]
pub(crate) static FORCE_STREAM: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Writes `src` over `dst` with streaming (non-temporal) stores where the CPU has them and `dst`
/// is 16-byte aligned, else with ordinary ones; the same values either way. A task that
/// streams ends with [`store_fence`].
#[inline(always)]
pub(crate) fn store_chunk(dst: &mut [f32; CHUNK], src: &[f32; CHUNK]) {
    #[cfg(target_arch = "x86_64")]
    if dst.as_ptr().align_offset(16) == 0 {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
        let d = dst.as_mut_ptr();
        for k in (0..CHUNK).step_by(4) {
            // SAFETY: SSE is part of x86_64; `k + 4 ≤ CHUNK`, so both 4-element accesses lie
            // inside the arrays, and `d + k` is 16-byte aligned (`d` is, and `k` is a multiple
            // of 4 elements).
            unsafe { _mm_stream_ps(d.add(k), _mm_loadu_ps(src.as_ptr().add(k))) };
        }
        return;
    }
    *dst = *src;
}

/// Orders the streaming stores of [`store_chunk`] before every later store, so the results
/// are visible to the thread that collects the task (streaming stores are weakly ordered on
/// x86, not covered by the release of rayon's completion).
#[inline(always)]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Forces the baseline (SSE2) or the AVX2 build in unit tests (`crate::cpu`'s).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) static FORCE_BASELINE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// Makes [`avx512`] answer false in unit tests (the AVX2 build where the CPU has AVX2).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) static FORCE_NO_AVX512: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Turns the elementwise driver's ordinary-chunk form off in unit tests
/// (`elementwise::Element::ordinary`), so that they can compare its bits with the general form's.
#[cfg(test)]
pub(crate) static FORCE_NO_ORDINARY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs `f` on every task, in parallel where there is more than one, and returns the results
/// in task order (the order the caller then reduces them in, whatever ran where).
fn run_tasks<T: Send, R: Send>(tasks: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if tasks.len() <= 1 {
        tasks.into_iter().map(f).collect()
    } else {
        tasks.into_par_iter().map(f).collect()
    }
}

/// Whether to run the AVX2 builds of the hot loops: where the CPU has AVX2 (the answer is
/// cached by the standard library). Unit tests can force the baseline (SSE2) build.
#[cfg(target_arch = "x86_64")]
#[inline]
fn avx2() -> bool {
    #[cfg(test)]
    if FORCE_BASELINE.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

/// Whether to run the AVX-512 builds of the hot loops: where the CPU has AVX-512 F, VL, BW
/// and DQ (and [`avx2`] is true). The operations are the same IEEE ones in the same order
/// (no FMA), so the results are bit-identical to the AVX2 and baseline builds'; the gain is
/// 32 vector registers, mask registers for the selects and embedded broadcasts, which
/// matter for the polynomial `exp`/`ln` of the BCE and cross-entropy losses.
#[cfg(target_arch = "x86_64")]
#[inline]
fn avx512() -> bool {
    #[cfg(test)]
    if FORCE_NO_AVX512.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// Elements of the chunks the hot loops work on: a chunk is computed into fixed-size arrays
/// (which the vectoriser turns into SIMD), then summed by [`Acc::add_chunk`].
pub(crate) const CHUNK: usize = 64;
/// Lanes of the f32 partial sums (two SSE or one AVX register).
pub(crate) const LANES: usize = 8;

/// A sum of f32 terms, accurate and in a fixed order: each chunk of [`CHUNK`] terms is summed
/// in f32 over [`LANES`] lanes of `CHUNK / LANES = 8` terms (at most 7 roundings, a relative
/// error ≤ 7 · 2^-24 of the lane's terms' magnitudes), and the lanes are added into f64
/// lanes, whose error over a million chunks is below 2^-30 relative. A row's tail is summed
/// as a chunk of its terms and zeros ([`Acc::add_first`]); the elementwise driver's terms
/// outside whole chunks go straight into f64 ([`Acc::add`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Acc {
    lanes: [f64; LANES],
    rest: f64,
}

impl Acc {
    /// Adds the `CHUNK` terms of `v`.
    #[inline(always)]
    pub(crate) fn add_chunk(&mut self, v: &[f32; CHUNK]) {
        let mut s = [0.0f32; LANES];
        for g in v.chunks_exact(LANES) {
            for (s, &x) in s.iter_mut().zip(g) {
                *s += x;
            }
        }
        for (l, s) in self.lanes.iter_mut().zip(s) {
            *l += f64::from(s);
        }
    }

    /// Adds one term (the tail of a slice that is not a whole chunk).
    #[inline(always)]
    pub(crate) fn add(&mut self, v: f32) {
        self.rest += f64::from(v);
    }

    /// Adds the first `n` terms of `v` (a row's tail in a [`padded`] chunk) as a chunk whose
    /// other terms are 0: summed in the lanes as [`Acc::add_chunk`], so the tail's sums
    /// vectorise too (one at a time into f64, its 36 terms at C = 100 were a chain of
    /// dependent f64 additions as long as the rest of the row's sweep). The terms past `n`
    /// are replaced by 0 whatever they hold (NaN or ∞ from padding included).
    #[inline(always)]
    pub(crate) fn add_first(&mut self, v: &[f32; CHUNK], n: usize) {
        let mut m = [0.0f32; CHUNK];
        for (i, (m, &x)) in m.iter_mut().zip(v).enumerate() {
            *m = if i < n { x } else { 0.0 };
        }
        self.add_chunk(&m);
    }

    /// The sum: lanes pairwise, then the rest.
    pub(crate) fn total(&self) -> f64 {
        let l = &self.lanes;
        ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])) + self.rest
    }
}

/// `a · v`, except 0 where the weight `a` is 0, even if `v` is infinite (`0 · ∞` would be NaN):
/// a term with zero weight contributes nothing (softmax cross entropy).
#[inline(always)]
pub(crate) fn shift(a: f32, v: f32) -> f32 {
    if a == 0.0 { 0.0 } else { a * v }
}

/// [`shift`] in f64.
pub(crate) fn shift64(a: f64, v: f64) -> f64 {
    if a == 0.0 { 0.0 } else { a * v }
}

/// The maximum of `x` (−∞ for a row of −∞; NaN is skipped, as by `f64::max`, and then makes
/// a softmax's `S` NaN), over [`LANES`] lanes.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut groups = x.chunks_exact(LANES);
    for g in &mut groups {
        for (m, &v) in m.iter_mut().zip(g) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &v in m.iter().chain(groups.remainder()) {
        best = if v > best { v } else { best };
    }
    best
}

/// Views a slice of exactly `CHUNK` elements as an array (the range is always `CHUNK` long,
/// so the check folds away).
#[inline(always)]
pub(crate) fn chunk(s: &[f32], at: usize) -> &[f32; CHUNK] {
    s[at..at + CHUNK].try_into().expect("a chunk is CHUNK long")
}

/// A row's tail `v` (fewer than [`CHUNK`] values) at the front of a chunk, the rest `pad`.
/// A row kernel runs its fixed-size chunk loop on it (or, softmax cross entropy, 16-element
/// pieces of it as far as the tail reaches, [`lanes`]), which vectorises, and keeps the first
/// `v.len()` results: a loop over the tail's own elements does not vectorise, and at C = 1000
/// its 40 elements cost a fifth of the row (`docs/TUNING.md`, "Row tails"). The same
/// operations on each element and the same order of sums, so the same bits.
#[inline(always)]
pub(crate) fn padded(v: &[f32], pad: f32) -> [f32; CHUNK] {
    let mut a = [pad; CHUNK];
    a[..v.len()].copy_from_slice(v);
    a
}

/// The elements of a row's tail swept at a time where a kernel sweeps only as far as the tail
/// reaches (softmax cross entropy, distillation): two lane groups. (One alone, 8 elements, is
/// unrolled by LLVM and then not vectorised: twice the instructions of a whole padded chunk.)
pub(crate) const TAIL: usize = 2 * LANES;

/// The `N` elements of a chunk from `at` (`at + N ≤ CHUNK`) as an array: a row's tail is swept
/// [`TAIL`] elements at a time, as far as it reaches, instead of a whole padded chunk.
#[inline(always)]
pub(crate) fn lanes<const N: usize>(c: &[f32; CHUNK], at: usize) -> &[f32; N] {
    c[at..at + N]
        .try_into()
        .expect("a lane group is LANES long")
}

/// The mutable counterpart of [`lanes`].
#[inline(always)]
pub(crate) fn lanes_mut<const N: usize>(c: &mut [f32; CHUNK], at: usize) -> &mut [f32; N] {
    (&mut c[at..at + N])
        .try_into()
        .expect("a lane group is LANES long")
}

/// The mutable counterpart of [`chunk`].
#[inline(always)]
pub(crate) fn chunk_mut(s: &mut [f32], at: usize) -> &mut [f32; CHUNK] {
    (&mut s[at..at + CHUNK])
        .try_into()
        .expect("a chunk is CHUNK long")
}

/// Adds block (or row-group) sums in block order, so the result does not depend on which
/// thread ran what; the first block holding an out-of-domain probability holds the first one
/// in row-major order, reported as [`Error::OutOfDomain`].
pub(crate) fn ordered_sum(sums: Vec<std::result::Result<f64, usize>>, pred: &[f32]) -> Result<f64> {
    let mut sum = 0.0f64;
    for s in sums {
        match s {
            Ok(s) => sum += s,
            Err(index) => {
                return Err(Error::OutOfDomain {
                    what: "prediction",
                    index,
                    value: pred[index],
                    domain: "[0, 1]",
                });
            }
        }
    }
    Ok(sum)
}

/// An array's elements in row-major order: borrowed when it is contiguous, copied otherwise.
/// Every path that hands arrays to kernels (GPU uploads, the fast CPU path) goes through here.
pub(crate) fn contiguous<'b, T: Copy>(a: &'b ArrayViewD<'_, T>) -> Cow<'b, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}
