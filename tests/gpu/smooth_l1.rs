//! Smooth L1: `shaders/smooth_l1.wgsl` against `src/losses/smooth_l1.rs` (`reference`).

use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::smooth_l1().beta(1.0).build().unwrap());

/// Other thresholds, with inputs in U(−3, 3): β = 0 (the L1 loss), 0.1 mostly linear, 5 all
/// quadratic.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn other_betas() {
    for beta in [0.0f32, 0.1, 0.5, 2.0, 5.0] {
        let loss = Loss::smooth_l1().beta(beta).build().unwrap();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("smooth-l1(β={beta})/{}", reduction.name());
            let b = synthetic::batch(&loss, &[33, 65], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(ctx(), &loss, &args, &what);
        }
    }
}

/// Worked by hand (PyTorch: `F.smooth_l1_loss(torch.tensor([0.5, -3., 0.]), torch.zeros(3),
/// reduction='sum', beta=b)`): β = 1: 0.125 + 2.5 + 0 = 2.625, gradient (0.5, −1, 0);
/// β = 2: 0.0625 + 2 + 0, gradient (0.25, −1, 0); β = 0: the L1 loss, 3.5, (1, −1, 0).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr1(&[0.5f32, -3.0, 0.0]).into_dyn();
    let t = ndarray::arr1(&[0.0f32, 0.0, 0.0]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    for (beta, value, grad) in [
        (1.0f32, 2.625f32, [0.5f32, -1.0, 0.0]),
        (2.0, 2.0625, [0.25, -1.0, 0.0]),
        (0.0, 3.5, [1.0, -1.0, 0.0]),
    ] {
        let out = ctx()
            .compute(&Loss::smooth_l1().beta(beta).build().unwrap(), &args)
            .unwrap();
        assert_eq!(out.value, Some(value), "β = {beta}");
        assert_eq!(out.grad.unwrap().as_slice().unwrap(), &grad, "β = {beta}");
    }
}

/// A negative or non-finite β is refused before any work.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn invalid_beta() {
    // Refused when the loss is built, before any call can take it.
    for beta in [-1.0f32, f32::NAN, f32::INFINITY] {
        let r = Loss::smooth_l1().beta(beta).build();
        assert!(
            matches!(
                r,
                Err(wgpu_loss::Error::InvalidOption { option: "beta", .. })
            ),
            "β = {beta}: {r:?}"
        );
    }
}
