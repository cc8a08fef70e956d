//! The first call: MSE and softmax cross entropy, value and gradient, from plain `Vec`s, on
//! the GPU (any adapter wgpu finds; Mesa's llvmpipe without one) and on the fast CPU path.
//!
//! Run with `cargo run --release --example first_call`.

use wgpu_loss::cpu::Cpu;
use wgpu_loss::{Compute, GpuContext, Loss, LossArgs};

fn main() -> wgpu_loss::Result<()> {
    let ctx = GpuContext::new()?;
    let pred = vec![0.2f32, 0.7, 0.9, 0.4];
    let target = vec![0.0f32, 1.0, 1.0, 0.0];
    let mse = ctx.value_and_grad(&Loss::Mse, LossArgs::new(&pred, &target))?;
    println!("mse {} grad {:?}", mse.value, mse.grad_vec());

    let logits: Vec<f32> = (0..4 * 10).map(|i| (i % 7) as f32 * 0.3).collect(); // [4, 10]
    let classes: Vec<i64> = vec![1, 2, 3, 9];
    let ce = Loss::softmax_cross_entropy().label_smoothing(0.1).build()?;
    let out = ctx.value_and_grad(&ce, LossArgs::from_slices(&logits, &[4, 10], &classes)?)?;
    let cpu = Cpu.value(&ce, LossArgs::from_slices(&logits, &[4, 10], &classes)?)?;
    println!(
        "softmax-ce {} (CPU {cpu}), grad of row 0 {:?}",
        out.value,
        &out.grad.as_slice().unwrap_or_default()[..10]
    );
    Ok(())
}
