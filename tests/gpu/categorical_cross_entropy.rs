//! Categorical cross entropy on probabilities: `shaders/categorical_cross_entropy.wgsl` against
//! `src/reference/categorical_cross_entropy.rs`.

use ndarray::{ArrayD, IxDyn};
use wgpu_loss::{Error, Loss, LossArgs, Reduction, reference};

use crate::common::{
    REDUCTIONS, check_args, chunked_ctx, ctx, matrix_rows, one_hot_rows, prob_rows, seed_for,
};

const CCE: Loss = Loss::CategoricalCrossEntropy;

/// Probability rows against soft targets (`Mean`, `None`) and one-hot targets (`Sum`).
fn case(c: usize) {
    for reduction in REDUCTIONS {
        let b = matrix_rows(c, reduction);
        let what = format!("cce/C={c}/B={b}/{}", reduction.name());
        let p = prob_rows(&[b, c], seed_for(&format!("{what}/p")));
        let t = if reduction == Reduction::Sum {
            one_hot_rows(&[b, c], seed_for(&format!("{what}/t")))
        } else {
            prob_rows(&[b, c], seed_for(&format!("{what}/t")))
        };
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(ctx(), &CCE, &args, &what);
        assert_eq!(out.counted, b, "{what}: counted");
    }
}

row_matrix!(case);

/// A literal case worked by hand: ℓ = −(0.25 ln 0.5 + 0.75 ln 0.25) for row 0 and −ln 0.8
/// for row 1; ∂ℓ/∂p = −t/p.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr2(&[[0.5f32, 0.25, 0.25], [0.1, 0.8, 0.1]]).into_dyn();
    let t = ndarray::arr2(&[[0.25f32, 0.75, 0.0], [0.0, 1.0, 0.0]]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
    let out = check_args(ctx(), &CCE, &args, "cce/worked example");
    let l = out.losses.unwrap();
    let l0 = -(0.25 * 0.5f64.ln() + 0.75 * 0.25f64.ln());
    approx::assert_relative_eq!(f64::from(l[[0]]), l0, max_relative = 1e-6);
    approx::assert_relative_eq!(f64::from(l[[1]]), -(0.8f64.ln()), max_relative = 1e-6);
    let g = out.grad.unwrap();
    approx::assert_relative_eq!(g[[0, 1]], -3.0, max_relative = 1e-6);
    assert_eq!(g[[0, 2]], 0.0);
    approx::assert_relative_eq!(g[[1, 1]], -1.25, max_relative = 1e-6);
}

/// p = 0 and p = 1 exactly: the log is clamped at −100 and the gradient's denominator at
/// 1e-12, so everything stays finite; t = 0 against p = 0 contributes 0.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn probabilities_at_zero_and_one_stay_finite() {
    let p = ndarray::arr2(&[
        [0.0f32, 1.0, 0.0],
        [0.0, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [1e-30, 0.5, 0.5],
        [0.2, 0.3, 0.5],
    ])
    .into_dyn();
    let t = ndarray::arr2(&[
        [0.0f32, 1.0, 0.0],
        [0.5, 0.5, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
    ])
    .into_dyn();
    for reduction in REDUCTIONS {
        let what = format!("cce/edges/{}", reduction.name());
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(ctx(), &CCE, &args, &what);
        let grad = out.grad.unwrap();
        assert!(grad.iter().all(|g| g.is_finite()), "{what}: {grad:?}");
        if let Some(l) = out.losses {
            assert_eq!(l[[0]], 0.0, "{what}: p = t one-hot");
            approx::assert_relative_eq!(
                l[[1]],
                0.5 * 100.0 - 0.5 * 0.5f32.ln(),
                max_relative = 1e-6
            );
            approx::assert_relative_eq!(l[[2]], 100.0, max_relative = 1e-6);
            approx::assert_relative_eq!(l[[3]], 69.077_55, max_relative = 1e-5);
        }
        if reduction == Reduction::Sum {
            // Below 1e-12 the denominator is clamped: −1 / 1e-12.
            approx::assert_relative_eq!(grad[[2, 0]], -1e12, max_relative = 1e-6);
            approx::assert_relative_eq!(grad[[3, 0]], -1e12, max_relative = 1e-6);
        }
    }
}

/// A probability above 1 or below 0 is an error naming the flat index of the first one in
/// row-major order (found on the GPU), here in row 5 ahead of offenders later in row 5 and in
/// row 9; and the reference agrees.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn out_of_domain_reports_the_first_flat_index() {
    let (b, c) = (12usize, 10usize);
    for (first, value) in [(3usize, 1.5f32), (3, -0.25), (0, f32::INFINITY)] {
        let what = format!("cce/domain/{value}");
        let mut p = prob_rows(&[b, c], seed_for(&what));
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        p[[9, 1]] = 2.0;
        p[[5, 7]] = -1.0;
        p[[5, first]] = value;
        let args = LossArgs::new(p.view(), t.view());
        let want = 5 * c + first;
        match ctx().compute(&CCE, &args) {
            Err(Error::OutOfDomain {
                index, value: v, ..
            }) => {
                assert_eq!((index, v), (want, value), "{what}")
            }
            other => panic!("{what}: expected OutOfDomain at {want}, got {other:?}"),
        }
        match reference::compute(&CCE, &args) {
            Err(Error::OutOfDomain { index, .. }) => assert_eq!(index, want, "{what}: reference"),
            other => panic!("{what}: reference: expected OutOfDomain, got {other:?}"),
        }
    }
}

/// The same in a later chunk: rows of 7 in chunks of 142 rows, offenders in the fifth chunk
/// and later; the reported index is global.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn out_of_domain_in_a_later_chunk() {
    let (b, c) = (1001usize, 7usize);
    let mut p = prob_rows(&[b, c], seed_for("cce/domain/chunked"));
    let t = prob_rows(&[b, c], seed_for("cce/domain/chunked/t"));
    p[[600, 4]] = 1.0001;
    p[[900, 0]] = -3.0;
    p[[1000, 6]] = 7.0;
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    match chunked_ctx().compute(&CCE, &args) {
        Err(Error::OutOfDomain { index, value, .. }) => {
            assert_eq!((index, value), (600 * c + 4, 1.0001))
        }
        other => panic!("expected OutOfDomain at {}, got {other:?}", 600 * c + 4),
    }
}

/// A NaN probability is not a domain error: it propagates (see `rows.rs`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn nan_is_not_a_domain_error() {
    let mut p = prob_rows(&[4, 5], seed_for("cce/nan domain"));
    let t = prob_rows(&[4, 5], seed_for("cce/nan domain/t"));
    p[[2, 2]] = f32::NAN;
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    let out = check_args(ctx(), &CCE, &args, "cce/nan domain");
    assert!(out.value.unwrap().is_nan());
}

/// The gradient of a long row's streamed elements is written as they are pushed
/// (`ROW_GRAD_EARLY`), so a NaN found late in a row must still make the whole row NaN,
/// the elements already written included: NaN in a held element (column 0), in the first
/// streamed one and in the last, in the prediction or the target, in rows of one lane
/// (C = 1000, 1001) and of several (C = 5000 in vec4 units, 5001 in words), every reduction
/// (`check_args` compares every other row with the reference).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn nan_late_in_a_long_row_poisons_the_written_gradient() {
    nan_late_in_long_rows(ctx(), "");
}

/// The cases of `nan_late_in_a_long_row_poisons_the_written_gradient` on `ctx` (split rows
/// too: `split.rs`).
pub fn nan_late_in_long_rows(ctx: &wgpu_loss::GpuContext, name: &str) {
    let (b, bad) = (5usize, 3usize);
    for c in [1000usize, 1001, 5000, 5001] {
        let lanes = ctx.row_lanes(c) as usize;
        for col in [0usize, 16 * lanes, c - 1] {
            for in_target in [false, true] {
                let what = format!("cce/nan late{name}/C={c}/col {col}/target={in_target}");
                let mut p = prob_rows(&[b, c], seed_for(&format!("{what}/p")));
                let mut t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
                if in_target {
                    t[[bad, col]] = f32::NAN;
                } else {
                    p[[bad, col]] = f32::NAN;
                }
                for reduction in REDUCTIONS {
                    let what = format!("{what}/{}", reduction.name());
                    let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
                    let out = check_args(ctx, &CCE, &args, &what);
                    let grad = out.grad.unwrap();
                    for r in 0..b {
                        let row = grad.index_axis(ndarray::Axis(0), r);
                        let nans = row.iter().filter(|g| g.is_nan()).count();
                        assert_eq!(nans, if r == bad { c } else { 0 }, "{what}: row {r}");
                    }
                }
            }
        }
    }
}

/// A dense target of another shape, and class indices (softmax cross entropy only).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn target_shape_mismatch() {
    let p = prob_rows(&[4, 5], 1);
    for shape in [vec![4usize, 6], vec![5, 4], vec![20], vec![4, 5, 1]] {
        let t = ArrayD::from_elem(IxDyn(&shape), 0.2f32);
        let e = ctx()
            .compute(&CCE, &LossArgs::new(p.view(), t.view()))
            .unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { what: "target", expected, got }
                if expected == &[4, 5] && got == &shape),
            "{shape:?}: {e:?}"
        );
    }
}
