//! The per-row log-sum-exp output of softmax cross entropy (`LossArgs::want_lse`,
//! `FLAG_WRITE_LSE` in `shaders/common/rows.wgsl`, `row_lse` in
//! `shaders/softmax_cross_entropy.wgsl`) against `reference::lse` of
//! `src/losses/softmax_cross_entropy.rs`, through `check_args` (which compares it within the
//! row-wise tolerance, `assert_close_within`).

use ndarray::ArrayD;
use wgpu_loss::{Compute, Error, Loss, LossArgs, LossOutput, Reduction, reference};

use crate::common::{
    REDUCTIONS, chunked_ctx, class_rows, ctx, infinite_logit_rows, logits, prob_rows, seed_for,
};

fn sce(label_smoothing: f32, z_loss: f32, softcap: f32) -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(label_smoothing)
        .z_loss(z_loss)
        .softcap(softcap)
        .build()
        .unwrap()
}

/// Every bit of a result but its log-sum-exp.
fn bits(o: &LossOutput<f32>) -> (Option<u32>, Vec<u32>, Vec<u32>, usize) {
    (
        o.value.map(f32::to_bits),
        o.losses.iter().flatten().map(|v| v.to_bits()).collect(),
        o.grad.iter().flatten().map(|v| v.to_bits()).collect(),
        o.counted,
    )
}

/// Seeded class ids with every seventh row (3, 10, ...) ignored (−100).
fn classes_with_ignored(b: usize, c: usize, seed: u64) -> ArrayD<i64> {
    let mut k = class_rows(&[b], c, seed);
    for (r, v) in k.iter_mut().enumerate() {
        if r % 7 == 3 {
            *v = -100;
        }
    }
    k
}

/// One loss over rows of `c`: class ids (a seventh ignored) and probability targets, each
/// reduction, with class weights for the ids; the log-sum-exp within the row-wise tolerance
/// of the reference (ignored rows' too), and every other bit the same as without it.
fn case(loss: Loss, c: usize) {
    let b = ((1usize << 16) / c).clamp(3, 301);
    let name = format!("lse/{loss:?}/C={c}/B={b}");
    let x = logits(&[b, c], seed_for(&format!("{name}/x")));
    let k = classes_with_ignored(b, c, seed_for(&format!("{name}/k")));
    let t = prob_rows(&[b, c], seed_for(&format!("{name}/t")));
    let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for(&format!("{name}/w")));
    for classes in [true, false] {
        for reduction in REDUCTIONS {
            let what = format!("{name}/classes={classes}/{}", reduction.name());
            let args = if classes {
                LossArgs::new(x.view(), k.view()).weight(w.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(reduction);
            let with = crate::common::check_args(ctx(), &loss, &args.clone().want_lse(true), &what);
            let lse = with.lse.as_ref().expect("lse asked for");
            assert_eq!(lse.shape(), &[b], "{what}: shaped like the rows");
            assert!(lse.iter().all(|v| v.is_finite()), "{what}: {lse:?}");
            let without = ctx().compute(&loss, &args).unwrap();
            assert!(without.lse.is_none(), "{what}: lse not asked for");
            assert_eq!(bits(&with), bits(&without), "{what}: the other outputs");
        }
    }
}

/// Short rows, a workgroup's row length ± 1, rows longer than the lanes' registers (4097)
/// and a vocabulary (32 000: read twice), plain and with each option.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_matches_the_reference() {
    for c in [1, 37, 255, 256, 257, 4097, 32000] {
        case(sce(0.0, 0.0, 0.0), c);
    }
    for c in [37, 257, 32000] {
        case(sce(0.1, 1e-3, 0.0), c);
        case(sce(0.0, 0.0, 30.0), c);
        case(sce(0.1, 0.0, 1.0), c);
    }
}

/// Loss-only calls write the log-sum-exp too.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_in_loss_only_mode() {
    let (b, c) = (33, 300);
    let x = logits(&[b, c], seed_for("lse/loss-only/x"));
    let k = classes_with_ignored(b, c, seed_for("lse/loss-only/k"));
    for reduction in REDUCTIONS {
        let args = LossArgs::new(x.view(), k.view())
            .reduction(reduction)
            .loss_only()
            .want_lse(true);
        let out = crate::common::check_args(ctx(), &sce(0.0, 0.0, 0.0), &args, "lse/loss-only");
        assert!(out.grad.is_none() && out.lse.is_some());
    }
}

/// Streamed in chunks of 1000 elements (chunk boundaries mid-batch, and one row per chunk
/// at C = 1000): each chunk's log-sum-exps land in order.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_across_chunks() {
    for (b, c) in [(301usize, 37usize), (7, 1000)] {
        let what = format!("lse/chunks/C={c}/B={b}");
        let x = logits(&[b, c], seed_for(&format!("{what}/x")));
        let k = classes_with_ignored(b, c, seed_for(&format!("{what}/k")));
        let args = LossArgs::new(x.view(), k.view())
            .reduction(Reduction::None)
            .want_lse(true);
        let chunked = crate::common::check_args(chunked_ctx(), &sce(0.1, 0.0, 0.0), &args, &what);
        let whole = ctx().compute(&sce(0.1, 0.0, 0.0), &args).unwrap();
        let lse_bits = |o: &LossOutput<f32>| -> Vec<u32> {
            o.lse.iter().flatten().map(|v| v.to_bits()).collect()
        };
        assert_eq!(
            lse_bits(&chunked),
            lse_bits(&whole),
            "{what}: chunked vs whole"
        );
    }
}

/// IEEE rows: a `+∞` or NaN logit gives NaN (the loss's NaN rows), a row of `−∞` gives `−∞`,
/// a `−∞` among finite logits is an ordinary one. With a cap, `±∞` are capped to `±c`, so
/// every row but the NaN one is finite (the row of `−∞` is `−c + ln C`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_of_infinite_and_nan_rows() {
    let (x, k, _) = infinite_logit_rows(seed_for("lse/infinite"));
    let args = LossArgs::new(x.view(), k.view())
        .reduction(Reduction::None)
        .want_lse(true);
    let out = crate::common::check_args(ctx(), &sce(0.0, 0.0, 0.0), &args, "lse/infinite");
    let lse = out.lse.unwrap();
    for (r, &v) in lse.iter().enumerate() {
        match r {
            0 | 1 | 6 | 7 => assert!(v.is_nan(), "row {r}: {v}"),
            2 => assert_eq!(v, f32::NEG_INFINITY, "row {r}"),
            _ => assert!(v.is_finite(), "row {r}: {v}"),
        }
    }
    let capped = crate::common::check_args(ctx(), &sce(0.0, 0.0, 5.0), &args, "lse/infinite/cap");
    let lse = capped.lse.unwrap();
    for (r, &v) in lse.iter().enumerate() {
        assert_eq!(v.is_nan(), r == 7, "capped row {r}: {v}");
    }
    let want = -5.0 + 6f32.ln();
    assert!(
        (lse[2] - want).abs() <= 4e-6,
        "a row of −∞ capped: {} vs {want}",
        lse[2]
    );
}

/// The same inputs give the same log-sum-exp bits, call after call.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_is_deterministic() {
    let (b, c) = (64, 5000);
    let x = logits(&[b, c], seed_for("lse/determinism/x"));
    let k = class_rows(&[b], c, seed_for("lse/determinism/k"));
    let args = LossArgs::new(x.view(), k.view()).want_lse(true);
    let first = ctx().compute(&sce(0.1, 1e-4, 30.0), &args).unwrap();
    for _ in 0..3 {
        let again = ctx().compute(&sce(0.1, 1e-4, 30.0), &args).unwrap();
        assert_eq!(first, again);
    }
}

/// A loss without a log-sum-exp refuses it, on every device, before any work.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_refused_for_a_loss_without_one() {
    let x = logits(&[4, 10], seed_for("lse/refused/x"));
    let t = prob_rows(&[4, 10], seed_for("lse/refused/t"));
    let args = LossArgs::new(x.view(), t.view()).want_lse(true);
    for loss in [
        Loss::Mse,
        Loss::distill().build().unwrap(),
        Loss::CategoricalCrossEntropy,
    ] {
        let expect = |r: Result<LossOutput<f32>, Error>, device: &str| match r {
            Err(Error::InvalidOption {
                option: "lse",
                reason,
            }) => {
                assert!(reason.contains(loss.name()), "{device}: {reason}")
            }
            other => panic!("{device}/{}: {other:?}", loss.name()),
        };
        expect(ctx().compute(&loss, &args), "gpu");
        expect(Compute::compute(&wgpu_loss::cpu::Cpu, &loss, &args), "cpu");
        expect(
            reference::compute(&loss, &args).map(|o| LossOutput::new(None, None, None, o.counted)),
            "reference",
        );
    }
}
