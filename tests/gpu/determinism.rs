//! Same inputs, same device: bit-identical value, per-element losses and gradient.

use wgpu_loss::{GpuContext, Loss, LossArgs, LossOutput, Reduction, synthetic};

use crate::common::{ctx, plain_ctx, seed_for, unroll_flipped_ctx};

fn bits(o: &LossOutput<f32>) -> (Option<u32>, Vec<u32>, Vec<u32>) {
    (
        o.value.map(f32::to_bits),
        o.losses.iter().flatten().map(|v| v.to_bits()).collect(),
        o.grad.iter().flatten().map(|v| v.to_bits()).collect(),
    )
}

fn check(ctx: &GpuContext, name: &str) {
    for loss in Loss::all_default() {
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

/// The main loops' two shapes (`ContextOptions::unroll`: four units per trip with their loads
/// issued together, or one) add the same terms in the same order, so they give the same bits:
/// every loss, with the losses of `Reduction::None` too, at sizes where each lane runs several
/// unrolled trips and a remainder (elementwise: odd, and a multiple of 4 for the vec4 path;
/// rows: longer than a workgroup's registers hold, odd, and class-index targets).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn unrolled_loops_give_the_same_bits() {
    let elementwise: [&[usize]; 3] = [&[1], &[300_007], &[1 << 20]];
    let rows: [&[usize]; 3] = [&[3, 7], &[5, 70_001], &[2, 262_144]];
    for loss in Loss::all_default() {
        let shapes = if loss.is_row_wise() {
            rows
        } else {
            elementwise
        };
        for shape in shapes {
            for reduction in [Reduction::Mean, Reduction::None] {
                let what = format!("unroll/{}/{shape:?}/{}", loss.name(), reduction.name());
                let b = synthetic::batch(&loss, shape, seed_for(&what));
                let classes = synthetic::classes(&shape[..1], shape[shape.len() - 1], 7);
                let args = if loss.takes_classes() {
                    LossArgs::new(b.pred.view(), classes.view())
                } else {
                    LossArgs::new(b.pred.view(), b.target.view())
                }
                .reduction(reduction);
                let one = ctx().compute(&loss, &args).unwrap();
                let other = unroll_flipped_ctx().compute(&loss, &args).unwrap();
                assert!(
                    bits(&one) == bits(&other),
                    "{what}: the two loop shapes differ: {:?} vs {:?}",
                    one.value,
                    other.value
                );
            }
        }
    }
}
