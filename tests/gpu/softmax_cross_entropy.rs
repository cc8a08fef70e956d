//! Softmax cross entropy from logits: `shaders/softmax_cross_entropy.wgsl` (with
//! `class_count.wgsl` and `row_divisor.wgsl` for class-index targets) against
//! `src/reference/softmax_cross_entropy.rs`.

use ndarray::{ArrayD, Axis, IxDyn};
use wgpu_loss::{Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, Upstream, reference};

use crate::common::{
    REDUCTIONS, VALUE_RTOL, assert_infinite_logit_pattern, check_args, chunked_ctx, class_rows,
    ctx, infinite_logit_rows, logits, matrix_rows, one_hot_rows, prob_rows, seed_for,
};

/// Softmax cross entropy with PyTorch's defaults.
fn sce_default() -> Loss {
    Loss::softmax_cross_entropy().build().unwrap()
}

fn sce(label_smoothing: f32, z_loss: f32, ignore_index: i64) -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(label_smoothing)
        .z_loss(z_loss)
        .ignore_index(ignore_index)
        .build()
        .unwrap()
}

/// Probability targets: logits U(−8, 8) against probability rows.
mod probs {
    use super::*;

    fn case(c: usize) {
        for reduction in REDUCTIONS {
            let b = matrix_rows(c, reduction);
            let what = format!("softmax-ce/probs/C={c}/B={b}/{}", reduction.name());
            let x = logits(&[b, c], seed_for(&format!("{what}/x")));
            let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
            let args = LossArgs::new(x.view(), t.view()).reduction(reduction);
            let out = check_args(ctx(), &sce_default(), &args, &what);
            assert_eq!(out.counted, b, "{what}: counted");
        }
    }

    row_matrix!(case);
}

/// Class-index targets: logits U(−8, 8) against seeded classes, i64 for `Mean` and `None`,
/// i32 for `Sum`.
mod classes {
    use super::*;

    fn case(c: usize) {
        for reduction in REDUCTIONS {
            let b = matrix_rows(c, reduction);
            let i32_targets = reduction == Reduction::Sum;
            let dtype = if i32_targets { "i32" } else { "i64" };
            let what = format!(
                "softmax-ce/classes {dtype}/C={c}/B={b}/{}",
                reduction.name()
            );
            let x = logits(&[b, c], seed_for(&format!("{what}/x")));
            let k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
            let k32 = k.mapv(|v| v as i32);
            let args = if i32_targets {
                LossArgs::new(x.view(), k32.view())
            } else {
                LossArgs::new(x.view(), k.view())
            };
            let out = check_args(ctx(), &sce_default(), &args.reduction(reduction), &what);
            assert_eq!(out.counted, b, "{what}: counted");
        }
    }

    row_matrix!(case);
}

/// The rows every seventh row of which (3, 10, 17, ...) is set to `ignore`.
fn with_ignored(k: &ArrayD<i64>, ignore: i64) -> ArrayD<i64> {
    let mut k = k.clone();
    for (r, v) in k.iter_mut().enumerate() {
        if r % 7 == 3 {
            *v = ignore;
        }
    }
    k
}

/// `D` of the mean with class targets, by hand: the class weights of the rows not ignored.
fn divisor(k: &ArrayD<i64>, ignore: i64, w: Option<&ArrayD<f32>>) -> (f64, usize) {
    let kept: Vec<i64> = k.iter().copied().filter(|&c| c != ignore).collect();
    let d = kept
        .iter()
        .map(|&c| w.map_or(1.0, |w| f64::from(w[[c as usize]])))
        .sum();
    (d, kept.len())
}

/// One option set over `Mean`, `Sum` and `None` with an upstream array, for probability
/// targets and class targets (a seventh of them `ignore_index`); with class targets the
/// mean's value is also checked against `Σ ℓ_r / D` with `D` worked out here.
fn options_case(loss: Loss, c: usize, b: usize, with_weight: bool) {
    let Loss::SoftmaxCrossEntropy { ignore_index, .. } = loss else {
        unreachable!()
    };
    let name = format!("softmax-ce/options {loss:?}/C={c}/B={b}/weight={with_weight}");
    let x = logits(&[b, c], seed_for(&format!("{name}/x")));
    let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for(&format!("{name}/w")));
    let g = wgpu_loss::synthetic::uniform(&[b], -2.0, 2.0, seed_for(&format!("{name}/g")));
    let t = prob_rows(&[b, c], seed_for(&format!("{name}/t")));
    let k = with_ignored(
        &class_rows(&[b], c, seed_for(&format!("{name}/k"))),
        ignore_index,
    );
    let (d, kept) = divisor(&k, ignore_index, with_weight.then_some(&w));
    for classes in [false, true] {
        let mut none_sum = None;
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            let what = format!("{name}/classes={classes}/{}", reduction.name());
            let mut args = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(reduction);
            if with_weight {
                args = args.weight(w.view());
            }
            if reduction == Reduction::None {
                // Default upstream first (for Σ ℓ_r), then an array.
                let out = check_args(ctx(), &loss, &args, &what);
                let losses = out.losses.unwrap();
                none_sum = Some(losses.iter().map(|&v| f64::from(v)).sum::<f64>());
                if classes {
                    for (r, &c) in k.iter().enumerate() {
                        if c == ignore_index {
                            assert_eq!(losses[[r]], 0.0, "{what}: ignored row {r}");
                        }
                    }
                }
                args = args.upstream(Upstream::Array(g.view()));
            }
            let out = check_args(ctx(), &loss, &args, &format!("{what}/g"));
            assert_eq!(out.counted, if classes { kept } else { b }, "{what}");
            if reduction == Reduction::Mean {
                let d = if classes { d } else { b as f64 };
                let want = none_sum.unwrap() / d;
                let got = f64::from(out.value.unwrap());
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs(),
                    "{what}: mean {got} != sum of row losses / D = {want} (D = {d})"
                );
            }
            if let (true, Some(grad)) = (classes, &out.grad) {
                for (r, &c) in k.iter().enumerate() {
                    if c == ignore_index {
                        assert!(
                            grad.index_axis(Axis(0), r).iter().all(|&v| v == 0.0),
                            "{what}: ignored row {r} has a gradient"
                        );
                    }
                }
            }
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_weights() {
    options_case(sce_default(), 37, 301, true);
    options_case(sce_default(), 1000, 63, true);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn label_smoothing() {
    options_case(sce(0.1, 0.0, -100), 37, 301, false);
    options_case(sce(0.1, 0.0, -100), 1000, 63, true);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn z_loss() {
    options_case(sce(0.0, 1e-3, -100), 37, 301, false);
    options_case(sce(0.0, 1e-3, -100), 1000, 63, true);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_option_together() {
    options_case(sce(0.1, 1e-3, -100), 257, 31, true);
    options_case(sce(0.1, 1e-3, -100), 32000, 5, true);
}

fn capped(label_smoothing: f32, z_loss: f32, softcap: f32) -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(label_smoothing)
        .z_loss(z_loss)
        .softcap(softcap)
        .build()
        .unwrap()
}

/// Soft-capping at c = 1 (every logit of U(−8, 8) deep in tanh's curve), 5 and 30 (Gemma 2's),
/// alone and with every other option; short rows, a row of one workgroup ± 1 and rows longer
/// than a lane's registers (C = 32 000: the second read recomputes the cap).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softcap() {
    options_case(capped(0.0, 0.0, 1.0), 37, 301, false);
    options_case(capped(0.0, 0.0, 5.0), 257, 31, true);
    options_case(capped(0.0, 0.0, 30.0), 255, 31, false);
    options_case(capped(0.1, 1e-3, 5.0), 1000, 63, true);
    options_case(capped(0.1, 1e-3, 30.0), 32000, 5, true);
}

/// With a cap, logits far beyond it saturate (c·tanh(x/c) = ±c, derivative 0) and ±∞ logits
/// are capped to ±c: every row is finite, as in the reference, where without a cap a +∞ logit
/// makes its row NaN. A NaN logit still makes its row NaN.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softcap_saturates_huge_and_infinite_logits() {
    let (b, c) = (9usize, 300usize);
    let mut x = wgpu_loss::synthetic::uniform(&[b, c], -400.0, 400.0, seed_for("softcap/huge"));
    x[[1, 3]] = f32::INFINITY;
    x[[2, 0]] = f32::NEG_INFINITY;
    x[[3, 7]] = f32::INFINITY;
    x[[3, 8]] = f32::NEG_INFINITY;
    x[[4, 5]] = f32::NAN;
    for j in 0..c {
        x[[5, j]] = f32::NEG_INFINITY;
    }
    let k = class_rows(&[b], c, seed_for("softcap/huge/k"));
    let loss = capped(0.1, 1e-3, 30.0);
    for reduction in REDUCTIONS {
        let args = LossArgs::new(x.view(), k.view()).reduction(reduction);
        let what = format!("softcap/huge/{}", reduction.name());
        let out = check_args(ctx(), &loss, &args, &what);
        if reduction == Reduction::None {
            let losses = out.losses.as_ref().unwrap();
            let grad = out.grad.as_ref().unwrap();
            for r in 0..b {
                let nan = r == 4;
                assert_eq!(
                    losses[[r]].is_nan(),
                    nan,
                    "{what}: row {r} loss {}",
                    losses[[r]]
                );
                let row = grad.index_axis(Axis(0), r);
                assert!(row.iter().all(|g| g.is_nan() == nan), "{what}: row {r}");
            }
            assert_eq!(grad[[1, 3]], 0.0, "{what}: a +∞ logit's gradient");
            assert_eq!(grad[[2, 0]], 0.0, "{what}: a −∞ logit's gradient");
        }
    }
}

/// `ignore_index = 0`, a valid class: rows with class 0 are ignored (a seventh of them set to
/// 0, and those that drew 0), others count; `−100` is then out of range.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn custom_ignore_index_that_is_a_valid_class() {
    options_case(sce(0.0, 0.0, 0), 5, 301, false);
    options_case(sce(0.0, 0.0, 0), 5, 301, true);
    options_case(sce(0.1, 1e-3, 0), 300, 31, true);
}

/// `ignore_index` beyond i32 (the GPU compares class ids and `ignore_index` as i64): rows equal
/// to it are ignored, and a row of −1 is out of range.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn ignore_index_beyond_i32() {
    let big = 1i64 << 40;
    options_case(sce(0.0, 0.0, big), 11, 101, true);
    let x = logits(&[4, 3], 7);
    let k = ndarray::arr1(&[0i64, big, -1, 2]).into_dyn();
    let args = LossArgs::new(x.view(), k.view());
    match ctx().compute(&sce(0.0, 0.0, big), &args) {
        Err(Error::ClassOutOfRange {
            row: 2, class: -1, ..
        }) => {}
        other => panic!("expected ClassOutOfRange at row 2, got {other:?}"),
    }
    let k = ndarray::arr1(&[0i64, big, -100, 2]).into_dyn();
    let args = LossArgs::new(x.view(), k.view()).reduction(Reduction::None);
    assert!(ctx().compute(&sce(0.0, 0.0, big), &args).is_err());
    let k = ndarray::arr1(&[0i64, big, 1, 2]).into_dyn();
    let args = LossArgs::new(x.view(), k.view()).reduction(Reduction::None);
    let out = check_args(ctx(), &sce(0.0, 0.0, big), &args, "softmax-ce/ignore 2^40");
    assert_eq!(out.counted, 3);
    assert_eq!(out.losses.unwrap()[[1]], 0.0);
}

/// Loss-only mode: the same value and per-row losses (bits) as with the gradient, and none.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn loss_only_mode() {
    let (b, c) = (301usize, 37usize);
    let loss = sce(0.1, 1e-3, -100);
    let x = logits(&[b, c], seed_for("softmax-ce/loss only/x"));
    let t = prob_rows(&[b, c], seed_for("softmax-ce/loss only/t"));
    let k = with_ignored(
        &class_rows(&[b], c, seed_for("softmax-ce/loss only/k")),
        -100,
    );
    let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for("softmax-ce/loss only/w"));
    for classes in [false, true] {
        for reduction in REDUCTIONS {
            let what = format!(
                "softmax-ce/loss only/classes={classes}/{}",
                reduction.name()
            );
            let full = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(reduction)
            .weight(w.view());
            let only = check_args(ctx(), &loss, &full.clone().loss_only(), &what);
            assert!(only.grad.is_none(), "{what}: loss-only returned a gradient");
            let with_grad = ctx().compute(&loss, &full).unwrap();
            assert_eq!(
                only.value.map(f32::to_bits),
                with_grad.value.map(f32::to_bits),
                "{what}"
            );
            assert_eq!(only.losses, with_grad.losses, "{what}");
            assert_eq!(only.counted, with_grad.counted, "{what}");
        }
    }
}

/// A scalar upstream gradient scales the gradient of `Mean`, `Sum` and `None`, also when the
/// mean's divisor is computed on the GPU (class targets, weights, ignored rows).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn scalar_upstream() {
    let (b, c) = (129usize, 33usize);
    let x = logits(&[b, c], seed_for("softmax-ce/scalar upstream/x"));
    let t = prob_rows(&[b, c], seed_for("softmax-ce/scalar upstream/t"));
    let k = with_ignored(&class_rows(&[b], c, seed_for("softmax-ce/su/k")), -100);
    let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for("softmax-ce/su/w"));
    for classes in [false, true] {
        for reduction in REDUCTIONS {
            let what = format!(
                "softmax-ce/scalar upstream/classes={classes}/{}",
                reduction.name()
            );
            let args = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(reduction)
            .weight(w.view())
            .upstream(Upstream::Scalar(-2.5));
            check_args(ctx(), &sce(0.1, 1e-3, -100), &args, &what);
        }
    }
}

/// Leading dimensions flatten into rows: a `[3, 5, 37]` prediction with `[3, 5]` classes.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn rank_three_prediction() {
    let x = logits(&[3, 5, 37], seed_for("softmax-ce/rank 3/x"));
    let k = class_rows(&[3, 5], 37, seed_for("softmax-ce/rank 3/k"));
    let g = wgpu_loss::synthetic::uniform(&[3, 5], -1.0, 1.0, seed_for("softmax-ce/rank 3/g"));
    for reduction in REDUCTIONS {
        let mut args = LossArgs::new(x.view(), k.view()).reduction(reduction);
        if reduction == Reduction::None {
            args = args.upstream(Upstream::Array(g.view()));
        }
        let out = check_args(
            ctx(),
            &sce_default(),
            &args,
            &format!("softmax-ce/rank 3/{}", reduction.name()),
        );
        assert_eq!(out.grad.unwrap().shape(), &[3, 5, 37]);
        if let Some(l) = out.losses {
            assert_eq!(l.shape(), &[3, 5]);
        }
    }
    // A rank-1 prediction is one row, its class index a scalar.
    let x = logits(&[37], seed_for("softmax-ce/rank 1/x"));
    let k = ndarray::arr0(36i64).into_dyn();
    let args = LossArgs::new(x.view(), k.view()).reduction(Reduction::None);
    let out = check_args(ctx(), &sce_default(), &args, "softmax-ce/rank 1");
    assert_eq!(out.losses.unwrap().shape(), &[] as &[usize]);
}

/// A million rows of 2 and of 3 classes: many rows per workgroup, the row loop and a
/// many-workgroup class pre-pass; ignored rows counted out.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn a_million_short_rows() {
    let b = 1_000_000usize;
    let what = "softmax-ce/1M x 2/mean/i64";
    let x = logits(&[b, 2], seed_for(&format!("{what}/x")));
    let k = class_rows(&[b], 2, seed_for(&format!("{what}/k")));
    let out = check_args(
        ctx(),
        &sce_default(),
        &LossArgs::new(x.view(), k.view()),
        what,
    );
    assert_eq!(out.counted, b);

    let what = "softmax-ce/1M x 3/sum/i32, ignored rows";
    let x = logits(&[b, 3], seed_for(&format!("{what}/x")));
    let k = with_ignored(&class_rows(&[b], 3, seed_for(&format!("{what}/k"))), -100);
    let k32 = k.mapv(|v| v as i32);
    let args = LossArgs::new(x.view(), k32.view()).reduction(Reduction::Sum);
    let out = check_args(ctx(), &sce_default(), &args, what);
    assert_eq!(out.counted, divisor(&k, -100, None).1);
    assert_eq!(out.counted, b - b / 7);
}

// ---- Edge values -------------------------------------------------------------------------

fn finite(out: &LossOutput<f32>, what: &str) {
    if let Some(v) = out.value {
        assert!(v.is_finite(), "{what}: value {v}");
    }
    for a in [&out.losses, &out.grad].into_iter().flatten() {
        assert!(a.iter().all(|v| v.is_finite()), "{what}: not finite: {a:?}");
    }
}

/// Logits of ±1e4 (exp of anything but the maximum underflows to 0): finite, and equal to the
/// reference; a class at −1e4 against a maximum of 1e4 costs 2e4.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn huge_logits() {
    let x = ndarray::arr2(&[
        [1e4f32, -1e4, 0.0, 1e4, 3.0],
        [-1e4, -1e4, -1e4, -1e4, -1e4],
        [1e4, 1e4, 1e4, 1e4, 1e4],
        [-1e4, 0.5, 1e4, -2.0, 1e4],
    ])
    .into_dyn();
    let k = ndarray::arr1(&[1i64, 2, 4, 0]).into_dyn();
    let t = prob_rows(&[4, 5], seed_for("softmax-ce/huge/t"));
    for loss in [sce_default(), sce(0.1, 1e-3, -100)] {
        for reduction in REDUCTIONS {
            let what = format!("softmax-ce/±1e4/{loss:?}/{}", reduction.name());
            let args = LossArgs::new(x.view(), k.view()).reduction(reduction);
            let out = check_args(ctx(), &loss, &args, &format!("{what}/classes"));
            finite(&out, &what);
            if let (Some(l), true) = (&out.losses, loss == sce_default()) {
                approx::assert_relative_eq!(l[[0]], 2e4 + 2f32.ln(), max_relative = 1e-6);
                approx::assert_relative_eq!(l[[1]], 5f32.ln(), max_relative = 1e-6);
                approx::assert_relative_eq!(l[[3]], 2e4 + 2f32.ln(), max_relative = 1e-6);
            }
            let args = LossArgs::new(x.view(), t.view()).reduction(reduction);
            let out = check_args(ctx(), &loss, &args, &format!("{what}/probs"));
            finite(&out, &what);
        }
    }
}

/// Equal logits: every row's loss is ln C (whatever the target distribution) and the
/// gradient `1/C − t`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn equal_logits_give_ln_c() {
    for c in [1usize, 7, 1000, 32000] {
        let b = 5;
        let x = ArrayD::from_elem(IxDyn(&[b, c]), 3.7f32);
        let k = class_rows(&[b], c, seed_for(&format!("softmax-ce/equal/{c}")));
        let t = prob_rows(&[b, c], seed_for(&format!("softmax-ce/equal/{c}/t")));
        for classes in [false, true] {
            let what = format!("softmax-ce/equal logits/C={c}/classes={classes}");
            let args = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(Reduction::None);
            let out = check_args(ctx(), &sce_default(), &args, &what);
            // ln C times the target's total (1 up to the rounding of the f32 targets).
            for (r, &l) in out.losses.as_ref().unwrap().iter().enumerate() {
                let total = if classes {
                    1.0
                } else {
                    t.index_axis(Axis(0), r).iter().map(|&v| f64::from(v)).sum()
                };
                let want = (c as f64).ln() * total;
                assert!(
                    (f64::from(l) - want).abs() <= VALUE_RTOL * want.max(1.0),
                    "{what}: row {r}: {l} != ln C = {want}"
                );
            }
            let grad = out.grad.unwrap();
            for r in 0..b {
                for j in [0, c / 2, c - 1] {
                    let tj = if classes {
                        f64::from(u8::from(k[[r]] == j as i64))
                    } else {
                        f64::from(t[[r, j]])
                    };
                    let want = 1.0 / c as f64 - tj;
                    assert!(
                        (f64::from(grad[[r, j]]) - want).abs() <= 1e-6,
                        "{what}: grad[{r}, {j}] = {} != {want}",
                        grad[[r, j]]
                    );
                }
            }
        }
    }
}

/// A row of −∞ logits except one entry, with its target on that entry (a class index, or a
/// one-hot probability row; with and without class weights): loss 0 and a gradient of
/// zeros, never NaN (0 · −∞ is taken as 0).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn minus_infinity_logits_off_target() {
    let (b, c) = (4usize, 40usize);
    let mut x = logits(&[b, c], seed_for("softmax-ce/-inf/x"));
    let hot = 13;
    for j in 0..c {
        x[[1, j]] = if j == hot { 2.5 } else { f32::NEG_INFINITY };
    }
    // A second row with a few −∞ that are not the target.
    x[[3, 0]] = f32::NEG_INFINITY;
    x[[3, 39]] = f32::NEG_INFINITY;
    let mut k = class_rows(&[b], c, seed_for("softmax-ce/-inf/k"));
    k[[1]] = hot as i64;
    k[[3]] = 20;
    let mut t = one_hot_rows(&[b, c], seed_for("softmax-ce/-inf/t"));
    t.index_axis_mut(Axis(0), 1).fill(0.0);
    t[[1, hot]] = 1.0;
    t.index_axis_mut(Axis(0), 3).fill(0.0);
    t[[3, 20]] = 1.0;
    let w = wgpu_loss::synthetic::uniform(&[c], 0.5, 2.0, seed_for("softmax-ce/-inf/w"));
    for with_weight in [false, true] {
        for classes in [false, true] {
            for reduction in REDUCTIONS {
                let what = format!(
                    "softmax-ce/-inf/weight={with_weight}/classes={classes}/{}",
                    reduction.name()
                );
                let mut args = if classes {
                    LossArgs::new(x.view(), k.view())
                } else {
                    LossArgs::new(x.view(), t.view())
                }
                .reduction(reduction);
                if with_weight {
                    args = args.weight(w.view());
                }
                let out = check_args(ctx(), &sce_default(), &args, &what);
                finite(&out, &what);
                let grad = out.grad.unwrap();
                let row = grad.index_axis(Axis(0), 1);
                assert!(
                    row.iter().all(|&g| g == 0.0),
                    "{what}: gradient of the one-hot row: {row:?}"
                );
                assert_eq!(grad[[3, 0]], 0.0, "{what}");
                if let Some(l) = out.losses {
                    assert_eq!(l[[1]], 0.0, "{what}");
                }
            }
        }
    }
}

/// Every row ignored: `Mean` has D = 0, so the value is 0 and the gradient 0 (PyTorch gives
/// NaN), and nothing counted; also with weights, chunked, and for `Sum`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_row_ignored() {
    for (ctx, b, c) in [(ctx(), 9usize, 33usize), (chunked_ctx(), 1001, 7)] {
        let x = logits(&[b, c], seed_for("softmax-ce/all ignored/x"));
        let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for("softmax-ce/all ign/w"));
        let k = ArrayD::from_elem(IxDyn(&[b]), -100i64);
        for loss in [sce_default(), sce(0.1, 1e-3, -100)] {
            for with_weight in [false, true] {
                for reduction in [Reduction::Mean, Reduction::Sum] {
                    let what = format!(
                        "softmax-ce/all ignored/B={b}/{loss:?}/weight={with_weight}/{}",
                        reduction.name()
                    );
                    let mut args = LossArgs::new(x.view(), k.view())
                        .reduction(reduction)
                        .upstream(Upstream::Scalar(3.0));
                    if with_weight {
                        args = args.weight(w.view());
                    }
                    let out = check_args(ctx, &loss, &args, &what);
                    assert_eq!(out.value, Some(0.0), "{what}");
                    assert_eq!(out.counted, 0, "{what}");
                    assert!(out.grad.unwrap().iter().all(|&g| g == 0.0), "{what}");
                }
            }
        }
    }
}

/// Rows that count but whose class weight is 0, so D = 0 without any ignored row: again
/// value 0 and gradient 0 (not NaN), and the rows counted.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn zero_weight_sum_mean() {
    let x = logits(&[6, 4], seed_for("softmax-ce/zero D/x"));
    let w = ndarray::arr1(&[0.0f32, 1.0, 0.0, 2.0]).into_dyn();
    let k = ndarray::arr1(&[0i64, 2, 0, -100, 2, 2]).into_dyn();
    let args = LossArgs::new(x.view(), k.view()).weight(w.view());
    let out = check_args(ctx(), &sce_default(), &args, "softmax-ce/zero D");
    assert_eq!(out.value, Some(0.0));
    assert_eq!(out.counted, 5);
    assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));

    // Still exactly 0 when a counted row's logits are NaN (its loss is NaN, but D = 0 wins).
    let mut x_nan = x.clone();
    x_nan[[1, 3]] = f32::NAN;
    let args = LossArgs::new(x_nan.view(), k.view()).weight(w.view());
    let out = check_args(ctx(), &sce_default(), &args, "softmax-ce/zero D/NaN row");
    assert_eq!(out.value, Some(0.0));
    assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
}

/// One class: the softmax is 1, so loss 0 and gradient 0 for every row and either target.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn one_class() {
    let x = logits(&[7, 1], seed_for("softmax-ce/C=1/x"));
    let k = ArrayD::from_elem(IxDyn(&[7]), 0i64);
    let t = ArrayD::from_elem(IxDyn(&[7, 1]), 1.0f32);
    for reduction in REDUCTIONS {
        let what = format!("softmax-ce/C=1/{}", reduction.name());
        let with_classes = LossArgs::new(x.view(), k.view()).reduction(reduction);
        let with_probs = LossArgs::new(x.view(), t.view()).reduction(reduction);
        for out in [
            check_args(
                ctx(),
                &sce_default(),
                &with_classes,
                &format!("{what}/classes"),
            ),
            check_args(ctx(), &sce_default(), &with_probs, &format!("{what}/probs")),
        ] {
            assert!(out.value.is_none_or(|v| v == 0.0), "{:?}", out.value);
            assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
        }
    }
}

// ---- Errors -------------------------------------------------------------------------------

/// Runs `args` on `ctx` and on the reference and expects `ClassOutOfRange` at `row` with
/// `class` from both.
#[track_caller]
fn expect_out_of_range(ctx: &GpuContext, loss: &Loss, args: &LossArgs<'_>, row: usize, class: i64) {
    for (side, r) in [
        ("GPU", ctx.compute(loss, args).map(|_| ())),
        ("reference", reference::compute(loss, args).map(|_| ())),
    ] {
        match r {
            Err(Error::ClassOutOfRange {
                row: r,
                class: k,
                classes,
            }) => {
                assert_eq!((r, k), (row, class), "{side}");
                assert_eq!(classes, args.pred.shape()[args.pred.ndim() - 1], "{side}");
            }
            other => panic!("{side}: expected ClassOutOfRange at row {row}, got {other:?}"),
        }
    }
}

/// Offenders at rows 5 and 9 (and an ignored row before them): the error names row 5.
fn offenders(c: usize, at5: i64, at9: i64) -> ArrayD<i64> {
    let mut k = class_rows(&[12], c, seed_for("softmax-ce/offenders"));
    k[[2]] = -100;
    k[[5]] = at5;
    k[[9]] = at9;
    k
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_index_c_or_more_is_out_of_range() {
    let c = 10;
    let x = logits(&[12, c], 1);
    for (at5, at9) in [(10i64, 3i64), (11, 10), (1000, -1)] {
        let k = offenders(c, at5, at9);
        for reduction in REDUCTIONS {
            let args = LossArgs::new(x.view(), k.view()).reduction(reduction);
            expect_out_of_range(ctx(), &sce_default(), &args, 5, at5);
        }
        let k32 = k.mapv(|v| v as i32);
        expect_out_of_range(
            ctx(),
            &sce_default(),
            &LossArgs::new(x.view(), k32.view()),
            5,
            at5,
        );
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn negative_class_index_other_than_ignore_index_is_out_of_range() {
    let c = 10;
    let x = logits(&[12, c], 2);
    let k = offenders(c, -1, -7);
    expect_out_of_range(
        ctx(),
        &sce_default(),
        &LossArgs::new(x.view(), k.view()),
        5,
        -1,
    );
    let k = offenders(c, -101, 10);
    expect_out_of_range(
        ctx(),
        &sce_default(),
        &LossArgs::new(x.view(), k.view()),
        5,
        -101,
    );
    // With ignore_index = 0, the default −100 is just out of range (row 2 is the first).
    let k = offenders(c, 0, 0);
    expect_out_of_range(
        ctx(),
        &sce(0.0, 0.0, 0),
        &LossArgs::new(x.view(), k.view()),
        2,
        -100,
    );
    // And −1 as ignore_index: −2 is out of range, −1 is not (nor is row 2's −100 ignored).
    let mut k = offenders(c, -1, -2);
    k[[2]] = 1;
    expect_out_of_range(
        ctx(),
        &sce(0.0, 0.0, -1),
        &LossArgs::new(x.view(), k.view()),
        9,
        -2,
    );
}

/// i64 indices beyond the i32 range are out of range, never wrapped into it (2^32 + 1 would
/// wrap to 1, a valid class).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_index_beyond_i32_is_out_of_range() {
    let c = 10;
    let x = logits(&[12, c], 3);
    for (at5, at9) in [
        ((1i64 << 32) + 1, 1i64 << 32),
        (i64::MIN, 0),
        (i64::from(i32::MAX) + 1, i64::MAX),
        (-(1i64 << 32) + 3, 1),
    ] {
        let k = offenders(c, at5, at9);
        expect_out_of_range(
            ctx(),
            &sce_default(),
            &LossArgs::new(x.view(), k.view()),
            5,
            at5,
        );
    }
}

/// In chunks of 142 rows of 7, offenders in the fifth chunk and later: the row is global.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_index_out_of_range_in_a_later_chunk() {
    let (b, c) = (1001usize, 7usize);
    let x = logits(&[b, c], 4);
    let mut k = with_ignored(&class_rows(&[b], c, 5), -100);
    k[[600]] = 7;
    k[[900]] = -1;
    k[[1000]] = 99;
    for reduction in REDUCTIONS {
        let args = LossArgs::new(x.view(), k.view()).reduction(reduction);
        expect_out_of_range(chunked_ctx(), &sce_default(), &args, 600, 7);
    }
}

/// Class indices must be shaped like the rows (`[B]` for `[B, C]`); float targets like the
/// prediction.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn target_shape_mismatch() {
    let x = logits(&[4, 5], 6);
    for shape in [vec![5usize], vec![4, 1], vec![4, 5], vec![1, 4], vec![]] {
        let k = ArrayD::from_elem(IxDyn(&shape), 1i64);
        let e = ctx()
            .compute(&sce_default(), &LossArgs::new(x.view(), k.view()))
            .unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { what: "target", expected, got }
                if expected == &[4] && got == &shape),
            "classes {shape:?}: {e:?}"
        );
        let k32 = k.mapv(|v| v as i32);
        let e = ctx()
            .compute(&sce_default(), &LossArgs::new(x.view(), k32.view()))
            .unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { what: "target", .. }),
            "{e:?}"
        );
    }
    for shape in [vec![4usize], vec![4, 6], vec![5, 4]] {
        let t = ArrayD::from_elem(IxDyn(&shape), 0.2f32);
        let e = ctx()
            .compute(&sce_default(), &LossArgs::new(x.view(), t.view()))
            .unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { what: "target", expected, got }
                if expected == &[4, 5] && got == &shape),
            "dense {shape:?}: {e:?}"
        );
    }
}

/// Class weights are `[C]` exactly (not broadcast from the full shape), finite and ≥ 0.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_weight_must_be_c_long() {
    let x = logits(&[4, 5], 7);
    let k = class_rows(&[4], 5, 8);
    for shape in [vec![6usize], vec![4], vec![4, 5], vec![1, 5], vec![]] {
        let w = ArrayD::from_elem(IxDyn(&shape), 1.0f32);
        let e = ctx()
            .compute(
                &sce_default(),
                &LossArgs::new(x.view(), k.view()).weight(w.view()),
            )
            .unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { what: "weight", expected, .. } if expected == &[5]),
            "weight {shape:?}: {e:?}"
        );
    }
    for bad in [-0.5f32, f32::NAN, f32::INFINITY] {
        let mut w = ArrayD::from_elem(IxDyn(&[5]), 1.0f32);
        w[[3]] = bad;
        let e = ctx()
            .compute(
                &sce_default(),
                &LossArgs::new(x.view(), k.view()).weight(w.view()),
            )
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "weight",
                    ..
                }
            ),
            "{bad}: {e:?}"
        );
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn options_out_of_domain() {
    // Refused when the loss is built, before any call can take it.
    let built = |ls: f32, z: f32| {
        Loss::softmax_cross_entropy()
            .label_smoothing(ls)
            .z_loss(z)
            .build()
    };
    for cap in [-1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        let e = Loss::softmax_cross_entropy()
            .softcap(cap)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "softcap",
                    ..
                }
            ),
            "c = {cap}: {e:?}"
        );
    }
    for ((ls, z), option) in [
        ((1.0, 0.0), "label_smoothing"),
        ((-0.1, 0.0), "label_smoothing"),
        ((f32::NAN, 0.0), "label_smoothing"),
        ((0.0, -1e-3), "z_loss"),
        ((0.0, f32::INFINITY), "z_loss"),
        ((0.0, f32::NAN), "z_loss"),
    ] {
        let e = built(ls, z).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidOption { option: o, .. } if *o == option),
            "ε = {ls}, λ = {z}: {e:?}"
        );
    }
}

/// A batch of one long row (B = 1), the largest vocabularies of the matrix, with class and
/// probability targets and every reduction: one workgroup reads the whole row twice.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn one_long_row() {
    for c in [128_256usize, 262_144] {
        for reduction in REDUCTIONS {
            let what = format!("softmax-ce/B=1/C={c}/{}", reduction.name());
            let x = logits(&[1, c], seed_for(&format!("{what}/x")));
            let k = class_rows(&[1], c, seed_for(&format!("{what}/k")));
            let t = prob_rows(&[1, c], seed_for(&format!("{what}/t")));
            let with_classes = LossArgs::new(x.view(), k.view()).reduction(reduction);
            let with_probs = LossArgs::new(x.view(), t.view()).reduction(reduction);
            check_args(
                ctx(),
                &sce_default(),
                &with_classes,
                &format!("{what}/classes"),
            );
            check_args(ctx(), &sce_default(), &with_probs, &format!("{what}/probs"));
        }
    }
}

/// Infinite logits as the reference (and PyTorch's `log_softmax`) define them
/// ([`infinite_logit_rows`]): a +∞ logit, or a row of −∞, makes its row NaN (loss and
/// gradient), also where a class weight of 0 on the target would hide it; a −∞ logit among
/// finite ones is ordinary (ℓ = +∞ where it is the target, with a finite gradient). For class
/// and probability targets, with and without smoothing and z-loss.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn infinite_logits_follow_ieee_semantics() {
    let (x, k, t) = infinite_logit_rows(seed_for("softmax-ce/inf"));
    let mut w = ArrayD::from_elem(IxDyn(&[6]), 1.5f32);
    w[[2]] = 0.0; // row 0's target class
    for loss in [sce_default(), sce(0.1, 1e-3, -100)] {
        for weight in [false, true] {
            for classes in [true, false] {
                let what = format!("softmax-ce/inf/{loss:?}/weight={weight}/classes={classes}");
                let mut args = if classes {
                    LossArgs::new(x.view(), k.view())
                } else {
                    LossArgs::new(x.view(), t.view())
                }
                .reduction(Reduction::None);
                if weight {
                    args = args.weight(w.view());
                }
                let out = check_args(ctx(), &loss, &args, &what);
                let smoothing = matches!(loss, Loss::SoftmaxCrossEntropy { label_smoothing, .. } if label_smoothing > 0.0);
                assert_infinite_logit_pattern(&out, smoothing, &what);
            }
        }
    }
}

/// A uniform row of huge logits has loss ln C (every term is (m − x_j) + ln S, never the
/// difference of two numbers of 1e20), on the GPU and in the reference, whose f64 gave
/// 1e20 + ln C − 1e20 = 0.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn uniform_rows_of_huge_logits_give_ln_c() {
    for v in [1e20f32, -1e20, 3e38, -3e38] {
        for c in [7usize, 1000] {
            let x = ArrayD::from_elem(IxDyn(&[3, c]), v);
            let k = ndarray::arr1(&[0i64, 3, (c - 1) as i64]).into_dyn();
            let args = LossArgs::new(x.view(), k.view()).reduction(Reduction::None);
            let what = format!("softmax-ce/uniform {v:e}/C={c}");
            let want = (c as f64).ln();
            let r = reference::compute(&sce_default(), &args).expect("reference");
            for &l in r.losses.as_ref().expect("losses") {
                assert!(
                    (l - want).abs() <= 1e-12 * want,
                    "{what}: reference {l} != ln C"
                );
            }
            let out = check_args(ctx(), &sce_default(), &args, &what);
            for &l in out.losses.as_ref().expect("losses") {
                assert!(
                    (f64::from(l) - want).abs() <= 1e-6 * want,
                    "{what}: GPU {l} != ln C"
                );
            }
        }
    }
}

/// Class weights whose sums overflow f32 are refused before any work, naming the weight: their
/// total W (smoothing's term), and the mean's divisor D over the rows' targets.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_weights_overflowing_f32_are_refused() {
    let x = logits(&[4, 3], seed_for("softmax-ce/weight overflow"));
    let k = ndarray::arr1(&[0i64, 0, 0, -100]).into_dyn();
    let total = ndarray::arr1(&[3e38f32, 3e38, 1.0]).into_dyn();
    let divisor = ndarray::arr1(&[2e38f32, 1.0, 1.0]).into_dyn();
    for (w, needle) in [(&total, "sum to"), (&divisor, "mean's divisor")] {
        let args = LossArgs::new(x.view(), k.view()).weight(w.view());
        let results = [
            ("gpu", ctx().compute(&sce_default(), &args).map(|_| ())),
            (
                "cpu",
                wgpu_loss::cpu::compute(&sce_default(), &args).map(|_| ()),
            ),
            (
                "reference",
                reference::compute(&sce_default(), &args).map(|_| ()),
            ),
        ];
        for (path, r) in results {
            match r {
                Err(Error::InvalidOption {
                    option: "weight",
                    reason,
                }) => assert!(reason.contains(needle), "{path}: {reason}"),
                other => panic!("{path}: expected InvalidOption(weight), got {other:?}"),
            }
        }
    }
    // The same weights with the overflowing class never a target: accepted.
    let k = ndarray::arr1(&[1i64, 2, 1, -100]).into_dyn();
    let args = LossArgs::new(x.view(), k.view()).weight(divisor.view());
    check_args(
        ctx(),
        &sce_default(),
        &args,
        "softmax-ce/weight overflow/unused class",
    );
}

/// Class ids of every integer type on the host path: i32, i64 and u32 give the same result; a
/// u32 id never matches a negative `ignore_index`, and one of 2^32 − 1 is out of range (not −1).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_ids_of_every_integer_type() {
    let (b, c) = (37usize, 29usize);
    let x = logits(&[b, c], seed_for("softmax-ce/int types/x"));
    let k = class_rows(&[b], c, seed_for("softmax-ce/int types/k"));
    let (k32, ku) = (k.mapv(|v| v as i32), k.mapv(|v| v as u32));
    let loss = sce(0.1, 0.0, 3);
    let base = check_args(ctx(), &loss, &LossArgs::new(x.view(), k.view()), "i64");
    for (name, args) in [
        ("i32", LossArgs::new(x.view(), k32.view())),
        ("u32", LossArgs::new(x.view(), ku.view())),
    ] {
        let out = check_args(ctx(), &loss, &args, name);
        assert_eq!(out.value, base.value, "{name}: the same bits as i64");
        assert_eq!(out.grad, base.grad, "{name}");
    }
    let mut ku = ku;
    ku[[4]] = u32::MAX;
    let args = LossArgs::new(x.view(), ku.view());
    expect_out_of_range(ctx(), &sce_default(), &args, 4, i64::from(u32::MAX));
}
