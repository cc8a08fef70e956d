//! The GPU-resident API (`wgpu_loss::resident`): losses recorded into the caller's encoder
//! over the caller's buffers, checked against the host path and the CPU reference.

use ndarray::{ArrayD, IxDyn};
use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentSpec, ResidentUpstream, ValueReader};
use wgpu_loss::{ClassType, Error, GpuContext, Loss, LossArgs, Reduction, Upstream, reference};

use crate::buffers::{read, upload, zeros};
use crate::common::{
    assert_close_within, class_rows, ctx, logits, prob_rows, row_tolerance, seed_for,
};

fn slice<T: Clone>(a: &ArrayD<T>) -> Vec<T> {
    a.iter().cloned().collect()
}

/// Host-side inputs of one step (the reference's view of what the buffers hold).
struct Host<'a> {
    pred: &'a ArrayD<f32>,
    /// Float targets, or class indices.
    target: wgpu_loss::Target<'a>,
    weight: &'a ArrayD<f32>,
    pos_weight: &'a ArrayD<f32>,
    upstream: &'a ArrayD<f32>,
}

/// The reference's arguments for `spec`: its reduction, weights, upstream and loss-only mode.
fn reference_args<'a>(spec: &ResidentSpec, h: &Host<'a>) -> LossArgs<'a> {
    let mut args = LossArgs::new(h.pred.view(), h.target.clone()).reduction(spec.reduction);
    if spec.weight.is_some() {
        args = args.weight(h.weight.view());
    }
    if spec.pos_weight.is_some() {
        args = args.pos_weight(h.pos_weight.view());
    }
    match spec.upstream {
        ResidentUpstream::Buffer => args = args.upstream(Upstream::Array(h.upstream.view())),
        ResidentUpstream::Scalar(s) => args = args.upstream(Upstream::Scalar(s)),
        ResidentUpstream::Ones => {}
        other => panic!("an upstream this test does not know: {other:?}"),
    }
    if !spec.want_grad {
        args = args.loss_only();
    }
    if let Some(d) = spec.divisor {
        args = args.divisor(d);
    }
    args
}

/// Uploads `h` into fresh buffers, records one step of `r` as its spec asks, submits, and
/// reads back the output (value or losses shaped `value_shape`), gradient and count.
fn resident_step(
    ctx: &GpuContext,
    r: &mut wgpu_loss::resident::ResidentLoss,
    h: &Host<'_>,
    value_shape: &[usize],
) -> wgpu_loss::LossOutput<f32> {
    let spec = r.spec().clone();
    let n = h.pred.len();
    let pred = upload(ctx, "pred", &slice(h.pred));
    let target = match &h.target {
        wgpu_loss::Target::Dense(t) => {
            upload(ctx, "target", &t.iter().copied().collect::<Vec<f32>>())
        }
        wgpu_loss::Target::ClassesI32(k) => {
            upload(ctx, "classes", &k.iter().copied().collect::<Vec<i32>>())
        }
        wgpu_loss::Target::ClassesI64(k) => {
            upload(ctx, "classes", &k.iter().copied().collect::<Vec<i64>>())
        }
        wgpu_loss::Target::ClassesU32(k) => {
            upload(ctx, "classes", &k.iter().copied().collect::<Vec<u32>>())
        }
        other => panic!("a target type this test does not upload: {}", other.dtype()),
    };
    let (weight, pos_weight, upstream) = (
        upload(ctx, "weight", &slice(h.weight)),
        upload(ctx, "pos_weight", &slice(h.pos_weight)),
        upload(ctx, "upstream", &slice(h.upstream)),
    );
    let grad = zeros(ctx, "grad", n);
    let out = zeros(ctx, "out", r.output_len());
    let mut bufs = ResidentBuffers::new(&pred, &target, &out);
    if spec.want_grad {
        bufs = bufs.grad(&grad);
    }
    if spec.weight.is_some() {
        bufs = bufs.weight(&weight);
    }
    if spec.pos_weight.is_some() {
        bufs = bufs.pos_weight(&pos_weight);
    }
    if spec.upstream == ResidentUpstream::Buffer {
        bufs = bufs.upstream(&upstream);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(ctx, &mut encoder, &bufs).expect("record");
    ctx.queue().submit([encoder.finish()]);
    let out_v = read(ctx, &out, r.output_len());
    let none = spec.reduction == Reduction::None;
    wgpu_loss::LossOutput::new(
        (!none).then(|| out_v[0]),
        none.then(|| ArrayD::from_shape_vec(IxDyn(value_shape), out_v.clone()).unwrap()),
        spec.want_grad
            .then(|| ArrayD::from_shape_vec(IxDyn(h.pred.shape()), read(ctx, &grad, n)).unwrap()),
        r.status_blocking(ctx).expect("status").counted,
    )
}

/// One recorded step of each row-wise loss and option agrees with the host path's reference
/// (same tolerances as the host-path tests).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn one_step_matches_the_reference() {
    let ctx = ctx();
    let (b, c) = (37usize, 29usize);
    let cases: Vec<(Loss, ResidentSpec)> = vec![
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I32),
        ),
        (
            Loss::softmax_cross_entropy()
                .label_smoothing(0.1)
                .z_loss(1e-3)
                .ignore_index(3)
                .build()
                .unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I64).weight(),
        ),
        (
            Loss::softmax_cross_entropy()
                .label_smoothing(0.0)
                .z_loss(0.0)
                .ignore_index(5)
                .build()
                .unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::U32),
        ),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c])
                .reduction(Reduction::None)
                .upstream(ResidentUpstream::Buffer),
        ),
        (
            Loss::cosine_proximity().build().unwrap(),
            ResidentSpec::new(&[b, c])
                .reduction(Reduction::Sum)
                .upstream(ResidentUpstream::Scalar(0.5)),
        ),
        (
            Loss::CategoricalCrossEntropy,
            ResidentSpec::new(&[b, c]).loss_only(),
        ),
        // The caller's divisor in place of the counted weight, and 0 (value and gradient 0).
        (
            Loss::softmax_cross_entropy()
                .ignore_index(3)
                .build()
                .unwrap(),
            ResidentSpec::new(&[b, c])
                .classes(ClassType::I64)
                .weight()
                .divisor(123.5),
        ),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c])
                .classes(ClassType::I32)
                .divisor(0.0),
        ),
        (
            Loss::cosine_proximity().build().unwrap(),
            ResidentSpec::new(&[b, c]).divisor(5.0),
        ),
        (
            Loss::cosine_proximity().build().unwrap(),
            ResidentSpec::new(&[b, c]).reduction(Reduction::BatchMean),
        ),
        (
            Loss::softmax_cross_entropy()
                .softcap(3.0)
                .z_loss(1e-3)
                .build()
                .unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I32),
        ),
    ];
    for (k, (loss, spec)) in cases.into_iter().enumerate() {
        let what = format!("resident/{k}/{}/{:?}", loss.name(), spec.reduction);
        let x = match loss {
            Loss::CategoricalCrossEntropy => prob_rows(&[b, c], seed_for(&format!("{what}/x"))),
            _ => logits(&[b, c], seed_for(&format!("{what}/x"))),
        };
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        let k_i64 = class_rows(&[b], c, seed_for(&format!("{what}/k")));
        let k_i32 = k_i64.mapv(|v| v as i32);
        let k_u32 = k_i64.mapv(|v| v as u32);
        let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for(&format!("{what}/w")));
        let g = wgpu_loss::synthetic::uniform(&[b], -1.0, 1.0, seed_for(&format!("{what}/g")));
        let host = Host {
            pred: &x,
            target: match spec.classes {
                Some(ClassType::I32) => k_i32.view().into(),
                Some(ClassType::I64) => k_i64.view().into(),
                Some(ClassType::U32) => k_u32.view().into(),
                Some(other) => panic!("a class type this test does not know: {other:?}"),
                None => t.view().into(),
            },
            weight: &w,
            pos_weight: &w,
            upstream: &g,
        };
        let args = reference_args(&spec, &host);
        let cpu = reference::compute(&loss, &args).expect("reference");
        let mut r = ctx.resident(&loss, spec.clone()).expect("plan");
        let gpu = resident_step(ctx, &mut r, &host, &[b]);
        assert_close_within(
            &gpu,
            &cpu,
            row_tolerance(crate::common::RowLanes::of(ctx), &loss, &args),
            &what,
        );
    }
}

/// The acceptance loop: 1000 steps of gradient descent on logits held in the caller's
/// buffers (the update is the caller's own WGSL kernel, recorded into the same encoders), the
/// loss never read back until the end, nothing allocated after the first step. The final
/// logits and loss match the same 1000 steps run with the CPU reference.
///
/// Tolerance: each step's GPU gradient differs from the reference's by ≤ 1e-6·max|grad|
/// (the host-path tolerance), max|grad| ≤ 1/B for a mean of softmax cross entropy, and the
/// descent map is a contraction at this step size, so the logits drift by at most
/// steps · lr · 1e-6 / B = 1000 · 0.5 · 1e-6 / 64 ≈ 8e-6; we allow 1e-4.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn thousand_steps_on_caller_buffers() {
    let ctx = ctx();
    let (b, c, steps, lr) = (64usize, 10usize, 1000usize, 0.5f32);
    let x0 = logits(&[b, c], seed_for("resident/loop/x"));
    let k = class_rows(&[b], c, seed_for("resident/loop/k"));
    let k_i32: Vec<i32> = k.iter().map(|&v| v as i32).collect();

    let params = upload(ctx, "logits", &slice(&x0));
    let classes = upload(ctx, "classes", &k_i32);
    let grad = zeros(ctx, "grad", b * c);
    let value = zeros(ctx, "value", 1);

    // The caller's optimiser: x -= lr · grad, one invocation per element.
    let module = ctx
        .device()
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("sgd"),
            source: wgpu::ShaderSource::Wgsl(
                format!(
                    "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
                     @group(0) @binding(1) var<storage, read> g: array<f32>;
                     @compute @workgroup_size(64)
                     fn main(@builtin(global_invocation_id) id: vec3<u32>) {{
                         if (id.x < arrayLength(&x)) {{ x[id.x] = x[id.x] - {lr:?} * g[id.x]; }}
                     }}"
                )
                .into(),
            ),
        });
    let sgd = ctx
        .device()
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("sgd"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    let sgd_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("sgd"),
        layout: &sgd.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: grad.as_entire_binding(),
            },
        ],
    });

    let mut loss = ctx
        .resident(
            &Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I32),
        )
        .expect("plan");
    let reader = ValueReader::new(ctx.device(), 1);
    let mut after_first = None;
    for chunk in 0..steps / 10 {
        // Ten steps per encoder: recording needs no submission in between.
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        for _ in 0..10 {
            let bufs = ResidentBuffers::new(&params, &classes, &value).grad(&grad);
            loss.record(ctx, &mut encoder, &bufs).expect("record");
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&sgd);
            pass.set_bind_group(0, &sgd_group, &[]);
            pass.dispatch_workgroups((b * c).div_ceil(64) as u32, 1, 1);
            drop(pass);
            after_first.get_or_insert(loss.allocations());
        }
        ctx.queue().submit([encoder.finish()]);
        assert_eq!(
            Some(loss.allocations()),
            after_first,
            "allocations grew after the first step (chunk {chunk})"
        );
    }
    assert_eq!(
        reader.reads(),
        0,
        "the loss value was read back during the loop"
    );
    // The value of the last step (logits before its update), then the final logits.
    let gpu_value = reader
        .read_blocking(ctx.device(), ctx.queue(), GpuArray::from(&value))
        .expect("read value")[0];
    let gpu_x = read(ctx, &params, b * c);

    // The same loop on the CPU reference, in f32 like the GPU's update.
    let mut x = x0.clone();
    let mut last_value = 0.0f64;
    let mut first_value = None;
    for _ in 0..steps {
        let out = reference::compute(
            &Loss::softmax_cross_entropy().build().unwrap(),
            &LossArgs::new(x.view(), k.view()),
        )
        .expect("reference");
        last_value = out.value.expect("mean");
        first_value.get_or_insert(last_value);
        let g = out.grad.expect("grad");
        x.zip_mut_with(&g, |xi, gi| *xi -= lr * (*gi as f32));
    }
    let drift = gpu_x
        .iter()
        .zip(x.iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(drift <= 1e-4, "final logits differ by {drift:e} > 1e-4");
    let rel = (f64::from(gpu_value) - last_value).abs() / last_value.abs();
    assert!(
        rel <= 1e-4,
        "final loss: GPU {gpu_value}, reference {last_value}, relative {rel:e}"
    );
    let first = first_value.expect("at least one step");
    assert!(
        last_value < first / 2.0,
        "1000 steps of descent should at least halve the loss ({first} -> {last_value})"
    );
    assert_eq!(reader.reads(), 1);
}

/// A class index out of range is reported by the status read, with its row.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn status_reports_class_out_of_range_and_counted() {
    let ctx = ctx();
    let (b, c) = (9usize, 5usize);
    let x = logits(&[b, c], seed_for("resident/status/x"));
    let classes: Vec<i32> = vec![0, 1, -100, 2, 3, 7, 4, 9, 0];
    let mut r = ctx
        .resident(
            &Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I32),
        )
        .expect("plan");
    let (p, t, g, v) = (
        upload(ctx, "p", &slice(&x)),
        upload(ctx, "t", &classes),
        zeros(ctx, "g", b * c),
        zeros(ctx, "v", 1),
    );
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(
        ctx,
        &mut encoder,
        &ResidentBuffers::new(&p, &t, &v).grad(&g),
    )
    .expect("record");
    ctx.queue().submit([encoder.finish()]);
    let s = r.status_blocking(ctx).expect("status");
    assert_eq!(s.class_out_of_range, Some(5));
    assert_eq!(
        s.counted, 6,
        "rows 2 (ignored), 5 and 7 (out of range) do not count"
    );
    assert_eq!(s.out_of_domain, None);
}

/// Every bad buffer is refused before anything is recorded, naming the buffer.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bad_buffers_are_refused() {
    let ctx = ctx();
    let (b, c) = (4usize, 8usize);
    let spec = ResidentSpec::new(&[b, c]).classes(ClassType::I32);
    let mut r = ctx
        .resident(&Loss::softmax_cross_entropy().build().unwrap(), spec)
        .expect("plan");
    let p = zeros(ctx, "p", b * c);
    let t = zeros(ctx, "t", b);
    let g = zeros(ctx, "g", b * c);
    let v = zeros(ctx, "v", 1);
    let small = zeros(ctx, "small", b * c - 1);
    let uniform = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("uniform"),
        size: (b * c * 4) as u64,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let big = zeros(ctx, "big", 4 * b * c);
    let cases: Vec<(&str, ResidentBuffers<'_>, &str)> = vec![
        ("missing grad", ResidentBuffers::new(&p, &t, &v), "grad"),
        (
            "unplanned weight",
            ResidentBuffers::new(&p, &t, &v).grad(&g).weight(&g),
            "weight",
        ),
        (
            "too small",
            ResidentBuffers::new(&small, &t, &v).grad(&g),
            "pred",
        ),
        (
            "no STORAGE usage",
            ResidentBuffers::new(&uniform, &t, &v).grad(&g),
            "pred",
        ),
        (
            "misaligned offset",
            ResidentBuffers::new(GpuArray::at(&big, 4), &t, &v).grad(&g),
            "pred",
        ),
    ];
    for (what, bufs, buffer) in cases {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => {
                assert_eq!(w, buffer, "{what}: {reason}")
            }
            other => panic!("{what}: expected Error::Buffer({buffer}), got {other:?}"),
        }
    }
    // An aligned offset into a larger buffer is fine.
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(
        ctx,
        &mut encoder,
        &ResidentBuffers::new(GpuArray::at(&big, align), &t, &v).grad(&g),
    )
    .expect("an aligned offset is accepted");
}

/// Plans the API cannot serve are refused with the option named.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn unsupported_plans_are_refused() {
    let ctx = ctx();
    let cases: Vec<(Loss, ResidentSpec, &str)> = vec![
        (
            Loss::Mse,
            ResidentSpec::new(&[4, 8]).classes(ClassType::I32),
            "target",
        ),
        (Loss::Mse, ResidentSpec::new(&[4, 8]).weight(), "weight"),
        (
            Loss::Bce,
            ResidentSpec::new(&[4, 8]).weight_len(5),
            "weight",
        ),
        (
            Loss::Bce,
            ResidentSpec::new(&[4, 8]).pos_weight(),
            "pos_weight",
        ),
        (
            Loss::cosine_proximity().build().unwrap(),
            ResidentSpec::new(&[4, 8]).classes(ClassType::I32),
            "target",
        ),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[4, 8]).upstream(ResidentUpstream::Buffer),
            "upstream",
        ),
    ];
    for (loss, spec, option) in cases {
        match ctx.resident(&loss, spec.clone()) {
            Err(Error::InvalidOption { option: o, .. }) => assert_eq!(o, option, "{spec:?}"),
            other => panic!("{spec:?}: expected InvalidOption({option}), got {other:?}"),
        }
    }
    assert!(matches!(
        ctx.resident(
            &Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[0, 8])
        ),
        Err(Error::Empty { .. })
    ));
}

/// One recorded step of each elementwise loss and option agrees with the reference: broadcast
/// weights and pos_weight, every reduction, an upstream buffer, loss only.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn elementwise_step_matches_the_reference() {
    let ctx = ctx();
    let shape = [37usize, 29];
    let n = shape[0] * shape[1];
    let cases: Vec<(Loss, ResidentSpec)> = vec![
        (Loss::Mse, ResidentSpec::new(&shape)),
        (
            Loss::Mae,
            ResidentSpec::new(&shape).reduction(Reduction::Sum),
        ),
        (
            Loss::huber().delta(0.7).build().unwrap(),
            ResidentSpec::new(&shape)
                .reduction(Reduction::None)
                .upstream(ResidentUpstream::Buffer),
        ),
        (
            Loss::smooth_l1().beta(0.5).build().unwrap(),
            ResidentSpec::new(&shape).reduction(Reduction::None),
        ),
        (Loss::Bce, ResidentSpec::new(&shape).weight()),
        (
            Loss::BceWithLogits,
            ResidentSpec::new(&shape)
                .weight_len(n)
                .pos_weight()
                .upstream(ResidentUpstream::Scalar(2.0)),
        ),
        (Loss::BceWithLogits, ResidentSpec::new(&shape).loss_only()),
    ];
    for (k, (loss, spec)) in cases.into_iter().enumerate() {
        let what = format!("resident/ew/{k}/{}", loss.name());
        let batch = wgpu_loss::synthetic::batch(&loss, &shape, seed_for(&what));
        let w_len = spec.weight.unwrap_or(1);
        let w_shape: Vec<usize> = if w_len == n {
            shape.to_vec()
        } else {
            vec![w_len]
        };
        let w = wgpu_loss::synthetic::uniform(&w_shape, 0.0, 2.0, seed_for(&format!("{what}/w")));
        let q =
            wgpu_loss::synthetic::uniform(&[shape[1]], 0.5, 3.0, seed_for(&format!("{what}/q")));
        let g = wgpu_loss::synthetic::uniform(&shape, -1.0, 1.0, seed_for(&format!("{what}/g")));
        let host = Host {
            pred: &batch.pred,
            target: batch.target.view().into(),
            weight: &w,
            pos_weight: &q,
            upstream: &g,
        };
        let cpu = reference::compute(&loss, &reference_args(&spec, &host)).expect("reference");
        let mut r = ctx.resident(&loss, spec.clone()).expect("plan");
        let gpu = resident_step(ctx, &mut r, &host, &shape);
        assert_eq!(gpu.counted, n, "{what}: counted");
        crate::common::assert_close(&gpu, &cpu, &what);
    }
}

/// A BCE probability outside [0, 1] is reported by the status read with its index, and the
/// next clean step clears it (the atomic is reset in the encoder, not by the host).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_domain_error_in_status_and_cleared_next_step() {
    let ctx = ctx();
    let n = 1000usize;
    let mut p: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
    let t = vec![1.0f32; n];
    let mut r = ctx
        .resident(&Loss::Bce, ResidentSpec::new(&[n]))
        .expect("plan");
    let (tb, grad, out) = (upload(ctx, "t", &t), zeros(ctx, "g", n), zeros(ctx, "v", 1));
    for (step, bad) in [(0, Some(617usize)), (1, None)] {
        if let Some(i) = bad {
            p[i] = 1.5;
            p[i + 100] = -0.5;
        } else {
            p = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
        }
        let pb = upload(ctx, "p", &p);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        r.record(
            ctx,
            &mut encoder,
            &ResidentBuffers::new(&pb, &tb, &out).grad(&grad),
        )
        .expect("record");
        ctx.queue().submit([encoder.finish()]);
        let s = r.status_blocking(ctx).expect("status");
        assert_eq!(s.out_of_domain, bad, "step {step}");
        assert_eq!(s.counted, n);
    }
}

/// The value can be copied out in the training step's own encoder and awaited without any
/// blocking poll: the future drives the device itself (here under pollster's executor).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn value_read_in_the_step_encoder_and_awaited() {
    let ctx = ctx();
    let (b, c) = (16usize, 7usize);
    let x = logits(&[b, c], seed_for("resident/await/x"));
    let k = class_rows(&[b], c, seed_for("resident/await/k"));
    let k_i32: Vec<i32> = k.iter().map(|&v| v as i32).collect();
    let want = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(x.view(), k.view()),
    )
    .expect("reference")
    .value
    .expect("mean");
    let mut r = ctx
        .resident(
            &Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c])
                .classes(ClassType::I32)
                .loss_only(),
        )
        .expect("plan");
    let (p, t, v) = (
        upload(ctx, "p", &slice(&x)),
        upload(ctx, "t", &k_i32),
        zeros(ctx, "v", 1),
    );
    let reader = ValueReader::new(ctx.device(), 1);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(ctx, &mut encoder, &ResidentBuffers::new(&p, &t, &v))
        .expect("record");
    reader
        .record_copy(&mut encoder, GpuArray::from(&v))
        .expect("copy");
    ctx.queue().submit([encoder.finish()]);
    let future = reader.map();
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let got = pollster::block_on(future).expect("read")[0];
    let rel = (f64::from(got) - want).abs() / want;
    assert!(rel <= 1e-5, "GPU {got}, reference {want}, relative {rel:e}");
    assert_eq!(reader.reads(), 1);

    // The same buffers again reuse the bind groups; after forget_buffers they are rebuilt.
    let before = r.allocations();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(ctx, &mut encoder, &ResidentBuffers::new(&p, &t, &v))
        .expect("record");
    assert_eq!(r.allocations(), before, "same buffers, no new bind groups");
    r.forget_buffers();
    r.record(ctx, &mut encoder, &ResidentBuffers::new(&p, &t, &v))
        .expect("record");
    assert!(
        r.allocations() > before,
        "forgotten buffers are bound again"
    );
    ctx.queue().submit([encoder.finish()]);
}

/// `record_in_pass` (into a compute pass the caller holds open) gives the same bits as
/// `record`, and zeroes the atomics itself: a step with an out-of-range class (softmax) or an
/// out-of-domain probability (BCE) is reported, and the next, clean step reports nothing.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn record_in_pass_matches_record_and_clears_the_atomics() {
    let ctx = ctx();
    let (b, c) = (37usize, 29usize);
    let x = logits(&[b, c], seed_for("in-pass/x"));
    let good = class_rows(&[b], c, seed_for("in-pass/k"));
    let mut bad: Vec<i32> = good.iter().map(|&k| k as i32).collect();
    bad[11] = c as i32 + 5;
    let good: Vec<i32> = good.iter().map(|&k| k as i32).collect();
    let p = wgpu_loss::synthetic::uniform(&[b * c], 0.05, 0.95, seed_for("in-pass/p"));
    let mut p_bad = slice(&p);
    p_bad[123] = 1.5;
    let t = wgpu_loss::synthetic::uniform(&[b * c], 0.0, 1.0, seed_for("in-pass/t"));

    // (loss, spec, a step's (pred, target) with an offender, the same without)
    type Inputs = (Vec<f32>, Vec<u32>);
    let cases: Vec<(Loss, ResidentSpec, Inputs, Inputs)> = vec![
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            ResidentSpec::new(&[b, c]).classes(ClassType::I32),
            (slice(&x), bytemuck::cast_slice(&bad).to_vec()),
            (slice(&x), bytemuck::cast_slice(&good).to_vec()),
        ),
        (
            Loss::Bce,
            ResidentSpec::new(&[b * c]),
            (p_bad, bytemuck::cast_slice(&slice(&t)).to_vec()),
            (slice(&p), bytemuck::cast_slice(&slice(&t)).to_vec()),
        ),
    ];
    for (loss, spec, (pred_bad, target_bad), (pred_ok, target_ok)) in cases {
        let what = loss.name();
        let n = b * c;
        let grad = zeros(ctx, "grad", n);
        let out = zeros(ctx, "out", 1);
        let run = |r: &mut wgpu_loss::resident::ResidentLoss,
                   pred: &[f32],
                   target: &[u32],
                   in_pass: bool| {
            let pred = upload(ctx, "pred", pred);
            let target = upload(ctx, "target", target);
            let bufs = ResidentBuffers::new(&pred, &target, &out).grad(&grad);
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            if in_pass {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                r.record_in_pass(ctx, &mut pass, &bufs)
                    .expect("record in pass");
            } else {
                r.record(ctx, &mut encoder, &bufs).expect("record");
            }
            ctx.queue().submit([encoder.finish()]);
            let status = r.status_blocking(ctx).expect("status");
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
            (bits(read(ctx, &out, 1)), bits(read(ctx, &grad, n)), status)
        };
        let mut a = ctx.resident(&loss, spec.clone()).expect("plan");
        let mut p = ctx.resident(&loss, spec.clone()).expect("plan");
        let (_, _, s_bad) = run(&mut p, &pred_bad, &target_bad, true);
        assert!(
            s_bad.class_out_of_range == Some(11) || s_bad.out_of_domain == Some(123),
            "{what}: the offender is reported in a pass: {s_bad:?}"
        );
        let allocations = p.allocations();
        let (v_pass, g_pass, s_ok) = run(&mut p, &pred_ok, &target_ok, true);
        assert_eq!(s_ok.class_out_of_range, None, "{what}: cleared in the pass");
        assert_eq!(s_ok.out_of_domain, None, "{what}: cleared in the pass");
        let (v_enc, g_enc, _) = run(&mut a, &pred_ok, &target_ok, false);
        assert_eq!(v_pass, v_enc, "{what}: value bits, pass vs encoder");
        assert_eq!(g_pass, g_enc, "{what}: gradient bits, pass vs encoder");
        // New input buffers each step here, so bind groups are rebuilt; the zeroing dispatches
        // are not (built once, on the first step in a pass).
        let grew = p.allocations() - allocations;
        let (_, _, _) = run(&mut p, &pred_ok, &target_ok, true);
        assert_eq!(
            p.allocations() - allocations - grew,
            grew,
            "{what}: one bind-group set per step"
        );
    }
}

/// The case: a PyTorch-style i64 class buffer. Planned as i64 it is read as i64 (the
/// class-index type is part of the plan; an i32 plan read its words as ids 3, 0, 1, 0, ... and
/// gave a wrong loss without an error): the loss matches the reference, an id of 2^32 + 1 is
/// out of range (not class 1), and an `ignore_index` of 2^40 is honoured.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn i64_class_buffers_are_read_as_i64() {
    let ctx = ctx();
    let (b, c) = (8usize, 5usize);
    let x = logits(&[b, c], seed_for("resident/i64/x"));
    let big = 1i64 << 40;
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(0.0)
        .ignore_index(big)
        .build()
        .unwrap();
    let k = ndarray::arr1(&[3i64, 0, 1, big, 4, 2, 0, 1]).into_dyn();
    let mut r = ctx
        .resident(&loss, ResidentSpec::new(&[b, c]).classes(ClassType::I64))
        .expect("plan");
    let host = Host {
        pred: &x,
        target: k.view().into(),
        weight: &x,
        pos_weight: &x,
        upstream: &x,
    };
    let gpu = resident_step(ctx, &mut r, &host, &[b]);
    let want = reference::compute(&loss, &LossArgs::new(x.view(), k.view())).expect("reference");
    assert_close_within(&gpu, &want, Default::default(), "resident/i64");
    assert_eq!(gpu.counted, 7, "the row of 2^40 is ignored");

    // 2^32 + 1 in row 6: out of range, reported by the status read.
    let mut bad = k.clone();
    bad[[6]] = (1i64 << 32) + 1;
    let (p, t, g, v) = (
        upload(ctx, "p", &slice(&x)),
        upload(ctx, "t", &slice(&bad)),
        zeros(ctx, "g", b * c),
        zeros(ctx, "v", 1),
    );
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    r.record(
        ctx,
        &mut encoder,
        &ResidentBuffers::new(&p, &t, &v).grad(&g),
    )
    .expect("record");
    ctx.queue().submit([encoder.finish()]);
    let s = r.status_blocking(ctx).expect("status");
    assert_eq!(s.class_out_of_range, Some(6));
}

/// Bindings that would alias are an `Error::Buffer` naming the written one, before anything is
/// recorded (wgpu would only fail in the caller's `encoder.finish()`): the gradient or the
/// output in an input's buffer, whatever the offsets, and the gradient and output overlapping.
/// Inputs sharing a buffer, and outputs in disjoint ranges of one buffer, are fine.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn aliasing_bindings_are_refused() {
    let ctx = ctx();
    let (b, c) = (4usize, 64usize);
    let n = b * c;
    let mut r = ctx
        .resident(&Loss::Mse, ResidentSpec::new(&[b, c]))
        .expect("plan");
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let x = logits(&[b, c], seed_for("resident/alias/x"));
    let p = upload(ctx, "p", &slice(&x));
    let t = upload(ctx, "t", &slice(&x));
    // Room for two arrays of n at aligned offsets.
    let second = (n as u64 * 4).next_multiple_of(align);
    let big = zeros(ctx, "big", 2 * second as usize / 4);
    let (g, v) = (zeros(ctx, "g", n), zeros(ctx, "v", 1));
    let refused: Vec<(&str, ResidentBuffers<'_>, &str)> = vec![
        (
            "grad is pred",
            ResidentBuffers::new(&p, &t, &v).grad(&p),
            "grad",
        ),
        (
            "grad is target",
            ResidentBuffers::new(&p, &t, &v).grad(&t),
            "grad",
        ),
        (
            "output is pred",
            ResidentBuffers::new(&p, &t, &p).grad(&g),
            "output",
        ),
        (
            "grad in pred's buffer, another range",
            ResidentBuffers::new(GpuArray::at(&big, 0), &t, &v).grad(GpuArray::at(&big, second)),
            "grad",
        ),
        (
            "output overlaps grad",
            ResidentBuffers::new(&p, &t, GpuArray::at(&g, align)).grad(&g),
            "output",
        ),
    ];
    for (what, bufs, name) in refused {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => {
                assert_eq!(w, name, "{what}: {reason}");
                assert!(!reason.contains('\n'), "{what}: one line: {reason}");
            }
            other => panic!("{what}: expected Error::Buffer({name}), got {other:?}"),
        }
    }
    let accepted: Vec<(&str, ResidentBuffers<'_>)> = vec![
        ("pred is target", ResidentBuffers::new(&p, &p, &v).grad(&g)),
        (
            "grad and output in disjoint ranges",
            ResidentBuffers::new(&p, &t, GpuArray::at(&big, second)).grad(GpuArray::at(&big, 0)),
        ),
    ];
    for (what, bufs) in accepted {
        let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        r.record(ctx, &mut encoder, &bufs)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        ctx.queue().submit([encoder.finish()]);
        let err = pollster::block_on(scope.pop());
        assert!(err.is_none(), "{what}: wgpu: {err:?}");
    }
}

/// A target buffer of the wrong size says how the target was planned and how to plan the other
/// kind: float targets (class ids need `.classes(..)`), or class ids of which type.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn target_errors_name_the_planned_target() {
    let ctx = ctx();
    let (b, c) = (4usize, 8usize);
    let (p, g, v) = (
        zeros(ctx, "p", b * c),
        zeros(ctx, "g", b * c),
        zeros(ctx, "v", 1),
    );
    let ids32 = zeros(ctx, "ids", b);
    for (spec, needle) in [
        (ResidentSpec::new(&[b, c]), ".classes(ClassType::I32)"),
        (
            ResidentSpec::new(&[b, c]).classes(ClassType::I64),
            "i64 class ids, 8 bytes each",
        ),
    ] {
        let mut r = ctx
            .resident(
                &Loss::softmax_cross_entropy().build().unwrap(),
                spec.clone(),
            )
            .expect("plan");
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(
            ctx,
            &mut encoder,
            &ResidentBuffers::new(&p, &ids32, &v).grad(&g),
        ) {
            Err(Error::Buffer {
                what: "target",
                reason,
            }) => assert!(reason.contains(needle), "{spec:?}: {reason}"),
            other => panic!("{spec:?}: expected Error::Buffer(target), got {other:?}"),
        }
    }
}

/// A waker that counts its wakes, for [`read_future_sleeps_until_the_device_is_polled`].
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `ValueReader`'s future waits without spinning: polled before anyone drives the device it
/// is pending and does not wake itself; once another thread polls the device, the map
/// callback wakes it (exactly once) and the next poll has the value. (A future that polls
/// the device and wakes itself, as this one once did, is woken at once and fails here.)
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn read_future_sleeps_until_the_device_is_polled() {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    // A device of its own: another test's `device.poll` on the shared one would complete
    // this map early.
    let own = GpuContext::new().expect("an adapter");
    let ctx = &own;
    let v = upload(ctx, "v", &[2.5f32]);
    let reader = ValueReader::new(ctx.device(), 1);
    let mut future = reader
        .read(ctx.device(), ctx.queue(), GpuArray::from(&v))
        .expect("read");
    let counter = Arc::new(CountingWaker(Default::default()));
    let waker = Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    let mut pinned = std::pin::Pin::new(&mut future);
    // Nobody has polled the device: the map cannot have completed, and the future must not
    // arrange to be polled again by itself.
    assert!(pinned.as_mut().poll(&mut cx).is_pending());
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        0,
        "woken with no device poll"
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            ctx.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .expect("poll")
        });
    });
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "woken once by the map callback"
    );
    match pinned.as_mut().poll(&mut cx) {
        Poll::Ready(r) => assert_eq!(r.expect("value"), vec![2.5]),
        Poll::Pending => panic!("pending after the map completed"),
    }
}

/// `ResidentSpec::divisor_buffer`: the mean divides by the `D'` the caller writes into its own
/// buffer, read on the GPU at each step. The same bind groups give the reference's
/// `LossArgs::divisor(D')` for each value written between steps (class ids with weights, and
/// float targets), 0 for `D' = 0`, and NaN for a negative or NaN `D'`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn divisor_read_from_a_buffer() {
    let ctx = ctx();
    let (b, c) = (37usize, 300usize);
    let x = logits(&[b, c], seed_for("resident/divisor buffer/x"));
    let k = class_rows(&[b], c, seed_for("resident/divisor buffer/k"));
    let t = prob_rows(&[b, c], seed_for("resident/divisor buffer/t"));
    let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for("resident/divisor buffer/w"));
    let ce = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .build()
        .unwrap();
    let cases: Vec<(Loss, ResidentSpec, bool)> = vec![
        (
            ce,
            ResidentSpec::new(&[b, c])
                .classes(ClassType::I64)
                .weight()
                .divisor_buffer(),
            true,
        ),
        (ce, ResidentSpec::new(&[b, c]).divisor_buffer(), false),
        (
            Loss::distill().temperature(2.0).build().unwrap(),
            ResidentSpec::new(&[b, c])
                .upstream(ResidentUpstream::Scalar(-0.5))
                .divisor_buffer(),
            false,
        ),
    ];
    for (loss, spec, classes) in cases {
        let name = format!("resident/divisor buffer/{}/classes={classes}", loss.name());
        let (p, tb, wb) = (
            upload(ctx, "p", &slice(&x)),
            if classes {
                upload(ctx, "k", &slice(&k))
            } else {
                upload(ctx, "t", &slice(&t))
            },
            upload(ctx, "w", &slice(&w)),
        );
        let (g, v, d) = (
            zeros(ctx, "g", b * c),
            zeros(ctx, "v", 1),
            zeros(ctx, "d", 1),
        );
        let mut bufs = ResidentBuffers::new(&p, &tb, &v).grad(&g).divisor(&d);
        if spec.weight.is_some() {
            bufs = bufs.weight(&wb);
        }
        let mut r = ctx.resident(&loss, spec.clone()).expect("plan");
        let mut step = |dv: f32| {
            ctx.queue().write_buffer(&d, 0, bytemuck::bytes_of(&dv));
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            r.record(ctx, &mut encoder, &bufs).expect("record");
            ctx.queue().submit([encoder.finish()]);
            (read(ctx, &v, 1)[0], read(ctx, &g, b * c))
        };
        for dv in [123.5f32, 2.0, 1e-3, 4096.0] {
            let what = format!("{name}/D={dv}");
            let (value, grad) = step(dv);
            let mut args = if classes {
                LossArgs::new(x.view(), k.view())
            } else {
                LossArgs::new(x.view(), t.view())
            }
            .divisor(dv);
            if spec.weight.is_some() {
                args = args.weight(w.view());
            }
            if let ResidentUpstream::Scalar(s) = spec.upstream {
                args = args.upstream(Upstream::Scalar(s));
            }
            let want = reference::compute(&loss, &args).expect("reference");
            let gpu = wgpu_loss::LossOutput::new(
                Some(value),
                None,
                Some(ArrayD::from_shape_vec(IxDyn(&[b, c]), grad).unwrap()),
                want.counted,
            );
            assert_close_within(
                &gpu,
                &want,
                row_tolerance(crate::common::RowLanes::of(ctx), &loss, &args),
                &what,
            );
        }
        let (value, grad) = step(0.0);
        assert_eq!(value, 0.0, "{name}/D=0");
        assert!(grad.iter().all(|&v| v == 0.0), "{name}/D=0: gradient");
        for dv in [-1.0f32, f32::NAN] {
            let (value, grad) = step(dv);
            assert!(value.is_nan(), "{name}/D={dv}: value {value}");
            assert!(grad.iter().all(|v| v.is_nan()), "{name}/D={dv}: gradient");
        }
    }
}

/// A divisor buffer is refused where it cannot apply, when planned (an elementwise loss, a
/// reduction other than `Mean`, with a fixed divisor too: `InvalidOption("divisor")`), and when
/// recorded without it, with one not planned, too small, or in the gradient's buffer
/// (`Error::Buffer("divisor")` or the gradient's aliasing error).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn divisor_buffer_misuse_is_refused() {
    let ctx = ctx();
    let (b, c) = (4usize, 8usize);
    let ce = Loss::softmax_cross_entropy().build().unwrap();
    for (loss, spec) in [
        (Loss::Mse, ResidentSpec::new(&[b, c]).divisor_buffer()),
        (
            ce,
            ResidentSpec::new(&[b, c])
                .reduction(Reduction::Sum)
                .divisor_buffer(),
        ),
        (ce, ResidentSpec::new(&[b, c]).divisor(2.0).divisor_buffer()),
    ] {
        match ctx.resident(&loss, spec.clone()) {
            Err(Error::InvalidOption {
                option: "divisor",
                reason,
            }) => {
                assert!(!reason.contains('\n'), "{spec:?}: {reason}");
            }
            other => panic!(
                "{spec:?}: expected InvalidOption(divisor), got {:?}",
                other.err()
            ),
        }
    }
    let (p, t, g, v) = (
        zeros(ctx, "p", b * c),
        zeros(ctx, "t", b * c),
        zeros(ctx, "g", b * c),
        zeros(ctx, "v", 1),
    );
    let d = zeros(ctx, "d", 1);
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let tight = zeros(ctx, "tight", align as usize / 4);
    let mut planned = ctx
        .resident(&ce, ResidentSpec::new(&[b, c]).divisor_buffer())
        .expect("plan");
    let mut plain = ctx.resident(&ce, ResidentSpec::new(&[b, c])).expect("plan");
    let base = ResidentBuffers::new(&p, &t, &v).grad(&g);
    let refused: Vec<(
        &str,
        &mut wgpu_loss::resident::ResidentLoss,
        ResidentBuffers<'_>,
        &str,
    )> = vec![
        ("not given", &mut planned, base, "divisor"),
        ("not planned", &mut plain, base.divisor(&d), "divisor"),
    ];
    for (what, r, bufs, name) in refused {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => assert_eq!(w, name, "{what}: {reason}"),
            other => panic!("{what}: expected Error::Buffer({name}), got {other:?}"),
        }
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    for (what, bufs, name) in [
        (
            "past the end",
            base.divisor(GpuArray::at(&tight, align)),
            "divisor",
        ),
        ("the gradient's buffer", base.divisor(&g), "grad"),
    ] {
        match planned.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => assert_eq!(w, name, "{what}: {reason}"),
            other => panic!("{what}: expected Error::Buffer({name}), got {other:?}"),
        }
    }
}

/// `ResidentSpec::grad_in_place`: the gradient written over the prediction's buffer is bit for
/// bit the gradient a separate buffer receives, and the value is the same bits: softmax cross
/// entropy with class ids (i32, i64, weights, options), probability targets and a soft cap,
/// rows of one lane, of a workgroup and longer than its registers (re-read), 16-bit storage
/// with even C, distillation with an upstream buffer, cosine and cce.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn gradient_in_place_matches_out_of_place_bit_for_bit() {
    in_place_matches_out_of_place(ctx());
}

/// [`gradient_in_place_matches_out_of_place_bit_for_bit`]'s cases on `ctx` (also run with
/// split rows, tests/gpu/split.rs).
pub fn in_place_matches_out_of_place(ctx: &GpuContext) {
    let sce = |ls: f32, z: f32, cap: f32| {
        Loss::softmax_cross_entropy()
            .label_smoothing(ls)
            .z_loss(z)
            .softcap(cap)
            .build()
            .unwrap()
    };
    let mut dtypes = vec![wgpu_loss::Dtype::Bf16];
    if ctx.supports_f16() {
        dtypes.push(wgpu_loss::Dtype::F16);
    }
    let mut cases: Vec<(Loss, ResidentSpec)> = vec![
        (
            sce(0.1, 1e-3, 0.0),
            ResidentSpec::new(&[37, 29]).classes(ClassType::I64),
        ),
        (
            sce(0.0, 0.0, 0.0),
            ResidentSpec::new(&[300, 7]).classes(ClassType::I32),
        ),
        (
            sce(0.0, 0.0, 0.0),
            ResidentSpec::new(&[5, 32000])
                .classes(ClassType::I32)
                .weight(),
        ),
        (
            sce(0.0, 0.0, 30.0),
            ResidentSpec::new(&[3, 4097]).reduction(Reduction::Sum),
        ),
        (
            Loss::distill().temperature(2.0).build().unwrap(),
            ResidentSpec::new(&[7, 300])
                .reduction(Reduction::None)
                .upstream(ResidentUpstream::Buffer),
        ),
        (
            Loss::cosine_proximity().build().unwrap(),
            ResidentSpec::new(&[11, 33]),
        ),
        (Loss::CategoricalCrossEntropy, ResidentSpec::new(&[6, 50])),
        // Long rows, whose gradient is written as they are streamed.
        (Loss::CategoricalCrossEntropy, ResidentSpec::new(&[3, 5001])),
        (
            Loss::CategoricalCrossEntropy,
            ResidentSpec::new(&[4, 4100]).reduction(Reduction::None),
        ),
    ];
    for &dt in &dtypes {
        cases.push((
            sce(0.1, 0.0, 0.0),
            ResidentSpec::new(&[9, 1000])
                .dtype(dt)
                .classes(ClassType::I64),
        ));
        cases.push((sce(0.0, 0.0, 5.0), ResidentSpec::new(&[4, 258]).dtype(dt)));
        cases.push((
            Loss::CategoricalCrossEntropy,
            ResidentSpec::new(&[3, 1002]).dtype(dt),
        ));
    }
    for (loss, spec) in cases {
        let (b, c) = (spec.shape[0], spec.shape[1]);
        let what = format!(
            "in place/{}/{:?}/{}",
            loss.name(),
            spec.shape,
            spec.dtype.name()
        );
        let x = match loss {
            Loss::CategoricalCrossEntropy => prob_rows(&[b, c], seed_for(&format!("{what}/x"))),
            _ => logits(&[b, c], seed_for(&format!("{what}/x"))),
        };
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        let k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
        let w = wgpu_loss::synthetic::uniform(&[c], 0.0, 2.0, seed_for(&format!("{what}/w")));
        let g = wgpu_loss::synthetic::uniform(&[b], -1.0, 1.0, seed_for(&format!("{what}/g")));
        let words = spec.dtype.pack(&slice(&x));
        let target = match spec.classes {
            Some(ClassType::I64) => upload(ctx, "k", &slice(&k)),
            Some(_) => upload(ctx, "k", &k.iter().map(|&v| v as i32).collect::<Vec<_>>()),
            None => upload(ctx, "t", &spec.dtype.pack(&slice(&t))),
        };
        let (wb, gb) = (upload(ctx, "w", &slice(&w)), upload(ctx, "g", &slice(&g)));
        let run = |in_place: bool| -> (Vec<u32>, Vec<u32>) {
            let plan = if in_place {
                spec.clone().grad_in_place()
            } else {
                spec.clone()
            };
            let mut r = ctx.resident(&loss, plan).expect("plan");
            let p = upload(ctx, "p", &words);
            let grad = zeros(ctx, "grad", words.len());
            let out = zeros(ctx, "out", r.output_len());
            let mut bufs = ResidentBuffers::new(&p, &target, &out);
            if !in_place {
                bufs = bufs.grad(&grad);
            }
            if spec.weight.is_some() {
                bufs = bufs.weight(&wb);
            }
            if spec.upstream == ResidentUpstream::Buffer {
                bufs = bufs.upstream(&gb);
            }
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            r.record(ctx, &mut encoder, &bufs).expect("record");
            ctx.queue().submit([encoder.finish()]);
            let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            let written = if in_place { &p } else { &grad };
            (
                bits(read(ctx, written, words.len())),
                bits(read(ctx, &out, r.output_len())),
            )
        };
        let (separate, value) = run(false);
        let (over, value_in_place) = run(true);
        assert_eq!(value, value_in_place, "{what}: value");
        assert!(
            separate != words,
            "{what}: the gradient is not the prediction"
        );
        let first = separate.iter().zip(&over).position(|(a, b)| a != b);
        assert_eq!(first, None, "{what}: first differing word");
    }
}

/// A gradient in place is refused where it cannot apply, when planned (an elementwise loss,
/// loss-only, an f32 gradient of 16-bit inputs, 16-bit rows of odd C:
/// `InvalidOption("grad_in_place")`), and when recorded with a gradient buffer or with the
/// prediction also bound as the target (`Error::Buffer`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn gradient_in_place_misuse_is_refused() {
    let ctx = ctx();
    let ce = Loss::softmax_cross_entropy().build().unwrap();
    let bf16 = wgpu_loss::Dtype::Bf16;
    for (loss, spec) in [
        (Loss::Mse, ResidentSpec::new(&[4, 8]).grad_in_place()),
        (ce, ResidentSpec::new(&[4, 8]).loss_only().grad_in_place()),
        (
            ce,
            ResidentSpec::new(&[4, 8])
                .dtype(bf16)
                .grad_dtype(wgpu_loss::Dtype::F32)
                .grad_in_place(),
        ),
        (ce, ResidentSpec::new(&[4, 7]).dtype(bf16).grad_in_place()),
    ] {
        match ctx.resident(&loss, spec.clone()) {
            Err(Error::InvalidOption {
                option: "grad_in_place",
                reason,
            }) => {
                assert!(!reason.contains('\n'), "{spec:?}: {reason}");
            }
            other => panic!(
                "{spec:?}: expected InvalidOption(grad_in_place), got {:?}",
                other.err()
            ),
        }
    }
    // f32 rows of odd C are fine.
    ctx.resident(&ce, ResidentSpec::new(&[4, 7]).grad_in_place())
        .expect("f32, odd C");
    let mut r = ctx
        .resident(&ce, ResidentSpec::new(&[4, 8]).grad_in_place())
        .expect("plan");
    let (p, t, g, v) = (
        zeros(ctx, "p", 32),
        zeros(ctx, "t", 32),
        zeros(ctx, "g", 32),
        zeros(ctx, "v", 1),
    );
    for (what, bufs, name) in [
        (
            "a gradient buffer",
            ResidentBuffers::new(&p, &t, &v).grad(&g),
            "grad",
        ),
        ("pred is target", ResidentBuffers::new(&p, &p, &v), "pred"),
    ] {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => {
                assert_eq!(w, name, "{what}: {reason}");
                assert!(!reason.contains('\n'), "{what}: {reason}");
            }
            other => panic!("{what}: expected Error::Buffer({name}), got {other:?}"),
        }
    }
}

/// Each row's log-sum-exp written to the caller's buffer (`ResidentSpec::lse`), from an
/// offset: for f32 inputs bit for bit the host path's (the same kernel), for 16-bit inputs
/// within the row-wise tolerance of the reference of the stored values; with ignored rows, a
/// cap, every reduction and the gradient in place.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_written_to_the_callers_buffer() {
    let ctx = ctx();
    let sce = |ls: f32, cap: f32| {
        Loss::softmax_cross_entropy()
            .label_smoothing(ls)
            .softcap(cap)
            .build()
            .unwrap()
    };
    let bf16 = wgpu_loss::Dtype::Bf16;
    let cases: Vec<(Loss, ResidentSpec)> = vec![
        (
            sce(0.1, 0.0),
            ResidentSpec::new(&[37, 29]).classes(ClassType::I64),
        ),
        (
            sce(0.0, 30.0),
            ResidentSpec::new(&[5, 4097]).reduction(Reduction::None),
        ),
        (
            sce(0.0, 0.0),
            ResidentSpec::new(&[300, 7])
                .classes(ClassType::I32)
                .reduction(Reduction::Sum)
                .loss_only(),
        ),
        (
            sce(0.0, 0.0),
            ResidentSpec::new(&[3, 32000])
                .classes(ClassType::I64)
                .grad_in_place(),
        ),
        (
            sce(0.1, 5.0),
            ResidentSpec::new(&[9, 1000])
                .dtype(bf16)
                .classes(ClassType::I64),
        ),
    ];
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    for (loss, spec) in cases {
        let spec = spec.lse();
        let (b, c) = (spec.shape[0], spec.shape[1]);
        let what = format!("lse/{loss:?}/{:?}/{}", spec.shape, spec.dtype.name());
        let x = logits(&[b, c], seed_for(&format!("{what}/x")));
        let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
        let mut k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
        for r in (3..b).step_by(7) {
            k[r] = -100;
        }
        let words = spec.dtype.pack(&slice(&x));
        // What the kernel sees: the stored (rounded) logits.
        let stored =
            ArrayD::from_shape_vec(IxDyn(&[b, c]), spec.dtype.unpack(&words, b * c)).unwrap();
        let t_stored = ArrayD::from_shape_vec(
            IxDyn(&[b, c]),
            spec.dtype.unpack(&spec.dtype.pack(&slice(&t)), b * c),
        )
        .unwrap();
        let target = match spec.classes {
            Some(ClassType::I64) => upload(ctx, "k", &slice(&k)),
            Some(_) => upload(ctx, "k", &k.iter().map(|&v| v as i32).collect::<Vec<_>>()),
            None => upload(ctx, "t", &spec.dtype.pack(&slice(&t))),
        };
        let mut r = ctx.resident(&loss, spec.clone()).expect("plan");
        let p = upload(ctx, "p", &words);
        let grad = zeros(ctx, "grad", words.len());
        let out = zeros(ctx, "out", r.output_len());
        // The log-sum-exp at an offset of its buffer.
        let lse = zeros(ctx, "lse", align as usize / 4 + b);
        let mut bufs = ResidentBuffers::new(&p, &target, &out).lse(GpuArray::at(&lse, align));
        if spec.want_grad && !spec.grad_in_place {
            bufs = bufs.grad(&grad);
        }
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        r.record(ctx, &mut encoder, &bufs).expect("record");
        ctx.queue().submit([encoder.finish()]);
        let got = read(ctx, &lse, align as usize / 4 + b)[align as usize / 4..].to_vec();
        let host_args = match spec.classes {
            Some(_) => LossArgs::new(stored.view(), k.view()),
            None => LossArgs::new(stored.view(), t_stored.view()),
        }
        .reduction(spec.reduction)
        .want_grad(spec.want_grad)
        .want_lse(true);
        let want = reference::compute(&loss, &host_args).unwrap().lse.unwrap();
        let got_a = ArrayD::from_shape_vec(IxDyn(&[b]), got.clone()).unwrap();
        let tol = row_tolerance(crate::common::RowLanes::of(ctx), &loss, &host_args).array_rtol;
        crate::common::assert_array_within(
            &got_a,
            &want,
            tol,
            crate::common::finite_max(&want).max(1.0),
            &what,
        );
        if spec.dtype == wgpu_loss::Dtype::F32 {
            let host = ctx.compute(&loss, &host_args).unwrap().lse.unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&slice(&host)),
                "{what}: resident vs host path"
            );
        }
    }
}

/// A log-sum-exp buffer is refused where it cannot apply: planned for a loss without one
/// (`InvalidOption("lse")`), and when recorded missing, unplanned, too small, or aliasing the
/// output or an input (`Error::Buffer("lse")`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn lse_buffer_misuse_is_refused() {
    let ctx = ctx();
    for loss in [Loss::Mse, Loss::distill().build().unwrap()] {
        match ctx.resident(&loss, ResidentSpec::new(&[4, 8]).lse()) {
            Err(Error::InvalidOption { option: "lse", .. }) => {}
            other => panic!(
                "{}: expected InvalidOption(lse), got {:?}",
                loss.name(),
                other.err()
            ),
        }
    }
    let ce = Loss::softmax_cross_entropy().build().unwrap();
    let mut with = ctx
        .resident(&ce, ResidentSpec::new(&[4, 8]).lse())
        .expect("plan");
    let mut without = ctx.resident(&ce, ResidentSpec::new(&[4, 8])).expect("plan");
    let (p, t, g, v, l, small) = (
        zeros(ctx, "p", 32),
        zeros(ctx, "t", 32),
        zeros(ctx, "g", 32),
        zeros(ctx, "v", 1),
        zeros(ctx, "l", 4),
        zeros(ctx, "small", 3),
    );
    let base = || ResidentBuffers::new(&p, &t, &v).grad(&g);
    for (what, planned, bufs) in [
        ("missing", true, base()),
        ("unplanned", false, base().lse(&l)),
        ("too small", true, base().lse(&small)),
        ("the output's buffer", true, base().lse(&v)),
        ("the prediction's buffer", true, base().lse(&p)),
        ("the gradient's buffer", true, base().lse(&g)),
    ] {
        let r = if planned { &mut with } else { &mut without };
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        match r.record(ctx, &mut encoder, &bufs) {
            Err(Error::Buffer { what: w, reason }) => {
                assert!(
                    w == "lse" || reason.contains("lse"),
                    "{what}: {w}: {reason}"
                );
                assert!(!reason.contains('\n'), "{what}: {reason}");
            }
            other => panic!("{what}: expected Error::Buffer(lse), got {other:?}"),
        }
    }
}

/// `pass_bytes` counts what the planned kernels read and write: a row's lanes hold 16
/// elements each, the rest of a longer row is read again for the gradient (but not for
/// categorical cross entropy's, written in the first sweep; and once more for jsd's second
/// sweep), a split row twice whole (cce's once), class ids 4 bytes each twice, the gradient
/// once.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn pass_bytes_count_the_planned_reads() {
    // One lane a row (the option given: no cap applies), so 16 elements held.
    let one_lane = crate::common::make(
        wgpu_loss::ContextOptions {
            row_elements_per_lane: Some(1 << 16),
            ..Default::default()
        },
        "one lane per row",
    );
    let (b, c) = (24usize, 1000usize);
    let n = (b * c) as u64;
    let reread = (b * (c - 16)) as u64;
    let sce = Loss::softmax_cross_entropy().build().unwrap();
    let classes = ResidentSpec::new(&[b, c]).classes(ClassType::I32);
    let planned = |ctx: &GpuContext, loss: &Loss, spec: ResidentSpec| {
        ctx.resident(loss, spec).expect("plan").pass_bytes()
    };
    // Held whole on the GPU rule (64 lanes of 16): read once.
    assert_eq!(
        planned(crate::common::gpu_rows_ctx(), &sce, classes.clone()),
        4 * n + 8 * b as u64 + 4 * n
    );
    assert_eq!(
        planned(&one_lane, &sce, classes),
        4 * (n + reread) + 8 * b as u64 + 4 * n
    );
    // Dense targets are read as often as the prediction; jsd sweeps the row twice.
    let dense = ResidentSpec::new(&[b, c]);
    let jsd = Loss::jsd().build().unwrap();
    assert_eq!(
        planned(&one_lane, &sce, dense.clone()),
        8 * (n + reread) + 4 * n
    );
    assert_eq!(
        planned(&one_lane, &jsd, dense.clone()),
        8 * (n + 2 * reread) + 4 * n
    );
    // Categorical cross entropy writes its gradient in the first sweep: read once.
    let cce = Loss::CategoricalCrossEntropy;
    assert_eq!(planned(&one_lane, &cce, dense.clone()), 8 * n + 4 * n);
    // Without a gradient only the further statistics sweeps read again.
    assert_eq!(planned(&one_lane, &sce, dense.clone().loss_only()), 8 * n);
    assert_eq!(
        planned(&one_lane, &jsd, dense.clone().loss_only()),
        8 * (n + reread)
    );
    // Rows split across workgroups are read twice whole; jsd does not split.
    let split = crate::common::make(
        wgpu_loss::ContextOptions {
            split_rows: Some(100),
            row_elements_per_lane: Some(1 << 16),
            ..Default::default()
        },
        "split rows",
    );
    assert_eq!(planned(&split, &sce, dense.clone()), 8 * 2 * n + 4 * n);
    assert_eq!(planned(&split, &cce, dense.clone()), 8 * n + 4 * n);
    assert_eq!(planned(&split, &jsd, dense), 8 * (n + 2 * reread) + 4 * n);
}
