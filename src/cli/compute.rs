//! `wgpu-loss compute`: one loss over `.npy` inputs, on the GPU or the CPU reference.

use std::path::PathBuf;

use clap::ValueEnum;
use ndarray::ArrayD;
use serde_json::json;
use wgpu_loss::{Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, reference};

use super::npy::{self, Staged, TargetData};
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
    /// Target `.npy`: floats shaped like the prediction (probabilities for cce and
    /// softmax-ce), or for softmax-ce integer class indices (int32/int64) shaped like the rows,
    /// `[B]` for a `[B, C]` prediction.
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
    /// Class weights `.npy` `[C]`, ≥ 0 (softmax-ce only).
    #[arg(long)]
    class_weight: Option<PathBuf>,
    /// Label smoothing ε in [0, 1) (softmax-ce only; default 0).
    #[arg(long, allow_negative_numbers = true)]
    label_smoothing: Option<f32>,
    /// Class index to ignore (softmax-ce with integer targets; default -100).
    #[arg(long, allow_negative_numbers = true)]
    ignore_index: Option<i64>,
    /// z-loss coefficient λ ≥ 0, adds λ·lse² per row (softmax-ce only; default 0).
    #[arg(long, allow_negative_numbers = true)]
    z_loss: Option<f32>,
    /// Floor ε > 0 of each row's norm (cosine only; default 1e-8).
    #[arg(long, allow_negative_numbers = true)]
    eps: Option<f32>,
    /// Write the gradient with respect to the prediction here (`.npy`, f32).
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Write the per-element (elementwise losses) or per-row (cce, softmax-ce, cosine) losses
    /// here (`.npy`, f32; needs --reduction none).
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
        super::check_output(path)?;
    }
    Ok(())
}

/// Rejects an option given to a loss that does not take it.
fn only_for(given: bool, flag: &str, applies: bool, losses: &str) -> Result<(), Failure> {
    if given && !applies {
        return Err(Failure::input(format!(
            "{flag} applies only to --loss {losses}"
        )));
    }
    Ok(())
}

/// The loss and its options from the flags; every flag given to a loss that does not take it
/// is an error.
fn loss_from(a: &ComputeArgs) -> Result<Loss, Failure> {
    let loss = match a.loss {
        LossName::Mse => Loss::Mse,
        LossName::Mae => Loss::Mae,
        LossName::Huber => Loss::Huber {
            delta: a.delta.unwrap_or(1.0),
        },
        LossName::Bce => Loss::Bce,
        LossName::BceWithLogits => Loss::BceWithLogits,
        LossName::Cce => Loss::CategoricalCrossEntropy,
        LossName::SoftmaxCe => Loss::SoftmaxCrossEntropy {
            label_smoothing: a.label_smoothing.unwrap_or(0.0),
            z_loss: a.z_loss.unwrap_or(0.0),
            ignore_index: a.ignore_index.unwrap_or(-100),
        },
        LossName::Cosine => Loss::CosineProximity {
            eps: a.eps.unwrap_or(1e-8),
        },
    };
    let huber = matches!(loss, Loss::Huber { .. });
    let softmax = matches!(loss, Loss::SoftmaxCrossEntropy { .. });
    let cosine = matches!(loss, Loss::CosineProximity { .. });
    let bce = matches!(loss, Loss::Bce | Loss::BceWithLogits);
    let sce = "softmax-ce";
    let rules = [
        (a.delta.is_some(), "--delta", huber, "huber"),
        (a.class_weight.is_some(), "--class-weight", softmax, sce),
        (
            a.label_smoothing.is_some(),
            "--label-smoothing",
            softmax,
            sce,
        ),
        (a.ignore_index.is_some(), "--ignore-index", softmax, sce),
        (a.z_loss.is_some(), "--z-loss", softmax, sce),
        (a.eps.is_some(), "--eps", cosine, "cosine"),
        (
            a.weight.is_some(),
            "--weight",
            bce,
            "bce or bce-with-logits (softmax-ce takes --class-weight)",
        ),
        (
            a.pos_weight.is_some(),
            "--pos-weight",
            matches!(loss, Loss::BceWithLogits),
            "bce-with-logits",
        ),
    ];
    for (given, flag, applies, losses) in rules {
        only_for(given, flag, applies, losses)?;
    }
    loss.validate().map_err(Failure::from)?;
    Ok(loss)
}

pub fn run(a: &ComputeArgs) -> Result<(), Failure> {
    let loss = loss_from(a)?;
    let reduction: Reduction = a.reduction.into();
    if a.loss_out.is_some() && reduction != Reduction::None {
        return Err(Failure::input(
            "--loss-out writes per-element (or per-row) losses, which need --reduction none",
        ));
    }
    check_outputs(a)?;
    let read = |p: &PathBuf| npy::read_f32(p).map_err(Failure::input);
    let pred = read(&a.pred)?;
    let target = npy::read_target(&a.target).map_err(Failure::input)?;
    let weight = a
        .weight
        .as_ref()
        .or(a.class_weight.as_ref())
        .map(read)
        .transpose()?;
    let pos_weight = a.pos_weight.as_ref().map(read).transpose()?;
    if a.ignore_index.is_some() && matches!(target, TargetData::F32(_)) {
        return Err(Failure::input(format!(
            "{}: --ignore-index applies to integer class-index targets, and these are floats",
            a.target.display()
        )));
    }
    let target_view: wgpu_loss::Target<'_> = match &target {
        TargetData::F32(t) => t.view().into(),
        TargetData::I32(t) => t.view().into(),
        TargetData::I64(t) | TargetData::U64 { clamped: t, .. } => t.view().into(),
    };

    let mut args = LossArgs::new(pred.view(), target_view).reduction(reduction);
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
            Error::ShapeMismatch { what: "target", .. }
            | Error::InvalidOption {
                option: "target", ..
            }
            | Error::ClassOutOfRange { .. } => Some(&a.target),
            Error::ShapeMismatch { what: "weight", .. }
            | Error::InvalidOption {
                option: "weight", ..
            } => a.weight.as_ref().or(a.class_weight.as_ref()),
            Error::ShapeMismatch {
                what: "pos_weight", ..
            }
            | Error::InvalidOption {
                option: "pos_weight",
                ..
            } => a.pos_weight.as_ref(),
            Error::OutOfDomain { .. }
            | Error::Empty { .. }
            | Error::InvalidOption { option: "pred", .. } => Some(&a.pred),
            _ => None,
        };
        // Hints the library cannot give: a uint64 class beyond i64 (reported as read), and
        // float targets shaped like class indices.
        let hint = match (&e, &target) {
            (Error::ClassOutOfRange { row, classes, .. }, TargetData::U64 { original, .. }) => {
                original.iter().nth(*row).map(|v| {
                    format!(
                        "target class {v} of row {row} is outside [0, {classes}) and is not the \
                     ignore_index"
                    )
                })
            }
            (Error::ShapeMismatch { what: "target", .. }, TargetData::F32(t))
                if t.shape() == args.row_shape() && loss.takes_classes() =>
            {
                Some(format!(
                    "{e} (class indices must be an integer .npy, int32 or int64; float targets \
                     are probabilities shaped like the prediction)"
                ))
            }
            _ => None,
        };
        let mut f = Failure::from(e);
        if let Some(h) = hint {
            f.message = h;
        }
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
    let rows = loss.is_row_wise().then(|| args.rows_cols());
    if a.json {
        let obj = json!({
            "loss": loss.name(),
            "reduction": reduction.name(),
            "device": device,
            "adapter": adapter,
            "elements": pred.len(),
            "shape": pred.shape(),
            "rows": rows.map(|(b, _)| b),
            "classes": rows.map(|(_, c)| c),
            "counted": out.counted,
            "value": out.value.map_or(serde_json::Value::Null, json_f32),
            "grad_out": a.grad_out.as_ref().map(|p| p.display().to_string()),
            "loss_out": a.loss_out.as_ref().map(|p| p.display().to_string()),
        });
        println!("{obj}");
    } else {
        let on = adapter.unwrap_or_else(|| "the CPU reference (f64)".into());
        let (over, each) = match rows {
            Some((b, c)) => (
                format!(
                    "{b} rows x {c} columns {:?} ({} rows counted)",
                    pred.shape(),
                    out.counted
                ),
                "per-row",
            ),
            None => (
                format!("{} elements {:?}", pred.len(), pred.shape()),
                "per-element",
            ),
        };
        match out.value {
            Some(v) => println!(
                "{} ({}) over {over} on {on}: {v}",
                loss.name(),
                reduction.name()
            ),
            None => {
                println!(
                    "{} (none) over {over} on {on}: {each} losses {}",
                    loss.name(),
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
