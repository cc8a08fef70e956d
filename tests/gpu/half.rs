//! 16-bit storage (`Dtype::F16`, `Dtype::Bf16`) through the GPU-resident API: every loss
//! against the f64 reference run on the same rounded inputs, odd lengths and odd rows (a row
//! boundary inside a word), the padding half left alone, bf16 rounding bit for bit, and the
//! errors.
//!
//! Tolerances. The inputs are exactly representable (rounded on the host with `half`), and the
//! kernels widen them to f32, so the value and the per-row/per-element losses (always f32)
//! carry the f32 path's own tolerances (`common::Tolerance`). A 16-bit gradient is the f32
//! gradient rounded once more: within half an ulp of the type by itself, and within one ulp
//! once the f32 error may move the value across a rounding boundary or the device's f16
//! conversion truncates: `2^-10 |g|` for f16 (11 significant bits), `2^-7 |g|` for bf16 (8),
//! plus the f32 tolerance, plus the type's smallest normal (`2^-14` for f16; a device may
//! flush subnormals when it converts).

use ndarray::{ArrayD, IxDyn};
use wgpu::util::DeviceExt;
use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentLoss, ResidentSpec, ValueReader};
use wgpu_loss::{
    ClassType, ContextOptions, Dtype, Error, GpuContext, Loss, LossArgs, LossOutput, Reduction,
    reference, synthetic,
};

use crate::common::{
    RowKind, RowTarget, assert_close_within, ctx, elementwise_tolerance, finite_max, row_tolerance,
    seed_for,
};

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

const HALVES: [Dtype; 2] = [Dtype::F16, Dtype::Bf16];

fn words_buffer(ctx: &GpuContext, label: &str, words: &[u32]) -> wgpu::Buffer {
    let words = if words.is_empty() { &[0u32][..] } else { words };
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(words),
            usage: USAGE,
        })
}

fn read_words(ctx: &GpuContext, buf: &wgpu::Buffer, words: usize) -> Vec<u32> {
    ValueReader::new(ctx.device(), words)
        .read_blocking(ctx.device(), ctx.queue(), GpuArray::from(buf))
        .expect("read back")
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Relative size of one ulp, and the smallest normal, of a 16-bit type.
fn ulp_and_floor(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::F16 => (2f64.powi(-10), 2f64.powi(-14)),
        Dtype::Bf16 => (2f64.powi(-7), f64::from(f32::MIN_POSITIVE)),
        Dtype::F32 => (0.0, 0.0),
        other => panic!("a storage type this test does not know: {other:?}"),
    }
}

/// What one resident step gave: the output, and the gradient's words.
struct Step {
    out: Vec<f32>,
    grad_words: Vec<u32>,
}

/// Packs `pred` and a dense target in `dtype`, records one step of `r`, reads back the output
/// and the gradient words (the gradient buffer starts filled with `sentinel`).
fn run_step(
    ctx: &GpuContext,
    r: &mut ResidentLoss,
    pred: &[f32],
    target: &[u32],
    sentinel: u32,
) -> Step {
    let spec = r.spec().clone();
    let n = pred.len();
    let pred_b = words_buffer(ctx, "pred", &spec.dtype.pack(pred));
    let target_b = words_buffer(ctx, "target", target);
    let grad_words = spec.grad_dtype.bytes(n) as usize / 4;
    let grad_b = words_buffer(ctx, "grad", &vec![sentinel; grad_words]);
    let out_b = words_buffer(ctx, "out", &vec![0; r.output_len()]);
    let mut bufs = ResidentBuffers::new(&pred_b, &target_b, &out_b);
    if spec.want_grad {
        bufs = bufs.grad(&grad_b);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(ctx, &mut encoder, &bufs).expect("record");
    ctx.queue().submit([encoder.finish()]);
    Step {
        out: read_words(ctx, &out_b, r.output_len())
            .into_iter()
            .map(f32::from_bits)
            .collect(),
        grad_words: read_words(ctx, &grad_b, grad_words),
    }
}

/// Asserts the gradient `gpu` (widened from `dtype`) matches the reference `cpu` within
/// `f32_tol` plus one ulp of `dtype` plus its smallest normal (module docs).
fn assert_grad_within(gpu: &[f32], cpu: &ArrayD<f64>, dtype: Dtype, f32_tol: f64, what: &str) {
    let (ulp, floor) = ulp_and_floor(dtype);
    for (i, (&g, &c)) in gpu.iter().zip(cpu.iter()).enumerate() {
        let g = f64::from(g);
        let rounded = f64::from(dtype.round(c as f32));
        let ok = if c.is_nan() {
            g.is_nan()
        } else if rounded.is_infinite() {
            g == rounded
        } else {
            (g - c).abs() <= f32_tol + ulp * c.abs() + floor
        };
        assert!(
            ok,
            "{what}: gradient element {i}: GPU {g:e}, reference {c:e}, |diff| {:e} > {:e}",
            (g - c).abs(),
            f32_tol + ulp * c.abs() + floor
        );
    }
}

/// One step of `loss` on `shape` with `dtype` inputs and a `grad` gradient, against the
/// reference on the rounded inputs.
#[allow(clippy::too_many_arguments)]
fn check_case(
    ctx: &GpuContext,
    loss: &Loss,
    shape: &[usize],
    pred: &ArrayD<f32>,
    target: &RowTarget,
    dtype: Dtype,
    grad: Dtype,
    reduction: Reduction,
    what: &str,
) {
    let round = |a: &ArrayD<f32>| a.mapv(|v| dtype.round(v));
    let pred_r = round(pred);
    let (target_words, target_r): (Vec<u32>, Option<ArrayD<f32>>) = match target {
        RowTarget::Dense(t) => {
            let tr = round(t);
            (
                dtype.pack(tr.as_slice().expect("standard layout")),
                Some(tr),
            )
        }
        RowTarget::Classes(k) => (k.iter().map(|&c| c as i32 as u32).collect(), None),
    };
    let mut spec = ResidentSpec::new(shape)
        .dtype(dtype)
        .grad_dtype(grad)
        .reduction(reduction);
    if matches!(target, RowTarget::Classes(_)) {
        spec = spec.classes(ClassType::I32);
    }
    let mut r = ctx
        .resident(loss, spec)
        .unwrap_or_else(|e| panic!("{what}: plan: {e}"));
    let step = run_step(
        ctx,
        &mut r,
        pred_r.as_slice().expect("standard layout"),
        &target_words,
        0xdead_beef,
    );
    let args = match (target, &target_r) {
        (RowTarget::Classes(k), _) => LossArgs::new(pred_r.view(), k.view()),
        (_, Some(t)) => LossArgs::new(pred_r.view(), t.view()),
        _ => unreachable!("dense targets are rounded"),
    }
    .reduction(reduction);
    let cpu = reference::compute(loss, &args).unwrap_or_else(|e| panic!("{what}: ref: {e}"));
    let tol = if loss.is_row_wise() {
        row_tolerance(crate::common::RowLanes::of(ctx), loss, &args)
    } else {
        elementwise_tolerance(loss, &args)
    };
    let none = reduction == Reduction::None;
    let rows_shape: Vec<usize> = if loss.is_row_wise() {
        shape[..shape.len() - 1].to_vec()
    } else {
        shape.to_vec()
    };
    let gpu = LossOutput::new(
        (!none).then(|| step.out[0]),
        none.then(|| ArrayD::from_shape_vec(IxDyn(&rows_shape), step.out.clone()).expect("rows")),
        None,
        cpu.counted,
    );
    let mut cpu_no_grad = cpu.clone();
    cpu_no_grad.grad = None;
    assert_close_within(&gpu, &cpu_no_grad, tol, what);

    let n = pred.len();
    let g = grad.unpack(&step.grad_words, n);
    let cpu_grad = cpu.grad.as_ref().expect("reference gradient");
    let f32_tol = tol.array_rtol * finite_max(cpu_grad).max(tol.grad_scale.unwrap_or(0.0));
    assert_grad_within(&g, cpu_grad, grad, f32_tol, what);
    // Odd n: the last word's other half is padding, left as it was.
    if grad != Dtype::F32 && n % 2 == 1 {
        let last = step.grad_words[n / 2];
        assert_eq!(
            last >> 16,
            0xdead,
            "{what}: the gradient's padding half was written"
        );
    }
}

fn elementwise_batch(loss: &Loss, n: usize, seed: u64) -> (ArrayD<f32>, RowTarget) {
    let b = synthetic::batch(loss, &[n], seed);
    // BCE: probabilities kept away from 0 and 1 even after bf16 rounding (p = 1 would give
    // gradients of 1e12 that dwarf the others' tolerance).
    let pred = if *loss == Loss::Bce {
        synthetic::uniform(&[n], 0.02, 0.98, seed ^ 1)
    } else {
        b.pred
    };
    (pred, RowTarget::Dense(b.target))
}

/// Every elementwise loss, f16 and bf16, gradient in the input type or f32, at lengths around
/// the workgroup size and odd ones (a padding half), every reduction.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn elementwise_losses_in_16_bits_match_the_reference() {
    let ctx = ctx();
    // Lengths of a multiple of 8 (8, 256, 264, 32 776) are read a vec4 of words at a time
    // (io_f16x8.wgsl, io_bf16x8.wgsl), the others a word at a time.
    let shapes: [&[usize]; 13] = [
        &[1],
        &[2],
        &[3],
        &[8],
        &[255],
        &[256],
        &[257],
        &[264],
        &[511],
        &[513],
        &[4097],
        &[32_776],
        &[100_001],
    ];
    for loss in Loss::all_default().iter().filter(|l| !l.is_row_wise()) {
        each_storage(
            loss.name(),
            &shapes,
            |shape, dtype, grad, reduction, what| {
                let (pred, target) = elementwise_batch(loss, shape[0], seed_for(what));
                check_case(
                    ctx, loss, shape, &pred, &target, dtype, grad, reduction, what,
                );
            },
        );
    }
}

/// Every row-wise loss (softmax cross entropy with probabilities and with classes), f16 and
/// bf16, on odd and even row lengths: rows sharing a word with their neighbours (odd C, so
/// half the rows start mid-word), rows held in registers and rows longer than that (C =
/// 4097 with 256 lanes of 16), a thousand 3-element rows, and rows of a multiple of 8 (C = 8,
/// 256, 1000, 4104), which software adapters read a vec4 of words at a time.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn row_losses_in_16_bits_match_the_reference() {
    row_losses_in_16_bits(ctx());
}

/// [`row_losses_in_16_bits_match_the_reference`]'s cases on `ctx` (also run with split rows,
/// tests/gpu/split.rs).
pub fn row_losses_in_16_bits(ctx: &GpuContext) {
    let shapes: [&[usize]; 11] = [
        &[1, 1],
        &[3, 7],
        &[2, 8],
        &[5, 33],
        &[4, 256],
        &[3, 257],
        &[3, 4097],
        &[3, 4104],
        &[5, 1000],
        &[9, 1001],
        &[1000, 3],
    ];
    for kind in [
        RowKind::Cce,
        RowKind::SoftmaxProbs,
        RowKind::SoftmaxClasses,
        RowKind::Cosine,
    ] {
        each_storage(
            kind.name(),
            &shapes,
            |shape, dtype, grad, reduction, what| {
                let b = kind.batch(shape, seed_for(what));
                check_case(
                    ctx, &b.loss, shape, &b.pred, &b.target, dtype, grad, reduction, what,
                );
            },
        );
    }
}

/// Runs `case(shape, dtype, grad dtype, reduction, description)` for every shape, both 16-bit
/// types and both gradient storages, cycling through the reductions.
fn each_storage(
    name: &str,
    shapes: &[&[usize]],
    mut case: impl FnMut(&[usize], Dtype, Dtype, Reduction, &str),
) {
    let reductions = [Reduction::Mean, Reduction::Sum, Reduction::None];
    let mut k = 0;
    for dtype in HALVES {
        for grad in [dtype, Dtype::F32] {
            for &shape in shapes {
                let reduction = reductions[k % 3];
                k += 1;
                let what = format!(
                    "{name}/{}/{} grad/{shape:?}/{}",
                    dtype.name(),
                    grad.name(),
                    reduction.name()
                );
                case(shape, dtype, grad, reduction, &what);
            }
        }
    }
}

/// Distillation and JSD (two logit tensors, both stored in 16 bits), f16 and bf16, gradient
/// in the input type or f32: odd rows (a row starting mid-word), rows held in registers, rows
/// longer than that, and rows of a multiple of 8 (read a vec4 of words at a time on software
/// adapters).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn distill_and_jsd_in_16_bits_match_the_reference() {
    distill_and_jsd_in_16_bits(ctx());
}

/// [`distill_and_jsd_in_16_bits_match_the_reference`]'s cases on `ctx` (also run with split
/// rows, tests/gpu/split.rs).
pub fn distill_and_jsd_in_16_bits(ctx: &GpuContext) {
    let losses = [
        Loss::distill().temperature(2.0).build().expect("distill"),
        Loss::jsd().beta(0.3).build().expect("jsd"),
    ];
    let shapes: [&[usize]; 5] = [&[5, 33], &[4, 256], &[3, 4097], &[3, 4104], &[9, 1000]];
    for loss in &losses {
        each_storage(
            loss.name(),
            &shapes,
            |shape, dtype, grad, reduction, what| {
                let b = synthetic::batch(loss, shape, seed_for(what));
                let target = RowTarget::Dense(b.target);
                check_case(
                    ctx, loss, shape, &b.pred, &target, dtype, grad, reduction, what,
                );
            },
        );
    }
}

/// Soft-capped softmax cross entropy (c = 5, with smoothing and z-loss) in 16 bits: the cap is
/// applied to the 16-bit logits as read, class and probability targets, odd rows.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softcap_in_16_bits_matches_the_reference() {
    let ctx = ctx();
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .softcap(5.0)
        .build()
        .unwrap();
    let shapes: [&[usize]; 3] = [&[5, 33], &[3, 4097], &[9, 1001]];
    for kind in [RowKind::SoftmaxProbs, RowKind::SoftmaxClasses] {
        for dtype in HALVES {
            for grad in [dtype, Dtype::F32] {
                for (k, shape) in shapes.into_iter().enumerate() {
                    let reduction = [Reduction::Mean, Reduction::Sum, Reduction::None][k];
                    let what = format!(
                        "softcap/{}/{}/{} grad/{shape:?}/{}",
                        kind.name(),
                        dtype.name(),
                        grad.name(),
                        reduction.name()
                    );
                    let b = kind.batch(shape, seed_for(&what));
                    check_case(
                        ctx, &loss, shape, &b.pred, &b.target, dtype, grad, reduction, &what,
                    );
                }
            }
        }
    }
}

/// Rows that share words are written by two invocations (each its own half, atomically): the
/// same inputs give the same gradient words on every run.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn shared_words_are_written_deterministically() {
    let ctx = ctx();
    for dtype in HALVES {
        let shape = [4001usize, 5];
        let b = RowKind::SoftmaxProbs.batch(&shape, seed_for(&format!("shared/{}", dtype.name())));
        let RowTarget::Dense(t) = &b.target else {
            unreachable!("probability targets")
        };
        let target = dtype.pack(t.as_slice().expect("standard layout"));
        let pred: Vec<f32> = b.pred.iter().copied().collect();
        let mut r = ctx
            .resident(&b.loss, ResidentSpec::new(&shape).dtype(dtype))
            .expect("plan");
        let first = run_step(ctx, &mut r, &pred, &target, 0);
        for _ in 0..3 {
            let again = run_step(ctx, &mut r, &pred, &target, 0);
            assert_eq!(
                again.grad_words,
                first.grad_words,
                "{}: gradient words differ between runs",
                dtype.name()
            );
            assert_eq!(again.out[0].to_bits(), first.out[0].to_bits());
        }
    }
}

/// bf16 rounding is the kernels' own integer code: MSE with `Sum` writes 2 (p − t) rounded to
/// nearest even, which must equal `half`'s rounding of the same f32 value bit for bit (f32
/// subtraction is correctly rounded on every Vulkan device). The inputs include ties, values
/// that round past the largest bf16 to ±∞, ±∞ and NaN; the length is odd.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bf16_gradient_is_rounded_to_nearest_even_bit_for_bit() {
    let ctx = ctx();
    // Odd: a word at a time, the last word's upper half padding; a multiple of 8: a vec4 of
    // words at a time (io_bf16x8.wgsl, grad_packed_x8.wgsl).
    for n in [4099, 4104] {
        bf16_rounding_case(ctx, n);
    }
}

fn bf16_rounding_case(ctx: &GpuContext, n: usize) {
    let mut pred: Vec<f32> =
        synthetic::uniform(&[n], -4.0, 4.0, seed_for(&format!("bf16-bits/p/{n}")))
            .iter()
            .map(|&v| Dtype::Bf16.round(v))
            .collect();
    let mut target: Vec<f32> =
        synthetic::uniform(&[n], -4.0, 4.0, seed_for(&format!("bf16-bits/t/{n}")))
            .iter()
            .map(|&v| Dtype::Bf16.round(v))
            .collect();
    // Ties: 2 (p − t) = 1 + 2^-8 (between bf16 1 and 1 + 2^-7; even is 1) and 1 + 3·2^-8.
    pred[0] = 0.5 + 2f32.powi(-9);
    target[0] = 0.0;
    pred[1] = 0.5 + 3.0 * 2f32.powi(-9);
    target[1] = 0.0;
    // Past the largest bf16 (3.3895e38): 2 (p − t) = 3.4e38 is finite in f32, ∞ in bf16.
    pred[2] = Dtype::Bf16.round(1.7e38);
    target[2] = 0.0;
    pred[3] = -Dtype::Bf16.round(1.7e38);
    target[3] = 0.0;
    pred[4] = f32::INFINITY;
    pred[5] = f32::NAN;
    let target_words = Dtype::Bf16.pack(&target);
    let mut r = ctx
        .resident(
            &Loss::Mse,
            ResidentSpec::new(&[n])
                .dtype(Dtype::Bf16)
                .reduction(Reduction::None),
        )
        .expect("plan");
    let step = run_step(ctx, &mut r, &pred, &target_words, 0xffff_ffff);
    for i in 0..n {
        let want = half::bf16::from_f32(2.0 * (pred[i] - target[i])).to_bits();
        let got = (step.grad_words[i / 2] >> (16 * (i % 2))) as u16;
        if i == 5 {
            assert_eq!(got & 0x7fc0, 0x7fc0, "NaN stays a quiet NaN: {got:#06x}");
            continue;
        }
        assert_eq!(
            got,
            want,
            "n = {n}, element {i}: 2({:e} − {:e}) = {:e}: GPU bits {got:#06x}, RNE {want:#06x}",
            pred[i],
            target[i],
            2.0 * (pred[i] - target[i])
        );
    }
    assert_eq!(
        step.grad_words[0] & 0xffff,
        0x3f80,
        "a tie rounds to even (1.0)"
    );
    assert_eq!(
        step.grad_words[2] & 0xffff,
        0x7f80,
        "past the largest bf16: +inf"
    );
    if n % 2 == 1 {
        assert_eq!(
            step.grad_words[n / 2] >> 16,
            0xffff,
            "the padding half is kept"
        );
    }
}

/// f16's specials are written explicitly (WGSL leaves them to the device): NaN → NaN,
/// beyond 65520 → ±∞, 65504 stays, and ordinary values agree with `half` within one ulp.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn f16_gradient_specials_and_range() {
    let ctx = ctx();
    // MSE with Sum: the gradient is 2 (p − t).
    let cases: [(f32, f32); 7] = [
        (32752.0, 0.0),  // 65504, the largest f16
        (32768.0, 0.0),  // 65536 → +∞
        (-40000.0, 0.0), // → −∞
        (f32::NAN, 0.0), // NaN
        (0.25, -0.125),  // 0.75, exact
        (1e-3, 0.0),     // 0.002, rounded
        (3e-5, 0.0),     // 6e-5, subnormal in f16
    ];
    let pred: Vec<f32> = cases.iter().map(|c| Dtype::F16.round(c.0)).collect();
    let target: Vec<f32> = cases.iter().map(|c| c.1).collect();
    let mut r = ctx
        .resident(
            &Loss::Mse,
            ResidentSpec::new(&[cases.len()])
                .dtype(Dtype::F16)
                .reduction(Reduction::Sum),
        )
        .expect("plan");
    let step = run_step(ctx, &mut r, &pred, &Dtype::F16.pack(&target), 0);
    let g = Dtype::F16.unpack(&step.grad_words, cases.len());
    assert_eq!(g[0], 65504.0);
    assert_eq!(g[1], f32::INFINITY);
    assert_eq!(g[2], f32::NEG_INFINITY);
    assert!(g[3].is_nan());
    assert_eq!(g[4], 0.75);
    let want = 2.0 * f64::from(pred[5]);
    assert!(
        (f64::from(g[5]) - want).abs() <= want * 2f64.powi(-10),
        "{} vs {want}",
        g[5]
    );
    let want = 2.0 * f64::from(pred[6]);
    assert!(
        (f64::from(g[6]) - want).abs() <= 2f64.powi(-14),
        "{} vs {want}",
        g[6]
    );
    assert!(step.out[0].is_nan(), "a NaN input makes the sum NaN");
}

/// Garbage in the padding half of a prediction or target (NaN bits) is never read as data.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn padding_halves_are_not_read() {
    let ctx = ctx();
    for dtype in HALVES {
        let n = 257;
        let b = synthetic::batch(&Loss::Mse, &[n], seed_for(&format!("pad/{}", dtype.name())));
        let pred: Vec<f32> = b.pred.iter().map(|&v| dtype.round(v)).collect();
        let target: Vec<f32> = b.target.iter().map(|&v| dtype.round(v)).collect();
        let nan_half = 0x7fc0_0000u32; // a NaN in the upper half (bf16 and f16 alike)
        let mut pw = dtype.pack(&pred);
        let mut tw = dtype.pack(&target);
        *pw.last_mut().expect("words") |= nan_half;
        *tw.last_mut().expect("words") |= nan_half;
        let pred_b = words_buffer(ctx, "pred", &pw);
        let target_b = words_buffer(ctx, "target", &tw);
        let grad_b = words_buffer(ctx, "grad", &vec![0; pw.len()]);
        let out_b = words_buffer(ctx, "out", &[0]);
        let mut r = ctx
            .resident(&Loss::Mse, ResidentSpec::new(&[n]).dtype(dtype))
            .expect("plan");
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        r.record(
            ctx,
            &mut encoder,
            &ResidentBuffers::new(&pred_b, &target_b, &out_b).grad(&grad_b),
        )
        .expect("record");
        ctx.queue().submit([encoder.finish()]);
        let value = f32::from_bits(read_words(ctx, &out_b, 1)[0]);
        let p = ArrayD::from_shape_vec(IxDyn(&[n]), pred).expect("n");
        let t = ArrayD::from_shape_vec(IxDyn(&[n]), target).expect("n");
        let cpu =
            reference::compute(&Loss::Mse, &LossArgs::new(p.view(), t.view())).expect("reference");
        let want = cpu.value.expect("mean");
        assert!(
            (f64::from(value) - want).abs() <= 1e-5 * want.abs(),
            "{}: value {value} vs {want} (padding read as data?)",
            dtype.name()
        );
    }
}

/// f16 storage on a device that cannot convert f16 (Mesa's Vulkan without SHADER_F16) is
/// refused with advice; bf16 needs nothing and runs there.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn f16_without_shader_f16_is_refused_and_bf16_still_runs() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("an adapter (see tests/gpu/main.rs)");
    let info = adapter.get_info();
    let mesa = [&info.name, &info.driver, &info.driver_info]
        .iter()
        .any(|s| s.to_lowercase().contains("mesa") || s.to_lowercase().contains("llvmpipe"));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    let ctx = GpuContext::from_device(device, queue, ContextOptions::default());
    let spec = ResidentSpec::new(&[8]).dtype(Dtype::F16);
    if mesa {
        assert!(!ctx.supports_f16());
        let err = ctx.resident(&Loss::Mse, spec).expect_err("f16 refused");
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    what: "f16 storage",
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("SHADER_F16") && msg.contains("Bf16"), "{msg}");
    } else {
        eprintln!(
            "adapter {} is not Mesa's: f16 is available, nothing refused",
            info.name
        );
        assert!(ctx.supports_f16());
    }
    let mut r = ctx
        .resident(&Loss::Mse, ResidentSpec::new(&[8]).dtype(Dtype::Bf16))
        .expect("bf16 needs nothing");
    let pred = [0.5f32; 8];
    let step = run_step(&ctx, &mut r, &pred, &Dtype::Bf16.pack(&[0.25; 8]), 0);
    assert_eq!(step.out[0], 0.0625);
}

/// A gradient of a third type (neither the input's nor f32) is refused.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn grad_dtype_other_than_input_or_f32_is_refused() {
    let err = ctx()
        .resident(
            &Loss::Mse,
            ResidentSpec::new(&[8])
                .dtype(Dtype::F16)
                .grad_dtype(Dtype::Bf16),
        )
        .expect_err("refused");
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "grad_dtype",
                ..
            }
        ),
        "{err}"
    );
    let err = ctx()
        .resident(&Loss::Mse, ResidentSpec::new(&[8]).grad_dtype(Dtype::F16))
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
}

/// Buffers are sized in the planned storage: 5 bf16 elements need 12 bytes (3 words), and an
/// f32 gradient of them 20.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn buffer_sizes_follow_the_storage() {
    let ctx = ctx();
    let n = 5;
    assert_eq!(Dtype::Bf16.bytes(n), 12);
    assert_eq!(Dtype::F16.bytes(n), 12);
    assert_eq!(Dtype::F32.bytes(n), 20);
    let small = words_buffer(ctx, "small", &[0; 2]);
    let ok = words_buffer(ctx, "ok", &[0; 3]);
    let f32_grad = words_buffer(ctx, "f32 grad", &[0; 5]);
    let out = words_buffer(ctx, "out", &[0]);
    let mut r = ctx
        .resident(
            &Loss::Mse,
            ResidentSpec::new(&[n])
                .dtype(Dtype::Bf16)
                .grad_dtype(Dtype::F32),
        )
        .expect("plan");
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let err = r
        .record(
            ctx,
            &mut encoder,
            &ResidentBuffers::new(&small, &ok, &out).grad(&f32_grad),
        )
        .expect_err("a 2-word prediction is too small");
    assert!(matches!(err, Error::Buffer { what: "pred", .. }), "{err}");
    assert!(err.to_string().contains("bf16"), "{err}");
    let err = r
        .record(
            ctx,
            &mut encoder,
            &ResidentBuffers::new(&ok, &ok, &out).grad(&ok),
        )
        .expect_err("a 3-word f32 gradient is too small");
    assert!(matches!(err, Error::Buffer { what: "grad", .. }), "{err}");
    r.record(
        ctx,
        &mut encoder,
        &ResidentBuffers::new(&ok, &ok, &out).grad(&f32_grad),
    )
    .expect("the right sizes");
}

/// `Dtype::pack` and `Dtype::unpack` round-trip at odd lengths, element 2k in the low half.
#[test]
fn pack_and_unpack_round_trip() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
        for n in [0usize, 1, 2, 3, 7, 100] {
            let v: Vec<f32> = (0..n).map(|k| dtype.round(k as f32 * 0.37 - 5.0)).collect();
            let words = dtype.pack(&v);
            assert_eq!(words.len() * 4, dtype.bytes(n) as usize);
            assert_eq!(dtype.unpack(&words, n), v, "{} n={n}", dtype.name());
        }
    }
    assert_eq!(
        Dtype::Bf16.pack(&[1.0, -2.0, 0.5]),
        vec![0xc000_3f80, 0x3f00]
    );
    assert_eq!(
        Dtype::F16.pack(&[1.0, -2.0, 0.5]),
        vec![0xc000_3c00, 0x3800]
    );
}
