//! Poisson NLL: `shaders/poisson_nll.wgsl` against `src/losses/poisson_nll.rs` (`reference`).

use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::poisson_nll().build().unwrap());

/// Every combination of `log_input` and `full`, every reduction: log-rates in U(−3, 3) (their
/// exponentials, rates in (0.05, 20), without `log_input`) and counts in U(0, 6), so Stirling's
/// term is masked for some elements and added for the others.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_option() {
    for log_input in [true, false] {
        for full in [false, true] {
            let loss = Loss::poisson_nll()
                .log_input(log_input)
                .full(full)
                .eps(1e-6)
                .build()
                .unwrap();
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let what = format!("poisson-nll({log_input}, {full})/{}", reduction.name());
                let mut b = synthetic::batch(&loss, &[41, 67], seed_for(&what));
                if !log_input {
                    b.pred.mapv_inplace(f32::exp);
                }
                let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
                check_args(ctx(), &loss, &args, &what);
            }
        }
    }
}

/// PyTorch's numbers: `F.poisson_nll_loss(torch.tensor([0., 1.]), torch.tensor([2., 0.]),
/// reduction='sum')` = (1 − 0) + (e − 0) = 1 + e, gradient (1 − 2, e − 0) = (−1, e).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr1(&[0.0f32, 1.0]).into_dyn();
    let t = ndarray::arr1(&[2.0f32, 0.0]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    let out = ctx()
        .compute(&Loss::poisson_nll().build().unwrap(), &args)
        .unwrap();
    let e = std::f32::consts::E;
    approx::assert_relative_eq!(out.value.unwrap(), 1.0 + e, max_relative = 2e-7);
    let g = out.grad.unwrap();
    assert_eq!(g[[0]], -1.0);
    approx::assert_relative_eq!(g[[1]], e, max_relative = 2e-7);
}

/// A non-positive or non-finite `eps` is refused when the loss is built.
#[test]
fn invalid_eps() {
    for eps in [0.0f32, -1e-8, f32::NAN, f32::INFINITY] {
        let r = Loss::poisson_nll().eps(eps).build();
        assert!(
            matches!(
                r,
                Err(wgpu_loss::Error::InvalidOption { option: "eps", .. })
            ),
            "eps = {eps}: {r:?}"
        );
    }
}
