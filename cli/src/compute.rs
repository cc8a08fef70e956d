//! `wgpu-loss compute`: one loss over `.npy` inputs, on the GPU, the fast CPU path or the
//! f64 CPU reference.
//!
//! [`prepare`] does everything that can fail on bad input, without a GPU: the options, the
//! outputs (checked and their temporary files created, see [`super::output`]), the inputs
//! read and checked against each other and the loss; [`execute`] then does the work and
//! commits the outputs.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use ndarray::ArrayD;
use serde_json::json;
use wgpu_loss::losses::{LossInfo, OptionValue};
use wgpu_loss::reference::Reference;
use wgpu_loss::{Compute, Error, GpuContext, Loss, LossArgs, LossOutput, Reduction};

use super::npy::{self, TargetData};
use super::output::{self, Outputs};
use super::{Failure, ReductionName};

#[derive(clap::Args, Debug)]
pub struct ComputeArgs {
    /// The loss.
    #[arg(long, value_parser = super::loss_name())]
    loss: String,
    /// Prediction `.npy` (f32; f64 and f16 are converted): probabilities for bce, logits for
    /// bce-with-logits.
    #[arg(long)]
    pred: PathBuf,
    /// Target `.npy`: floats shaped like the prediction (probabilities for cce and
    /// softmax-ce; bool is read as 0/1 and uint8 as 0 to 255, except for softmax-ce), or for
    /// softmax-ce integer class indices (uint8, int32, int64, ...) shaped like the rows, `[B]`
    /// for a `[B, C]` prediction.
    #[arg(long)]
    target: PathBuf,
    /// How per-element losses become the value.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionName,
    /// With `--reduction mean` of a row-wise loss: divide by D instead of this batch's count
    /// of counted rows (the global count over micro-batches or ranks; 0 gives value 0 and
    /// gradient 0).
    #[arg(long, value_name = "D")]
    divisor: Option<f32>,
    /// Per-element weight `.npy` (bce, bce-with-logits): the prediction's shape or a trailing
    /// part of it, ≥ 0.
    #[arg(long)]
    weight: Option<PathBuf>,
    /// pos_weight `.npy` (bce-with-logits): a trailing part of the prediction's shape, ≥ 0.
    #[arg(long)]
    pos_weight: Option<PathBuf>,
    /// Class weights `.npy` `[C]`, ≥ 0 (softmax-ce only).
    #[arg(long)]
    class_weight: Option<PathBuf>,
    /// Write the gradient with respect to the prediction here (`.npy`, f32).
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Write the per-element (elementwise losses) or per-row (cce, softmax-ce, cosine) losses
    /// here (`.npy`, f32; needs --reduction none).
    #[arg(long)]
    loss_out: Option<PathBuf>,
    /// Write each row's log-sum-exp of the logits the softmax sees (after --softcap) here
    /// (softmax-ce; `.npy`, f32, shaped like the rows; ignored rows included; any reduction).
    #[arg(long, value_name = "FILE")]
    lse_out: Option<PathBuf>,
    /// Where to compute: the GPU, the fast multi-threaded f32 CPU path, or the f64 CPU
    /// reference.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceName,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The loss options given (`--delta`, `--label-smoothing`, ...: every option of the
    /// registry's losses, added to the command by `cli::command`), by name.
    #[arg(skip)]
    pub(crate) options: Vec<(&'static str, OptionValue)>,
}

/// The loss options given in `matches` (the `compute` subcommand's), by name.
pub(crate) fn loss_options(matches: &clap::ArgMatches) -> Vec<(&'static str, OptionValue)> {
    let mut out = Vec::new();
    for info in LossInfo::all() {
        for o in info.options() {
            if out.iter().any(|(n, _)| *n == o.name) {
                continue;
            }
            let value = if o.integer {
                matches.get_one::<i64>(o.name).map(|&v| OptionValue::Int(v))
            } else {
                matches
                    .get_one::<f64>(o.name)
                    .map(|&v| OptionValue::Float(v))
            };
            if let Some(v) = value {
                out.push((o.name, v));
            }
        }
    }
    out
}

/// The `--device` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceName {
    /// The GPU, through wgpu (`GpuContext::compute`).
    Gpu,
    /// The fast CPU path: f32, every core (`wgpu_loss::cpu::compute`).
    Cpu,
    /// The f64 CPU reference (`wgpu_loss::reference::compute`), rounded once to f32.
    Reference,
}

impl DeviceName {
    /// The JSON `device` field.
    fn name(self) -> &'static str {
        match self {
            DeviceName::Gpu => "gpu",
            DeviceName::Cpu => "cpu",
            DeviceName::Reference => "reference",
        }
    }

    /// Host bytes per element a call needs beyond its inputs: the gradient and per-element
    /// losses (f32), the reference's f64 copies. The GPU call's chunk buffers (in host memory
    /// on a software adapter) are [`GpuContext::memory_budget`]'s, a fixed amount
    /// ([`DeviceName::fixed_bytes`]).
    fn bytes_per_element(self) -> u64 {
        match self {
            DeviceName::Gpu => 8,
            DeviceName::Cpu => 8,
            DeviceName::Reference => 24,
        }
    }

    /// Host bytes a call needs whatever its size: the GPU call's chunk buffers
    /// ([`wgpu_loss::DEFAULT_MEMORY_BUDGET`]).
    fn fixed_bytes(self) -> u64 {
        match self {
            DeviceName::Gpu => wgpu_loss::DEFAULT_MEMORY_BUDGET,
            DeviceName::Cpu | DeviceName::Reference => 0,
        }
    }
}

/// An f32 as JSON, printed with its shortest exact decimal form; NaN and ±inf become null.
fn json_f32(v: f32) -> serde_json::Value {
    v.to_string()
        .parse::<f64>()
        .map_or(serde_json::Value::Null, |x| json!(x))
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
    let info = LossInfo::named(&a.loss)
        .ok_or_else(|| Failure::input(format!("no loss named {:?}", a.loss)))?;
    // Which losses a flag applies to, by what they take.
    let takers = |f: &dyn Fn(&LossInfo) -> bool| -> String {
        LossInfo::all()
            .filter(|i| f(i))
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    for (name, _) in &a.options {
        let applies = info.options().iter().any(|o| o.name == *name);
        let losses = takers(&|i| i.options().iter().any(|o| o.name == *name));
        only_for(true, &format!("--{name}"), applies, &losses)?;
    }
    let class_weight = |i: &LossInfo| i.takes_weight() && i.is_row_wise();
    let weight = |i: &LossInfo| i.takes_weight() && !i.is_row_wise();
    let rules = [
        (
            a.class_weight.is_some(),
            "--class-weight",
            class_weight(&info),
            takers(&class_weight),
        ),
        (
            a.weight.is_some(),
            "--weight",
            weight(&info),
            format!(
                "{} ({} takes --class-weight)",
                takers(&weight),
                takers(&class_weight)
            ),
        ),
        (
            a.pos_weight.is_some(),
            "--pos-weight",
            info.takes_pos_weight(),
            takers(&|i| i.takes_pos_weight()),
        ),
    ];
    for (given, flag, applies, losses) in rules {
        only_for(given, flag, applies, &losses)?;
    }
    let value = |name: &str| a.options.iter().find(|(n, _)| *n == name).map(|&(_, v)| v);
    info.build(&value).map_err(Failure::from)
}

/// A target as the loss takes it: float targets, or class indices.
pub(crate) enum TargetArray {
    /// Float targets (from floats, bool or uint8).
    Dense(ArrayD<f32>),
    /// Class indices of at most 32 bits (int8/16/32, uint8/16).
    I32(ArrayD<i32>),
    /// Class indices of int64, uint32 or uint64.
    I64(ArrayD<i64>),
}

/// The target file's contents as the loss takes them: floats are float targets and the other
/// integers class indices, as read. uint8 is class indices for a loss that takes them (softmax
/// cross entropy), else float targets 0 to 255; bool is 0/1 float targets for a loss that does
/// not take class indices, and refused by one that does (whose float targets are
/// probabilities, written as floats).
fn target_array(data: TargetData, loss: &Loss, path: &Path) -> Result<TargetArray, Failure> {
    let classes = loss.takes_classes();
    Ok(match data {
        TargetData::F32(t) => TargetArray::Dense(t),
        TargetData::I32(t) => TargetArray::I32(t),
        TargetData::I64(t) => TargetArray::I64(t),
        TargetData::U8(t) if classes => TargetArray::I32(t.mapv(i32::from)),
        TargetData::U8(t) => TargetArray::Dense(t.mapv(f32::from)),
        TargetData::Bool(_) if classes => {
            return Err(Failure::input(format!(
                "{}: a bool target is 0/1 float targets, and --loss {} takes class indices \
                 as integers (uint8, int32, int64) and probabilities as floats",
                shown(path),
                loss.name()
            )));
        }
        TargetData::Bool(t) => TargetArray::Dense(t.mapv(|b| f32::from(u8::from(b)))),
    })
}

/// The inputs as read.
pub(crate) struct Inputs {
    /// `--pred`.
    pred: ArrayD<f32>,
    /// `--target`, as the loss takes it.
    target: TargetArray,
    /// `--weight` or `--class-weight`.
    weight: Option<ArrayD<f32>>,
    /// `--pos-weight`.
    pos_weight: Option<ArrayD<f32>>,
    /// `--divisor`.
    divisor: Option<f32>,
}

impl Inputs {
    /// The library's arguments over these inputs.
    fn args(&self, reduction: Reduction, want_grad: bool) -> LossArgs<'_> {
        let target_view: wgpu_loss::Target<'_> = match &self.target {
            TargetArray::Dense(t) => t.view().into(),
            TargetArray::I32(t) => t.view().into(),
            TargetArray::I64(t) => t.view().into(),
        };
        let mut args = LossArgs::new(self.pred.view(), target_view).reduction(reduction);
        if let Some(w) = &self.weight {
            args = args.weight(w.view());
        }
        if let Some(q) = &self.pos_weight {
            args = args.pos_weight(q.view());
        }
        if let Some(d) = self.divisor {
            args = args.divisor(d);
        }
        if !want_grad {
            args = args.loss_only();
        }
        args
    }

    /// [`Inputs::args`], with each row's log-sum-exp if `want_lse`.
    fn args_lse(&self, reduction: Reduction, want_grad: bool, want_lse: bool) -> LossArgs<'_> {
        self.args(reduction, want_grad).want_lse(want_lse)
    }
}

/// Everything `compute` needs, checked: what [`execute`] runs.
pub struct Prepared {
    /// The loss with its options, validated.
    loss: Loss,
    /// `--reduction`.
    reduction: Reduction,
    /// The inputs, checked against the loss.
    inputs: Inputs,
    /// `--grad-out`, `--loss-out` then `--lse-out`, those given, with their temporary files.
    outputs: Outputs,
    /// The index of `--grad-out` in `outputs`.
    grad_k: Option<usize>,
    /// The index of `--loss-out` in `outputs`.
    loss_k: Option<usize>,
    /// The index of `--lse-out` in `outputs`.
    lse_k: Option<usize>,
}

/// A path for a message: control characters escaped, so that the message stays one line.
fn shown(p: &Path) -> String {
    npy::escape_controls(&p.display().to_string())
}

/// Library errors, with the file they concern.
fn with_file(
    a: &ComputeArgs,
    loss: &Loss,
    target: &TargetArray,
    args: &LossArgs<'_>,
    e: Error,
) -> Failure {
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
    // A hint the library cannot give: float targets shaped like class indices. (A uint64
    // class beyond int64 never gets here: the reader refuses it.)
    let hint = match (&e, target) {
        (Error::ShapeMismatch { what: "target", .. }, TargetArray::Dense(t))
            if t.shape() == args.row_shape() && loss.takes_classes() =>
        {
            Some(format!(
                "{e} (class indices must be an integer .npy, such as uint8, int32 or int64; \
                 float targets are probabilities shaped like the prediction)"
            ))
        }
        _ => None,
    };
    let mut f = Failure::from(e);
    if let Some(h) = hint {
        f.message = h;
    }
    if let Some(p) = path {
        f.message = format!("{}: {}", shown(p), f.message);
    }
    f
}

/// Everything that can fail on bad input, in order, before any work and without a GPU: the
/// loss and its options; the outputs (an input, the same file twice, a directory, a missing
/// or read-only folder, a read-only file: see [`super::output`]), whose temporary files are
/// created here; the prediction's elements (from its header) against what the device takes
/// and what memory holds, and every other input's (from its header) against the
/// prediction's; the inputs, read; their shapes and options against the loss
/// (`LossArgs::validate`).
/// The probability-domain and class-range checks need the data's pass and stay in
/// [`execute`].
pub(crate) fn prepare(a: &ComputeArgs) -> Result<Prepared, Failure> {
    let loss = loss_from(a)?;
    let reduction: Reduction = a.reduction.into();
    if a.loss_out.is_some() && reduction != Reduction::None {
        return Err(Failure::input(
            "--loss-out writes per-element (or per-row) losses, which need --reduction none",
        ));
    }
    if a.lse_out.is_some() && !loss.has_lse() {
        return Err(Failure::input(format!(
            "--lse-out writes each row's log-sum-exp, an output of softmax-ce; the {} loss has \
             none",
            loss.name()
        )));
    }
    let mut outs: Vec<(&str, &Path)> = Vec::new();
    let grad_k = a.grad_out.as_deref().map(|p| {
        outs.push(("--grad-out", p));
        outs.len() - 1
    });
    let loss_k = a.loss_out.as_deref().map(|p| {
        outs.push(("--loss-out", p));
        outs.len() - 1
    });
    let lse_k = a.lse_out.as_deref().map(|p| {
        outs.push(("--lse-out", p));
        outs.len() - 1
    });
    let ins: Vec<(&str, &Path)> = [
        ("--pred", Some(&a.pred)),
        ("--target", Some(&a.target)),
        ("--weight", a.weight.as_ref()),
        ("--pos-weight", a.pos_weight.as_ref()),
        ("--class-weight", a.class_weight.as_ref()),
    ]
    .into_iter()
    .filter_map(|(f, p)| p.map(|p| (f, p.as_path())))
    .collect();
    let outputs = output::plan(&outs, &ins)?;

    // Sized from the prediction's header before anything is read or allocated.
    let n = npy::peek_shape(&a.pred)
        .map_err(Failure::input)?
        .iter()
        .fold(1u64, |n, &d| n.saturating_mul(d as u64));
    if a.device == DeviceName::Gpu && n > super::MAX_ELEMENTS {
        return Err(Failure::input(format!(
            "{}: {n} elements; the GPU path takes at most {} per call (--device cpu takes more)",
            shown(&a.pred),
            super::MAX_ELEMENTS
        )));
    }
    // The inputs as f32 (prediction and target), then what the call needs on top.
    let needed = n
        .saturating_mul(8 + a.device.bytes_per_element())
        .saturating_add(a.device.fixed_bytes());
    super::check_memory(
        &shown(&a.pred),
        &format!("{} call on {n} elements", a.device.name()),
        needed,
    )?;
    // Every other input holds at most as many elements as the prediction (it is shaped like
    // it, or like a part of it): checked from the headers, so that none is read whole before
    // its shape is refused. An empty prediction is always refused (`Error::Empty`), so its
    // other inputs are held to one element (a scalar weight), whatever its dimensions.
    let most = n.max(1);
    let others = [
        (a.weight.as_ref(), "--weight"),
        (a.pos_weight.as_ref(), "--pos-weight"),
        (a.class_weight.as_ref(), "--class-weight"),
    ];
    for (p, flag) in [(Some(&a.target), "--target")].into_iter().chain(others) {
        let Some(p) = p else { continue };
        let shape = if flag == "--target" {
            npy::peek_target_shape(p)
        } else {
            npy::peek_shape(p)
        }
        .map_err(Failure::input)?;
        let m = shape.iter().fold(1u64, |m, &d| m.saturating_mul(d as u64));
        if m > most {
            return Err(Failure::input(npy::FileError {
                path: p.clone(),
                problem: if n == 0 {
                    format!(
                        "it has {m} elements, and the prediction {} is empty",
                        a.pred.display()
                    )
                } else {
                    format!(
                        "it has {m} elements, more than a {flag} of the prediction {} can have \
                         (at most {n})",
                        a.pred.display()
                    )
                },
            }));
        }
    }
    let read = |p: &PathBuf| npy::read_f32(p).map_err(Failure::input);
    let pred = read(&a.pred)?;
    let target = npy::read_target(&a.target).map_err(Failure::input)?;
    let target = target_array(target, &loss, &a.target)?;
    let weight = a
        .weight
        .as_ref()
        .or(a.class_weight.as_ref())
        .map(read)
        .transpose()?;
    let pos_weight = a.pos_weight.as_ref().map(read).transpose()?;
    // An integer option other than a switch is a class id (`--ignore-index`): it needs
    // class-index targets.
    let info = LossInfo::of(&loss);
    let is_switch = |name: &str| info.options().iter().any(|o| o.name == name && o.flag);
    let class_option = a
        .options
        .iter()
        .find(|(name, v)| matches!(v, OptionValue::Int(_)) && !is_switch(name));
    if let (Some((name, _)), TargetArray::Dense(_)) = (class_option, &target) {
        return Err(Failure::input(format!(
            "{}: --{name} applies to integer class-index targets, and these are floats",
            shown(&a.target)
        )));
    }
    let inputs = Inputs {
        pred,
        target,
        weight,
        pos_weight,
        divisor: a.divisor,
    };
    {
        let args = inputs.args_lse(reduction, a.grad_out.is_some(), a.lse_out.is_some());
        args.validate(&loss)
            .map_err(|e| with_file(a, &loss, &inputs.target, &args, e))?;
    }
    Ok(Prepared {
        loss,
        reduction,
        inputs,
        outputs,
        grad_k,
        loss_k,
        lse_k,
    })
}

/// `compute`: [`prepare`], then [`execute`].
pub fn run(a: &ComputeArgs) -> Result<(), Failure> {
    let p = prepare(a)?;
    execute(a, p)
}

/// Computes the loss on the device asked for, writes and commits the outputs, prints the
/// result.
pub(crate) fn execute(a: &ComputeArgs, mut p: Prepared) -> Result<(), Failure> {
    let (loss, reduction) = (p.loss, p.reduction);
    let args = p
        .inputs
        .args_lse(reduction, p.grad_k.is_some(), p.lse_k.is_some());
    let target = &p.inputs.target;
    let with_file = |e: Error| with_file(a, &loss, target, &args, e);

    let (out, adapter): (LossOutput<f32>, Option<String>) = match a.device {
        DeviceName::Gpu => {
            let ctx = GpuContext::new().map_err(Failure::from)?;
            let out = ctx.compute(&loss, &args).map_err(with_file)?;
            (out, Some(ctx.adapter_summary()))
        }
        DeviceName::Cpu => {
            let out = wgpu_loss::cpu::compute(&loss, &args).map_err(with_file)?;
            (out, None)
        }
        DeviceName::Reference => {
            // The f64 reference rounded once to f32.
            let out = Reference.compute(&loss, &args).map_err(with_file)?;
            (out, None)
        }
    };

    // Every output into its temporary file; renamed into place only when all are written.
    for (k, arr) in [
        (p.grad_k, &out.grad),
        (p.loss_k, &out.losses),
        (p.lse_k, &out.lse),
    ] {
        if let (Some(k), Some(arr)) = (k, arr)
            && let Some(s) = p.outputs.get(k)
        {
            s.write_npy(arr)?;
        }
    }
    output::commit(p.outputs)?;

    let pred = &p.inputs.pred;
    let rows = loss.is_row_wise().then(|| args.rows_cols());
    if a.json {
        let obj = json!({
            "loss": loss.name(),
            "reduction": reduction.name(),
            "divisor": a.divisor,
            "device": a.device.name(),
            "adapter": adapter,
            "elements": pred.len(),
            "shape": pred.shape(),
            "rows": rows.map(|(b, _)| b),
            "classes": rows.map(|(_, c)| c),
            "counted": out.counted,
            "value": out.value.map_or(serde_json::Value::Null, json_f32),
            "grad_out": a.grad_out.as_ref().map(|p| p.display().to_string()),
            "loss_out": a.loss_out.as_ref().map(|p| p.display().to_string()),
            "lse_out": a.lse_out.as_ref().map(|p| p.display().to_string()),
        });
        println!("{obj}");
    } else {
        let on = match a.device {
            DeviceName::Gpu => adapter.unwrap_or_default(),
            DeviceName::Cpu => format!(
                "the CPU (fast f32 path, {} threads)",
                rayon::current_num_threads()
            ),
            DeviceName::Reference => "the CPU reference (f64)".into(),
        };
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
        if let Some(p) = &a.lse_out {
            println!("per-row log-sum-exp written to {}", p.display());
        }
    }
    Ok(())
}
