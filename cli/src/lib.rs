//! The `wgpu-loss` command line's argument parsing and commands ([`main`]), for the binary,
//! its integration tests and the fuzzers. Not an API of its own: the library is `wgpu-loss`.

// The modules are public for the tests and fuzzers; their docs are for this crate's
// maintainers and link the private items they describe.
#![allow(rustdoc::private_intra_doc_links)]

pub mod bench;
pub mod compute;
pub mod main_job;
pub mod npy;
mod output;

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use wgpu_loss::losses::{LossInfo, LossOption};

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

/// The parser of a loss's name: the registry's names and aliases
/// (`wgpu_loss::losses::LossInfo`), each name with its one-line description; an alias is
/// returned as its loss's name, so that outputs print that.
pub(crate) fn loss_name() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(LossInfo::all().map(|i| {
        clap::builder::PossibleValue::new(i.name())
            .help(i.about())
            .aliases(i.aliases().iter().copied())
    }))
    .map(|name| LossInfo::named(&name).map_or(name, |i| i.name().to_string()))
}

/// The list of the losses for `--help`, from the registry: each loss's name, its aliases and
/// its one-line description, then each of its options with its default.
pub(crate) fn losses_help() -> String {
    let width = LossInfo::all()
        .map(|i| i.name().len())
        .chain(
            LossInfo::all()
                .flat_map(|i| i.options())
                .map(|o| o.name.len() + 4),
        )
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = String::from(
        "Losses (compute --loss, bench --losses; an alias names the same loss) and their options:",
    );
    for info in LossInfo::all() {
        out.push_str(&format!("\n  {:<width$}{}", info.name(), info.about()));
        if !info.aliases().is_empty() {
            out.push_str(&format!(
                "\n  {:<width$}aliases: {}",
                "",
                info.aliases().join(", ")
            ));
        }
        for o in info.options() {
            let default = if o.integer {
                format!("{}", o.default as i64)
            } else if o.default != 0.0 && !(1e-3..1e6).contains(&o.default.abs()) {
                format!("{:e}", o.default)
            } else {
                format!("{}", o.default)
            };
            out.push_str(&format!(
                "\n    {:<w$}{} [default: {default}]",
                format!("--{}", o.name),
                o.help,
                w = width - 2
            ));
        }
    }
    out
}

/// The command line of `wgpu-loss`: [`Cli`]'s, with every loss option of the registry added
/// to `compute` as `--<name>` (so a new loss's options need no change here), and the list of
/// the losses ([`losses_help`]) after the help of the program and of `compute`.
fn command() -> clap::Command {
    use clap::CommandFactory;
    let losses = losses_help();
    Cli::command()
        .after_help(losses.clone())
        .mut_subcommand("compute", |mut sub| {
            let mut seen: Vec<&str> = Vec::new();
            for info in LossInfo::all() {
                for o in info.options() {
                    if seen.contains(&o.name) {
                        continue;
                    }
                    seen.push(o.name);
                    // The losses that take an option of this name, with their own help and
                    // default (smooth-l1's and jsd's `beta` differ in both).
                    let takers: Vec<(&str, LossOption)> = LossInfo::all()
                        .filter_map(|i| {
                            let x = i.options().iter().find(|x| x.name == o.name)?;
                            Some((i.name(), *x))
                        })
                        .collect();
                    let names: Vec<&str> = takers.iter().map(|(n, _)| *n).collect();
                    let help = if takers
                        .iter()
                        .all(|(_, x)| x.help == o.help && x.default == o.default)
                    {
                        format!(
                            "{} ({} only; default {})",
                            o.help,
                            names.join(", "),
                            o.default
                        )
                    } else {
                        takers
                            .iter()
                            .map(|(n, x)| format!("{n}: {} (default {})", x.help, x.default))
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    let arg = clap::Arg::new(o.name)
                        .long(o.name)
                        .allow_negative_numbers(true)
                        .help(help);
                    sub = sub.arg(if o.integer {
                        arg.value_parser(clap::value_parser!(i64))
                    } else {
                        arg.value_parser(clap::value_parser!(f64))
                    });
                }
            }
            sub.after_help(losses)
        })
}

/// Parses `argv` (the program's name first): [`Cli`], with the loss options given to
/// `compute` collected into its `options`.
fn parse<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if let (Some(Command::Compute(args)), Some(sub)) =
        (&mut cli.command, matches.subcommand_matches("compute"))
    {
        args.options = compute::loss_options(sub);
    }
    Ok(cli)
}

/// The CLI's reduction names.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReductionName {
    Mean,
    Sum,
    None,
    /// The sum divided by the first dimension's size (PyTorch kl_div's `batchmean`).
    Batchmean,
}

impl From<ReductionName> for wgpu_loss::Reduction {
    fn from(r: ReductionName) -> Self {
        match r {
            ReductionName::Mean => wgpu_loss::Reduction::Mean,
            ReductionName::Sum => wgpu_loss::Reduction::Sum,
            ReductionName::None => wgpu_loss::Reduction::None,
            ReductionName::Batchmean => wgpu_loss::Reduction::BatchMean,
        }
    }
}

/// A failure with its exit code: 2 for bad input, 1 for everything else.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit code.
    pub code: u8,
    /// One line, printed after `wgpu-loss: error: `.
    pub message: String,
}

impl Failure {
    /// Bad input: exit 2.
    pub fn input(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Any other failure: exit 1.
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

/// Parses the command line, runs the command, prints a failure as one line and returns its
/// exit code.
pub fn main() -> ExitCode {
    let cli = parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
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

/// What the checking half of a command produced ([`check_only`]): what its work half would
/// run, with the outputs' temporary files, which are removed when this is dropped.
#[allow(
    dead_code,
    reason = "the entry point of the fuzzer (fuzz/) and of tests/fuzz_regressions.rs"
)]
pub enum Checked {
    /// `compute`: [`compute::prepare`]'s result.
    Compute(Box<compute::Prepared>),
    /// `bench`: [`bench::prepare`]'s result.
    Bench(bench::Prepared),
    /// No command (the main job): [`main_job::prepare`]'s result.
    MainJob(main_job::Plan),
}

/// Parses `argv` (the program's name first) as [`main`] does, then runs only the checking
/// half of the command it names (`compute::prepare`, `bench::prepare` or
/// `main_job::prepare`): never a GPU, never the work, nothing printed. A usage error (and
/// `--help`, `--version`) is clap's error, the outer `Err`; a refusal is the inner one.
#[allow(
    dead_code,
    reason = "the entry point of the fuzzer (fuzz/) and of tests/fuzz_regressions.rs"
)]
pub fn check_only<I, T>(argv: I) -> Result<Result<Checked, Failure>, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = parse(argv)?;
    Ok(match cli.command {
        Some(Command::Compute(args)) => {
            compute::prepare(&args).map(|p| Checked::Compute(Box::new(p)))
        }
        Some(Command::Bench(args)) => bench::prepare(&args).map(Checked::Bench),
        None => main_job::prepare(&cli.main_job).map(Checked::MainJob),
    })
}

/// The most elements one GPU call takes: fewer than 2^32 − 1 (the kernels index in u32).
pub(crate) const MAX_ELEMENTS: u64 = u32::MAX as u64 - 1;

/// The most timed runs per loss and path a command accepts.
pub(crate) const MAX_REPEATS: usize = 1_000_000;

/// Host bytes per element of the largest loss of the main job or a bench point, at its peak:
/// the prediction and target (8), the GPU call's buffers and readback, which a software
/// adapter keeps in host memory, with its pool (about 24), the GPU result's gradient (4), the
/// f64 reference's gradient and working copies (about 16) and the fast CPU path's gradient (4).
/// Measured on llvmpipe: 46 to 66 bytes per element.
pub(crate) const BYTES_PER_ELEMENT: u64 = 64;

/// Host bytes the process needs whatever the sizes (the GPU driver, the binary), measured:
/// about 100 MiB on llvmpipe.
pub(crate) const BASE_BYTES: u64 = 128 << 20;

/// `--repeats N` of every command that takes it (the main job, `bench`): at least 1, at most
/// [`MAX_REPEATS`], with the same message everywhere.
pub(crate) fn check_repeats(value: usize) -> Result<usize, Failure> {
    check_count(
        "--repeats",
        value,
        MAX_REPEATS as u64,
        "timed runs per loss and path",
    )
}

/// `--flag N`: checks a user count against `[1, max]`, naming the flag and the reason.
pub(crate) fn check_count(flag: &str, value: usize, max: u64, why: &str) -> Result<usize, Failure> {
    if value == 0 {
        return Err(Failure::input(format!("{flag} must be at least 1")));
    }
    if value as u64 > max {
        return Err(Failure::input(format!(
            "{flag} {value}: at most {max} ({why})"
        )));
    }
    Ok(value)
}

/// `rows × cols` elements of one call, checked against overflow and [`MAX_ELEMENTS`];
/// `what` names the flags for the message (`--rows 4096 --classes 32000`).
pub(crate) fn row_elements(what: &str, rows: usize, cols: usize) -> Result<u64, Failure> {
    let n = (rows as u64).checked_mul(cols as u64).ok_or_else(|| {
        Failure::input(format!(
            "{what}: {rows} x {cols} elements overflow a 64-bit count"
        ))
    })?;
    if n > MAX_ELEMENTS {
        return Err(Failure::input(format!(
            "{what}: {rows} x {cols} = {n} elements in one call; the GPU path takes at most \
             {MAX_ELEMENTS}"
        )));
    }
    Ok(n)
}

/// Bytes as GiB for a message: one decimal, or a mantissa and exponent past 10^5.
fn gib(bytes: u64) -> String {
    let g = bytes as f64 / f64::from(1u32 << 30);
    if g >= 1e5 {
        format!("{g:.1e}")
    } else {
        format!("{g:.1}")
    }
}

/// Refuses a job whose estimated peak host memory (`needed` bytes) exceeds what the machine
/// has available ([`memory_available`]); passes where that cannot be read.
pub(crate) fn check_memory(what: &str, job: &str, needed: u64) -> Result<(), Failure> {
    match memory_available() {
        Some(avail) if needed > avail => Err(Failure::input(format!(
            "{what}: the {job} would need {} GiB of memory, this machine has {} GiB available",
            gib(needed),
            gib(avail)
        ))),
        _ => Ok(()),
    }
}

/// The memory available to this process, in bytes: `MemAvailable` of `/proc/meminfo`, lowered
/// to what a cgroup memory limit leaves (v2 `memory.max − memory.current`, v1
/// `memory.limit_in_bytes − memory.usage_in_bytes`, the inactive page cache counted as free,
/// over the process's cgroup and its ancestors), and to `WGPU_LOSS_MEMORY_AVAILABLE` (bytes; for tests: it can only lower the
/// figure). `None` where none of these can be read (not Linux).
pub(crate) fn memory_available() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .and_then(|kb| kb.checked_mul(1024))
    });
    let override_ = std::env::var("WGPU_LOSS_MEMORY_AVAILABLE")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    [meminfo, cgroup_available(), override_]
        .into_iter()
        .flatten()
        .min()
}

/// The reclaimable page cache of a cgroup: `inactive_file` (v2) or `total_inactive_file`
/// (v1) of its `memory.stat`.
fn inactive_file(stat: &Path) -> Option<u64> {
    let text = fs::read_to_string(stat).ok()?;
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    value("total_inactive_file").or_else(|| value("inactive_file"))
}

/// What the process's cgroup memory limits leave, the tightest over its cgroup and ancestors.
fn cgroup_available() -> Option<u64> {
    let groups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |p: &Path| -> Option<u64> { fs::read_to_string(p).ok()?.trim().parse().ok() };
    // Limits this large mean "none" (v1 writes 2^63 rounded down to a page).
    let none = 1u64 << 62;
    let mut best: Option<u64> = None;
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (root, limit_file, usage_file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        let mut dir = Some(Path::new(path));
        while let Some(d) = dir {
            let base = Path::new(root).join(d.strip_prefix("/").unwrap_or(d));
            if let (Some(limit), Some(usage)) =
                (read(&base.join(limit_file)), read(&base.join(usage_file)))
                && limit < none
            {
                // The usage counts the page cache; its inactive part is reclaimed on demand.
                let cache = inactive_file(&base.join("memory.stat")).unwrap_or(0);
                let left = limit.saturating_sub(usage.saturating_sub(cache));
                best = Some(best.map_or(left, |b| b.min(left)));
            }
            dir = d.parent();
        }
    }
    best
}
