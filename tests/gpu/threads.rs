//! A context shared by threads: 8 threads, each running several losses on one `GpuContext`,
//! get the same bits as one thread alone, on the default adapter and on OpenGL (Mesa's GL
//! driver here), whose wgpu backend shares one GL context behind a lock it waits for at most
//! 6 s and then panics ("Could not lock adapter context"); the context serialises its calls
//! there.

use std::sync::OnceLock;

use ndarray::ArrayD;
use wgpu_loss::{ContextOptions, GpuContext, Loss, LossArgs, LossOutput, Reduction};

use crate::common::{class_rows, ctx, logits, seed_for};

/// A context on the OpenGL backend.
fn gl_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        GpuContext::with_options(ContextOptions {
            backends: Some(wgpu::Backends::GL),
            ..Default::default()
        })
        .unwrap_or_else(|e| {
            panic!(
                "the OpenGL test needs a GL adapter (Debian: apt-get install libegl1 \
                 libegl-mesa0 libgl1-mesa-dri; scripts/setup.sh installs them): {e}"
            )
        })
    })
}

/// The work of one thread: softmax cross entropy over 64 × 1000 logits, BCE over 2^18
/// elements, cosine proximity over 128 × 768, each with its gradient.
fn work(ctx: &GpuContext, seed: u64) -> Vec<LossOutput<f32>> {
    let x = logits(&[64, 1000], seed);
    let k = class_rows(&[64], 1000, seed + 1);
    let p = wgpu_loss::synthetic::uniform(&[1 << 18], 0.0, 1.0, seed + 2);
    let t = wgpu_loss::synthetic::uniform(&[1 << 18], 0.0, 1.0, seed + 3);
    let a = wgpu_loss::synthetic::uniform(&[128, 768], -3.0, 3.0, seed + 4);
    let b = wgpu_loss::synthetic::uniform(&[128, 768], -3.0, 3.0, seed + 5);
    let run = |loss: &Loss, args: LossArgs<'_>| {
        ctx.compute(loss, &args.reduction(Reduction::Mean))
            .unwrap_or_else(|e| panic!("{}: {e}", loss.name()))
    };
    vec![
        run(
            &Loss::softmax_cross_entropy().build().unwrap(),
            LossArgs::new(x.view(), k.view()),
        ),
        run(&Loss::Bce, LossArgs::new(p.view(), t.view())),
        run(
            &Loss::cosine_proximity().build().unwrap(),
            LossArgs::new(a.view(), b.view()),
        ),
    ]
}

/// 8 threads × 3 rounds of [`work`] on `ctx`, each thread with its own inputs, every result
/// the same bits as the same work run alone first.
fn eight_threads(ctx: &GpuContext, what: &str) {
    let seeds: Vec<u64> = (0..8)
        .map(|k| seed_for(&format!("threads/{what}/{k}")))
        .collect();
    let alone: Vec<Vec<LossOutput<f32>>> = seeds.iter().map(|&s| work(ctx, s)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&s| scope.spawn(move || (0..3).map(|_| work(ctx, s)).collect::<Vec<_>>()))
            .collect();
        for (k, h) in handles.into_iter().enumerate() {
            let rounds = h
                .join()
                .unwrap_or_else(|_| panic!("{what}: thread {k} panicked"));
            for (round, got) in rounds.iter().enumerate() {
                for (l, (g, a)) in got.iter().zip(&alone[k]).enumerate() {
                    assert_eq!(
                        g.value, a.value,
                        "{what}: thread {k}, round {round}, loss {l}"
                    );
                    let same = |x: &Option<ArrayD<f32>>, y: &Option<ArrayD<f32>>| {
                        x.as_ref()
                            .map(|x| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                            == y.as_ref().map(|y| y.iter().map(|v| v.to_bits()).collect())
                    };
                    assert!(
                        same(&g.grad, &a.grad),
                        "{what}: thread {k}, round {round}, loss {l}: gradient bits"
                    );
                }
            }
        }
    });
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn eight_threads_share_the_default_context() {
    eight_threads(ctx(), "default");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn eight_threads_share_an_opengl_context() {
    let ctx = gl_ctx();
    assert_eq!(
        ctx.adapter_info().backend,
        wgpu::Backend::Gl,
        "{}",
        ctx.adapter_summary()
    );
    assert!(ctx.serialises_calls());
    println!("OpenGL adapter: {}", ctx.adapter_summary());
    eight_threads(ctx, "gl");
}
