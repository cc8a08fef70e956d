//! Per-element accuracy of the logarithms and exponentials the kernels take, in f32 ulps of the
//! f64 reference, over the whole f32 range of their arguments: every binade of p from 2^-149
//! (subnormal) to 1, densely within 2^-14 of 1 and of 0.5, and the exact ends.
//!
//! The bound (LOSSES.md, "Accuracy"): each per-element or per-row loss within 4 f32 ulp of the
//! reference's value rounded to f32, where WGSL's own `log` (absolute 2^-21 near 1) was 2^20 ulp
//! off near p = 1 and adapters that flush subnormals turned ln(1e-40) into ln(2^-126). One
//! exception, stated: a result below the smallest normal f32 (2^-126, here only −ln(1 − p) ≈ p
//! for subnormal p) may be flushed to 0 by the adapter (llvmpipe flushes every subnormal result),
//! so there the tolerance is 2^-126 absolute.

use ndarray::ArrayD;
use wgpu_loss::{Loss, LossArgs, Reduction, reference};

use crate::common::{ULPS, assert_ulps, ctx, probabilities, seed_for, ulp};

/// BCE on probabilities with t = 1 (ℓ = −ln p) and t = 0 (ℓ = −ln(1 − p)): both logarithms
/// within 4 ulp over every p in [2^-149, 1] (clamped at 100 where ln p < −100).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_logs_within_4_ulp_over_every_binade() {
    let p = probabilities();
    let n = p.len();
    let pred = ArrayD::from_shape_vec(vec![n], p.clone()).expect("shape");
    for t in [1.0f32, 0.0] {
        let target = ArrayD::from_elem(vec![n], t);
        let args = LossArgs::new(pred.view(), target.view())
            .reduction(Reduction::None)
            .loss_only();
        let gpu = ctx().compute(&Loss::Bce, &args).expect("GPU");
        let want = reference::compute(&Loss::Bce, &args).expect("reference");
        let worst = assert_ulps(
            gpu.losses.as_ref().expect("losses"),
            want.losses.as_ref().expect("losses"),
            &p,
            &format!("bce t = {t}"),
        );
        println!("bce, t = {t}: worst {worst:.2} ulp over {n} probabilities");
    }
}

/// Soft targets combine both logarithms: still within 4 ulp (both terms are ≥ 0, so nothing
/// cancels).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_soft_targets_within_4_ulp() {
    let p = probabilities();
    let n = p.len();
    let pred = ArrayD::from_shape_vec(vec![n], p.clone()).expect("shape");
    let target = wgpu_loss::synthetic::uniform(&[n], 0.0, 1.0, seed_for("accuracy/soft"));
    let args = LossArgs::new(pred.view(), target.view())
        .reduction(Reduction::None)
        .loss_only();
    let gpu = ctx().compute(&Loss::Bce, &args).expect("GPU");
    let want = reference::compute(&Loss::Bce, &args).expect("reference");
    assert_ulps(
        gpu.losses.as_ref().expect("losses"),
        want.losses.as_ref().expect("losses"),
        &p,
        "bce soft targets",
    );
}

/// Categorical cross entropy, rows of one probability against t = 1: ℓ_r = −ln p within 4 ulp
/// over every p (the row driver passes p's bits through to the loss file untouched).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn cce_log_within_4_ulp_over_every_binade() {
    let p = probabilities();
    let n = p.len();
    let pred = ArrayD::from_shape_vec(vec![n, 1], p.clone()).expect("shape");
    let target = ArrayD::from_elem(vec![n, 1], 1.0f32);
    let args = LossArgs::new(pred.view(), target.view())
        .reduction(Reduction::None)
        .loss_only();
    let gpu = ctx()
        .compute(&Loss::CategoricalCrossEntropy, &args)
        .expect("GPU");
    let want = reference::compute(&Loss::CategoricalCrossEntropy, &args).expect("reference");
    let worst = assert_ulps(
        gpu.losses.as_ref().expect("losses"),
        want.losses.as_ref().expect("losses"),
        &p,
        "cce",
    );
    println!("cce: worst {worst:.2} ulp over {n} probabilities");
}

/// The cases, by value: p = 1 − 2e-6 against t = 1 (was 1–4% off), and the subnormal
/// probabilities 1e-40 (ℓ = 92.1, was 88) and 3e-44 (ℓ clamped at 100).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn confident_and_subnormal_probabilities_by_value() {
    let p = [1.0f32 - 2e-6, 1e-40, 3e-44, 1.0 - 2f32.powi(-24)];
    let pred = ArrayD::from_shape_vec(vec![p.len()], p.to_vec()).expect("shape");
    let target = ArrayD::from_elem(vec![p.len()], 1.0f32);
    let args = LossArgs::new(pred.view(), target.view()).reduction(Reduction::None);
    let gpu = ctx().compute(&Loss::Bce, &args).expect("GPU");
    let l = gpu.losses.expect("losses");
    let want = [
        -(f64::from(p[0]).ln()),
        -(f64::from(p[1]).ln()),
        100.0,
        -(f64::from(p[3]).ln()),
    ];
    for (k, (&g, &w)) in l.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= ULPS * ulp(w),
            "p = {:e}: GPU {g:e}, want {w:e}",
            p[k]
        );
    }
}

/// BCE with logits of confident predictions: ℓ = ln(1 + e^(−|x|)) ≈ e^(−|x|), for t = 1 with
/// x ≥ 0 and t = 0 with x ≤ 0, within 4 ulp for |x| up to 87 (where e^(−|x|) is still normal).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_with_logits_confident_within_4_ulp() {
    let xs: Vec<f32> = (0..87 * 256)
        .map(|k| k as f32 / 256.0 + 1.0 / 512.0)
        .collect();
    for (t, sign) in [(1.0f32, 1.0f32), (0.0, -1.0)] {
        let x: Vec<f32> = xs.iter().map(|&v| sign * v).collect();
        let n = x.len();
        let pred = ArrayD::from_shape_vec(vec![n], x.clone()).expect("shape");
        let target = ArrayD::from_elem(vec![n], t);
        let args = LossArgs::new(pred.view(), target.view())
            .reduction(Reduction::None)
            .loss_only();
        let gpu = ctx().compute(&Loss::BceWithLogits, &args).expect("GPU");
        let want = reference::compute(&Loss::BceWithLogits, &args).expect("reference");
        let worst = assert_ulps(
            gpu.losses.as_ref().expect("losses"),
            want.losses.as_ref().expect("losses"),
            &x,
            &format!("bce-with-logits t = {t}"),
        );
        println!("bce-with-logits, t = {t}: worst {worst:.2} ulp over {n} logits");
    }
}

/// Softmax cross entropy of confident rows: logits (0, −a) against class 0, so
/// ℓ = ln S, S = 1 + e^(−a), small for large a; the GPU's ln S is accurate near S = 1 (WGSL's
/// `log` is only 2^-21 absolute there), so ℓ is as good as the f32 S allows: S's rounding
/// (2^-24 absolute, as S ∈ [1, 2)), WGSL's `exp` of the other logit (3 + 2a ulp of e^(−a)),
/// and 4 ulp of ℓ.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softmax_ce_confident_rows_are_accurate() {
    let a: Vec<f32> = (0..800).map(|k| k as f32 * 0.05).collect();
    let b = a.len();
    let mut x = ArrayD::<f32>::zeros(vec![b, 2]);
    for (r, &ar) in a.iter().enumerate() {
        x[[r, 1]] = -ar;
    }
    let classes = ArrayD::<i64>::zeros(vec![b]);
    let args = LossArgs::new(x.view(), classes.view())
        .reduction(Reduction::None)
        .loss_only();
    let gpu = ctx()
        .compute(&Loss::SOFTMAX_CROSS_ENTROPY, &args)
        .expect("GPU");
    let want = reference::compute(&Loss::SOFTMAX_CROSS_ENTROPY, &args).expect("reference");
    let (g, w) = (gpu.losses.expect("losses"), want.losses.expect("losses"));
    let u = 2f64.powi(-24);
    for (r, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
        let ar = f64::from(a[r]);
        let tol = u + (3.0 + 2.0 * ar) * u * (-ar).exp() + ULPS * ulp(w);
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "row {r} (a = {ar}): GPU {g:e}, reference {w:e}, |diff| > {tol:e}"
        );
    }
}
