//! Argument parsing and the commands.

mod bench;
mod compute;
mod main_job;
mod npy;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// GPU-accelerated loss functions (value and gradient) through wgpu, checked against an f64
/// CPU reference.
///
/// With no command, runs the main job: every loss on a seeded synthetic batch, on the GPU and
/// the CPU reference, and prints a comparison table.
#[derive(Parser, Debug)]
#[command(
    name = "wgpu-loss",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    main_job: main_job::MainJobArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Computes one loss over `.npy` inputs.
    Compute(compute::ComputeArgs),
    /// Times every loss, GPU and CPU, over a sweep of sizes, against the adapter's and the
    /// host's copy bandwidth measured in the same run.
    Bench(bench::BenchArgs),
}

/// The CLI's loss names.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LossName {
    Mse,
    Mae,
    Huber,
    Bce,
    BceWithLogits,
    /// Categorical cross entropy on probabilities, rows of `[B, C]`.
    Cce,
    /// Softmax cross entropy from logits `[B, C]`: probability targets `[B, C]` or class
    /// indices `[B]`.
    SoftmaxCe,
    /// Cosine proximity of the rows of `[B, C]`.
    Cosine,
}

/// The CLI's reduction names.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReductionName {
    Mean,
    Sum,
    None,
}

impl From<ReductionName> for wgpu_loss::Reduction {
    fn from(r: ReductionName) -> Self {
        match r {
            ReductionName::Mean => wgpu_loss::Reduction::Mean,
            ReductionName::Sum => wgpu_loss::Reduction::Sum,
            ReductionName::None => wgpu_loss::Reduction::None,
        }
    }
}

/// A failure with its exit code: 2 for bad input, 1 for everything else.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn input(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// Maps a library error to an exit code: bad input (2) or a runtime failure (1).
impl From<wgpu_loss::Error> for Failure {
    fn from(e: wgpu_loss::Error) -> Self {
        use wgpu_loss::Error as E;
        match e {
            E::ShapeMismatch { .. }
            | E::Empty { .. }
            | E::InvalidOption { .. }
            | E::OutOfDomain { .. }
            | E::ClassOutOfRange { .. } => Failure::input(e),
            _ => Failure::runtime(e),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Compute(args)) => compute::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        None => main_job::run(&cli.main_job),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("wgpu-loss: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// An output file is checked before any work: its directory must exist (bad input, exit 2).
pub(crate) fn check_output(path: &std::path::Path) -> Result<(), Failure> {
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
    Ok(())
}
