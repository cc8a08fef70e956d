//! MAE (L1): `shaders/mae.wgsl` against `src/reference/mae.rs`.

use wgpu_loss::{Loss, LossArgs, Reduction};

use crate::common::ctx;

shape_matrix!(Loss::Mae);

/// The gradient at d = 0 is 0 (PyTorch's `sign`), on both sides of it ±1.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn gradient_is_zero_at_zero() {
    let p = ndarray::arr1(&[1.0f32, 2.0, -3.0]).into_dyn();
    let t = ndarray::arr1(&[1.0f32, 1.0, 0.0]).into_dyn();
    let out = ctx()
        .compute(
            &Loss::Mae,
            &LossArgs::new(p.view(), t.view()).reduction(Reduction::Sum),
        )
        .unwrap();
    assert_eq!(out.value, Some(4.0));
    assert_eq!(out.grad.unwrap().as_slice().unwrap(), &[0.0, 1.0, -1.0]);
}
