//! KL divergence: `shaders/kl_div.wgsl` against `src/losses/kl_div.rs` (`reference`), and
//! the `batchmean` reduction.

use ndarray::ArrayD;
use wgpu_loss::{Loss, LossArgs, Reduction, reference, synthetic};

use crate::common::{assert_ulps, check_args, ctx, seed_for};

shape_matrix!(Loss::kl_div().build().unwrap());

/// Both targets, every reduction (`batchmean` of a `[7, 13, 29]` prediction divides by 7), with
/// a fifth of the probability targets exactly 0 against log-probabilities down to −∞ (each
/// contributes 0).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_option() {
    for log_target in [false, true] {
        let loss = Loss::kl_div().log_target(log_target).build().unwrap();
        for reduction in [
            Reduction::Mean,
            Reduction::Sum,
            Reduction::None,
            Reduction::BatchMean,
        ] {
            let what = format!("kl-div({log_target})/{}", reduction.name());
            let mut b = synthetic::batch(&loss, &[7, 13, 29], seed_for(&what));
            if log_target {
                b.target.mapv_inplace(|t| t.ln()); // log-probabilities
            } else {
                for (k, (t, p)) in b.target.iter_mut().zip(b.pred.iter_mut()).enumerate() {
                    if k % 5 == 0 {
                        *t = 0.0;
                        if k % 10 == 0 {
                            *p = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(ctx(), &loss, &args, &what);
        }
    }
}

/// PyTorch's numbers: `F.kl_div(torch.tensor([[-1., -2.], [0., -3.]]), torch.tensor([[0.5,
/// 0.], [0.25, 1.]]), reduction='batchmean')` = (0.5 (ln 0.5 + 1) + 0 + 0.25 ln 0.25 + (0 + 3))
/// / 2, gradient −t / 2.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr2(&[[-1.0f32, -2.0], [0.0, -3.0]]).into_dyn();
    let t = ndarray::arr2(&[[0.5f32, 0.0], [0.25, 1.0]]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::BatchMean);
    let out = ctx()
        .compute(&Loss::kl_div().build().unwrap(), &args)
        .unwrap();
    let want = (0.5 * (0.5f64.ln() + 1.0) + 0.25 * 0.25f64.ln() + 3.0) / 2.0;
    approx::assert_relative_eq!(f64::from(out.value.unwrap()), want, max_relative = 2e-7);
    let g = out.grad.unwrap();
    assert_eq!(
        g.iter().copied().collect::<Vec<_>>(),
        vec![-0.25, 0.0, -0.125, -0.5]
    );
}

/// Per element within a few ulp of the f64 reference over probability targets from 2^-149 to
/// 1 (subnormals included) against log-probabilities near ln t: `ln t` is common/log.wgsl's,
/// not WGSL's `log` (2^-21 absolute near 1).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn accurate_per_element() {
    let t: Vec<f32> = crate::common::probabilities();
    let p: Vec<f32> = t
        .iter()
        .map(|&t| (f64::from(t).ln() * 0.5) as f32)
        .collect();
    let (p, t) = (ArrayD::from_shape_vec(vec![t.len()], p).unwrap(), {
        ArrayD::from_shape_vec(vec![t.len()], t).unwrap()
    });
    let loss = Loss::kl_div().build().unwrap();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::None);
    let gpu = ctx().compute(&loss, &args).unwrap().losses.unwrap();
    let want = reference::compute(&loss, &args).unwrap().losses.unwrap();
    assert_ulps(&gpu, &want, t.as_slice().unwrap(), "kl-div per element");
}
