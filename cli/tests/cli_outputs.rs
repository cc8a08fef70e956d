//! The CLI's outputs cannot destroy anything, and its sizes are bounded: the binary run as a
//! child process, as in `tests/cli.rs`, each case in a temporary directory whose listing is
//! checked at the end (no file left behind, nothing touched).
//!
//! Outputs: an output that is an input (by name, through `..`, through a symlink either way),
//! two outputs that are one file, a directory, a missing, read-only or unwritable folder, a
//! read-only file, a symlink planted under a guessable temporary name, and SIGTERM / SIGINT
//! during the work. Sizes: counts beyond what a GPU call indexes, a job beyond the machine's
//! memory, `--repeats 0`, each refused with exit 2 and one line, fast.
//!
//! None of these needs a GPU: the refusals come before any device is touched, and the runs
//! that do work use `--device cpu` or `--device reference`.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};

/// How long a refusal may take: it comes before any work.
const FAST: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers (`run`, `argv`, `assert_rejected` as in tests/cli.rs)
// ---------------------------------------------------------------------------------------------

/// The binary with `args`, in `cwd` where given, with extra environment.
fn command(args: &[impl AsRef<OsStr>], env: &[(&str, &str)], cwd: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgpu-loss"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd
}

/// Runs the binary to its end, killing it after `limit` (today's CLI would run a refused job
/// for minutes, or until the kernel kills it); returns its output and how long it ran.
fn run_limited(
    args: &[impl AsRef<OsStr>],
    env: &[(&str, &str)],
    cwd: Option<&Path>,
    limit: Duration,
) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = command(args, env, cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wgpu-loss binary runs");
    // Drain both pipes on threads, so that a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait for the killed child");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = t0.elapsed();
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, elapsed)
}

/// Runs the binary with `args` to its end (at most a minute).
fn run(args: &[impl AsRef<OsStr>]) -> Output {
    run_limited(args, &[], None, Duration::from_secs(60)).0
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `word` with every `{NAME}` replaced by the path `dir/NAME`.
fn fill(dir: &Path, word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let close = open
            + rest[open..]
                .find('}')
                .expect("a `{` without `}` in a template");
        out.push_str(&rest[..open]);
        out.push_str(s(&dir.join(&rest[open + 1..close])));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Command-line words: `template` split at white space, then each word filled (`fill`).
fn argv(dir: &Path, template: &str) -> Vec<String> {
    template.split_whitespace().map(|w| fill(dir, w)).collect()
}

/// Asserts exit `code` and a single-line stderr, the CLI's `wgpu-loss: error: ` message,
/// containing every string of `needles`. Graphics drivers may print their own lines first
/// (Mesa's EGL: "XDG_RUNTIME_DIR is invalid or not set"); those are skipped.
fn assert_rejected(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let msg = *lines.last().unwrap_or_else(|| panic!("nothing on stderr"));
    assert!(
        msg.starts_with("wgpu-loss: error: "),
        "the last stderr line must be the CLI's one-line message, got:\n{err}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("wgpu-loss")).count(),
        1,
        "one message only:\n{err}"
    );
    for n in needles {
        assert!(msg.contains(n), "stderr should mention {n:?}: {err}");
    }
}

/// The names in `dir`, sorted (hidden ones included: a temporary file is `.NAME.XXXXXX.tmp`).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `dir` holds exactly `names`.
fn assert_listing(dir: &Path, names: &[&str]) {
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(listing(dir), want, "the files in {}", dir.display());
}

/// Writes p.npy = [1, 2, 3] and t.npy = [1, 1, 1] into `dir`; returns p.npy's bytes.
fn small_pair(dir: &Path) -> Vec<u8> {
    let p = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0f32, 2.0, 3.0]).unwrap();
    write_npy(dir.join("p.npy"), &p).unwrap();
    write_npy(dir.join("t.npy"), &ArrayD::from_elem(IxDyn(&[3]), 1.0f32)).unwrap();
    fs::read(dir.join("p.npy")).unwrap()
}

/// `compute --loss mse --pred {p.npy} --target {t.npy} --device cpu` and `rest`, in `dir`.
fn compute_small(dir: &Path, rest: &str) -> Output {
    let template = format!("compute --loss mse --pred {{p.npy}} --target {{t.npy}} {rest}");
    run(&argv(dir, &format!("{template} --device cpu")))
}

/// Whether this process can create a file in a folder without write permission (root can),
/// found by trying.
fn ignores_permissions(dir: &Path) -> bool {
    let probe = dir.join("probe");
    fs::create_dir(&probe).unwrap();
    set_mode(&probe, 0o555);
    let ignored = fs::write(probe.join("x"), "x").is_ok();
    let _ = fs::remove_file(probe.join("x"));
    set_mode(&probe, 0o755);
    fs::remove_dir(&probe).unwrap();
    ignored
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// `--grad-out` naming the prediction is refused before any work; the input is untouched.
#[test]
fn output_is_the_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = small_pair(d);
    let out = compute_small(d, "--grad-out {p.npy}");
    assert_rejected(
        &out,
        2,
        &[s(&d.join("p.npy")), "--grad-out", "input --pred"],
    );
    assert_eq!(
        fs::read(d.join("p.npy")).unwrap(),
        before,
        "the input changed"
    );
    assert_listing(d, &["p.npy", "t.npy"]);
}

/// `--grad-out sub/../g.npy --loss-out g.npy` name one file: refused, nothing written.
#[test]
fn output_through_dot_dot_is_the_other_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    fs::create_dir(d.join("sub")).unwrap();
    let out = compute_small(
        d,
        "--reduction none --grad-out {sub/../g.npy} --loss-out {g.npy}",
    );
    assert_rejected(&out, 2, &["--grad-out and --loss-out name the same file"]);
    assert_listing(d, &["p.npy", "sub", "t.npy"]);
    assert_listing(&d.join("sub"), &[]);
}

/// An output path that is a symlink to an input is that input: refused, link and input kept.
#[test]
fn output_symlink_to_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = small_pair(d);
    std::os::unix::fs::symlink("p.npy", d.join("link.npy")).unwrap();
    let out = compute_small(d, "--grad-out {link.npy}");
    assert_rejected(&out, 2, &[s(&d.join("link.npy")), "input --pred"]);
    assert_eq!(
        fs::read(d.join("p.npy")).unwrap(),
        before,
        "the input changed"
    );
    assert_eq!(
        fs::read_link(d.join("link.npy")).unwrap(),
        PathBuf::from("p.npy")
    );
    assert_listing(d, &["link.npy", "p.npy", "t.npy"]);
}

/// The other way round: the prediction read through a symlink, the output naming the file it
/// points to. Refused; the file is untouched.
#[test]
fn output_is_the_target_of_an_input_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let before = small_pair(d);
    std::os::unix::fs::symlink("p.npy", d.join("link.npy")).unwrap();
    let template = "compute --loss mse --pred {link.npy} --target {t.npy} --device cpu \
                    --grad-out {p.npy}";
    let out = run(&argv(d, template));
    assert_rejected(&out, 2, &[s(&d.join("p.npy")), "input --pred"]);
    assert_eq!(
        fs::read(d.join("p.npy")).unwrap(),
        before,
        "the input changed"
    );
    assert_listing(d, &["link.npy", "p.npy", "t.npy"]);
}

/// A directory as `--loss-out` is refused before any work: nothing is written at
/// `--grad-out`, the directory stays empty.
#[test]
fn directory_as_loss_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    fs::create_dir(d.join("D")).unwrap();
    let out = compute_small(d, "--reduction none --grad-out {G.npy} --loss-out {D}");
    assert_rejected(&out, 2, &[s(&d.join("D")), "is a directory"]);
    assert_listing(d, &["D", "p.npy", "t.npy"]);
    assert_listing(&d.join("D"), &[]);
}

/// An output in a folder that does not exist: refused, naming the folder; the folder is not
/// created, and the other output is not written. (Today's CLI already refused this one.)
#[test]
fn missing_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    let out = compute_small(
        d,
        "--reduction none --grad-out {G.npy} --loss-out {no-such-dir/L.npy}",
    );
    let missing = d.join("no-such-dir");
    assert_rejected(&out, 2, &[s(&missing), "does not exist"]);
    assert_listing(d, &["p.npy", "t.npy"]);
}

/// An existing read-only output file is refused, and kept as it was (mode and contents),
/// whoever runs the test (the file's mode is checked, not only what the process may do).
#[test]
fn read_only_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    let g = d.join("G.npy");
    fs::write(&g, "keep me").unwrap();
    set_mode(&g, 0o444);
    let out = compute_small(d, "--grad-out {G.npy}");
    assert_rejected(&out, 2, &[s(&g), "read-only"]);
    assert_eq!(fs::read_to_string(&g).unwrap(), "keep me");
    assert!(fs::metadata(&g).unwrap().permissions().readonly());
    assert_listing(d, &["G.npy", "p.npy", "t.npy"]);
}

/// An output in a read-only folder (mode 0555) is refused before any work, whoever runs the
/// test: the folder's mode is checked as well as whether a file can be created in it.
#[test]
fn read_only_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    fs::create_dir(d.join("ro")).unwrap();
    set_mode(&d.join("ro"), 0o555);
    let out = compute_small(
        d,
        "--reduction none --loss-out {L.npy} --grad-out {ro/G.npy}",
    );
    set_mode(&d.join("ro"), 0o755);
    assert_rejected(&out, 2, &[s(&d.join("ro/G.npy")), "read-only"]);
    assert_listing(&d.join("ro"), &[]);
    assert_listing(d, &["p.npy", "ro", "t.npy"]);
}

/// A folder whose mode has write bits but where this process cannot create a file (`/`, for
/// anyone but root) is found by creating the temporary file up front: refused with exit 2
/// before any work, not exit 1 after it. Skipped as root, which may write anywhere.
#[test]
fn unwritable_folder_is_probed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if ignores_permissions(d) {
        // Straight to the process's stderr, past the test harness's capture: a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "skipped unwritable_folder_is_probed: this process ignores file permissions (root), \
             so no folder with write bits is unwritable to it"
        );
        return;
    }
    small_pair(d);
    let target = Path::new("/wgpu-loss-test-G.npy");
    assert!(!target.exists());
    let template = format!(
        "compute --loss mse --pred {{p.npy}} --target {{t.npy}} --device cpu --grad-out {}",
        s(target)
    );
    let out = run(&argv(d, &template));
    assert_rejected(&out, 2, &[s(target), "cannot create a file in folder"]);
    assert!(!target.exists());
    assert_listing(d, &["p.npy", "t.npy"]);
}

/// Symlinks planted under every name today's CLI would have used for its temporary file
/// (`.G.npy.tmp-PID`, for the next few thousand process ids) pointing at another file: that
/// file is not modified, the links are left alone, and the output is written.
#[test]
fn planted_symlink_at_a_predictable_temp_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_pair(d);
    fs::write(d.join("victim.txt"), "precious").unwrap();
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let last = Command::new("true").spawn().unwrap();
    let base = last.id();
    let mut last = last;
    last.wait().unwrap();
    let mut planted = Vec::new();
    for k in 1..=3000u32 {
        let mut pid = base + k;
        if pid >= pid_max {
            pid = pid - pid_max + 300; // the kernel wraps to 300
        }
        let link = d.join(format!(".G.npy.tmp-{pid}"));
        std::os::unix::fs::symlink(d.join("victim.txt"), &link).unwrap();
        planted.push(link);
    }
    let out = compute_small(d, "--grad-out {G.npy}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(
        fs::read(d.join("victim.txt")).unwrap(),
        b"precious",
        "the file the planted links point to was written"
    );
    let g: ArrayD<f32> = read_npy(d.join("G.npy")).expect("the gradient is a .npy");
    let want = [0.0f32, 2.0 / 3.0, 4.0 / 3.0];
    assert!(g.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{g}");
    for l in &planted {
        assert_eq!(fs::read_link(l).unwrap(), d.join("victim.txt"), "{l:?}");
        fs::remove_file(l).unwrap();
    }
    assert_listing(d, &["G.npy", "p.npy", "t.npy", "victim.txt"]);
}

/// Starts `compute` on 2^24 elements on the reference (about a second of work), waits until
/// its temporary files exist, sends `signal` (`kill -SIGNAL`), and checks the exit code
/// and that no file is left but the inputs.
fn signal_during_compute(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 1 << 24;
    let pred = ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] % 1000) as f32 / 100.0 - 5.0);
    let target = ArrayD::from_shape_fn(IxDyn(&[n]), |i| (i[0] % 7) as f32 / 6.0);
    write_npy(d.join("pred.npy"), &pred).unwrap();
    write_npy(d.join("target.npy"), &target).unwrap();
    drop((pred, target));
    let template = "compute --loss bce-with-logits --pred {pred.npy} --target {target.npy} \
                    --device reference --reduction none --loss-out {L.npy} --grad-out {G.npy}";
    let mut child: Child = command(&argv(d, template), &[], None)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wgpu-loss binary runs");
    let t0 = Instant::now();
    let is_temp = |n: &String| n.starts_with('.') && n.ends_with(".tmp");
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("compute ended ({st}) before its temporary files appeared");
        }
        if listing(d).iter().filter(|n| is_temp(n)).count() == 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no temporary files after a minute"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{signal}: exit status {:?}, stderr:\n{}",
        out.status,
        stderr(&out)
    );
    assert_listing(d, &["pred.npy", "target.npy"]);
}

/// SIGTERM during a long compute: exit 143, the temporary files removed, no output.
#[test]
fn sigterm_during_compute_leaves_no_temp_file() {
    signal_during_compute("TERM", 143);
}

/// SIGINT (Ctrl-C) during a long compute: exit 130, the temporary files removed, no output.
#[test]
fn sigint_during_compute_leaves_no_temp_file() {
    signal_during_compute("INT", 130);
}

/// `bench --json X --plot X`: one file for two outputs, refused before any work.
#[test]
fn bench_json_and_plot_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = argv(d, "bench --quick --json {X} --plot {X}");
    let (out, took) = run_limited(&args, &[], Some(d), FAST);
    assert_rejected(&out, 2, &["--json and --plot name the same file"]);
    assert!(took < FAST, "took {took:?}");
    assert_listing(d, &[]);
}

/// `bench --plot` naming a directory: refused before any work, nothing written at `--json`.
#[test]
fn bench_plot_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("D")).unwrap();
    let args = argv(d, "bench --quick --json {B.json} --plot {D}");
    let (out, took) = run_limited(&args, &[], Some(d), FAST);
    assert_rejected(&out, 2, &[s(&d.join("D")), "is a directory"]);
    assert!(took < FAST, "took {took:?}");
    assert_listing(d, &["D"]);
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// Runs `args` in an empty temporary directory with `env`; asserts exit 2, one line with
/// every needle, nothing on stdout, under [`FAST`], and no file left.
fn refused_fast(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run_limited(args, env, Some(dir.path()), FAST);
    assert_rejected(&out, 2, needles);
    assert!(took < FAST, "{args:?} took {took:?}");
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    assert_listing(dir.path(), &[]);
}

/// `--elements 2^64 - 1`: beyond one GPU call (panicked with exit 101).
#[test]
fn main_job_elements_beyond_u32() {
    refused_fast(
        &["--elements", "18446744073709551615"],
        &[],
        &["--elements 18446744073709551615", "4294967294"],
    );
}

/// `--rows 2^32 --classes 1`: beyond one GPU call (aborted).
#[test]
fn main_job_rows_beyond_u32() {
    refused_fast(
        &["--rows", "4294967296", "--classes", "1"],
        &[],
        &["--rows 4294967296", "4294967294"],
    );
}

/// `--rows` × `--classes` overflowing the elements of one call.
#[test]
fn main_job_rows_times_classes_beyond_u32() {
    refused_fast(
        &["--rows", "100000", "--classes", "100000"],
        &[],
        &["--rows 100000 --classes 100000", "10000000000 elements"],
    );
}

/// `bench --rows 1x2^32`: beyond one GPU call (grew until the kernel killed it).
#[test]
fn bench_rows_beyond_u32() {
    refused_fast(
        &["bench", "--rows", "1x4294967296"],
        &[],
        &["--rows 1x4294967296", "4294967294"],
    );
}

/// `bench --sizes 2^64 - 1`.
#[test]
fn bench_sizes_beyond_u32() {
    refused_fast(
        &["bench", "--sizes", "18446744073709551615"],
        &[],
        &["--sizes 18446744073709551615", "4294967294"],
    );
}

/// `--repeats 0` is refused by the main job as by bench, and so is a count beyond the cap.
#[test]
fn main_job_repeats_zero() {
    refused_fast(&["--repeats", "0"], &[], &["--repeats must be at least 1"]);
    refused_fast(
        &["--repeats", "18446744073709551615"],
        &[],
        &["--repeats 18446744073709551615", "at most"],
    );
    refused_fast(
        &["bench", "--repeats", "0"],
        &[],
        &["--repeats must be at least 1"],
    );
}

/// A job that fits one GPU call but not the machine's memory (here 1 GiB, by the test
/// override, which can only lower the figure read from /proc/meminfo) is refused before
/// any work, with what it would need and what there is.
#[test]
fn main_job_memory_beyond_available() {
    let env = [("WGPU_LOSS_MEMORY_AVAILABLE", "1073741824")];
    refused_fast(
        &[
            "--elements",
            "100000000",
            "--rows",
            "64",
            "--classes",
            "300",
        ],
        &env,
        &[
            "--elements 100000000: the main job would need ",
            "GiB of memory, this machine has 1.0 GiB available",
        ],
    );
    refused_fast(
        &["bench", "--losses", "mse", "--sizes", "100000000"],
        &env,
        &["--sizes 100000000: the bench would need "],
    );
}

/// A `.npy` of 2^30 f32 (4 GiB, a sparse file here) with 1 GiB of memory available is refused
/// from its header alone, before a byte of its data is read or allocated (it was read whole
/// first, and sized after).
#[test]
fn compute_input_beyond_available_memory() {
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = 1 << 30;
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let path = dir.path().join("big.npy");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(10 + header.len() as u64 + 4 * n).unwrap();
    drop(f);
    let env = [("WGPU_LOSS_MEMORY_AVAILABLE", "1073741824")];
    for device in ["cpu", "reference"] {
        let args = [
            "compute", "--loss", "mse", "--pred", "big.npy", "--target", "big.npy", "--device",
            device,
        ];
        let (out, took) = run_limited(&args, &env, Some(dir.path()), FAST);
        assert_rejected(
            &out,
            2,
            &["big.npy", "1073741824 elements", "1.0 GiB available"],
        );
        assert!(took < FAST, "{device}: took {took:?}");
    }
    assert_listing(dir.path(), &["big.npy"]);
}
