//! Edge shapes and values: NaN and Inf, higher rank, non-contiguous views.

use ndarray::{ArrayD, Axis};
use wgpu_loss::{Loss, LossArgs, Reduction, Upstream, synthetic};

use crate::common::{
    assert_infinite_elementwise, check_args, ctx, elementwise_losses, infinite_elementwise_cases,
    seed_for,
};

/// A NaN in the prediction or the target propagates to the value, to its own per-element loss
/// and gradient, and to nothing else (the row-wise family: `rows::nan_poisons_its_row_only`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn nan_propagates_to_its_element_only() {
    for loss in elementwise_losses() {
        for in_target in [false, true] {
            let what = format!("nan/{}/target={in_target}", loss.name());
            let mut b = synthetic::batch(&loss, &[5000], seed_for(&what));
            let k = 1234;
            if in_target {
                b.target[[k]] = f32::NAN;
            } else {
                b.pred[[k]] = f32::NAN;
            }
            for reduction in [Reduction::Mean, Reduction::None] {
                let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
                let out = check_args(ctx(), &loss, &args, &format!("{what}/{}", reduction.name()));
                let grad = out.grad.unwrap();
                assert!(
                    grad[[k]].is_nan(),
                    "{what}: gradient at the NaN is {}",
                    grad[[k]]
                );
                assert_eq!(
                    grad.iter().filter(|g| g.is_nan()).count(),
                    1,
                    "{what}: NaN spread"
                );
                match reduction {
                    Reduction::None => {
                        let l = out.losses.unwrap();
                        assert!(l[[k]].is_nan());
                        assert_eq!(l.iter().filter(|v| v.is_nan()).count(), 1);
                    }
                    _ => assert!(out.value.unwrap().is_nan(), "{what}: value {:?}", out.value),
                }
            }
        }
    }
}

/// An infinite prediction gives an infinite MSE and MAE, and a finite Huber gradient.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn infinity_gives_infinite_losses() {
    let p = ndarray::arr1(&[f32::INFINITY, 1.0, 2.0]).into_dyn();
    let t = ndarray::arr1(&[0.0f32, 0.0, 0.0]).into_dyn();
    for loss in [
        Loss::Mse,
        Loss::Mae,
        Loss::huber().delta(1.0).build().unwrap(),
    ] {
        let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
        let out = ctx().compute(&loss, &args).unwrap();
        assert_eq!(out.value, Some(f32::INFINITY), "{}", loss.name());
    }
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    let huber = ctx()
        .compute(&Loss::huber().delta(1.0).build().unwrap(), &args)
        .unwrap();
    assert_eq!(huber.grad.unwrap()[[0]], 1.0);
}

/// Rank 3 with odd lengths, and rank 0 (a single scalar); the row-wise family:
/// `rows::ranks_and_views`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn odd_shapes_and_ranks() {
    for shape in [vec![3usize, 5, 7], vec![1, 1, 257], vec![], vec![1]] {
        for loss in elementwise_losses() {
            let what = format!("shape {shape:?}/{}", loss.name());
            let b = synthetic::batch(&loss, &shape, seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::None);
            let out = check_args(ctx(), &loss, &args, &what);
            assert_eq!(out.grad.unwrap().shape(), &shape[..]);
        }
    }
}

/// Transposed and strided views are read in logical (row-major) order (the row-wise family:
/// `rows::ranks_and_views`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn non_contiguous_views() {
    for loss in elementwise_losses() {
        let what = format!("views/{}", loss.name());
        let b = synthetic::batch(&loss, &[40, 90], seed_for(&what));
        let w = synthetic::uniform(&[90, 40], 0.0, 2.0, seed_for(&format!("{what}/w")));
        let (p, t) = (b.pred.t(), b.target.t());
        let mut args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
        if loss.takes_weight() {
            args = args.weight(w.view());
        }
        let out = check_args(ctx(), &loss, &args, &format!("{what}/transposed"));
        // Compare with the same data made contiguous: identical bits.
        let (pc, tc): (ArrayD<f32>, ArrayD<f32>) = (
            p.as_standard_layout().into_owned(),
            t.as_standard_layout().into_owned(),
        );
        let mut argc = LossArgs::new(pc.view(), tc.view()).reduction(Reduction::None);
        if loss.takes_weight() {
            argc = argc.weight(w.view());
        }
        let outc = ctx().compute(&loss, &argc).unwrap();
        assert_eq!(out.grad, outc.grad, "{what}");
        // Every other column: a strided view.
        let ps = b.pred.slice_axis(Axis(1), ndarray::Slice::new(0, None, 2));
        let ts = b
            .target
            .slice_axis(Axis(1), ndarray::Slice::new(0, None, 2));
        check_args(
            ctx(),
            &loss,
            &LossArgs::new(ps, ts),
            &format!("{what}/strided"),
        );
    }
}

/// Uploads and readbacks of several MiB that are not a whole number of the 1 MiB pieces the
/// host copies are split into across threads, elementwise (three uploads, two readbacks) and
/// row-wise. Each shape runs twice with different data, so the second call reuses the first's
/// pooled staging buffers: an element the host copies missed would hold a stale value.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn large_transfers_with_a_partial_last_piece() {
    // 6 000 004 bytes per array: five whole pieces and a remainder.
    let n = 1_500_001;
    for run in ["first", "second"] {
        let what = format!("large transfers/mse/none/{run}");
        let b = synthetic::batch(&Loss::Mse, &[n], seed_for(&what));
        let g = synthetic::uniform(&[n], -2.0, 2.0, seed_for(&format!("{what}/g")));
        let args = LossArgs::new(b.pred.view(), b.target.view())
            .reduction(Reduction::None)
            .upstream(Upstream::Array(g.view()));
        check_args(ctx(), &Loss::Mse, &args, &what);
    }
    // 37 rows of 40 009 logits: 5 921 332 bytes per array.
    let shape = [37usize, 40_009];
    let loss = Loss::softmax_cross_entropy().build().unwrap();
    for run in ["first", "second"] {
        let what = format!("large transfers/softmax-ce/{run}");
        let b = synthetic::batch(&loss, &shape, seed_for(&what));
        let args = LossArgs::new(b.pred.view(), b.target.view());
        check_args(ctx(), &loss, &args, &what);
    }
}

/// Infinite inputs ([`infinite_elementwise_cases`]): `∞ − ∞` is NaN in loss and gradient for
/// MSE, MAE and Huber (the GPU's `sign(NaN)` gave a gradient of 0); BCE with logits of `±∞`
/// gives the loss's limit, never NaN.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn infinite_inputs_give_nan_or_the_limit() {
    for (loss, p, t, w) in infinite_elementwise_cases() {
        let what = format!("inf/{}", loss.name());
        let mut args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
        if let Some(w) = &w {
            args = args.weight(w.view());
        }
        let out = check_args(ctx(), &loss, &args, &what);
        assert_infinite_elementwise(&loss, &out, &p, &t, w.as_ref(), &what);
    }
}
