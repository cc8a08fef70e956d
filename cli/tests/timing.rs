//! The benchmarks' timing pieces on the adapter: [`GpuTimer`] (timestamp queries, and the
//! wall-clock fallback on a device without them), the copy kernel, and [`KernelStep`] (one
//! loss step on GPU-resident buffers).
//!
//! Timing checks are bounds that hold however loaded the machine is: a duration is positive,
//! the device interval lies inside the host interval around the same call, and the implied
//! bandwidth is below any memory's. Comparisons of two durations (a bigger buffer takes
//! longer) are left to the benchmarks: on a shared machine they are noisy.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use approx::assert_relative_eq;
use wgpu_loss::{ContextOptions, Error, GpuContext, Loss, LossArgs, synthetic};
use wgpu_loss_cli::bench::{COPY_VEC4S_PER_LANE, CopyKernel, GpuTimer, KernelStep, TimingMethod};

/// No memory moves 100 TB/s: a duration implying more is a conversion error.
const MAX_PLAUSIBLE_BYTES_PER_S: f64 = 1e14;

fn ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| match GpuContext::new() {
        Ok(c) => {
            eprintln!("timing tests run on: {}", c.adapter_summary());
            c
        }
        Err(e) => panic!(
            "GPU tests need an adapter and found none: {e}\n\
             (install one, e.g. `apt-get install mesa-vulkan-drivers`, or build the tests with \
             WGPU_LOSS_SKIP_GPU_TESTS=1 to mark them ignored)"
        ),
    })
}

/// A context on a device created without `TIMESTAMP_QUERY`, through `from_device`.
fn ctx_without_timestamps() -> GpuContext {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("no timestamps"),
        required_features: wgpu::Features::empty(),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("a device");
    GpuContext::from_device(device, queue, ContextOptions::default())
}

/// Times one copy of `elements` with `timer`, and the host's clock around the whole call.
fn time_copy(ctx: &GpuContext, timer: &mut GpuTimer, elements: usize) -> (Duration, Duration) {
    let copy = CopyKernel::new(ctx, elements).expect("copy kernel");
    // Warm-up: the pipeline's first run.
    timer
        .time(ctx, |e| {
            copy.record(e);
            Ok(())
        })
        .expect("warm-up");
    let t0 = Instant::now();
    let t = timer
        .time(ctx, |e| {
            copy.record(e);
            Ok(())
        })
        .expect("timed copy");
    (t, t0.elapsed())
}

/// With `TIMESTAMP_QUERY` (llvmpipe has it), the timer reads the device clock: a copy of
/// 4 MiB takes a positive time, within the host's interval around the call, at a plausible
/// bandwidth.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn timestamps_give_a_positive_plausible_duration() {
    let ctx = ctx();
    let mut timer = GpuTimer::new(ctx);
    if !ctx.has_timestamps() {
        eprintln!("this adapter has no TIMESTAMP_QUERY: the fallback is tested below");
        assert_eq!(timer.method(), TimingMethod::WallClock);
        return;
    }
    assert_eq!(timer.method(), TimingMethod::Timestamps);
    let period = timer.period_ns().expect("a timestamp period");
    assert!(
        period.is_finite() && period > 0.0,
        "timestamp period {period}"
    );
    let elements = 1 << 20;
    let (t, host) = time_copy(ctx, &mut timer, elements);
    assert!(t > Duration::ZERO, "a copy of 4 MiB took no time");
    assert!(
        t <= host,
        "the device interval {t:?} is longer than the host's around it {host:?}: \
         the tick conversion (period {period} ns) is wrong"
    );
    let rate = (8 * elements) as f64 / t.as_secs_f64();
    assert!(
        rate < MAX_PLAUSIBLE_BYTES_PER_S,
        "{t:?} for 8 MiB of traffic is {rate:.3e} B/s"
    );
}

/// A device created without `TIMESTAMP_QUERY` (`from_device`) falls back to the wall clock,
/// which gives a positive duration too; so does a timer built to use it.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn without_timestamps_the_wall_clock_is_used() {
    let plain = ctx_without_timestamps();
    assert!(!plain.has_timestamps());
    let mut timer = GpuTimer::new(&plain);
    assert_eq!(timer.method(), TimingMethod::WallClock);
    assert_eq!(timer.period_ns(), None);
    let (t, host) = time_copy(&plain, &mut timer, 1 << 16);
    assert!(t > Duration::ZERO && t <= host, "{t:?} (host {host:?})");

    let mut forced = GpuTimer::wall_clock();
    let (t, host) = time_copy(ctx(), &mut forced, 1 << 16);
    assert!(t > Duration::ZERO && t <= host, "{t:?} (host {host:?})");
    let timing =
        CopyKernel::bandwidth(&plain, 1 << 16, 2).expect("copy bandwidth without timestamps");
    assert_eq!(timing.method, TimingMethod::WallClock);
    assert!(timing.gbps() > 0.0);
}

/// What the recorder returns comes back from the timer, and nothing is submitted.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn a_failing_recorder_is_returned() {
    let mut timer = GpuTimer::new(ctx());
    let err = timer
        .time(ctx(), |_| Err(Error::Gpu("recorder failed".into())))
        .expect_err("the recorder's error");
    assert!(err.to_string().contains("recorder failed"), "{err}");
    // The timer still works after.
    let (t, _) = time_copy(ctx(), &mut timer, 1 << 12);
    assert!(t > Duration::ZERO);
}

/// The copy kernel's bandwidth report, and its grid's checks.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn copy_kernel_reports_and_checks_its_grid() {
    let ctx = ctx();
    let timing = CopyKernel::bandwidth(ctx, 1 << 18, 3).expect("copy bandwidth");
    assert_eq!(timing.bytes_moved, 2 * 4 * (1 << 18));
    assert!(timing.median > Duration::ZERO);
    assert!(timing.gbps() > 0.0 && timing.gbps() * 1e9 < MAX_PLAUSIBLE_BYTES_PER_S);
    let expected = if ctx.has_timestamps() {
        TimingMethod::Timestamps
    } else {
        TimingMethod::WallClock
    };
    assert_eq!(timing.method, expected);

    // COPY_VEC4S_PER_LANE vec4s per lane of 256: 2^18 floats (2^16 vec4s) are 64 workgroups
    // at 4 per lane; 4 floats are one workgroup.
    let copy = CopyKernel::new(ctx, 1 << 18).expect("copy kernel");
    assert_eq!(copy.workgroups(), (1 << 16) / (256 * COPY_VEC4S_PER_LANE));
    assert_eq!(copy.bytes_moved(), 2 * 4 * (1 << 18));
    assert_eq!(
        CopyKernel::new(ctx, 4).expect("copy kernel").workgroups(),
        1
    );
    let copy = copy.with_workgroups(16).expect("16 workgroups, 16 trips");
    assert_eq!(copy.workgroups(), 16);
    let copy = CopyKernel::new(ctx, 1 << 18).expect("copy kernel");
    assert!(matches!(
        copy.with_workgroups(0),
        Err(Error::DeviceLimit { .. })
    ));
    let copy = CopyKernel::new(ctx, 1 << 18).expect("copy kernel");
    assert!(matches!(
        copy.with_workgroups(u32::MAX),
        Err(Error::DeviceLimit { .. })
    ));
    // Just over 2^24 floats in one workgroup: more than 16 384 trips of 256 lanes.
    let big = CopyKernel::new(ctx, (1 << 24) + 4).expect("copy kernel");
    assert!(matches!(
        big.with_workgroups(1),
        Err(Error::DeviceLimit { .. })
    ));
    assert!(matches!(CopyKernel::new(ctx, 3), Err(Error::Empty { .. })));
}

/// A kernel step computes the loss: its value is the whole call's, on the same batch.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn kernel_step_computes_the_calls_value() {
    let ctx = ctx();
    for (loss, shape) in [
        (Loss::Mse, vec![100_003]),
        (Loss::BceWithLogits, vec![4096]),
        (Loss::CategoricalCrossEntropy, vec![64, 1000]),
        (
            Loss::softmax_cross_entropy().build().unwrap(),
            vec![33, 5000],
        ),
        (Loss::cosine_proximity().build().unwrap(), vec![17, 768]),
    ] {
        let b = synthetic::batch(&loss, &shape, 7);
        let classes = synthetic::classes(&shape[..1], shape[shape.len() - 1], 7);
        let args = if loss.takes_classes() {
            LossArgs::new(b.pred.view(), classes.view())
        } else {
            LossArgs::new(b.pred.view(), b.target.view())
        };
        let mut step = KernelStep::new(ctx, &loss, &args).expect("kernel step");
        assert_eq!(step.chunks(), 1);
        let mut timer = GpuTimer::new(ctx);
        let t = timer
            .time(ctx, |e| step.record(ctx, e))
            .expect("timed step");
        assert!(t > Duration::ZERO, "{}: {t:?}", loss.name());
        let got = step.values(ctx).expect("value");
        let want = ctx
            .compute(&loss, &args)
            .expect("call")
            .value
            .expect("a mean");
        assert_relative_eq!(got[0], want, max_relative = 1e-5);
    }
}

/// Traffic: the minimum (read p and t, write the gradient; class indices 4 bytes per row), and
/// the passes' (the part of a row beyond what its lanes hold, 16 elements a lane, read again
/// for the gradient), by the context's lane rule: on GPUs 256 lanes hold 4096 elements of a
/// long row; on software adapters a row of 1000 gets one lane, one of 10 000 four.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn kernel_step_traffic() {
    let ctx = ctx();
    // Elements of a row of `c` its lanes hold (16 a lane; the trip bound never binds here).
    let held = |c: usize| 16 * ctx.row_lanes(c) as usize;
    let b = synthetic::batch(&Loss::Mse, &[1000], 1);
    let step = KernelStep::new(
        ctx,
        &Loss::Mse,
        &LossArgs::new(b.pred.view(), b.target.view()),
    )
    .expect("kernel step");
    assert_eq!(step.min_bytes(), 12 * 1000);
    assert_eq!(step.pass_bytes(), 12 * 1000);

    let loss = Loss::softmax_cross_entropy().build().unwrap();
    // Classes are read by the pre-pass and the main pass.
    let b = synthetic::batch(&loss, &[8, 1000], 1);
    let c = synthetic::classes(&[8], 1000, 1);
    let step = KernelStep::new(ctx, &loss, &LossArgs::new(b.pred.view(), c.view())).unwrap();
    let again = 8 * 1000usize.saturating_sub(held(1000)) as u64;
    assert_eq!(step.min_bytes(), 4 * (2 * 8000 + 8));
    assert_eq!(step.pass_bytes(), 4 * (2 * 8000 + again + 2 * 8));
    let b = synthetic::batch(&loss, &[2, 10_000], 1);
    let c = synthetic::classes(&[2], 10_000, 1);
    let step = KernelStep::new(ctx, &loss, &LossArgs::new(b.pred.view(), c.view())).unwrap();
    let again = 2 * (10_000 - held(10_000)) as u64;
    assert_eq!(step.min_bytes(), 4 * (2 * 20_000 + 2));
    assert_eq!(step.pass_bytes(), 4 * (20_000 + again + 20_000 + 2 * 2));
    // Float targets are read again too.
    let b = synthetic::batch(&loss, &[2, 10_000], 1);
    let step = KernelStep::new(ctx, &loss, &LossArgs::new(b.pred.view(), b.target.view())).unwrap();
    assert_eq!(step.pass_bytes(), 4 * (3 * 20_000 + 2 * again));
}

/// Inputs larger than one binding are split into chunks of whole rows, each with its own
/// value: the mean over its chunk.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn kernel_step_chunks_large_inputs() {
    let small = GpuContext::with_options(ContextOptions {
        max_chunk_elements: Some(1024),
        ..Default::default()
    })
    .expect("a context");
    let b = synthetic::batch(&Loss::Mse, &[2500], 3);
    let args = LossArgs::new(b.pred.view(), b.target.view());
    let mut step = KernelStep::new(&small, &Loss::Mse, &args).expect("kernel step");
    assert_eq!(step.chunks(), 3);
    GpuTimer::new(&small)
        .time(&small, |e| step.record(&small, e))
        .expect("timed step");
    let got = step.values(&small).expect("values");
    let p = b.pred.as_slice().unwrap();
    let t = b.target.as_slice().unwrap();
    for (k, range) in [0..1024, 1024..2048, 2048..2500].into_iter().enumerate() {
        let mean = range
            .clone()
            .map(|i| f64::from(p[i] - t[i]).powi(2))
            .sum::<f64>()
            / range.len() as f64;
        assert_relative_eq!(f64::from(got[k]), mean, max_relative = 1e-5);
    }

    // Rows: 1024 elements hold 3 rows of 300.
    let loss = Loss::cosine_proximity().build().unwrap();
    let b = synthetic::batch(&loss, &[10, 300], 3);
    let mut step = KernelStep::new(
        &small,
        &loss,
        &LossArgs::new(b.pred.view(), b.target.view()),
    )
    .expect("kernel step");
    assert_eq!(step.chunks(), 4);
    assert_eq!(step.min_bytes(), 12 * 3000);
    GpuTimer::new(&small)
        .time(&small, |e| step.record(&small, e))
        .expect("timed step");
    assert_eq!(step.values(&small).expect("values").len(), 4);

    // A row longer than one binding cannot be bound.
    let b = synthetic::batch(&loss, &[1, 2000], 3);
    assert!(matches!(
        KernelStep::new(
            &small,
            &loss,
            &LossArgs::new(b.pred.view(), b.target.view())
        ),
        Err(Error::DeviceLimit { .. })
    ));
}
