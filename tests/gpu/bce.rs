//! BCE on probabilities: `shaders/bce.wgsl` against `src/reference/bce.rs`.

use ndarray::ArrayD;
use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, chunked_ctx, ctx, seed_for};

shape_matrix!(Loss::Bce);

/// A weight of the full shape, and one of the last dimension broadcast over the rows.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn weights_full_and_broadcast() {
    let shape = [97usize, 103];
    for (wshape, name) in [(&shape[..], "full"), (&shape[1..], "last dim")] {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("bce/weight {name}/{}", reduction.name());
            let b = synthetic::batch(&Loss::Bce, &shape, seed_for(&what));
            let w = synthetic::uniform(wshape, 0.0, 2.0, seed_for(&format!("{what}/w")));
            let args = LossArgs::new(b.pred.view(), b.target.view())
                .reduction(reduction)
                .weight(w.view());
            check_args(ctx(), &Loss::Bce, &args, &what);
        }
    }
}

/// p = 0 and p = 1 exactly, with hard and soft targets: PyTorch's clamps keep every value
/// finite (ln clamped at −100, denominator at 1e-12).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn probabilities_at_zero_and_one_stay_finite() {
    let p: Vec<f32> = vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1e-30];
    let t: Vec<f32> = vec![0.0, 1.0, 0.3, 0.0, 1.0, 0.7, 0.5, 1.0];
    let p = ArrayD::from_shape_vec(vec![p.len()], p).unwrap();
    let t = ArrayD::from_shape_vec(vec![t.len()], t).unwrap();
    for reduction in [Reduction::Sum, Reduction::None] {
        let args = LossArgs::new(p.view(), t.view()).reduction(reduction);
        let out = check_args(
            ctx(),
            &Loss::Bce,
            &args,
            &format!("bce/edges/{}", reduction.name()),
        );
        assert!(out.grad.unwrap().iter().all(|g| g.is_finite()));
    }
}

/// Outside [0, 1] is an error naming the first offending element, found on the GPU, also when
/// it lies in a later chunk (so the chunk's index base is right).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn out_of_domain_reports_the_first_index() {
    for (ctx, n, bad) in [
        (ctx(), 1_000_003usize, [777_777usize, 900_001]),
        (chunked_ctx(), 4097, [2_345, 3_999]),
    ] {
        let mut b = synthetic::batch(&Loss::Bce, &[n], seed_for(&format!("bce/domain/{n}")));
        b.pred[[bad[1]]] = -0.25;
        b.pred[[bad[0]]] = 1.5;
        let args = LossArgs::new(b.pred.view(), b.target.view());
        match ctx.compute(&Loss::Bce, &args) {
            Err(wgpu_loss::Error::OutOfDomain { index, value, .. }) => {
                assert_eq!((index, value), (bad[0], 1.5));
            }
            other => panic!("expected OutOfDomain at {}, got {other:?}", bad[0]),
        }
        // And the reference agrees.
        match wgpu_loss::reference::compute(&Loss::Bce, &args) {
            Err(wgpu_loss::Error::OutOfDomain { index, .. }) => assert_eq!(index, bad[0]),
            other => panic!("reference: expected OutOfDomain, got {other:?}"),
        }
    }
}
