//! Shared contexts, seeds, tolerances and comparisons for the GPU tests.
//!
//! Tolerances, GPU (f32) against the reference (f64 on the same f32 inputs):
//! - loss value: relative error ≤ 1e-5. Every elementwise loss term is ≥ 0, so an f32 sum
//!   of N terms through a grid-stride loop of at most k trips and a tree of depth d has relative
//!   error ≤ (k + d + a few) · 2^-24, far below 1e-5 for our k ≤ 32, d ≤ 24, plus the per-term
//!   error of `log`/`exp` (Vulkan: 2^-21 absolute near 1, 3 ulp elsewhere).
//! - gradient and per-element losses: max |GPU − ref| ≤ 1e-6 · max |ref|. Each element is a few
//!   f32 operations (≤ 4 roundings plus one transcendental), so about 8 ulp of the largest value.
//! - row-wise family: the same value tolerance; gradient and per-row losses within
//!   [`row_array_rtol`] (wider than `ARRAY_RTOL` only for rows longer than 4096, whose
//!   statistics are longer f32 sums); cosine proximity's results relative to the terms they
//!   are sums and differences of ([`cosine_scales`]).

#![allow(dead_code)]

use std::sync::OnceLock;

use ndarray::{ArrayD, IxDyn};
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

pub fn make(options: ContextOptions, what: &str) -> GpuContext {
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

/// A context whose loss kernels take the other main-loop shape than the adapter's default
/// (`ContextOptions::unroll`: four units per trip on GPUs, one on software adapters), so both
/// shapes run on every machine.
pub fn unroll_flipped_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        let cpu = ctx().adapter_info().device_type == wgpu::DeviceType::Cpu;
        make(
            ContextOptions {
                unroll: Some(cpu),
                ..Default::default()
            },
            "flipped unroll",
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

/// The largest finite magnitude of `a` (0 if none).
pub fn finite_max(a: &ArrayD<f64>) -> f64 {
    a.iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Asserts `gpu` ≈ `cpu` elementwise within `ARRAY_RTOL · max |cpu|`, naming the first offender.
/// NaN must match NaN, and ±inf the same infinity.
pub fn assert_array_close(gpu: &ArrayD<f32>, cpu: &ArrayD<f64>, what: &str) {
    assert_array_within(gpu, cpu, ARRAY_RTOL, finite_max(cpu), what);
}

/// Asserts `gpu` ≈ `cpu` elementwise within `rtol · scale`, naming the first offender; NaN must
/// match NaN, and ±inf the same infinity. `scale` is usually `max |cpu|` ([`finite_max`]).
pub fn assert_array_within(
    gpu: &ArrayD<f32>,
    cpu: &ArrayD<f64>,
    rtol: f64,
    scale: f64,
    what: &str,
) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    let tol = rtol * scale;
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
            "{what}: element {i}: GPU {g:e}, reference {c:e}, |diff| {:e} > tolerance {tol:e} (= {rtol:e} x scale {scale:e})",
            (g - c).abs()
        );
    }
}

/// How closely a GPU result must agree with the reference: relative to the reference's own
/// magnitude by default, or to a larger scale where the result is a difference of larger terms.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Relative tolerance of the gradient and the per-element (per-row) losses.
    pub array_rtol: f64,
    /// A scale for the gradient's tolerance above `max |ref|` (see [`cosine_scales`]).
    pub grad_scale: Option<f64>,
    /// A scale for the per-row losses' tolerance above `max |ref|`.
    pub loss_scale: Option<f64>,
    /// A scale for the value's tolerance (`VALUE_RTOL` times it) above `|ref|`.
    pub value_scale: Option<f64>,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            array_rtol: ARRAY_RTOL,
            grad_scale: None,
            loss_scale: None,
            value_scale: None,
        }
    }
}

/// Asserts a GPU result matches the reference result (value, losses, gradient, count).
pub fn assert_close(gpu: &LossOutput<f32>, cpu: &LossOutput<f64>, what: &str) {
    assert_close_within(gpu, cpu, Tolerance::default(), what);
}

/// As [`assert_close`], with the tolerance given.
pub fn assert_close_within(
    gpu: &LossOutput<f32>,
    cpu: &LossOutput<f64>,
    tol: Tolerance,
    what: &str,
) {
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
                let floor =
                    f64::from(f32::MIN_POSITIVE).max(VALUE_RTOL * tol.value_scale.unwrap_or(0.0));
                assert!(
                    rel <= VALUE_RTOL || (g - c).abs() <= floor,
                    "{what}: value: GPU {g:e}, reference {c:e}, relative error {rel:e} > {VALUE_RTOL:e} (and |diff| > {floor:e})"
                );
            }
        }
        (None, None) => {}
        (g, c) => panic!("{what}: value present on one side only: GPU {g:?}, reference {c:?}"),
    }
    let scaled = |c: &ArrayD<f64>, extra: Option<f64>| finite_max(c).max(extra.unwrap_or(0.0));
    match (&gpu.losses, &cpu.losses) {
        (Some(g), Some(c)) => assert_array_within(
            g,
            c,
            tol.array_rtol,
            scaled(c, tol.loss_scale),
            &format!("{what}: per-element losses"),
        ),
        (None, None) => {}
        _ => panic!("{what}: per-element losses present on one side only"),
    }
    match (&gpu.grad, &cpu.grad) {
        (Some(g), Some(c)) => assert_array_within(
            g,
            c,
            tol.array_rtol,
            scaled(c, tol.grad_scale),
            &format!("{what}: gradient"),
        ),
        (None, None) => {}
        _ => panic!("{what}: gradient present on one side only"),
    }
    // The log-sum-exp m + ln S: m exact (capped: within softcap_rtol's share), ln S within the
    // sum's relative error (row_array_rtol), so absolute, against max(max |lse|, 1).
    match (&gpu.lse, &cpu.lse) {
        (Some(g), Some(c)) => assert_array_within(
            g,
            c,
            tol.array_rtol,
            finite_max(c).max(1.0),
            &format!("{what}: log-sum-exp"),
        ),
        (None, None) => {}
        _ => panic!("{what}: log-sum-exp present on one side only"),
    }
}

/// Runs `args` on `ctx` and on the reference, and compares: within [`ARRAY_RTOL`] for the
/// elementwise family, [`row_tolerance`] for the row-wise family.
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
    let tol = if loss.is_row_wise() {
        row_tolerance(RowLanes::of(ctx), loss, args)
    } else {
        elementwise_tolerance(loss, args)
    };
    assert_close_within(&gpu, &cpu, tol, what);
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

// ---------------------------------------------------------------------------------------------
// The row-wise family (categorical and softmax cross entropy, cosine proximity).
//

/// How the row kernels give a row its lanes: each lane aiming at `per_lane` elements
/// ([`GpuContext::row_elements_per_lane`]), at most `max` lanes for the row's length
/// ([`GpuContext::row_max_lanes`]).
#[derive(Clone, Copy, Debug)]
pub struct RowLanes {
    pub per_lane: usize,
    pub max: u32,
}

impl RowLanes {
    /// The GPU rule, which [`gpu_rows_ctx`] and the sharded kernels use on every adapter.
    pub const GPU: RowLanes = RowLanes {
        per_lane: GPU_ROW_ELEMENTS_PER_LANE,
        max: 256,
    };

    /// `ctx`'s rule.
    pub fn of(ctx: &GpuContext) -> RowLanes {
        RowLanes {
            per_lane: ctx.row_elements_per_lane(),
            max: ctx.row_max_lanes(),
        }
    }
}

/// Gradient and per-row losses of a row-wise loss with rows of `c` elements given lanes by
/// `lanes`: relative tolerance.
///
/// [`ARRAY_RTOL`] budgets a few roundings per element. A row-wise element also depends on its
/// row's statistics (Σ exp(x − m), Σ t', Σ t ln p, ‖p‖², ‖t‖², p·t): f32 sums of `n = ⌈C/group⌉`
/// sequential terms per lane (`group` from [`lanes_per_row`]) and a fixed tree
/// of depth log2(group), each term carrying an `exp`/`log` error of a few ulp. Their rounding
/// errors add like a random walk, about √n ulp (the worst case is n ulp); we allow four times
/// that, `4 √(n + log2 group) · 2^-24`, where it exceeds `ARRAY_RTOL`. With the GPUs' 16 per
/// lane that is at most 1.2e-6 up to C = 4096 (rows held in registers, n ≤ 16 + 8) and 7.7e-6
/// at C = 262144, where llvmpipe shows up to 1.05e-6 (softmax cross entropy with probability
/// targets). A lane's streamed elements are summed in blocks (`ROW_BLOCK` in rows.wgsl: 16
/// units, 64 elements at most), 16 blocks to a span, and the spans join its sum, so its sum
/// has at most 16 + 64 + 16 + m/1024 terms in a row for m elements: n is the smaller of that
/// and m, so at most 2.5e-6 with software adapters' 4096 per lane (and 8 lanes for the
/// longest rows). The value's [`VALUE_RTOL`] already covers these (observed ≤ 1.2e-6).
pub fn row_array_rtol(c: usize, lanes: RowLanes) -> f64 {
    let group = f64::from(lanes_per_row(c.max(1), lanes));
    let m = (c as f64 / group).ceil();
    let n = m.min(96.0 + (m / 1024.0).ceil()) + group.log2();
    ARRAY_RTOL.max(4.0 * n.sqrt() * f64::from(f32::EPSILON) / 2.0)
}

/// Lanes that share a row of `c` elements in the row kernels: the power of two at or above
/// `c / lanes.per_lane`, at most `lanes.max`. The kernels' rule (`lanes_for` in
/// src/kernels/rows.rs, whose unit tests pin the same values; its loop-trip bound never
/// binds at the sizes of these tests), repeated here because it sets the tolerances and the
/// sizes these tests pick.
pub fn lanes_per_row(c: usize, lanes: RowLanes) -> u32 {
    c.div_ceil(lanes.per_lane)
        .max(1)
        .next_power_of_two()
        .min(lanes.max as usize) as u32
}

/// [`GpuContext::row_elements_per_lane`] of the GPU rule (16), which [`gpu_rows_ctx`] and
/// the sharded kernels use on every adapter.
pub const GPU_ROW_ELEMENTS_PER_LANE: usize = 16;

/// A context whose row kernels share rows between lanes as on a GPU (16 elements per lane),
/// so the combine trees of every group size run on a software adapter too, whose default
/// gives a row of up to 4096 elements one lane, and a longer row at most 8.
pub fn gpu_rows_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        make(
            ContextOptions {
                row_elements_per_lane: Some(GPU_ROW_ELEMENTS_PER_LANE),
                ..Default::default()
            },
            "GPU row lanes",
        )
    })
}

/// The tolerance [`check_args`] applies to an elementwise loss: [`ARRAY_RTOL`] of the largest
/// result, and for the KL divergence of the largest term, `max_k |t_k| (|ln t_k| + |p_k|)`
/// (`e^t (|t| + |p|)` with `log_target`): `t (ln t − p)` cancels where `p ≈ ln t`, so an
/// element's error is relative to its two terms, not to the (small) result.
pub fn elementwise_tolerance(loss: &Loss, args: &LossArgs<'_>) -> Tolerance {
    let mut tol = Tolerance::default();
    if let (Loss::KlDiv { log_target, .. }, Some(t)) = (*loss, args.target.dense()) {
        let term = |p: f32, t: f32| {
            let (p, t) = (f64::from(p).abs(), f64::from(t));
            if log_target {
                t.exp() * (t.abs() + p)
            } else if t > 0.0 {
                t * (t.ln().abs() + p)
            } else {
                0.0
            }
        };
        let scale = args
            .pred
            .iter()
            .zip(t.iter())
            .map(|(&p, &t)| term(p, t))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        tol.loss_scale = Some(scale);
        // The value: a sum of such terms, or their mean.
        let count = if args.reduction == Reduction::Sum {
            args.len() as f64
        } else {
            1.0
        };
        tol.value_scale = Some(scale * count);
    }
    tol
}

/// What soft-capping adds to a row's relative error: each capped logit `y = c·tanh(x/c)` is
/// within 3 ulp of its value (`tanh` and the product `x/c`: src/simd/math.rs tests that), an
/// absolute error of up to `3 · 2^-24 · |y|`, which `e^(y − lse)` turns into a relative error of
/// the softmax of twice that (its own `y` and the row's `lse`): `6 · 2^-24 · max |y|`, with
/// `max |y| ≤ min(c, max |x|)` over the finite logits. 0 without a cap.
pub fn softcap_rtol(loss: &Loss, args: &LossArgs<'_>) -> f64 {
    let Loss::SoftmaxCrossEntropy { softcap, .. } = *loss else {
        return 0.0;
    };
    if softcap == 0.0 {
        return 0.0;
    }
    let x_max = args
        .pred
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    6.0 * f64::from(f32::EPSILON) / 2.0 * x_max.min(f64::from(softcap))
}

/// The tolerance [`check_args`] applies to a row-wise loss: [`row_array_rtol`] (plus
/// [`softcap_rtol`] for a capped softmax), and for cosine proximity the scales of
/// [`cosine_scales`].
pub fn row_tolerance(lanes: RowLanes, loss: &Loss, args: &LossArgs<'_>) -> Tolerance {
    let mut tol = Tolerance {
        array_rtol: row_array_rtol(args.rows_cols().1, lanes) + softcap_rtol(loss, args),
        ..Tolerance::default()
    };
    if let Loss::CosineProximity { eps, .. } = *loss {
        let (grad, losses, value) = cosine_scales(f64::from(eps), args);
        tol.grad_scale = Some(grad);
        tol.loss_scale = Some(losses);
        tol.value_scale = Some(value);
    }
    if let Loss::Jsd {
        beta, temperature, ..
    } = *loss
    {
        let (grad, losses, value) = jsd_scales(f64::from(beta), f64::from(temperature), args);
        tol.grad_scale = Some(grad);
        tol.loss_scale = Some(losses);
        tol.value_scale = Some(value);
    }
    tol
}

/// The scales the Jensen–Shannon divergence's results are compared against (gradient,
/// per-row losses, value). Every f32 path forms `ln P_j = (a_j − ma) − ln SA`,
/// `ln Q_j`, `ln M_j` (a log-add-exp with the constants `ln β`, `ln(1 − β)`) and then the
/// differences `ln P_j − ln M_j`, `ln Q_j − ln M_j`: each carries a rounding error of a few
/// ulp of the *logs* it is a difference of, `|ln P_j| + |ln M_j|` (up to about 40 for
/// logits of ±8 at T = 0.5), not of the (small, for P ≈ Q) difference itself. So:
/// - loss: `ℓ_r = β Σ P (ln P − ln M) + (1 − β) Σ Q (ln Q − ln M)`, scale
///   `s_r = Σ_j (P_j + Q_j)(|ln P_j| + |ln Q_j| + |ln M_j| + 1)` (terms with a zero
///   probability dropped), which for C = 1 (ℓ = 0 exactly, f32 gives ~1e-8) is about 1;
/// - gradient `(w/T) Q_j (ln Q_j − ln M_j − KL)`: scale
///   `|g_r| (w/T) max_j (Q_j + P_j)(|ln P_j| + |ln Q_j| + |ln M_j| + 1 + KL)` (with the mean's
///   1/B in `g_r`; for β = 0, `(Q − P)/T`, the same bound covers `(Q_j + P_j)/T`);
/// - value: `Σ_r s_r` (times 1/B for the mean): the rows' errors are of either sign but not
///   independent (the same constants), so added, not as a random walk.
pub fn jsd_scales(beta: f64, t: f64, args: &LossArgs<'_>) -> (f64, f64, f64) {
    let (b, c) = args.rows_cols();
    let pred: Vec<f64> = args.pred.iter().map(|&v| f64::from(v)).collect();
    let target: Vec<f64> = args
        .target
        .dense()
        .map(|t| t.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    if target.len() != pred.len() || c == 0 {
        return (0.0, 0.0, 0.0);
    }
    let g = match &args.upstream {
        wgpu_loss::Upstream::Scalar(g) => f64::from(*g).abs(),
        _ => 1.0,
    };
    let g_rows: Option<Vec<f64>> = match &args.upstream {
        wgpu_loss::Upstream::Array(a) => Some(a.iter().map(|&v| f64::from(v).abs()).collect()),
        _ => None,
    };
    let mean = match args.reduction {
        Reduction::Mean | Reduction::BatchMean => {
            1.0 / f64::from(args.divisor.unwrap_or(b as f32)).max(1.0)
        }
        _ => 1.0,
    };
    let w = if beta == 1.0 { 1.0 } else { 1.0 - beta };
    let log_softmax = |v: &[f64]| -> Vec<f64> {
        let m = v.iter().map(|x| x / t).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = v.iter().map(|x| (x / t - m).exp()).sum();
        v.iter().map(|x| (x / t - m) - s.ln()).collect()
    };
    let (mut grad, mut losses, mut value) = (0.0f64, 0.0f64, 0.0f64);
    for r in 0..b {
        let (lq, lp) = (
            log_softmax(&pred[r * c..(r + 1) * c]),
            log_softmax(&target[r * c..(r + 1) * c]),
        );
        let fin = |l: f64| if l.is_finite() { l.abs() } else { 0.0 };
        let (mut s_r, mut kl) = (0.0f64, 0.0f64);
        for j in 0..c {
            let (p, q) = (lp[j].exp(), lq[j].exp());
            let m = beta * p + (1.0 - beta) * q;
            s_r += (p + q) * (fin(lp[j]) + fin(lq[j]) + fin(m.ln()) + 1.0);
            if q > 0.0 && beta > 0.0 {
                kl += q * (lq[j] - m.ln());
            }
        }
        let big = (0..c)
            .map(|j| {
                let (p, q) = (lp[j].exp(), lq[j].exp());
                let m = beta * p + (1.0 - beta) * q;
                (p + q) * (fin(lp[j]) + fin(lq[j]) + fin(m.ln()) + 1.0 + fin(kl))
            })
            .fold(0.0f64, f64::max);
        if !s_r.is_finite() {
            continue;
        }
        let g_r = g_rows.as_ref().map_or(g, |a| a[r]);
        grad = grad.max(g_r * mean * (w / t) * big);
        losses = losses.max(s_r);
        value += s_r;
    }
    let value_mean = if matches!(args.reduction, Reduction::Sum) {
        1.0
    } else {
        mean
    };
    (grad, losses, value * value_mean)
}

/// The scales cosine proximity's results are compared against (gradient, per-row losses,
/// value), because each is a sum or difference of larger terms of either sign:
/// - gradient `−g t_j/(‖p‖‖t‖) + g cos p_j/‖p‖²`: two terms of at most `|g_r|/‖p_r‖` each
///   (with the mean's 1/B in `g`), which cancel where p is parallel to t; at C = 1 always (the
///   gradient is 0, the reference's ~1e-17 and f32's ~1e-8/‖p‖). Scale: `max_r 2|g_r|/‖p_r‖`
///   over rows with ‖p_r‖ > ε (the others, `−t/(ε‖t‖)`, cancel nothing).
/// - loss `−Σ_j p_j t_j / (‖p‖‖t‖)`: the dot product's partial sums, and so its rounding,
///   grow like the root-sum-square of its terms, about `1/√C` of `‖p‖‖t‖` for terms of random
///   sign, while a row's cosine can be far smaller. Scale: `max_r √(Σ_j (p_j t_j)²)/(‖p‖‖t‖)`.
/// - value `Σ_r ℓ_r` (or its mean): terms of either sign, whose independent errors add like
///   a random walk. Scale: `√(Σ_r s_r² + ℓ_r²)` (times 1/B for the mean), `s_r` a row's loss
///   scale above.
pub fn cosine_scales(eps: f64, args: &LossArgs<'_>) -> (f64, f64, f64) {
    let (b, c) = args.rows_cols();
    let pred: Vec<f64> = args.pred.iter().map(|&v| f64::from(v)).collect();
    let target: Vec<f64> = args
        .target
        .dense()
        .map(|t| t.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default();
    if target.len() != pred.len() {
        return (0.0, 0.0, 0.0);
    }
    let g = match &args.upstream {
        wgpu_loss::Upstream::Scalar(g) => f64::from(*g).abs(),
        _ => 1.0,
    };
    let g_rows: Option<Vec<f64>> = match &args.upstream {
        wgpu_loss::Upstream::Array(a) => Some(a.iter().map(|&v| f64::from(v).abs()).collect()),
        _ => None,
    };
    let mean = if args.reduction == Reduction::Mean {
        1.0 / b as f64
    } else {
        1.0
    };
    let (mut grad, mut losses, mut value_sq) = (0.0f64, 0.0f64, 0.0f64);
    for r in 0..b {
        let (p, t) = (&pred[r * c..(r + 1) * c], &target[r * c..(r + 1) * c]);
        let np = p.iter().map(|v| v * v).sum::<f64>().sqrt();
        let nt = t.iter().map(|v| v * v).sum::<f64>().sqrt();
        let dot: f64 = p.iter().zip(t).map(|(a, b)| a * b).sum();
        let rss = p
            .iter()
            .zip(t)
            .map(|(a, b)| (a * b).powi(2))
            .sum::<f64>()
            .sqrt();
        let den = np.max(eps) * nt.max(eps);
        if !(den.is_finite() && rss.is_finite()) {
            continue;
        }
        let g_r = g_rows.as_ref().map_or(g, |a| a[r]);
        if np > eps {
            grad = grad.max(2.0 * g_r * mean / np);
        }
        losses = losses.max(rss / den);
        value_sq += (rss / den).powi(2) + (dot / den).powi(2);
    }
    (grad, losses, value_sq.sqrt() * mean)
}

/// The three reductions, in the order the row-wise tests run them.
pub const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

/// Elements one case of the row-wise shape matrix aims at (B·C ≤ this, except where B = 3
/// needs more).
pub const ROW_MATRIX_ELEMENTS: usize = 1 << 19;

/// Rows of a shape-matrix case with rows of `c`: as many as fit in [`ROW_MATRIX_ELEMENTS`],
/// at least 3, odd (a partial last workgroup of rows) for `Mean` and `None`, even for `Sum`
/// where there are more than 3.
pub fn matrix_rows(c: usize, reduction: Reduction) -> usize {
    let b = (ROW_MATRIX_ELEMENTS / c).max(3);
    let odd = if b.is_multiple_of(2) { b - 1 } else { b };
    match reduction {
        Reduction::Sum if odd > 3 => odd - 1,
        _ => odd,
    }
}

/// Probability rows over the last axis: `exp(U(−3, 3))` normalised to sum 1 (in f64, then
/// rounded), so every entry is in (0, 1] and entries of a row differ by up to e^6.
pub fn prob_rows(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let c = *shape.last().expect("rank >= 1");
    let u = synthetic::uniform(shape, -3.0, 3.0, seed);
    let e: Vec<f64> = u.iter().map(|&v| f64::from(v).exp()).collect();
    let mut out = Vec::with_capacity(e.len());
    for row in e.chunks(c.max(1)) {
        let s: f64 = row.iter().sum();
        out.extend(row.iter().map(|&v| (v / s) as f32));
    }
    ArrayD::from_shape_vec(IxDyn(shape), out).expect("same length")
}

/// One-hot probability rows (`shape = [..., C]`), the hot entry seeded.
pub fn one_hot_rows(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let c = *shape.last().expect("rank >= 1");
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let hot = class_rows(&[rows], c, seed);
    let mut out = ArrayD::zeros(IxDyn(&[rows, c]));
    for (r, &k) in hot.iter().enumerate() {
        out[[r, k as usize]] = 1.0f32;
    }
    out.into_shape_with_order(IxDyn(shape))
        .expect("same length")
}

/// Seeded class indices in `[0, c)`, shaped `rows`.
pub fn class_rows(rows: &[usize], c: usize, seed: u64) -> ArrayD<i64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(rows), || rng.random_range(0..c as i64))
}

/// Logits U(−8, 8), the softmax tests' predictions.
pub fn logits(shape: &[usize], seed: u64) -> ArrayD<f32> {
    synthetic::uniform(shape, -8.0, 8.0, seed)
}

/// `#[test]`s `c_<C>` calling `$case(C)` for every row length of the row-wise shape matrix:
/// 1, 2, 3 (one lane per row), 31/32/33 and 255/256/257 (around the group sizes 2 → 4 and
/// 16 → 32 of `group_for`), 1000, 32000 (a vocabulary; rows longer than 4096 are read twice),
/// 128256 (Llama 3's), 262144 (Gemma's).
macro_rules! row_matrix {
    ($case:ident) => {
        row_matrix!(@tests $case;
            c_1 = 1, c_2 = 2, c_3 = 3, c_31 = 31, c_32 = 32, c_33 = 33, c_255 = 255,
            c_256 = 256, c_257 = 257, c_1000 = 1000, c_32000 = 32000, c_128256 = 128256,
            c_262144 = 262144
        );
    };
    (@tests $case:ident; $($name:ident = $c:expr),*) => {
        $(
            #[test]
            #[cfg_attr(skip_gpu_tests, ignore)]
            fn $name() {
                $case($c)
            }
        )*
    };
}

/// The row-wise inputs the cross-cutting tests run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// Categorical cross entropy: probability rows against probability rows.
    Cce,
    /// Softmax cross entropy: logits U(−8, 8) against probability rows.
    SoftmaxProbs,
    /// Softmax cross entropy: logits U(−8, 8) against i64 class indices.
    SoftmaxClasses,
    /// Cosine proximity: U(−3, 3) against U(−3, 3).
    Cosine,
}

/// Every [`RowKind`].
pub const ROW_KINDS: [RowKind; 4] = [
    RowKind::Cce,
    RowKind::SoftmaxProbs,
    RowKind::SoftmaxClasses,
    RowKind::Cosine,
];

/// A row-wise target: floats shaped like the prediction, or class indices shaped like the rows.
#[derive(Clone, Debug)]
pub enum RowTarget {
    /// Float targets.
    Dense(ArrayD<f32>),
    /// Class indices.
    Classes(ArrayD<i64>),
}

/// Seeded inputs of one [`RowKind`].
#[derive(Clone, Debug)]
pub struct RowBatch {
    /// The loss, with default options.
    pub loss: Loss,
    /// The prediction `[..., C]`.
    pub pred: ArrayD<f32>,
    /// The target.
    pub target: RowTarget,
}

impl RowKind {
    /// A short name for case descriptions.
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Cce => "cce",
            RowKind::SoftmaxProbs => "softmax-ce/probs",
            RowKind::SoftmaxClasses => "softmax-ce/classes",
            RowKind::Cosine => "cosine",
        }
    }

    /// Seeded inputs of `shape` (`[..., C]`).
    pub fn batch(self, shape: &[usize], seed: u64) -> RowBatch {
        let c = *shape.last().expect("rank >= 1");
        let rows = &shape[..shape.len() - 1];
        let (s1, s2) = (seed, seed ^ 0x9e37_79b9_7f4a_7c15);
        let (loss, pred, target) = match self {
            RowKind::Cce => (
                Loss::CategoricalCrossEntropy,
                prob_rows(shape, s1),
                RowTarget::Dense(prob_rows(shape, s2)),
            ),
            RowKind::SoftmaxProbs => (
                Loss::softmax_cross_entropy().build().unwrap(),
                logits(shape, s1),
                RowTarget::Dense(prob_rows(shape, s2)),
            ),
            RowKind::SoftmaxClasses => (
                Loss::softmax_cross_entropy().build().unwrap(),
                logits(shape, s1),
                RowTarget::Classes(class_rows(rows, c, s2)),
            ),
            RowKind::Cosine => (
                Loss::cosine_proximity().build().unwrap(),
                synthetic::uniform(shape, -3.0, 3.0, s1),
                RowTarget::Dense(synthetic::uniform(shape, -3.0, 3.0, s2)),
            ),
        };
        RowBatch { loss, pred, target }
    }
}

impl RowBatch {
    /// Arguments with `Mean`, no weights, upstream 1.
    pub fn args(&self) -> LossArgs<'_> {
        match &self.target {
            RowTarget::Dense(t) => LossArgs::new(self.pred.view(), t.view()),
            RowTarget::Classes(k) => LossArgs::new(self.pred.view(), k.view()),
        }
    }
}

/// The elementwise losses of [`Loss::all_default()`], for tests whose premise is elementwise
/// (one loss per element, weights and upstream arrays of the prediction's shape, rank 0);
/// `rows.rs` covers the same ground for the row-wise family.
pub fn elementwise_losses() -> impl Iterator<Item = Loss> {
    Loss::all_default().into_iter().filter(|l| !l.is_row_wise())
}

// ---- Accuracy in ulps ------------------------------------------------------------------------

/// The per-element tolerance of the accuracy tests (`tests/gpu/accuracy.rs`, `tests/cpu.rs`), in
/// f32 ulps of the reference's value.
pub const ULPS: f64 = 4.0;

/// The size of one f32 ulp at `v` (of a normal number; 2^-149 below).
pub fn ulp(v: f64) -> f64 {
    let a = v.abs();
    if a < f64::from(f32::MIN_POSITIVE) {
        return 2f64.powi(-149);
    }
    2f64.powi(a.log2().floor() as i32 - 23)
}

/// Asserts every element of `gpu` within [`ULPS`] ulps of `want`, naming the worst one, and
/// returns the worst error in ulps. A result below the smallest normal f32 may be flushed to 0
/// by the adapter (llvmpipe flushes every subnormal result): there the tolerance is 2^-126
/// absolute.
pub fn assert_ulps(gpu: &ArrayD<f32>, want: &ArrayD<f64>, inputs: &[f32], what: &str) -> f64 {
    assert_ulps_within(gpu, want, inputs, ULPS, what)
}

/// [`assert_ulps`] with a tolerance of `ulps` instead of [`ULPS`].
pub fn assert_ulps_within(
    gpu: &ArrayD<f32>,
    want: &ArrayD<f64>,
    inputs: &[f32],
    ulps: f64,
    what: &str,
) -> f64 {
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in gpu.iter().zip(want.iter()).enumerate() {
        let g = f64::from(g);
        if w.is_infinite() || w.is_nan() {
            assert!(
                g == w || (w.is_nan() && g.is_nan()),
                "{what}: input {:e}: GPU {g:e}, reference {w:e}",
                inputs[i]
            );
            continue;
        }
        let err = (g - w).abs();
        if w.abs() < f64::from(f32::MIN_POSITIVE) && err <= f64::from(f32::MIN_POSITIVE) {
            continue; // a subnormal result the adapter may flush
        }
        let u = err / ulp(w);
        if u > worst.0 {
            worst = (u, i);
        }
    }
    let (u, i) = worst;
    assert!(
        u <= ulps,
        "{what}: input {:e} (bits {:#010x}): GPU {:e}, reference {:e}: {u:.1} ulp > {ulps}",
        inputs[i],
        inputs[i].to_bits(),
        gpu.as_slice().expect("standard layout")[i],
        want.as_slice().expect("standard layout")[i],
    );
    u
}

/// Probabilities covering every binade of f32 in [2^-149, 1]: 64 seeded mantissas per binade
/// (the subnormal range by its bit patterns), the 2^14 floats just below 1, those around ½,
/// and 0 and 1 exactly.
pub fn probabilities() -> Vec<f32> {
    let mut state = seed_for("accuracy/probabilities") | 1;
    let mut next = || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut p = vec![0.0f32, 1.0, f32::from_bits(1), f32::from_bits(0x007f_ffff)];
    for _ in 0..4096 {
        p.push(f32::from_bits((next() as u32) & 0x007f_ffff)); // subnormal
    }
    for e in 1..127u32 {
        for _ in 0..64 {
            p.push(f32::from_bits((e << 23) | (next() as u32 & 0x007f_ffff)));
        }
    }
    let one = 1.0f32.to_bits();
    let half = 0.5f32.to_bits();
    for k in 1..=1u32 << 14 {
        p.push(f32::from_bits(one - k));
        p.push(f32::from_bits(half - k));
        p.push(f32::from_bits(half + k));
    }
    p
}

// ---- Edge cases shared by the GPU and CPU tests ------------------------------------------------

/// Cosine proximity rows at every scale, `(p, t)` of shape `[12, 50]`: U(−3, 3) rows scaled so
/// that unscaled f32 sums of squares overflow (elements of 1e20, 3e37, one element of 2e19 in an
/// ordinary row) or underflow (1e-20 against 1e20, 1e-25 with both below ε), mixed (1e25 against
/// 1e-25), and ordinary rows between. The loss does not depend on the scale of p or of t.
pub fn cosine_scale_rows(seed: u64) -> (ArrayD<f32>, ArrayD<f32>) {
    let (b, c) = (12usize, 50usize);
    let mut p = synthetic::uniform(&[b, c], -3.0, 3.0, seed);
    let mut t = synthetic::uniform(&[b, c], -3.0, 3.0, seed ^ 0x5eed);
    let scales: [(f32, f32); 12] = [
        (1.0, 1.0),
        (1e20, 1.0),
        (1.0, 1e20),
        (3e37, 3e37),
        (1e-20, 1e20),
        (1e25, 1e-25),
        (1e-25, 1e-25),
        (1e-18, 1.0),
        (1.0, 1.0),
        (1e19, 1e19),
        (1.0, 1.0),
        (1e30, 1e-30),
    ];
    for (r, (sp, st)) in scales.into_iter().enumerate() {
        for j in 0..c {
            p[[r, j]] *= sp;
            t[[r, j]] *= st;
        }
    }
    // An ordinary row with one element of 2e19 (its square, 4e38, overflows f32).
    p[[8, 7]] = 2e19;
    t[[10, 3]] = -2e19;
    (p, t)
}

/// Softmax cross entropy rows with infinite logits, `(x, classes, probabilities)` of 8 rows of 6:
/// 0 a +∞ logit off the target, 1 +∞ on the target, 2 every logit −∞, 3 −∞ on the target
/// (ℓ = +∞, a finite gradient), 4 −∞ off the target (finite), 5 ordinary, 6 both +∞ and −∞,
/// 7 a NaN logit. Rows 0, 1, 2, 6 and 7 are NaN (as in PyTorch's `log_softmax`), loss and
/// gradient.
pub fn infinite_logit_rows(seed: u64) -> (ArrayD<f32>, ArrayD<i64>, ArrayD<f32>) {
    let (b, c) = (8usize, 6usize);
    let mut x = logits(&[b, c], seed);
    let classes = ndarray::arr1(&[2i64, 1, 0, 4, 3, 5, 0, 2]).into_dyn();
    let mut t = ArrayD::<f32>::zeros(IxDyn(&[b, c]));
    for r in 0..b {
        t[[r, classes[[r]] as usize]] = 1.0;
    }
    let inf = f32::INFINITY;
    x[[0, 0]] = inf;
    x[[1, 1]] = inf;
    for j in 0..c {
        x[[2, j]] = -inf;
    }
    x[[3, 4]] = -inf;
    x[[4, 0]] = -inf;
    x[[6, 1]] = inf;
    x[[6, 2]] = -inf;
    x[[7, 5]] = f32::NAN;
    (x, classes, t)
}

/// The rows of [`infinite_logit_rows`] whose loss and gradient are NaN.
pub const NAN_LOGIT_ROWS: [usize; 5] = [0, 1, 2, 6, 7];

/// Asserts the NaN pattern of [`infinite_logit_rows`]: the rows of [`NAN_LOGIT_ROWS`] NaN in
/// loss and gradient, row 3's loss +∞ (and row 4's too with label smoothing, which weights its
/// −∞ logit) with a finite gradient, the others finite.
pub fn assert_infinite_logit_pattern(out: &LossOutput<f32>, smoothing: bool, what: &str) {
    let (l, g) = (
        out.losses.as_ref().expect("losses"),
        out.grad.as_ref().expect("grad"),
    );
    for r in 0..l.len() {
        let row = g.index_axis(ndarray::Axis(0), r);
        if NAN_LOGIT_ROWS.contains(&r) {
            assert!(
                l[r].is_nan() && row.iter().all(|v| v.is_nan()),
                "{what}: row {r}: loss {}, gradient {row:?}: want NaN",
                l[r]
            );
        } else {
            let want_inf = r == 3 || (smoothing && r == 4);
            assert!(
                (l[r] == f32::INFINITY) == want_inf && (want_inf || l[r].is_finite()),
                "{what}: row {r}: loss {}",
                l[r]
            );
            assert!(
                row.iter().all(|v| v.is_finite()),
                "{what}: row {r}: {row:?}"
            );
        }
    }
}

/// One case of [`infinite_elementwise_cases`]: `(loss, p, t, w)`.
pub type InfiniteCase = (Loss, ArrayD<f32>, ArrayD<f32>, Option<ArrayD<f32>>);

/// Infinite inputs of the elementwise family, `(loss, p, t, w)` (reduction none; `w` the weight
/// of the BCE losses, or `None`): `p = t = ±∞` for MSE, MAE and Huber (`p − t` is NaN: loss and
/// gradient NaN, whatever `sign` does with it) beside `p = ∞, t = 0`; BCE with logits of `±∞`
/// against `t ∈ {0, ½, 1}` with weights 1 and 0, whose loss is the limit (0, or +∞ where a
/// target weighs on the infinite side), never `∞ − ∞ = NaN`. Checked by
/// [`assert_infinite_elementwise`].
pub fn infinite_elementwise_cases() -> Vec<InfiniteCase> {
    let inf = f32::INFINITY;
    let a = |v: &[f32]| ndarray::arr1(v).into_dyn();
    let mut cases = Vec::new();
    for loss in [
        Loss::Mse,
        Loss::Mae,
        Loss::huber().delta(1.5).build().unwrap(),
    ] {
        cases.push((
            loss,
            a(&[inf, -inf, inf, 1.0]),
            a(&[inf, -inf, 0.0, 0.0]),
            None,
        ));
    }
    let x = a(&[inf, inf, inf, -inf, -inf, -inf, inf, -inf]);
    let t = a(&[0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0]);
    let w = a(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    cases.push((Loss::BceWithLogits, x, t, Some(w)));
    cases
}

/// Asserts the results [`infinite_elementwise_cases`] promise (see there).
pub fn assert_infinite_elementwise(
    loss: &Loss,
    out: &LossOutput<f32>,
    p: &ArrayD<f32>,
    t: &ArrayD<f32>,
    w: Option<&ArrayD<f32>>,
    what: &str,
) {
    let (l, g) = (
        out.losses.as_ref().expect("losses"),
        out.grad.as_ref().expect("grad"),
    );
    for k in 0..p.len() {
        let (pk, tk) = (p[[k]], t[[k]]);
        if *loss == Loss::BceWithLogits {
            let wk = w.map_or(1.0, |w| w[[k]]);
            // The limit: +∞ where a target weighs on the infinite side, else 0.
            let weighs = if pk > 0.0 { tk < 1.0 } else { tk > 0.0 };
            let want = if wk != 0.0 && weighs {
                f32::INFINITY
            } else {
                0.0
            };
            assert_eq!(l[[k]], want, "{what}: x = {pk}, t = {tk}, w = {wk}: loss");
            assert!(
                g[[k]].is_finite(),
                "{what}: x = {pk}, t = {tk}: gradient {}",
                g[[k]]
            );
        } else if (pk - tk).is_nan() {
            assert!(
                l[[k]].is_nan() && g[[k]].is_nan(),
                "{what}: p = t = {pk}: loss {}, gradient {}: want NaN",
                l[[k]],
                g[[k]]
            );
        } else {
            assert!(!g[[k]].is_nan(), "{what}: p = {pk}, t = {tk}: gradient NaN");
        }
    }
}

/// Softmax cross entropy rows of `c` logits (0, −a, ..., −a), one per `a`: confident rows whose
/// loss against class 0 is ln(1 + (c − 1) e^(−a)).
pub fn confident_rows(a: &[f32], c: usize) -> ArrayD<f32> {
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[a.len(), c]));
    for (r, &ar) in a.iter().enumerate() {
        for j in 1..c {
            x[[r, j]] = -ar;
        }
    }
    x
}
