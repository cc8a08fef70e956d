//! The fuzzers' findings and seeds, on stable Rust (docs/fuzzing.md).
//!
//! Every input under `fuzz/regressions/<target>/` (what fuzzing found, each fixed) and the
//! committed seeds under `fuzz/corpus/<target>/` run through the fuzz targets' own checks,
//! `fuzz/props/npy.rs` and `fuzz/props/cli.rs`, included here by path as the targets include
//! them, over the CLI's library half (`wgpu_loss_cli`). So `cargo test` keeps every
//! finding fixed without nightly or cargo-fuzz. Each input must also take under
//! [`LIMIT`] (the fastest of three runs) and ask for no single allocation over
//! [`MALLOC_LIMIT`] (the fuzzers' `-malloc_limit_mb=64`, enforced here by a global allocator
//! that refuses such a request and remembers it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// The checks use `crate::npy` and `crate::cli`, as in the fuzz targets.
use wgpu_loss_cli as cli;
use wgpu_loss_cli::npy;

#[path = "../../fuzz/props/npy.rs"]
mod npy_props;

#[path = "../../fuzz/props/cli.rs"]
mod cli_props;

/// The longest one input may take (the fuzzers' bound, scripts/fuzz.sh).
const LIMIT: Duration = Duration::from_millis(100);

/// The largest single allocation an input may ask for (the fuzzers' `-malloc_limit_mb=64`).
const MALLOC_LIMIT: usize = 64 << 20;

/// The largest allocation asked for since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, but a request over [`MALLOC_LIMIT`] fails (a fallible reservation
/// returns its error; anything else aborts the test) and is remembered in [`LARGEST`].
struct Limited;

unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > MALLOC_LIMIT {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;

/// The files of `fuzz/regressions/<target>` and `fuzz/corpus/<target>` (either may be
/// missing), sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut v: Vec<PathBuf> = ["regressions", "corpus"]
        .iter()
        .filter_map(|d| fs::read_dir(root.join(d).join(target)).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `check` on every input of `target` three times; fails, naming every input that
/// failed, if any violated a property (the check panics; its message is printed), was slower
/// than [`LIMIT`], or asked for an allocation over [`MALLOC_LIMIT`]. Returns the count.
fn run_all(target: &str, check: impl Fn(&[u8])) -> usize {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    let mut failed = Vec::new();
    for f in &files {
        let data = fs::read(f).expect("read an input");
        LARGEST.store(0, Ordering::Relaxed);
        let mut best = Duration::MAX;
        let mut problem = None;
        for _ in 0..3 {
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
            best = best.min(t0.elapsed());
            if r.is_err() {
                problem = Some("fails its check".to_string());
                break;
            }
        }
        let largest = LARGEST.swap(0, Ordering::Relaxed);
        if problem.is_none() && best >= LIMIT {
            problem = Some(format!("took {best:?}"));
        }
        if problem.is_none() && largest > MALLOC_LIMIT {
            problem = Some(format!("asked for {largest} bytes at once"));
        }
        if let Some(p) = problem {
            failed.push(format!("{}: {p}", f.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    files.len()
}

#[test]
fn npy_inputs_pass_the_fuzz_checks() {
    let n = run_all("npy", npy_props::check);
    assert!(n >= 10, "{n} npy inputs");
}

/// Removes the CLI fixtures when the test ends, passed or failed.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        cli_props::remove_tree(&cli_props::fixtures().base);
    }
}

/// One test function for every CLI input: the check sets the working directory and
/// `WGPU_LOSS_MEMORY_AVAILABLE` for each input, which must not race another input.
#[test]
fn cli_inputs_pass_the_fuzz_checks() {
    let _cleanup = Cleanup;
    let n = run_all("cli", cli_props::check);
    assert!(n >= 10, "{n} cli inputs");

    // The entry point itself: usage errors are clap's, refusals the CLI's, and an accepted
    // command holds its outputs' temporary files until dropped.
    let fx = &cli_props::fixtures().fx;
    let argv = |args: &[&str]| {
        let mut v = vec!["wgpu-loss".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let help = cli::check_only(argv(&["--help"]))
        .err()
        .expect("--help is clap's");
    assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    let f = cli::check_only(argv(&["--elements", "0"]))
        .expect("parses")
        .err()
        .expect("refused");
    assert_eq!(
        (f.code, f.message.as_str()),
        (2, "--elements must be at least 1")
    );
    let p = fx.join("p.npy").display().to_string();
    let out = fx.join("ok.npy");
    let args = [
        "compute",
        "--loss",
        "mse",
        "--pred",
        &p,
        "--target",
        &p,
        "--grad-out",
        out.to_str().expect("a UTF-8 path"),
    ];
    let checked = cli::check_only(argv(&args)).expect("parses");
    assert!(matches!(checked, Ok(cli::Checked::Compute(_))));
    let temps = || {
        fs::read_dir(fx)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ok.npy."))
            .count()
    };
    assert_eq!(temps(), 1, "the output's temporary file exists while held");
    drop(checked);
    assert_eq!(temps(), 0, "and is removed when dropped");
    assert!(!out.exists(), "the output itself is never written");
}
