//! `wgpu-loss bench`: GPU against CPU over a sweep of sizes, against the machine's own
//! ceilings measured in the same run.
//!
//! For every loss and size: the median time of a whole GPU call ([`GpuContext::compute`]:
//! upload, kernels, readback) and of the fast CPU path ([`wgpu_loss::cpu::compute`]), each
//! after one warm-up; the effective GB/s of the minimum traffic (4 bytes × (prediction +
//! target + gradient elements); class-index targets count 4 bytes per row); that as a
//! percentage of its ceiling; and the GPU/CPU speed ratio (CPU time / GPU time, above 1 when
//! the GPU is faster). The ceilings are a WGSL copy kernel on the adapter
//! ([`GpuContext::copy_bandwidth`]) and a multi-threaded host `copy_from_slice`, both counting
//! one read and one write.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayD;
use rayon::prelude::*;
use serde_json::json;
use wgpu_loss::{GpuContext, Loss, LossArgs, cpu, synthetic};

use super::{Failure, LossName};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A small sweep (2^16 and 2^20 elements, one 128 x 8192 row shape, 3 repeats) that
    /// finishes in under a minute on a software adapter.
    #[arg(long)]
    quick: bool,
    /// Only these losses, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    losses: Vec<LossName>,
    /// Timed runs per loss, size and path, after one warm-up; the median is reported
    /// (default 5, 3 with --quick).
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
    /// Caps every size at this many elements (fewer rows for the row-wise shapes); for tests.
    #[arg(long, hide = true)]
    max_elements: Option<usize>,
}

/// Row-wise shapes `[B, C]` of the full sweep: an image classifier, a language-model head,
/// a large-vocabulary head.
const ROW_SHAPES: [[usize; 2]; 3] = [[4096, 1000], [1024, 32_000], [256, 128_256]];
/// The row-wise shape of `--quick`.
const QUICK_ROW_SHAPE: [usize; 2] = [128, 8192];
/// Bytes of the host copy ceiling (source and destination each); a quarter with `--quick`.
const HOST_COPY_BYTES: usize = 256 << 20;
/// Elements of the copy kernel's buffers (64 MiB), a quarter with `--quick`; capped at one
/// storage binding.
const GPU_COPY_ELEMENTS: usize = 1 << 24;

/// One measured point.
struct Record {
    loss: &'static str,
    shape: Vec<usize>,
    path: &'static str,
    adapter: String,
    median: Duration,
    bytes: u64,
    ceiling_gbps: f64,
}

impl Record {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.median.as_secs_f64().max(1e-12) / 1e9
    }

    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "loss": self.loss,
            "shape": self.shape,
            "elements": self.elements(),
            "path": self.path,
            "adapter": self.adapter,
            "median_ms": self.median.as_secs_f64() * 1e3,
            "bytes": self.bytes,
            "gbps": self.gbps(),
            "ceiling_gbps": self.ceiling_gbps,
            "percent_of_ceiling": 100.0 * self.gbps() / self.ceiling_gbps,
        })
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The median of `repeats` runs of `f`, after one warm-up run.
fn time<E>(repeats: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed());
    }
    Ok(median(times))
}

/// Host memory bandwidth: `copy_from_slice` of `bytes` in 1 MiB pieces on every core, median
/// of `repeats`, counting one read and one write.
fn host_copy_gbps(bytes: usize, repeats: usize) -> f64 {
    let n = bytes / 4;
    let src: Vec<f32> = (0..n).into_par_iter().map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    const PIECE: usize = 1 << 18;
    let t = time::<()>(repeats, || {
        dst.par_chunks_mut(PIECE)
            .zip(src.par_chunks(PIECE))
            .for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
        Ok(())
    })
    .expect("infallible");
    2.0 * (n * 4) as f64 / t.as_secs_f64().max(1e-12) / 1e9
}

/// The default-option loss behind a CLI name.
fn loss_of(name: LossName) -> Loss {
    let cli = name
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    *Loss::ALL_DEFAULT
        .iter()
        .find(|l| l.name() == cli)
        .expect("every CLI loss name is a default loss")
}

/// The shapes swept for `loss`.
fn shapes(loss: &Loss, quick: bool, cap: Option<usize>) -> Vec<Vec<usize>> {
    let cap = cap.unwrap_or(usize::MAX).max(1);
    if loss.is_row_wise() {
        let rows: &[[usize; 2]] = if quick {
            &[QUICK_ROW_SHAPE]
        } else {
            &ROW_SHAPES
        };
        rows.iter()
            .map(|&[b, c]| vec![b.min((cap / c).max(1)), c])
            .collect()
    } else {
        let exps: &[u32] = if quick {
            &[16, 20]
        } else {
            &[10, 12, 14, 16, 18, 20, 22, 24, 26]
        };
        let mut v: Vec<Vec<usize>> = exps
            .iter()
            .map(|&e| 1usize << e)
            .filter(|&n| n <= cap)
            .map(|n| vec![n])
            .collect();
        if v.is_empty() {
            v.push(vec![cap]);
        }
        v
    }
}

/// Output files are checked before any work: their directory must exist.
fn check_output(path: &Path) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure::input(format!(
            "{}: cannot write: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    let repeats = a.repeats.unwrap_or(if a.quick { 3 } else { 5 });
    if repeats == 0 {
        return Err(Failure::input("--repeats must be at least 1"));
    }
    if a.max_elements == Some(0) {
        return Err(Failure::input("--max-elements must be at least 1"));
    }
    for p in a.json.iter().chain(&a.plot) {
        check_output(p)?;
    }
    let losses: Vec<Loss> = if a.losses.is_empty() {
        Loss::ALL_DEFAULT.to_vec()
    } else {
        let mut v: Vec<Loss> = Vec::new();
        for l in a.losses.iter().map(|&n| loss_of(n)) {
            if !v.contains(&l) {
                v.push(l);
            }
        }
        v
    };
    let points: Vec<(Loss, Vec<usize>)> = losses
        .iter()
        .flat_map(|l| {
            shapes(l, a.quick, a.max_elements)
                .into_iter()
                .map(move |s| (*l, s))
        })
        .collect();

    let ctx = GpuContext::new()?;
    let adapter = ctx.adapter_summary();
    let host = format!("host CPU ({} threads)", rayon::current_num_threads());
    let bar = ProgressBar::new(2 + 2 * points.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );

    bar.set_message("ceiling: copy kernel");
    let scale = if a.quick { 4 } else { 1 };
    let copy = ctx.copy_bandwidth(GPU_COPY_ELEMENTS / scale, repeats.max(3))?;
    let gpu_ceiling = copy.gbps();
    bar.inc(1);
    bar.set_message("ceiling: host copy");
    let cpu_ceiling = host_copy_gbps(HOST_COPY_BYTES / scale, repeats.max(3));
    bar.inc(1);

    bar.suspend(|| {
        println!("adapter: {adapter}");
        println!("host: {host}");
        println!(
            "ceilings (one read + one write): copy kernel {gpu_ceiling:.2} GB/s over {} MiB on the adapter; \
             host copy_from_slice {cpu_ceiling:.2} GB/s over {} MiB",
            (copy.bytes_moved / 2) >> 20,
            (HOST_COPY_BYTES / scale) >> 20
        );
        println!(
            "times: medians of {repeats} runs after a warm-up; GPU = whole call (upload, kernels, readback), \
             CPU = wgpu_loss::cpu (f32, every core); GB/s counts the minimum traffic \
             (4 B x (pred + target + grad), class targets 4 B per row); GPU/CPU = CPU time / GPU time"
        );
        println!(
            "{:<16} {:>14} {:>10} {:>9} {:>7} {:>10} {:>9} {:>7} {:>8}",
            "loss", "shape", "GPU ms", "GPU GB/s", "% copy", "CPU ms", "CPU GB/s", "% host", "GPU/CPU"
        );
    });

    let mut records: Vec<Record> = Vec::new();
    for (k, (loss, shape)) in points.iter().enumerate() {
        let shape_s = shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        bar.set_message(format!("{} {shape_s}", loss.name()));
        let seed = a.seed.wrapping_add(k as u64);
        let batch = synthetic::batch(loss, shape, seed);
        let classes: Option<ArrayD<i64>> = loss
            .takes_classes()
            .then(|| synthetic::classes(&shape[..1], shape[1], seed));
        let args = match &classes {
            Some(c) => LossArgs::new(batch.pred.view(), c.view()),
            None => LossArgs::new(batch.pred.view(), batch.target.view()),
        };
        let n = batch.pred.len();
        let target_words = classes.as_ref().map_or(n, |c| c.len());
        let bytes = 4 * (2 * n + target_words) as u64;

        let gpu_t = time(repeats, || ctx.compute(loss, &args).map(drop))?;
        bar.inc(1);
        let cpu_t = time(repeats, || cpu::compute(loss, &args).map(drop))?;
        bar.inc(1);
        let gpu = Record {
            loss: loss.name(),
            shape: shape.clone(),
            path: "gpu",
            adapter: adapter.clone(),
            median: gpu_t,
            bytes,
            ceiling_gbps: gpu_ceiling,
        };
        let cpu = Record {
            path: "cpu",
            adapter: host.clone(),
            median: cpu_t,
            ceiling_gbps: cpu_ceiling,
            shape: shape.clone(),
            ..gpu
        };
        bar.suspend(|| {
            println!(
                "{:<16} {:>14} {:>10.3} {:>9.2} {:>7.1} {:>10.3} {:>9.2} {:>7.1} {:>8.2}",
                loss.name(),
                shape_s,
                gpu.median.as_secs_f64() * 1e3,
                gpu.gbps(),
                100.0 * gpu.gbps() / gpu_ceiling,
                cpu.median.as_secs_f64() * 1e3,
                cpu.gbps(),
                100.0 * cpu.gbps() / cpu_ceiling,
                cpu.median.as_secs_f64() / gpu.median.as_secs_f64().max(1e-12),
            )
        });
        records.push(gpu);
        records.push(cpu);
    }
    bar.finish_and_clear();

    if let Some(path) = &a.json {
        let arr: Vec<serde_json::Value> = records.iter().map(Record::to_json).collect();
        let text = serde_json::to_string_pretty(&arr).map_err(Failure::runtime)?;
        fs::write(path, text + "\n")
            .map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
        println!("records written to {}", path.display());
    }
    if let Some(path) = &a.plot {
        plot(path, &records, &adapter, gpu_ceiling, cpu_ceiling)
            .map_err(|e| Failure::runtime(format!("{}: {e}", path.display())))?;
        println!("plot written to {}", path.display());
    }
    Ok(())
}

/// Throughput against size (log2 of the elements), one colour per loss; GPU solid with dots, CPU thin; the two
/// ceilings as dashed horizontal lines.
fn plot(
    path: &Path,
    records: &[Record],
    adapter: &str,
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
    let y_lo = ys.clone().fold(f64::INFINITY, f64::min).min(1.0) / 1.5;
    let y_hi = ys.fold(y_lo * 10.0, f64::max) * 1.5;

    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("wgpu-loss bench: {adapter}"), ("sans-serif", 18))
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

    for (label, y, color) in [
        ("GPU copy kernel", gpu_ceiling, BLACK),
        ("host copy", cpu_ceiling, RGBColor(128, 128, 128)),
    ] {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_lo, y), (x_hi, y)],
                6,
                4,
                color.stroke_width(1),
            ))?
            .label(format!("{label} {y:.1} GB/s"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }

    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.loss) {
            names.push(r.loss);
        }
    }
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (dev, width) in [("gpu", 3), ("cpu", 1)] {
            let mut pts: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| r.loss == *name && r.path == dev)
                .map(|r| ((r.elements() as f64).log2(), r.gbps()))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = color.stroke_width(width);
            chart
                .draw_series(LineSeries::new(pts.clone(), style))?
                .label(format!("{name} {}", dev.to_uppercase()))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            if dev == "gpu" {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
