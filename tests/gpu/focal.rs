//! Sigmoid focal loss: `shaders/focal.wgsl` against `src/losses/focal.rs` (`reference`).

use wgpu_loss::{Loss, LossArgs, Reduction, synthetic};

use crate::common::{check_args, ctx, seed_for};

shape_matrix!(Loss::focal().build().unwrap());

/// Other α and γ (no weighting, γ = 0, below 1, 1, above 2), every reduction, over logits in
/// U(−6, 6) and soft targets in U(0, 1), then hard 0/1 targets.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn other_alphas_and_gammas() {
    for (alpha, gamma) in [(-1.0f32, 0.0f32), (0.5, 0.5), (0.25, 1.0), (0.9, 3.5)] {
        let loss = Loss::focal().alpha(alpha).gamma(gamma).build().unwrap();
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("focal(α={alpha}, γ={gamma})/{}", reduction.name());
            let mut b = synthetic::batch(&loss, &[37, 71], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(ctx(), &loss, &args, &what);
            b.target.mapv_inplace(f32::round);
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(ctx(), &loss, &args, &format!("{what}/hard"));
        }
    }
}

/// torchvision's numbers: at x = 0, t = 1 with α = 0.25, γ = 2: p_t = ½, so
/// ℓ = 0.25 · ln 2 · ¼; at γ = 0 without α the loss is BCE with logits, bit for bit close.
/// Confident logits (±30, ±80) against both targets: finite, and 0 where the prediction is
/// right.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example_and_confident_logits() {
    let p = ndarray::arr1(&[0.0f32]).into_dyn();
    let t = ndarray::arr1(&[1.0f32]).into_dyn();
    let out = ctx()
        .compute(
            &Loss::focal().build().unwrap(),
            &LossArgs::new(p.view(), t.view()),
        )
        .unwrap();
    approx::assert_relative_eq!(
        out.value.unwrap(),
        0.25 * 2f32.ln() * 0.25,
        max_relative = 2e-7
    );
    let x = ndarray::arr1(&[30.0f32, -30.0, 80.0, -80.0, 30.0, -30.0]).into_dyn();
    let t = ndarray::arr1(&[1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0]).into_dyn();
    let args = LossArgs::new(x.view(), t.view()).reduction(Reduction::None);
    let out = check_args(
        ctx(),
        &Loss::focal().build().unwrap(),
        &args,
        "focal/confident",
    );
    let l = out.losses.unwrap();
    assert!(l.iter().all(|v| v.is_finite()), "{l:?}");
    assert_eq!(l[[2]], 0.0);
    assert_eq!(l[[3]], 0.0);
}

/// An α above 1 or not finite, and a negative or non-finite γ, are refused when the loss is
/// built.
#[test]
fn invalid_options() {
    for (alpha, gamma, option) in [
        (1.5f32, 2.0f32, "alpha"),
        (f32::NAN, 2.0, "alpha"),
        (0.25, -1.0, "gamma"),
        (0.25, f32::INFINITY, "gamma"),
    ] {
        let r = Loss::focal().alpha(alpha).gamma(gamma).build();
        assert!(
            matches!(r, Err(wgpu_loss::Error::InvalidOption { option: o, .. }) if o == option),
            "α = {alpha}, γ = {gamma}: {r:?}"
        );
    }
}
