//! `wgpu-loss bench`: the loss kernels, whole GPU calls and the fast CPU path over a sweep of
//! sizes, against the machine's own ceilings measured in the same run.
//!
//! For every loss and size, five paths, each the median of `--repeats` runs after one warm-up:
//! - `gpu-kernel`: one loss-and-gradient step on buffers already on the GPU
//!   ([`KernelStep`]: the GPU-resident API, `Mean`, planned and bound once per shape), timed by
//!   a [`GpuTimer`] per step. With timestamp queries (llvmpipe has them) the step is one
//!   submission of its own: an empty compute pass writing timestamp 0 at its beginning, the
//!   commands `ResidentLoss::record` adds (its atomics' clears and its one compute pass of
//!   dispatches), and an empty pass writing timestamp 1 at its end, so the interval covers
//!   every pass of the step and nothing of the submission or readback. Without timestamps (or
//!   with `--wall-clock`), the host clock around one submission and a blocking wait. The copy
//!   kernel is timed the same way, so the two are comparable.
//! - `gpu`: a whole [`GpuContext::compute`] call (upload, kernels, readback), host clock.
//! - `gpu-into`: a whole [`GpuContext::compute_into`] call, host clock, the gradient read
//!   back into the array the `cpu` path writes (allocated once per point): `gpu` less the
//!   first touch of a fresh gradient's pages.
//! - `cpu`: a whole [`wgpu_loss::cpu::compute_into`] call (f32, every core), host clock, the
//!   gradient written into an array allocated once per point (as the kernel path's buffers
//!   are): a fresh gradient ([`wgpu_loss::cpu::compute`]) would also time the operating
//!   system mapping in and zeroing its pages, about as long as the loss itself at 2^24
//!   elements and more.
//! - `reference`: the f64 reference ([`wgpu_loss::reference::compute`]), host clock, the
//!   median of at most 3 runs without warm-up (it is slow and needs none).
//!
//! Throughput is the effective GB/s of the minimum traffic (4 bytes × (prediction + target +
//! gradient elements); class-index targets count 4 bytes per row), and that as a percentage of
//! the ceiling: for the GPU paths the WGSL copy kernel ([`CopyKernel::new`], 64 MiB,
//! one read and one write), timed once at the start and then again right before each timed
//! kernel step, so each point's ceiling is the median of the copies interleaved with it (a
//! shared machine's speed drifts by up to 2× over minutes; the pairs drift together); for the
//! CPU paths a multi-threaded host `copy_from_slice`.
//! For the kernel path, also the percentage of the bound of the passes it runs
//! ([`KernelStep::pass_bytes`]: long rows are read twice) at the copy kernel's bandwidth.
//! Ratios `A/B` say how many times faster `A` is than `B` (B's time over A's).
//!
//! [`prepare`] checks everything that can fail on bad input before any work, without a GPU:
//! the repeats, every point's size against one GPU call and the sweep's peak memory against
//! the machine's, and the `--json` / `--plot` outputs, whose temporary files it creates
//! ([`super::output`]); [`execute`] runs the sweep and commits the outputs at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayD;
use rayon::prelude::*;
use serde_json::json;
use wgpu_loss::losses::LossInfo;
use wgpu_loss::{
    ContextOptions, Dtype, GpuContext, Loss, LossArgs, LossOutput, cpu, reference, synthetic,
};

mod copy;
mod kernel_step;
mod timing;

pub use copy::{COPY_VEC4S_PER_LANE, CopyKernel, CopyTiming};
pub use kernel_step::KernelStep;
pub use timing::{GpuTimer, TimingMethod};

use crate::output::{self, Outputs};
use crate::{
    BASE_BYTES, BYTES_PER_ELEMENT, Failure, MAX_ELEMENTS, check_memory, check_repeats, row_elements,
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A small sweep (2^16 and 2^20 elements, one 128 x 8192 row shape, 3 repeats) that
    /// finishes in under a minute on a software adapter.
    #[arg(long)]
    quick: bool,
    /// Only these losses, comma-separated (default: all), each a name or a name with options,
    /// `NAME:OPTION=VALUE[:OPTION=VALUE...]` (e.g. `softmax-ce:softcap=30:z-loss=1e-4`); the
    /// loss names and their options are in `wgpu-loss --help`. `:lse` (softmax-ce) also writes
    /// each row's log-sum-exp, as `compute --lse-out` does.
    #[arg(long, value_parser = parse_variant, value_delimiter = ',')]
    losses: Vec<Variant>,
    /// The language-model sweep: softmax cross entropy plain and with each of its options
    /// (label smoothing 0.1, z-loss 1e-4, soft cap 30, the log-sum-exp output), distillation
    /// at T = 2 and the
    /// Jensen-Shannon divergence at beta = 0.5, over rows of 4096 x 32000 and 256 x 128256
    /// (or --rows).
    #[arg(long, conflicts_with_all = ["losses", "sizes", "quick"])]
    lm: bool,
    /// Timed runs per loss, size and path (1 to 1000000), after one warm-up; the median is
    /// reported (default 5, 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// Write the records as a JSON array here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput (GB/s) against size, per loss, GPU and CPU, as an SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Seed of the synthetic batches.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Time the kernels by the host clock around a submission and a wait, even where the
    /// device has timestamp queries.
    #[arg(long)]
    wall_clock: bool,
    /// Storage of the kernel path's prediction, dense target and gradient (the inputs are
    /// rounded to it); the other paths stay f32. f16 and bf16 halve the bytes moved.
    #[arg(long, value_enum, default_value_t = DtypeName::F32)]
    dtype: DtypeName,
    /// Elementwise sizes to sweep instead of the default 2^10..2^26 (2^16, 2^20 with
    /// --quick), comma-separated element counts (each fewer than 2^32 - 1).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Row-wise shapes to sweep instead of the default 4096x1000, 1024x32000, 256x128256
    /// (128x8192 with --quick), comma-separated `BxC` (rows x classes), e.g. 4096x128256
    /// (B x C fewer than 2^32 - 1).
    #[arg(long, value_delimiter = ',', value_parser = parse_row_shape)]
    rows: Vec<[usize; 2]>,
    /// Caps every size at this many elements (fewer rows for the row-wise shapes); for tests.
    #[arg(long, hide = true)]
    max_elements: Option<usize>,
    /// Forces the kernels' main-loop shape (`ContextOptions::unroll`); for tuning.
    #[arg(long, hide = true)]
    unroll: Option<bool>,
    /// Splits the rows of softmax cross entropy, cce and distillation longer than this many
    /// elements across workgroups (`ContextOptions::split_rows`; a number larger than any
    /// row never splits); for tuning.
    #[arg(long, hide = true)]
    split_rows: Option<usize>,
}

/// A loss of the sweep with its options, and how the tables name it: its name, then each
/// option given (`softmax-ce softcap=30`).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    loss: Loss,
    label: String,
    /// Each row's log-sum-exp written too (`:lse`).
    lse: bool,
}

impl Variant {
    /// A loss with its default options, named by its name.
    fn plain(loss: Loss) -> Variant {
        Variant {
            loss,
            label: loss.name().to_string(),
            lse: false,
        }
    }
}

/// `--losses`: `NAME` (or an alias) or `NAME:OPTION=VALUE[:...]`, the options those of
/// `compute --OPTION VALUE`, validated as the loss's builder validates them.
fn parse_variant(s: &str) -> Result<Variant, String> {
    let mut parts = s.split(':');
    let name = parts.next().unwrap_or_default();
    let info = LossInfo::named(name).ok_or_else(|| {
        let names: Vec<&str> = LossInfo::all().map(|i| i.name()).collect();
        format!("no loss named `{name}` (the losses: {})", names.join(", "))
    })?;
    let mut options: Vec<(&'static str, wgpu_loss::losses::OptionValue)> = Vec::new();
    let mut label = info.name().to_string();
    let mut lse = false;
    for part in parts {
        if part == "lse" {
            if !info.has_lse() {
                return Err(format!(
                    "`lse`: the per-row log-sum-exp is an output of softmax-ce; {} has none",
                    info.name()
                ));
            }
            if lse {
                return Err("lse is given twice".into());
            }
            lse = true;
            label += " lse";
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: an option is OPTION=VALUE"))?;
        let option = info
            .options()
            .iter()
            .find(|o| o.name == key)
            .ok_or_else(|| {
                let names: Vec<&str> = info.options().iter().map(|o| o.name).collect();
                format!(
                    "{} has no option `{key}` (its options: {})",
                    info.name(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })?;
        let v = if option.integer {
            value
                .parse::<i64>()
                .map(wgpu_loss::losses::OptionValue::Int)
                .map_err(|_| format!("{key}: `{value}` is not an integer"))?
        } else {
            value
                .parse::<f64>()
                .map(wgpu_loss::losses::OptionValue::Float)
                .map_err(|_| format!("{key}: `{value}` is not a number"))?
        };
        if options.iter().any(|(n, _)| *n == option.name) {
            return Err(format!("{key} is given twice"));
        }
        options.push((option.name, v));
        label += &format!(" {key}={value}");
    }
    let loss = info
        .build(&|n: &str| options.iter().find(|(k, _)| *k == n).map(|&(_, v)| v))
        .map_err(|e| e.to_string())?;
    Ok(Variant { loss, label, lse })
}

/// The variants of `--lm`.
const LM_VARIANTS: [&str; 7] = [
    "softmax-ce",
    "softmax-ce:label-smoothing=0.1",
    "softmax-ce:z-loss=1e-4",
    "softmax-ce:softcap=30",
    "softmax-ce:lse",
    "distill:temperature=2",
    "jsd:beta=0.5",
];

/// The row shapes of `--lm`.
const LM_ROW_SHAPES: [[usize; 2]; 2] = [[4096, 32_000], [256, 128_256]];

/// `--sizes`: a positive element count.
fn parse_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("a size must be at least 1 element".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not an element count: {e}")),
    }
}

/// `--rows`: `BxC`, both at least 1.
fn parse_row_shape(s: &str) -> Result<[usize; 2], String> {
    let bad = |why: &str| format!("`{s}` is not a row shape BxC (e.g. 4096x128256): {why}");
    let (b, c) = s
        .trim()
        .split_once(['x', 'X'])
        .ok_or_else(|| bad("no `x`"))?;
    let dim = |d: &str| {
        d.parse::<usize>()
            .map_err(|e| bad(&e.to_string()))
            .and_then(|n| {
                if n == 0 {
                    Err(bad("a dimension is 0"))
                } else {
                    Ok(n)
                }
            })
    };
    Ok([dim(b)?, dim(c)?])
}

/// Row-wise shapes `[B, C]` of the full sweep: an image classifier, a language-model head,
/// a large-vocabulary head.
const ROW_SHAPES: [[usize; 2]; 3] = [[4096, 1000], [1024, 32_000], [256, 128_256]];
/// The row-wise shape of `--quick`.
const QUICK_ROW_SHAPE: [usize; 2] = [128, 8192];
/// Bytes of the host copy ceiling (source and destination each); a quarter with `--quick`.
const HOST_COPY_BYTES: usize = 256 << 20;
/// Elements of the copy kernel's buffers (256 MiB: well past a discrete GPU's last-level
/// cache, 50 MiB on an H100), a sixteenth with `--quick`; capped at one storage binding
/// (128 MiB on llvmpipe).
const GPU_COPY_ELEMENTS: usize = 1 << 26;
/// Windows of the spin-up before each point's kernel steps (see [`spin_up`]): at least
/// `SPIN_WINDOWS.0`, at most `SPIN_WINDOWS.1`, each of `SPIN_WINDOW`.
const SPIN_WINDOWS: (usize, usize) = (2, 20);
const SPIN_WINDOW: Duration = Duration::from_millis(100);
/// The spin-up stops once a window's median copy time is within this of the previous one's.
const SPIN_STEADY: f64 = 0.02;
/// Most timed runs of the f64 reference per point (it is slow; its spread is small).
const REFERENCE_REPEATS: usize = 3;

/// The paths, in table and plot order.
const KERNEL: &str = "gpu-kernel";
const CALL: &str = "gpu";
const INTO: &str = "gpu-into";
const CPU: &str = "cpu";
const REFERENCE: &str = "reference";

/// The storage types the kernel path can use (`--dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeName {
    /// IEEE binary32.
    F32,
    /// IEEE binary16, two per word.
    F16,
    /// bfloat16, two per word.
    Bf16,
}

impl DtypeName {
    fn dtype(self) -> Dtype {
        match self {
            DtypeName::F32 => Dtype::F32,
            DtypeName::F16 => Dtype::F16,
            DtypeName::Bf16 => Dtype::Bf16,
        }
    }
}

/// One measured point.
struct Record {
    /// The loss's name, and its options where not the defaults ([`Variant`]).
    loss: String,
    shape: Vec<usize>,
    path: &'static str,
    adapter: String,
    /// `timestamps` (device clock) or `wall-clock` (host clock).
    timing: &'static str,
    /// Storage of the prediction, dense target and gradient.
    dtype: &'static str,
    median: Duration,
    bytes: u64,
    ceiling_gbps: f64,
    /// The traffic of the passes the kernel path runs (`KernelStep::pass_bytes`).
    pass_bytes: Option<u64>,
    /// For the `gpu` path: how far its result is from the f64 reference's.
    check: Option<Agreement>,
}

/// Above this, the bench warns that the GPU call and the reference disagree. A sanity flag,
/// not the tests' tolerance: f32 tree sums of up to 2^29 terms stay within about 1e-5.
const AGREEMENT: f64 = 1e-3;

/// How far a GPU result is from the reference's: the value's relative error and the
/// gradient's largest absolute error over its largest magnitude (NaN where either is NaN).
#[derive(Clone, Copy, Debug, Default)]
struct Agreement {
    value: f64,
    grad: f64,
}

impl Agreement {
    fn of(gpu: &LossOutput<f32>, reference: &LossOutput<f64>) -> Self {
        let value = match (gpu.value, reference.value) {
            (Some(g), Some(r)) => (f64::from(g) - r).abs() / r.abs().max(f64::MIN_POSITIVE),
            _ => 0.0,
        };
        let grad = match (&gpu.grad, &reference.grad) {
            (Some(g), Some(r)) => {
                let (err, scale) = g
                    .as_slice_memory_order()
                    .zip(r.as_slice_memory_order())
                    .map(|(g, r)| {
                        g.par_iter()
                            .zip(r.par_iter())
                            .map(|(&g, &r)| ((f64::from(g) - r).abs(), r.abs()))
                            .reduce(|| (0.0, 0.0), |a, b| (nan_max(a.0, b.0), a.1.max(b.1)))
                    })
                    .unwrap_or((f64::NAN, 1.0));
                err / scale.max(f64::MIN_POSITIVE)
            }
            _ => 0.0,
        };
        Agreement { value, grad }
    }

    fn within(&self, tol: f64) -> bool {
        self.value <= tol && self.grad <= tol
    }

    /// The worse of the two in each part, NaN winning.
    fn max(self, other: Self) -> Self {
        Agreement {
            value: nan_max(self.value, other.value),
            grad: nan_max(self.grad, other.grad),
        }
    }
}

/// `a.max(b)`, except that NaN wins (a disagreement must not vanish in a maximum).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

impl Record {
    fn gbps(&self) -> f64 {
        gbps(self.bytes, self.median)
    }

    fn percent(&self) -> f64 {
        100.0 * self.gbps() / self.ceiling_gbps
    }

    fn percent_of_pass_bound(&self) -> Option<f64> {
        self.pass_bytes
            .map(|b| 100.0 * gbps(b, self.median) / self.ceiling_gbps)
    }

    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "loss": self.loss,
            "shape": self.shape,
            "elements": self.elements(),
            "path": self.path,
            "adapter": self.adapter,
            "timing": self.timing,
            "dtype": self.dtype,
            "median_ms": self.median.as_secs_f64() * 1e3,
            "bytes": self.bytes,
            "gbps": self.gbps(),
            "ceiling_gbps": self.ceiling_gbps,
            "percent_of_ceiling": self.percent(),
        });
        if let Some(c) = self.check {
            v["value_rel_err"] = json!(c.value);
            v["grad_max_err"] = json!(c.grad);
        }
        if let (Some(b), Some(p)) = (self.pass_bytes, self.percent_of_pass_bound()) {
            v["pass_bytes"] = json!(b);
            v["percent_of_pass_bound"] = json!(p);
        }
        v
    }
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-12) / 1e9
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The median of `repeats` runs of `f`, each returning its own duration, after `warmup` runs.
fn median_of<E>(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<Duration, E>,
) -> Result<Duration, E> {
    for _ in 0..warmup {
        f()?;
    }
    let times = (0..repeats.max(1))
        .map(|_| f())
        .collect::<Result<Vec<_>, E>>()?;
    Ok(median(times))
}

/// Keeps the GPU busy with the copy kernel, untimed, until its speed is steady: a GPU left
/// idle while the host ran the previous point's CPU paths lowers its clocks (an H100 under
/// Vulkan dropped its SM clock from 1980 to 345 MHz within a second, and the copy kernel's
/// bandwidth from 2.8 to 1.6 TB/s). Runs windows of [`SPIN_WINDOW`] until one's median copy
/// time is within [`SPIN_STEADY`] of the previous window's, between the bounds of
/// [`SPIN_WINDOWS`] (0.2 to 2 s).
fn spin_up(ctx: &GpuContext, timer: &mut GpuTimer, copy: &CopyKernel) -> wgpu_loss::Result<()> {
    let mut last: Option<Duration> = None;
    for k in 0..SPIN_WINDOWS.1 {
        let t0 = Instant::now();
        let mut times = Vec::new();
        while t0.elapsed() < SPIN_WINDOW || times.is_empty() {
            times.push(timer.time(ctx, |encoder| {
                copy.record(encoder);
                Ok(())
            })?);
        }
        let now = median(times);
        if let Some(prev) = last
            && k + 1 >= SPIN_WINDOWS.0
            && (now.as_secs_f64() / prev.as_secs_f64() - 1.0).abs() <= SPIN_STEADY
        {
            break;
        }
        last = Some(now);
    }
    Ok(())
}

/// The median host-clock time of `repeats` runs of `f`, after `warmup` runs.
fn time<E>(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Duration, E> {
    median_of(warmup, repeats, || {
        let t0 = Instant::now();
        f()?;
        Ok(t0.elapsed())
    })
}

/// Host memory bandwidth: `copy_from_slice` of `bytes` in 1 MiB pieces on every core, median
/// of `repeats`, counting one read and one write.
fn host_copy_gbps(bytes: usize, repeats: usize) -> f64 {
    let n = bytes / 4;
    let src: Vec<f32> = (0..n).into_par_iter().map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    const PIECE: usize = 1 << 18;
    let t = time::<()>(1, repeats, || {
        dst.par_chunks_mut(PIECE)
            .zip(src.par_chunks(PIECE))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
        Ok(())
    })
    .expect("infallible");
    gbps(2 * (n * 4) as u64, t)
}

/// The shapes swept for `loss`: `--sizes` / `--rows` where given, else the defaults.
fn shapes(loss: &Loss, a: &BenchArgs) -> Vec<Vec<usize>> {
    let cap = a.max_elements.unwrap_or(usize::MAX).max(1);
    if loss.is_row_wise() {
        let rows: &[[usize; 2]] = if !a.rows.is_empty() {
            &a.rows
        } else if a.lm {
            &LM_ROW_SHAPES
        } else if a.quick {
            &[QUICK_ROW_SHAPE]
        } else {
            &ROW_SHAPES
        };
        rows.iter()
            .map(|&[b, c]| vec![b.min((cap / c).max(1)), c])
            .collect()
    } else {
        let sizes: Vec<usize> = if !a.sizes.is_empty() {
            a.sizes.clone()
        } else if a.quick {
            vec![1 << 16, 1 << 20]
        } else {
            (10..=26).step_by(2).map(|e| 1usize << e).collect()
        };
        let mut v: Vec<Vec<usize>> = sizes
            .into_iter()
            .filter(|&n| n <= cap)
            .map(|n| vec![n])
            .collect();
        if v.is_empty() {
            v.push(vec![cap]);
        }
        v
    }
}

/// `a/b` for the table: how many times faster the path of time `a` is than that of `b`.
fn speedup(faster: Duration, slower: Duration) -> f64 {
    slower.as_secs_f64() / faster.as_secs_f64().max(1e-12)
}

/// Host bytes per row of a row-wise point beyond its elements (class indices, their upload,
/// the reference's per-row values).
const BYTES_PER_ROW: u64 = 32;

/// The checked sweep: what [`execute`] runs.
pub struct Prepared {
    /// Timed runs per loss, size and path.
    repeats: usize,
    /// Every loss and shape of the sweep, in order, each within one GPU call.
    points: Vec<(Variant, Vec<usize>)>,
    /// `--json` then `--plot`, those given, with their temporary files.
    outputs: Outputs,
    /// The index of `--json` in `outputs`.
    json_k: Option<usize>,
    /// The index of `--plot` in `outputs`.
    plot_k: Option<usize>,
}

/// The flag that asked for `shape` (`--sizes N`, `--rows BxC`), or the default sweep's point.
fn point_name(loss: &Loss, shape: &[usize], a: &BenchArgs) -> String {
    let s = shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x");
    match (loss.is_row_wise(), a.rows.is_empty(), a.sizes.is_empty()) {
        (true, false, _) => format!("--rows {s}"),
        (false, _, false) => format!("--sizes {s}"),
        _ => format!("bench point {} {s}", loss.name()),
    }
}

/// Everything that can fail on bad input, before any work and without a GPU: `--repeats` and
/// `--max-elements` at least 1 (and the repeats at most [`crate::MAX_REPEATS`]: `check_repeats`,
/// the main job's rule and message); every point within one GPU call ([`MAX_ELEMENTS`], no
/// overflow); the sweep's peak host memory (its largest point, plus the copy ceilings'
/// buffers) within what the machine has; the outputs checked and their temporary files
/// created.
pub(crate) fn prepare(a: &BenchArgs) -> Result<Prepared, Failure> {
    let repeats = a.repeats.unwrap_or(if a.quick { 3 } else { 5 });
    check_repeats(repeats)?;
    if a.max_elements == Some(0) {
        return Err(Failure::input("--max-elements must be at least 1"));
    }
    let losses: Vec<Variant> = if a.lm {
        LM_VARIANTS
            .iter()
            .map(|v| parse_variant(v).map_err(Failure::input))
            .collect::<Result<_, _>>()?
    } else if a.losses.is_empty() {
        Loss::all_default()
            .into_iter()
            .map(Variant::plain)
            .collect()
    } else {
        let mut v: Vec<Variant> = Vec::new();
        // The same loss and outputs given twice (in any spelling) is run once.
        for l in &a.losses {
            if !v.iter().any(|w| w.loss == l.loss && w.lse == l.lse) {
                v.push(l.clone());
            }
        }
        v
    };
    let points: Vec<(Variant, Vec<usize>)> = losses
        .iter()
        .flat_map(|l| shapes(&l.loss, a).into_iter().map(move |s| (l.clone(), s)))
        .collect();
    let mut largest: Option<(String, u64)> = None;
    for (variant, shape) in &points {
        let loss = &variant.loss;
        let name = point_name(loss, shape, a);
        let (rows, n) = match shape[..] {
            [b, c] if loss.is_row_wise() => (b as u64, row_elements(&name, b, c)?),
            _ => {
                let n = shape.iter().product::<usize>() as u64;
                if n > MAX_ELEMENTS {
                    return Err(Failure::input(format!(
                        "{name}: at most {MAX_ELEMENTS} elements (the GPU path takes fewer than \
                         2^32 - 1 elements per call)"
                    )));
                }
                (0, n)
            }
        };
        // n < 2^32 and rows ≤ n: no overflow below.
        let bytes = n * BYTES_PER_ELEMENT + rows * BYTES_PER_ROW;
        if largest.as_ref().is_none_or(|l| bytes > l.1) {
            largest = Some((name, bytes));
        }
    }
    if let Some((name, bytes)) = largest {
        let scale = if a.quick { 4 } else { 1 };
        let ceilings = 2 * (4 * GPU_COPY_ELEMENTS / (scale * scale) + HOST_COPY_BYTES / scale);
        check_memory(&name, "bench", bytes + ceilings as u64 + BASE_BYTES)?;
    }
    let mut outs: Vec<(&str, &Path)> = Vec::new();
    let json_k = a.json.as_deref().map(|p| {
        outs.push(("--json", p));
        outs.len() - 1
    });
    let plot_k = a.plot.as_deref().map(|p| {
        outs.push(("--plot", p));
        outs.len() - 1
    });
    let outputs = output::plan(&outs, &[])?;
    Ok(Prepared {
        repeats,
        points,
        outputs,
        json_k,
        plot_k,
    })
}

/// `bench`: [`prepare`], then [`execute`].
pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    let p = prepare(a)?;
    execute(a, p)
}

/// Runs the sweep, prints the table, writes and commits `--json` and `--plot`.
pub(crate) fn execute(a: &BenchArgs, mut p: Prepared) -> Result<(), Failure> {
    let (repeats, points) = (p.repeats, std::mem::take(&mut p.points));
    let ctx = GpuContext::with_options(ContextOptions {
        unroll: a.unroll,
        split_rows: a.split_rows,
        ..Default::default()
    })?;
    // A row must fit one storage binding of this adapter (known only now).
    let binding = ctx.max_chunk_elements();
    if let Some((v, shape)) = points
        .iter()
        .find(|(v, s)| v.loss.is_row_wise() && s.last().is_some_and(|&c| c > binding))
    {
        return Err(Failure::input(format!(
            "{}: a row longer than one storage binding of this adapter ({binding} elements)",
            point_name(&v.loss, shape, a)
        )));
    }
    let adapter = ctx.adapter_summary();
    // The loss column: as wide as the longest label.
    let lw = points
        .iter()
        .map(|(v, _)| v.label.len())
        .max()
        .unwrap_or(0)
        .max(16);
    let host = format!("host CPU ({} threads)", rayon::current_num_threads());
    let mut timer = if a.wall_clock {
        GpuTimer::wall_clock()
    } else {
        GpuTimer::new(&ctx)
    };
    let method = timer.method();
    let dtype = a.dtype.dtype();
    let bar = ProgressBar::new(2 + 4 * points.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );

    bar.set_message("ceiling: copy kernel");
    let scale = if a.quick { 4 } else { 1 };
    let copy_kernel = CopyKernel::new(&ctx, GPU_COPY_ELEMENTS / (scale * scale))?;
    let copy = copy_kernel.time(&ctx, &mut timer, repeats.max(5))?;
    let start_ceiling = copy.gbps();
    bar.inc(1);
    bar.set_message("ceiling: host copy");
    let cpu_ceiling = host_copy_gbps(HOST_COPY_BYTES / scale, repeats.max(3));
    bar.inc(1);

    bar.suspend(|| {
        println!("adapter: {adapter}");
        println!("host: {host}");
        println!(
            "ceilings (one read + one write): copy kernel {start_ceiling:.2} GB/s over {} MiB on the adapter \
             ({}, {} workgroups); host copy_from_slice {cpu_ceiling:.2} GB/s over {} MiB",
            (copy.bytes_moved / 2) >> 20,
            method.name(),
            copy_kernel.workgroups(),
            (HOST_COPY_BYTES / scale) >> 20
        );
        let period = timer
            .period_ns()
            .map_or(String::new(), |p| format!(", {p} ns per tick"));
        println!("kernel timing: {}: {}{period}", method.name(), method.describe());
        println!(
            "times: medians of {repeats} runs after a warm-up; kern = one loss step on GPU-resident buffers \
             (value and gradient; p, t and gradient stored as {}); call = a whole GpuContext::compute (upload, kernels, readback); \
             into = a whole GpuContext::compute_into (the same, the gradient into an array allocated once per row); CPU = wgpu_loss::cpu::compute_into (f32, every core, into a gradient array allocated once per row); ref = the f64 reference (at most {REFERENCE_REPEATS} runs)",
            dtype.name()
        );
        println!(
            "GB/s counts the minimum traffic (4 B x (pred + target + grad), 2 B for f16/bf16 kernels, class targets 4 B per row); \
             copy GB/s: the copy kernel timed alternately with each row's kernel steps (the machine's \
             speed drifts), the ceiling of that row's % copy; % pass: of the bound of the passes the \
             kernels run (long rows are read twice); % host: of the host copy; A/B: how many times \
             faster A is than B"
        );
        println!(
            "{:<lw$} {:>12} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8} {:>8}",
            "loss",
            "shape",
            "copy GB/s",
            "kern ms",
            "kern GB/s",
            "% copy",
            "% pass",
            "call ms",
            "% copy",
            "into ms",
            "CPU ms",
            "CPU GB/s",
            "% host",
            "ref ms",
            "CPU/ref",
            "kern/CPU",
            "call/CPU"
        );
    });

    let mut records: Vec<Record> = Vec::new();
    let mut ceilings: Vec<f64> = Vec::new();
    let mut worst = Agreement::default();
    for (k, (variant, shape)) in points.iter().enumerate() {
        let (loss, label) = (&variant.loss, variant.label.as_str());
        let shape_s = shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let seed = a.seed.wrapping_add(k as u64);
        let batch = synthetic::batch(loss, shape, seed);
        let classes: Option<ArrayD<i64>> = loss
            .takes_classes()
            .then(|| synthetic::classes(&shape[..1], shape[1], seed));
        let args = match &classes {
            Some(c) => LossArgs::new(batch.pred.view(), c.view()),
            None => LossArgs::new(batch.pred.view(), batch.target.view()),
        }
        .want_lse(variant.lse);

        bar.set_message(format!("{label} {shape_s}: GPU kernels"));
        // Each step is timed right after a copy-kernel dispatch: the pair sees the same
        // machine, whose speed drifts (a shared host, a software adapter).
        let (kern_t, bytes, pass_bytes, gpu_ceiling) = {
            let mut step = KernelStep::with_dtype(&ctx, loss, &args, dtype)?;
            // The host has just spent up to seconds on the previous point's CPU paths, with
            // the GPU idle: bring its clocks back up before timing it.
            spin_up(&ctx, &mut timer, &copy_kernel)?;
            let mut copies = Vec::with_capacity(repeats + 1);
            let t = median_of(1, repeats, || {
                copies.push(timer.time(&ctx, |encoder| {
                    copy_kernel.record(encoder);
                    Ok(())
                })?);
                timer.time(&ctx, |encoder| step.record(&ctx, encoder))
            })?;
            let ceiling = gbps(copy_kernel.bytes_moved(), median(copies));
            (t, step.min_bytes(), step.pass_bytes(), ceiling)
        };
        ceilings.push(gpu_ceiling);
        bar.inc(1);
        bar.set_message(format!("{label} {shape_s}: GPU calls"));
        let mut call_out = None;
        let call_t = time(1, repeats, || {
            call_out = Some(ctx.compute(loss, &args)?);
            Ok::<(), wgpu_loss::Error>(())
        })?;
        // The gradient buffer of the calls into one is allocated once per point, as the
        // kernel path's.
        let mut grad = ArrayD::<f32>::zeros(batch.pred.shape());
        let into_t = time(1, repeats, || {
            ctx.compute_into(loss, &args, grad.view_mut()).map(drop)
        })?;
        bar.inc(1);
        bar.set_message(format!("{label} {shape_s}: fast CPU path"));
        let cpu_t = time(1, repeats, || {
            cpu::compute_into(loss, &args, grad.view_mut()).map(drop)
        })?;
        drop(grad);
        bar.inc(1);
        bar.set_message(format!("{label} {shape_s}: f64 reference"));
        let mut ref_out = None;
        let ref_t = time(0, repeats.min(REFERENCE_REPEATS), || {
            ref_out = Some(reference::compute(loss, &args)?);
            Ok::<(), wgpu_loss::Error>(())
        })?;
        bar.inc(1);
        let check = call_out
            .zip(ref_out)
            .map(|(g, r)| Agreement::of(&g, &r))
            .unwrap_or_default();
        if !check.within(AGREEMENT) {
            bar.suspend(|| {
                eprintln!(
                    "warning: {label} {shape_s}: the GPU call and the f64 reference disagree: value {:.3e} \
                     relative, gradient {:.3e} of its largest magnitude",
                    check.value,
                    check.grad
                )
            });
        }
        worst = worst.max(check);

        let kern = Record {
            loss: label.to_string(),
            shape: shape.clone(),
            path: KERNEL,
            adapter: adapter.clone(),
            timing: method.name(),
            dtype: dtype.name(),
            median: kern_t,
            bytes,
            ceiling_gbps: gpu_ceiling,
            pass_bytes: Some(pass_bytes),
            check: None,
        };
        let n = batch.pred.len() as u64;
        let f32_bytes = 4 * (2 * n + classes.as_ref().map_or(n, |c| c.len() as u64));
        let call = Record {
            path: CALL,
            timing: TimingMethod::WallClock.name(),
            dtype: Dtype::F32.name(),
            bytes: f32_bytes,
            median: call_t,
            pass_bytes: None,
            shape: shape.clone(),
            adapter: adapter.clone(),
            check: Some(check),
            loss: label.to_string(),
            ..kern
        };
        let into = Record {
            path: INTO,
            median: into_t,
            shape: shape.clone(),
            adapter: adapter.clone(),
            check: None,
            loss: label.to_string(),
            ..call
        };
        let cpu = Record {
            path: CPU,
            adapter: host.clone(),
            median: cpu_t,
            ceiling_gbps: cpu_ceiling,
            shape: shape.clone(),
            check: None,
            loss: label.to_string(),
            ..call
        };
        let reference = Record {
            path: REFERENCE,
            median: ref_t,
            shape: shape.clone(),
            adapter: host.clone(),
            loss: label.to_string(),
            ..cpu
        };
        bar.suspend(|| {
            println!(
                "{:<lw$} {:>12} {:>9.2} {:>9.3} {:>9.2} {:>6.1} {:>6.1} {:>9.3} {:>6.1} {:>9.3} {:>9.3} {:>9.2} {:>6.1} {:>9.2} {:>8.1} {:>8.2} {:>8.2}",
                label,
                shape_s,
                gpu_ceiling,
                kern.median.as_secs_f64() * 1e3,
                kern.gbps(),
                kern.percent(),
                kern.percent_of_pass_bound().unwrap_or(f64::NAN),
                call.median.as_secs_f64() * 1e3,
                call.percent(),
                into.median.as_secs_f64() * 1e3,
                cpu.median.as_secs_f64() * 1e3,
                cpu.gbps(),
                cpu.percent(),
                reference.median.as_secs_f64() * 1e3,
                speedup(cpu.median, reference.median),
                speedup(kern.median, cpu.median),
                speedup(call.median, cpu.median),
            )
        });
        records.extend([kern, call, into, cpu, reference]);
    }
    bar.finish_and_clear();
    println!(
        "check: the GPU call's value and gradient against the f64 reference at every point: worst \
         value {:.2e} relative, gradient {:.2e} of its largest magnitude{}",
        worst.value,
        worst.grad,
        if worst.within(AGREEMENT) {
            String::new()
        } else {
            format!(" (over {AGREEMENT:.0e}: see the warnings above)")
        }
    );
    ceilings.sort_by(f64::total_cmp);
    let gpu_ceiling = ceilings
        .get(ceilings.len() / 2)
        .copied()
        .unwrap_or(start_ceiling);
    if let (Some(lo), Some(hi)) = (ceilings.first(), ceilings.last()) {
        println!(
            "copy kernel over the sweep: median {gpu_ceiling:.2} GB/s, from {lo:.2} to {hi:.2} \
             (start: {start_ceiling:.2})"
        );
    }

    if let Some(s) = p.json_k.and_then(|k| p.outputs.get(k)) {
        let arr: Vec<serde_json::Value> = records.iter().map(Record::to_json).collect();
        let text = serde_json::to_string_pretty(&arr).map_err(Failure::runtime)?;
        s.write_bytes((text + "\n").as_bytes())?;
    }
    if let (Some(k), Some(path)) = (p.plot_k, &a.plot) {
        let svg = plot(&records, &adapter, method, gpu_ceiling, cpu_ceiling)
            .map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
        if let Some(s) = p.outputs.get(k) {
            s.write_bytes(svg.as_bytes())?;
        }
    }
    output::commit(p.outputs)?;
    if let Some(path) = &a.json {
        println!("records written to {}", path.display());
    }
    if let Some(path) = &a.plot {
        println!("plot written to {}", path.display());
    }
    Ok(())
}

/// Throughput against size (log2 of the elements), one colour per loss, in two panels with a
/// shared log-scale GB/s axis: the GPU (kernel path thick with dots, whole calls thin) under the
/// copy kernel's ceiling, and the CPU (fast path thick with dots, the reference thin) under
/// the host copy's. Ceilings are dashed. Returns the SVG's text.
fn plot(
    records: &[Record],
    adapter: &str,
    method: TimingMethod,
    gpu_ceiling: f64,
    cpu_ceiling: f64,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    draw(&mut svg, records, adapter, method, gpu_ceiling, cpu_ceiling)?;
    Ok(svg)
}

/// [`plot`]'s drawing, into `svg`.
fn draw(
    svg: &mut String,
    records: &[Record],
    adapter: &str,
    method: TimingMethod,
    gpu_ceiling: f64,
    cpu_ceiling: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    // x is log2 of the elements, so every tick is a power of two.
    let xs = records.iter().map(|r| (r.elements() as f64).log2());
    let x_lo = xs.clone().fold(f64::INFINITY, f64::min).floor() - 1.0;
    let x_hi = xs.fold(x_lo + 2.0, f64::max).ceil() + 1.0;
    // GB/s spans orders of magnitude (small calls, cache-resident CPU sizes): log scale.
    let ys = records
        .iter()
        .map(Record::gbps)
        .chain([gpu_ceiling, cpu_ceiling])
        .filter(|y| y.is_finite() && *y > 0.0);
    // A decade of room below the lowest point holds the legends.
    let y_lo = ys.clone().fold(f64::INFINITY, f64::min).min(1.0) / 12.0;
    let y_hi = ys.fold(y_lo * 10.0, f64::max) * 1.5;

    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.loss.as_str()) {
            names.push(&r.loss);
        }
    }

    let root = SVGBackend::with_string(svg, (1400, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("wgpu-loss bench: {adapter}"), ("sans-serif", 20))?;
    let panels = root.split_evenly((1, 2));
    let sides = [
        (
            format!(
                "GPU: kernel step ({}, thick) and whole call (thin)",
                method.name()
            ),
            (KERNEL, CALL),
            ("copy kernel (median over the sweep)", gpu_ceiling),
        ),
        (
            "CPU: fast path (thick) and f64 reference (thin)".to_string(),
            (CPU, REFERENCE),
            ("host copy", cpu_ceiling),
        ),
    ];
    for (panel, (title, (thick, thin), (ceiling_name, ceiling))) in panels.iter().zip(sides) {
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("elements (prediction)")
            .y_desc("GB/s of minimum traffic (log scale)")
            .y_label_formatter(&|y| {
                if *y >= 1.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.2}")
                }
            })
            .x_labels((x_hi - x_lo) as usize + 1)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("2^{}", x.round())
                } else {
                    String::new()
                }
            })
            .draw()?;
        chart
            .draw_series(DashedLineSeries::new(
                [(x_lo, ceiling), (x_hi, ceiling)],
                6,
                4,
                BLACK.stroke_width(1),
            ))?
            .label(format!("{ceiling_name} {ceiling:.1} GB/s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            for (dev, width) in [(thick, 3), (thin, 1)] {
                let mut pts: Vec<(f64, f64)> = records
                    .iter()
                    .filter(|r| r.loss == *name && r.path == dev)
                    .map(|r| ((r.elements() as f64).log2(), r.gbps()))
                    .filter(|p| p.1.is_finite() && p.1 > 0.0)
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let style = color.stroke_width(width);
                let series = chart.draw_series(LineSeries::new(pts.clone(), style))?;
                if dev == thick {
                    series
                        .label(name.to_string())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn out<T>(value: Option<T>, grad: Option<Vec<T>>) -> LossOutput<T> {
        LossOutput::new(
            value,
            None,
            grad.map(|g| ArrayD::from_shape_vec(vec![g.len()], g).unwrap()),
            1,
        )
    }

    /// The value's error is relative to the reference's; the gradient's is the largest
    /// absolute error over the reference's largest magnitude.
    #[test]
    fn agreement_measures_value_and_gradient() {
        let a = Agreement::of(
            &out(Some(2.002f32), Some(vec![1.0, -4.0, 0.5])),
            &out(Some(2.0f64), Some(vec![1.0, -4.0, 0.25])),
        );
        assert!((a.value - 1e-3).abs() < 1e-6, "{a:?}");
        assert!((a.grad - 0.25 / 4.0).abs() < 1e-12, "{a:?}");
        assert!(!a.within(AGREEMENT));
        let same = Agreement::of(&out(Some(3.0f32), None), &out(Some(3.0f64), None));
        assert!(same.within(0.0), "{same:?}");
    }

    /// A NaN where the reference has a number is a disagreement, and survives the maximum
    /// over points.
    #[test]
    fn agreement_nan_is_never_within() {
        let a = Agreement::of(
            &out(Some(1.0f32), Some(vec![f32::NAN, 1.0])),
            &out(Some(1.0f64), Some(vec![0.5, 1.0])),
        );
        assert!(a.grad.is_nan() && !a.within(1.0), "{a:?}");
        let worst = Agreement::default().max(a).max(Agreement::default());
        assert!(worst.grad.is_nan(), "{worst:?}");
    }
}
