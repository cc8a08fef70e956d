//! Long rows split across workgroups (`ContextOptions::split_rows`; `SPLIT_STATS`,
//! `SPLIT_FINISH`, `SPLIT_GRAD` in `shaders/common/rows.wgsl`, planned by `RowPlan` in
//! `src/kernels/rows.rs`). Software adapters never split by default, so these tests set the
//! limit low enough that rows of tens to thousands of elements split into 2 to 2049 segments:
//! segments of one unit per lane, and of several trips per lane with the other main-loop shape
//! (`ContextOptions::unroll`). Softmax cross entropy, cce and distillation split; cosine,
//! which does not, runs beside them unsplit. Every result is compared with the f64 reference within the row-wise
//! tolerance (`check_args`): a split row's sums have fewer terms in a row than the unsplit
//! kernel's (a lane's share of a segment, a tree of 8 levels, then one term per segment),
//! so the unsplit tolerance covers them.

use ndarray::{ArrayD, IxDyn};
use wgpu_loss::{ContextOptions, GpuContext, Loss, LossArgs, LossOutput, Reduction};

use crate::common::{
    REDUCTIONS, assert_infinite_logit_pattern, check_args, class_rows, infinite_logit_rows, logits,
    make, prob_rows, seed_for,
};

/// A context that splits rows longer than `split` elements; with `unrolled`, four units per
/// lane trip (the GPUs' main-loop shape) on every adapter.
fn split_ctx(split: usize, unrolled: bool, chunk: Option<usize>) -> GpuContext {
    make(
        ContextOptions {
            split_rows: Some(split),
            unroll: Some(unrolled),
            max_chunk_elements: chunk,
            ..Default::default()
        },
        "split rows",
    )
}

fn sce(label_smoothing: f32, z_loss: f32, softcap: f32) -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(label_smoothing)
        .z_loss(z_loss)
        .softcap(softcap)
        .ignore_index(-100)
        .build()
        .unwrap()
}

fn bits(o: &LossOutput<f32>) -> Vec<u32> {
    let mut v: Vec<u32> = o.value.iter().map(|v| v.to_bits()).collect();
    for a in [&o.losses, &o.grad, &o.lse].into_iter().flatten() {
        v.extend(a.iter().map(|x| x.to_bits()));
    }
    v
}

/// Every row kind and reduction (`rows::run_all`: class weights, label smoothing and ignored
/// rows for class targets, upstream scalars and arrays) over rows just above the limit (two
/// segments), of a workgroup's length ± 1, longer than a workgroup's registers, and more
/// rows than one dispatch's slots (a row loop of several trips).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_match_the_reference() {
    let small = split_ctx(64, false, None);
    for (b, c) in [
        (3usize, 65usize),
        (1, 255),
        (2, 257),
        (5, 1000),
        (2, 4097),
        (300, 129),
    ] {
        crate::rows::run_all(&small, "split 64", b, c);
    }
    // Segments of 2048 elements, several unrolled trips a lane; rows of 2 to 16 segments.
    let large = split_ctx(2048, true, None);
    for (b, c) in [(3usize, 2049usize), (2, 32_000), (17, 5000)] {
        crate::rows::run_all(&large, "split 2048", b, c);
    }
}

/// Every option of softmax cross entropy on split rows: label smoothing, the z-loss, the soft
/// cap, the log-sum-exp output, with class ids (a seventh of them ignored) and probabilities.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_with_every_option() {
    let ctx = split_ctx(100, false, None);
    let (b, c) = (13usize, 1000usize);
    for loss in [
        sce(0.0, 0.0, 0.0),
        sce(0.1, 1e-3, 0.0),
        sce(0.0, 0.0, 30.0),
        sce(0.1, 1e-3, 5.0),
    ] {
        let name = format!("split/options/{loss:?}");
        let x = logits(&[b, c], seed_for(&format!("{name}/x")));
        let mut k = class_rows(&[b], c, seed_for(&format!("{name}/k")));
        k.iter_mut().step_by(7).for_each(|v| *v = -100);
        let t = prob_rows(&[b, c], seed_for(&format!("{name}/t")));
        for classes in [true, false] {
            for reduction in REDUCTIONS {
                let what = format!("{name}/classes={classes}/{}", reduction.name());
                let args = if classes {
                    LossArgs::new(x.view(), k.view())
                } else {
                    LossArgs::new(x.view(), t.view())
                }
                .reduction(reduction)
                .want_lse(true);
                let out = check_args(&ctx, &loss, &args, &what);
                assert!(out.lse.is_some(), "{what}: log-sum-exp");
            }
        }
    }
}

/// Distillation over split rows (the teacher's and the student's running softmaxes and the
/// KL sum, five words of statistics), with each reduction and temperatures below, at and
/// above 1.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_distillation_matches_the_reference() {
    let ctx = split_ctx(100, true, None);
    for (b, c, t) in [(3usize, 101usize, 0.5f32), (7, 1000, 1.0), (2, 4097, 2.0)] {
        let loss = Loss::distill().temperature(t).build().unwrap();
        let name = format!("split/distill/T={t}/{b}x{c}");
        let s = logits(&[b, c], seed_for(&format!("{name}/s")));
        let u = logits(&[b, c], seed_for(&format!("{name}/u")));
        for reduction in REDUCTIONS {
            let args = LossArgs::new(s.view(), u.view()).reduction(reduction);
            check_args(&ctx, &loss, &args, &format!("{name}/{}", reduction.name()));
        }
    }
}

/// Split rows in chunks of 1000 elements (one, two or seven rows a chunk): the segment
/// statistics of one chunk are not read by the next, and the partial sums add up.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_across_chunks() {
    let ctx = split_ctx(64, false, Some(1000));
    for (b, c) in [(5usize, 1000usize), (7, 500), (30, 129)] {
        crate::rows::run_all(&ctx, "split chunked", b, c);
    }
}

/// The same inputs give the same bits, run after run (no float atomics: each segment's
/// statistics and each row's combination in a fixed order).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_are_deterministic() {
    let ctx = split_ctx(256, true, None);
    let (b, c) = (9usize, 5000usize);
    let x = logits(&[b, c], seed_for("split/det/x"));
    let k = class_rows(&[b], c, seed_for("split/det/k"));
    let loss = sce(0.1, 1e-3, 0.0);
    for reduction in REDUCTIONS {
        let args = LossArgs::new(x.view(), k.view())
            .reduction(reduction)
            .want_lse(true);
        let first = bits(&ctx.compute(&loss, &args).unwrap());
        for _ in 0..3 {
            assert_eq!(
                bits(&ctx.compute(&loss, &args).unwrap()),
                first,
                "{}",
                reduction.name()
            );
        }
    }
}

/// Rows with infinite and NaN logits, six to a row in three segments of two: the NaN rows,
/// the +∞ loss and the finite ones as unsplit.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_of_infinite_and_nan_logits() {
    let ctx = split_ctx(2, false, None);
    let (x, k, t) = infinite_logit_rows(seed_for("split/inf"));
    let mut w = ArrayD::from_elem(IxDyn(&[6]), 1.5f32);
    w[[2]] = 0.0;
    for loss in [sce(0.0, 0.0, 0.0), sce(0.1, 1e-3, 0.0)] {
        for classes in [true, false] {
            let what = format!("split/inf/{loss:?}/classes={classes}");
            let args = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .reduction(Reduction::None)
            .weight(w.view());
            let out = check_args(&ctx, &loss, &args, &what);
            let smoothing = matches!(loss, Loss::SoftmaxCrossEntropy { label_smoothing, .. } if label_smoothing > 0.0);
            assert_infinite_logit_pattern(&out, smoothing, &what);
        }
    }
}

/// Categorical cross entropy's statistics pass writes the gradient of split rows: a NaN in
/// any segment (the first, its second, the last) must still make the whole row NaN.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_cce_rows_with_a_late_nan() {
    for unrolled in [false, true] {
        let ctx = split_ctx(300, unrolled, None);
        let name = format!("/split 300/unrolled={unrolled}");
        crate::categorical_cross_entropy::nan_late_in_long_rows(&ctx, &name);
    }
}

/// The resident API's gradient written in place over split rows is bit for bit the one a
/// separate buffer receives (every row finished before any gradient word is written), for
/// every case of the unsplit test: 16-bit storage included.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_in_place_match_out_of_place_bit_for_bit() {
    crate::resident::in_place_matches_out_of_place(&split_ctx(64, false, None));
}

/// The split changes only how the sums are grouped: a split and an unsplit call agree within
/// the row-wise tolerance, and a split call is not secretly the unsplit kernel (its bits
/// differ somewhere over rows of thousands of elements).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_differ_from_unsplit_only_in_rounding() {
    let split = split_ctx(256, false, None);
    let whole = split_ctx(usize::MAX, false, None);
    let (b, c) = (16usize, 5000usize);
    let x = logits(&[b, c], seed_for("split/vs/x"));
    let t = prob_rows(&[b, c], seed_for("split/vs/t"));
    let args = LossArgs::new(x.view(), t.view()).reduction(Reduction::None);
    let loss = sce(0.0, 0.0, 0.0);
    let a = check_args(&split, &loss, &args, "split/vs/split");
    let z = check_args(&whole, &loss, &args, "split/vs/whole");
    assert_ne!(
        bits(&a),
        bits(&z),
        "split rows gave the unsplit kernel's bits"
    );
}

/// A probability outside [0, 1] in a split row of cce is found by the statistics pass: the
/// first offending row's first offending element, in any of the row's segments.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_cce_reports_the_first_out_of_domain_element() {
    let ctx = split_ctx(64, false, None);
    let (b, c) = (6usize, 1000usize);
    for (row, col, value) in [
        (4usize, 999usize, 1.5f32),
        (2, 0, -0.25),
        (3, 500, f32::INFINITY),
    ] {
        let what = format!("split/cce/domain/{row},{col}");
        let mut p = prob_rows(&[b, c], seed_for(&what));
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        p[[5, 10]] = 2.0;
        p[[row, col]] = value;
        let args = LossArgs::new(p.view(), t.view());
        match ctx.compute(&Loss::CategoricalCrossEntropy, &args) {
            Err(wgpu_loss::Error::OutOfDomain {
                index, value: v, ..
            }) => {
                assert_eq!((index, v), (row * c + col, value), "{what}")
            }
            other => panic!("{what}: expected OutOfDomain, got {other:?}"),
        }
    }
}

/// Split rows in f16 and bf16 storage (the resident API), gradients in the input type or f32:
/// odd C (rows starting mid-word, sharing a word with their neighbours), rows of a multiple of
/// 8 (a vec4 of words a unit on software adapters), every row-wise loss and distillation.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn split_rows_in_16_bits_match_the_reference() {
    let ctx = split_ctx(64, false, None);
    crate::half::row_losses_in_16_bits(&ctx);
    crate::half::distill_and_jsd_in_16_bits(&ctx);
}
