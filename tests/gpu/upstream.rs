//! The upstream gradient: a scalar for Mean and Sum, an array for None; and loss-only mode.

use wgpu_loss::{Loss, LossArgs, Reduction, Upstream, synthetic};

use crate::common::{check_args, ctx, elementwise_losses, seed_for};

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn scalar_upstream_scales_the_gradient() {
    for loss in Loss::all_default() {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("upstream scalar/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[4099], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view())
                .reduction(reduction)
                .upstream(Upstream::Scalar(-2.5));
            check_args(ctx(), &loss, &args, &what);
        }
    }
}

/// Upstream arrays of the prediction's shape (the row-wise family takes them shaped like the
/// rows: `rows::upstream_and_loss_only`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn array_upstream_with_reduction_none() {
    for loss in elementwise_losses() {
        let what = format!("upstream array/{}", loss.name());
        let b = synthetic::batch(&loss, &[17, 301], seed_for(&what));
        let g = synthetic::uniform(&[17, 301], -3.0, 3.0, seed_for(&format!("{what}/g")));
        let args = LossArgs::new(b.pred.view(), b.target.view())
            .reduction(Reduction::None)
            .upstream(Upstream::Array(g.view()));
        check_args(ctx(), &loss, &args, &what);
    }
}

/// Loss-only mode computes the same value and returns no gradient.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn loss_only_mode() {
    for loss in Loss::all_default() {
        for reduction in [Reduction::Mean, Reduction::None] {
            let what = format!("loss only/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[70_001], seed_for(&what));
            let full = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            let only = full.clone().loss_only();
            let out = check_args(ctx(), &loss, &only, &what);
            assert!(
                out.grad.is_none(),
                "{what}: loss-only mode returned a gradient"
            );
            let with_grad = ctx().compute(&loss, &full).unwrap();
            assert_eq!(
                out.value.map(f32::to_bits),
                with_grad.value.map(f32::to_bits),
                "{what}"
            );
            assert_eq!(out.losses, with_grad.losses, "{what}");
        }
    }
}
