//! The fast CPU path (`wgpu_loss::cpu`, f32 on every core) against the f64 reference, as the
//! GPU path is tested: every loss × reduction × size, the options, NaN, edge values,
//! determinism, and every error. No GPU is needed.
//!
//! Tolerances (fast CPU path in f32 against the reference in f64 on the same f32 inputs):
//! - **value**: relative error ≤ [`VALUE_RTOL`] = 1e-5, as for the GPU. Terms are computed in
//!   f32 (a few roundings plus `exp`/`ln` of ≤ 2 ulp each, `src/simd/math.rs` tests that), summed
//!   in f32 over 8 terms per lane (≤ 7 roundings) and then in f64, so the sum's relative error
//!   is about 10 · 2^-24 ≈ 6e-7 where the terms have one sign; cosine proximity's terms have
//!   either sign, and its value is compared on the scale of [`common::cosine_scales`].
//! - **elementwise gradient and per-element losses**: |cpu − ref| ≤ [`ARRAY_RTOL`] · max |ref| =
//!   1e-6 · max |ref|, as for the GPU: each element is a few f32 operations (≤ 4 roundings,
//!   one or two transcendentals), about 8 ulp of the largest value. BCE with logits' loss and
//!   gradient are differences of terms that can cancel, so its scale is at least those terms'
//!   ([`bce_with_logits_scales`]; it matters for a single element, as at rank 0).
//! - **row-wise gradient and per-row losses**: the same 1e-6 · max |ref| for every row length.
//!   The GPU's `row_array_rtol` widens with C because its row statistics are f32 sums over
//!   up to C/group terms whose rounding grows like √n; here the statistics (Σ exp, Σ wt, Σ wt·x,
//!   norms, dot products) are f32 only over 8 terms and f64 beyond, so their relative error
//!   stays about 10 · 2^-24 whatever C is, and an element adds its own few roundings. Cosine
//!   proximity's results, differences of larger terms, are compared on the scales of
//!   [`common::cosine_scales`], as for the GPU, and the Jensen–Shannon divergence's on those of
//!   [`common::jsd_scales`] (errors relative to the logs `ln P`, `ln Q`, `ln M`).
//!
//! NaN must match NaN, and an infinity the same infinity. Observed on the reference machine:
//! values within 2.4e-7 (cosine; the others 8e-8), arrays within 2e-7 of their scale.

#[allow(unused_macros)]
#[path = "gpu/common.rs"]
mod common;

use ndarray::{ArrayD, Axis, IxDyn};
use wgpu_loss::{
    Error, Loss, LossArgs, LossOutput, Reduction, Upstream, cpu, reference, synthetic,
};

use common::{
    assert_infinite_logit_pattern, assert_ulps, class_rows, cosine_scale_rows, cosine_scales,
    finite_max, infinite_logit_rows, jsd_scales, logits, prob_rows, probabilities, seed_for,
};

/// Loss value: relative tolerance (see the module docs).
const VALUE_RTOL: f64 = 1e-5;
/// Gradient and per-element (per-row) losses: tolerance relative to the largest magnitude.
const ARRAY_RTOL: f64 = 1e-6;

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

/// Element counts of the elementwise matrix: one, below a chunk of 64 and odd, a block's
/// worth plus a tail, and about a million (16 blocks of 65536 and a partial one).
const SIZES: [usize; 4] = [1, 255, 4097, 1_000_003];

/// Row lengths of the row-wise matrix: one class, fewer than a chunk of 64, a chunk and a
/// half, a thousand (chunks and a tail), a vocabulary (two rows per parallel task).
const COLS: [usize; 5] = [1, 3, 33, 1000, 32000];

/// The scales results are compared on (`None`: the reference's own magnitude).
#[derive(Clone, Copy, Debug, Default)]
struct Scales {
    grad: Option<f64>,
    losses: Option<f64>,
    value: Option<f64>,
    /// Added to [`ARRAY_RTOL`] ([`common::softcap_rtol`]).
    extra_rtol: f64,
}

/// The scales for `loss`: cosine proximity's from [`cosine_scales`], BCE with logits' from
/// [`bce_with_logits_scales`], the Jensen–Shannon divergence's from [`jsd_scales`], a capped
/// softmax's [`common::softcap_rtol`], else none.
fn scales(loss: &Loss, args: &LossArgs<'_>) -> Scales {
    match *loss {
        Loss::SoftmaxCrossEntropy { .. } => Scales {
            extra_rtol: common::softcap_rtol(loss, args),
            ..Scales::default()
        },
        Loss::BceWithLogits => bce_with_logits_scales(args),
        Loss::CosineProximity { eps, .. } => {
            let (grad, losses, value) = cosine_scales(f64::from(eps), args);
            Scales {
                grad: Some(grad),
                losses: Some(losses),
                value: Some(value),
                extra_rtol: 0.0,
            }
        }
        Loss::Jsd {
            beta, temperature, ..
        } => {
            let (grad, losses, value) = jsd_scales(f64::from(beta), f64::from(temperature), args);
            Scales {
                grad: Some(grad),
                losses: Some(losses),
                value: Some(value),
                extra_rtol: 0.0,
            }
        }
        _ => Scales::default(),
    }
}

/// BCE with logits' per-element loss `w[(1 − t) x + lw·sp]` and gradient `c·w(lw σ − q t)`
/// (`lw = 1 + (q − 1) t`, `sp = softplus(−x)`, `c` the upstream times 1/N for the mean) are
/// differences of terms that cancel (for `x ≪ 0`, and where `σ ≈ t`): each term carries its
/// own rounding, so the error is relative to the terms, `max_k` of `w(|(1 − t) x| + |lw| sp)`
/// and `|c| w (|lw| σ + q |t|)`. With many elements `max |ref|` is larger anyway; a single
/// element (rank 0) can cancel to far below its terms.
fn bce_with_logits_scales(args: &LossArgs<'_>) -> Scales {
    let flat = |a: Option<&ndarray::ArrayViewD<'_, f32>>| -> Vec<f64> {
        a.map_or(vec![1.0], |a| a.iter().map(|&v| f64::from(v)).collect())
    };
    let (w, q) = (flat(args.weight.as_ref()), flat(args.pos_weight.as_ref()));
    let n = args.pred.len();
    let up: Vec<f64> = match &args.upstream {
        Upstream::Array(g) => g.iter().map(|&v| f64::from(v)).collect(),
        Upstream::Scalar(g) => vec![f64::from(*g)],
        Upstream::Ones => vec![1.0],
        other => panic!("an upstream this test does not know: {other:?}"),
    };
    let mean = if args.reduction == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    let Some(t) = args.target.dense() else {
        return Scales::default();
    };
    let (mut grad, mut losses) = (0.0f64, 0.0f64);
    for (k, (&x, &t)) in args.pred.iter().zip(t.iter()).enumerate() {
        let (x, t) = (f64::from(x), f64::from(t));
        let (wk, qk) = (w[k % w.len()], q[k % q.len()]);
        let lw = 1.0 + (qk - 1.0) * t;
        let sigma = 1.0 / (1.0 + (-x).exp());
        let sp = (-x.abs()).exp().ln_1p() + (-x).max(0.0);
        let c = up[k % up.len()].abs() * mean;
        if (c * wk * (lw.abs() * sigma + qk * t.abs())).is_finite() {
            grad = grad.max(c * wk * (lw.abs() * sigma + qk * t.abs()));
        }
        if (wk * ((1.0 - t) * x).abs() + wk * lw.abs() * sp).is_finite() {
            losses = losses.max(wk * (((1.0 - t) * x).abs() + lw.abs() * sp));
        }
    }
    Scales {
        grad: Some(grad),
        losses: Some(losses),
        value: None,
        extra_rtol: 0.0,
    }
}

/// Asserts `got` ≈ `want` elementwise within `(ARRAY_RTOL + extra) · scale`, naming the first
/// offender.
#[track_caller]
fn assert_array(got: &ArrayD<f32>, want: &ArrayD<f64>, scale: Option<f64>, extra: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = finite_max(want).max(scale.unwrap_or(0.0));
    let tol = (ARRAY_RTOL + extra) * scale;
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let g = f64::from(g);
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol
        };
        assert!(
            ok,
            "{what}: element {i}: fast CPU {g:e}, reference {w:e}, |diff| {:e} > tolerance {tol:e}",
            (g - w).abs()
        );
    }
}

/// Asserts a fast CPU result matches the reference's (value, losses, gradient, count).
#[track_caller]
fn assert_close(got: &LossOutput<f32>, want: &LossOutput<f64>, s: Scales, what: &str) {
    assert_eq!(got.counted, want.counted, "{what}: counted");
    match (got.value, want.value) {
        (Some(g), Some(w)) => {
            let g = f64::from(g);
            if w.is_nan() {
                assert!(g.is_nan(), "{what}: value: fast CPU {g:e}, reference NaN");
            } else if w.is_infinite() {
                assert_eq!(g, w, "{what}: value");
            } else {
                let floor = f64::from(f32::MIN_POSITIVE).max(VALUE_RTOL * s.value.unwrap_or(0.0));
                let rel = (g - w).abs() / w.abs().max(f64::MIN_POSITIVE);
                assert!(
                    rel <= VALUE_RTOL || (g - w).abs() <= floor,
                    "{what}: value: fast CPU {g:e}, reference {w:e}, relative error {rel:e}"
                );
            }
        }
        (None, None) => {}
        (g, w) => panic!("{what}: value on one side only: fast CPU {g:?}, reference {w:?}"),
    }
    match (&got.losses, &want.losses) {
        (Some(g), Some(w)) => {
            assert_array(g, w, s.losses, s.extra_rtol, &format!("{what}: losses"))
        }
        (None, None) => {}
        _ => panic!("{what}: per-element losses on one side only"),
    }
    match (&got.grad, &want.grad) {
        (Some(g), Some(w)) => {
            assert_array(g, w, s.grad, s.extra_rtol, &format!("{what}: gradient"))
        }
        (None, None) => {}
        _ => panic!("{what}: gradient on one side only"),
    }
    // The log-sum-exp, absolute against max(max |lse|, 1) (as the GPU tests').
    match (&got.lse, &want.lse) {
        (Some(g), Some(w)) => assert_array(
            g,
            w,
            Some(1.0),
            s.extra_rtol,
            &format!("{what}: log-sum-exp"),
        ),
        (None, None) => {}
        _ => panic!("{what}: log-sum-exp on one side only"),
    }
}

/// Runs `args` on the fast CPU path and the reference and compares them.
#[track_caller]
fn check(loss: &Loss, args: &LossArgs<'_>, what: &str) -> LossOutput<f32> {
    let got = cpu::compute(loss, args).unwrap_or_else(|e| panic!("{what}: fast CPU failed: {e}"));
    let want =
        reference::compute(loss, args).unwrap_or_else(|e| panic!("{what}: reference failed: {e}"));
    assert_close(&got, &want, scales(loss, args), what);
    got
}

/// The elementwise losses with default options.
fn elementwise_losses() -> impl Iterator<Item = Loss> {
    Loss::all_default().into_iter().filter(|l| !l.is_row_wise())
}

// ---------------------------------------------------------------------------------------------
// The elementwise family.
// ---------------------------------------------------------------------------------------------

/// Every reduction × [`SIZES`], seeded data of the loss's own distribution.
fn elementwise_matrix(loss: Loss) {
    for reduction in REDUCTIONS {
        for n in SIZES {
            let what = format!("{}/{}/{n}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[n], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            let out = check(&loss, &args, &what);
            assert_eq!(out.counted, n);
        }
    }
}

#[test]
fn mse_matrix() {
    elementwise_matrix(Loss::Mse);
}

#[test]
fn mae_matrix() {
    elementwise_matrix(Loss::Mae);
}

#[test]
fn huber_matrix() {
    elementwise_matrix(Loss::huber().delta(1.0).build().unwrap());
    for delta in [0.05f32, 2.5] {
        let what = format!("huber delta {delta}");
        let b = synthetic::batch(&Loss::Mse, &[70_001], seed_for(&what));
        let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
        check(&Loss::huber().delta(delta).build().unwrap(), &args, &what);
    }
}

#[test]
fn smooth_l1_matrix() {
    elementwise_matrix(Loss::smooth_l1().beta(1.0).build().unwrap());
    for beta in [0.0f32, 0.05, 2.5] {
        let what = format!("smooth l1 beta {beta}");
        let b = synthetic::batch(&Loss::Mse, &[70_001], seed_for(&what));
        let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
        check(&Loss::smooth_l1().beta(beta).build().unwrap(), &args, &what);
    }
}

#[test]
fn poisson_nll_matrix() {
    elementwise_matrix(Loss::poisson_nll().build().unwrap());
    for (log_input, full) in [(true, true), (false, false), (false, true)] {
        let loss = Loss::poisson_nll()
            .log_input(log_input)
            .full(full)
            .build()
            .unwrap();
        let what = format!("poisson-nll log_input {log_input} full {full}");
        // Rates for `log_input = false`: the log-rates' exponentials.
        let mut b = synthetic::batch(&loss, &[70_001], seed_for(&what));
        if !log_input {
            b.pred.mapv_inplace(f32::exp);
        }
        let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
        check(&loss, &args, &what);
    }
}

#[test]
fn kl_div_matrix() {
    elementwise_matrix(Loss::kl_div().build().unwrap());
    for log_target in [false, true] {
        let loss = Loss::kl_div().log_target(log_target).build().unwrap();
        let what = format!("kl-div log_target {log_target}");
        let mut b = synthetic::batch(&loss, &[70_001], seed_for(&what));
        // A tenth of the targets 0 (each contributes 0), or log-probabilities.
        for (k, t) in b.target.iter_mut().enumerate() {
            *t = match (log_target, k % 10) {
                (true, _) => t.ln(),
                (false, 0) => 0.0,
                _ => *t,
            };
        }
        for reduction in [Reduction::None, Reduction::BatchMean] {
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check(&loss, &args, &format!("{what} {}", reduction.name()));
        }
    }
}

#[test]
fn focal_matrix() {
    elementwise_matrix(Loss::focal().build().unwrap());
    for (alpha, gamma) in [(-1.0f32, 0.0f32), (0.6, 0.5), (0.25, 1.0), (0.9, 3.5)] {
        let loss = Loss::focal().alpha(alpha).gamma(gamma).build().unwrap();
        let what = format!("focal alpha {alpha} gamma {gamma}");
        let b = synthetic::batch(&loss, &[70_001], seed_for(&what));
        let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
        check(&loss, &args, &what);
    }
}

#[test]
fn bce_matrix() {
    elementwise_matrix(Loss::Bce);
}

#[test]
fn bce_with_logits_matrix() {
    elementwise_matrix(Loss::BceWithLogits);
}

/// Weights broadcast from the last dimension (7: not a divisor of a chunk; 5000: longer than
/// a weight tile), from two trailing dimensions, and of the full shape; `pos_weight` of a
/// different length than the weight; every reduction.
#[test]
fn weights_and_pos_weight() {
    for loss in [Loss::Bce, Loss::BceWithLogits] {
        for shape in [vec![20_011, 7], vec![3, 11, 5000], vec![150_001]] {
            let what = format!("weights/{}/{shape:?}", loss.name());
            let b = synthetic::batch(&loss, &shape, seed_for(&what));
            let last = &shape[shape.len() - 1..];
            let two = &shape[shape.len().saturating_sub(2)..];
            for w_shape in [last, two, &shape[..]] {
                let w = synthetic::uniform(w_shape, 0.0, 3.0, seed_for(&format!("{what}/w")));
                let q = synthetic::uniform(last, 0.0, 4.0, seed_for(&format!("{what}/q")));
                for reduction in REDUCTIONS {
                    let tag = format!("{what}/w {w_shape:?}/{}", reduction.name());
                    let mut args = LossArgs::new(b.pred.view(), b.target.view())
                        .reduction(reduction)
                        .weight(w.view());
                    check(&loss, &args, &tag);
                    if loss.takes_pos_weight() {
                        args = args.pos_weight(q.view());
                        check(&loss, &args, &format!("{tag}/pos_weight"));
                        let no_w = LossArgs::new(b.pred.view(), b.target.view())
                            .reduction(reduction)
                            .pos_weight(q.view());
                        check(&loss, &no_w, &format!("{tag}/pos_weight only"));
                    }
                }
            }
        }
    }
}

/// A scalar upstream for every reduction and an array for `None`; loss-only mode gives the
/// same value and losses, bit for bit, and no gradient.
#[test]
fn upstream_and_loss_only() {
    for loss in elementwise_losses() {
        for reduction in REDUCTIONS {
            let what = format!("upstream/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[70_003], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check(
                &loss,
                &args.clone().upstream(Upstream::Scalar(-2.5)),
                &format!("{what}/scalar"),
            );
            let only = check(
                &loss,
                &args.clone().loss_only(),
                &format!("{what}/loss only"),
            );
            assert!(only.grad.is_none());
            let full = cpu::compute(&loss, &args).unwrap();
            assert_eq!(only.value.map(f32::to_bits), full.value.map(f32::to_bits));
            assert_eq!(only.losses, full.losses);
        }
        let what = format!("upstream array/{}", loss.name());
        let b = synthetic::batch(&loss, &[17, 4001], seed_for(&what));
        let g = synthetic::uniform(&[17, 4001], -3.0, 3.0, seed_for(&format!("{what}/g")));
        let args = LossArgs::new(b.pred.view(), b.target.view())
            .reduction(Reduction::None)
            .upstream(Upstream::Array(g.view()));
        check(&loss, &args, &what);
        check(&loss, &args.loss_only(), &format!("{what}/loss only"));
    }
}

/// An element's loss and gradient do not depend on where it sits: in a whole chunk of 64
/// (the loss's chunk form, `Element::eval_chunk`, which may run its stages as separate loops)
/// or in a block's tail (`Element::eval`, one element at a time). The same data shifted by
/// `s` moves elements between chunks and the tail; with `Reduction::None` each element's
/// results are compared bit for bit, a NaN target among them.
#[test]
fn chunks_and_tails_agree_bit_for_bit() {
    let losses = elementwise_losses().chain([Loss::focal().gamma(3.0).build().unwrap()]);
    for loss in losses {
        let what = format!("chunks and tails/{}", loss.name());
        let n = 3 * 64 + 40;
        let mut b = synthetic::batch(&loss, &[n], seed_for(&what));
        b.target[[70]] = f32::NAN;
        let full = cpu::compute(
            &loss,
            &LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None),
        )
        .unwrap();
        let (fl, fg) = (full.losses.unwrap(), full.grad.unwrap());
        for shift in [1, 24, 63, 64, 65] {
            let (p, t) = (
                b.pred.slice(ndarray::s![shift..]),
                b.target.slice(ndarray::s![shift..]),
            );
            let args = LossArgs::new(p.into_dyn(), t.into_dyn()).reduction(Reduction::None);
            let out = cpu::compute(&loss, &args).unwrap();
            let (l, g) = (out.losses.unwrap(), out.grad.unwrap());
            for i in 0..n - shift {
                let k = i + shift;
                assert_eq!(
                    l[[i]].to_bits(),
                    fl[[k]].to_bits(),
                    "{what}: loss {k}, shift {shift}"
                );
                assert_eq!(
                    g[[i]].to_bits(),
                    fg[[k]].to_bits(),
                    "{what}: grad {k}, shift {shift}"
                );
            }
        }
    }
}

/// Rank 3 with odd lengths, rank 0; transposed and strided views (with a transposed weight)
/// give the bits of the same data made contiguous.
#[test]
fn ranks_and_views() {
    for loss in elementwise_losses() {
        for shape in [vec![3usize, 5, 7], vec![1, 1, 257], vec![], vec![1]] {
            let what = format!("shape {shape:?}/{}", loss.name());
            let b = synthetic::batch(&loss, &shape, seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
            let out = check(&loss, &args, &what);
            assert_eq!(out.grad.unwrap().shape(), &shape[..]);
        }
        let what = format!("views/{}", loss.name());
        let b = synthetic::batch(&loss, &[400, 190], seed_for(&what));
        let w = synthetic::uniform(&[40, 400], 0.0, 2.0, seed_for(&format!("{what}/w")));
        let (p, t) = (b.pred.t(), b.target.t());
        // A weight [400] (the last dimension of the transposed [190, 400]) with stride 40.
        let wt = w.t();
        let w_last = wt.index_axis(Axis(1), 3);
        let mut args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
        if loss.takes_weight() {
            args = args.weight(w_last.view());
        }
        let out = check(&loss, &args, &format!("{what}/transposed"));
        let (pc, tc, wc) = (
            p.as_standard_layout().into_owned(),
            t.as_standard_layout().into_owned(),
            w_last.as_standard_layout().into_owned(),
        );
        let mut argc = LossArgs::new(pc.view(), tc.view()).reduction(Reduction::None);
        if loss.takes_weight() {
            argc = argc.weight(wc.view());
        }
        let outc = cpu::compute(&loss, &argc).unwrap();
        assert_eq!(out.grad, outc.grad, "{what}");
        assert_eq!(out.losses, outc.losses, "{what}");
        let ps = b.pred.slice_axis(Axis(1), ndarray::Slice::new(0, None, 3));
        let ts = b
            .target
            .slice_axis(Axis(1), ndarray::Slice::new(0, None, 3));
        check(&loss, &LossArgs::new(ps, ts), &format!("{what}/strided"));
    }
}

/// NaN in the prediction or the target, in two different blocks, propagates to the value and
/// to its own element's loss and gradient only (BCE's clamps and MAE's sign would swallow it).
#[test]
fn nan_propagates_to_its_element_only() {
    for loss in elementwise_losses() {
        let what = format!("nan/{}", loss.name());
        let mut b = synthetic::batch(&loss, &[200_000], seed_for(&what));
        let (kp, kt) = (1234, 150_001);
        b.pred[[kp]] = f32::NAN;
        b.target[[kt]] = f32::NAN;
        for reduction in REDUCTIONS {
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            let out = check(&loss, &args, &format!("{what}/{}", reduction.name()));
            let grad = out.grad.unwrap();
            assert!(grad[[kp]].is_nan() && grad[[kt]].is_nan(), "{what}");
            assert_eq!(grad.iter().filter(|g| g.is_nan()).count(), 2, "{what}");
            match reduction {
                Reduction::None => {
                    let l = out.losses.unwrap();
                    assert_eq!(l.iter().filter(|v| v.is_nan()).count(), 2, "{what}");
                }
                _ => assert!(out.value.unwrap().is_nan(), "{what}"),
            }
        }
    }
}

/// Edge values: infinities, BCE at p = 0 and 1 (clamped) and subnormal p, BCE with logits at
/// ±100 and ±1e4 (no overflow), Huber exactly at δ, MAE at d = 0.
#[test]
fn edge_values() {
    let cases: Vec<(Loss, Vec<f32>, Vec<f32>)> = vec![
        (
            Loss::Mse,
            vec![f32::INFINITY, 1.0, 2.0, -3.0],
            vec![0.0, 0.0, 2.0, 1.0],
        ),
        (
            Loss::Mae,
            vec![f32::NEG_INFINITY, 1.0, 2.0, 0.5],
            vec![0.0, 1.0, 2.0, 0.0],
        ),
        (
            Loss::huber().delta(1.0).build().unwrap(),
            vec![f32::INFINITY, 1.0, -1.0, 0.25],
            vec![0.0, 0.0, 0.0, 0.0],
        ),
        (
            Loss::Bce,
            vec![
                0.0,
                1.0,
                0.0,
                1.0,
                1e-40,
                1.0 - f32::EPSILON / 2.0,
                0.5,
                1e-30,
            ],
            vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.0, 1.0, 1.0],
        ),
        (
            Loss::BceWithLogits,
            vec![100.0, -100.0, 1e4, -1e4, 0.0, 88.5, -88.5, 1e-20],
            vec![1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.3, 0.9],
        ),
    ];
    for (loss, p, t) in cases {
        let n = p.len();
        let (p, t) = (
            ArrayD::from_shape_vec(IxDyn(&[n]), p).unwrap(),
            ArrayD::from_shape_vec(IxDyn(&[n]), t).unwrap(),
        );
        for reduction in REDUCTIONS {
            let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
            check(
                &loss,
                &args,
                &format!("edges/{}/{}", loss.name(), reduction.name()),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The row-wise family.
// ---------------------------------------------------------------------------------------------

/// The row-wise inputs of the matrix.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Cce,
    SoftmaxProbs,
    SoftmaxI64,
    SoftmaxI32,
    Cosine,
    /// Distillation at T = 2: student logits against teacher logits.
    Distill,
    /// Jensen–Shannon divergence (β, T): student logits against teacher logits.
    Jsd(f32, f32),
}

/// Rows of a matrix case with rows of `c`: about 2^18 elements, at least 3 rows, so that
/// every case has several parallel tasks of about 65536 elements.
fn rows_for(c: usize) -> usize {
    ((1 << 18) / c).max(3)
}

/// Seeded inputs of one [`Kind`]: the loss, the prediction and the target.
struct RowData {
    loss: Loss,
    x: ArrayD<f32>,
    t: RowT,
}

/// A row-wise target.
enum RowT {
    Dense(ArrayD<f32>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
}

impl RowData {
    /// Seeded inputs of `kind`, `[b, c]`.
    fn new(kind: Kind, b: usize, c: usize, what: &str) -> RowData {
        let (s1, s2) = (
            seed_for(&format!("{what}/x")),
            seed_for(&format!("{what}/t")),
        );
        let (loss, x, t) = match kind {
            Kind::Cce => (
                Loss::CategoricalCrossEntropy,
                prob_rows(&[b, c], s1),
                RowT::Dense(prob_rows(&[b, c], s2)),
            ),
            Kind::SoftmaxProbs => (
                Loss::softmax_cross_entropy().build().unwrap(),
                logits(&[b, c], s1),
                RowT::Dense(prob_rows(&[b, c], s2)),
            ),
            Kind::SoftmaxI64 => (
                Loss::softmax_cross_entropy().build().unwrap(),
                logits(&[b, c], s1),
                RowT::I64(class_rows(&[b], c, s2)),
            ),
            Kind::SoftmaxI32 => (
                Loss::softmax_cross_entropy().build().unwrap(),
                logits(&[b, c], s1),
                RowT::I32(class_rows(&[b], c, s2).mapv(|v| v as i32)),
            ),
            Kind::Cosine => (
                Loss::cosine_proximity().build().unwrap(),
                synthetic::uniform(&[b, c], -3.0, 3.0, s1),
                RowT::Dense(synthetic::uniform(&[b, c], -3.0, 3.0, s2)),
            ),
            Kind::Distill => (
                Loss::distill().temperature(2.0).build().unwrap(),
                logits(&[b, c], s1),
                RowT::Dense(logits(&[b, c], s2)),
            ),
            Kind::Jsd(beta, t) => (
                Loss::jsd().beta(beta).temperature(t).build().unwrap(),
                logits(&[b, c], s1),
                RowT::Dense(logits(&[b, c], s2)),
            ),
        };
        RowData { loss, x, t }
    }

    /// Arguments with `Mean`, no weights, upstream 1.
    fn args(&self) -> LossArgs<'_> {
        match &self.t {
            RowT::Dense(t) => LossArgs::new(self.x.view(), t.view()),
            RowT::I64(k) => LossArgs::new(self.x.view(), k.view()),
            RowT::I32(k) => LossArgs::new(self.x.view(), k.view()),
        }
    }
}

/// Every reduction × [`COLS`] for one kind of input.
fn row_matrix(kind: Kind) {
    for c in COLS {
        let b = rows_for(c);
        for reduction in REDUCTIONS {
            let what = format!("{kind:?}/C={c}/B={b}/{}", reduction.name());
            let d = RowData::new(kind, b, c, &what);
            let out = check(&d.loss, &d.args().reduction(reduction), &what);
            assert_eq!(out.counted, b, "{what}");
        }
    }
}

#[test]
fn categorical_cross_entropy_matrix() {
    row_matrix(Kind::Cce);
}

#[test]
fn softmax_cross_entropy_probs_matrix() {
    row_matrix(Kind::SoftmaxProbs);
}

#[test]
fn softmax_cross_entropy_i64_matrix() {
    row_matrix(Kind::SoftmaxI64);
}

#[test]
fn softmax_cross_entropy_i32_matrix() {
    row_matrix(Kind::SoftmaxI32);
}

#[test]
fn cosine_proximity_matrix() {
    row_matrix(Kind::Cosine);
}

#[test]
fn distill_matrix() {
    row_matrix(Kind::Distill);
}

/// β ∈ {0, 0.1, 0.5, 1} × T ∈ {1, 2, 0.5} (not every pair: four of them).
#[test]
fn jsd_matrix() {
    for (beta, t) in [(0.5, 1.0), (0.0, 2.0), (0.1, 0.5), (1.0, 1.0)] {
        row_matrix(Kind::Jsd(beta, t));
    }
}

fn sce(label_smoothing: f32, z_loss: f32, ignore_index: i64) -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(label_smoothing)
        .z_loss(z_loss)
        .ignore_index(ignore_index)
        .build()
        .unwrap()
}

/// `a` with `reduction` and the class weights `w`.
fn with_options<'a>(
    a: LossArgs<'a>,
    reduction: Reduction,
    w: Option<ndarray::ArrayViewD<'a, f32>>,
) -> LossArgs<'a> {
    let a = a.reduction(reduction);
    match w {
        Some(w) => a.weight(w),
        None => a,
    }
}

/// Softmax cross entropy's options, alone and together: class weights, label smoothing,
/// z-loss, soft-capping, ignored rows (every seventh, with NaN logits that must never be read), for
/// probability targets and i32/i64 class indices, every reduction, a few row lengths.
#[test]
fn softmax_options() {
    for c in [3usize, 33, 1000, 32000] {
        let b = rows_for(c).min(2000);
        let what = format!("softmax options/C={c}");
        let mut x = logits(&[b, c], seed_for(&format!("{what}/x")));
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        let mut k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
        for r in (3..b).step_by(7) {
            k[r] = -7;
            x.index_axis_mut(Axis(0), r).fill(f32::NAN);
        }
        let k32 = k.mapv(|v| v as i32);
        let xc = logits(&[b, c], seed_for(&format!("{what}/x clean")));
        let w = synthetic::uniform(&[c], 0.0, 3.0, seed_for(&format!("{what}/w")));
        for (eps, z, cap) in [
            (0.0, 0.0, 0.0),
            (0.1, 0.0, 0.0),
            (0.0, 1e-3, 0.0),
            (0.25, 1e-2, 0.0),
            (0.0, 0.0, 3.0),
            (0.1, 1e-3, 30.0),
        ] {
            let loss = Loss::softmax_cross_entropy()
                .label_smoothing(eps)
                .z_loss(z)
                .ignore_index(-7)
                .softcap(cap)
                .build()
                .unwrap();
            for weighted in [false, true] {
                for reduction in REDUCTIONS {
                    let tag = format!(
                        "{what}/eps {eps}/z {z}/cap {cap}/w {weighted}/{}",
                        reduction.name()
                    );
                    let wv = weighted.then(|| w.view());
                    let with_w = |a| with_options(a, reduction, wv.clone());
                    check(
                        &loss,
                        &with_w(LossArgs::new(xc.view(), t.view())),
                        &format!("{tag}/probs"),
                    );
                    let out = check(
                        &loss,
                        &with_w(LossArgs::new(x.view(), k.view())),
                        &format!("{tag}/i64"),
                    );
                    assert_eq!(out.counted, b - (b - 3).div_ceil(7), "{tag}");
                    check(
                        &loss,
                        &with_w(LossArgs::new(x.view(), k32.view())),
                        &format!("{tag}/i32"),
                    );
                }
            }
        }
    }
}

/// Every tail length: rows of 2 to 130 elements (the tail after the last whole chunk of 64 is
/// swept 16 elements at a time in softmax cross entropy, distillation and JSD, padded with −∞),
/// with the target class at the row's last element and at its first, a row of zeros
/// (every element a tie at the maximum 0, which the padding must not join), the maximum twice in
/// the tail, and −∞ logits in it; class weights and label smoothing (the masked sums of d and
/// tw), probability targets; distillation and JSD with those rows as the teacher's and as the
/// student's; cosine proximity. Per-row losses and gradients against the
/// reference, at the matrix's tolerances. (C = 1 is in the matrix; with class weights and
/// smoothing its gradient is exactly 0 in the reference and about 1e-11 here, from the f32 weight
/// terms, below any tolerance scaled by that gradient.)
#[test]
fn row_tails_of_every_length() {
    const B: usize = 6;
    for c in 2..=130usize {
        let what = format!("tails/C={c}");
        let mut x = logits(&[B, c], seed_for(&format!("{what}/x")));
        x.index_axis_mut(Axis(0), 2).fill(0.0);
        let last = c - 1;
        x[[3, last]] = 9.0;
        x[[3, last / 2 + last / 4]] = 9.0;
        x[[4, last - 1]] = f32::NEG_INFINITY;
        let mut k = class_rows(&[B], c, seed_for(&format!("{what}/k")));
        k[0] = last as i64;
        k[1] = 0;
        k[3] = last as i64;
        let t = prob_rows(&[B, c], seed_for(&format!("{what}/t")));
        let w = synthetic::uniform(&[c], 0.0, 3.0, seed_for(&format!("{what}/w")));
        for loss in [sce(0.0, 0.0, -100), sce(0.1, 0.0, -100)] {
            for weighted in [false, true] {
                let tag = format!("{what}/{loss:?}/w {weighted}");
                let wv = weighted.then(|| w.view());
                let with_w = |a| with_options(a, Reduction::None, wv.clone());
                check(
                    &loss,
                    &with_w(LossArgs::new(x.view(), k.view())),
                    &format!("{tag}/i64"),
                );
                check(
                    &loss,
                    &with_w(LossArgs::new(x.view(), t.view())),
                    &format!("{tag}/probs"),
                );
            }
        }
        // Distillation (the same sweeps over two rows): the crafted rows as the teacher's (its
        // −∞ has probability 0), and without their −∞ as the student's (a student's −∞ would make
        // the loss +∞), against fresh logits.
        let distill = Loss::distill().temperature(2.0).build().unwrap();
        let fresh = logits(&[B, c], seed_for(&format!("{what}/s")));
        let finite = x.mapv(|v| v.max(-8.0));
        for (tag, student, teacher) in [("teacher", &fresh, &x), ("student", &finite, &fresh)] {
            let tag = format!("{what}/distill/crafted {tag}");
            let args = LossArgs::new(student.view(), teacher.view()).reduction(Reduction::None);
            check(&distill, &args, &tag);
        }
        // JSD likewise, β = 0, ½ and 1 (at β = 1 a teacher's −∞ under a student's mass makes
        // the loss +∞: the crafted teacher only below it).
        for beta in [0.0, 0.5, 1.0] {
            let jsd = Loss::jsd().beta(beta).temperature(2.0).build().unwrap();
            for (tag, student, teacher) in [("teacher", &fresh, &x), ("student", &finite, &fresh)] {
                if beta == 1.0 && tag == "teacher" {
                    continue;
                }
                let tag = format!("{what}/jsd {beta}/crafted {tag}");
                let args = LossArgs::new(student.view(), teacher.view()).reduction(Reduction::None);
                check(&jsd, &args, &tag);
            }
        }
        let cosine = Loss::cosine_proximity().build().unwrap();
        let (p, q) = (
            synthetic::uniform(&[B, c], -3.0, 3.0, seed_for(&format!("{what}/p"))),
            synthetic::uniform(&[B, c], -3.0, 3.0, seed_for(&format!("{what}/q"))),
        );
        for reduction in [Reduction::None, Reduction::Mean] {
            let tag = format!("{what}/cosine/{}", reduction.name());
            check(
                &cosine,
                &LossArgs::new(p.view(), q.view()).reduction(reduction),
                &tag,
            );
        }
    }
}

/// Upstream scalars and arrays (shaped like the rows) and loss-only mode, every kind.
#[test]
fn rows_upstream_and_loss_only() {
    for kind in [
        Kind::Cce,
        Kind::SoftmaxProbs,
        Kind::SoftmaxI64,
        Kind::Cosine,
    ] {
        let (b, c) = (301, 517);
        let what = format!("rows upstream/{kind:?}");
        let g = synthetic::uniform(&[b], -3.0, 3.0, seed_for(&format!("{what}/g")));
        let d = RowData::new(kind, b, c, &what);
        let loss = &d.loss;
        for reduction in REDUCTIONS {
            let a = d.args().reduction(reduction);
            let tag = format!("{what}/{}", reduction.name());
            check(
                loss,
                &a.clone().upstream(Upstream::Scalar(-2.5)),
                &format!("{tag}/scalar"),
            );
            let only = check(loss, &a.clone().loss_only(), &format!("{tag}/loss only"));
            assert!(only.grad.is_none());
            let full = cpu::compute(loss, &a).unwrap();
            assert_eq!(only.value.map(f32::to_bits), full.value.map(f32::to_bits));
            assert_eq!(only.losses, full.losses);
        }
        let a = d
            .args()
            .reduction(Reduction::None)
            .upstream(Upstream::Array(g.view()));
        check(loss, &a, &format!("{what}/array"));
    }
}

/// Rank 1 (one row), rank 3 (rows [2, 3]), transposed and strided views.
#[test]
fn rows_ranks_and_views() {
    let p1 = prob_rows(&[77], 1);
    let out = check(
        &Loss::CategoricalCrossEntropy,
        &LossArgs::new(p1.view(), p1.view()).reduction(Reduction::None),
        "rank 1",
    );
    assert_eq!(out.losses.unwrap().shape(), &[] as &[usize]);
    let x = logits(&[2, 3, 130], 2);
    let k = class_rows(&[2, 3], 130, 3);
    let out = check(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(x.view(), k.view()).reduction(Reduction::None),
        "rank 3",
    );
    assert_eq!(out.losses.unwrap().shape(), &[2, 3]);
    let x = logits(&[300, 200], 4);
    let t = prob_rows(&[200, 300], 5);
    let (xt, tt) = (x.t(), t.view());
    check(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(xt.view(), tt),
        "transposed logits",
    );
    let p = synthetic::uniform(&[100, 600], -1.0, 1.0, 6);
    let ps = p.slice_axis(Axis(1), ndarray::Slice::new(0, None, 2));
    let ts = p.slice_axis(Axis(1), ndarray::Slice::new(1, None, 2));
    check(
        &Loss::cosine_proximity().build().unwrap(),
        &LossArgs::new(ps, ts),
        "strided cosine",
    );
    let k = class_rows(&[300], 200, 7);
    let ks = k.slice_axis(Axis(0), ndarray::Slice::new(0, None, 2));
    let xs = x.slice_axis(Axis(0), ndarray::Slice::new(0, None, 2));
    check(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(xs, ks),
        "strided classes",
    );
}

/// NaN in one row (prediction or float target, in different parallel tasks) makes that row's
/// loss and gradient NaN and nothing else.
#[test]
fn nan_poisons_its_row_only() {
    for kind in [
        Kind::Cce,
        Kind::SoftmaxProbs,
        Kind::SoftmaxI64,
        Kind::Cosine,
    ] {
        let (b, c) = (200, 1000);
        let what = format!("nan rows/{kind:?}");
        let s = seed_for(&what);
        let (mut x, mut t, k) = match kind {
            Kind::Cce => (prob_rows(&[b, c], s), prob_rows(&[b, c], s + 1), None),
            Kind::Cosine => (
                synthetic::uniform(&[b, c], -3.0, 3.0, s),
                synthetic::uniform(&[b, c], -3.0, 3.0, s + 1),
                None,
            ),
            Kind::SoftmaxProbs => (logits(&[b, c], s), prob_rows(&[b, c], s + 1), None),
            _ => (
                logits(&[b, c], s),
                prob_rows(&[b, c], s + 1),
                Some(class_rows(&[b], c, s + 2)),
            ),
        };
        x[[5, 17]] = f32::NAN;
        t[[150, 999]] = f32::NAN;
        let loss = match kind {
            Kind::Cce => Loss::CategoricalCrossEntropy,
            Kind::Cosine => Loss::cosine_proximity().build().unwrap(),
            _ => Loss::softmax_cross_entropy().build().unwrap(),
        };
        let args = match &k {
            Some(k) => LossArgs::new(x.view(), k.view()),
            None => LossArgs::new(x.view(), t.view()),
        };
        let out = check(&loss, &args.reduction(Reduction::None), &what);
        let (l, g) = (out.losses.unwrap(), out.grad.unwrap());
        let bad: Vec<usize> = if k.is_some() { vec![5] } else { vec![5, 150] };
        for r in 0..b {
            let row = g.index_axis(Axis(0), r);
            if bad.contains(&r) {
                assert!(
                    l[r].is_nan() && row.iter().all(|v| v.is_nan()),
                    "{what}: row {r}"
                );
            } else {
                assert!(
                    l[r].is_finite() && row.iter().all(|v| v.is_finite()),
                    "{what}: row {r}"
                );
            }
        }
    }
}

/// Edge values of the row-wise family, each as the reference: every row ignored (D = 0:
/// value and gradient 0, NaN rows never read), class weights 0 on every counted row (D = 0),
/// rows of −∞ logits but one, extreme logits, equal logits, cosine zero rows.
#[test]
fn row_edges() {
    let arr = |shape: &[usize], v: Vec<f32>| ArrayD::from_shape_vec(IxDyn(shape), v).unwrap();
    let nan = arr(&[3, 4], vec![f32::NAN; 12]);
    let w4 = arr(&[4], vec![1.0, 2.0, 3.0, 4.0]);
    for loss in [sce(0.0, 0.0, -100), sce(0.1, 1e-3, 7)] {
        let Loss::SoftmaxCrossEntropy { ignore_index, .. } = loss else {
            unreachable!()
        };
        let cls = ndarray::arr1(&[ignore_index; 3]).into_dyn();
        for weighted in [false, true] {
            for reduction in REDUCTIONS {
                let mut args = LossArgs::new(nan.view(), cls.view()).reduction(reduction);
                if weighted {
                    args = args.weight(w4.view());
                }
                let out = check(&loss, &args, "all ignored");
                assert_eq!(out.counted, 0);
                assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
            }
        }
    }
    let p = arr(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let cls = ndarray::arr1(&[0i64, 0]).into_dyn();
    let w0 = arr(&[3], vec![0.0, 1.0, 1.0]);
    for loss in [sce(0.0, 0.0, -100), sce(0.2, 1e-3, -100)] {
        for reduction in REDUCTIONS {
            let args = LossArgs::new(p.view(), cls.view())
                .weight(w0.view())
                .reduction(reduction);
            let out = check(&loss, &args, "zero class weights");
            assert_eq!(out.counted, 2);
        }
    }
    let ninf = f32::NEG_INFINITY;
    let x = arr(
        &[3, 4],
        vec![
            ninf, ninf, 2.5, ninf, ninf, 0.0, ninf, ninf, 1e4, -1e4, 0.0, 3.0,
        ],
    );
    let cls = ndarray::arr1(&[2i32, 1, 1]).into_dyn();
    let onehot = arr(
        &[3, 4],
        vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.2, 0.3, 0.5, 0.0],
    );
    let w = arr(&[4], vec![1.0, 0.5, 2.0, 3.0]);
    for loss in [
        sce(0.0, 0.0, -100),
        sce(0.0, 1e-3, -100),
        sce(0.1, 1e-3, -100),
    ] {
        for weighted in [false, true] {
            for reduction in REDUCTIONS {
                for dense in [false, true] {
                    let mut args = if dense {
                        LossArgs::new(x.view(), onehot.view())
                    } else {
                        LossArgs::new(x.view(), cls.view())
                    };
                    args = args.reduction(reduction);
                    if weighted {
                        args = args.weight(w.view());
                    }
                    check(
                        &loss,
                        &args,
                        &format!("-inf and extreme logits/dense {dense}"),
                    );
                }
            }
        }
    }
    let eq = arr(&[2, 5], vec![7.5; 10]);
    let cls = ndarray::arr1(&[3i64, 0]).into_dyn();
    check(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(eq.view(), cls.view()),
        "equal logits",
    );
    let p = arr(&[3, 3], vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
    let t = arr(&[3, 3], vec![3.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    for reduction in REDUCTIONS {
        let out = check(
            &Loss::cosine_proximity().build().unwrap(),
            &LossArgs::new(p.view(), t.view()).reduction(reduction),
            "cosine zero rows",
        );
        assert!(out.grad.unwrap().iter().all(|g| !g.is_nan()));
    }
    // Categorical cross entropy at p = 0 (clamped), p = 1, and a subnormal p.
    let p = arr(&[2, 3], vec![0.0, 1.0, 1e-40, 0.5, 0.25, 0.25]);
    let t = arr(&[2, 3], vec![0.5, 0.25, 0.25, 1.0, 0.0, 0.0]);
    for reduction in REDUCTIONS {
        check(
            &Loss::CategoricalCrossEntropy,
            &LossArgs::new(p.view(), t.view()).reduction(reduction),
            "cce clamps",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism.
// ---------------------------------------------------------------------------------------------

type Bits = (Option<u32>, Vec<u32>, Vec<u32>, usize);

fn bits(o: &LossOutput<f32>) -> Bits {
    let flat = |a: &Option<ArrayD<f32>>| {
        a.as_ref()
            .map_or(Vec::new(), |a| a.iter().map(|v| v.to_bits()).collect())
    };
    (
        o.value.map(f32::to_bits),
        flat(&o.losses),
        flat(&o.grad),
        o.counted,
    )
}

/// The same inputs give the same bits on every call, and with 1, 2 or 3 threads: the work
/// is cut the same way and the partial sums are added in a fixed order.
#[test]
fn bit_identical_across_calls_and_thread_counts() {
    let pools: Vec<rayon::ThreadPool> = [1, 3]
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .collect();
    let run = |loss: &Loss, args: &LossArgs<'_>, what: &str| {
        let first = bits(&cpu::compute(loss, args).unwrap());
        assert_eq!(
            first,
            bits(&cpu::compute(loss, args).unwrap()),
            "{what}: second call"
        );
        for pool in &pools {
            let again = pool.install(|| bits(&cpu::compute(loss, args).unwrap()));
            assert_eq!(
                first,
                again,
                "{what}: {} threads",
                pool.current_num_threads()
            );
        }
    };
    for loss in elementwise_losses() {
        let what = format!("determinism/{}", loss.name());
        let b = synthetic::batch(&loss, &[1_000_003], seed_for(&what));
        for reduction in REDUCTIONS {
            run(
                &loss,
                &LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction),
                &what,
            );
        }
    }
    for kind in [
        Kind::Cce,
        Kind::SoftmaxProbs,
        Kind::SoftmaxI64,
        Kind::Cosine,
    ] {
        let what = format!("determinism/{kind:?}");
        let d = RowData::new(kind, 1000, 1000, &what);
        for reduction in REDUCTIONS {
            run(&d.loss, &d.args().reduction(reduction), &what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors: the same as the reference's, variant, fields and message.
// ---------------------------------------------------------------------------------------------

/// Asserts both paths fail with the same error (compared through `Debug`, which shows the
/// variant and every field), and returns it.
#[track_caller]
fn same_error(loss: &Loss, args: &LossArgs<'_>, what: &str) -> Error {
    let got = cpu::compute(loss, args).expect_err(what);
    let want = reference::compute(loss, args).expect_err(what);
    assert_eq!(format!("{got:?}"), format!("{want:?}"), "{what}");
    got
}

#[test]
fn errors_match_the_reference() {
    let arr = |shape: &[usize], v: f32| ArrayD::from_elem(IxDyn(shape), v);
    let (p, t) = (arr(&[4, 5], 0.5), arr(&[4, 5], 0.25));
    let e = same_error(
        &Loss::Mse,
        &LossArgs::new(p.view(), arr(&[5, 4], 0.5).view()),
        "shape",
    );
    assert!(matches!(e, Error::ShapeMismatch { what: "target", .. }));
    let empty = arr(&[0, 3], 0.5);
    for loss in Loss::all_default() {
        let e = same_error(&loss, &LossArgs::new(empty.view(), empty.view()), "empty");
        assert!(matches!(e, Error::Empty { .. }), "{e:?}");
    }
    // Invalid loss options are refused when the loss is built, before any device sees it.
    let sce_built = |ls: f32, z: f32| {
        Loss::softmax_cross_entropy()
            .label_smoothing(ls)
            .z_loss(z)
            .build()
    };
    let options = [
        (Loss::huber().delta(0.0).build(), "delta"),
        (Loss::huber().delta(f32::NAN).build(), "delta"),
        (Loss::smooth_l1().beta(-1.0).build(), "beta"),
        (Loss::smooth_l1().beta(f32::INFINITY).build(), "beta"),
        (sce_built(1.0, 0.0), "label_smoothing"),
        (sce_built(-0.1, 0.0), "label_smoothing"),
        (sce_built(0.0, -1.0), "z_loss"),
        (sce_built(0.0, f32::INFINITY), "z_loss"),
        (
            Loss::softmax_cross_entropy().softcap(-1.0).build(),
            "softcap",
        ),
        (
            Loss::softmax_cross_entropy().softcap(f32::NAN).build(),
            "softcap",
        ),
        (Loss::cosine_proximity().eps(0.0).build(), "eps"),
    ];
    for (built, option) in options {
        let e = built.unwrap_err();
        assert!(
            matches!(e, Error::InvalidOption { option: o, .. } if o == option),
            "{e:?}"
        );
    }
    // Weights: not taken, negative, NaN, not a trailing shape.
    let w5 = arr(&[5], 1.0);
    for loss in [
        Loss::Mse,
        Loss::CategoricalCrossEntropy,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        same_error(
            &loss,
            &LossArgs::new(p.view(), t.view()).weight(w5.view()),
            "weight",
        );
    }
    same_error(
        &Loss::Bce,
        &LossArgs::new(p.view(), t.view()).pos_weight(w5.view()),
        "pos_weight",
    );
    let mut w_bad = w5.clone();
    w_bad[[2]] = -1.0;
    same_error(
        &Loss::Bce,
        &LossArgs::new(p.view(), t.view()).weight(w_bad.view()),
        "w < 0",
    );
    w_bad[[2]] = f32::NAN;
    same_error(
        &Loss::BceWithLogits,
        &LossArgs::new(p.view(), t.view()).pos_weight(w_bad.view()),
        "q NaN",
    );
    let w4 = arr(&[4], 1.0);
    same_error(
        &Loss::Bce,
        &LossArgs::new(p.view(), t.view()).weight(w4.view()),
        "w shape",
    );
    let cls = ndarray::arr1(&[0i64, 1, 2, 3]).into_dyn();
    same_error(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls.view()).weight(w4.view()),
        "class weight shape",
    );
    // Upstream: non-finite scalar, array with a reduction, array of the wrong shape.
    for loss in [Loss::Mse, Loss::softmax_cross_entropy().build().unwrap()] {
        let base = LossArgs::new(p.view(), t.view());
        same_error(
            &loss,
            &base.clone().upstream(Upstream::Scalar(f32::NAN)),
            "g NaN",
        );
        let g = arr(&[4, 5], 1.0);
        same_error(
            &loss,
            &base.clone().upstream(Upstream::Array(g.view())),
            "g mean",
        );
        let g = arr(&[3], 1.0);
        same_error(
            &loss,
            &base
                .clone()
                .reduction(Reduction::None)
                .upstream(Upstream::Array(g.view())),
            "g shape",
        );
    }
    // Class targets where float targets are due; a scalar prediction for a row-wise loss;
    // class targets of the wrong shape.
    for loss in [
        Loss::Mse,
        Loss::Bce,
        Loss::CategoricalCrossEntropy,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        same_error(&loss, &LossArgs::new(p.view(), cls.view()), "class targets");
    }
    let p0 = ArrayD::from_elem(IxDyn(&[]), 0.5f32);
    for loss in [
        Loss::CategoricalCrossEntropy,
        Loss::softmax_cross_entropy().build().unwrap(),
        Loss::cosine_proximity().build().unwrap(),
    ] {
        same_error(
            &loss,
            &LossArgs::new(p0.view(), p0.view()),
            "scalar prediction",
        );
    }
    let cls_bad = ArrayD::<i32>::zeros(IxDyn(&[4, 5]));
    same_error(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls_bad.view()),
        "class shape",
    );
}

/// The first probability outside [0, 1] in row-major order, wherever it is: in a later block
/// (with another in a still later one), in a block's tail, in the first chunk; NaN is not out
/// of the domain. Categorical cross entropy likewise, across rows and tasks.
#[test]
fn out_of_domain_is_the_first_in_row_major_order() {
    let n = 200_003;
    let base = synthetic::batch(&Loss::Bce, &[n], 1);
    for bad in [
        vec![150_001, 190_000],
        vec![200_002],
        vec![3, 64],
        vec![65_535, 65_536],
    ] {
        let mut p = base.pred.clone();
        p[[100]] = f32::NAN;
        for (i, &k) in bad.iter().enumerate() {
            p[[k]] = if i % 2 == 0 { 1.0001 } else { -1e-7 };
        }
        for reduction in REDUCTIONS {
            let args = LossArgs::new(p.view(), base.target.view()).reduction(reduction);
            match same_error(&Loss::Bce, &args, &format!("bce {bad:?}")) {
                Error::OutOfDomain { index, .. } => assert_eq!(index, bad[0]),
                e => panic!("{e:?}"),
            }
            same_error(
                &Loss::Bce,
                &args.loss_only(),
                &format!("bce loss only {bad:?}"),
            );
        }
    }
    let (b, c) = (300, 1000);
    let base = prob_rows(&[b, c], 2);
    for bad in [
        vec![(250, 999), (251, 0)],
        vec![(0, 70), (0, 3)],
        vec![(65, 537)],
    ] {
        let mut p = base.clone();
        p[[0, 1]] = f32::NAN;
        for &(r, j) in &bad {
            p[[r, j]] = 1.5;
        }
        let args = LossArgs::new(p.view(), base.view());
        match same_error(
            &Loss::CategoricalCrossEntropy,
            &args,
            &format!("cce {bad:?}"),
        ) {
            Error::OutOfDomain { index, .. } => {
                let first = bad.iter().map(|&(r, j)| r * c + j).min().unwrap();
                assert_eq!(index, first);
            }
            e => panic!("{e:?}"),
        }
    }
}

/// Class indices out of range: the first row, i32 and i64 (beyond i32 too), `ignore_index`
/// honoured only when it is the loss's; the options are checked first.
#[test]
fn class_out_of_range_is_the_first_row() {
    let p = logits(&[3, 5], 1);
    let cases: Vec<(Loss, Vec<i64>)> = vec![
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            vec![0, 5, 7],
        ),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            vec![-100, -1, 2],
        ),
        (sce(0.0, 0.0, -1), vec![-100, -1, 2]),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            vec![0, 1, (1 << 32) + 1],
        ),
    ];
    for (loss, k) in cases {
        let k64 = ArrayD::from_shape_vec(IxDyn(&[3]), k.clone()).unwrap();
        same_error(
            &loss,
            &LossArgs::new(p.view(), k64.view()),
            &format!("i64 {k:?}"),
        );
        if k.iter().all(|&v| i32::try_from(v).is_ok()) {
            let k32 = k64.mapv(|v| v as i32);
            same_error(
                &loss,
                &LossArgs::new(p.view(), k32.view()),
                &format!("i32 {k:?}"),
            );
        }
    }
    let wide = sce(0.0, 0.0, 1 << 40);
    let k = ndarray::arr1(&[0i64, 1 << 40, 4]).into_dyn();
    let out = check(
        &wide,
        &LossArgs::new(p.view(), k.view()),
        "wide ignore_index",
    );
    assert_eq!(out.counted, 2);
}

// ---------------------------------------------------------------------------------------------
// compute_into: the gradient into the caller's buffer, the same bits as compute.
// ---------------------------------------------------------------------------------------------

/// `cpu::compute_into` into a buffer full of garbage (NaN) gives exactly the bits of
/// `cpu::compute`: value, losses, counted, and the gradient in the buffer.
#[track_caller]
fn same_bits_into(loss: &Loss, args: &LossArgs<'_>, what: &str) {
    let want = bits(&cpu::compute(loss, args).unwrap());
    let mut grad = ArrayD::<f32>::from_elem(args.pred.shape(), f32::NAN);
    let mut out = cpu::compute_into(loss, args, grad.view_mut()).unwrap();
    assert!(
        out.grad.is_none(),
        "{what}: compute_into returns no gradient"
    );
    out.grad = Some(grad);
    assert_eq!(bits(&out), want, "{what}");
}

#[test]
fn compute_into_gives_the_bits_of_compute_elementwise() {
    for loss in elementwise_losses() {
        for n in [1, 63, 255, 4097, 70_001] {
            for reduction in REDUCTIONS {
                let what = format!("into/{}/{}/{n}", loss.name(), reduction.name());
                let b = synthetic::batch(&loss, &[n], seed_for(&what));
                let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
                same_bits_into(&loss, &args, &what);
            }
        }
    }
    // Broadcast weights, pos_weight, an upstream array, rank 2 and rank 0.
    let what = "into/weights";
    let b = synthetic::batch(&Loss::BceWithLogits, &[301, 7], seed_for(what));
    let w = synthetic::uniform(&[7], 0.0, 2.0, 5);
    let u = synthetic::uniform(&[301, 7], -1.0, 1.0, 6);
    let args = LossArgs::new(b.pred.view(), b.target.view())
        .weight(w.view())
        .pos_weight(w.view());
    same_bits_into(&Loss::BceWithLogits, &args, what);
    let args = args
        .reduction(Reduction::None)
        .upstream(Upstream::Array(u.view()));
    same_bits_into(&Loss::BceWithLogits, &args, what);
    let p = ArrayD::from_elem(IxDyn(&[]), 0.25f32);
    let t = ArrayD::from_elem(IxDyn(&[]), 1.0f32);
    same_bits_into(
        &Loss::Bce,
        &LossArgs::new(p.view(), t.view()),
        "into/rank 0",
    );
}

#[test]
fn compute_into_gives_the_bits_of_compute_row_wise() {
    for kind in [
        Kind::Cce,
        Kind::SoftmaxProbs,
        Kind::SoftmaxI64,
        Kind::SoftmaxI32,
        Kind::Cosine,
    ] {
        for (b, c) in [(1, 1), (7, 3), (65, 33), (131, 1000), (3, 32000)] {
            for reduction in REDUCTIONS {
                let what = format!("into/{kind:?}/{b}x{c}/{}", reduction.name());
                let d = RowData::new(kind, b, c, &what);
                same_bits_into(&d.loss, &d.args().reduction(reduction), &what);
            }
        }
    }
    // Ignored rows (their gradient is 0, whatever the buffer held), and every row ignored
    // (D = 0: the whole gradient 0).
    let x = logits(&[9, 33], 11);
    let mut k = class_rows(&[9], 33, 12);
    for r in [0, 4, 8] {
        k[r] = -100;
    }
    for reduction in REDUCTIONS {
        let what = format!("into/ignored/{}", reduction.name());
        let args = LossArgs::new(x.view(), k.view()).reduction(reduction);
        same_bits_into(
            &Loss::softmax_cross_entropy().build().unwrap(),
            &args,
            &what,
        );
    }
    let none = ArrayD::<i64>::from_elem(IxDyn(&[9]), -100);
    let args = LossArgs::new(x.view(), none.view());
    same_bits_into(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &args,
        "into/all ignored",
    );
}

/// A gradient view that is not contiguous is written element by element, the same values.
#[test]
fn compute_into_a_strided_view() {
    for loss in [Loss::Mse, Loss::softmax_cross_entropy().build().unwrap()] {
        let x = logits(&[40, 17], 3);
        let t = prob_rows(&[40, 17], 4);
        let args = LossArgs::new(x.view(), t.view());
        let want = cpu::compute(&loss, &args).unwrap();
        let mut big = ArrayD::<f32>::from_elem(IxDyn(&[17, 80]), f32::NAN);
        let mut grad = big.slice_each_axis_mut(|ax| {
            ndarray::Slice::new(0, None, if ax.axis.index() == 1 { 2 } else { 1 })
        });
        grad.swap_axes(0, 1);
        let out = cpu::compute_into(&loss, &args, grad.view_mut()).unwrap();
        assert_eq!(out.value.map(f32::to_bits), want.value.map(f32::to_bits));
        let got: Vec<u32> = grad.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = want.grad.unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{}", loss.name());
    }
}

// Its errors, the same on every device: tests/api.rs (`compute_into_errors`).

// ---- Accuracy, scales and infinities (as the GPU tests of the same names) ------------------

/// BCE with t = 1 and t = 0 and categorical cross entropy: `ln p` and `ln(1 − p)` within 4 ulp
/// of the reference over every binade of p in [2^-149, 1] ([`common::probabilities`]); the
/// fast path's `ln(1 − p)` is `math::ln_1m`, exact where `1 − p` rounds.
#[test]
fn logs_within_4_ulp_over_every_binade() {
    let p = probabilities();
    let n = p.len();
    let pred = ArrayD::from_shape_vec(vec![n], p.clone()).unwrap();
    for t in [1.0f32, 0.0] {
        let target = ArrayD::from_elem(vec![n], t);
        let args = LossArgs::new(pred.view(), target.view())
            .reduction(Reduction::None)
            .loss_only();
        let got = cpu::compute(&Loss::Bce, &args).unwrap();
        let want = reference::compute(&Loss::Bce, &args).unwrap();
        assert_ulps(
            got.losses.as_ref().unwrap(),
            want.losses.as_ref().unwrap(),
            &p,
            &format!("cpu bce t = {t}"),
        );
    }
    let rows = pred.into_shape_with_order(vec![n, 1]).unwrap();
    let ones = ArrayD::from_elem(vec![n, 1], 1.0f32);
    let args = LossArgs::new(rows.view(), ones.view())
        .reduction(Reduction::None)
        .loss_only();
    let got = cpu::compute(&Loss::CategoricalCrossEntropy, &args).unwrap();
    let want = reference::compute(&Loss::CategoricalCrossEntropy, &args).unwrap();
    assert_ulps(
        got.losses.as_ref().unwrap(),
        want.losses.as_ref().unwrap(),
        &p,
        "cpu cce",
    );
}

/// BCE with logits of confident predictions (ℓ ≈ e^(−|x|), for t = 1 with x ≥ 0 and t = 0 with
/// x ≤ 0) within 4 ulp for |x| up to 87: no cancellation of `(1 − t) x` against `−x`.
#[test]
fn bce_with_logits_confident_within_4_ulp() {
    let xs: Vec<f32> = (0..87 * 64)
        .map(|k| k as f32 / 64.0 + 1.0 / 128.0)
        .collect();
    for (t, sign) in [(1.0f32, 1.0f32), (0.0, -1.0)] {
        let x: Vec<f32> = xs.iter().map(|&v| sign * v).collect();
        let pred = ArrayD::from_shape_vec(vec![x.len()], x.clone()).unwrap();
        let target = ArrayD::from_elem(vec![x.len()], t);
        let args = LossArgs::new(pred.view(), target.view())
            .reduction(Reduction::None)
            .loss_only();
        let got = cpu::compute(&Loss::BceWithLogits, &args).unwrap();
        let want = reference::compute(&Loss::BceWithLogits, &args).unwrap();
        assert_ulps(
            got.losses.as_ref().unwrap(),
            want.losses.as_ref().unwrap(),
            &x,
            &format!("cpu bce-with-logits t = {t}"),
        );
    }
}

/// Cosine proximity at every scale ([`common::cosine_scale_rows`]), each row in a call of its
/// own: f32 sums of squares that would overflow or underflow are taken again in f64.
#[test]
fn cosine_every_scale_agrees_with_the_reference() {
    let (p, t) = cosine_scale_rows(seed_for("cpu/cosine/scales"));
    for r in 0..p.shape()[0] {
        let pr = p.slice_axis(Axis(0), ndarray::Slice::from(r..r + 1));
        let tr = t.slice_axis(Axis(0), ndarray::Slice::from(r..r + 1));
        for reduction in REDUCTIONS {
            let args = LossArgs::new(pr.clone(), tr.clone()).reduction(reduction);
            check(
                &Loss::cosine_proximity().build().unwrap(),
                &args,
                &format!("cpu/cosine/scales/row {r}/{}", reduction.name()),
            );
        }
    }
}

/// Infinite logits ([`common::infinite_logit_rows`]): the reference's NaN rows, also under a
/// zero class weight, for class and probability targets, with and without smoothing.
#[test]
fn infinite_logits_follow_ieee_semantics() {
    let (x, k, t) = infinite_logit_rows(seed_for("cpu/softmax-ce/inf"));
    let mut w = ArrayD::from_elem(IxDyn(&[6]), 1.5f32);
    w[[2]] = 0.0;
    for (loss, smoothing) in [(sce(0.0, 0.0, -100), false), (sce(0.1, 1e-3, -100), true)] {
        for weight in [false, true] {
            for classes in [true, false] {
                let what =
                    format!("cpu/inf/smoothing={smoothing}/weight={weight}/classes={classes}");
                let mut args = if classes {
                    LossArgs::new(x.view(), k.view())
                } else {
                    LossArgs::new(x.view(), t.view())
                }
                .reduction(Reduction::None);
                if weight {
                    args = args.weight(w.view());
                }
                let out = check(&loss, &args, &what);
                assert_infinite_logit_pattern(&out, smoothing, &what);
            }
        }
    }
}

/// u32 class ids give the bits of i64 ids; one of 2^32 − 1 is out of range.
#[test]
fn u32_class_ids() {
    let (b, c) = (300usize, 50usize);
    let x = logits(&[b, c], seed_for("cpu/u32/x"));
    let k = class_rows(&[b], c, seed_for("cpu/u32/k"));
    let mut ku = k.mapv(|v| v as u32);
    let loss = sce(0.1, 0.0, 3);
    let base = check(&loss, &LossArgs::new(x.view(), k.view()), "cpu/i64");
    let out = check(&loss, &LossArgs::new(x.view(), ku.view()), "cpu/u32");
    assert_eq!(out.value, base.value);
    assert_eq!(out.grad, base.grad);
    ku[[7]] = u32::MAX;
    match cpu::compute(&loss, &LossArgs::new(x.view(), ku.view())) {
        Err(Error::ClassOutOfRange { row: 7, class, .. }) => {
            assert_eq!(class, i64::from(u32::MAX))
        }
        other => panic!("expected ClassOutOfRange at row 7, got {other:?}"),
    }
}

/// Infinite elementwise inputs ([`common::infinite_elementwise_cases`]): NaN for `∞ − ∞`, the
/// limit for BCE with logits, as the reference.
#[test]
fn infinite_elementwise_inputs() {
    for (loss, p, t, w) in common::infinite_elementwise_cases() {
        let what = format!("cpu/inf/{}", loss.name());
        let mut args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
        if let Some(w) = &w {
            args = args.weight(w.view());
        }
        let out = check(&loss, &args, &what);
        common::assert_infinite_elementwise(&loss, &out, &p, &t, w.as_ref(), &what);
    }
}

/// Confident softmax rows ([`common::confident_rows`], 8 classes, a up to 80): the loss
/// ln(1 + 7 e^(−a)) to 4 ulp plus the polynomial `exp`'s 2, where an f32 S would round it to
/// 0; and BCE with logits' gradient σ(x) − 1 = −σ(−x) of confident logits, to 4 ulp.
#[test]
fn confident_losses_and_gradients_keep_their_digits() {
    let c = 8usize;
    let a: Vec<f32> = (0..=1600).map(|k| k as f32 * 0.05).collect();
    let x = common::confident_rows(&a, c);
    let classes = ArrayD::<i64>::zeros(vec![a.len()]);
    let args = LossArgs::new(x.view(), classes.view())
        .reduction(Reduction::None)
        .loss_only();
    let got = cpu::compute(&Loss::softmax_cross_entropy().build().unwrap(), &args).unwrap();
    for (r, &l) in got.losses.as_ref().unwrap().iter().enumerate() {
        let exact = ((c - 1) as f64 * (-f64::from(a[r])).exp()).ln_1p();
        assert!(
            (f64::from(l) - exact).abs() <= 6.0 * common::ulp(exact),
            "row {r} (a = {}): {l:e} != {exact:e}",
            a[r]
        );
    }
    let args = LossArgs::new(x.view(), classes.view()).reduction(Reduction::Sum);
    let grad = cpu::compute(&Loss::softmax_cross_entropy().build().unwrap(), &args)
        .unwrap()
        .grad
        .unwrap();
    for (r, &ar) in a.iter().enumerate() {
        let e = (-f64::from(ar)).exp();
        let s = 1.0 + (c - 1) as f64 * e;
        for (j, exact) in [(0, -((c - 1) as f64) * e / s), (c - 1, e / s)] {
            let g = f64::from(grad[[r, j]]);
            assert!(
                (g - exact).abs() <= 6.0 * common::ulp(exact),
                "row {r} (a = {ar}), gradient [{j}]: {g:e} != {exact:e}"
            );
        }
    }
    let xs: Vec<f32> = (0..87 * 64)
        .map(|k| k as f32 / 64.0 + 1.0 / 128.0)
        .collect();
    let pred = ArrayD::from_shape_vec(vec![xs.len()], xs.clone()).unwrap();
    let ones = ArrayD::from_elem(vec![xs.len()], 1.0f32);
    let args = LossArgs::new(pred.view(), ones.view()).reduction(Reduction::Sum);
    let got = cpu::compute(&Loss::BceWithLogits, &args).unwrap();
    let want = reference::compute(&Loss::BceWithLogits, &args).unwrap();
    assert_ulps(
        got.grad.as_ref().unwrap(),
        want.grad.as_ref().unwrap(),
        &xs,
        "cpu bce-with-logits gradient",
    );
}

/// Cosine proximity over rows of one feature: cos = ±1 and the gradient exactly 0 (the two
/// terms cancel exactly), as the reference.
#[test]
fn cosine_of_one_feature() {
    let p = synthetic::uniform(&[257, 1], -3.0, 3.0, seed_for("cpu/cosine/C=1/p"));
    let t = synthetic::uniform(&[257, 1], -3.0, 3.0, seed_for("cpu/cosine/C=1/t"));
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
    let out = check(
        &Loss::cosine_proximity().build().unwrap(),
        &args,
        "cpu/cosine/C=1",
    );
    assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
    for (&l, (&pi, &ti)) in out.losses.unwrap().iter().zip(p.iter().zip(&t)) {
        assert_eq!(l, -(pi * ti).signum());
    }
}

/// The per-row log-sum-exp (`want_lse`) of the fast CPU path against `reference::lse`: each
/// option, class ids with ignored rows (whose log-sum-exp is still given) and probability
/// targets, every reduction, with and without the gradient; every other bit as without it.
#[test]
fn softmax_lse() {
    for c in COLS {
        let b = rows_for(c).min(500);
        let what = format!("softmax lse/C={c}/B={b}");
        let x = logits(&[b, c], seed_for(&format!("{what}/x")));
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        let mut k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
        for r in (3..b).step_by(7) {
            k[r] = -100;
        }
        for (eps, z, cap) in [
            (0.0, 0.0, 0.0),
            (0.1, 1e-3, 0.0),
            (0.0, 0.0, 3.0),
            (0.1, 0.0, 30.0),
        ] {
            let loss = Loss::softmax_cross_entropy()
                .label_smoothing(eps)
                .z_loss(z)
                .softcap(cap)
                .build()
                .unwrap();
            if c == 1 && z != 0.0 {
                // One class: the z-loss's gradient 2λ lse is a difference of O(1) terms,
                // beyond the relative tolerance (the options tests leave it out too).
                continue;
            }
            for reduction in REDUCTIONS {
                for want_grad in [true, false] {
                    let tag = format!(
                        "{what}/eps {eps}/z {z}/cap {cap}/{}/grad {want_grad}",
                        reduction.name()
                    );
                    for (args, kind) in [
                        (LossArgs::new(x.view(), k.view()), "i64"),
                        (LossArgs::new(x.view(), t.view()), "probs"),
                    ] {
                        let args = args.reduction(reduction).want_grad(want_grad);
                        let tag = format!("{tag}/{kind}");
                        let with = check(&loss, &args.clone().want_lse(true), &tag);
                        let lse = with.lse.as_ref().expect("lse");
                        assert!(lse.iter().all(|v| v.is_finite()), "{tag}");
                        let without = cpu::compute(&loss, &args).unwrap();
                        assert_eq!(bits(&with), bits(&without), "{tag}: the other outputs");
                    }
                }
            }
        }
    }
}

/// The log-sum-exp of IEEE rows on the fast CPU path: NaN for a `+∞` or NaN logit, `−∞` for a
/// row of `−∞`, as the reference (and the GPU).
#[test]
fn softmax_lse_of_infinite_rows() {
    let (x, k, _) = infinite_logit_rows(seed_for("cpu lse/infinite"));
    for cap in [0.0, 5.0] {
        let loss = Loss::softmax_cross_entropy().softcap(cap).build().unwrap();
        let args = LossArgs::new(x.view(), k.view())
            .reduction(Reduction::None)
            .want_lse(true);
        let out = check(&loss, &args, &format!("cpu lse/infinite/cap {cap}"));
        let lse = out.lse.unwrap();
        if cap == 0.0 {
            assert!(lse[[0]].is_nan() && lse[[6]].is_nan() && lse[[7]].is_nan());
            assert_eq!(lse[[2]], f32::NEG_INFINITY);
        } else {
            assert!(lse.iter().enumerate().all(|(r, v)| v.is_nan() == (r == 7)));
        }
    }
}
