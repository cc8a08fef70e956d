//! Huber: `shaders/huber.wgsl` against `src/reference/huber.rs`.

use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::huber().delta(1.0).build().unwrap());

/// Other thresholds: with inputs in U(−3, 3), δ = 0.1 is mostly linear, δ = 5 all quadratic.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn other_deltas() {
    for delta in [0.1f32, 0.5, 2.0, 5.0] {
        let loss = Loss::huber().delta(delta).build().unwrap();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("huber(δ={delta})/{}", reduction.name());
            let b = synthetic::batch(&loss, &[33, 65], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(ctx(), &loss, &args, &what);
        }
    }
}

/// Worked by hand, δ = 1: d = 0.5 → ½·0.25 = 0.125 (grad 0.5); d = −3 → 1·(3 − 0.5) = 2.5
/// (grad −1). PyTorch: `F.huber_loss(torch.tensor([0.5, -3.]), torch.zeros(2), reduction='sum')`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr1(&[0.5f32, -3.0]).into_dyn();
    let t = ndarray::arr1(&[0.0f32, 0.0]).into_dyn();
    let args = LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum);
    let out = ctx()
        .compute(&Loss::huber().delta(1.0).build().unwrap(), &args)
        .unwrap();
    assert_eq!(out.value, Some(2.625));
    assert_eq!(out.grad.unwrap().as_slice().unwrap(), &[0.5, -1.0]);
}
