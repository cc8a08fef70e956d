//! Vocabulary-sharded softmax cross entropy (`wgpu_loss::sharded`): the logits split by
//! columns into 1 to 4 shards of uneven widths on one device, the two all-reduces done on the
//! host (MAX, then SUM, in shard order), checked against the unsharded `GpuContext::compute`
//! of the same loss and against the f64 reference, within the row-wise tolerances of
//! tests/gpu/common.rs, every shard's gradient against its columns of the unsharded one.

use ndarray::{ArrayD, Axis, IxDyn, s};
use wgpu_loss::resident::GpuArray;
use wgpu_loss::sharded::{SHARD_SUMS, ShardBuffers, ShardSpec, ShardedLoss};
use wgpu_loss::{
    ClassType, Dtype, Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, Upstream, reference,
};

use crate::buffers::{read, upload, zeros};
use crate::common::{
    Tolerance, assert_close_within, assert_infinite_logit_pattern, class_rows, ctx,
    infinite_logit_rows, logits, row_tolerance, seed_for,
};

/// Class ids as the buffer of `class_type` holds them.
fn class_words(classes: &[i64], class_type: ClassType) -> Vec<u32> {
    match class_type {
        ClassType::I64 => bytemuck::cast_slice(classes).to_vec(),
        ClassType::I32 => classes.iter().map(|&c| c as i32 as u32).collect(),
        _ => classes.iter().map(|&c| c as u32).collect(),
    }
}

/// One sharded case: the whole batch, and how it is split.
#[derive(Clone)]
struct Case<'a> {
    loss: Loss,
    /// `[B, C]` logits.
    x: &'a ArrayD<f32>,
    classes: &'a [i64],
    class_type: ClassType,
    /// `[C]` class weights.
    weight: Option<&'a [f32]>,
    widths: &'a [usize],
    reduction: Reduction,
    g: f32,
    dtype: Dtype,
    grad_dtype: Dtype,
}

impl<'a> Case<'a> {
    fn new(loss: Loss, x: &'a ArrayD<f32>, classes: &'a [i64], widths: &'a [usize]) -> Self {
        Case {
            loss,
            x,
            classes,
            class_type: ClassType::I64,
            weight: None,
            widths,
            reduction: Reduction::Mean,
            g: 1.0,
            dtype: Dtype::F32,
            grad_dtype: Dtype::F32,
        }
    }

    fn rows_cols(&self) -> (usize, usize) {
        (self.x.shape()[0], self.x.shape()[1])
    }
}

/// One shard's plan and buffers.
struct Shard {
    plan: ShardedLoss,
    offset: usize,
    width: usize,
    held: Held,
}

/// One shard's buffers.
struct Held {
    logits: wgpu::Buffer,
    classes: wgpu::Buffer,
    weight: Option<wgpu::Buffer>,
    maxima: wgpu::Buffer,
    sums: wgpu::Buffer,
    grad: wgpu::Buffer,
    output: wgpu::Buffer,
}

impl Held {
    fn bufs(&self) -> ShardBuffers<'_> {
        let b = ShardBuffers::new(
            &self.logits,
            &self.classes,
            &self.maxima,
            &self.sums,
            &self.grad,
            &self.output,
        );
        match &self.weight {
            Some(w) => b.weight(w),
            None => b,
        }
    }
}

/// What a sharded run gives: the result assembled over the shards, each shard's output, and
/// the first shard's status.
struct ShardRun {
    out: LossOutput<f32>,
    outputs: Vec<Vec<f32>>,
    out_of_range: Option<usize>,
}

fn plan_shards(ctx: &GpuContext, case: &Case<'_>) -> Vec<Shard> {
    let (b, c) = case.rows_cols();
    assert_eq!(case.widths.iter().sum::<usize>(), c, "the widths cover C");
    let words = class_words(case.classes, case.class_type);
    let mut offset = 0;
    case.widths
        .iter()
        .map(|&width| {
            let cols = case.x.slice(s![.., offset..offset + width]);
            let flat: Vec<f32> = cols.iter().copied().collect();
            let mut spec = ShardSpec::new(b, width, offset, c)
                .classes(case.class_type)
                .reduction(case.reduction)
                .upstream(case.g)
                .dtype(case.dtype)
                .grad_dtype(case.grad_dtype);
            if case.weight.is_some() {
                spec = spec.weight();
            }
            let plan = ctx
                .sharded(&case.loss, spec)
                .unwrap_or_else(|e| panic!("planning the shard at {offset}: {e}"));
            let out_len = plan.output_len();
            let shard = Shard {
                plan,
                offset,
                width,
                held: Held {
                    logits: upload(ctx, "logits", &case.dtype.pack(&flat)),
                    classes: upload(ctx, "classes", &words),
                    weight: case
                        .weight
                        .map(|w| upload(ctx, "weight", &w[offset..offset + width])),
                    maxima: zeros(ctx, "maxima", b),
                    sums: zeros(ctx, "sums", b * SHARD_SUMS),
                    grad: zeros(ctx, "grad", case.grad_dtype.bytes(b * width) as usize / 4),
                    output: zeros(ctx, "output", out_len),
                },
            };
            offset += width;
            shard
        })
        .collect()
}

/// Records `step` of every shard, one submission each.
fn step_all(ctx: &GpuContext, shards: &mut [Shard], step: usize) {
    for sh in shards.iter_mut() {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let bufs = sh.held.bufs();
        let r = match step {
            1 => sh.plan.record_max(ctx, &mut encoder, &bufs),
            2 => sh.plan.record_sums(ctx, &mut encoder, &bufs),
            _ => sh.plan.record_loss(ctx, &mut encoder, &bufs),
        };
        r.unwrap_or_else(|e| panic!("step {step}: {e}"));
        ctx.queue().submit([encoder.finish()]);
    }
}

/// The host's all-reduce of `pick(shard)` (`len` f32 each) with `op`, in shard order, written
/// back to every shard.
fn all_reduce(
    ctx: &GpuContext,
    shards: &[Shard],
    len: usize,
    pick: fn(&Shard) -> &wgpu::Buffer,
    op: fn(f32, f32) -> f32,
) {
    let mut acc = read(ctx, pick(&shards[0]), len);
    for sh in &shards[1..] {
        for (a, v) in acc.iter_mut().zip(read(ctx, pick(sh), len)) {
            *a = op(*a, v);
        }
    }
    for sh in shards {
        ctx.queue()
            .write_buffer(pick(sh), 0, bytemuck::cast_slice(&acc));
    }
}

/// The three steps over `shards` with the host's all-reduces between them.
fn run_steps(ctx: &GpuContext, shards: &mut [Shard]) {
    let b = shards[0].plan.spec().rows;
    step_all(ctx, shards, 1);
    all_reduce(ctx, shards, b, |s| &s.held.maxima, f32::max);
    step_all(ctx, shards, 2);
    all_reduce(ctx, shards, b * SHARD_SUMS, |s| &s.held.sums, |a, v| a + v);
    step_all(ctx, shards, 3);
}

/// Reads the shards' outputs and gradients back into one result.
fn collect(ctx: &GpuContext, case: &Case<'_>, shards: &[Shard]) -> ShardRun {
    let (b, c) = case.rows_cols();
    let mut grad = ArrayD::<f32>::zeros(IxDyn(&[b, c]));
    let mut outputs = Vec::new();
    for sh in shards {
        let n = b * sh.width;
        let words = case.grad_dtype.bytes(n) as usize / 4;
        let bits: Vec<u32> = read(ctx, &sh.held.grad, words)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let g = ArrayD::from_shape_vec(IxDyn(&[b, sh.width]), case.grad_dtype.unpack(&bits, n))
            .expect("shard gradient");
        grad.slice_mut(s![.., sh.offset..sh.offset + sh.width])
            .assign(&g);
        outputs.push(read(ctx, &sh.held.output, sh.plan.output_len()));
    }
    let status = shards[0].plan.status_blocking(ctx).expect("status");
    for sh in &shards[1..] {
        assert_eq!(
            sh.plan.status_blocking(ctx).expect("status"),
            status,
            "every shard counts the same rows"
        );
    }
    let first = &outputs[0];
    for (k, o) in outputs.iter().enumerate() {
        let same = o.iter().zip(first).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "shard {k}'s output {o:?} differs from shard 0's {first:?}"
        );
    }
    let (value, losses) = if case.reduction == Reduction::None {
        (
            None,
            Some(ArrayD::from_shape_vec(IxDyn(&[b]), first.clone()).expect("losses")),
        )
    } else {
        (Some(first[0]), None)
    };
    ShardRun {
        out: LossOutput::new(value, losses, Some(grad), status.counted),
        outputs,
        out_of_range: status.class_out_of_range,
    }
}

fn run_sharded(ctx: &GpuContext, case: &Case<'_>) -> ShardRun {
    let mut shards = plan_shards(ctx, case);
    run_steps(ctx, &mut shards);
    collect(ctx, case, &shards)
}

/// The unsharded arguments of `case` (logits as the shards store them).
fn unsharded_args<'a>(
    case: &Case<'a>,
    x: &'a ArrayD<f32>,
    classes: &'a ArrayD<i64>,
) -> LossArgs<'a> {
    let mut args = LossArgs::new(x.view(), classes.view())
        .reduction(case.reduction)
        .upstream(Upstream::Scalar(case.g));
    if let Some(w) = case.weight {
        args = args.weight(ndarray::ArrayView1::from(w));
    }
    args
}

fn to_f64(o: &LossOutput<f32>) -> LossOutput<f64> {
    LossOutput::new(
        o.value.map(f64::from),
        o.losses.as_ref().map(|a| a.mapv(f64::from)),
        o.grad.as_ref().map(|a| a.mapv(f64::from)),
        o.counted,
    )
}

/// Runs `case` sharded and checks it against the f64 reference (the row-wise tolerance) and
/// the unsharded GPU result (twice that: both carry their own rounding), each shard's
/// gradient columns included. Returns the sharded result.
fn check_case(ctx: &GpuContext, case: &Case<'_>, what: &str) -> ShardRun {
    let run = run_sharded(ctx, case);
    // What the shards hold: the logits rounded to their storage.
    let x = case.x.mapv(|v| case.dtype.round(v));
    let classes = ArrayD::from_shape_vec(IxDyn(&[case.classes.len()]), case.classes.to_vec())
        .expect("classes");
    let args = unsharded_args(case, &x, &classes);
    let want =
        reference::compute(&case.loss, &args).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let mut tol = row_tolerance(crate::common::RowLanes::GPU, &case.loss, &args);
    if case.grad_dtype != Dtype::F32 {
        // One rounding of each gradient element to 8 significant bits.
        tol.array_rtol += 2f64.powi(-8);
    }
    assert_close_within(
        &run.out,
        &want,
        tol,
        &format!("{what}: sharded vs reference"),
    );
    let unsharded = ctx
        .compute(&case.loss, &args)
        .unwrap_or_else(|e| panic!("{what}: unsharded: {e}"));
    let twice = Tolerance {
        array_rtol: 2.0 * tol.array_rtol,
        ..tol
    };
    let mut sharded = run.out.clone();
    if case.grad_dtype != Dtype::F32 {
        sharded.grad = unsharded.grad.clone(); // compared with the reference above
    }
    assert_close_within(
        &sharded,
        &to_f64(&unsharded),
        twice,
        &format!("{what}: sharded vs unsharded"),
    );
    run
}

/// `(C, shard widths)`: 1 to 4 shards of uneven widths, a width-1 shard, widths around the
/// workgroup size 256 ± 1, rows longer than a workgroup holds in registers (4096).
const SPLITS: [(usize, &[usize]); 12] = [
    (1000, &[1000]),
    (1000, &[1, 999]),
    (1000, &[255, 257, 488]),
    (1000, &[1, 256, 257, 486]),
    (5000, &[5000]),
    (5000, &[4999, 1]),
    (5000, &[255, 4488, 257]),
    (5000, &[1, 257, 4096, 646]),
    (32000, &[32000]),
    (32000, &[16001, 15999]),
    (32000, &[257, 30000, 1743]),
    (32000, &[1, 255, 31000, 744]),
];

fn default_ce() -> Loss {
    Loss::softmax_cross_entropy().build().expect("default")
}

/// Seeded `[B, C]` logits U(−8, 8) and class ids in `[0, C)`.
fn batch(b: usize, c: usize, what: &str) -> (ArrayD<f32>, Vec<i64>) {
    let seed = seed_for(what);
    let x = logits(&[b, c], seed);
    let classes = class_rows(&[b], c, seed ^ 0x5eed).iter().copied().collect();
    (x, classes)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn one_to_four_uneven_shards_match_the_unsharded_loss() {
    let ctx = ctx();
    for (c, widths) in SPLITS {
        let b = if c > 5000 { 3 } else { 37 };
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let what = format!("C = {c}, widths {widths:?}, {}", reduction.name());
            let (x, classes) = batch(b, c, &what);
            let mut case = Case::new(default_ce(), &x, &classes, widths);
            case.reduction = reduction;
            case.g = 0.75;
            check_case(ctx, &case, &what);
        }
    }
}

/// The options, one at a time and all together, with every reduction and i32 and i64 ids.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn options_match_the_unsharded_loss() {
    let ctx = ctx();
    let ce = Loss::softmax_cross_entropy;
    let options: [(&str, Loss, bool); 7] = [
        ("plain", default_ce(), false),
        (
            "smoothing",
            ce().label_smoothing(0.1).build().unwrap(),
            false,
        ),
        ("z-loss", ce().z_loss(1e-3).build().unwrap(), false),
        ("softcap", ce().softcap(5.0).build().unwrap(), false),
        ("ignore", ce().ignore_index(-1).build().unwrap(), false),
        ("weights", default_ce(), true),
        (
            "all",
            ce().label_smoothing(0.2)
                .z_loss(1e-2)
                .softcap(6.0)
                .ignore_index(-1)
                .build()
                .unwrap(),
            true,
        ),
    ];
    for (name, loss, weighted) in options {
        for (c, widths) in [
            (1000usize, &[255usize, 257, 488][..]),
            (5000, &[1, 257, 4096, 646]),
        ] {
            let b = 37;
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                for class_type in [ClassType::I32, ClassType::I64] {
                    let what = format!(
                        "{name}, C = {c}, {widths:?}, {}, {}",
                        reduction.name(),
                        class_type.name()
                    );
                    let (x, mut classes) = batch(b, c, &what);
                    // Ignored rows (the default −100 and −1 where the loss says so).
                    let ignore = loss.ignore_index().expect("softmax-ce");
                    for r in [0, 5, 17, 36] {
                        classes[r] = ignore;
                    }
                    let w: Vec<f32> = (0..c).map(|j| 0.25 + (j % 7) as f32 * 0.5).collect();
                    let mut case = Case::new(loss, &x, &classes, widths);
                    case.reduction = reduction;
                    case.class_type = class_type;
                    case.g = 1.5;
                    if weighted {
                        case.weight = Some(&w);
                    }
                    let run = check_case(ctx, &case, &what);
                    assert_eq!(run.out.counted, b - 4, "{what}: counted");
                    assert_eq!(run.out_of_range, None, "{what}");
                }
            }
        }
    }
}

/// Every row ignored: value 0 and gradient 0 for the mean (D = 0), as the unsharded loss.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn all_rows_ignored_give_zero() {
    let ctx = ctx();
    let (x, _) = batch(5, 300, "all ignored");
    let classes = vec![-100i64; 5];
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let mut case = Case::new(default_ce(), &x, &classes, &[1, 299]);
        case.reduction = reduction;
        let run = check_case(ctx, &case, &format!("all ignored, {}", reduction.name()));
        assert_eq!(run.out.value, Some(0.0));
        assert_eq!(run.out.counted, 0);
    }
}

/// NaN and ±∞ logits (common's `infinite_logit_rows`): the rows NaN where the unsharded loss
/// has them NaN, +∞ losses where it has them, the same pattern with smoothing; with a soft
/// cap ±∞ become ±c and every row is finite except the NaN one.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn nan_and_infinite_rows_as_the_unsharded_loss() {
    let ctx = ctx();
    let (x, classes, _) = infinite_logit_rows(seed_for("sharded infinite rows"));
    let classes: Vec<i64> = classes.iter().copied().collect();
    let ce = Loss::softmax_cross_entropy;
    for (widths, smoothing) in [
        (&[6usize][..], false),
        (&[1, 2, 3][..], false),
        (&[2, 4][..], true),
    ] {
        let loss = if smoothing {
            ce().label_smoothing(0.1).build().unwrap()
        } else {
            default_ce()
        };
        let mut case = Case::new(loss, &x, &classes, widths);
        case.reduction = Reduction::None;
        let what = format!("infinite rows, {widths:?}, smoothing {smoothing}");
        let run = check_case(ctx, &case, &what);
        assert_infinite_logit_pattern(&run.out, smoothing, &what);
    }
    let capped = ce().softcap(4.0).build().unwrap();
    let mut case = Case::new(capped, &x, &classes, &[3, 1, 2]);
    case.reduction = Reduction::None;
    let run = check_case(ctx, &case, "infinite rows, capped");
    let losses = run.out.losses.as_ref().expect("losses");
    for r in 0..8 {
        assert_eq!(losses[r].is_nan(), r == 7, "capped row {r}: {}", losses[r]);
    }
}

/// Two runs of the same inputs give the same bits (value and every gradient element).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn two_runs_are_bit_identical() {
    let ctx = ctx();
    let (x, classes) = batch(4, 32000, "determinism");
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .build()
        .unwrap();
    let case = Case::new(loss, &x, &classes, &[1, 255, 31000, 744]);
    let mut shards = plan_shards(ctx, &case);
    run_steps(ctx, &mut shards);
    let a = collect(ctx, &case, &shards);
    let allocations: Vec<usize> = shards.iter().map(|s| s.plan.allocations()).collect();
    run_steps(ctx, &mut shards);
    let b = collect(ctx, &case, &shards);
    let bits = |r: &ShardRun| -> Vec<u32> {
        r.outputs
            .iter()
            .flatten()
            .chain(r.out.grad.as_ref().expect("grad").iter())
            .map(|v| v.to_bits())
            .collect()
    };
    assert_eq!(bits(&a), bits(&b), "two runs differ");
    let again: Vec<usize> = shards.iter().map(|s| s.plan.allocations()).collect();
    assert_eq!(allocations, again, "the second run allocated");
}

/// More rows than one dispatch's workgroups cover (4096 workgroups of 256 one-lane rows):
/// the row loop takes two trips.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn rows_beyond_one_dispatch_take_the_row_loop() {
    let ctx = ctx();
    let b = 4096 * 256 + 3;
    let (x, classes) = batch(b, 4, "many rows");
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .build()
        .unwrap();
    let mut case = Case::new(loss, &x, &classes, &[1, 3]);
    case.reduction = Reduction::Sum;
    check_case(ctx, &case, "many rows");
}

/// 16-bit logits: bf16 with the gradient as f32 and as bf16, f16 where the device has it.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn half_storage_matches_the_reference() {
    let ctx = ctx();
    let (x, classes) = batch(9, 2000, "bf16");
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .build()
        .unwrap();
    let mut dtypes = vec![(Dtype::Bf16, Dtype::F32), (Dtype::Bf16, Dtype::Bf16)];
    if ctx.supports_f16() {
        dtypes.push((Dtype::F16, Dtype::F32));
        dtypes.push((Dtype::F16, Dtype::F16));
    }
    for (dtype, grad_dtype) in dtypes {
        let mut case = Case::new(loss, &x, &classes, &[2, 256, 1742]);
        case.dtype = dtype;
        case.grad_dtype = grad_dtype;
        check_case(
            ctx,
            &case,
            &format!("{} logits, {} gradient", dtype.name(), grad_dtype.name()),
        );
    }
}

/// Class ids outside `[0, C)` (C itself, −5, and an i64 of 2^32 + 1) give loss 0 and
/// gradient 0 and are reported by the status, as the resident loss does; the other rows are
/// the reference's with those rows ignored.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn out_of_range_class_ids_are_reported() {
    let ctx = ctx();
    let (b, c) = (12, 700);
    let (x, mut classes) = batch(b, c, "out of range");
    classes[3] = c as i64;
    classes[7] = -5;
    classes[9] = (1i64 << 32) + 1;
    let mut case = Case::new(default_ce(), &x, &classes, &[300, 1, 399]);
    case.reduction = Reduction::None;
    let run = run_sharded(ctx, &case);
    assert_eq!(run.out_of_range, Some(3));
    assert_eq!(run.out.counted, b - 3);
    let losses = run.out.losses.as_ref().expect("losses");
    let grad = run.out.grad.as_ref().expect("grad");
    for r in [3, 7, 9] {
        assert_eq!(losses[r], 0.0, "row {r}");
        assert!(
            grad.index_axis(Axis(0), r).iter().all(|&g| g == 0.0),
            "row {r}"
        );
    }
    let mut ignored = classes.clone();
    for r in [3, 7, 9] {
        ignored[r] = -100;
    }
    let as_ignored = Case {
        classes: &ignored,
        ..case.clone()
    };
    check_case(ctx, &as_ignored, "out of range as ignored");
    let again = run_sharded(ctx, &as_ignored);
    assert_eq!(again.out.losses, run.out.losses);
    assert_eq!(again.out.grad, run.out.grad);
}

// ---- errors: each refused with a typed error before anything is recorded ----

fn plan_err(spec: ShardSpec) -> Error {
    ctx()
        .sharded(&default_ce(), spec)
        .expect_err("the plan must be refused")
}

fn option_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidOption { option, .. } => option,
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn another_loss_is_refused() {
    let e = ctx()
        .sharded(&Loss::Mse, ShardSpec::new(4, 10, 0, 10))
        .unwrap_err();
    assert_eq!(option_of(&e), "loss", "{e}");
    let e = ctx()
        .sharded(
            &Loss::distill().build().unwrap(),
            ShardSpec::new(4, 10, 0, 10),
        )
        .unwrap_err();
    assert_eq!(option_of(&e), "loss", "{e}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn zero_width_is_refused() {
    assert_eq!(option_of(&plan_err(ShardSpec::new(4, 0, 0, 10))), "width");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn zero_rows_are_empty() {
    let e = plan_err(ShardSpec::new(0, 5, 0, 10));
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn a_shard_past_the_vocabulary_is_refused() {
    assert_eq!(option_of(&plan_err(ShardSpec::new(4, 6, 5, 10))), "offset");
    assert_eq!(
        option_of(&plan_err(ShardSpec::new(4, 6, usize::MAX, 10))),
        "offset"
    );
    // The last shard exactly at the end is fine.
    ctx()
        .sharded(&default_ce(), ShardSpec::new(4, 5, 5, 10))
        .expect("fits");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bad_upstream_and_storage_are_refused() {
    let spec = || ShardSpec::new(4, 6, 0, 10);
    assert_eq!(option_of(&plan_err(spec().upstream(f32::NAN))), "upstream");
    assert_eq!(
        option_of(&plan_err(spec().dtype(Dtype::F32).grad_dtype(Dtype::Bf16))),
        "grad_dtype"
    );
    assert_eq!(
        option_of(&plan_err(ShardSpec::new(4, 7, 0, 10).dtype(Dtype::Bf16))),
        "dtype"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn shards_beyond_the_loop_bounds_are_refused() {
    // A lane would loop more than 16 384 times over a row of 4 194 305 columns.
    let e = plan_err(ShardSpec::new(1, 4_194_305, 0, 4_194_305));
    assert!(matches!(e, Error::DeviceLimit { .. }), "{e:?}");
    let e = plan_err(ShardSpec::new(4_194_305, 1, 0, 4));
    assert!(matches!(e, Error::DeviceLimit { .. }), "{e:?}");
    let e = plan_err(ShardSpec::new(1, 1, 0, 1 << 31));
    assert!(matches!(e, Error::DeviceLimit { .. }), "{e:?}");
}

/// A shard's buffers for the error tests (`[4, 6]` of a vocabulary of 10, i64 ids).
struct Bufs {
    logits: wgpu::Buffer,
    classes: wgpu::Buffer,
    weight: wgpu::Buffer,
    maxima: wgpu::Buffer,
    sums: wgpu::Buffer,
    grad: wgpu::Buffer,
    output: wgpu::Buffer,
}

fn error_bufs(ctx: &GpuContext) -> Bufs {
    Bufs {
        logits: zeros(ctx, "logits", 24),
        classes: upload(ctx, "classes", &[1i64, 2, 7, -100]),
        weight: zeros(ctx, "weight", 6),
        maxima: zeros(ctx, "maxima", 4),
        sums: zeros(ctx, "sums", 4 * SHARD_SUMS),
        grad: zeros(ctx, "grad", 24),
        output: zeros(ctx, "output", 1),
    }
}

/// Every step refuses `bufs` with a `Buffer` error naming `what`, and records nothing.
fn assert_refused(ctx: &GpuContext, plan: &mut ShardedLoss, bufs: &ShardBuffers<'_>, what: &str) {
    let before = plan.allocations();
    for step in 1..=3 {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let r = match step {
            1 => plan.record_max(ctx, &mut encoder, bufs),
            2 => plan.record_sums(ctx, &mut encoder, bufs),
            _ => plan.record_loss(ctx, &mut encoder, bufs),
        };
        match r {
            Err(Error::Buffer { what: got, reason }) => {
                assert_eq!(got, what, "step {step}: {reason}")
            }
            other => panic!("step {step}: expected a Buffer error on {what}, got {other:?}"),
        }
        ctx.queue().submit([encoder.finish()]); // nothing was recorded: valid and empty
    }
    assert_eq!(plan.allocations(), before, "{what}: bind groups were made");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn buffers_too_small_or_without_storage_are_refused() {
    let ctx = ctx();
    let mut plan = ctx
        .sharded(&default_ce(), ShardSpec::new(4, 6, 0, 10))
        .unwrap();
    let b = error_bufs(ctx);
    let ok = ShardBuffers::new(
        &b.logits, &b.classes, &b.maxima, &b.sums, &b.grad, &b.output,
    );
    let small = zeros(ctx, "small", 3);
    let i32_classes = upload(ctx, "i32 classes", &[1i32, 2, 7, -100]);
    let no_storage = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("no storage"),
        size: 4096,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let cases: [(&str, ShardBuffers<'_>); 9] = [
        (
            "logits",
            ShardBuffers {
                logits: (&small).into(),
                ..ok
            },
        ),
        // i32 ids where i64 were planned: half the bytes.
        (
            "classes",
            ShardBuffers {
                classes: (&i32_classes).into(),
                ..ok
            },
        ),
        (
            "maxima",
            ShardBuffers {
                maxima: (&small).into(),
                ..ok
            },
        ),
        (
            "sums",
            ShardBuffers {
                sums: (&b.maxima).into(),
                ..ok
            },
        ),
        (
            "grad",
            ShardBuffers {
                grad: (&small).into(),
                ..ok
            },
        ),
        (
            "grad",
            ShardBuffers {
                grad: (&no_storage).into(),
                ..ok
            },
        ),
        ("weight", ok.weight(&b.weight)), // given, not planned
        (
            "output",
            ShardBuffers {
                output: GpuArray::at(&b.output, 4),
                ..ok
            },
        ), // misaligned
        (
            "logits",
            ShardBuffers {
                logits: (&no_storage).into(),
                ..ok
            },
        ),
    ];
    for (what, bufs) in cases {
        assert_refused(ctx, &mut plan, &bufs, what);
    }
    // The classes error says how they were planned.
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let e = plan
        .record_max(
            ctx,
            &mut encoder,
            &ShardBuffers {
                classes: (&i32_classes).into(),
                ..ok
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("i64"), "{e}");
    // A weighted plan needs its weight.
    let mut weighted = ctx
        .sharded(&default_ce(), ShardSpec::new(4, 6, 0, 10).weight())
        .unwrap();
    assert_refused(ctx, &mut weighted, &ok, "weight");
    let small_weight = zeros(ctx, "small weight", 5);
    assert_refused(ctx, &mut weighted, &ok.weight(&small_weight), "weight");
    // And the good buffers work.
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    plan.record_max(ctx, &mut encoder, &ok)
        .expect("valid buffers");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn aliasing_buffers_are_refused() {
    let ctx = ctx();
    let mut plan = ctx
        .sharded(
            &default_ce(),
            ShardSpec::new(4, 6, 0, 10).reduction(Reduction::None),
        )
        .unwrap();
    let b = error_bufs(ctx);
    let output = zeros(ctx, "losses", 4);
    let ok = ShardBuffers::new(&b.logits, &b.classes, &b.maxima, &b.sums, &b.grad, &output);
    let big = zeros(ctx, "big", 1 << 14);
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let cases: [(&str, ShardBuffers<'_>); 6] = [
        // maxima written by step 1 while the logits are read
        (
            "maxima",
            ShardBuffers {
                maxima: (&b.logits).into(),
                ..ok
            },
        ),
        // sums written by step 2 while the maxima are read, even at another offset
        (
            "sums",
            ShardBuffers {
                maxima: GpuArray::at(&big, 0),
                sums: GpuArray::at(&big, align),
                ..ok
            },
        ),
        // the gradient over the logits
        (
            "grad",
            ShardBuffers {
                grad: (&b.logits).into(),
                ..ok
            },
        ),
        // the output over the sums
        (
            "output",
            ShardBuffers {
                output: (&b.sums).into(),
                ..ok
            },
        ),
        // the output in the class ids' buffer
        (
            "output",
            ShardBuffers {
                output: (&b.classes).into(),
                ..ok
            },
        ),
        // gradient and output overlapping in one buffer
        (
            "output",
            ShardBuffers {
                grad: GpuArray::at(&big, 0),
                output: GpuArray::at(&big, 0),
                ..ok
            },
        ),
    ];
    for (what, bufs) in cases {
        assert_refused(ctx, &mut plan, &bufs, what);
    }
    // Gradient and output side by side in one buffer are fine.
    let side = ShardBuffers {
        grad: GpuArray::at(&big, 0),
        output: GpuArray::at(&big, align.max(96).next_multiple_of(align)),
        ..ok
    };
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    plan.record_loss(ctx, &mut encoder, &side)
        .expect("disjoint outputs");
}
