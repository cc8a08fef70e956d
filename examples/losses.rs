//! Every loss of the crate, once each, on the GPU, next to the CPU reference: the README's
//! examples, runnable. `cargo run --release --example losses`
//!
//! Each call returns a `LossOutput`: `value` (for Mean and Sum), `losses` (per element, for
//! Reduction::None) and `grad`, the gradient with respect to the prediction.

use ndarray::{ArrayD, array};
use wgpu_loss::{GpuContext, Loss, LossArgs, Reduction, Upstream, reference};

fn main() -> wgpu_loss::Result<()> {
    // Finds an adapter (a real GPU first; Mesa's llvmpipe works too) and keeps its pipelines.
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter_summary());

    // Regression losses: prediction and target of the same shape.
    let p: ArrayD<f32> = array![[0.5f32, -1.0, 2.0], [0.0, 3.0, -2.5]].into_dyn();
    let t: ArrayD<f32> = array![[0.0f32, -1.0, 1.0], [1.0, 0.0, -2.0]].into_dyn();

    // MSE, mean over the 6 elements: value Σ(p − t)²/6, gradient 2(p − t)/6.
    let mse = ctx.compute(&Loss::Mse, &LossArgs::new(p.view(), t.view()))?;
    println!(
        "mse   value {:?} grad {:?}",
        mse.value,
        mse.grad.unwrap().as_slice()
    );

    // MAE with a sum, and an upstream gradient g = 0.5 (the gradient is scaled by it).
    let args = LossArgs::new(p.view(), t.view())
        .reduction(Reduction::Sum)
        .upstream(Upstream::Scalar(0.5));
    let mae = ctx.compute(&Loss::Mae, &args)?;
    println!(
        "mae   value {:?} grad {:?}",
        mae.value,
        mae.grad.unwrap().as_slice()
    );

    // Huber with δ = 1.5, no reduction: one loss per element, with its own upstream gradient.
    let g = ArrayD::from_elem(p.shape(), 2.0f32);
    let args = LossArgs::new(p.view(), t.view())
        .reduction(Reduction::None)
        .upstream(Upstream::Array(g.view()));
    let huber = ctx.compute(&Loss::huber(1.5)?, &args)?;
    println!("huber losses {:?}", huber.losses.unwrap().as_slice());

    // BCE on probabilities, with a per-column weight broadcast over the rows.
    let prob: ArrayD<f32> = array![[0.9f32, 0.2, 0.6], [0.1, 0.7, 0.5]].into_dyn();
    let label: ArrayD<f32> = array![[1.0f32, 0.0, 1.0], [0.0, 1.0, 1.0]].into_dyn();
    let w: ArrayD<f32> = array![1.0f32, 2.0, 0.5].into_dyn();
    let args = LossArgs::new(prob.view(), label.view()).weight(w.view());
    let bce = ctx.compute(&Loss::Bce, &args)?;
    let bce_ref = reference::compute(&Loss::Bce, &args)?;
    println!(
        "bce   value {:?} (reference {:?})",
        bce.value, bce_ref.value
    );

    // BCE with logits, pos_weight 3 for every column, loss only (no gradient computed).
    let logits: ArrayD<f32> = array![[2.0f32, -1.0, 0.0], [-3.0, 0.5, 8.0]].into_dyn();
    let q: ArrayD<f32> = array![3.0f32, 3.0, 3.0].into_dyn();
    let args = LossArgs::new(logits.view(), label.view())
        .pos_weight(q.view())
        .loss_only();
    let bcel = ctx.compute(&Loss::BceWithLogits, &args)?;
    println!(
        "bce-with-logits value {:?}, gradient computed: {}",
        bcel.value,
        bcel.grad.is_some()
    );
    Ok(())
}
