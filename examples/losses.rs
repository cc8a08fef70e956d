//! Every loss of the crate, once each, on the GPU, next to the CPU reference: the README's
//! examples, runnable. `cargo run --release --example losses`
//!
//! `value_and_grad` returns the value and the gradient with respect to the prediction;
//! `compute` returns a `LossOutput` with what the arguments ask for: `value` (for Mean and
//! Sum), `losses` (per element, for Reduction::None) and `grad`.

use wgpu_loss::ndarray::{ArrayD, array};
use wgpu_loss::{Compute, GpuContext, Loss, LossArgs, Reduction, Upstream, reference};

fn main() -> wgpu_loss::Result<()> {
    // Finds an adapter (a real GPU first; Mesa's llvmpipe works too) and keeps its pipelines.
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter_summary());

    // Regression losses: prediction and target of the same shape.
    let p: ArrayD<f32> = array![[0.5f32, -1.0, 2.0], [0.0, 3.0, -2.5]].into_dyn();
    let t: ArrayD<f32> = array![[0.0f32, -1.0, 1.0], [1.0, 0.0, -2.0]].into_dyn();

    // MSE, mean over the 6 elements: value Σ(p − t)²/6, gradient 2(p − t)/6.
    let mse = ctx.value_and_grad(&Loss::Mse, LossArgs::new(&p, &t))?;
    println!("mse   value {} grad {:?}", mse.value, mse.grad_vec());

    // MAE with a sum, and an upstream gradient g = 0.5 (the gradient is scaled by it).
    let args = LossArgs::new(&p, &t)
        .reduction(Reduction::Sum)
        .upstream(Upstream::Scalar(0.5));
    let mae = ctx.value_and_grad(&Loss::Mae, args)?;
    println!("mae   value {} grad {:?}", mae.value, mae.grad_vec());

    // Huber with δ = 1.5, no reduction: one loss per element, with its own upstream gradient.
    let g = ArrayD::from_elem(p.shape(), 2.0f32);
    let args = LossArgs::new(p.view(), t.view())
        .reduction(Reduction::None)
        .upstream(Upstream::Array(g.view()));
    let huber = ctx.compute(&Loss::huber().delta(1.5).build()?, &args)?;
    println!(
        "huber losses {:?}",
        huber.losses.as_ref().map(|l| l.as_slice())
    );

    // BCE on probabilities, with a per-column weight broadcast over the rows.
    let prob: ArrayD<f32> = array![[0.9f32, 0.2, 0.6], [0.1, 0.7, 0.5]].into_dyn();
    let label: ArrayD<f32> = array![[1.0f32, 0.0, 1.0], [0.0, 1.0, 1.0]].into_dyn();
    let w: ArrayD<f32> = array![1.0f32, 2.0, 0.5].into_dyn();
    let args = LossArgs::new(prob.view(), label.view()).weight(w.view());
    let bce = ctx.compute(&Loss::Bce, &args)?;
    let bce_ref = reference::compute(&Loss::Bce, &args)?;
    let bce_fast = wgpu_loss::cpu::compute(&Loss::Bce, &args)?;
    println!(
        "bce   value {:?} (reference {:?}, fast CPU path {:?})",
        bce.value, bce_ref.value, bce_fast.value
    );
    // In a loop, keep the gradient array and let the fast path write into it (same bits).
    let mut grad = ArrayD::<f32>::zeros(prob.shape());
    let into = wgpu_loss::cpu::compute_into(&Loss::Bce, &args, grad.view_mut())?;
    assert_eq!(into.value, bce_fast.value);
    assert_eq!(Some(&grad), bce_fast.grad.as_ref());

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

    // Row-wise losses take [B, C]. Softmax cross entropy with class indices; -100 is ignored.
    let logits: ArrayD<f32> =
        array![[2.0f32, -1.0, 0.5], [0.0, 3.0, -2.5], [1.0, 1.0, 1.0]].into_dyn();
    let classes: ArrayD<i64> = array![0i64, 1, -100].into_dyn();
    let args = LossArgs::new(logits.view(), classes.view());
    let sce = ctx.compute(&Loss::softmax_cross_entropy().build()?, &args)?;
    println!(
        "softmax-ce value {:?} over {} counted rows (reference {:?})",
        sce.value,
        sce.counted,
        reference::compute(&Loss::softmax_cross_entropy().build()?, &args)?.value
    );

    // With class weights [C], label smoothing and a z-loss.
    let w: ArrayD<f32> = array![1.0f32, 2.0, 0.5].into_dyn();
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-4)
        .ignore_index(-100)
        .build()?;
    let out = ctx.compute(
        &loss,
        &LossArgs::new(logits.view(), classes.view()).weight(w.view()),
    )?;
    println!("softmax-ce (weighted, smoothed) value {:?}", out.value);

    // Probability targets [B, C], per-row losses.
    let probs: ArrayD<f32> =
        array![[0.7f32, 0.2, 0.1], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4]].into_dyn();
    let per_row = ctx.losses(
        &Loss::softmax_cross_entropy().build()?,
        LossArgs::new(&logits, &probs),
    )?;
    println!("softmax-ce per-row losses {:?}", per_row.as_slice());

    // Cosine proximity of embeddings, and categorical cross entropy on probabilities.
    let cos = ctx.value(
        &Loss::cosine_proximity().build()?,
        LossArgs::new(&logits, &probs),
    )?;
    let cce = ctx.value(
        &Loss::CategoricalCrossEntropy,
        LossArgs::new(&probs, &probs),
    )?;
    println!("cosine value {cos}, cce value {cce}");
    Ok(())
}
