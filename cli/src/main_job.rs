//! The main job (`wgpu-loss` with no command): every loss on a seeded synthetic batch, on the
//! GPU and the CPU reference, compared in one table. Exits 1 if any loss disagrees beyond the
//! tolerances the tests use.
//!
//! Built-in workload: the elementwise losses over `--elements` values; softmax cross entropy
//! over `--rows` × `--classes` logits with class-index targets (a language-model head);
//! categorical cross entropy over `--rows` × 1000 probabilities (an image classifier);
//! cosine proximity over `--rows` × 768 features (sentence embeddings).
//!
//! [`prepare`] checks every size before any work (and without a GPU): each at least 1, every
//! batch within what one GPU call indexes, the job's peak memory within what the machine has.

use std::time::{Duration, Instant};

use ndarray::ArrayD;
use wgpu_loss::losses::LossInfo;
use wgpu_loss::{GpuContext, LossArgs, synthetic};

use super::{
    BASE_BYTES, BYTES_PER_ELEMENT, Failure, MAX_ELEMENTS, check_count, check_memory, check_repeats,
    row_elements,
};

/// Loss value: relative error bound of an f32 tree reduction against the f64 reference.
pub const VALUE_RTOL: f64 = 1e-5;
/// Gradient: max |GPU − CPU| ≤ this × max |gradient| (about 8 f32 ulps at the largest).
pub const GRAD_RTOL: f64 = 1e-6;

/// A row-wise loss's gradient tolerance for rows of `cols` elements on `ctx`, as the GPU
/// tests derive it (tests/gpu/common.rs, `row_array_rtol`): each element depends on its
/// row's f32 sums, each lane's share of `m = ⌈C / lanes⌉` elements summed in blocks and
/// spans of blocks (at most 16 + 64 + 16 + m/1024 terms in a row) and combined over a tree
/// of depth log2(lanes), whose rounding adds like a random walk; four times
/// √(terms + depth) ulp, where that exceeds [`GRAD_RTOL`].
fn row_grad_rtol(ctx: &GpuContext, cols: usize) -> f64 {
    let lanes = ctx.row_lanes(cols) as usize;
    let m = cols.div_ceil(lanes);
    let n = m.min(96 + m.div_ceil(1024)) as f64 + (lanes as f64).log2();
    GRAD_RTOL.max(4.0 * n.sqrt() * f64::from(f32::EPSILON) / 2.0)
}

#[derive(clap::Args, Debug)]
pub struct MainJobArgs {
    /// Elements per loss in the built-in batch (fewer than 2^32 - 1: one GPU call).
    #[arg(long, default_value_t = 1 << 22)]
    elements: usize,
    /// Seed of the synthetic batch.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Rows of the row-wise losses' batches (rows x classes, x 1000 and x 768 must each stay
    /// under 2^32 - 1 elements).
    #[arg(long, default_value_t = 4096)]
    rows: usize,
    /// Classes per row of softmax cross entropy (class-index targets).
    #[arg(long, default_value_t = 32_000)]
    classes: usize,
    /// Timed runs per loss and path (1 to 1000000); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

/// The shape of a loss's batch in the main job: `[--elements]` for the elementwise family;
/// `[--rows, --classes]` for a loss that takes class indices, else `[--rows, C]` with the
/// loss's own row length (`LossInfo::main_job_cols`: an image classifier's 1000 classes for
/// categorical cross entropy, an embedding's 768 features for cosine proximity).
fn main_job_shape(info: &LossInfo, elements: usize, rows: usize, classes: usize) -> Vec<usize> {
    match info.main_job_cols() {
        None => vec![elements],
        Some(_) if info.takes_classes() => vec![rows, classes],
        Some(cols) => vec![rows, cols],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(repeats: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        last = Some(f());
        times.push(t0.elapsed());
    }
    (last.expect("at least one run"), median(times))
}

/// Host bytes per row beyond its elements: the class indices (i64), their GPU upload and the
/// reference's per-row values.
const BYTES_PER_ROW: u64 = 32;

/// The main job's checked sizes: what [`execute`] runs.
pub struct Plan {
    /// `--elements`.
    elements: usize,
    /// `--rows`.
    rows: usize,
    /// `--classes`.
    classes: usize,
    /// `--repeats`.
    repeats: usize,
    /// `--seed`.
    seed: u64,
}

/// Checks every size of the main job before any work, without a GPU: `--elements`, `--rows`,
/// `--classes` and `--repeats` at least 1; the elementwise batch, `--rows` × `--classes`,
/// `--rows` × 1000 and `--rows` × 768 each within one GPU call ([`MAX_ELEMENTS`], no
/// overflow); the peak host memory of the largest loss within what the machine has.
pub(crate) fn prepare(a: &MainJobArgs) -> Result<Plan, Failure> {
    let why = "the GPU path takes fewer than 2^32 - 1 elements per call";
    let elements = check_count("--elements", a.elements, MAX_ELEMENTS, why)?;
    let rows = check_count("--rows", a.rows, MAX_ELEMENTS, why)?;
    let classes = check_count("--classes", a.classes, MAX_ELEMENTS, why)?;
    let repeats = check_repeats(a.repeats)?;
    // The losses run one after the other: the peak is the largest one's.
    let mut largest = (format!("--elements {elements}"), elements as u64);
    for info in LossInfo::all() {
        let shape = main_job_shape(&info, elements, rows, classes);
        let [r, c] = shape[..] else { continue };
        let what = if info.takes_classes() {
            format!("--rows {rows} --classes {classes}")
        } else {
            format!("--rows {rows} ({})", info.name())
        };
        let n = row_elements(&what, r, c)?;
        if n > largest.1 {
            largest = (what, n);
        }
    }
    let (what, n) = (&largest.0, largest.1);
    let needed = n
        .checked_mul(BYTES_PER_ELEMENT)
        .and_then(|b| b.checked_add((rows as u64).checked_mul(BYTES_PER_ROW)?))
        .and_then(|b| b.checked_add(BASE_BYTES))
        .unwrap_or(u64::MAX);
    check_memory(what, "main job", needed)?;
    Ok(Plan {
        elements,
        rows,
        classes,
        repeats,
        seed: a.seed,
    })
}

/// The main job: [`prepare`], then [`execute`].
pub fn run(a: &MainJobArgs) -> Result<(), Failure> {
    execute(&prepare(a)?)
}

/// Runs every loss on the GPU, the fast CPU path and the reference; prints the table.
pub(crate) fn execute(a: &Plan) -> Result<(), Failure> {
    let ctx = GpuContext::new()?;
    // A row must fit one storage binding of this adapter (known only now).
    let binding = ctx.max_chunk_elements();
    if a.classes > binding {
        return Err(Failure::input(format!(
            "--classes {}: a row longer than one storage binding of this adapter ({binding} \
             elements)",
            a.classes
        )));
    }
    println!("adapter: {}", ctx.adapter_summary());
    let row_shapes: Vec<String> = LossInfo::all()
        .filter_map(|info| {
            let shape = main_job_shape(&info, a.elements, a.rows, a.classes);
            let [r, c] = shape[..] else { return None };
            let kind = if info.takes_classes() {
                " (class indices)"
            } else {
                ""
            };
            Some(format!("{} {r} x {c}{kind}", info.name()))
        })
        .collect();
    println!(
        "batch: {} elements per elementwise loss; {}; seed {}, reduction mean; times are medians of {} runs of a whole call \
         (GPU: upload, kernels, readback); GB/s counts the minimum traffic (read p and t once, write the gradient) over the GPU time",
        a.elements,
        row_shapes.join(", "),
        a.seed,
        a.repeats
    );
    println!(
        "{:<16} {:>15} {:>15} {:>9} {:>11} {:>9} {:>9} {:>9} {:>7}  check",
        "loss",
        "GPU value",
        "CPU value",
        "rel diff",
        "grad diff",
        "GPU ms",
        "CPU ms",
        "ref ms",
        "GB/s",
    );
    let mut failed = Vec::new();
    let all: Vec<LossInfo> = LossInfo::all().collect();
    for (k, info) in all.iter().enumerate() {
        let seed = a.seed.wrapping_add(k as u64);
        let loss = &info.default_loss();
        let shape = main_job_shape(info, a.elements, a.rows, a.classes);
        let batch = synthetic::batch(loss, &shape, seed);
        let classes: Option<ArrayD<i64>> = info
            .takes_classes()
            .then(|| synthetic::classes(&shape[..1], a.classes, seed));
        let args = match &classes {
            Some(c) => LossArgs::new(batch.pred.view(), c.view()),
            None => LossArgs::new(batch.pred.view(), batch.target.view()),
        };
        let n = batch.pred.len();
        let target_words = classes.as_ref().map_or(n, |c| c.len());
        ctx.compute(loss, &args)?; // warm-up: builds the pipeline, fills the buffer pool
        let (gpu, gpu_t) = timed(a.repeats, || ctx.compute(loss, &args));
        let gpu = gpu?;
        let (cpu, cpu_t) = timed(a.repeats.min(3), || {
            wgpu_loss::reference::compute(loss, &args)
        });
        let cpu = cpu?;
        let (fast, fast_t) = timed(a.repeats, || wgpu_loss::cpu::compute(loss, &args));
        let fast = fast?;
        let (gv, cv) = (gpu.value.unwrap_or(f32::NAN), cpu.value.unwrap_or(f64::NAN));
        let rel = (f64::from(gv) - cv).abs() / cv.abs().max(f64::MIN_POSITIVE);
        let (gg, cg) = (gpu.grad.as_ref(), cpu.grad.as_ref());
        let grad_diff = match (gg, cg) {
            (Some(g), Some(c)) => {
                let max = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let diff = g
                    .iter()
                    .zip(c.iter())
                    .fold(0.0f64, |m, (g, c)| m.max((f64::from(*g) - c).abs()));
                diff / max.max(f64::MIN_POSITIVE)
            }
            _ => f64::NAN,
        };
        let fast_v = f64::from(fast.value.unwrap_or(f32::NAN));
        let fast_rel = (fast_v - cv).abs() / cv.abs().max(f64::MIN_POSITIVE);
        let mut grad_rtol = GRAD_RTOL.max(LossInfo::of(loss).grad_rtol());
        if shape.len() == 2 {
            grad_rtol = grad_rtol.max(row_grad_rtol(&ctx, shape[1]));
        }
        let ok = rel <= VALUE_RTOL && grad_diff <= grad_rtol && fast_rel <= VALUE_RTOL;
        let gbps = 4.0 * (2 * n + target_words) as f64 / gpu_t.as_secs_f64() / 1e9;
        let ms = |t: Duration| t.as_secs_f64() * 1e3;
        println!(
            "{:<16} {:>15.8e} {:>15.8e} {:>9.2e} {:>11.2e} {:>9.2} {:>9.2} {:>9.2} {:>7.2}  {}",
            loss.name(),
            gv,
            cv,
            rel,
            grad_diff,
            ms(gpu_t),
            ms(fast_t),
            ms(cpu_t),
            gbps,
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failed.push(loss.name());
        }
    }
    let wider: Vec<String> = all
        .iter()
        .filter(|i| i.grad_rtol() > GRAD_RTOL)
        .map(|i| format!("{} {:e}", i.name(), i.grad_rtol()))
        .collect();
    let wider = if wider.is_empty() {
        String::new()
    } else {
        format!(" ({})", wider.join(", "))
    };
    println!(
        "CPU value: the f64 reference; CPU ms: the fast multi-threaded f32 path (wgpu_loss::cpu), whose value is checked too; ref ms: the reference\n\
         tolerances: value relative difference <= {VALUE_RTOL:e}; gradient max |GPU - CPU| <= {GRAD_RTOL:e}{wider} x max |gradient|, \
         and for the row-wise losses at least 4 sqrt(n) f32 ulps, n the terms of each lane's share of a row's sums"
    );
    if failed.is_empty() {
        println!("all {} losses agree", all.len());
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "GPU and CPU disagree beyond the tolerances for: {}",
            failed.join(", ")
        )))
    }
}
