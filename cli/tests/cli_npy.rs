//! The CLI's `.npy` reader against hostile and unusual files (issue "Trust", part "Files").
//!
//! Most tests run the binary as a child process the way tests/cli.rs does (files in a
//! temporary directory, `--device cpu` so that no GPU is needed) and check its exit code and
//! its one-line message: a header claiming 2^33 elements in a 150-byte file, a 4 GiB header
//! length, headers beyond the file or over numpy's 10 000-byte limit, control bytes, a FIFO,
//! a directory, truncated and over-long data, an overflowing shape, and a uint64 class index
//! beyond int64. Every child is waited for at most [`LIMIT`] and killed if it takes longer,
//! so a reader that blocks fails the test instead of hanging it.
//!
//! The accepted spellings (`=f4`, `>f4`, `|u1`, `<i8`, `>u4`, Fortran order, shape `()`,
//! format versions 2.0 and 3.0) must give exactly what the plain file gives: the same JSON
//! value and the same gradient, bit for bit, from `compute --device cpu`.
//!
//! The parser itself (`cli/src/npy.rs`, through the CLI's library half, the way a fuzzer includes
//! it) is also called in process: header variants, rejections, and seeded random mutations
//! of valid files, which must never panic, must give one short line, and must be fast.
//!
//! `WGPU_LOSS_NPY_TEST_BIN=/path/to/wgpu-loss` runs the process tests against another build
//! (how they were checked to fail on the reader they replace).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use wgpu_loss_cli::npy;

/// The longest any child may run before it is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn bin() -> PathBuf {
    std::env::var_os("WGPU_LOSS_NPY_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wgpu-loss")))
}

/// Runs `cmd` (stdout and stderr captured), killing it after [`LIMIT`]; returns its output and
/// how long it ran.
fn run_cmd(mut cmd: Command) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wgpu-loss binary starts");
    loop {
        if child.try_wait().expect("wait for the child").is_some() {
            break;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wgpu-loss still ran after {LIMIT:?} (killed): {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t0.elapsed();
    (child.wait_with_output().expect("collect the output"), took)
}

/// Runs the binary with `args`.
fn run(args: &[impl AsRef<OsStr>]) -> (Output, Duration) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    run_cmd(cmd)
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

/// `compute --loss mse --pred PRED --target TARGET --device cpu` and `extra`.
fn mse_args(pred: &Path, target: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "compute",
        "--loss",
        "mse",
        "--pred",
        s(pred),
        "--target",
        s(target),
        "--device",
        "cpu",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    a.extend(extra.iter().map(|w| w.to_string()));
    a
}

/// Asserts exit 2 and that stderr is exactly one line, the CLI's message, naming `path` and
/// every needle, with no control byte in it; returns the line.
fn assert_rejected(out: &Output, path: &Path, needles: &[&str]) -> String {
    let raw = &out.stderr;
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    let controls: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect();
    assert!(
        controls.is_empty(),
        "raw control bytes {controls:?} on stderr: {err:?}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{err}");
    let msg = lines[0];
    assert!(
        msg.starts_with(&format!("wgpu-loss: error: {}: ", path.display())),
        "the message names the file first: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "the message should mention {n:?}: {msg}");
    }
    msg.to_string()
}

/// Asserts exit 0 and returns stdout as JSON.
fn json_ok(out: &Output, what: &str) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: expected exit 0\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{what}: JSON ({e})"))
}

/// `(a, b)` as numpy writes a shape: `()`, `(3,)`, `(2, 3)`.
fn shape_txt(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// numpy's header dict for `descr`, `fortran` and `shape`.
fn dict(descr: &str, fortran: bool, shape: &[usize]) -> String {
    let f = if fortran { "True" } else { "False" };
    format!(
        "{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {}, }}",
        shape_txt(shape)
    )
}

/// The preamble's length for format `version` (magic, version, header-length field).
fn preamble(version: u8) -> usize {
    if version == 1 { 10 } else { 12 }
}

/// `dict` padded with spaces and ended by a newline so that the data starts at a multiple of
/// 64 bytes, as numpy writes it.
fn padded(dict: &str, version: u8) -> String {
    let mut h = dict.to_string();
    while !(preamble(version) + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    h
}

/// A `.npy` file's bytes: magic, `version`.0, the header length `header_len` (2 bytes for
/// version 1, else 4), `header` as given, then `data`.
fn npy_raw(version: u8, header_len: u32, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version, 0]);
    if version == 1 {
        let len = u16::try_from(header_len).expect("a version 1.0 header length fits 16 bits");
        b.extend_from_slice(&len.to_le_bytes());
    } else {
        b.extend_from_slice(&header_len.to_le_bytes());
    }
    b.extend_from_slice(header);
    b.extend_from_slice(data);
    b
}

/// A `.npy` file's bytes with a correct header length for `header`.
fn npy_bytes(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(header.len()).expect("a short header");
    npy_raw(version, len, header.as_bytes(), data)
}

/// Writes `bytes` to `dir/name`.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).expect("write the test file");
    p
}

/// Seeded values in [-2, 2).
fn values(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-2.0f32..2.0))
}

/// The bits of `a`'s elements, in C order.
fn bits(a: &ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// `compute --loss mse --reduction sum --device cpu --json --grad-out` on `pred` and `target`:
/// the JSON value and the gradient's shape and bits.
fn mse_of(dir: &Path, pred: &Path, target: &Path, tag: &str) -> (Value, Vec<usize>, Vec<u32>) {
    let g = dir.join(format!("grad-{tag}.npy"));
    let args = mse_args(
        pred,
        target,
        &["--reduction", "sum", "--json", "--grad-out", s(&g)],
    );
    let (out, _) = run(&args);
    let j = json_ok(&out, tag);
    let grad: ArrayD<f32> = read_npy(&g).expect("the gradient is an f32 .npy");
    (j["value"].clone(), grad.shape().to_vec(), bits(&grad))
}

/// A seeded `[3, 4, 5]` target and prediction written as plain `<f4` by ndarray-npy; the
/// files and the prediction.
fn base_files(dir: &Path, seed: u64) -> (PathBuf, PathBuf, ArrayD<f32>) {
    let shape = [3, 4, 5];
    let (pred, target) = (values(&shape, seed), values(&shape, seed ^ 0x7a67));
    let (p, t) = (dir.join("pred.npy"), dir.join("target.npy"));
    write_npy(&p, &pred).expect("write pred");
    write_npy(&t, &target).expect("write target");
    (p, t, pred)
}

/// The prediction rewritten as `file` must give the plain file's value and gradient.
fn same_as_plain(dir: &Path, plain: &Path, target: &Path, other: &Path, what: &str) {
    let want = mse_of(dir, plain, target, "plain");
    let got = mse_of(dir, other, target, what);
    assert_ne!(want.0, Value::Null, "a value");
    assert_eq!(
        got, want,
        "{what}: value, gradient shape and bits as the plain <f4 file"
    );
}

/// Writes the prediction as `descr` with `encode` per element, C order, version 1.0.
fn pred_as(dir: &Path, name: &str, descr: &str, pred: &ArrayD<f32>, bytes: &[u8]) -> PathBuf {
    let h = padded(&dict(descr, false, pred.shape()), 1);
    put(dir, name, &npy_bytes(1, &h, bytes))
}

/// `[B, C]` = `[6, 5]` logits and class indices for softmax-ce, and the base target written
/// by ndarray-npy as int64.
fn class_files(dir: &Path, seed: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let pred = values(&[6, 5], seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc1a5);
    let classes: Vec<u8> = (0..6).map(|_| rng.random_range(0..5u8)).collect();
    let base = ArrayD::from_shape_vec(IxDyn(&[6]), classes.iter().map(|&c| i64::from(c)).collect())
        .expect("shape");
    let (p, t) = (dir.join("logits.npy"), dir.join("classes.npy"));
    write_npy(&p, &pred).expect("write logits");
    write_npy(&t, &base).expect("write classes");
    (p, t, classes)
}

/// `compute --loss softmax-ce --device cpu --json --grad-out` on `pred` and `target`.
fn softmax_ce_of(dir: &Path, pred: &Path, target: &Path, tag: &str) -> (Value, Vec<u32>) {
    let g = dir.join(format!("grad-{tag}.npy"));
    let args = [
        "compute",
        "--loss",
        "softmax-ce",
        "--pred",
        s(pred),
        "--target",
        s(target),
        "--device",
        "cpu",
        "--json",
        "--grad-out",
        s(&g),
    ];
    let (out, _) = run(&args);
    let j = json_ok(&out, tag);
    let grad: ArrayD<f32> = read_npy(&g).expect("the gradient is an f32 .npy");
    (j["value"].clone(), bits(&grad))
}

/// Class indices written by hand as `header` (a whole padded header) and `data` must give the
/// int64 file's value and gradient.
fn classes_same_as_int64(seed: u64, header: &str, data: impl Fn(&[u8]) -> Vec<u8>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    let (p, t, classes) = class_files(d, seed);
    let other = put(d, "other.npy", &npy_bytes(1, header, &data(&classes)));
    let want = softmax_ce_of(d, &p, &t, "int64");
    let got = softmax_ce_of(d, &p, &other, "other");
    assert_ne!(want.0, Value::Null, "a value");
    assert_eq!(got, want, "{header:?}: as the int64 class indices");
}

// ---------------------------------------------------------------------------------------------
// Hostile files: exit 2, one line, fast
// ---------------------------------------------------------------------------------------------

/// A 150-byte file whose header claims shape (2^33,) of f4: refused before anything of that
/// size is allocated. On Linux the child runs under a 2 GiB address-space limit, so an
/// attempt to allocate the claimed 32 GiB cannot pass unnoticed.
#[test]
fn huge_claimed_shape_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 11);
    let data = [0u8; 12];
    let mut h = dict("<f4", false, &[1 << 33]);
    while 10 + h.len() + 1 + data.len() < 150 {
        h.push(' ');
    }
    h.push('\n');
    let bytes = npy_bytes(1, &h, &data);
    assert_eq!(bytes.len(), 150);
    let p = put(d, "huge.npy", &bytes);
    let args = mse_args(&p, &t, &[]);
    let (out, took) = if cfg!(target_os = "linux") {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
            .arg(bin())
            .args(&args);
        run_cmd(cmd)
    } else {
        run(&args)
    };
    assert_rejected(
        &out,
        &p,
        &[
            "truncated",
            "8589934592 elements (34359738368 bytes)",
            "holds 12 bytes",
        ],
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A version 2.0 header-length field of 0xFFFFFFFF: refused from the field alone.
#[test]
fn header_length_4gib_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 12);
    let p = put(
        d,
        "len.npy",
        &npy_raw(2, u32::MAX, b"{'descr': '<f4'", &[0; 64]),
    );
    let (out, took) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["4294967295 bytes", "10000"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A header length of 5000 in a 200-byte file.
#[test]
fn header_length_beyond_the_file_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 13);
    let h = padded(&dict("<f4", false, &[3]), 1);
    let mut bytes = npy_raw(1, 5000, h.as_bytes(), &[0; 12]);
    bytes.resize(200, b' ');
    let p = put(d, "beyond.npy", &bytes);
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["length field says 5000 bytes", "190 bytes"]);
}

/// A valid 20 000-byte header (padding) over a valid [3, 4, 5] f4 body: over numpy's limit.
#[test]
fn header_over_10000_bytes_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 14);
    let mut h = dict("<f4", false, pred.shape());
    while 12 + h.len() + 1 < 20_032 {
        h.push(' ');
    }
    h.push('\n');
    let data: Vec<u8> = pred.iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = put(d, "long.npy", &npy_bytes(2, &h, &data));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["20020 bytes", "10000"]);
    // The same body under a short header is read.
    let ok = pred_as(d, "short.npy", "<f4", &pred, &data);
    same_as_plain(d, &plain, &t, &ok, "the same body, short header");
}

/// NUL and ESC bytes in the header: shown as `\x00` and `\x1b`, never raw.
#[test]
fn control_bytes_in_header_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, pred) = base_files(d, 15);
    let h = padded(
        &format!(
            "{{'descr': '<f4',\x00\x1b[2J\x1b[31m 'fortran_order': False, 'shape': {}, }}",
            shape_txt(pred.shape())
        ),
        1,
    );
    let data: Vec<u8> = pred.iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = put(d, "ctl.npy", &npy_bytes(1, &h, &data));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    let msg = assert_rejected(&out, &p, &["\\x00", "\\x1b[2J"]);
    assert!(msg.len() < 300, "a short message: {msg}");
}

/// A control byte inside the dtype string: escaped in the message too.
#[test]
fn control_bytes_in_dtype_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 16);
    let h = padded(&dict("<f4\x1b]0;pwned\x07", false, &[3]), 1);
    let p = put(d, "dtype.npy", &npy_bytes(1, &h, &[0; 12]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["\\x1b"]);
}

/// A file whose name holds an ESC byte: the name is printed escaped.
#[cfg(unix)]
#[test]
fn control_bytes_in_path_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 17);
    let p = put(d, "bad\x1b[31mname.npy", b"not numpy at all");
    let (out, _) = run(&mse_args(&p, &t, &[]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!out.stderr.contains(&0x1b), "a raw ESC on stderr: {err:?}");
    assert!(
        err.contains("bad\\x1b[31mname.npy: "),
        "escaped name: {err}"
    );
    assert!(err.contains("not a valid .npy"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// 9 000 bytes of junk as the header: one line, the excerpt cut short.
#[test]
fn long_junk_header_gives_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 18);
    let mut rng = StdRng::seed_from_u64(18);
    let junk: Vec<u8> = (0..9000).map(|_| rng.random::<u8>()).collect();
    let mut h = b"{'descr': '<f4', ".to_vec();
    h.extend_from_slice(&junk);
    let p = put(d, "junk.npy", &npy_raw(1, h.len() as u32, &h, &[]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    let msg = assert_rejected(&out, &p, &["not a valid .npy header", "…"]);
    let problem = msg.len() - s(&p).len();
    assert!(
        problem < 250,
        "{problem} characters besides the path: {msg}"
    );
}

/// A FIFO as --pred: refused at once, never opened for a blocking read.
#[cfg(unix)]
#[test]
fn fifo_as_pred_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 19);
    let p = d.join("fifo.npy");
    let made = Command::new("mkfifo")
        .arg(&p)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", p.display());
    let (out, took) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["FIFO", "not a regular"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A directory as --pred.
#[test]
fn directory_as_pred_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 20);
    let p = d.join("sub.npy");
    fs::create_dir(&p).unwrap();
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["a directory", "not a regular"]);
}

/// A character device as --target.
#[cfg(unix)]
#[test]
fn device_as_target_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, _, _) = base_files(d, 21);
    let dev = Path::new("/dev/zero");
    let (out, took) = run(&mse_args(&p, dev, &[]));
    assert_rejected(&out, dev, &["character device", "not a regular"]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// Shape (10,) of f4 over 36 bytes.
#[test]
fn truncated_data_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 22);
    let h = padded(&dict("<f4", false, &[10]), 1);
    let p = put(d, "short.npy", &npy_bytes(1, &h, &[0; 36]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(
        &out,
        &p,
        &["truncated: header says 10 elements (40 bytes), file holds 36 bytes after the header"],
    );
}

/// Shape (10,) of f4 over 44 bytes.
#[test]
fn extra_bytes_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 23);
    let h = padded(&dict("<f4", false, &[10]), 1);
    let p = put(d, "long.npy", &npy_bytes(1, &h, &[0; 44]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(
        &out,
        &p,
        &["extra bytes: header says 10 elements (40 bytes), file holds 44 bytes"],
    );
}

/// A shape whose product overflows 64 bits, and one dimension beyond 64 bits.
#[test]
fn shape_product_overflow_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, t, _) = base_files(d, 24);
    let big = 1usize << 32;
    let h = padded(&dict("<f4", false, &[big, big, big]), 1);
    let p = put(d, "over.npy", &npy_bytes(1, &h, &[0; 16]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(
        &out,
        &p,
        &["too large", "(4294967296, 4294967296, 4294967296)"],
    );

    let h = padded(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        1,
    );
    let p = put(d, "dim.npy", &npy_bytes(1, &h, &[0; 16]));
    let (out, _) = run(&mse_args(&p, &t, &[]));
    assert_rejected(&out, &p, &["too large"]);
}

/// A uint64 class index 2^63 + 5 at flat index 3 with `--ignore-index i64::MAX`: refused,
/// never clamped into the ignored class.
#[test]
fn uint64_class_beyond_int64_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, _, _) = class_files(d, 25);
    let classes: [u64; 6] = [0, 1, 2, (1 << 63) + 5, 4, 3];
    let data: Vec<u8> = classes.iter().flat_map(|c| c.to_le_bytes()).collect();
    let t = put(
        d,
        "u64.npy",
        &npy_bytes(1, &padded(&dict("<u8", false, &[6]), 1), &data),
    );
    let args = [
        "compute",
        "--loss",
        "softmax-ce",
        "--pred",
        s(&p),
        "--target",
        s(&t),
        "--ignore-index",
        "9223372036854775807",
        "--device",
        "cpu",
    ];
    let (out, _) = run(&args);
    assert_rejected(
        &out,
        &t,
        &["class 9223372036854775813 of row 3 ", "outside int64"],
    );
}

/// Bool targets are refused as class indices, by name.
#[test]
fn bool_target_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, _, _) = class_files(d, 26);
    let h = padded(&dict("|b1", false, &[6]), 1);
    let t = put(d, "bool.npy", &npy_bytes(1, &h, &[1, 0, 1, 0, 1, 0]));
    let args = [
        "compute",
        "--loss",
        "softmax-ce",
        "--pred",
        s(&p),
        "--target",
        s(&t),
        "--device",
        "cpu",
    ];
    let (out, _) = run(&args);
    assert_rejected(&out, &t, &["a bool target is 0/1 float targets"]);
}

// ---------------------------------------------------------------------------------------------
// Accepted spellings: the plain file's result, bit for bit
// ---------------------------------------------------------------------------------------------

/// `=f4` (native order, little-endian here).
#[test]
fn native_order_f4_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 31);
    let data: Vec<u8> = pred.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let p = pred_as(d, "native.npy", "=f4", &pred, &data);
    same_as_plain(d, &plain, &t, &p, "=f4");
}

/// `>f4`, big-endian data.
#[test]
fn big_endian_f4_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 32);
    let data: Vec<u8> = pred.iter().flat_map(|v| v.to_be_bytes()).collect();
    let p = pred_as(d, "big.npy", ">f4", &pred, &data);
    same_as_plain(d, &plain, &t, &p, ">f4");
}

/// `>f8` and `>f2` holding the f32 values exactly (f2: values that f16 represents).
#[test]
fn big_endian_f8_and_f2_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 33);
    let data: Vec<u8> = pred
        .iter()
        .flat_map(|&v| f64::from(v).to_be_bytes())
        .collect();
    let p = pred_as(d, "big8.npy", ">f8", &pred, &data);
    same_as_plain(d, &plain, &t, &p, ">f8");

    let halves = pred.mapv(|v| half::f16::from_f32(v).to_f32());
    let plain16 = d.join("pred16-plain.npy");
    write_npy(&plain16, &halves).unwrap();
    let data: Vec<u8> = halves
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_be_bytes())
        .collect();
    let p = pred_as(d, "big2.npy", ">f2", &halves, &data);
    same_as_plain(d, &plain16, &t, &p, ">f2");
}

/// `|u1` class indices.
#[test]
fn u1_class_indices_accepted() {
    let h = padded(&dict("|u1", false, &[6]), 1);
    classes_same_as_int64(34, &h, |c| c.to_vec());
}

/// `<i8` class indices in a header spelled differently: double quotes, keys in another
/// order, no trailing comma, no padding but the newline.
#[test]
fn i8_class_indices_other_header_style_accepted() {
    let h = "{\"shape\":(6,),\"fortran_order\":False,\"descr\":\"<i8\"}\n";
    classes_same_as_int64(35, h, |c| {
        c.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect()
    });
}

/// `>u4` class indices, big-endian.
#[test]
fn big_endian_u4_class_indices_accepted() {
    let h = padded(&dict(">u4", false, &[6]), 1);
    classes_same_as_int64(36, &h, |c| {
        c.iter().flat_map(|&v| u32::from(v).to_be_bytes()).collect()
    });
}

/// A Fortran-order [3, 4, 5] prediction: read and transposed into C order.
#[test]
fn fortran_order_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 37);
    // Fortran order: the first index varies fastest, which is C order of the reversed axes.
    let data: Vec<u8> = pred.t().iter().flat_map(|v| v.to_le_bytes()).collect();
    let h = padded(&dict("<f4", true, pred.shape()), 1);
    let p = put(d, "fortran.npy", &npy_bytes(1, &h, &data));
    same_as_plain(d, &plain, &t, &p, "fortran order");
}

/// Shape `()`: a scalar.
#[test]
fn scalar_shape_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pred, target) = (
        ArrayD::from_elem(IxDyn(&[]), 0.75f32),
        ArrayD::from_elem(IxDyn(&[]), -0.5f32),
    );
    let (plain, t) = (d.join("pred.npy"), d.join("target.npy"));
    write_npy(&plain, &pred).unwrap();
    write_npy(&t, &target).unwrap();
    let p = put(
        d,
        "scalar.npy",
        &npy_bytes(
            1,
            &padded("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 1),
            &0.75f32.to_le_bytes(),
        ),
    );
    same_as_plain(d, &plain, &t, &p, "shape ()");
    let (v, shape, _) = mse_of(d, &p, &t, "scalar");
    assert_eq!(v, serde_json::json!(1.5625), "(0.75 + 0.5)^2");
    assert_eq!(shape, Vec::<usize>::new(), "a 0-d gradient");
}

/// Format versions 2.0 and 3.0 (4-byte header length).
#[test]
fn version_2_and_3_headers_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, t, pred) = base_files(d, 38);
    let data: Vec<u8> = pred.iter().flat_map(|v| v.to_le_bytes()).collect();
    for version in [2u8, 3] {
        let h = padded(&dict("<f4", false, pred.shape()), version);
        let p = put(
            d,
            &format!("v{version}.npy"),
            &npy_bytes(version, &h, &data),
        );
        same_as_plain(d, &plain, &t, &p, &format!("version {version}.0"));
    }
}

// ---------------------------------------------------------------------------------------------
// The parser in process
// ---------------------------------------------------------------------------------------------

/// `[1, 2, 3, 4, 5, 6]` as `<f4`, its header `dict` as given (version 1.0, unpadded).
fn f4_with(dict: &str) -> Vec<u8> {
    let data: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
    npy_bytes(1, dict, &data)
}

#[test]
fn parser_accepts_header_variants() {
    let ok = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (6,)}\n",
        "{'shape': (6,), 'descr': '<f4', 'fortran_order': False}",
        "  {  'descr' : '<f4' ,\n\t'fortran_order':False,'shape':( 6 , ) ,  }   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 1, 3, 1)}",
        "{'descr': 'f4', 'fortran_order': False, 'shape': (6,)}",
        "{'descr': '=f4', 'fortran_order': False, 'shape': (6,)}",
    ];
    for h in ok {
        let a = npy::parse_f32(&f4_with(h)).unwrap_or_else(|e| panic!("{h:?}: {e}"));
        assert_eq!(
            a.iter().copied().collect::<Vec<_>>(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "{h:?}"
        );
    }
    // 64 dimensions, numpy's most.
    let h = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (6{})}}",
        ", 1".repeat(63)
    );
    let a = npy::parse_f32(&f4_with(&h)).unwrap_or_else(|e| panic!("64 dimensions: {e}"));
    assert_eq!(a.ndim(), 64);
    // Fortran order [2, 3]: file order 1..6 is a[0,0], a[1,0], a[0,1], ...
    let a = npy::parse_f32(&f4_with(
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}",
    ))
    .unwrap();
    assert_eq!(a.shape(), [2, 3]);
    assert_eq!(
        a.iter().copied().collect::<Vec<_>>(),
        [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
    );
    // Empty and scalar shapes.
    let e = npy::parse_f32(&npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}",
        &[],
    ))
    .unwrap();
    assert_eq!(e.shape(), [0]);
    let e = npy::parse_f32(&npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0, 1000000000000)}",
        &[],
    ))
    .unwrap();
    assert_eq!(e.shape(), [3, 0, 1_000_000_000_000]);
}

#[test]
fn parser_reads_every_integer_dtype() {
    let want: Vec<i64> = vec![0, 1, 2, 100, 7];
    let header =
        |descr: &str| format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (5,)}}");
    let cases: [(&str, Vec<u8>); 14] = [
        ("|i1", want.iter().map(|&v| v as u8).collect()),
        ("|u1", want.iter().map(|&v| v as u8).collect()),
        ("<u1", want.iter().map(|&v| v as u8).collect()),
        (
            "<i2",
            want.iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect(),
        ),
        (
            ">i2",
            want.iter()
                .flat_map(|&v| (v as i16).to_be_bytes())
                .collect(),
        ),
        (
            "<u2",
            want.iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect(),
        ),
        (
            "<i4",
            want.iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
        ),
        (
            ">i4",
            want.iter()
                .flat_map(|&v| (v as i32).to_be_bytes())
                .collect(),
        ),
        (
            "<u4",
            want.iter()
                .flat_map(|&v| (v as u32).to_le_bytes())
                .collect(),
        ),
        (
            ">u4",
            want.iter()
                .flat_map(|&v| (v as u32).to_be_bytes())
                .collect(),
        ),
        ("<i8", want.iter().flat_map(|&v| v.to_le_bytes()).collect()),
        ("=i8", want.iter().flat_map(|&v| v.to_ne_bytes()).collect()),
        (
            "<u8",
            want.iter()
                .flat_map(|&v| (v as u64).to_le_bytes())
                .collect(),
        ),
        (
            ">u8",
            want.iter()
                .flat_map(|&v| (v as u64).to_be_bytes())
                .collect(),
        ),
    ];
    for (descr, data) in cases {
        let got: Vec<i64> = match npy::parse_target(&npy_bytes(1, &header(descr), &data)) {
            Ok(npy::TargetData::I32(a)) => {
                assert!(
                    ["i1", "i2", "u2", "i4"].contains(&&descr[1..]),
                    "{descr} as i32"
                );
                a.iter().map(|&v| i64::from(v)).collect()
            }
            Ok(npy::TargetData::U8(a)) => {
                assert_eq!(&descr[1..], "u1", "{descr} as u8");
                a.iter().map(|&v| i64::from(v)).collect()
            }
            Ok(npy::TargetData::I64(a)) => {
                assert!(["u4", "i8", "u8"].contains(&&descr[1..]), "{descr} as i64");
                a.iter().copied().collect()
            }
            Ok(npy::TargetData::F32(_)) => panic!("{descr}: read as floats"),
            Ok(npy::TargetData::Bool(_)) => panic!("{descr}: read as bool"),
            Err(e) => panic!("{descr}: {e}"),
        };
        assert_eq!(got, want, "{descr}");
    }
    // Negative values keep their sign.
    let neg = npy::parse_target(&npy_bytes(1, &header("|i1"), &[0xff, 0x80, 0, 1, 2])).unwrap();
    let npy::TargetData::I32(a) = neg else {
        panic!("i1 as i32")
    };
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), [-1, -128, 0, 1, 2]);
    // uint64: the first value beyond int64, in C order, is named.
    let data: Vec<u8> = [1u64, u64::MAX, 3, 1 << 63, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let e = npy::parse_target(&npy_bytes(1, &header("<u8"), &data)).unwrap_err();
    assert!(e.contains("class 18446744073709551615 of row 1 "), "{e}");
}

#[test]
fn parser_rejects_bad_headers() {
    let body =
        |shape: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}}}");
    let cases: Vec<(String, &str)> = vec![
        (body("(6)"), "not a tuple"),
        (body("[6]"), "expected a tuple"),
        (body("(-6,)"), "negative"),
        (body("(6.0,)"), "not a decimal integer"),
        (body("(0x6,)"), "not a decimal integer"),
        (body("(6,,)"), "expected a non-negative integer"),
        (body("(6,"), "expected a non-negative integer"),
        (
            "{'descr': '<f4', 'fortran_order': False}".into(),
            "no 'shape'",
        ),
        (
            "{'descr': '<f4', 'shape': (6,)}".into(),
            "no 'fortran_order'",
        ),
        (
            "{'fortran_order': False, 'shape': (6,)}".into(),
            "no 'descr'",
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}".into(),
            "twice",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}".into(),
            "a key other than",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}".into(),
            "True or False",
        ),
        (
            "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (6,)}".into(),
            "True or False",
        ),
        (
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}".into(),
            "structured",
        ),
        (
            "{'descr': '<f4\\x00', 'fortran_order': False, 'shape': (6,)}".into(),
            "escape sequences",
        ),
        (
            "{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}".into(),
            "expected ',' or '}' after a value",
        ),
        (
            "{'descr' '<f4', 'fortran_order': False, 'shape': (6,)}".into(),
            "expected ':' after a key",
        ),
        (body("(6,)") + " x", "bytes after the dict"),
        (
            body(&format!("({})", "1, ".repeat(65))),
            "65 dimensions, more than numpy's 64",
        ),
        (body("(6,)").replace('}', ""), "expected ',' or '}'"),
        ("".into(), "expected '{'"),
        (
            "{'descr': '|f4', 'fortran_order': False, 'shape': (6,)}".into(),
            "only for 1-byte types",
        ),
        (
            "{'descr': '<i4', 'fortran_order': False, 'shape': (6,)}".into(),
            "unsupported dtype '<i4' (expected float32",
        ),
        (
            "{'descr': '<c8', 'fortran_order': False, 'shape': (6,)}".into(),
            "unsupported dtype '<c8'",
        ),
    ];
    for (h, needle) in &cases {
        let e = npy::parse_f32(&f4_with(h)).expect_err(h);
        assert!(e.contains(needle), "{h:?}: {e:?} should say {needle:?}");
        assert!(
            !e.chars().any(char::is_control),
            "{h:?}: control characters in {e:?}"
        );
    }
    // The preamble.
    let pre: [(&[u8], &str); 6] = [
        (b"", "empty"),
        (b"\x93NUM", "ends inside its preamble"),
        (b"\x93NUMPY\x01\x00\x05", "ends inside its preamble"),
        (b"PK\x03\x04 a zip file", "does not start with \\x93NUMPY"),
        (b"\x93NUMPY\x04\x00\x05\x00\x00\x00{}", "version 4.0"),
        (b"\x93NUMPY\x01\x00\xff\x00{}", "says 255 bytes"),
    ];
    for (bytes, needle) in pre {
        let e = npy::parse_f32(bytes).expect_err("a bad preamble");
        assert!(e.contains(needle), "{bytes:?}: {e:?} should say {needle:?}");
    }
    // Bool and integers are floats' errors but targets' values; a bool byte other than 0
    // and 1 is refused, naming its index.
    let bools = |data: &[u8]| {
        npy_bytes(
            1,
            "{'descr': '|b1', 'fortran_order': False, 'shape': (3,)}",
            data,
        )
    };
    let e = npy::parse_f32(&bools(&[0, 1, 1])).unwrap_err();
    assert!(e.contains("'|b1' (bool; expected float32"), "{e}");
    match npy::parse_target(&bools(&[0, 1, 1])) {
        Ok(npy::TargetData::Bool(a)) => assert_eq!(a.as_slice(), Some(&[false, true, true][..])),
        other => panic!("|b1 as bool: {other:?}"),
    }
    let e = npy::parse_target(&bools(&[0, 1, 2])).unwrap_err();
    assert!(
        e.contains("bool element 2 (in C order) is the byte 2"),
        "{e}"
    );
}

/// A tiny seeded generator (xorshift64*), so the mutations need nothing but std.
struct Rand(u64);

impl Rand {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.step() % n.max(1) as u64) as usize
    }
}

/// Valid files of several kinds, then 20 000 seeded mutations of them (bytes changed,
/// inserted, deleted, cut; header bytes set to structural characters and digits): no panic,
/// every error one line of printable text under 250 characters, and no input slower than a
/// few milliseconds.
#[test]
fn parser_survives_seeded_mutations() {
    let seeds: Vec<Vec<u8>> = vec![
        f4_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
        f4_with("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }"),
        npy_bytes(
            2,
            "{'descr': '>f8', 'fortran_order': False, 'shape': (2,)}",
            &[0; 16],
        ),
        npy_bytes(
            3,
            "{'descr': '<u8', 'fortran_order': False, 'shape': (2,)}",
            &[0xff; 16],
        ),
        npy_bytes(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': ()}",
            &[7],
        ),
        npy_bytes(
            1,
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1, 1, 4)}",
            &[0; 8],
        ),
    ];
    let interesting = b"{}()[],:'\"0123456789 \n\x00\x1bTF-";
    let mut rng = Rand(0x5eed_cafe_f00d_0001);
    let mut slowest = Duration::ZERO;
    for _ in 0..20_000 {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(6) {
                0 if at < b.len() => b[at] = rng.step() as u8,
                1 if at < b.len() => b[at] = interesting[rng.below(interesting.len())],
                2 => b.insert(at, interesting[rng.below(interesting.len())]),
                3 if at < b.len() => {
                    b.remove(at);
                }
                4 => b.truncate(at),
                _ if b.len() > 9 => b[8] = rng.step() as u8,
                _ => {}
            }
        }
        let t0 = Instant::now();
        let results = [npy::parse_f32(&b).err(), npy::parse_target(&b).err()];
        slowest = slowest.max(t0.elapsed());
        for e in results.into_iter().flatten() {
            assert!(
                !e.chars().any(char::is_control) && e.chars().count() < 250,
                "{b:?} gave {e:?}"
            );
        }
    }
    assert!(
        slowest < Duration::from_millis(20),
        "slowest input: {slowest:?}"
    );
}

/// Headers near the 10 000-byte limit built to be slow for a careless parser: thousands of
/// dimensions, thousands of spaces, a very long string, long digit runs. Each parses in well
/// under a millisecond per KB.
#[test]
fn parser_is_linear_on_long_headers() {
    let ones = "1, ".repeat(3000);
    let spaces = " ".repeat(9000);
    let long_string = "x".repeat(9000);
    let digits = "0".repeat(9000) + "6";
    let headers = [
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (6, {ones})}}"),
        format!("{{'descr': '<f4',{spaces} 'fortran_order': False, 'shape': (6,)}}"),
        format!("{{'descr': '{long_string}', 'fortran_order': False, 'shape': (6,)}}"),
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({digits},)}}"),
        "(".repeat(9900),
        "{".repeat(9900),
    ];
    for h in &headers {
        assert!(h.len() <= 10_000, "{} bytes", h.len());
        let b = f4_with(h);
        let t0 = Instant::now();
        let r = npy::parse_f32(&b);
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(10),
            "{} bytes took {took:?}",
            h.len()
        );
        if let Err(e) = r {
            assert!(e.chars().count() < 250, "{e}");
        }
    }
}
