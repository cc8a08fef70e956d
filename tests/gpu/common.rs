//! Shared contexts, seeds, tolerances and comparisons for the GPU tests.
//!
//! Tolerances, GPU (f32) against the reference (f64 on the same f32 inputs):
//! - loss value: relative error ≤ 1e-5. Every elementwise loss term is ≥ 0, so an f32 sum
//!   of N terms through a grid-stride loop of at most k trips and a tree of depth d has relative
//!   error ≤ (k + d + a few) · 2^-24, far below 1e-5 for our k ≤ 32, d ≤ 24, plus the per-term
//!   error of `log`/`exp` (Vulkan: 2^-21 absolute near 1, 3 ulp elsewhere).
//! - gradient and per-element losses: max |GPU − ref| ≤ 1e-6 · max |ref|. Each element is a few
//!   f32 operations (≤ 4 roundings plus one transcendental), so about 8 ulp of the largest value.

#![allow(dead_code)]

use std::sync::OnceLock;

use ndarray::ArrayD;
use wgpu_loss::{
    ContextOptions, GpuContext, Loss, LossArgs, LossOutput, Reduction, reference, synthetic,
};

/// Loss value: relative tolerance (see the module docs).
pub const VALUE_RTOL: f64 = 1e-5;
/// Gradient and per-element losses: tolerance relative to the largest magnitude.
pub const ARRAY_RTOL: f64 = 1e-6;

/// The sizes of the shape matrix: 1, workgroup size ± 1, a tail, about a million (a grid-stride
/// loop of several trips), 2^22 (4096 workgroups × 4 trips each).
pub const SIZES: [usize; 7] = [1, 255, 256, 257, 4097, 1_000_003, 1 << 22];

fn make(options: ContextOptions, what: &str) -> GpuContext {
    match GpuContext::with_options(options) {
        Ok(c) => {
            eprintln!("GPU tests ({what}) run on: {}", c.adapter_summary());
            c
        }
        Err(e) => panic!(
            "GPU tests need an adapter and found none: {e}\n\
             Set WGPU_LOSS_SKIP_GPU_TESTS=1 (at build time) to mark them ignored instead."
        ),
    }
}

/// The default context (subgroup reductions where the adapter has them).
pub fn ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| make(ContextOptions::default(), "default"))
}

/// A context with the plain shared-memory reduction.
pub fn plain_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        make(
            ContextOptions {
                subgroups: false,
                ..Default::default()
            },
            "plain reduction",
        )
    })
}

/// Chunk size of [`chunked_ctx`]: not a multiple of 64 or of the row lengths the tests use,
/// so chunk boundaries fall mid-row and broadcast phases are non-zero.
pub const SMALL_CHUNK: usize = 1000;

/// A context that binds at most [`SMALL_CHUNK`] elements at once, to exercise chunking cheaply.
pub fn chunked_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        make(
            ContextOptions {
                max_chunk_elements: Some(SMALL_CHUNK),
                ..Default::default()
            },
            "1000-element chunks",
        )
    })
}

/// A seed derived from a case's description (FNV-1a), so every case gets fresh data and a
/// failure is reproducible from the test name alone.
pub fn seed_for(case: &str) -> u64 {
    case.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn max_abs(a: &ArrayD<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Asserts `gpu` ≈ `cpu` elementwise within `ARRAY_RTOL · max |cpu|`, naming the first offender.
/// NaN must match NaN, and ±inf the same infinity.
pub fn assert_array_close(gpu: &ArrayD<f32>, cpu: &ArrayD<f64>, what: &str) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    let finite_max = cpu
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = ARRAY_RTOL * finite_max;
    for (i, (&g, &c)) in gpu.iter().zip(cpu.iter()).enumerate() {
        let g = f64::from(g);
        let ok = if c.is_nan() {
            g.is_nan()
        } else if c.is_infinite() {
            g == c
        } else {
            (g - c).abs() <= tol
        };
        assert!(
            ok,
            "{what}: element {i}: GPU {g:e}, reference {c:e}, |diff| {:e} > tolerance {tol:e} (= {ARRAY_RTOL:e} x max |ref| {finite_max:e})",
            (g - c).abs()
        );
    }
}

/// Asserts a GPU result matches the reference result (value, losses, gradient, count).
pub fn assert_close(gpu: &LossOutput<f32>, cpu: &LossOutput<f64>, what: &str) {
    assert_eq!(gpu.counted, cpu.counted, "{what}: counted");
    match (gpu.value, cpu.value) {
        (Some(g), Some(c)) => {
            let g = f64::from(g);
            if c.is_nan() {
                assert!(g.is_nan(), "{what}: value: GPU {g:e}, reference NaN");
            } else if c.is_infinite() {
                assert_eq!(g, c, "{what}: value");
            } else {
                let rel = (g - c).abs() / c.abs().max(f64::MIN_POSITIVE);
                assert!(
                    rel <= VALUE_RTOL || (g - c).abs() <= f64::from(f32::MIN_POSITIVE),
                    "{what}: value: GPU {g:e}, reference {c:e}, relative error {rel:e} > {VALUE_RTOL:e}"
                );
            }
        }
        (None, None) => {}
        (g, c) => panic!("{what}: value present on one side only: GPU {g:?}, reference {c:?}"),
    }
    match (&gpu.losses, &cpu.losses) {
        (Some(g), Some(c)) => assert_array_close(g, c, &format!("{what}: per-element losses")),
        (None, None) => {}
        _ => panic!("{what}: per-element losses present on one side only"),
    }
    match (&gpu.grad, &cpu.grad) {
        (Some(g), Some(c)) => assert_array_close(g, c, &format!("{what}: gradient")),
        (None, None) => {}
        _ => panic!("{what}: gradient present on one side only"),
    }
}

/// Runs `args` on `ctx` and on the reference, and compares.
pub fn check_args(
    ctx: &GpuContext,
    loss: &Loss,
    args: &LossArgs<'_>,
    what: &str,
) -> LossOutput<f32> {
    let gpu = ctx
        .compute(loss, args)
        .unwrap_or_else(|e| panic!("{what}: GPU call failed: {e}"));
    let cpu =
        reference::compute(loss, args).unwrap_or_else(|e| panic!("{what}: reference failed: {e}"));
    assert_close(&gpu, &cpu, what);
    gpu
}

/// One case of the shape matrix: `loss` × `reduction` × `n` elements of seeded data.
pub fn matrix_case(ctx: &GpuContext, loss: Loss, reduction: Reduction, n: usize) {
    let what = format!("{}/{}/{n}", loss.name(), reduction.name());
    let b = synthetic::batch(&loss, &[n], seed_for(&what));
    let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
    check_args(ctx, &loss, &args, &what);
}

/// `#[test]`s for one reduction over [`SIZES`].
macro_rules! size_tests {
    ($red:ident, $loss:expr) => {
        use wgpu_loss::{Loss, Reduction};
        fn case(n: usize) {
            $crate::common::matrix_case($crate::common::ctx(), $loss, Reduction::$red, n);
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_1() {
            case(1)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_255() {
            case(255)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_256() {
            case(256)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_257() {
            case(257)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_4097() {
            case(4097)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_1_000_003() {
            case(1_000_003)
        }
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn n_4_194_304() {
            case(1 << 22)
        }
    };
}

/// The shape matrix of a loss: every reduction × every size in [`SIZES`].
macro_rules! shape_matrix {
    ($loss:expr) => {
        mod mean {
            size_tests!(Mean, $loss);
        }
        mod sum {
            size_tests!(Sum, $loss);
        }
        mod none {
            size_tests!(None, $loss);
        }
    };
}
