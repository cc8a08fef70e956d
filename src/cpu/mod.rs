//! The fast CPU path: the same losses, arguments and results as the GPU path, in f32 on every
//! core (rayon). It is what the benchmarks compare the GPU with; [`crate::reference`] stays
//! the oracle, and `tests/cpu.rs` tests this path against it like the GPU path.
//!
//! How it is fast, and still deterministic:
//! - **One pass per loss**: value and gradient together. A row-wise loss reads its row from
//!   memory once and then from cache (a row of 32000 classes is 125 KiB): softmax cross
//!   entropy takes the row maximum, then `exp(x − max)` (stored where the gradient goes) with
//!   the row's sums, then the gradient; the others need one sweep for their sums, or none.
//! - **Vectorised**: the hot loops are plain loops over fixed-size chunks of 64 elements, with
//!   the loss, the output mode and the options fixed at compile time (monomorphised; nothing
//!   is decided per element), and with `exp` and `ln` written as branch-free polynomials
//!   (`src/simd/math.rs`; the standard library's call libm one element at a time), so LLVM
//!   emits SIMD. On x86-64 CPUs with AVX2 the same loops run compiled for AVX2 (8 lanes
//!   instead of SSE2's 4), and with AVX-512 (F, VL, BW, DQ) compiled for that (32 vector
//!   registers: the polynomial `exp`/`ln` no longer reload their constants), chosen at run
//!   time; no FMA is used, so all three give the same bits.
//! - **Accurate accumulation**: a chunk's terms are summed in f32 over 8 lanes of 8 terms,
//!   then in f64; a block's or row's sum is an f64.
//! - **Deterministic**: the work is cut into blocks of [`BLOCK`] elements (elementwise family)
//!   or groups of whole rows of about as many elements (row-wise family) whatever the number
//!   of threads, and the blocks' f64 partial sums are added in block order, never in a
//!   reduction tree of run-time shape. The same inputs give the same bits with any
//!   `RAYON_NUM_THREADS`.
//!
//! Each loss's kernel is in its own file (`src/losses/<loss>.rs`, its `cpu` module, beside its
//! reference and its descriptor); `elementwise.rs` and `rows.rs` here are the two drivers.

mod elementwise;
mod rows;

use ndarray::ArrayViewMutD;

use crate::error::Result;
use crate::loss::{Loss, LossArgs, LossOutput};

/// The fast CPU path as a device: [`crate::Compute`] over [`compute`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

/// Elements per parallel task: a block of the elementwise family, or about the size of a
/// group of rows of the row-wise family (at least one row). 64 Ki elements is 256 KiB of
/// each input, large enough that scheduling costs nothing and small enough that even 2^20
/// elements give every core several tasks.
pub const BLOCK: usize = crate::simd::BLOCK;

/// Computes `loss` on the CPU in f32 on every core: the value (`Mean`, `Sum`) or per-element
/// (elementwise family) or per-row (row-wise family) losses (`None`), and the gradient unless
/// `args.want_grad` is false.
///
/// The semantics are exactly those of [`crate::reference::compute`] (the formulas of
/// [`Loss`], the reductions of [`crate::Reduction`], NaN propagation, ignored rows, the
/// `D = 0` rule, broadcast weights, the upstream gradient), computed in f32 with f64
/// accumulation; the results agree with the reference to f32 rounding (`tests/cpu.rs` states
/// the tolerances). The value is summed in a fixed order, so the same inputs give bit-identical
/// results whatever the number of threads (`RAYON_NUM_THREADS`).
///
/// Inputs that are not contiguous in row-major order are copied first.
///
/// # Shapes
/// As [`LossArgs`]: the gradient has the prediction's shape; the per-element losses the
/// prediction's shape, the per-row losses [`LossArgs::row_shape`].
///
/// # Errors
/// The reference's, in the same order: everything [`LossArgs::validate`] rejects; then
/// [`crate::Error::ClassOutOfRange`] for a class index neither in `[0, C)` nor `ignore_index`
/// (the first row in row-major order), and [`crate::Error::OutOfDomain`] for a BCE or
/// categorical cross entropy probability outside [0, 1] (the first one in row-major order;
/// NaN is not out of domain).
///
/// ```
/// use ndarray::ArrayD;
/// use wgpu_loss::{Loss, LossArgs, cpu};
///
/// let pred = ArrayD::<f32>::from_elem(vec![4, 1000], 0.5);
/// let target = ArrayD::<f32>::zeros(vec![4, 1000]);
/// let out = cpu::compute(&Loss::Mse, &LossArgs::new(pred.view(), target.view()))?;
/// assert_eq!(out.value, Some(0.25));
/// assert_eq!(out.grad.unwrap()[[0, 0]], 2.0 * 0.5 / 4000.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn compute(loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    if loss.is_row_wise() {
        rows::compute(loss, args, None)
    } else {
        elementwise::compute(loss, args, None)
    }
}

/// [`compute`] with the gradient written into the caller's `grad` instead of a fresh array:
/// the same value, per-element or per-row losses and gradient, bit for bit, with
/// [`LossOutput::grad`] `None`.
///
/// A fresh gradient is a fresh allocation, and the operating system maps its pages in (and
/// zeroes them) on first touch, inside the timed loop; for the elementwise losses at 2^24
/// elements and more that costs about as much as the loss itself. A training loop that keeps
/// its gradient buffer from step to step pays it once. The formulas are those of [`Loss`],
/// the semantics those of [`crate::reference::compute`], as for [`compute`].
///
/// `grad` may hold anything: every element is written (0 for an ignored row, and everywhere
/// when the mean's divisor `D` is 0). A view that is not contiguous in row-major order is
/// written through a temporary array.
///
/// # Shapes
/// As [`LossArgs`]; `grad` has the prediction's shape.
///
/// # Errors
/// Those of [`compute`], in the same order; then [`crate::Error::InvalidOption`] for loss-only
/// arguments (`args.want_grad` false: use [`compute`]) and [`crate::Error::ShapeMismatch`]
/// (`what: "grad"`) for a `grad` not shaped like the prediction. Both of these leave `grad`
/// untouched, as does every error of [`LossArgs::validate`] and the class-index range check;
/// after an [`crate::Error::OutOfDomain`] its contents are unspecified.
///
/// ```
/// use ndarray::ArrayD;
/// use wgpu_loss::{Loss, LossArgs, cpu};
///
/// let pred = ArrayD::<f32>::from_elem(vec![4, 1000], 0.5);
/// let target = ArrayD::<f32>::zeros(vec![4, 1000]);
/// let mut grad = ArrayD::<f32>::zeros(vec![4, 1000]); // allocated once, reused every step
/// let out = cpu::compute_into(&Loss::Mse, &LossArgs::new(pred.view(), target.view()), grad.view_mut())?;
/// assert_eq!(out.value, Some(0.25));
/// assert_eq!(out.grad, None);
/// assert_eq!(grad[[0, 0]], 2.0 * 0.5 / 4000.0);
/// # Ok::<(), wgpu_loss::Error>(())
/// ```
pub fn compute_into(
    loss: &Loss,
    args: &LossArgs<'_>,
    grad: ArrayViewMutD<'_, f32>,
) -> Result<LossOutput<f32>> {
    let mut direct = |slice: &mut [f32]| {
        if loss.is_row_wise() {
            rows::compute(loss, args, Some(slice))
        } else {
            elementwise::compute(loss, args, Some(slice))
        }
    };
    crate::loss::into_checked(loss, args, grad, || compute(loss, args), Some(&mut direct))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::sync::atomic::Ordering;

    use ndarray::ArrayD;

    use crate::loss::{Loss, LossArgs, LossOutput, Reduction};

    use crate::simd::{FORCE_BASELINE, FORCE_NO_AVX512};

    fn bits(o: &LossOutput<f32>) -> Vec<u32> {
        let mut v: Vec<u32> = o.value.iter().map(|v| v.to_bits()).collect();
        for a in [&o.losses, &o.grad, &o.lse].into_iter().flatten() {
            v.extend(a.iter().map(|x| x.to_bits()));
        }
        v
    }

    /// `loss` with the elementwise driver's ordinary-chunk form off and on: the same bits, for
    /// every reduction, with and without `weight`, over `p` with `specials` (index,
    /// prediction, target) written in. The NaN rule still holds with the ordinary form on: as
    /// many NaN per-element losses as NaN inputs.
    fn ordinary_agrees(loss: &Loss, mut p: ArrayD<f32>, specials: &[(usize, f32, f32)]) {
        use crate::simd::FORCE_NO_ORDINARY;
        let n = p.len();
        let mut t = crate::synthetic::uniform(&[n], 0.0, 1.0, 12);
        for &(i, pv, tv) in specials {
            p[i] = pv;
            t[i] = tv;
        }
        let nans = specials
            .iter()
            .filter(|s| s.1.is_nan() || s.2.is_nan())
            .count();
        let w = crate::synthetic::uniform(&[n], 0.0, 2.0, 13);
        for weighted in [false, true] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let mut args = LossArgs::new(p.view(), t.view()).reduction(reduction);
                if weighted {
                    args = args.weight(w.view());
                }
                FORCE_NO_ORDINARY.store(true, Ordering::Relaxed);
                let general = super::compute(loss, &args).unwrap();
                FORCE_NO_ORDINARY.store(false, Ordering::Relaxed);
                let fast = super::compute(loss, &args).unwrap();
                let what = format!("{}, {reduction:?}, weighted {weighted}", loss.name());
                assert_eq!(bits(&general), bits(&fast), "{what}");
                if reduction == Reduction::None {
                    let nan = fast
                        .losses
                        .as_ref()
                        .map(|l| l.iter().filter(|v| v.is_nan()).count());
                    assert_eq!(nan, Some(nans), "{what}: the NaN elements' losses");
                }
            }
        }
    }

    /// The batch of [`ordinary_agrees`]: 40 chunks of 64 and a tail, `lo..hi` times a second
    /// uniform in [0, 1] (every mantissa bit in play: the uniforms alone are multiples of
    /// 2^-24, whose `1 − p` is exact and would hide `ln_1m`'s correction).
    fn batch(lo: f32, hi: f32) -> ArrayD<f32> {
        let n = 40 * 64 + 13;
        crate::synthetic::uniform(&[n], lo, hi, 11) * crate::synthetic::uniform(&[n], 0.0, 1.0, 14)
    }

    /// BCE's ordinary chunks (`Element::ordinary`: no special value in the chunk) give the
    /// same bits as the general form, a few chunks holding one of 0, 1, a subnormal, NaN (as
    /// prediction or target), or the values next to 1 and at `f32::MIN_POSITIVE`.
    #[test]
    fn bce_ordinary_chunks_agree_with_the_general_form_bit_for_bit() {
        let below_one = f32::from_bits(1.0f32.to_bits() - 1);
        let specials = [
            (64 * 3 + 5, 0.0, 0.3),
            (64 * 7, 1.0, 0.6),
            (64 * 9 + 63, 1e-40, 1.0),
            (64 * 12 + 1, f32::NAN, 0.5),
            (64 * 15 + 2, 0.4, f32::NAN),
            (64 * 20 + 7, below_one, 0.0),
            (64 * 21 + 8, f32::MIN_POSITIVE, 1.0),
            (40 * 64 + 12, 0.0, 0.0),
        ];
        ordinary_agrees(&Loss::Bce, batch(0.0, 1.0), &specials);
    }

    /// Outputs written by streaming stores (`simd::store_chunk`, forced at a small size) hold
    /// the same bits as ordinary stores, for every elementwise loss and reduction, into a
    /// fresh gradient and into a caller's, 16-byte aligned or not (the unaligned one takes
    /// ordinary stores), over whole chunks and a tail.
    #[test]
    fn streaming_stores_agree_bit_for_bit() {
        use crate::losses::{Family, def};
        use crate::simd::FORCE_STREAM;
        let n = 40 * 64 + 13;
        let x = crate::synthetic::uniform(&[n], 0.0, 1.0, 21);
        let t = crate::synthetic::uniform(&[n], 0.0, 1.0, 22);
        let mut buf = vec![0.0f32; n + 4];
        for loss in Loss::all_default() {
            if !matches!(def(&loss).family(), Family::Elementwise(_)) {
                continue;
            }
            for reduction in [Reduction::Mean, Reduction::None] {
                let args = LossArgs::new(x.view(), t.view()).reduction(reduction);
                let mut runs = Vec::new();
                for stream in [false, true] {
                    FORCE_STREAM.store(stream, Ordering::Relaxed);
                    runs.push(bits(&super::compute(&loss, &args).unwrap()));
                    for offset in 0..4 {
                        let grad = &mut buf[offset..offset + n];
                        let into = ndarray::ArrayViewMut::from_shape(vec![n], grad).unwrap();
                        let out = super::compute_into(&loss, &args, into).unwrap();
                        let mut b = bits(&out);
                        b.extend(buf[offset..offset + n].iter().map(|v| v.to_bits()));
                        runs.push(b);
                    }
                }
                FORCE_STREAM.store(false, Ordering::Relaxed);
                let what = format!("{}, {reduction:?}", loss.name());
                assert!(runs[1..5].iter().all(|r| *r == runs[1]), "{what}: offsets");
                assert_eq!(runs[0..5], runs[5..10], "{what}: streamed");
            }
        }
    }

    /// The AVX-512, AVX2 and baseline builds give the same bits: the same operations in
    /// the same order, only more lanes per instruction.
    #[test]
    fn avx2_and_baseline_builds_agree_bit_for_bit() {
        let n = 3 * 4096 + 77;
        let v = |seed: u64, lo: f32, hi: f32| -> ArrayD<f32> {
            crate::synthetic::uniform(&[n / 7, 7], lo, hi, seed)
        };
        let (x, t, p) = (v(1, -30.0, 30.0), v(2, 0.0, 1.0), v(3, 0.0, 1.0));
        let k = crate::synthetic::classes(&[n / 7], 7, 4);
        let w = crate::synthetic::uniform(&[7], 0.0, 2.0, 5);
        let smooth = Loss::SoftmaxCrossEntropy {
            label_smoothing: 0.1,
            z_loss: 1e-3,
            ignore_index: -100,
            softcap: 0.0,
        };
        let capped = Loss::SoftmaxCrossEntropy {
            label_smoothing: 0.1,
            z_loss: 1e-3,
            ignore_index: -100,
            softcap: 20.0,
        };
        let cases: Vec<(Loss, LossArgs<'_>)> = vec![
            (Loss::Mse, LossArgs::new(x.view(), t.view())),
            (
                Loss::Huber { delta: 0.5 },
                LossArgs::new(x.view(), t.view()),
            ),
            (
                Loss::Bce,
                LossArgs::new(p.view(), t.view()).weight(w.view()),
            ),
            (
                Loss::BceWithLogits,
                LossArgs::new(x.view(), t.view()).pos_weight(w.view()),
            ),
            (
                Loss::focal().build().unwrap(),
                LossArgs::new(x.view(), t.view()),
            ),
            (
                Loss::CategoricalCrossEntropy,
                LossArgs::new(p.view(), t.view()),
            ),
            (smooth, LossArgs::new(x.view(), t.view()).weight(w.view())),
            (smooth, LossArgs::new(x.view(), k.view())),
            (capped, LossArgs::new(x.view(), k.view())),
            (capped, LossArgs::new(x.view(), k.view()).want_lse(true)),
            (smooth, LossArgs::new(x.view(), t.view()).want_lse(true)),
            (
                Loss::cosine_proximity().build().unwrap(),
                LossArgs::new(x.view(), t.view()),
            ),
        ];
        for (loss, args) in cases {
            for reduction in [Reduction::Mean, Reduction::None] {
                let args = args.clone().reduction(reduction);
                FORCE_BASELINE.store(true, Ordering::Relaxed);
                let base = super::compute(&loss, &args).unwrap();
                FORCE_BASELINE.store(false, Ordering::Relaxed);
                FORCE_NO_AVX512.store(true, Ordering::Relaxed);
                let mid = super::compute(&loss, &args).unwrap();
                FORCE_NO_AVX512.store(false, Ordering::Relaxed);
                let fast = super::compute(&loss, &args).unwrap();
                assert_eq!(bits(&base), bits(&mid), "{}", loss.name());
                assert_eq!(bits(&base), bits(&fast), "{}", loss.name());
            }
        }
    }
}
