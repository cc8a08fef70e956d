//! Cross-cutting tests of the row-wise family (`shaders/common/rows.wgsl`,
//! `src/kernels/rows.rs`): chunking, the plain reduction, determinism, upstream gradients,
//! NaN, views and ranks, and the errors every row-wise loss shares.

use ndarray::{ArrayD, Axis, IxDyn};
use wgpu_loss::{Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, Upstream, synthetic};

use crate::common::{
    REDUCTIONS, ROW_KINDS, RowKind, RowTarget, SMALL_CHUNK, check_args, chunked_ctx, ctx,
    gpu_rows_ctx, lanes_per_row, plain_ctx, seed_for,
};

/// `Mean`, `Sum` with a scalar upstream, `None` with an upstream array; for every kind, on
/// `ctx`, with rows of `c` (`b` of them). Softmax with class targets also gets class weights,
/// label smoothing and every seventh row ignored.
pub fn run_all(ctx: &GpuContext, tag: &str, b: usize, c: usize) {
    for kind in ROW_KINDS {
        let name = format!("{tag}/{}/C={c}/B={b}", kind.name());
        let mut batch = kind.batch(&[b, c], seed_for(&name));
        let w = synthetic::uniform(&[c], 0.0, 2.0, seed_for(&format!("{name}/w")));
        let g = synthetic::uniform(&[b], -2.0, 2.0, seed_for(&format!("{name}/g")));
        let mut loss = batch.loss;
        let mut ignored = 0;
        if let RowTarget::Classes(k) = &mut batch.target {
            for (r, v) in k.iter_mut().enumerate() {
                if r % 7 == 3 {
                    *v = -100;
                    ignored += 1;
                }
            }
            loss = Loss::softmax_cross_entropy()
                .label_smoothing(0.1)
                .z_loss(0.0)
                .ignore_index(-100)
                .build()
                .unwrap();
        }
        for reduction in REDUCTIONS {
            let what = format!("{name}/{}", reduction.name());
            let mut args = batch.args().reduction(reduction);
            if kind == RowKind::SoftmaxClasses {
                args = args.weight(w.view());
            }
            args = args.upstream(match reduction {
                Reduction::Mean => Upstream::Ones,
                Reduction::Sum => Upstream::Scalar(0.75),
                Reduction::None => Upstream::Array(g.view()),
                other => panic!("a reduction this test does not know: {other:?}"),
            });
            let out = check_args(ctx, &loss, &args, &what);
            assert_eq!(out.counted, b - ignored, "{what}: counted");
        }
    }
}

/// Chunks of 1000 elements hold whole rows: 142 rows of 7 (the last chunk partial), one row
/// of 1000 or of 999, two rows of 500, 1000 rows of 1; ignored class rows fall on both sides
/// of every boundary, and the class pre-pass and mean divisor add up across chunks.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn rows_in_small_chunks() {
    let ctx = chunked_ctx();
    assert_eq!(ctx.max_chunk_elements(), SMALL_CHUNK);
    for (b, c) in [
        (1001usize, 7usize),
        (5, 1000),
        (3, 999),
        (7, 500),
        (2500, 1),
        (20, 143),
    ] {
        run_all(ctx, "chunked", b, c);
    }
}

/// A row longer than one binding cannot be split: a device-limit error, for every loss;
/// a row of exactly one binding works.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn a_row_longer_than_a_chunk_is_a_device_limit() {
    for kind in ROW_KINDS {
        let batch = kind.batch(&[2, SMALL_CHUNK + 1], seed_for("row > chunk"));
        match chunked_ctx().compute(&batch.loss, &batch.args()) {
            Err(Error::DeviceLimit { needed, limit, .. }) => {
                assert_eq!(
                    (needed, limit),
                    (SMALL_CHUNK as u64 + 1, SMALL_CHUNK as u64)
                );
            }
            other => panic!("{}: expected DeviceLimit, got {other:?}", kind.name()),
        }
        let batch = kind.batch(&[1, SMALL_CHUNK], seed_for("row = chunk"));
        check_args(chunked_ctx(), &batch.loss, &batch.args(), kind.name());
    }
}

/// The plain shared-memory reduction (no subgroups) across group sizes 1 to 256 and the
/// two-pass path for rows longer than 256 · ROW_REGS.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn plain_reduction_flavour() {
    assert!(!plain_ctx().uses_subgroups());
    for (b, c) in [
        (3001usize, 1usize),
        (2001, 3),
        (999, 33),
        (101, 257),
        (33, 1000),
        (3, 32000),
    ] {
        run_all(plain_ctx(), "plain", b, c);
    }
}

/// Rows of every group size with the GPUs' lanes per row (`group_for`: the power of two
/// nearest above C / 16, at most 256), on every adapter: the shortest and longest row of each,
/// a row per lane (C ≤ 16) to the whole workgroup, and rows longer than 256 · ROW_REGS = 4096,
/// read twice. Then the same rows on the default context (on a software adapter one lane per
/// row up to C = 1024, then 2 to 16 lanes).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_group_size_with_options() {
    let cols = [
        1usize, 16, 17, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513, 1024, 1025, 2048, 2049, 4096,
        4097, 9000,
    ];
    let groups: std::collections::BTreeSet<u32> = cols
        .iter()
        .map(|&c| lanes_per_row(c, crate::common::RowLanes::GPU))
        .collect();
    assert_eq!(groups.len(), 9, "every group size 1..=256: {groups:?}");
    for c in cols {
        let b = ((1usize << 14) / c).max(3) | 1;
        run_all(gpu_rows_ctx(), "GPU groups", b, c);
        run_all(ctx(), "groups", b, c);
    }
}

fn bits(o: &LossOutput<f32>) -> (Option<u32>, Vec<u32>, Vec<u32>, usize) {
    (
        o.value.map(f32::to_bits),
        o.losses.iter().flatten().map(|v| v.to_bits()).collect(),
        o.grad.iter().flatten().map(|v| v.to_bits()).collect(),
        o.counted,
    )
}

fn determinism(ctx: &GpuContext, tag: &str) {
    for kind in ROW_KINDS {
        for shape in [[301usize, 37], [9, 32000]] {
            for reduction in [Reduction::Mean, Reduction::None] {
                let what = format!(
                    "determinism/{tag}/{}/{shape:?}/{}",
                    kind.name(),
                    reduction.name()
                );
                let batch = kind.batch(&shape, seed_for(&what));
                let w = synthetic::uniform(&shape[1..], 0.0, 2.0, seed_for(&format!("{what}/w")));
                let mut args = batch.args().reduction(reduction);
                if kind == RowKind::SoftmaxClasses {
                    args = args.weight(w.view());
                }
                let first = ctx.compute(&batch.loss, &args).unwrap();
                let second = ctx.compute(&batch.loss, &args).unwrap();
                assert!(
                    bits(&first) == bits(&second),
                    "{what}: two calls differ: {:?} vs {:?}",
                    first.value,
                    second.value
                );
            }
        }
    }
}

/// Same inputs, same device: bit-identical value, per-row losses and gradient.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn repeated_calls_are_bit_identical() {
    determinism(ctx(), "default");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn repeated_calls_are_bit_identical_with_the_plain_reduction() {
    determinism(plain_ctx(), "plain");
}

/// A NaN in one row's prediction (or float target) makes that row's loss NaN and its whole
/// gradient row NaN; no other row is touched; the mean is NaN.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn nan_poisons_its_row_only() {
    let (b, c, bad) = (9usize, 37usize, 3usize);
    for kind in ROW_KINDS {
        for in_target in [false, true] {
            if in_target && kind == RowKind::SoftmaxClasses {
                continue;
            }
            for col in [0usize, 17, 36] {
                let what = format!("nan/{}/target={in_target}/col {col}", kind.name());
                let mut batch = kind.batch(&[b, c], seed_for(&what));
                match (&mut batch.target, in_target) {
                    (RowTarget::Dense(t), true) => t[[bad, col]] = f32::NAN,
                    _ => batch.pred[[bad, col]] = f32::NAN,
                }
                for reduction in [Reduction::Mean, Reduction::None] {
                    let what = format!("{what}/{}", reduction.name());
                    let args = batch.args().reduction(reduction);
                    let out = check_args(ctx(), &batch.loss, &args, &what);
                    let grad = out.grad.unwrap();
                    for r in 0..b {
                        let row = grad.index_axis(Axis(0), r);
                        if r == bad {
                            assert!(row.iter().all(|g| g.is_nan()), "{what}: row {r}: {row:?}");
                        } else {
                            assert!(row.iter().all(|g| !g.is_nan()), "{what}: row {r}: {row:?}");
                        }
                    }
                    match out.losses {
                        Some(l) => {
                            for (r, v) in l.iter().enumerate() {
                                assert_eq!(v.is_nan(), r == bad, "{what}: loss of row {r}: {v}");
                            }
                        }
                        None => assert!(out.value.unwrap().is_nan(), "{what}: {:?}", out.value),
                    }
                }
            }
        }
    }
}

/// Upstream arrays (`None`), scalars (every reduction) and loss-only mode for every kind.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn upstream_and_loss_only() {
    let (b, c) = (63usize, 129usize);
    for kind in ROW_KINDS {
        let name = format!("upstream/{}", kind.name());
        let batch = kind.batch(&[b, c], seed_for(&name));
        let g = synthetic::uniform(&[b], -3.0, 3.0, seed_for(&format!("{name}/g")));
        let args = batch
            .args()
            .reduction(Reduction::None)
            .upstream(Upstream::Array(g.view()));
        check_args(ctx(), &batch.loss, &args, &format!("{name}/array"));
        for reduction in REDUCTIONS {
            let what = format!("{name}/{}", reduction.name());
            let args = batch.args().reduction(reduction);
            let scaled = args.clone().upstream(Upstream::Scalar(-2.5));
            check_args(ctx(), &batch.loss, &scaled, &format!("{what}/scalar"));
            let only = check_args(ctx(), &batch.loss, &args.clone().loss_only(), &what);
            assert!(only.grad.is_none(), "{what}: loss-only returned a gradient");
            let full = ctx().compute(&batch.loss, &args).unwrap();
            assert_eq!(
                only.value.map(f32::to_bits),
                full.value.map(f32::to_bits),
                "{what}"
            );
            assert_eq!(only.losses, full.losses, "{what}");
        }
    }
}

/// Leading dimensions flatten into rows (rank 3, rank 1), and transposed or strided views are
/// read in logical order (the same bits as a contiguous copy).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn ranks_and_views() {
    for kind in ROW_KINDS {
        for shape in [vec![3usize, 5, 37], vec![1, 1, 300], vec![37], vec![1]] {
            let what = format!("rank/{}/{shape:?}", kind.name());
            let batch = kind.batch(&shape, seed_for(&what));
            let args = batch.args().reduction(Reduction::None);
            let out = check_args(ctx(), &batch.loss, &args, &what);
            assert_eq!(out.grad.unwrap().shape(), &shape[..], "{what}");
            assert_eq!(
                out.losses.unwrap().shape(),
                &shape[..shape.len() - 1],
                "{what}"
            );
        }
        // A [40, 90] view of a [90, 40] array (storage columns are rows here), and every
        // other column of [90, 40].
        let what = format!("views/{}", kind.name());
        let batch = kind.batch(&[90, 40], seed_for(&what));
        let every_other = ndarray::Slice::new(0, None, 2);
        let pt = batch.pred.t();
        let pc = pt.as_standard_layout().into_owned();
        let ps = batch.pred.slice_axis(Axis(1), every_other);
        let k = crate::common::class_rows(&[40], 90, seed_for(&format!("{what}/k")));
        let ks = crate::common::class_rows(&[90], 20, seed_for(&format!("{what}/ks")));
        let tc: ArrayD<f32>;
        let (args, args_c, args_s) = match &batch.target {
            RowTarget::Dense(t) => {
                tc = t.t().as_standard_layout().into_owned();
                (
                    LossArgs::new(pt.view(), t.t()),
                    LossArgs::new(pc.view(), tc.view()),
                    LossArgs::new(ps.view(), t.slice_axis(Axis(1), every_other)),
                )
            }
            RowTarget::Classes(_) => (
                LossArgs::new(pt.view(), k.view()),
                LossArgs::new(pc.view(), k.view()),
                LossArgs::new(ps.view(), ks.view()),
            ),
        };
        for reduction in [Reduction::Sum, Reduction::None] {
            let what = format!("{what}/{}", reduction.name());
            let out = check_args(
                ctx(),
                &batch.loss,
                &args.clone().reduction(reduction),
                &format!("{what}/transposed"),
            );
            let contiguous = ctx()
                .compute(&batch.loss, &args_c.clone().reduction(reduction))
                .unwrap();
            assert_eq!(
                bits(&out),
                bits(&contiguous),
                "{what}: transposed != contiguous"
            );
            check_args(
                ctx(),
                &batch.loss,
                &args_s.clone().reduction(reduction),
                &format!("{what}/strided"),
            );
        }
    }
}

// ---- Errors every row-wise loss shares ----------------------------------------------------

fn dense(shape: &[usize], v: f32) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(shape), v)
}

/// The row-wise losses that take float targets only.
fn dense_only() -> [Loss; 2] {
    [
        Loss::CategoricalCrossEntropy,
        Loss::cosine_proximity().build().unwrap(),
    ]
}

/// Every row-wise loss, default options.
fn all_rows() -> [Loss; 3] {
    [
        Loss::CategoricalCrossEntropy,
        Loss::softmax_cross_entropy().build().unwrap(),
        Loss::cosine_proximity().build().unwrap(),
    ]
}

/// Class indices are for softmax cross entropy only.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_targets_for_dense_losses_are_rejected() {
    let p = dense(&[4, 5], 0.2);
    let k64 = ArrayD::from_elem(IxDyn(&[4]), 1i64);
    let k32 = ArrayD::from_elem(IxDyn(&[4]), 1i32);
    for loss in dense_only() {
        for args in [
            LossArgs::new(p.view(), k64.view()),
            LossArgs::new(p.view(), k32.view()),
        ] {
            let e = ctx().compute(&loss, &args).unwrap_err();
            assert!(
                matches!(
                    &e,
                    Error::InvalidOption {
                        option: "target",
                        ..
                    }
                ),
                "{}: {e:?}",
                loss.name()
            );
            let e = wgpu_loss::reference::compute(&loss, &args).unwrap_err();
            assert!(
                matches!(
                    &e,
                    Error::InvalidOption {
                        option: "target",
                        ..
                    }
                ),
                "reference {}: {e:?}",
                loss.name()
            );
        }
    }
}

/// A row-wise loss needs rank ≥ 1.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn rank_zero_prediction_is_rejected() {
    let p = dense(&[], 0.5);
    let k = ArrayD::from_elem(IxDyn(&[]), 0i64);
    for loss in all_rows() {
        let e = ctx()
            .compute(&loss, &LossArgs::new(p.view(), p.view()))
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidOption { option: "pred", .. }),
            "{}: {e:?}",
            loss.name()
        );
    }
    let e = ctx()
        .compute(
            &Loss::softmax_cross_entropy().build().unwrap(),
            &LossArgs::new(p.view(), k.view()),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { option: "pred", .. }),
        "{e:?}"
    );
}

/// No rows ([0, 5]) or rows of nothing ([5, 0]).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn empty_input_is_an_error() {
    for shape in [[0usize, 5], [5, 0]] {
        let p = dense(&shape, 0.5);
        let k = ArrayD::from_elem(IxDyn(&shape[..1]), 0i64);
        for loss in all_rows() {
            for reduction in REDUCTIONS {
                let e = ctx()
                    .compute(
                        &loss,
                        &LossArgs::new(p.view(), p.view()).reduction(reduction),
                    )
                    .unwrap_err();
                assert!(
                    matches!(&e, Error::Empty { shape: s } if s == &shape),
                    "{} {shape:?}: {e:?}",
                    loss.name()
                );
            }
        }
        let e = ctx()
            .compute(
                &Loss::softmax_cross_entropy().build().unwrap(),
                &LossArgs::new(p.view(), k.view()),
            )
            .unwrap_err();
        assert!(
            matches!(&e, Error::Empty { .. }),
            "classes {shape:?}: {e:?}"
        );
    }
}

/// The upstream array is shaped like the rows ([B] for [B, C]), and only for `None`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn upstream_array_shape_and_reduction() {
    let p = dense(&[4, 5], 0.2);
    let k = ArrayD::from_elem(IxDyn(&[4]), 1i64);
    for loss in all_rows() {
        for gshape in [vec![4usize, 5], vec![5], vec![4, 1], vec![]] {
            let g = dense(&gshape, 1.0);
            for args in [
                LossArgs::new(p.view(), p.view()),
                LossArgs::new(p.view(), k.view()),
            ] {
                if args.target.is_classes() && !loss.takes_classes() {
                    continue;
                }
                let args = args
                    .reduction(Reduction::None)
                    .upstream(Upstream::Array(g.view()));
                let e = ctx().compute(&loss, &args).unwrap_err();
                assert!(
                    matches!(&e, Error::ShapeMismatch { what: "upstream", expected, .. }
                        if expected == &[4]),
                    "{} {gshape:?}: {e:?}",
                    loss.name()
                );
            }
        }
        let g = dense(&[4], 1.0);
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let args = LossArgs::new(p.view(), p.view())
                .reduction(reduction)
                .upstream(Upstream::Array(g.view()));
            let e = ctx().compute(&loss, &args).unwrap_err();
            assert!(
                matches!(
                    &e,
                    Error::InvalidOption {
                        option: "upstream",
                        ..
                    }
                ),
                "{}: {e:?}",
                loss.name()
            );
        }
        let args = LossArgs::new(p.view(), p.view()).upstream(Upstream::Scalar(f32::INFINITY));
        let e = ctx().compute(&loss, &args).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "upstream",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}

/// Weights are for softmax cross entropy only; `pos_weight` for none of the row-wise losses.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn weights_on_losses_that_take_none_are_rejected() {
    let p = dense(&[4, 5], 0.2);
    let w = dense(&[5], 1.0);
    for loss in dense_only() {
        let e = ctx()
            .compute(&loss, &LossArgs::new(p.view(), p.view()).weight(w.view()))
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "weight",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    for loss in all_rows() {
        let e = ctx()
            .compute(
                &loss,
                &LossArgs::new(p.view(), p.view()).pos_weight(w.view()),
            )
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidOption {
                    option: "pos_weight",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
