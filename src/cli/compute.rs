//! `wgpu-loss compute`: one loss over `.npy` inputs, on the GPU or the CPU reference.

use std::path::PathBuf;

use clap::ValueEnum;
use ndarray::ArrayD;
use serde_json::json;
use wgpu_loss::{Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, reference};

use super::npy::{self, Staged};
use super::{Failure, LossName, ReductionName};

#[derive(clap::Args, Debug)]
pub struct ComputeArgs {
    /// The loss.
    #[arg(long, value_enum)]
    loss: LossName,
    /// Prediction `.npy` (f32; f64 and f16 are converted): probabilities for bce, logits for
    /// bce-with-logits.
    #[arg(long)]
    pred: PathBuf,
    /// Target `.npy`, the prediction's shape.
    #[arg(long)]
    target: PathBuf,
    /// How per-element losses become the value.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionName,
    /// Per-element weight `.npy` (bce, bce-with-logits): the prediction's shape or a trailing
    /// part of it, ≥ 0.
    #[arg(long)]
    weight: Option<PathBuf>,
    /// pos_weight `.npy` (bce-with-logits): a trailing part of the prediction's shape, ≥ 0.
    #[arg(long)]
    pos_weight: Option<PathBuf>,
    /// Huber's threshold δ > 0 (huber only; default 1).
    #[arg(long, allow_negative_numbers = true)]
    delta: Option<f32>,
    /// Write the gradient with respect to the prediction here (`.npy`, f32).
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Write the per-element losses here (`.npy`, f32; needs --reduction none).
    #[arg(long)]
    loss_out: Option<PathBuf>,
    /// Where to compute: the GPU, or the f64 CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceName,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceName {
    Gpu,
    Cpu,
}

/// An f32 as JSON, printed with its shortest exact decimal form; NaN and ±inf become null.
fn json_f32(v: f32) -> serde_json::Value {
    v.to_string()
        .parse::<f64>()
        .map_or(serde_json::Value::Null, |x| json!(x))
}

/// Output paths are checked before any work: distinct, and in a directory that exists.
fn check_outputs(a: &ComputeArgs) -> Result<(), Failure> {
    let outs: Vec<&PathBuf> = [&a.grad_out, &a.loss_out].into_iter().flatten().collect();
    if let [g, l] = outs[..] {
        let same = std::path::absolute(g).ok() == std::path::absolute(l).ok();
        if same {
            return Err(Failure::input(format!(
                "{}: --grad-out and --loss-out name the same file",
                g.display()
            )));
        }
    }
    for path in outs {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Failure::input(format!(
                "{}: cannot write: directory {} does not exist",
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

pub fn run(a: &ComputeArgs) -> Result<(), Failure> {
    let loss = match a.loss {
        LossName::Mse => Loss::Mse,
        LossName::Mae => Loss::Mae,
        LossName::Huber => Loss::Huber {
            delta: a.delta.unwrap_or(1.0),
        },
        LossName::Bce => Loss::Bce,
        LossName::BceWithLogits => Loss::BceWithLogits,
    };
    if a.delta.is_some() && !matches!(loss, Loss::Huber { .. }) {
        return Err(Failure::input("--delta applies only to --loss huber"));
    }
    let reduction: Reduction = a.reduction.into();
    if a.loss_out.is_some() && reduction != Reduction::None {
        return Err(Failure::input(
            "--loss-out writes per-element losses, which need --reduction none",
        ));
    }
    check_outputs(a)?;
    let read = |p: &PathBuf| npy::read_f32(p).map_err(Failure::input);
    let pred = read(&a.pred)?;
    let target = read(&a.target)?;
    let weight = a.weight.as_ref().map(read).transpose()?;
    let pos_weight = a.pos_weight.as_ref().map(read).transpose()?;

    let mut args = LossArgs::new(pred.view(), target.view()).reduction(reduction);
    if let Some(w) = &weight {
        args = args.weight(w.view());
    }
    if let Some(q) = &pos_weight {
        args = args.pos_weight(q.view());
    }
    if a.grad_out.is_none() {
        args = args.loss_only();
    }
    // Library errors, with the file they concern.
    let with_file = |e: Error| -> Failure {
        let path = match &e {
            Error::ShapeMismatch { what: "target", .. } => Some(&a.target),
            Error::ShapeMismatch { what: "weight", .. }
            | Error::InvalidOption {
                option: "weight", ..
            } => a.weight.as_ref(),
            Error::ShapeMismatch {
                what: "pos_weight", ..
            }
            | Error::InvalidOption {
                option: "pos_weight",
                ..
            } => a.pos_weight.as_ref(),
            Error::OutOfDomain { .. } | Error::Empty { .. } => Some(&a.pred),
            _ => None,
        };
        let mut f = Failure::from(e);
        if let Some(p) = path {
            f.message = format!("{}: {}", p.display(), f.message);
        }
        f
    };

    let (out, adapter): (LossOutput<f32>, Option<String>) = match a.device {
        DeviceName::Gpu => {
            let ctx = GpuContext::new().map_err(Failure::from)?;
            let out = ctx.compute(&loss, &args).map_err(with_file)?;
            (out, Some(ctx.adapter_summary()))
        }
        DeviceName::Cpu => {
            let out = reference::compute(&loss, &args).map_err(with_file)?;
            let f = |x: ArrayD<f64>| x.mapv(|v| v as f32);
            let out = LossOutput {
                value: out.value.map(|v| v as f32),
                losses: out.losses.map(f),
                grad: out.grad.map(f),
                counted: out.counted,
            };
            (out, None)
        }
    };

    // Write every output to a temporary file first; rename only when all succeeded.
    let mut staged = Vec::new();
    if let (Some(path), Some(g)) = (&a.grad_out, &out.grad) {
        staged.push(Staged::write(path, g).map_err(Failure::runtime)?);
    }
    if let (Some(path), Some(l)) = (&a.loss_out, &out.losses) {
        staged.push(Staged::write(path, l).map_err(Failure::runtime)?);
    }
    for s in staged {
        s.commit().map_err(Failure::runtime)?;
    }

    let device = match a.device {
        DeviceName::Gpu => "gpu",
        DeviceName::Cpu => "cpu",
    };
    if a.json {
        let obj = json!({
            "loss": loss.name(),
            "reduction": reduction.name(),
            "device": device,
            "adapter": adapter,
            "elements": pred.len(),
            "shape": pred.shape(),
            "counted": out.counted,
            "value": out.value.map_or(serde_json::Value::Null, json_f32),
            "grad_out": a.grad_out.as_ref().map(|p| p.display().to_string()),
            "loss_out": a.loss_out.as_ref().map(|p| p.display().to_string()),
        });
        println!("{obj}");
    } else {
        let on = adapter.unwrap_or_else(|| "the CPU reference (f64)".into());
        match out.value {
            Some(v) => println!(
                "{} ({}) over {} elements {:?} on {on}: {v}",
                loss.name(),
                reduction.name(),
                pred.len(),
                pred.shape()
            ),
            None => {
                println!(
                    "{} (none) over {} elements {:?} on {on}: per-element losses {}",
                    loss.name(),
                    pred.len(),
                    pred.shape(),
                    a.loss_out.as_ref().map_or(
                        "not saved (use --loss-out)".to_string(),
                        |p| format!("written to {}", p.display())
                    )
                )
            }
        }
        if let Some(p) = &a.grad_out {
            println!("gradient written to {}", p.display());
        }
    }
    Ok(())
}
