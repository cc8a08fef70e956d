//! Criterion benchmarks: for each loss, the GPU kernels alone (`gpu-kernel`), the whole GPU
//! call (`gpu`), the fast CPU path (`cpu`: f32 on every core) and the f64 CPU reference
//! (`reference`) over sizes, in one group per loss, with `Throughput::Bytes` of the minimum
//! traffic (read p and t, write the gradient: 12 bytes per element). Row-wise losses run on
//! rows of 1024 elements.
//!
//! `gpu-kernel` times one loss-and-gradient step on buffers already on the GPU
//! (`wgpu_loss_cli::bench::KernelStep`: the GPU-resident API, planned and bound once), through
//! `iter_custom`: each iteration is one submission whose device time a `GpuTimer` measures with
//! timestamp queries written just before and just after the step's passes (the device clock;
//! no submission, scheduling or readback time), or, on a device without
//! `Features::TIMESTAMP_QUERY`, by the host clock around the submission and a blocking wait for
//! it; the sum of the iterations' times is reported. The method is printed at the start.
//! The `gpu` timing is of a whole `GpuContext::compute` call (upload, kernels, readback): it
//! returns only after the device has finished, so no queue time is hidden. The CPU timings are
//! of whole `cpu::compute_into` calls (the gradient written into an array allocated once per
//! size) and `reference::compute` calls (all threads of rayon's global pool;
//! `RAYON_NUM_THREADS` sets their number).
//! Run with `cargo bench`; set `WGPU_ADAPTER_NAME` to choose the adapter.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wgpu_loss::{GpuContext, Loss, LossArgs, cpu, reference, synthetic};
use wgpu_loss_cli::bench::{GpuTimer, KernelStep};

fn losses(c: &mut Criterion) {
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => panic!("benchmarks need an adapter: {e}"),
    };
    let mut timer = GpuTimer::new(&ctx);
    eprintln!("adapter: {}", ctx.adapter_summary());
    eprintln!(
        "gpu-kernel timing: {}: {}",
        timer.method(),
        timer.method().describe()
    );
    for loss in Loss::all_default() {
        let mut group = c.benchmark_group(loss.name());
        group.sample_size(10);
        for log2 in [16u32, 20, 22] {
            let n = 1usize << log2;
            // Row-wise losses: rows of 1024 (probability targets for softmax cross entropy).
            let shape = if loss.is_row_wise() {
                vec![n / 1024, 1024]
            } else {
                vec![n]
            };
            let b = synthetic::batch(&loss, &shape, u64::from(log2));
            let args = LossArgs::new(b.pred.view(), b.target.view());
            group.throughput(Throughput::Bytes(12 * n as u64));
            let mut step = KernelStep::new(&ctx, &loss, &args).expect("planning a kernel step");
            group.bench_function(BenchmarkId::new("gpu-kernel", n), |bench| {
                bench.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            timer
                                .time(&ctx, |encoder| step.record(&ctx, encoder))
                                .expect("timed GPU step")
                        })
                        .sum::<Duration>()
                })
            });
            drop(step);
            group.bench_with_input(BenchmarkId::new("gpu", n), &args, |bench, args| {
                bench.iter(|| ctx.compute(&loss, args).expect("GPU call"))
            });
            // The gradient array is allocated once, as the kernel step's buffers are (and as
            // `wgpu-loss bench` does): a fresh one per call costs its page faults.
            let mut grad = ndarray::ArrayD::<f32>::zeros(args.pred.shape());
            group.bench_with_input(BenchmarkId::new("cpu", n), &args, |bench, args| {
                bench.iter(|| {
                    cpu::compute_into(&loss, args, grad.view_mut()).expect("fast CPU call")
                })
            });
            group.bench_with_input(BenchmarkId::new("reference", n), &args, |bench, args| {
                bench.iter(|| reference::compute(&loss, args).expect("reference call"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, losses);
criterion_main!(benches);
