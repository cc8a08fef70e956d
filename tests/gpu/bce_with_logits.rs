//! BCE with logits: `shaders/bce_with_logits.wgsl` against `src/reference/bce_with_logits.rs`.

use ndarray::ArrayD;
use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::BceWithLogits);

/// weight (full or last dimension) and pos_weight (last dimension), alone and together.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn weight_and_pos_weight() {
    let shape = [61usize, 129];
    let loss = Loss::BceWithLogits;
    for (use_w, use_q) in [(true, false), (false, true), (true, true)] {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("bcel/w={use_w}/q={use_q}/{}", reduction.name());
            let b = synthetic::batch(&loss, &shape, seed_for(&what));
            let w = synthetic::uniform(&shape, 0.0, 2.0, seed_for(&format!("{what}/w")));
            let q = synthetic::uniform(&shape[1..], 0.0, 4.0, seed_for(&format!("{what}/q")));
            let mut args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            if use_w {
                args = args.weight(w.view());
            }
            if use_q {
                args = args.pos_weight(q.view());
            }
            check_args(ctx(), &loss, &args, &what);
        }
    }
}

/// Logits of ±1e4 and ±100 never overflow: values and gradients stay finite and correct.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn extreme_logits_stay_finite() {
    let x: Vec<f32> = vec![1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 0.0, 1e4, -1e4];
    let t: Vec<f32> = vec![0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 1.0, 0.0];
    let x = ArrayD::from_shape_vec(vec![x.len()], x).unwrap();
    let t = ArrayD::from_shape_vec(vec![t.len()], t).unwrap();
    let args = LossArgs::new(x.view(), t.view()).reduction(Reduction::None);
    let out = check_args(ctx(), &Loss::BceWithLogits, &args, "bcel/extremes");
    assert!(out.losses.unwrap().iter().all(|l| l.is_finite()));
    assert!(out.grad.unwrap().iter().all(|g| g.is_finite()));
}

/// Worked by hand: x = 0, t = 1, pos_weight 3 → ℓ = 3 ln 2 and ∂ℓ/∂x = 3·½ − 3 = −1.5.
/// PyTorch: `F.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1),
/// pos_weight=torch.tensor([3.]))`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example_with_pos_weight() {
    let x = ndarray::arr1(&[0.0f32]).into_dyn();
    let t = ndarray::arr1(&[1.0f32]).into_dyn();
    let q = ndarray::arr1(&[3.0f32]).into_dyn();
    let out = ctx()
        .compute(
            &Loss::BceWithLogits,
            &LossArgs::new(x.view(), t.view()).pos_weight(q.view()),
        )
        .unwrap();
    approx::assert_relative_eq!(
        out.value.unwrap(),
        3.0 * std::f32::consts::LN_2,
        max_relative = 1e-6
    );
    approx::assert_relative_eq!(out.grad.unwrap()[[0]], -1.5, max_relative = 1e-6);
}
