//! Same inputs, same device: bit-identical value, per-element losses and gradient.

use wgpu_loss::{GpuContext, Loss, LossArgs, LossOutput, Reduction, synthetic};

use crate::common::{ctx, plain_ctx, seed_for};

fn bits(o: &LossOutput<f32>) -> (Option<u32>, Vec<u32>, Vec<u32>) {
    (
        o.value.map(f32::to_bits),
        o.losses.iter().flatten().map(|v| v.to_bits()).collect(),
        o.grad.iter().flatten().map(|v| v.to_bits()).collect(),
    )
}

fn check(ctx: &GpuContext, name: &str) {
    for loss in Loss::ALL_DEFAULT {
        for reduction in [Reduction::Mean, Reduction::None] {
            let what = format!("determinism/{name}/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[1_000_003], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            let first = ctx.compute(&loss, &args).unwrap();
            let second = ctx.compute(&loss, &args).unwrap();
            assert!(
                bits(&first) == bits(&second),
                "{what}: two calls differ: {:?} vs {:?}",
                first.value,
                second.value
            );
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn repeated_calls_are_bit_identical() {
    check(ctx(), "default");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn repeated_calls_are_bit_identical_with_the_plain_reduction() {
    check(plain_ctx(), "plain");
}
