//! MSE: `shaders/mse.wgsl` against `src/reference/mse.rs`.

use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::Mse);

/// 2^26 elements: 256 MiB per input, more than one storage binding on llvmpipe (128 MiB), so
/// the call runs as successive chunks; every element's gradient is checked.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn two_pow_26_elements_span_several_bindings() {
    let n = 1usize << 26;
    let ctx = ctx();
    println!("2^26 elements in chunks of {}", ctx.max_chunk_elements());
    let b = synthetic::batch(&Loss::Mse, &[1 << 13, 1 << 13], seed_for("mse/2^26"));
    let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(Reduction::Mean);
    assert_eq!(args.len(), n);
    check_args(ctx, &Loss::Mse, &args, "mse/mean/2^26");
}

/// A literal case worked by hand (PyTorch: `F.mse_loss(torch.tensor([1., 2., 3.]),
/// torch.tensor([1., 1., 1.]))` is (0 + 1 + 4) / 3 = 5/3; its gradient 2 (p − t) / 3).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let p = ndarray::arr1(&[1.0f32, 2.0, 3.0]).into_dyn();
    let t = ndarray::arr1(&[1.0f32, 1.0, 1.0]).into_dyn();
    let out = ctx()
        .compute(&Loss::Mse, &LossArgs::new(p.view(), t.view()))
        .unwrap();
    approx::assert_relative_eq!(out.value.unwrap(), 5.0 / 3.0, max_relative = 1e-6);
    let g = out.grad.unwrap();
    approx::assert_relative_eq!(
        g.as_slice().unwrap(),
        &[0.0, 2.0 / 3.0, 4.0 / 3.0][..],
        max_relative = 1e-6
    );
}
