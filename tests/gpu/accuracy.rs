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

use crate::common::{
    ULPS, assert_ulps, assert_ulps_within, confident_rows, ctx, probabilities, seed_for, ulp,
};

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

/// Softmax cross entropy of confident rows: logits (0, −a, ..., −a) over 8 classes against class
/// 0, so ℓ = ln(1 + 7 e^(−a)), about 7 e^(−a) for large a. The kernels keep S − 1 apart from
/// the maximum's 1 and take ln(1 + (S − 1)) accurately, so ℓ keeps its relative accuracy to
/// a = 80 (ℓ = 1.3e-34), where an f32 S = 1 + 7 e^(−a) rounds to 1 from a = 19 on (PyTorch's
/// float32 gives 0 there). Tolerance: 4 ulp, plus WGSL's `exp` of the other logits, 3 + 2a ulp
/// (the specification's bound; llvmpipe's is much smaller). The gradient likewise.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softmax_ce_confident_rows_are_accurate() {
    let c = 8usize;
    let a: Vec<f32> = (0..=1600).map(|k| k as f32 * 0.05).collect();
    let x = confident_rows(&a, c);
    let classes = ArrayD::<i64>::zeros(vec![a.len()]);
    let args = LossArgs::new(x.view(), classes.view())
        .reduction(Reduction::None)
        .loss_only();
    let gpu = ctx()
        .compute(&Loss::softmax_cross_entropy().build().unwrap(), &args)
        .expect("GPU");
    let want = reference::compute(&Loss::softmax_cross_entropy().build().unwrap(), &args)
        .expect("reference");
    let (g, w) = (gpu.losses.expect("losses"), want.losses.expect("losses"));
    for (r, (&g, &w)) in g.iter().zip(w.iter()).enumerate() {
        let ar = f64::from(a[r]);
        let exact = ((c - 1) as f64 * (-ar).exp()).ln_1p();
        assert!(
            (w - exact).abs() <= 1e-15 * exact,
            "row {r} (a = {ar}): reference {w:e}, exact {exact:e}"
        );
        let tol = (ULPS + 3.0 + 2.0 * ar) * ulp(exact);
        assert!(
            (f64::from(g) - exact).abs() <= tol,
            "row {r} (a = {ar}): GPU {g:e}, exact {exact:e}, |diff| > {tol:e}"
        );
    }
    // The gradient (Sum): s_j = e^(−a)/S off the target, and s_c − 1 = −7 e^(−a)/S on it, which
    // 1/S − 1 would give as 0 once 7 e^(−a) is below S's ulp (a ≥ 19).
    let args = LossArgs::new(x.view(), classes.view()).reduction(Reduction::Sum);
    let grad = ctx()
        .compute(&Loss::softmax_cross_entropy().build().unwrap(), &args)
        .expect("GPU")
        .grad
        .expect("grad");
    for (r, &ar) in a.iter().enumerate() {
        let ar = f64::from(ar);
        let e = (-ar).exp();
        let s = 1.0 + (c - 1) as f64 * e;
        for (j, exact) in [(0, -((c - 1) as f64) * e / s), (c - 1, e / s)] {
            let g = f64::from(grad[[r, j]]);
            let tol = (ULPS + 3.0 + 2.0 * ar) * ulp(exact);
            assert!(
                (g - exact).abs() <= tol,
                "row {r} (a = {ar}), gradient [{j}]: GPU {g:e}, exact {exact:e}"
            );
        }
    }
}

/// BCE with logits' gradient of confident logits, `σ(x) − 1 = −σ(−x)` for t = 1 and x ≥ 0
/// (and `σ(x)` for t = 0, x ≤ 0), within 8 ulp for |x| up to 87: it is formed without the
/// cancellation that gives 0 from x = 17 on (as PyTorch's float32 does). 8 ulp: the accurate
/// `exp` (1), WGSL's division (2.5) and the products and differences around them.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_with_logits_confident_gradient() {
    let xs: Vec<f32> = (0..87 * 64)
        .map(|k| k as f32 / 64.0 + 1.0 / 128.0)
        .collect();
    for (t, sign) in [(1.0f32, 1.0f32), (0.0, -1.0)] {
        let x: Vec<f32> = xs.iter().map(|&v| sign * v).collect();
        let n = x.len();
        let pred = ArrayD::from_shape_vec(vec![n], x.clone()).expect("shape");
        let target = ArrayD::from_elem(vec![n], t);
        let args = LossArgs::new(pred.view(), target.view()).reduction(Reduction::Sum);
        let gpu = ctx().compute(&Loss::BceWithLogits, &args).expect("GPU");
        let want = reference::compute(&Loss::BceWithLogits, &args).expect("reference");
        let worst = assert_ulps_within(
            gpu.grad.as_ref().expect("grad"),
            want.grad.as_ref().expect("grad"),
            &x,
            8.0,
            &format!("bce-with-logits gradient t = {t}"),
        );
        println!("bce-with-logits gradient, t = {t}: worst {worst:.2} ulp over {n} logits");
    }
}
