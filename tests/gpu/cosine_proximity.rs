//! Cosine proximity: `shaders/cosine_proximity.wgsl` against
//! `src/reference/cosine_proximity.rs`.

use ndarray::{ArrayD, Axis, IxDyn};
use wgpu_loss::{Error, Loss, LossArgs, Reduction, synthetic};

use crate::common::{REDUCTIONS, check_args, cosine_scale_rows, ctx, matrix_rows, seed_for};

/// Cosine proximity with its default eps.
fn cos() -> Loss {
    Loss::cosine_proximity().build().unwrap()
}

/// U(−3, 3) rows against U(−3, 3) rows.
fn case(c: usize) {
    for reduction in REDUCTIONS {
        let b = matrix_rows(c, reduction);
        let what = format!("cosine/C={c}/B={b}/{}", reduction.name());
        let p = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/p")));
        let t = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/t")));
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(ctx(), &cos(), &args, &what);
        assert_eq!(out.counted, b, "{what}: counted");
        if let (1, Some(l)) = (c, &out.losses) {
            // One column: cos = sign(p t).
            for (&l, (&p, &t)) in l.iter().zip(p.iter().zip(&t)) {
                let want = -(p * t).signum();
                assert!((l - want).abs() <= 1e-6, "{what}: ℓ = {l} != −sign(p t)");
            }
        }
    }
}

row_matrix!(case);

/// A literal case worked by hand: p = (3, 4), t = (4, 3): cos = 24/25; p = (1, 0), t = (0, 2):
/// cos = 0, gradient −t/(‖p‖‖t‖) = (0, −1).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr2(&[[3.0f32, 4.0], [1.0, 0.0]]).into_dyn();
    let t = ndarray::arr2(&[[4.0f32, 3.0], [0.0, 2.0]]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
    let out = check_args(ctx(), &cos(), &args, "cosine/worked example");
    let l = out.losses.unwrap();
    approx::assert_relative_eq!(l[[0]], -0.96, max_relative = 1e-6);
    assert_eq!(l[[1]], 0.0);
    let g = out.grad.unwrap();
    // ∂/∂p of −p·t/(‖p‖‖t‖) at row 0: −t/25 + 0.96 p/25.
    approx::assert_relative_eq!(g[[0, 0]], (-4.0 + 0.96 * 3.0) / 25.0, max_relative = 1e-5);
    approx::assert_relative_eq!(g[[0, 1]], (-3.0 + 0.96 * 4.0) / 25.0, max_relative = 1e-5);
    assert_eq!(g[[1, 0]], 0.0);
    approx::assert_relative_eq!(g[[1, 1]], -1.0, max_relative = 1e-6);
}

/// Zero rows: p = 0 gives loss 0 and the gradient `−t/(ε‖t‖)` (finite); t = 0 gives loss 0
/// and gradient 0; both zero, 0 and 0; a row with ‖p‖ < ε takes the same branch as p = 0.
/// Never NaN. Each case in its own call, so the huge `1/ε` gradients do not set the
/// tolerance of the others.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn zero_rows_give_zero_never_nan() {
    let (b, c) = (5usize, 33usize);
    for (zero_p, zero_t, tiny_p) in [
        (true, false, false),
        (false, true, false),
        (true, true, false),
        (false, false, true),
    ] {
        let what = format!("cosine/zero rows/p={zero_p}/t={zero_t}/tiny p={tiny_p}");
        let mut p = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/p")));
        let mut t = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/t")));
        if zero_p {
            p.index_axis_mut(Axis(0), 2).fill(0.0);
        }
        if zero_t {
            t.index_axis_mut(Axis(0), 2).fill(0.0);
        }
        if tiny_p {
            p.index_axis_mut(Axis(0), 2).mapv_inplace(|v| v * 1e-10);
        }
        for reduction in REDUCTIONS {
            let what = format!("{what}/{}", reduction.name());
            let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
            let out = check_args(ctx(), &cos(), &args, &what);
            let grad = out.grad.unwrap();
            assert!(grad.iter().all(|g| g.is_finite()), "{what}: gradient");
            assert!(out.value.is_none_or(f32::is_finite), "{what}: value");
            if let Some(l) = out.losses {
                assert!(l.iter().all(|v| v.is_finite()), "{what}: losses");
                if zero_p || zero_t {
                    assert_eq!(l[[2]], 0.0, "{what}: the zero row's loss");
                }
            }
            if zero_t {
                let row = grad.index_axis(Axis(0), 2);
                assert!(row.iter().all(|&g| g == 0.0), "{what}: {row:?}");
            }
        }
    }
}

/// Every row zero: the value is 0, not NaN.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn all_zero_input() {
    let z = ArrayD::<f32>::zeros(IxDyn(&[4, 300]));
    for reduction in REDUCTIONS {
        let what = format!("cosine/all zero/{}", reduction.name());
        let out = check_args(
            ctx(),
            &cos(),
            &LossArgs::new(z.view(), z.view()).reduction(reduction),
            &what,
        );
        assert!(out.value.is_none_or(|v| v == 0.0), "{what}");
        assert!(out.grad.unwrap().iter().all(|&g| g == 0.0), "{what}");
    }
}

/// A larger ε (0.5): rows with ‖p‖ or ‖t‖ under it use ε instead.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn custom_eps() {
    let loss = Loss::cosine_proximity().eps(0.5).build().unwrap();
    let (b, c) = (40usize, 9usize);
    let mut p = synthetic::uniform(&[b, c], -0.3, 0.3, seed_for("cosine/eps/p"));
    let mut t = synthetic::uniform(&[b, c], -0.3, 0.3, seed_for("cosine/eps/t"));
    // Some rows of norm above ε.
    for r in (0..b).step_by(3) {
        p.index_axis_mut(Axis(0), r).mapv_inplace(|v| v * 10.0);
    }
    for r in (0..b).step_by(4) {
        t.index_axis_mut(Axis(0), r).mapv_inplace(|v| v * 10.0);
    }
    for reduction in REDUCTIONS {
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        check_args(
            ctx(),
            &loss,
            &args,
            &format!("cosine/eps 0.5/{}", reduction.name()),
        );
    }
}

/// Parallel and antiparallel rows: ℓ = ∓1 and a gradient of (almost) zero.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn parallel_rows() {
    let p = synthetic::uniform(&[6, 50], -3.0, 3.0, seed_for("cosine/parallel"));
    let mut t = p.mapv(|v| 2.0 * v);
    for r in [1, 4] {
        t.index_axis_mut(Axis(0), r).mapv_inplace(|v| -v);
    }
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
    let out = ctx().compute(&cos(), &args).unwrap();
    let l = out.losses.unwrap();
    for r in 0..6 {
        let want = if r == 1 || r == 4 { 1.0 } else { -1.0 };
        approx::assert_relative_eq!(l[[r]], want, max_relative = 1e-6);
    }
    // The gradient is zero up to rounding of terms of size 1/‖p‖ (about 0.06 here).
    assert!(out.grad.unwrap().iter().all(|g| g.abs() < 1e-7));
}

/// A million rows of 2 and of 3 features.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn a_million_short_rows() {
    let b = 1_000_000usize;
    for (c, reduction) in [(2usize, Reduction::None), (3, Reduction::Mean)] {
        let what = format!("cosine/1M x {c}/{}", reduction.name());
        let p = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/p")));
        let t = synthetic::uniform(&[b, c], -3.0, 3.0, seed_for(&format!("{what}/t")));
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(ctx(), &cos(), &args, &what);
        assert_eq!(out.counted, b, "{what}");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn eps_must_be_finite_and_positive() {
    // Refused when the loss is built, before any call can take it.
    for eps in [0.0f32, -1e-8, f32::NAN, f32::INFINITY] {
        let e = Loss::cosine_proximity().eps(eps).build().unwrap_err();
        assert!(
            matches!(e, Error::InvalidOption { option: "eps", .. }),
            "{eps}: {e:?}"
        );
    }
}

/// Rows at every scale ([`cosine_scale_rows`]: elements of 1e20, 3e37, one of 2e19 in an
/// ordinary row, 1e-20 against 1e20, ...): the loss does not depend on the scale of p or t, so
/// the scaled one-pass sums agree with the reference everywhere, where unscaled f32 sums of
/// squares overflowed (an element of 1.8e19 gave loss 0) or underflowed. Each row in a call of
/// its own, so a row's tolerance is its own scale's.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_scale_agrees_with_the_reference() {
    let (p, t) = cosine_scale_rows(seed_for("cosine/scales"));
    for r in 0..p.shape()[0] {
        let pr = p.slice_axis(Axis(0), ndarray::Slice::from(r..r + 1));
        let tr = t.slice_axis(Axis(0), ndarray::Slice::from(r..r + 1));
        for reduction in REDUCTIONS {
            let what = format!("cosine/scales/row {r}/{}", reduction.name());
            let args = LossArgs::new(pr.clone(), tr.clone()).reduction(reduction);
            let out = check_args(ctx(), &cos(), &args, &what);
            if let Some(v) = out.value {
                assert!(v.is_finite(), "{what}: {v}");
            }
        }
    }
    // The row, by value: p = t with one element of 2e19 has cos = 1, not 0.
    let mut q = synthetic::uniform(&[1, 50], -3.0, 3.0, seed_for("cosine/scales/same"));
    q[[0, 7]] = 2e19;
    let args = LossArgs::new(q.view(), q.view()).reduction(Reduction::Sum);
    let v = ctx()
        .compute(&cos(), &args)
        .expect("GPU")
        .value
        .expect("value");
    assert!((v + 1.0).abs() <= 1e-6, "cos(p, p) = {} != 1", -v);
}

/// Rows of one feature: cos = ±1 and the gradient exactly 0, where rounding left an ulp of
/// 1/(‖p‖‖t‖) of the two cancelling terms (PyTorch's float32 gives 0).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn one_feature_rows_have_zero_gradient() {
    let p = synthetic::uniform(&[257, 1], -3.0, 3.0, seed_for("cosine/C=1/p"));
    let t = synthetic::uniform(&[257, 1], -3.0, 3.0, seed_for("cosine/C=1/t"));
    for reduction in REDUCTIONS {
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(
            ctx(),
            &cos(),
            &args,
            &format!("cosine/C=1/{}", reduction.name()),
        );
        assert!(
            out.grad.unwrap().iter().all(|&g| g == 0.0),
            "{}",
            reduction.name()
        );
        if let Some(l) = out.losses {
            for (&l, (&pi, &ti)) in l.iter().zip(p.iter().zip(&t)) {
                assert_eq!(l, -(pi * ti).signum());
            }
        }
    }
}
