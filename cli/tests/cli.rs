//! Integration tests of the `wgpu-loss` command line, run the way a new user would run it:
//! `.npy` files in a temporary directory, the binary as a child process, its exit code, stdout
//! (text or JSON), stderr and output files checked.
//!
//! Every GPU result is compared with the f64 CPU reference (`wgpu_loss::reference::compute`)
//! run on the same f32 values the CLI read.
//!
//! Tolerances (the same ones the main job uses, `cli/src/main_job.rs`):
//! - loss value: relative error ≤ 1e-5. The GPU sums ~10^3..10^5 f32 terms with a tree
//!   reduction, whose rounding error grows like ε_f32 · log2(N) ≈ 6e-8 · 17 ≈ 1e-6 in the
//!   worst case for these sizes, plus a few ulps per term from the f32 `ln`/`exp` of the BCE
//!   losses; 1e-5 leaves a factor of ~10 of margin while still catching any wrong term
//!   (one wrong element out of 1073 moves the mean by ~1e-3).
//! - gradient (and per-element losses): max |GPU − reference| ≤ 1e-6 × max |reference|. Each
//!   element is computed independently in f32 with a handful of operations, so its error is a
//!   few f32 ulps (ε_f32 ≈ 6e-8) of the largest magnitude, about 8 ulps of headroom.
//!
//! `--device cpu` is the fast multi-threaded f32 path (`wgpu_loss::cpu`), compared with the
//! reference within the same tolerances; `--device reference` is the f64 reference itself,
//! rounded once to f32, and where a test runs it the results must equal the reference's.
//!
//! GPU tests carry `#[cfg_attr(skip_gpu_tests, ignore)]` (set by build.rs when
//! `WGPU_LOSS_SKIP_GPU_TESTS=1`); tests that use `--device cpu` or `--device reference`, or
//! fail before any device is touched, need no GPU.
//!
//! Command lines are written as templates (see `argv`): `{NAME}` stands for the file `NAME` in
//! the test's temporary directory, e.g. `--pred {pred.npy} --grad-out {G.npy}`.

#![allow(unexpected_cfgs)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{read_npy, write_npy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use wgpu_loss::synthetic::Batch;
use wgpu_loss::{Loss, LossArgs, LossOutput, Reduction, Target, reference, synthetic};

/// Loss value: relative error bound (see the module comment).
const VALUE_RTOL: f64 = 1e-5;
/// Gradient and per-element losses: max abs error ≤ this × max |reference| (module comment).
const ARRAY_RTOL: f64 = 1e-6;

/// The 2-D shape most tests use: neither dimension a power of two or a multiple of 64.
const SHAPE: [usize; 2] = [37, 29];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs the binary with `args` (and optional extra environment), waiting for it to finish.
fn run_with_env(args: &[impl AsRef<OsStr>], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgpu-loss"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the wgpu-loss binary runs")
}

fn run(args: &[impl AsRef<OsStr>]) -> Output {
    run_with_env(args, &[])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value at the end of the text output's first line (`...: 1.6666666`).
fn text_value(first: &str) -> f64 {
    first
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("the first line ends with the value ({e}): {first}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the process exited 0, showing its output otherwise.
fn assert_success(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: expected exit 0\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `word` with every `{NAME}` replaced by `vars`' value for NAME, or else by the path `dir/NAME`.
fn fill(dir: &Path, word: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let close = open
            + rest[open..]
                .find('}')
                .expect("a `{` without `}` in a template");
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(s(&dir.join(name))),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Command-line words: `template` split at white space, then each word filled (`fill`), so a
/// path with a space in it stays one word.
fn argv(dir: &Path, template: &str, vars: &[(&str, &str)]) -> Vec<String> {
    template
        .split_whitespace()
        .map(|w| fill(dir, w, vars))
        .collect()
}

/// Writes an f32 array as `.npy` into `dir`.
fn write_f32(dir: &Path, name: &str, a: &ArrayD<f32>) -> PathBuf {
    let p = dir.join(name);
    write_npy(&p, a).expect("write .npy");
    p
}

/// Writes a synthetic batch for `loss` into `dir` as `pred.npy` and `target.npy`; returns it.
fn batch_in(dir: &Path, loss: &Loss, seed: u64) -> Batch {
    let b = synthetic::batch(loss, &SHAPE, seed);
    write_f32(dir, "pred.npy", &b.pred);
    write_f32(dir, "target.npy", &b.target);
    b
}

/// Reads an f32 `.npy` the CLI wrote.
fn read_f32(p: &Path) -> ArrayD<f32> {
    read_npy(p).unwrap_or_else(|e| panic!("{} is not an f32 .npy: {e}", p.display()))
}

/// Writes an NPY v1.0 file by hand: magic, version, header length, header dict (`descr`,
/// C order, `shape`) padded with spaces and ended by a newline so that the data starts at a
/// multiple of 64 bytes, then `data` as is. For dtypes `ndarray_npy` cannot write (half,
/// complex).
fn write_raw(dir: &Path, name: &str, descr: &str, shape: &[usize], data: &[u8]) -> PathBuf {
    let shape_txt = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // 6 bytes magic + 2 version + 2 header length + header + '\n' ≡ 0 (mod 64).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    fs::write(&p, bytes).expect("write .npy");
    p
}

/// Writes `values` (row-major, shape `shape`) as an `.npy` of little-endian IEEE half (`<f2`).
fn write_f16(dir: &Path, name: &str, shape: &[usize], values: &[half::f16]) -> PathBuf {
    assert_eq!(shape.iter().product::<usize>(), values.len());
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(dir, name, "<f2", shape, &data)
}

/// The f64 reference on f32 inputs.
fn reference_out(
    loss: &Loss,
    pred: &ArrayD<f32>,
    target: &ArrayD<f32>,
    weight: Option<&ArrayD<f32>>,
    pos_weight: Option<&ArrayD<f32>>,
    reduction: Reduction,
) -> LossOutput<f64> {
    let mut args = LossArgs::new(pred.view(), target.view()).reduction(reduction);
    if let Some(w) = weight {
        args = args.weight(w.view());
    }
    if let Some(q) = pos_weight {
        args = args.pos_weight(q.view());
    }
    reference::compute(loss, &args).expect("reference accepts the inputs")
}

/// Loss value: |got − want| ≤ VALUE_RTOL · |want|.
fn assert_value_close(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
    assert!(
        rel <= VALUE_RTOL,
        "{what}: value {got} vs reference {want}, relative error {rel:e} > {VALUE_RTOL:e}"
    );
}

/// Arrays: same shape, max |got − want| ≤ ARRAY_RTOL · max |want|, everything finite.
fn assert_array_close(got: &ArrayD<f32>, want: &ArrayD<f64>, what: &str) {
    assert_array_within(got, want, ARRAY_RTOL, what);
}

/// The Jensen–Shannon divergence's gradient: `(w/T) Q_j (ln Q_j − ln M_j − KL)` is a
/// difference of logs several times larger than itself, so its f32 error relative to
/// max |∂ℓ| reaches about 1.3e-6 on these batches (the library's tests bound it on the logs'
/// scale, `jsd_scales` in tests/gpu/common.rs); here the plumbing is checked within 4e-6.
const JSD_ARRAY_RTOL: f64 = 4e-6;

/// As [`assert_array_close`], within `rtol · max |want|`.
fn assert_array_within(got: &ArrayD<f32>, want: &ArrayD<f64>, rtol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite value"
    );
    let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max > 0.0,
        "{what}: the reference is all zeros, a useless test"
    );
    let (worst, at) = got
        .iter()
        .zip(want.iter())
        .enumerate()
        .map(|(k, (g, w))| ((f64::from(*g) - w).abs(), k))
        .fold((0.0f64, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        worst <= rtol * max,
        "{what}: max abs error {worst:e} at flat index {at} > {rtol:e} x max |reference| {max:e}"
    );
}

/// The JSON `value` and the gradient written at `grad` against the reference `want`.
fn assert_matches_reference(j: &Value, grad: &Path, want: &LossOutput<f64>, what: &str) {
    let got = j["value"].as_f64().expect("value is a number");
    assert_value_close(got, want.value.unwrap(), &format!("{what} value"));
    let want_grad = want.grad.as_ref().unwrap();
    assert_array_close(&read_f32(grad), want_grad, &format!("{what} gradient"));
}

/// `device` and `adapter` of a JSON result: a non-empty adapter name on the gpu, null on the
/// cpu and the reference.
fn assert_device(j: &Value, device: &str) {
    assert_eq!(j["device"], device);
    match device {
        "gpu" => assert!(
            j["adapter"].as_str().is_some_and(|a| !a.trim().is_empty()),
            "adapter must be a non-empty string on the gpu: {}",
            j["adapter"]
        ),
        _ => assert_eq!(
            j["adapter"],
            Value::Null,
            "adapter must be null on the {device}"
        ),
    }
}

/// Parses the single JSON line `--json` prints.
fn json(out: &Output) -> Value {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "--json prints exactly one line, got:\n{text}"
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

/// Runs `compute` with the words of `template` (`argv`) and `--json`, asserts success, returns
/// the JSON object.
fn compute_json(dir: &Path, template: &str, vars: &[(&str, &str)]) -> Value {
    let mut all = vec!["compute".to_string()];
    all.extend(argv(dir, template, vars));
    all.push("--json".into());
    let out = run(&all);
    assert_success(&out, &format!("wgpu-loss {}", all.join(" ")));
    json(&out)
}

/// `--loss NAME` and the loss's options: `--delta D` for huber; for softmax-ce
/// `--label-smoothing`, `--z-loss`, `--ignore-index` and `--softcap` where they differ from the defaults;
/// `--eps` for cosine where it differs from 1e-8.
fn loss_flag(loss: &Loss) -> String {
    let mut flags = format!("--loss {}", loss.name());
    match *loss {
        Loss::Huber { delta, .. } => flags += &format!(" --delta {delta}"),
        Loss::SmoothL1 { beta, .. } => flags += &format!(" --beta {beta}"),
        Loss::SoftmaxCrossEntropy {
            label_smoothing,
            z_loss,
            ignore_index,
            softcap,
            ..
        } => {
            if softcap != 0.0 {
                flags += &format!(" --softcap {softcap}");
            }
            if label_smoothing != 0.0 {
                flags += &format!(" --label-smoothing {label_smoothing}");
            }
            if z_loss != 0.0 {
                flags += &format!(" --z-loss {z_loss}");
            }
            if ignore_index != -100 {
                flags += &format!(" --ignore-index {ignore_index}");
            }
        }
        Loss::CosineProximity { eps, .. } if eps != 1e-8 => flags += &format!(" --eps {eps}"),
        Loss::KlDiv { log_target, .. } => {
            flags += &format!(" --log-target {}", u8::from(log_target));
        }
        Loss::Distill { temperature, .. } => flags += &format!(" --temperature {temperature}"),
        Loss::Jsd {
            beta, temperature, ..
        } => flags += &format!(" --beta {beta} --temperature {temperature}"),
        Loss::PoissonNll {
            log_input,
            full,
            eps,
            ..
        } => {
            flags += &format!(
                " --log-input {} --full {} --eps {eps}",
                u8::from(log_input),
                u8::from(full)
            )
        }
        Loss::Focal { alpha, gamma, .. } => flags += &format!(" --alpha {alpha} --gamma {gamma}"),
        _ => {}
    }
    flags
}

/// Seeded uniform array.
fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(lo..hi))
}

/// Tests that each make one call: `gpu NAME: CALL;` for one that needs a GPU (ignored under
/// `skip_gpu_tests`), `cpu NAME: CALL;` for one that does not.
macro_rules! checks {
    (@one gpu $name:ident $call:expr) => {
        #[test]
        #[cfg_attr(skip_gpu_tests, ignore)]
        fn $name() {
            $call;
        }
    };
    (@one cpu $name:ident $call:expr) => {
        #[test]
        fn $name() {
            $call;
        }
    };
    ($($kind:ident $name:ident: $call:expr;)*) => {
        $( checks!(@one $kind $name $call); )*
    };
}

// ---------------------------------------------------------------------------------------------
// 1. JSON output
// ---------------------------------------------------------------------------------------------

/// Writes p.npy = [1, 2, 3] and t.npy = [1, 1, 1] into `dir`.
fn small_mse_pair(dir: &Path) {
    let p = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap();
    write_f32(dir, "p.npy", &p);
    write_f32(dir, "t.npy", &ArrayD::from_elem(IxDyn(&[3]), 1.0f32));
}

/// mse of [1, 2, 3] against [1, 1, 1]: (0 + 1 + 4) / 3 = 5/3; gradient 2(p − t)/3 = [0, 2/3, 4/3].
fn json_mse_analytic(device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (d, g) = (dir.path(), dir.path().join("g.npy"));
    small_mse_pair(d);
    let j = compute_json(
        d,
        "--loss mse --pred {p.npy} --target {t.npy} --device {device} --grad-out {g.npy}",
        &[("device", device)],
    );
    assert_device(&j, device);
    let value = j["value"].as_f64().expect("value is a number");
    assert_value_close(value, 5.0 / 3.0, "mse [1,2,3]");
    let want = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0, 2.0 / 3.0, 4.0 / 3.0]).unwrap();
    assert_array_close(&read_f32(&g), &want, "mse [1,2,3] gradient");
    assert_eq!(j["grad_out"], Value::from(s(&g)));
    assert_eq!(j["loss_out"], Value::Null);
}

/// Every field of the JSON object, and the value against the reference.
fn json_fields(device: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let b = batch_in(dir.path(), &Loss::Mse, seed);
    let j = compute_json(
        dir.path(),
        "--loss mse --pred {pred.npy} --target {target.npy} --device {device}",
        &[("device", device)],
    );
    assert!(j.is_object(), "JSON output is an object: {j}");
    assert_eq!(j["loss"], "mse");
    assert_eq!(j["reduction"], "mean", "mean is the default reduction");
    assert_device(&j, device);
    assert_eq!(j["elements"], 37 * 29);
    assert_eq!(j["shape"], serde_json::json!([37, 29]));
    assert_eq!(j["counted"], 37 * 29, "mean divides by every element");
    assert_eq!(
        j["rows"],
        Value::Null,
        "rows is null for an elementwise loss"
    );
    assert_eq!(
        j["classes"],
        Value::Null,
        "classes is null for an elementwise loss"
    );
    assert_eq!(j["grad_out"], Value::Null);
    let want = reference_out(&Loss::Mse, &b.pred, &b.target, None, None, Reduction::Mean);
    let got = j["value"].as_f64().expect("value is a number");
    assert_value_close(got, want.value.unwrap(), "mse --json value");
}

checks! {
    gpu json_mse_analytic_gpu: json_mse_analytic("gpu");
    cpu json_mse_analytic_cpu: json_mse_analytic("cpu");
    cpu json_mse_analytic_reference: json_mse_analytic("reference");
    gpu json_fields_gpu: json_fields("gpu", 101);
    cpu json_fields_cpu: json_fields("cpu", 102);
    cpu json_fields_reference: json_fields("reference", 102);
}

/// Without --json: one human line with the loss, reduction, element count, shape, where it
/// ran (`on` starts the device's words) and value, and a line saying where the gradient went.
fn text_output(device: &str, on: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (d, g) = (dir.path(), dir.path().join("g.npy"));
    small_mse_pair(d);
    let template =
        "compute --loss mse --pred {p.npy} --target {t.npy} --device {device} --grad-out {g.npy}";
    let out = run(&argv(d, template, &[("device", device)]));
    assert_success(&out, "text output");
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("mse (mean) over 3 elements [3] on {on}")),
        "first line: {first}"
    );
    // The value 5/3, printed as an f32.
    let v = text_value(first);
    assert_value_close(v, 5.0 / 3.0, "text value");
    assert!(
        text.contains(&format!("gradient written to {}", g.display())),
        "{text}"
    );
    assert!(g.exists());
}

checks! {
    cpu text_output_cpu: text_output("cpu", "the CPU (fast f32 path, ");
    cpu text_output_reference: text_output("reference", "the CPU reference (f64): ");
}

// ---------------------------------------------------------------------------------------------
// 2. --grad-out for every loss
// ---------------------------------------------------------------------------------------------

fn grad_out_matches(loss: Loss, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let b = batch_in(dir.path(), &loss, seed);
    let template = loss_flag(&loss) + " --pred {pred.npy} --target {target.npy} --grad-out {G.npy}";
    let j = compute_json(dir.path(), &template, &[]);
    let want = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Mean);
    assert_eq!(j["loss"], loss.name());
    assert_matches_reference(&j, &dir.path().join("G.npy"), &want, loss.name());
}

checks! {
    gpu grad_out_mse: grad_out_matches(Loss::Mse, 201);
    gpu grad_out_mae: grad_out_matches(Loss::Mae, 202);
    gpu grad_out_huber_delta_half: grad_out_matches(Loss::huber().delta(0.5).build().unwrap(), 203);
    gpu grad_out_bce: grad_out_matches(Loss::Bce, 204);
    gpu grad_out_bce_with_logits: grad_out_matches(Loss::BceWithLogits, 205);
}

// ---------------------------------------------------------------------------------------------
// 3. --reduction none
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn reduction_none_losses_and_grad_every_loss() {
    let losses = [
        Loss::Mse,
        Loss::Mae,
        Loss::huber().delta(0.5).build().unwrap(),
        Loss::Bce,
        Loss::BceWithLogits,
    ];
    for (k, loss) in losses.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b = batch_in(d, loss, 300 + k as u64);
        let template = loss_flag(loss)
            + " --pred {pred.npy} --target {target.npy} --reduction none"
            + " --loss-out {L.npy} --grad-out {G.npy}";
        let j = compute_json(d, &template, &[]);
        let name = loss.name();
        assert_eq!(j["reduction"], "none", "{name}");
        let value = &j["value"];
        assert_eq!(*value, Value::Null, "{name}: no value with reduction none");
        assert_eq!(j["loss_out"], Value::from(s(&d.join("L.npy"))));
        let want = reference_out(loss, &b.pred, &b.target, None, None, Reduction::None);
        let (losses, grad) = (want.losses.as_ref().unwrap(), want.grad.as_ref().unwrap());
        assert_array_close(
            &read_f32(&d.join("L.npy")),
            losses,
            &format!("{name} losses"),
        );
        assert_array_close(
            &read_f32(&d.join("G.npy")),
            grad,
            &format!("{name} gradient"),
        );
    }
}

/// Reduction none without --loss-out: fine, the text says the losses were not saved.
#[test]
fn reduction_none_without_loss_out_cpu() {
    let dir = tempfile::tempdir().unwrap();
    batch_in(dir.path(), &Loss::Mae, 310);
    let template =
        "compute --loss mae --pred {pred.npy} --target {target.npy} --reduction none --device cpu";
    let out = run(&argv(dir.path(), template, &[]));
    assert_success(&out, "reduction none, no --loss-out");
    assert!(
        stdout(&out).contains("not saved (use --loss-out)"),
        "{}",
        stdout(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Sum, weight, pos_weight
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn reduction_sum_huber() {
    let loss = Loss::huber().delta(0.5).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = batch_in(dir.path(), &loss, 401);
    let j = compute_json(
        dir.path(),
        "--loss huber --delta 0.5 --pred {pred.npy} --target {target.npy} --reduction sum \
         --grad-out {G.npy}",
        &[],
    );
    assert_eq!(j["reduction"], "sum");
    let want = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Sum);
    let mean = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Mean);
    assert_matches_reference(&j, &dir.path().join("G.npy"), &want, "huber sum");
    // Sum is N × mean: catches a sum that is really a mean.
    let ratio = j["value"].as_f64().unwrap() / mean.value.unwrap();
    assert!((ratio - (37.0 * 29.0)).abs() < 0.1, "sum/mean = {ratio}");
}

/// Smooth L1 through the CLI: `--beta` reaches the loss (its option, added to `compute` from
/// the registry), and the value and gradient match the reference's.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn smooth_l1_with_beta() {
    let loss = Loss::smooth_l1().beta(0.25).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = batch_in(dir.path(), &loss, 409);
    let j = compute_json(
        dir.path(),
        "--loss smooth-l1 --beta 0.25 --pred {pred.npy} --target {target.npy} --grad-out {G.npy}",
        &[],
    );
    let want = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Mean);
    assert_matches_reference(&j, &dir.path().join("G.npy"), &want, "smooth-l1 beta 0.25");
    // Another beta gives another value: the option is not ignored.
    let other = reference_out(
        &Loss::smooth_l1().beta(1.0).build().unwrap(),
        &b.pred,
        &b.target,
        None,
        None,
        Reduction::Mean,
    );
    assert!((j["value"].as_f64().unwrap() - other.value.unwrap()).abs() > 1e-3);
}

/// Poisson NLL and the focal loss through the CLI: their options (`--log-input`, `--full`,
/// `--eps`; `--alpha`, `--gamma`, added from the registry) reach the loss, on the GPU and the
/// fast CPU path, and the value and gradient match the reference's; other options give
/// other values.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn poisson_nll_and_focal_options() {
    let cases = [
        (
            Loss::poisson_nll().full(true).build().unwrap(),
            Loss::poisson_nll().build().unwrap(),
        ),
        (
            Loss::focal().alpha(0.6).gamma(0.5).build().unwrap(),
            Loss::focal().build().unwrap(),
        ),
    ];
    for (i, (loss, other)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch_in(dir.path(), &loss, 880 + i as u64);
        for device in ["gpu", "cpu"] {
            let j = compute_json(
                dir.path(),
                &format!(
                    "{} --device {device} --pred {{pred.npy}} --target {{target.npy}} --grad-out {{G.npy}}",
                    loss_flag(&loss)
                ),
                &[],
            );
            let want = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Mean);
            let what = format!("{loss:?} on {device}");
            assert_matches_reference(&j, &dir.path().join("G.npy"), &want, &what);
            let o = reference_out(&other, &b.pred, &b.target, None, None, Reduction::Mean);
            assert!(
                (j["value"].as_f64().unwrap() - o.value.unwrap()).abs() > 1e-4,
                "{what}: the options change the value"
            );
        }
    }
}

/// kl-div with both targets and `--reduction batchmean`, distill at `--temperature 2.5`, jsd
/// at `--beta 0.1 --temperature 2`, `--beta 0 --temperature 0.5` (batchmean) and `--beta 1`:
/// on the GPU and the fast CPU path, value and gradient match the reference's.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn kl_div_distill_and_batchmean() {
    let cases = [
        (
            Loss::kl_div().build().unwrap(),
            Reduction::BatchMean,
            "batchmean",
        ),
        (
            Loss::kl_div().log_target(true).build().unwrap(),
            Reduction::Mean,
            "mean",
        ),
        (
            Loss::distill().temperature(2.5).build().unwrap(),
            Reduction::Sum,
            "sum",
        ),
        (
            Loss::jsd().beta(0.1).temperature(2.0).build().unwrap(),
            Reduction::Mean,
            "mean",
        ),
        (
            Loss::jsd().beta(0.0).temperature(0.5).build().unwrap(),
            Reduction::BatchMean,
            "batchmean",
        ),
        (
            Loss::jsd().beta(1.0).build().unwrap(),
            Reduction::Sum,
            "sum",
        ),
    ];
    for (i, (loss, reduction, name)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch_in(dir.path(), &loss, 890 + i as u64);
        for device in ["gpu", "cpu"] {
            let j = compute_json(
                dir.path(),
                &format!(
                    "{} --reduction {name} --device {device} --pred {{pred.npy}} --target {{target.npy}} --grad-out {{G.npy}}",
                    loss_flag(&loss)
                ),
                &[],
            );
            let want = reference_out(&loss, &b.pred, &b.target, None, None, reduction);
            let what = format!("{loss:?} {name} on {device}");
            if matches!(loss, Loss::Jsd { .. }) {
                let got = j["value"].as_f64().expect("value is a number");
                assert_value_close(got, want.value.unwrap(), &format!("{what} value"));
                assert_array_within(
                    &read_f32(&dir.path().join("G.npy")),
                    want.grad.as_ref().unwrap(),
                    JSD_ARRAY_RTOL,
                    &format!("{what} gradient"),
                );
            } else {
                assert_matches_reference(&j, &dir.path().join("G.npy"), &want, &what);
            }
        }
    }
}

/// `--divisor D` divides softmax cross entropy's mean by D: the value is the sum over D.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn divisor_divides_the_mean() {
    let dir = tempfile::tempdir().unwrap();
    let loss = Loss::cosine_proximity().build().unwrap();
    let b = batch_in(dir.path(), &loss, 897);
    let j = compute_json(
        dir.path(),
        "--loss cosine --divisor 1000 --pred {pred.npy} --target {target.npy}",
        &[],
    );
    let sum = reference_out(&loss, &b.pred, &b.target, None, None, Reduction::Sum);
    assert_value_close(
        j["value"].as_f64().unwrap(),
        sum.value.unwrap() / 1000.0,
        "divisor",
    );
    assert_eq!(j["divisor"].as_f64(), Some(1000.0));
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_weight_broadcast_over_rows() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch_in(dir.path(), &Loss::Bce, 402);
    let w = uniform(&[29], 0.0, 3.0, 403);
    write_f32(dir.path(), "W.npy", &w);
    let j = compute_json(
        dir.path(),
        "--loss bce --pred {pred.npy} --target {target.npy} --weight {W.npy} --grad-out {G.npy}",
        &[],
    );
    let (pred, target) = (&b.pred, &b.target);
    let want = reference_out(&Loss::Bce, pred, target, Some(&w), None, Reduction::Mean);
    let unweighted = reference_out(&Loss::Bce, pred, target, None, None, Reduction::Mean);
    assert_matches_reference(&j, &dir.path().join("G.npy"), &want, "weighted bce");
    let got = j["value"].as_f64().unwrap();
    assert!(
        (got - unweighted.value.unwrap()).abs() > 1e-3 * unweighted.value.unwrap(),
        "the weight changed nothing"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bce_with_logits_pos_weight_and_weight() {
    let loss = Loss::BceWithLogits;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = batch_in(d, &loss, 404);
    let q = uniform(&[29], 0.5, 4.0, 405);
    let w = uniform(&SHAPE, 0.0, 2.0, 406);
    write_f32(d, "Q.npy", &q);
    write_f32(d, "W.npy", &w);
    let io = "--loss bce-with-logits --pred {pred.npy} --target {target.npy} --pos-weight {Q.npy}";

    // pos_weight alone, reduction sum.
    let j = compute_json(
        d,
        &format!("{io} --reduction sum --grad-out {{G.npy}}"),
        &[],
    );
    let want = reference_out(&loss, &b.pred, &b.target, None, Some(&q), Reduction::Sum);
    assert_matches_reference(&j, &d.join("G.npy"), &want, "pos_weight");

    // Both, full-shape weight, reduction mean.
    let j = compute_json(
        d,
        &format!("{io} --weight {{W.npy}} --grad-out {{G2.npy}}"),
        &[],
    );
    let want = reference_out(
        &loss,
        &b.pred,
        &b.target,
        Some(&w),
        Some(&q),
        Reduction::Mean,
    );
    assert_matches_reference(&j, &d.join("G2.npy"), &want, "weight+pos_weight");
}

// ---------------------------------------------------------------------------------------------
// 5. f64 and f16 inputs
// ---------------------------------------------------------------------------------------------

/// Runs `loss` on `device` on pred.npy and target.npy in `dir` (not f32), which the CLI
/// converts to f32 as `pred` and `target`: shape, value and gradient against the reference
/// run on the converted values, and on the reference device (the reference itself, rounded
/// once to f32) a gradient equal to the reference's rounded to f32.
fn check_converted(
    dir: &Path,
    device: &str,
    loss: &Loss,
    pred: &ArrayD<f32>,
    target: &ArrayD<f32>,
) {
    let template = loss_flag(loss)
        + " --pred {pred.npy} --target {target.npy} --device {device} --grad-out {G.npy}";
    let j = compute_json(dir, &template, &[("device", device)]);
    let want = reference_out(loss, pred, target, None, None, Reduction::Mean);
    assert_eq!(j["shape"], serde_json::json!([37, 29]));
    assert_matches_reference(&j, &dir.join("G.npy"), &want, "converted input");
    if device == "reference" {
        assert_eq!(
            read_f32(&dir.join("G.npy")),
            want.grad.unwrap().mapv(|v| v as f32)
        );
    }
}

fn f64_input(device: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let pred64 = ArrayD::from_shape_simple_fn(IxDyn(&SHAPE), || rng.random_range(-8.0f64..8.0));
    let target64 = ArrayD::from_shape_simple_fn(IxDyn(&SHAPE), || rng.random_range(0.0f64..=1.0));
    write_npy(dir.path().join("pred.npy"), &pred64).unwrap();
    write_npy(dir.path().join("target.npy"), &target64).unwrap();
    let (pred, target) = (pred64.mapv(|v| v as f32), target64.mapv(|v| v as f32));
    check_converted(dir.path(), device, &Loss::BceWithLogits, &pred, &target);
}

fn f16_input(device: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let n = SHAPE.iter().product::<usize>();
    let mut draw = || -> Vec<half::f16> {
        (0..n)
            .map(|_| half::f16::from_f32(rng.random_range(-3.0f32..3.0)))
            .collect()
    };
    let (ph, th) = (draw(), draw());
    write_f16(dir.path(), "pred.npy", &SHAPE, &ph);
    write_f16(dir.path(), "target.npy", &SHAPE, &th);
    let to32 = |v: &[half::f16]| {
        ArrayD::from_shape_vec(IxDyn(&SHAPE), v.iter().map(|h| h.to_f32()).collect()).unwrap()
    };
    check_converted(dir.path(), device, &Loss::Mse, &to32(&ph), &to32(&th));
}

checks! {
    gpu f64_input_gpu: f64_input("gpu", 501);
    cpu f64_input_cpu: f64_input("cpu", 502);
    cpu f64_input_reference: f64_input("reference", 502);
    gpu f16_input_gpu: f16_input("gpu", 503);
    cpu f16_input_cpu: f16_input("cpu", 504);
    cpu f16_input_reference: f16_input("reference", 504);
}

// ---------------------------------------------------------------------------------------------
// 6. --device gpu and --device cpu against --device reference
// ---------------------------------------------------------------------------------------------

/// Every loss on the three devices: the gpu's and the fast cpu path's value and gradient
/// against the reference device's.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn cpu_and_gpu_agree_every_loss() {
    for (k, loss) in Loss::all_default().iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        batch_in(dir.path(), loss, 600 + k as u64);
        let template = loss_flag(loss)
            + " --pred {pred.npy} --target {target.npy} --device {device} --grad-out {g}";
        let mut results = Vec::new();
        for device in ["gpu", "cpu", "reference"] {
            let g = dir.path().join(format!("G-{device}.npy"));
            let j = compute_json(dir.path(), &template, &[("device", device), ("g", s(&g))]);
            assert_eq!(j["device"], device);
            results.push((j["value"].as_f64().unwrap(), read_f32(&g)));
        }
        let want = &results[2];
        for (device, got) in ["gpu", "cpu"].iter().zip(&results) {
            let name = loss.name();
            assert_value_close(got.0, want.0, &format!("{name} {device} vs reference"));
            assert_array_close(
                &got.1,
                &want.1.mapv(f64::from),
                &format!("{name} gradient {device} vs reference"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6b. Row-wise losses (cce, softmax-ce, cosine): value, gradient and per-row losses against the
// reference, class-index targets of every integer dtype, the options, ignored rows.
// ---------------------------------------------------------------------------------------------

/// A rank-3 row-wise shape: 4 × 9 = 36 rows of 23 classes.
const RANK3: [usize; 3] = [4, 9, 23];

/// The inputs of a row-wise run.
struct Rows {
    loss: Loss,
    pred: ArrayD<f32>,
    /// Float targets, the prediction's shape; `None` with class indices.
    dense: Option<ArrayD<f32>>,
    /// Class indices shaped like the rows; written in the dtype `check_rows` is given.
    classes: Option<ArrayD<i64>>,
    /// Class weights `[C]` (`--class-weight`).
    class_weight: Option<ArrayD<f32>>,
}

impl Rows {
    /// The synthetic batch of `loss` with float targets.
    fn dense(loss: Loss, shape: &[usize], seed: u64) -> Rows {
        let b = synthetic::batch(&loss, shape, seed);
        Rows {
            loss,
            pred: b.pred,
            dense: Some(b.target),
            classes: None,
            class_weight: None,
        }
    }

    /// Logits of `shape` and seeded class indices in `[0, C)` shaped like its rows.
    fn classes(loss: Loss, shape: &[usize], seed: u64) -> Rows {
        let (rows, c) = (&shape[..shape.len() - 1], shape[shape.len() - 1]);
        Rows {
            loss,
            pred: synthetic::batch(&loss, shape, seed).pred,
            dense: None,
            classes: Some(synthetic::classes(rows, c, seed ^ 0x5eed)),
            class_weight: None,
        }
    }

    /// Sets flat row `r`'s class index.
    fn set_class(&mut self, r: usize, class: i64) -> &mut Self {
        let c = self.classes.as_mut().expect("class-index targets");
        *c.iter_mut().nth(r).expect("row in range") = class;
        self
    }

    fn shape(&self) -> &[usize] {
        self.pred.shape()
    }

    fn row_shape(&self) -> &[usize] {
        &self.shape()[..self.shape().len() - 1]
    }
}

/// Writes class indices as an `.npy` of `dtype` (`i8`, `u8`, `i16`, `u16`, `i32`, `u32`,
/// `i64`, `u64`); every value must fit.
fn write_classes(dir: &Path, name: &str, c: &ArrayD<i64>, dtype: &str) -> PathBuf {
    fn cast<T: TryFrom<i64>>(c: &ArrayD<i64>) -> ArrayD<T> {
        c.mapv(|v| T::try_from(v).unwrap_or_else(|_| panic!("class {v} does not fit")))
    }
    let p = dir.join(name);
    match dtype {
        "i8" => write_npy(&p, &cast::<i8>(c)),
        "u8" => write_npy(&p, &cast::<u8>(c)),
        "i16" => write_npy(&p, &cast::<i16>(c)),
        "u16" => write_npy(&p, &cast::<u16>(c)),
        "i32" => write_npy(&p, &cast::<i32>(c)),
        "u32" => write_npy(&p, &cast::<u32>(c)),
        "i64" => write_npy(&p, c),
        "u64" => write_npy(&p, &cast::<u64>(c)),
        other => panic!("no dtype {other}"),
    }
    .expect("write class indices");
    p
}

/// The f64 reference of a row-wise run.
fn reference_rows(r: &Rows, reduction: Reduction) -> LossOutput<f64> {
    let target: Target<'_> = match (&r.dense, &r.classes) {
        (Some(t), _) => t.view().into(),
        (None, Some(c)) => c.view().into(),
        (None, None) => unreachable!("a target"),
    };
    let mut args = LossArgs::new(r.pred.view(), target).reduction(reduction);
    if let Some(w) = &r.class_weight {
        args = args.weight(w.view());
    }
    reference::compute(&r.loss, &args).expect("reference accepts the inputs")
}

/// What a row-wise run wrote: its JSON, gradient and (reduction none) per-row losses.
struct RowsResult {
    json: Value,
    grad: ArrayD<f32>,
    losses: Option<ArrayD<f32>>,
}

/// Runs `r` on `device` with `reduction` (class indices written as `dtype`), `--grad-out`, and
/// with reduction none `--loss-out`; checks every JSON field, the value or per-row losses and
/// the gradient against the reference.
fn check_rows(device: &str, r: &Rows, dtype: &str, reduction: Reduction) -> RowsResult {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_f32(d, "pred.npy", &r.pred);
    match (&r.dense, &r.classes) {
        (Some(t), _) => write_f32(d, "target.npy", t),
        (None, Some(c)) => write_classes(d, "target.npy", c, dtype),
        (None, None) => unreachable!("a target"),
    };
    let mut template = loss_flag(&r.loss)
        + " --pred {pred.npy} --target {target.npy} --device {device} --reduction {reduction}"
        + " --grad-out {G.npy}";
    if reduction == Reduction::None {
        template += " --loss-out {L.npy}";
    }
    if let Some(w) = &r.class_weight {
        write_f32(d, "W.npy", w);
        template += " --class-weight {W.npy}";
    }
    let vars = [("device", device), ("reduction", reduction.name())];
    let j = compute_json(d, &template, &vars);

    let want = reference_rows(r, reduction);
    let what = format!(
        "{} ({}, {dtype} targets) on the {device}",
        r.loss.name(),
        reduction.name()
    );
    let (b, c) = (
        r.row_shape().iter().product::<usize>(),
        r.shape()[r.shape().len() - 1],
    );
    assert_eq!(j["loss"], r.loss.name(), "{what}");
    assert_eq!(j["reduction"], reduction.name(), "{what}");
    assert_device(&j, device);
    assert_eq!(j["shape"], serde_json::json!(r.shape()), "{what}: shape");
    assert_eq!(j["elements"], r.pred.len(), "{what}: elements");
    assert_eq!(j["rows"], b, "{what}: rows");
    assert_eq!(j["classes"], c, "{what}: classes");
    assert_eq!(j["counted"], want.counted, "{what}: counted");
    assert_eq!(j["grad_out"], Value::from(s(&d.join("G.npy"))));
    let losses = if reduction == Reduction::None {
        assert_eq!(
            j["value"],
            Value::Null,
            "{what}: no value with reduction none"
        );
        assert_eq!(j["loss_out"], Value::from(s(&d.join("L.npy"))));
        let l = read_f32(&d.join("L.npy"));
        assert_eq!(
            l.shape(),
            r.row_shape(),
            "{what}: per-row losses are shaped like the rows"
        );
        assert_array_close(&l, want.losses.as_ref().unwrap(), &format!("{what} losses"));
        Some(l)
    } else {
        let got = j["value"].as_f64().expect("value is a number");
        assert_value_close(got, want.value.unwrap(), &what);
        None
    };
    let grad = read_f32(&d.join("G.npy"));
    assert_array_close(
        &grad,
        want.grad.as_ref().unwrap(),
        &format!("{what} gradient"),
    );
    RowsResult {
        json: j,
        grad,
        losses,
    }
}

/// Softmax cross entropy with class indices written as `dtype`, every reduction.
fn softmax_ce_indices(device: &str, dtype: &str, shape: &[usize], seed: u64) {
    let r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), shape, seed);
    let b: usize = r.row_shape().iter().product();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let out = check_rows(device, &r, dtype, reduction);
        assert_eq!(out.json["counted"], b, "no row is ignored");
    }
}

/// Asserts flat rows `ignored` have a zero gradient and (when written) a zero loss, and the
/// other rows do not.
fn assert_rows_ignored(out: &RowsResult, c: usize, ignored: &[usize]) {
    for (r, row) in out.grad.as_slice().unwrap().chunks(c).enumerate() {
        let zero = row.iter().all(|&g| g == 0.0);
        assert_eq!(
            zero,
            ignored.contains(&r),
            "row {r}: gradient {row:?}, ignored rows {ignored:?}"
        );
    }
    if let Some(l) = &out.losses {
        for (r, &v) in l.iter().enumerate() {
            assert_eq!(v == 0.0, ignored.contains(&r), "row {r}: loss {v}");
        }
    }
}

/// Class weights, label smoothing 0.1, z-loss 1e-3, a soft cap of 10 and three rows at the
/// default ignore index −100: `counted` is the other 34 rows.
fn softmax_ce_all_options(device: &str, dtype: &str, seed: u64) {
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .ignore_index(-100)
        .softcap(10.0)
        .build()
        .unwrap();
    let mut r = Rows::classes(loss, &SHAPE, seed);
    let ignored = [0, 5, 36];
    for &row in &ignored {
        r.set_class(row, -100);
    }
    r.class_weight = Some(uniform(&[SHAPE[1]], 0.25, 2.0, seed + 1));
    for reduction in [Reduction::Mean, Reduction::None] {
        let out = check_rows(device, &r, dtype, reduction);
        assert_eq!(out.json["rows"], 37);
        assert_eq!(out.json["classes"], 29);
        assert_eq!(
            out.json["counted"],
            37 - ignored.len(),
            "ignored rows do not count"
        );
        assert_rows_ignored(&out, SHAPE[1], &ignored);
    }
    // Each option alone moves the value far beyond the tolerance, so a CLI that dropped any
    // of them would fail the comparison above.
    let with = reference_rows(&r, Reduction::Mean).value.unwrap();
    let without = |loss: Loss, weighted: bool| {
        let mut other = Rows::classes(loss, &SHAPE, seed);
        other.classes.clone_from(&r.classes);
        other.class_weight = if weighted {
            r.class_weight.clone()
        } else {
            None
        };
        reference_rows(&other, Reduction::Mean).value.unwrap()
    };
    let no_smoothing = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(1e-3)
        .ignore_index(-100)
        .softcap(10.0)
        .build()
        .unwrap();
    let no_z = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(0.0)
        .ignore_index(-100)
        .softcap(10.0)
        .build()
        .unwrap();
    let no_cap = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .ignore_index(-100)
        .build()
        .unwrap();
    for (what, v) in [
        ("class weights", without(loss, false)),
        ("label smoothing", without(no_smoothing, true)),
        ("z-loss", without(no_z, true)),
        ("softcap", without(no_cap, true)),
    ] {
        let rel = (with - v).abs() / with.abs();
        assert!(
            rel > 100.0 * VALUE_RTOL,
            "{what} changes the value by only {rel:e}"
        );
    }
}

/// `--lse-out`: each row's log-sum-exp of the capped logits, ignored rows included, shaped
/// like the rows (rank 3 here), with `mean` and `none`, beside the other outputs; the JSON
/// names the file.
fn softmax_ce_lse_out(device: &str, seed: u64) {
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .softcap(10.0)
        .build()
        .unwrap();
    let mut r = Rows::classes(loss, &RANK3, seed);
    r.set_class(1, -100);
    for reduction in [Reduction::Mean, Reduction::None] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_f32(d, "pred.npy", &r.pred);
        write_classes(d, "target.npy", r.classes.as_ref().unwrap(), "i64");
        let mut template = loss_flag(&r.loss)
            + " --pred {pred.npy} --target {target.npy} --device {device} --reduction {reduction}"
            + " --grad-out {G.npy} --lse-out {E.npy}";
        if reduction == Reduction::None {
            template += " --loss-out {L.npy}";
        }
        let vars = [("device", device), ("reduction", reduction.name())];
        let j = compute_json(d, &template, &vars);
        assert_eq!(j["lse_out"], Value::from(s(&d.join("E.npy"))));
        let target: Target<'_> = r.classes.as_ref().unwrap().view().into();
        let args = LossArgs::new(r.pred.view(), target)
            .reduction(reduction)
            .want_lse(true);
        let want = reference::compute(&r.loss, &args).unwrap();
        let what = format!("--lse-out on the {device} ({})", reduction.name());
        let lse = read_f32(&d.join("E.npy"));
        assert_eq!(lse.shape(), r.row_shape(), "{what}: shaped like the rows");
        assert_array_close(&lse, want.lse.as_ref().unwrap(), &what);
        assert_array_close(
            &read_f32(&d.join("G.npy")),
            want.grad.as_ref().unwrap(),
            &format!("{what}: gradient"),
        );
    }
}

/// `--ignore-index 0`: the rows whose class is 0 are ignored, every other class counts.
fn softmax_ce_ignore_index_zero(device: &str, seed: u64) {
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(0.0)
        .ignore_index(0)
        .build()
        .unwrap();
    let mut r = Rows::classes(loss, &SHAPE, seed);
    // Exactly rows 2, 3 and 30 have class 0.
    let classes = r.classes.as_mut().unwrap();
    classes.mapv_inplace(|c| if c == 0 { 1 } else { c });
    let ignored = [2, 3, 30];
    for &row in &ignored {
        r.set_class(row, 0);
    }
    let out = check_rows(device, &r, "i32", Reduction::None);
    assert_eq!(out.json["counted"], 37 - ignored.len());
    assert_rows_ignored(&out, SHAPE[1], &ignored);
    check_rows(device, &r, "i64", Reduction::Mean);
}

/// Every row ignored: value 0 (not NaN), gradient 0, counted 0.
fn softmax_ce_every_row_ignored(device: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, seed);
    write_f32(d, "pred.npy", &r.pred);
    write_classes(
        d,
        "target.npy",
        &ArrayD::from_elem(IxDyn(&[37]), -100),
        "i64",
    );
    let j = compute_json(
        d,
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --device {device} \
         --grad-out {G.npy}",
        &[("device", device)],
    );
    assert_eq!(j["counted"], 0);
    assert_eq!(j["rows"], 37);
    assert_eq!(j["value"], 0.0, "the mean over no rows is 0");
    let g = read_f32(&d.join("G.npy"));
    assert_eq!(g.shape(), SHAPE);
    assert!(g.iter().all(|&v| v == 0.0), "every gradient is 0");
}

/// Softmax cross entropy with probability targets `[B, C]`: plain (sum), then with class
/// weights and label smoothing (mean).
fn softmax_ce_probabilities(device: &str, shape: &[usize], seed: u64) {
    let mut r = Rows::dense(Loss::softmax_cross_entropy().build().unwrap(), shape, seed);
    let out = check_rows(device, &r, "f32", Reduction::Sum);
    assert_eq!(out.json["counted"], r.row_shape().iter().product::<usize>());
    r.loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(0.0)
        .ignore_index(-100)
        .build()
        .unwrap();
    r.class_weight = Some(uniform(&shape[shape.len() - 1..], 0.25, 2.0, seed + 1));
    check_rows(device, &r, "f32", Reduction::Mean);
}

/// cce or cosine with float targets: mean and none.
fn dense_rows(device: &str, r: &Rows) {
    for reduction in [Reduction::Mean, Reduction::None] {
        let out = check_rows(device, r, "f32", reduction);
        assert_eq!(out.json["counted"], r.row_shape().iter().product::<usize>());
    }
}

/// Cosine proximity with `--eps 0.5` and row 3 of the prediction scaled below that norm, so
/// both branches of the gradient run.
fn cosine_eps(device: &str, seed: u64) {
    let mut r = Rows::dense(
        Loss::cosine_proximity().eps(0.5).build().unwrap(),
        &SHAPE,
        seed,
    );
    r.pred
        .index_axis_mut(ndarray::Axis(0), 3)
        .mapv_inplace(|v| v * 1e-3);
    let norm = r
        .pred
        .index_axis(ndarray::Axis(0), 3)
        .mapv(|v| v * v)
        .sum()
        .sqrt();
    assert!(norm < 0.5, "row 3 is below eps");
    dense_rows(device, &r);
}

/// Class indices of every integer dtype give the value of int64 ones.
fn softmax_ce_every_int_dtype(device: &str, seed: u64) {
    let r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, seed);
    let base = check_rows(device, &r, "i64", Reduction::Mean);
    for dtype in ["i8", "u8", "i16", "u16", "i32", "u32", "u64"] {
        let out = check_rows(device, &r, dtype, Reduction::Mean);
        let (v, v64) = (out.json["value"].as_f64(), base.json["value"].as_f64());
        assert_eq!(v, v64, "{dtype} targets give the value of i64 ones");
        assert_eq!(
            out.grad, base.grad,
            "{dtype} targets give the gradient of i64 ones"
        );
    }
}

/// A rank-1 prediction `[C]` is one row; its class index is a 0-d array.
fn softmax_ce_single_row(device: &str, seed: u64) {
    let mut r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &[29], seed);
    r.classes = Some(ArrayD::from_elem(IxDyn(&[]), 7));
    let out = check_rows(device, &r, "i64", Reduction::None);
    assert_eq!(out.json["rows"], 1);
    assert_eq!(out.json["classes"], 29);
    assert_eq!(out.losses.unwrap().shape(), &[] as &[usize]);
}

checks! {
    gpu softmax_ce_int64_gpu: softmax_ce_indices("gpu", "i64", &SHAPE, 1101);
    cpu softmax_ce_int64_cpu: softmax_ce_indices("cpu", "i64", &SHAPE, 1102);
    cpu softmax_ce_int64_reference: softmax_ce_indices("reference", "i64", &SHAPE, 1102);
    gpu softmax_ce_int32_gpu: softmax_ce_indices("gpu", "i32", &SHAPE, 1103);
    cpu softmax_ce_int32_cpu: softmax_ce_indices("cpu", "i32", &SHAPE, 1104);
    cpu softmax_ce_int32_reference: softmax_ce_indices("reference", "i32", &SHAPE, 1104);
    gpu softmax_ce_int64_rank3_gpu: softmax_ce_indices("gpu", "i64", &RANK3, 1105);
    cpu softmax_ce_int32_rank3_cpu: softmax_ce_indices("cpu", "i32", &RANK3, 1106);
    cpu softmax_ce_int32_rank3_reference: softmax_ce_indices("reference", "i32", &RANK3, 1106);
    gpu softmax_ce_all_options_int64_gpu: softmax_ce_all_options("gpu", "i64", 1107);
    gpu softmax_ce_all_options_int32_gpu: softmax_ce_all_options("gpu", "i32", 1108);
    cpu softmax_ce_all_options_cpu: softmax_ce_all_options("cpu", "i64", 1109);
    cpu softmax_ce_all_options_reference: softmax_ce_all_options("reference", "i64", 1109);
    gpu softmax_ce_lse_out_gpu: softmax_ce_lse_out("gpu", 1150);
    cpu softmax_ce_lse_out_cpu: softmax_ce_lse_out("cpu", 1151);
    cpu softmax_ce_lse_out_reference: softmax_ce_lse_out("reference", 1151);
    gpu softmax_ce_ignore_index_zero_gpu: softmax_ce_ignore_index_zero("gpu", 1110);
    cpu softmax_ce_ignore_index_zero_cpu: softmax_ce_ignore_index_zero("cpu", 1111);
    cpu softmax_ce_ignore_index_zero_reference: softmax_ce_ignore_index_zero("reference", 1111);
    gpu softmax_ce_every_row_ignored_gpu: softmax_ce_every_row_ignored("gpu", 1112);
    cpu softmax_ce_every_row_ignored_cpu: softmax_ce_every_row_ignored("cpu", 1113);
    cpu softmax_ce_every_row_ignored_reference: softmax_ce_every_row_ignored("reference", 1113);
    gpu softmax_ce_probabilities_gpu: softmax_ce_probabilities("gpu", &SHAPE, 1114);
    cpu softmax_ce_probabilities_cpu: softmax_ce_probabilities("cpu", &SHAPE, 1115);
    cpu softmax_ce_probabilities_reference: softmax_ce_probabilities("reference", &SHAPE, 1115);
    gpu softmax_ce_probabilities_rank3_gpu: softmax_ce_probabilities("gpu", &RANK3, 1116);
    gpu softmax_ce_every_int_dtype_gpu: softmax_ce_every_int_dtype("gpu", 1117);
    cpu softmax_ce_every_int_dtype_cpu: softmax_ce_every_int_dtype("cpu", 1118);
    cpu softmax_ce_every_int_dtype_reference: softmax_ce_every_int_dtype("reference", 1118);
    gpu softmax_ce_single_row_gpu: softmax_ce_single_row("gpu", 1119);
    cpu softmax_ce_single_row_cpu: softmax_ce_single_row("cpu", 1120);
    cpu softmax_ce_single_row_reference: softmax_ce_single_row("reference", 1120);
    gpu cce_gpu: dense_rows("gpu", &Rows::dense(Loss::CategoricalCrossEntropy, &SHAPE, 1121));
    cpu cce_cpu: dense_rows("cpu", &Rows::dense(Loss::CategoricalCrossEntropy, &SHAPE, 1122));
    cpu cce_reference: dense_rows("reference", &Rows::dense(Loss::CategoricalCrossEntropy, &SHAPE, 1122));
    gpu cce_rank3_gpu: dense_rows("gpu", &Rows::dense(Loss::CategoricalCrossEntropy, &RANK3, 1123));
    gpu cosine_gpu: dense_rows("gpu", &Rows::dense(Loss::cosine_proximity().build().unwrap(), &SHAPE, 1124));
    cpu cosine_cpu: dense_rows("cpu", &Rows::dense(Loss::cosine_proximity().build().unwrap(), &SHAPE, 1125));
    cpu cosine_reference: dense_rows("reference", &Rows::dense(Loss::cosine_proximity().build().unwrap(), &SHAPE, 1125));
    gpu cosine_rank3_gpu: dense_rows("gpu", &Rows::dense(Loss::cosine_proximity().build().unwrap(), &RANK3, 1126));
    gpu cosine_eps_gpu: cosine_eps("gpu", 1127);
    cpu cosine_eps_cpu: cosine_eps("cpu", 1128);
    cpu cosine_eps_reference: cosine_eps("reference", 1128);
}

/// Runs `r` with reduction none on the gpu, then the cpu; returns each one's JSON, per-row
/// losses and gradient, unchecked (NaN allowed).
fn rows_on_both(r: &Rows) -> Vec<(Value, ArrayD<f32>, ArrayD<f32>)> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_f32(d, "pred.npy", &r.pred);
    match (&r.dense, &r.classes) {
        (Some(t), _) => write_f32(d, "target.npy", t),
        (None, Some(c)) => write_classes(d, "target.npy", c, "i64"),
        (None, None) => unreachable!("a target"),
    };
    let template = loss_flag(&r.loss)
        + " --pred {pred.npy} --target {target.npy} --device {device} --reduction none"
        + " --loss-out {l} --grad-out {g}";
    ["gpu", "cpu"]
        .iter()
        .map(|device| {
            let (l, g) = (
                d.join(format!("L-{device}.npy")),
                d.join(format!("G-{device}.npy")),
            );
            let vars = [("device", *device), ("l", s(&l)), ("g", s(&g))];
            let j = compute_json(d, &template, &vars);
            (j, read_f32(&l), read_f32(&g))
        })
        .collect()
}

/// A NaN logit in row 5: that row's loss and gradient are NaN on both devices, every other row
/// finite and equal.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn softmax_ce_nan_logit_row() {
    let mut r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, 1150);
    r.pred[[5, 3]] = f32::NAN;
    let both = rows_on_both(&r);
    for (j, l, g) in &both {
        let dev = &j["device"];
        for (row, &v) in l.iter().enumerate() {
            assert_eq!(v.is_nan(), row == 5, "{dev}: row {row} loss {v}");
        }
        for (k, &v) in g.iter().enumerate() {
            assert_eq!(
                v.is_nan(),
                k / 29 == 5,
                "{dev}: gradient element {k} is {v}"
            );
        }
    }
    // The other rows agree.
    let finite = |a: &ArrayD<f32>| a.mapv(|v| if v.is_nan() { 0.0 } else { f64::from(v) });
    let ((_, gl, gg), (_, cl, cg)) = (&both[0], &both[1]);
    let gl = gl.mapv(|v| if v.is_nan() { 0.0 } else { v });
    let gg = gg.mapv(|v| if v.is_nan() { 0.0 } else { v });
    assert_array_close(&gl, &finite(cl), "losses of the other rows, gpu vs cpu");
    assert_array_close(&gg, &finite(cg), "gradient of the other rows, gpu vs cpu");
}

/// Logits shifted by 1000 (exp overflows f32 without the max subtraction): finite, and equal
/// to the reference.
fn softmax_ce_large_logits(device: &str, seed: u64) {
    let mut r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, seed);
    r.pred.mapv_inplace(|v| v + 1000.0);
    check_rows(device, &r, "i64", Reduction::None);
    let mut r = Rows::dense(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, seed);
    r.pred.mapv_inplace(|v| v - 1000.0);
    check_rows(device, &r, "f32", Reduction::Mean);
}

/// A −inf logit where the probability target is 0: finite.
fn softmax_ce_minus_inf_logit(device: &str, seed: u64) {
    let mut r = Rows::dense(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, seed);
    r.pred[[7, 2]] = f32::NEG_INFINITY;
    r.dense.as_mut().unwrap()[[7, 2]] = 0.0;
    check_rows(device, &r, "f32", Reduction::None);
}

/// A zero prediction row for cosine: loss 0 for it, finite gradient.
fn cosine_zero_row(device: &str, seed: u64) {
    let mut r = Rows::dense(Loss::cosine_proximity().build().unwrap(), &SHAPE, seed);
    r.pred.index_axis_mut(ndarray::Axis(0), 8).fill(0.0);
    let out = check_rows(device, &r, "f32", Reduction::None);
    assert_eq!(out.losses.unwrap()[[8]], 0.0);
}

/// An ignore index beyond i32 (5e9) with int64 targets.
fn softmax_ce_ignore_index_beyond_i32(device: &str, seed: u64) {
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(0.0)
        .ignore_index(5_000_000_000)
        .build()
        .unwrap();
    let mut r = Rows::classes(loss, &SHAPE, seed);
    r.set_class(3, 5_000_000_000);
    let out = check_rows(device, &r, "i64", Reduction::None);
    assert_eq!(out.json["counted"], 36);
    assert_rows_ignored(&out, 29, &[3]);
}

checks! {
    gpu softmax_ce_large_logits_gpu: softmax_ce_large_logits("gpu", 1151);
    cpu softmax_ce_large_logits_cpu: softmax_ce_large_logits("cpu", 1152);
    cpu softmax_ce_large_logits_reference: softmax_ce_large_logits("reference", 1152);
    gpu softmax_ce_minus_inf_logit_gpu: softmax_ce_minus_inf_logit("gpu", 1153);
    cpu softmax_ce_minus_inf_logit_cpu: softmax_ce_minus_inf_logit("cpu", 1154);
    cpu softmax_ce_minus_inf_logit_reference: softmax_ce_minus_inf_logit("reference", 1154);
    gpu cosine_zero_row_gpu: cosine_zero_row("gpu", 1155);
    cpu cosine_zero_row_cpu: cosine_zero_row("cpu", 1156);
    cpu cosine_zero_row_reference: cosine_zero_row("reference", 1156);
    gpu softmax_ce_ignore_index_beyond_i32_gpu: softmax_ce_ignore_index_beyond_i32("gpu", 1157);
    cpu softmax_ce_ignore_index_beyond_i32_cpu: softmax_ce_ignore_index_beyond_i32("cpu", 1158);
    cpu softmax_ce_ignore_index_beyond_i32_reference: softmax_ce_ignore_index_beyond_i32("reference", 1158);
}

/// The text line of a row-wise loss: rows, columns, shape and the rows counted.
#[test]
fn text_output_rows_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &SHAPE, 1130);
    r.set_class(4, -100);
    write_f32(d, "pred.npy", &r.pred);
    write_classes(d, "target.npy", r.classes.as_ref().unwrap(), "i64");
    let template = "compute --loss softmax-ce --pred {pred.npy} --target {target.npy} --device cpu";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, "text output, softmax-ce");
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("softmax-ce (mean) over 37 rows x 29 columns [37, 29] (36 rows counted)"),
        "first line: {first}"
    );
    let v = text_value(first);
    let want = reference_rows(&r, Reduction::Mean).value.unwrap();
    assert_value_close(v, want, "text value");
}

/// cce, softmax-ce (class indices) and cosine agree between `--device gpu` and `--device cpu`
/// (the fast path; each is also checked against the reference by `check_rows`).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn cpu_and_gpu_agree_row_wise() {
    let cases = [
        Rows::dense(Loss::CategoricalCrossEntropy, &RANK3, 1140),
        Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), &RANK3, 1141),
        Rows::dense(Loss::cosine_proximity().build().unwrap(), &RANK3, 1142),
    ];
    for r in &cases {
        let gpu = check_rows("gpu", r, "i64", Reduction::Sum);
        let cpu = check_rows("cpu", r, "i64", Reduction::Sum);
        let name = r.loss.name();
        let (g, c) = (gpu.json["value"].as_f64(), cpu.json["value"].as_f64());
        assert_value_close(g.unwrap(), c.unwrap(), &format!("{name} gpu vs cpu"));
        let cpu_grad = cpu.grad.mapv(f64::from);
        assert_array_close(&gpu.grad, &cpu_grad, &format!("{name} gradient gpu vs cpu"));
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Errors: exit 2, one line on stderr naming the file, no output file left behind.
// Each case runs on the cpu and the reference (no GPU needed) and on the gpu (GPU-only code
// paths: validation inside `GpuContext::compute`, the BCE domain check in the kernel).
// ---------------------------------------------------------------------------------------------

/// Asserts exit `code`, a single-line stderr containing every string of `needles`, and that
/// nothing was written at `outputs` (nor a temporary file beside them).
fn assert_rejected(out: &Output, code: i32, needles: &[impl AsRef<str>], outputs: &[&Path]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    // The CLI prints its message last, as one line. Graphics drivers may print their own
    // diagnostics earlier while the adapters are enumerated (Mesa's EGL on a headless machine:
    // "XDG_RUNTIME_DIR is invalid or not set"); those are not the CLI's and are skipped, but a
    // message spread over several lines would put lines after the CLI's first one.
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
        let n = n.as_ref();
        assert!(msg.contains(n), "stderr should mention {n:?}: {err}");
    }
    for o in outputs {
        assert!(!o.exists(), "{} was created despite the error", o.display());
        let name = o.file_name().unwrap().to_string_lossy().into_owned();
        for e in fs::read_dir(o.parent().unwrap()).unwrap() {
            let e = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!e.contains(&name), "left behind: {e}");
        }
    }
}

/// Runs `compute` in `dir` with the words of `template` (`argv`), then `--device DEVICE
/// --grad-out {G.npy}`.
fn compute_on(dir: &Path, device: &str, template: &str) -> Output {
    let template = format!("compute {template} --device {device} --grad-out {{G.npy}}");
    run(&argv(dir, &template, &[]))
}

/// `compute_on`, then `assert_rejected` with exit 2, the `needles` (filled like the arguments)
/// and the outputs G.npy and L.npy.
fn rejects(dir: &Path, device: &str, template: &str, needles: &[&str]) {
    let out = compute_on(dir, device, template);
    let needles: Vec<String> = needles.iter().map(|n| fill(dir, n, &[])).collect();
    let outputs = [dir.join("G.npy"), dir.join("L.npy")];
    assert_rejected(&out, 2, &needles, &[&outputs[0], &outputs[1]]);
}

/// Writes logits `pred.npy` of `shape` and class indices `target.npy` (as `dtype`) shaped
/// like its rows, with the classes of flat rows set as `set` says; returns the inputs.
fn ce_in(d: &Path, seed: u64, shape: &[usize], set: &[(usize, i64)], dtype: &str) -> Rows {
    let mut r = Rows::classes(Loss::softmax_cross_entropy().build().unwrap(), shape, seed);
    for &(row, class) in set {
        r.set_class(row, class);
    }
    write_f32(d, "pred.npy", &r.pred);
    write_classes(d, "target.npy", r.classes.as_ref().unwrap(), dtype);
    r
}

/// Error cases, `NAME(d) { SETUP } "ARGS" => [NEEDLES];`: SETUP writes the inputs into the
/// temporary directory `d`, then `rejects(d, device, ARGS, NEEDLES)`. Each becomes a function
/// `NAME(device)` and the tests `errors_cpu::NAME`, `errors_reference::NAME` and
/// `errors_gpu::NAME`.
macro_rules! error_tests {
    ($($(#[$doc:meta])* $name:ident($d:ident) $setup:block $args:literal
        => [$($needle:literal),* $(,)?];)*) => {
        $(
            $(#[$doc])*
            fn $name(device: &str) {
                let dir = tempfile::tempdir().unwrap();
                let $d = dir.path();
                $setup
                rejects($d, device, $args, &[$($needle),*]);
            }
        )*
        mod errors_cpu {
            $( #[test] fn $name() { super::$name("cpu"); } )*
        }
        mod errors_reference {
            $( #[test] fn $name() { super::$name("reference"); } )*
        }
        mod errors_gpu {
            $( #[test] #[cfg_attr(skip_gpu_tests, ignore)] fn $name() { super::$name("gpu"); } )*
        }
    };
}

error_tests! {
    /// A --pred that does not exist.
    missing_file(d) { batch_in(d, &Loss::Mse, 701); }
        "--loss mse --pred {no-such-pred.npy} --target {target.npy} --reduction none \
         --loss-out {L.npy}"
        => ["{no-such-pred.npy}", "cannot read"];

    /// A target of printable text.
    not_npy_text_file(d) {
        batch_in(d, &Loss::Mse, 702);
        let mut rng = StdRng::seed_from_u64(702);
        let text: String = (0..500).map(|_| char::from(rng.random_range(b' '..=b'~'))).collect();
        fs::write(d.join("notes.npy"), format!("{text}\nthis is not numpy\n")).unwrap();
    }
        "--loss mse --pred {pred.npy} --target {notes.npy} --reduction none --loss-out {L.npy}"
        => ["{notes.npy}", "not a valid .npy"];

    /// A target with its last 10 bytes cut off.
    truncated_npy(d) {
        batch_in(d, &Loss::Mse, 703);
        let t = write_f32(d, "short.npy", &uniform(&SHAPE, -1.0, 1.0, 703));
        let bytes = fs::read(&t).unwrap();
        fs::write(&t, &bytes[..bytes.len() - 10]).unwrap();
    }
        "--loss mse --pred {pred.npy} --target {short.npy} --reduction none --loss-out {L.npy}"
        => ["{short.npy}", "truncated"];

    /// An i4 prediction.
    unsupported_dtype_int32(d) {
        batch_in(d, &Loss::Mse, 704);
        let ints = ArrayD::from_shape_fn(IxDyn(&SHAPE), |i| (i[0] * 29 + i[1]) as i32);
        write_npy(d.join("ints.npy"), &ints).unwrap();
    }
        "--loss mse --pred {ints.npy} --target {target.npy} --reduction none --loss-out {L.npy}"
        => ["{ints.npy}", "unsupported dtype", "i4"];

    /// A bool prediction (bool is a target's dtype only).
    unsupported_dtype_bool(d) {
        batch_in(d, &Loss::Mse, 705);
        let bools = ArrayD::from_shape_fn(IxDyn(&SHAPE), |i| i[1] % 2 == 0);
        write_npy(d.join("bools.npy"), &bools).unwrap();
    }
        "--loss mse --pred {bools.npy} --target {target.npy}"
        => ["{bools.npy}", "unsupported dtype", "(bool; expected float32"];

    /// A [29, 37] target for a [37, 29] prediction.
    shape_mismatch(d) {
        batch_in(d, &Loss::Mse, 706);
        write_f32(d, "t29x37.npy", &uniform(&[29, 37], -1.0, 1.0, 706));
    }
        "--loss mse --pred {pred.npy} --target {t29x37.npy} --reduction none --loss-out {L.npy}"
        => ["{t29x37.npy}", "shape mismatch", "[37, 29]", "[29, 37]"];

    /// A bce probability of 1.5 at flat index 12 * 29 + 7 = 355.
    bce_probability_out_of_range(d) {
        let mut b = batch_in(d, &Loss::Bce, 707);
        b.pred[[12, 7]] = 1.5;
        write_f32(d, "pred.npy", &b.pred);
    }
        "--loss bce --pred {pred.npy} --target {target.npy} --reduction none --loss-out {L.npy}"
        => ["{pred.npy}", "element 355 ", "1.5"];

    /// --lse-out with a loss without a log-sum-exp.
    lse_out_of_mse(d) { batch_in(d, &Loss::Mse, 764); }
        "--loss mse --pred {pred.npy} --target {target.npy} --lse-out {E.npy}"
        => ["--lse-out", "softmax-ce", "mse"];

    /// --lse-out and --grad-out (which `rejects` adds) the same file.
    lse_out_is_grad_out(d) { ce_in(d, 765, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --lse-out {G.npy}"
        => ["--lse-out", "--grad-out"];

    /// --lse-out over the prediction.
    lse_out_is_the_prediction(d) { ce_in(d, 766, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --lse-out {pred.npy}"
        => ["--lse-out", "--pred"];

    /// --loss-out with the default reduction (mean).
    loss_out_without_reduction_none(d) { batch_in(d, &Loss::Mse, 708); }
        "--loss mse --pred {pred.npy} --target {target.npy} --loss-out {L.npy}"
        => ["--loss-out", "--reduction none"];

    /// --delta with mae.
    delta_with_non_huber_loss(d) { batch_in(d, &Loss::Mse, 709); }
        "--loss mae --delta 0.5 --pred {pred.npy} --target {target.npy}"
        => ["--delta", "huber"];

    /// --beta with huber (it is smooth L1's).
    beta_with_huber(d) { batch_in(d, &Loss::Mse, 760); }
        "--loss huber --beta 0.5 --pred {pred.npy} --target {target.npy}"
        => ["--beta", "smooth-l1"];

    /// Poisson NLL with a switch that is neither 0 nor 1.
    poisson_log_input_two(d) { batch_in(d, &Loss::Mse, 762); }
        "--loss poisson-nll --log-input 2 --pred {pred.npy} --target {target.npy}"
        => ["log-input", "0 (off) or 1 (on)", "2"];

    /// The focal loss with a negative --gamma, and an alpha above 1.
    focal_gamma_negative(d) { batch_in(d, &Loss::Mse, 763); }
        "--loss focal --gamma=-1 --pred {pred.npy} --target {target.npy}"
        => ["gamma", ">= 0", "-1"];
    focal_alpha_above_one(d) { batch_in(d, &Loss::Mse, 764); }
        "--loss focal --alpha 1.5 --pred {pred.npy} --target {target.npy}"
        => ["alpha", "[0, 1]", "1.5"];

    /// --divisor with an elementwise loss, with --reduction sum, and negative.
    divisor_with_elementwise(d) { batch_in(d, &Loss::Mse, 766); }
        "--loss mse --divisor 4 --pred {pred.npy} --target {target.npy}"
        => ["divisor", "elementwise"];
    divisor_with_sum(d) { batch_in(d, &Loss::cosine_proximity().build().unwrap(), 767); }
        "--loss cosine --reduction sum --divisor 4 --pred {pred.npy} --target {target.npy}"
        => ["divisor", "sum"];
    divisor_negative(d) { batch_in(d, &Loss::cosine_proximity().build().unwrap(), 768); }
        "--loss cosine --divisor=-4 --pred {pred.npy} --target {target.npy}"
        => ["divisor", ">= 0", "-4"];

    /// A distillation temperature of 0.
    distill_temperature_zero(d) { batch_in(d, &Loss::distill().build().unwrap(), 769); }
        "--loss distill --temperature 0 --pred {pred.npy} --target {target.npy}"
        => ["temperature", "> 0"];

    /// A JSD --beta above 1, below 0, and a JSD temperature of 0.
    jsd_beta_above_one(d) { batch_in(d, &Loss::jsd().build().unwrap(), 770); }
        "--loss jsd --beta 1.5 --pred {pred.npy} --target {target.npy}"
        => ["beta", "[0, 1]", "1.5"];
    jsd_beta_negative(d) { batch_in(d, &Loss::jsd().build().unwrap(), 771); }
        "--loss jsd --beta=-0.25 --pred {pred.npy} --target {target.npy}"
        => ["beta", "[0, 1]", "-0.25"];
    jsd_temperature_zero(d) { batch_in(d, &Loss::jsd().build().unwrap(), 772); }
        "--loss jsd --temperature 0 --pred {pred.npy} --target {target.npy}"
        => ["temperature", "> 0"];

    /// --gamma with bce-with-logits (it is the focal loss's).
    gamma_with_bce_logits(d) { batch_in(d, &Loss::Mse, 765); }
        "--loss bce-with-logits --gamma 2 --pred {pred.npy} --target {target.npy}"
        => ["--gamma", "focal"];

    /// Smooth L1 with a negative --beta.
    smooth_l1_beta_negative(d) { batch_in(d, &Loss::Mse, 761); }
        "--loss smooth-l1 --beta=-0.5 --pred {pred.npy} --target {target.npy}"
        => ["beta", ">= 0", "-0.5"];

    /// Huber with --delta 0.
    huber_delta_zero(d) { batch_in(d, &Loss::Mse, 710); }
        "--loss huber --delta 0 --pred {pred.npy} --target {target.npy}"
        => ["delta", "> 0"];

    /// `--delta=-1`: the `=` form, which reaches the CLI's own validation (see
    /// `huber_delta_negative_separate_value` for `--delta -1`).
    huber_delta_negative(d) { batch_in(d, &Loss::Mse, 711); }
        "--loss huber --delta=-1 --pred {pred.npy} --target {target.npy}"
        => ["delta", "> 0", "-1"];

    /// A bce weight with -0.25 at element 5.
    negative_weight(d) {
        batch_in(d, &Loss::Bce, 712);
        let mut w = uniform(&[29], 0.0, 2.0, 712);
        w[[5]] = -0.25;
        write_f32(d, "negw.npy", &w);
    }
        "--loss bce --pred {pred.npy} --target {target.npy} --weight {negw.npy}"
        => ["{negw.npy}", "weight", "element 5 ", "-0.25"];

    /// A weight for mse, which takes none: the flag is refused before any file is read, with
    /// the losses that take it.
    weight_with_mse(d) {
        batch_in(d, &Loss::Mse, 713);
        write_f32(d, "w.npy", &uniform(&[29], 0.0, 2.0, 713));
    }
        "--loss mse --pred {pred.npy} --target {target.npy} --weight {w.npy}"
        => ["--weight", "bce-with-logits"];

    /// A [37] weight: a leading, not a trailing, part of [37, 29].
    weight_wrong_shape(d) {
        batch_in(d, &Loss::Bce, 714);
        write_f32(d, "w37.npy", &uniform(&[37], 0.0, 2.0, 714));
    }
        "--loss bce --pred {pred.npy} --target {target.npy} --weight {w37.npy}"
        => ["{w37.npy}", "shape mismatch"];

    /// Class 29 (= C) in row 11.
    class_index_out_of_range(d) { ce_in(d, 720, &SHAPE, &[(11, 29)], "i64"); }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --reduction none \
         --loss-out {L.npy}"
        => ["{target.npy}", "class 29 of row 11 ", "[0, 29)"];

    /// Class −1 in flat row 12 of rank-3 int32 targets.
    class_index_negative_rank3(d) { ce_in(d, 721, &RANK3, &[(12, -1)], "i32"); }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy}"
        => ["{target.npy}", "class -1 of row 12 ", "[0, 23)"];

    /// An int64 class 2^32 + 3, which a cast to i32 would wrap to the valid class 3.
    class_index_beyond_i32(d) { ce_in(d, 722, &SHAPE, &[(6, (1 << 32) + 3)], "i64"); }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy}"
        => ["{target.npy}", "class 4294967299 of row 6 "];

    /// −100 is only ignored while it is the ignore index: with --ignore-index 0 it is a bad class.
    class_minus_100_with_other_ignore_index(d) {
        ce_in(d, 723, &SHAPE, &[(9, -100)], "i64");
    }
        "--loss softmax-ce --ignore-index 0 --pred {pred.npy} --target {target.npy}"
        => ["{target.npy}", "class -100 of row 9 "];

    /// Class weights for mse.
    class_weight_with_mse(d) {
        batch_in(d, &Loss::Mse, 724);
        write_f32(d, "W.npy", &uniform(&[29], 0.0, 2.0, 724));
    }
        "--loss mse --pred {pred.npy} --target {target.npy} --class-weight {W.npy}"
        => ["--class-weight", "softmax-ce"];

    /// Label smoothing for cosine.
    label_smoothing_with_cosine(d) { batch_in(d, &Loss::cosine_proximity().build().unwrap(), 725); }
        "--loss cosine --label-smoothing 0.1 --pred {pred.npy} --target {target.npy}"
        => ["--label-smoothing", "softmax-ce"];

    /// --eps for softmax-ce.
    eps_with_softmax_ce(d) { ce_in(d, 726, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --eps 1e-6 --pred {pred.npy} --target {target.npy}"
        => ["--eps", "cosine"];

    /// --z-loss for cce.
    z_loss_with_cce(d) { batch_in(d, &Loss::CategoricalCrossEntropy, 727); }
        "--loss cce --z-loss 0.001 --pred {pred.npy} --target {target.npy}"
        => ["--z-loss", "softmax-ce"];

    /// --ignore-index for cce.
    ignore_index_with_cce(d) { batch_in(d, &Loss::CategoricalCrossEntropy, 728); }
        "--loss cce --ignore-index 0 --pred {pred.npy} --target {target.npy}"
        => ["--ignore-index", "softmax-ce"];

    /// --weight for softmax-ce: the message points to --class-weight.
    weight_with_softmax_ce(d) {
        ce_in(d, 729, &SHAPE, &[], "i64");
        write_f32(d, "W.npy", &uniform(&[29], 0.0, 2.0, 729));
    }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --weight {W.npy}"
        => ["--weight", "--class-weight"];

    /// --ignore-index with probability targets.
    ignore_index_with_float_targets(d) { batch_in(d, &Loss::softmax_cross_entropy().build().unwrap(), 730); }
        "--loss softmax-ce --ignore-index 0 --pred {pred.npy} --target {target.npy}"
        => ["{target.npy}", "--ignore-index", "floats"];

    /// Label smoothing 1.
    label_smoothing_one(d) { ce_in(d, 731, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --label-smoothing 1.0 --pred {pred.npy} --target {target.npy}"
        => ["label smoothing", "[0, 1)", "got 1"];

    /// Negative label smoothing.
    label_smoothing_negative(d) { ce_in(d, 732, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --label-smoothing -0.1 --pred {pred.npy} --target {target.npy}"
        => ["label smoothing", "[0, 1)", "-0.1"];

    /// A negative z-loss coefficient.
    z_loss_negative(d) { ce_in(d, 733, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --z-loss -1 --pred {pred.npy} --target {target.npy}"
        => ["z-loss", ">= 0", "-1"];

    /// A negative soft cap.
    softcap_negative(d) { ce_in(d, 791, &SHAPE, &[], "i64"); }
        "--loss softmax-ce --softcap -1 --pred {pred.npy} --target {target.npy}"
        => ["soft cap", "> 0", "-1"];

    /// --softcap for a loss without it.
    softcap_for_mse(d) { batch_in(d, &Loss::Mse, 792); }
        "--loss mse --softcap 30 --pred {pred.npy} --target {target.npy}"
        => ["--softcap", "softmax-ce"];

    /// Cosine with --eps 0.
    cosine_eps_zero(d) { batch_in(d, &Loss::cosine_proximity().build().unwrap(), 734); }
        "--loss cosine --eps 0 --pred {pred.npy} --target {target.npy}"
        => ["eps", "> 0", "got 0"];

    /// int64 class indices for cce, which takes probabilities.
    int_targets_for_cce(d) {
        batch_in(d, &Loss::CategoricalCrossEntropy, 735);
        write_classes(d, "classes.npy", &synthetic::classes(&[37], 29, 735), "i64");
    }
        "--loss cce --pred {pred.npy} --target {classes.npy}"
        => ["{classes.npy}", "class indices", "softmax-ce"];

    /// int32 targets shaped like the prediction for mse.
    int_targets_for_mse(d) {
        batch_in(d, &Loss::Mse, 736);
        write_classes(d, "ints.npy", &synthetic::classes(&SHAPE, 29, 736), "i32");
    }
        "--loss mse --pred {pred.npy} --target {ints.npy} --reduction none --loss-out {L.npy}"
        => ["{ints.npy}", "class indices"];

    /// Class indices [38] for [37, 29] logits.
    class_target_wrong_shape(d) {
        ce_in(d, 737, &SHAPE, &[], "i64");
        write_classes(d, "t38.npy", &synthetic::classes(&[38], 29, 737), "i64");
    }
        "--loss softmax-ce --pred {pred.npy} --target {t38.npy}"
        => ["{t38.npy}", "shape mismatch", "[37]", "[38]"];

    /// Class indices [36] (flattened) for [4, 9, 23] logits: they must be shaped [4, 9].
    class_target_flattened_rank3(d) {
        ce_in(d, 738, &RANK3, &[], "i64");
        write_classes(d, "t36.npy", &synthetic::classes(&[36], 23, 738), "i64");
    }
        "--loss softmax-ce --pred {pred.npy} --target {t36.npy}"
        => ["{t36.npy}", "shape mismatch", "[4, 9]", "[36]"];

    /// Class indices shaped like the logits [37, 29] (a one-hot layout) instead of [37].
    class_target_prediction_shape(d) {
        ce_in(d, 739, &SHAPE, &[], "i64");
        write_classes(d, "onehot.npy", &ArrayD::zeros(IxDyn(&SHAPE)), "u8");
    }
        "--loss softmax-ce --pred {pred.npy} --target {onehot.npy}"
        => ["{onehot.npy}", "shape mismatch", "[37]", "[37, 29]"];

    /// Probability targets [37, 28] for cosine's [37, 29].
    cosine_target_wrong_shape(d) {
        batch_in(d, &Loss::cosine_proximity().build().unwrap(), 740);
        write_f32(d, "t28.npy", &uniform(&[37, 28], -1.0, 1.0, 740));
    }
        "--loss cosine --pred {pred.npy} --target {t28.npy} --reduction none --loss-out {L.npy}"
        => ["{t28.npy}", "shape mismatch", "[37, 29]", "[37, 28]"];

    /// Class weights [28] for 29 classes.
    class_weight_wrong_shape(d) {
        ce_in(d, 741, &SHAPE, &[], "i64");
        write_f32(d, "W28.npy", &uniform(&[28], 0.0, 2.0, 741));
    }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --class-weight {W28.npy}"
        => ["{W28.npy}", "shape mismatch", "[29]", "[28]"];

    /// A class weight of −0.25 at element 5.
    class_weight_negative(d) {
        ce_in(d, 742, &SHAPE, &[], "i64");
        let mut w = uniform(&[29], 0.0, 2.0, 742);
        w[[5]] = -0.25;
        write_f32(d, "W.npy", &w);
    }
        "--loss softmax-ce --pred {pred.npy} --target {target.npy} --class-weight {W.npy}"
        => ["{W.npy}", "element 5 ", "-0.25"];

    /// A cce probability of 1.5 at flat index 12 * 29 + 7 = 355.
    cce_probability_above_one(d) {
        let mut b = batch_in(d, &Loss::CategoricalCrossEntropy, 743);
        b.pred[[12, 7]] = 1.5;
        write_f32(d, "pred.npy", &b.pred);
    }
        "--loss cce --pred {pred.npy} --target {target.npy} --reduction none --loss-out {L.npy}"
        => ["{pred.npy}", "element 355 ", "1.5"];

    /// A negative cce probability at flat index 30 * 29 = 870 (first of its row).
    cce_probability_negative(d) {
        let mut b = batch_in(d, &Loss::CategoricalCrossEntropy, 744);
        b.pred[[30, 0]] = -0.5;
        write_f32(d, "pred.npy", &b.pred);
    }
        "--loss cce --pred {pred.npy} --target {target.npy}"
        => ["{pred.npy}", "element 870 ", "-0.5"];

    /// A bool target for softmax-ce.
    bool_class_target(d) {
        ce_in(d, 745, &SHAPE, &[], "i64");
        write_npy(d.join("bools.npy"), &ArrayD::from_shape_fn(IxDyn(&[37]), |i| i[0] % 2 == 0))
            .unwrap();
    }
        "--loss softmax-ce --pred {pred.npy} --target {bools.npy}"
        => ["{bools.npy}", "a bool target is 0/1 float targets",
            "--loss softmax-ce takes class indices as integers (uint8, int32, int64)"];

    /// A complex64 target for softmax-ce.
    complex_target(d) {
        ce_in(d, 746, &SHAPE, &[], "i64");
        write_raw(d, "cplx.npy", "<c8", &[37], &[0u8; 37 * 8]);
    }
        "--loss softmax-ce --pred {pred.npy} --target {cplx.npy}"
        => ["{cplx.npy}", "unsupported dtype", "c8"];

    /// A 0-d prediction for a row-wise loss.
    scalar_pred_row_wise(d) {
        write_f32(d, "s.npy", &ArrayD::from_elem(IxDyn(&[]), 0.5));
    }
        "--loss cosine --pred {s.npy} --target {s.npy}"
        => ["{s.npy}", "rank >= 1"];

    /// No rows: logits [0, 29], class indices [0].
    empty_rows(d) {
        write_f32(d, "p0.npy", &ArrayD::zeros(IxDyn(&[0, 29])));
        write_classes(d, "t0.npy", &ArrayD::zeros(IxDyn(&[0])), "i64");
    }
        "--loss softmax-ce --pred {p0.npy} --target {t0.npy}"
        => ["{p0.npy}", "empty"];
}

/// `--delta -1` (value as a separate argument): still a usage error, exit 2, nothing written.
#[test]
fn huber_delta_negative_separate_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    batch_in(d, &Loss::Mse, 715);
    let out = compute_on(
        d,
        "cpu",
        "--loss huber --delta -1 --pred {pred.npy} --target {target.npy}",
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("-1"), "stderr: {}", stderr(&out));
    for o in ["G.npy", "L.npy"] {
        assert!(!d.join(o).exists());
    }
}

/// `--delta -1` (a separate negative value) gets the same one-line "delta must be > 0" message
/// as `--delta=-1`, not a clap usage error.
#[test]
fn huber_delta_negative_separate_value_message() {
    let dir = tempfile::tempdir().unwrap();
    batch_in(dir.path(), &Loss::Mse, 716);
    let template = "--loss huber --delta -1 --pred {pred.npy} --target {target.npy}";
    rejects(dir.path(), "cpu", template, &["delta", "> 0"]);
}

// ---------------------------------------------------------------------------------------------
// 8. The main job
// ---------------------------------------------------------------------------------------------

/// The main job on small batches (the defaults take minutes on a software rasteriser):
/// every loss has one row, ending in "ok".
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn main_job_small() {
    let out = run(&[
        "--elements",
        "100003",
        "--rows",
        "64",
        "--classes",
        "300",
        "--repeats",
        "1",
    ]);
    assert_success(&out, "main job");
    let text = stdout(&out);
    let adapter = text
        .lines()
        .find_map(|l| l.strip_prefix("adapter: "))
        .unwrap_or_else(|| panic!("no adapter line:\n{text}"));
    assert!(!adapter.trim().is_empty(), "empty adapter line");
    for needle in [
        "100003 elements per elementwise loss",
        "softmax-ce 64 x 300",
        "cce 64 x 1000",
        "cosine 64 x 768",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    // Every registered loss has its row.
    let names: Vec<&str> = wgpu_loss::losses::LossInfo::all()
        .map(|i| i.name())
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    for &name in &names {
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .collect();
        assert_eq!(rows.len(), 1, "one row for {name}:\n{text}");
        let last = rows[0].split_whitespace().last();
        assert_eq!(last, Some("ok"), "{name} row: {}", rows[0]);
        assert!(
            !rows[0].contains("FAIL") && !rows[0].contains("NaN"),
            "{}",
            rows[0]
        );
    }
    assert!(
        text.lines()
            .any(|l| l.trim() == format!("all {} losses agree", names.len())),
        "{text}"
    );
}

/// `--elements 0`, `--rows 0`, `--classes 0`: exit 2 naming the flag, before any device is
/// touched (no GPU needed) and before anything is printed.
#[test]
fn main_job_zero_sizes() {
    for flag in ["--elements", "--rows", "--classes"] {
        let out = run(&[flag, "0"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} 0: stderr: {err}");
        assert!(
            err.contains(flag) && err.contains("wgpu-loss: error: "),
            "{flag} 0: stderr: {err}"
        );
        assert!(
            stdout(&out).is_empty(),
            "{flag} 0: nothing printed before the check: {}",
            stdout(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 9. No matching adapter
// ---------------------------------------------------------------------------------------------

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn no_matching_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    batch_in(d, &Loss::Mse, 901);
    let env = [("WGPU_ADAPTER_NAME", "no-such-adapter-xyz")];
    let io = "compute --loss mse --pred {pred.npy} --target {target.npy}";
    let out = run_with_env(&argv(d, &format!("{io} --grad-out {{G.npy}}"), &[]), &env);
    let needles = [
        "mesa-vulkan-drivers",
        "WGPU_ADAPTER_NAME",
        "no-such-adapter-xyz",
    ];
    assert_rejected(&out, 1, &needles, &[&d.join("G.npy")]);
    // The same variable does not matter for the cpu paths.
    for device in ["cpu", "reference"] {
        let out = run_with_env(&argv(d, &format!("{io} --device {device}"), &[]), &env);
        assert_success(
            &out,
            &format!("--device {device} ignores WGPU_ADAPTER_NAME"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Non-finite inputs, and a known bug (ignored until fixed).
// ---------------------------------------------------------------------------------------------

/// A NaN or an infinity in the prediction: the value is NaN/inf (JSON null) on the reference
/// and the fast cpu path, and must be on the gpu too, never a finite number (a reduction that drops or flushes
/// non-finite terms would print a plausible wrong loss).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn non_finite_input_value_is_null_on_gpu_and_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_f32(d, "t.npy", &ArrayD::zeros(IxDyn(&[3])));
    for bad in [f32::NAN, f32::INFINITY] {
        let pv = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.25, bad, 0.5]).unwrap();
        write_f32(d, "p.npy", &pv);
        for device in ["cpu", "reference", "gpu"] {
            let template = "--loss mae --pred {p.npy} --target {t.npy} --device {device}";
            let j = compute_json(d, template, &[("device", device)]);
            let value = &j["value"];
            assert_eq!(*value, Value::Null, "{device}, input {bad}: value {value}");
        }
    }
}

/// A uint64 class index beyond i64 (2^63 + 5) is reported with its own value, not clamped.
#[test]
fn class_index_u64_beyond_i64_reported_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ce_in(d, 1003, &SHAPE, &[], "i64");
    let mut c = synthetic::classes(&[37], 29, 1003).mapv(|v| v as u64);
    c[[4]] = (1 << 63) + 5;
    write_npy(d.join("t64.npy"), &c).unwrap();
    let template = "--loss softmax-ce --pred {pred.npy} --target {t64.npy}";
    rejects(
        d,
        "cpu",
        template,
        &["{t64.npy}", "class 9223372036854775813 of row 4 "],
    );
}

/// The same path for --grad-out and --loss-out: either refused up front or both written, but
/// never an error with the losses left at the path.
#[test]
fn grad_out_and_loss_out_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    batch_in(d, &Loss::Mse, 1001);
    let template = "compute --loss mse --pred {pred.npy} --target {target.npy} --reduction none \
                    --grad-out {X.npy} --loss-out {X.npy} --device cpu";
    let out = run(&argv(d, template, &[]));
    let x = d.join("X.npy");
    assert_rejected(&out, 2, &[s(&x)], &[&x]);
}

/// An output path in a directory that does not exist is bad input (exit 2), found before any
/// work is done, and nothing is written.
#[test]
fn output_directory_missing_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    batch_in(d, &Loss::Mse, 1002);
    let template = "compute --loss mse --pred {pred.npy} --target {target.npy} \
                    --grad-out {no-such-dir/G.npy} --device cpu";
    let out = run(&argv(d, template, &[]));
    let g = d.join("no-such-dir/G.npy");
    assert_rejected(&out, 2, &[s(&g), "does not exist"], &[]);
    assert!(
        !g.parent().unwrap().exists(),
        "the missing directory was created"
    );
}

/// Float targets shaped like class indices get a hint that class indices must be integers.
#[test]
fn float_class_indices_hint_at_integer_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_f32(d, "pred.npy", &uniform(&SHAPE, -3.0, 3.0, 1004));
    write_f32(d, "t.npy", &uniform(&SHAPE[..1], 0.0, 5.0, 1005));
    let template = "--loss softmax-ce --pred {pred.npy} --target {t.npy}";
    rejects(d, "cpu", template, &["{t.npy}", "must be an integer .npy"]);
}

// ---------------------------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------------------------

/// `bench --quick` with a loss filter, shrunk by the hidden `--max-elements` so it stays fast:
/// exits 0, prints the ceilings, the kernel timing method and one row per loss and size,
/// writes a JSON record per loss, size and path (kernel step, whole call, fast CPU path,
/// reference) with positive throughput, and an SVG plot.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_quick_writes_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let template = "bench --quick --losses mse,softmax-ce --max-elements 16384 --repeats 2 \
                    --json {B.json} --plot {P.svg}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, "bench --quick");
    let text = stdout(&out);
    for want in [
        "copy kernel",
        "host copy_from_slice",
        "kernel timing: ",
        "kern GB/s",
        "% pass",
        "CPU/ref",
        "mse",
        "softmax-ce",
    ] {
        assert!(text.contains(want), "stdout lacks {want:?}:\n{text}");
    }
    // llvmpipe and every desktop Vulkan driver have timestamp queries; the method is named
    // either way.
    assert!(
        text.contains("kernel timing: timestamps") || text.contains("kernel timing: wall-clock"),
        "no timing method:\n{text}"
    );
    let json: Value = serde_json::from_str(&fs::read_to_string(d.join("B.json")).unwrap())
        .expect("B.json is JSON");
    let records = json.as_array().expect("a JSON array");
    // --quick sweeps 2^16 and 2^20 elements for mse, both above the cap, so one size of 16384
    // is left; one row shape (with fewer rows) for softmax-ce; five paths each.
    assert_eq!(records.len(), 5 * (1 + 1), "records: {json:#}");
    for r in records {
        for field in [
            "loss",
            "shape",
            "path",
            "adapter",
            "timing",
            "median_ms",
            "gbps",
            "ceiling_gbps",
        ] {
            assert!(r.get(field).is_some(), "record lacks {field}: {r}");
        }
        assert!(r["gbps"].as_f64().unwrap() > 0.0, "gbps not positive: {r}");
        assert!(
            r["ceiling_gbps"].as_f64().unwrap() > 0.0,
            "ceiling not positive: {r}"
        );
        assert!(
            r["median_ms"].as_f64().unwrap() > 0.0,
            "time not positive: {r}"
        );
        let elements: u64 = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .product();
        assert!(elements <= 16384, "--max-elements not honoured: {r}");
        if r["path"] == "gpu-kernel" {
            let timing = r["timing"].as_str().unwrap();
            assert!(
                timing == "timestamps" || timing == "wall-clock",
                "kernel timing {timing}: {r}"
            );
            let pass = r["pass_bytes"].as_u64().expect("pass_bytes");
            assert!(pass >= r["bytes"].as_u64().unwrap(), "{r}");
            assert!(r["percent_of_pass_bound"].as_f64().unwrap() > 0.0, "{r}");
        } else {
            assert_eq!(r["timing"], "wall-clock", "{r}");
            assert!(r.get("pass_bytes").is_none(), "{r}");
        }
    }
    for loss in ["mse", "softmax-ce"] {
        for path in ["gpu-kernel", "gpu", "gpu-into", "cpu", "reference"] {
            assert!(
                records
                    .iter()
                    .any(|r| r["loss"] == loss && r["path"] == path),
                "no {path} record for {loss}: {json:#}"
            );
        }
    }
    // The kernel step and the whole call move the same minimum traffic.
    let bytes = |path: &str| {
        records
            .iter()
            .find(|r| r["loss"] == "mse" && r["path"] == path)
            .map(|r| r["bytes"].as_u64().unwrap())
    };
    assert_eq!(bytes("gpu-kernel"), bytes("gpu"));
    assert_eq!(bytes("gpu"), bytes("gpu-into"));
    assert_eq!(bytes("gpu-kernel"), Some(12 * 16384));
    let svg = fs::read_to_string(d.join("P.svg")).expect("the plot is written");
    assert!(
        svg.starts_with("<svg"),
        "not an SVG: {}",
        &svg[..svg.len().min(80)]
    );
    for want in ["GPU: kernel step", "CPU: fast path", "copy kernel"] {
        assert!(svg.contains(want), "the plot lacks {want:?}");
    }
}

/// `--wall-clock` times the kernels by the host clock even where timestamps exist, and says so
/// on stdout and in the records.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_wall_clock_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let template = "bench --quick --wall-clock --losses mae --max-elements 4096 --repeats 1 \
                    --json {B.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, "bench --wall-clock");
    let text = stdout(&out);
    assert!(
        text.contains("kernel timing: wall-clock"),
        "stdout:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ceilings") && l.contains("(wall-clock,")),
        "copy ceiling method:\n{text}"
    );
    let json: Value = serde_json::from_str(&fs::read_to_string(d.join("B.json")).unwrap())
        .expect("B.json is JSON");
    let records = json.as_array().expect("a JSON array");
    assert_eq!(records.len(), 5, "records: {json:#}");
    let kernel = records
        .iter()
        .find(|r| r["path"] == "gpu-kernel")
        .expect("a gpu-kernel record");
    assert_eq!(kernel["timing"], "wall-clock", "{kernel}");
    assert!(kernel["median_ms"].as_f64().unwrap() > 0.0, "{kernel}");
}

/// `--dtype bf16` runs the kernel path on bf16 storage: its records say so and count 2 bytes
/// per element (half the f32 call's), while the other paths stay f32.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_dtype_bf16_halves_the_kernel_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let template = "bench --quick --dtype bf16 --losses mse --max-elements 4097 --repeats 1 \
                    --json {B.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, "bench --dtype bf16");
    assert!(stdout(&out).contains("stored as bf16"), "{}", stdout(&out));
    let json: Value = serde_json::from_str(&fs::read_to_string(d.join("B.json")).unwrap())
        .expect("B.json is JSON");
    let records = json.as_array().expect("a JSON array");
    let by_path = |p: &str| {
        records
            .iter()
            .find(|r| r["path"] == p)
            .unwrap_or_else(|| panic!("a {p} record: {json:#}"))
    };
    let (kernel, call) = (by_path("gpu-kernel"), by_path("gpu"));
    assert_eq!(kernel["dtype"], "bf16", "{kernel}");
    assert_eq!(call["dtype"], "f32", "{call}");
    assert_eq!(kernel["elements"], 4097);
    assert_eq!(kernel["bytes"], 6 * 4097, "{kernel}");
    assert_eq!(call["bytes"], 12 * 4097, "{call}");
}

/// An unknown `--dtype` is bad input (exit 2).
#[test]
fn bench_unknown_dtype_is_bad_input() {
    let out = run(&["bench", "--quick", "--dtype", "f8"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("f8"), "stderr:\n{}", stderr(&out));
}

/// An unknown loss name is bad input (exit 2), reported before any device is touched.
#[test]
fn bench_unknown_loss_is_bad_input() {
    let out = run(&["bench", "--quick", "--losses", "nope"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "stderr:\n{}", stderr(&out));
}

/// `bench --losses NAME:OPTION=VALUE`: each variant timed and named with its options, beside
/// the plain loss; `--lm` runs its six variants over its two row shapes (rows capped here).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_variants_with_options() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let labels = |file: &str| -> Vec<(String, Vec<u64>)> {
        let json: Value =
            serde_json::from_str(&fs::read_to_string(d.join(file)).unwrap()).expect("JSON");
        let mut v: Vec<(String, Vec<u64>)> = json
            .as_array()
            .expect("a JSON array")
            .iter()
            .map(|r| {
                let shape = r["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap());
                (r["loss"].as_str().unwrap().to_string(), shape.collect())
            })
            .collect();
        v.dedup();
        v
    };
    let template = "bench --quick --losses softmax-ce:softcap=30:z-loss=1e-4,softmax-ce,\
                    softmax-ce:lse:softcap=5 --max-elements 16384 --repeats 1 --json {B.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, template);
    let got = labels("B.json");
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "softmax-ce softcap=30 z-loss=1e-4",
            "softmax-ce",
            "softmax-ce lse softcap=5"
        ]
    );
    assert!(stdout(&out).contains("softmax-ce softcap=30 z-loss=1e-4"));

    let template = "bench --lm --max-elements 40000 --repeats 1 --json {L.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, template);
    let got = labels("L.json");
    let want: Vec<(String, Vec<u64>)> = [
        "softmax-ce",
        "softmax-ce label-smoothing=0.1",
        "softmax-ce z-loss=1e-4",
        "softmax-ce softcap=30",
        "softmax-ce lse",
        "distill temperature=2",
        "jsd beta=0.5",
    ]
    .iter()
    .flat_map(|n| {
        [
            (n.to_string(), vec![1, 32000]),
            (n.to_string(), vec![1, 128_256]),
        ]
    })
    .collect();
    assert_eq!(got, want);
}

/// Bad `--losses` variants are bad input (exit 2) with one line naming what is wrong, before
/// any device is touched: an unknown option, one of another loss, a value that is not a
/// number or that the loss refuses, a missing `=`, an option given twice, `lse` of a loss
/// without one or given twice.
#[test]
fn bench_bad_variants_are_bad_input() {
    for (spec, needle) in [
        ("softmax-ce:nope=1", "no option `nope`"),
        ("mse:softcap=30", "mse has no option `softcap`"),
        ("softmax-ce:softcap=abc", "not a number"),
        ("softmax-ce:softcap=-1", "soft cap"),
        ("softmax-ce:ignore-index=0.5", "not an integer"),
        ("softmax-ce:softcap", "OPTION=VALUE"),
        ("softmax-ce:softcap=1:softcap=2", "twice"),
        ("nope:softcap=1", "no loss named `nope`"),
        ("mse:lse", "mse has none"),
        ("softmax-ce:lse:lse", "lse is given twice"),
    ] {
        let out = run(&["bench", "--quick", "--losses", spec]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{spec}: stderr:\n{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(needle),
            "{spec}: stderr:\n{}",
            stderr(&out)
        );
    }
}

/// An output file in a missing directory is bad input (exit 2), found before any work.
#[test]
fn bench_output_directory_missing_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(&argv(d, "bench --quick --json {no-such-dir/B.json}", &[]));
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not exist"),
        "stderr:\n{}",
        stderr(&out)
    );
}

/// `--sizes` and `--rows` replace the default sweep: exactly the shapes asked for, in order,
/// odd sizes and a row length that is not a multiple of the workgroup included; the GPU
/// call's record carries its agreement with the f64 reference, and stdout the worst of it.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_sizes_and_rows_replace_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let template = "bench --losses mse,cosine --sizes 257,1000 --rows 3x7,2X300 --repeats 1 \
                    --json {B.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, "bench --sizes --rows");
    let text = stdout(&out);
    assert!(
        text.contains("check: the GPU call's value and gradient against the f64 reference"),
        "stdout:\n{text}"
    );
    let json: Value = serde_json::from_str(&fs::read_to_string(d.join("B.json")).unwrap())
        .expect("B.json is JSON");
    let records = json.as_array().expect("a JSON array");
    let shapes = |loss: &str| -> Vec<Vec<u64>> {
        records
            .iter()
            .filter(|r| r["loss"] == loss && r["path"] == "gpu-kernel")
            .map(|r| {
                r["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect()
    };
    assert_eq!(shapes("mse"), vec![vec![257], vec![1000]], "{json:#}");
    assert_eq!(shapes("cosine"), vec![vec![3, 7], vec![2, 300]], "{json:#}");
    for r in records {
        let checked = r.get("value_rel_err").is_some() && r.get("grad_max_err").is_some();
        assert_eq!(
            checked,
            r["path"] == "gpu",
            "only the GPU call is checked: {r}"
        );
        if checked {
            // f32 sums of at most 1000 terms against f64: far inside the bench's 1e-3 flag.
            assert!(r["value_rel_err"].as_f64().unwrap() < 1e-5, "{r}");
            assert!(r["grad_max_err"].as_f64().unwrap() < 1e-5, "{r}");
        }
    }
}

/// Malformed `--rows` and `--sizes` are bad input (exit 2), each with its reason, before any
/// device is touched.
#[test]
fn bench_bad_sizes_and_rows_are_bad_input() {
    for (flag, value, want) in [
        ("--rows", "4096", "no `x`"),
        ("--rows", "0x5", "a dimension is 0"),
        ("--rows", "4x", "not a row shape"),
        ("--rows", "axb", "not a row shape"),
        ("--sizes", "0", "at least 1 element"),
        ("--sizes", "2^20", "not an element count"),
    ] {
        let out = run(&["bench", flag, value]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: stderr:\n{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(want),
            "{flag} {value}: stderr lacks {want:?}:\n{}",
            stderr(&out)
        );
    }
}

/// The hidden tuning flag `--unroll` forces the kernels' main-loop shape: either runs, and
/// the GPU call still agrees with the reference (the check line has no warning); anything but
/// a boolean is bad input.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_unroll_flag_runs_both_shapes() {
    for value in ["true", "false"] {
        let out = run(&[
            "bench",
            "--unroll",
            value,
            "--losses",
            "bce,softmax-ce",
            "--sizes",
            "70001",
            "--rows",
            "3x30001",
            "--repeats",
            "1",
        ]);
        assert_success(&out, &format!("bench --unroll {value}"));
        assert!(
            !stderr(&out).contains("disagree"),
            "--unroll {value}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).contains("check: "), "{}", stdout(&out));
    }
    let out = run(&["bench", "--unroll", "maybe"]);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// 10. Flags: PyTorch aliases, bool and uint8 targets, --repeats, --help
// ---------------------------------------------------------------------------------------------

/// The aliases the CLI must take, PyTorch's functional names, and the losses they name.
const ALIASES: [(&str, &str); 5] = [
    ("cross-entropy", "softmax-ce"),
    ("l1", "mae"),
    ("bce-logits", "bce-with-logits"),
    ("binary-cross-entropy", "bce"),
    ("binary-cross-entropy-with-logits", "bce-with-logits"),
];

/// Runs `compute --json` with `template` (`argv`, in `d`) and `--grad-out {grad}`; returns the
/// JSON and the gradient file's bytes.
fn json_and_grad(d: &Path, template: &str, grad: &str) -> (Value, Vec<u8>) {
    let j = compute_json(d, &format!("{template} --grad-out {{{grad}}}"), &[]);
    let bytes = fs::read(d.join(grad)).expect("the gradient was written");
    (j, bytes)
}

/// Two runs gave the same bits: the JSON objects (but the gradient's path) and the gradient
/// files, byte for byte.
fn assert_same_bits(a: &(Value, Vec<u8>), b: &(Value, Vec<u8>), what: &str) {
    let strip = |j: &Value| {
        let mut j = j.clone();
        j["grad_out"] = Value::Null;
        j
    };
    assert_eq!(strip(&a.0), strip(&b.0), "{what}: JSON");
    assert!(a.0["value"].is_number(), "{what}: no value: {}", a.0);
    assert!(a.1 == b.1, "{what}: the gradients differ");
}

/// The registry has every alias of [`ALIASES`], on the loss it names, and no name twice.
#[test]
fn registry_aliases() {
    use wgpu_loss::losses::LossInfo;
    for (alias, name) in ALIASES {
        let info = LossInfo::named(name).unwrap_or_else(|| panic!("no loss {name}"));
        assert!(info.aliases().contains(&alias), "{name} lacks {alias}");
        assert_eq!(LossInfo::named(alias).map(|i| i.name()), Some(name));
    }
    let mut all: Vec<&str> = LossInfo::all()
        .flat_map(|i| std::iter::once(i.name()).chain(i.aliases().iter().copied()))
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a name or alias twice: {all:?}");
}

/// Every alias of the registry gives the bits of its loss's name, and the JSON and the text
/// output name the loss by its name.
fn aliases_same_bits(device: &str) {
    use wgpu_loss::losses::LossInfo;
    let mut seen = 0;
    for (k, info) in LossInfo::all().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        batch_in(d, &info.default_loss(), 1100 + k as u64);
        let common = format!("--pred {{pred.npy}} --target {{target.npy}} --device {device}");
        let want = json_and_grad(d, &format!("--loss {} {common}", info.name()), "G.npy");
        assert_eq!(want.0["loss"], info.name());
        for alias in info.aliases() {
            let what = format!("--loss {alias} on the {device}");
            let got = json_and_grad(d, &format!("--loss {alias} {common}"), "A.npy");
            assert_same_bits(&got, &want, &what);
            let text = stdout(&run(&argv(
                d,
                &format!("compute --loss {alias} {common}"),
                &[],
            )));
            assert!(
                text.starts_with(&format!("{} (mean) over ", info.name())),
                "{what}: the text output names the loss: {text}"
            );
            seen += 1;
        }
    }
    assert!(seen >= ALIASES.len(), "{seen} aliases run");
}

checks! {
    cpu aliases_same_bits_cpu: aliases_same_bits("cpu");
    gpu aliases_same_bits_gpu: aliases_same_bits("gpu");
}

/// Aliases in `bench --losses`: one loss per name or alias, recorded by its name.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bench_losses_take_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let template = "bench --quick --losses l1,mae,cross-entropy --max-elements 4096 --repeats 1 \
                    --json {B.json}";
    let out = run(&argv(d, template, &[]));
    assert_success(&out, template);
    let json: Value = serde_json::from_str(&fs::read_to_string(d.join("B.json")).unwrap())
        .expect("B.json is JSON");
    let mut losses: Vec<&str> = json
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r["loss"].as_str().expect("a loss name"))
        .collect();
    losses.dedup();
    assert_eq!(losses, ["mae", "softmax-ce"], "{json:#}");
}

/// Bool and uint8 targets against the same values as f32: the same bits (value and gradient)
/// for the elementwise losses, and for the float targets of cce and cosine (softmax-ce takes
/// uint8 as class indices and refuses bool).
fn bool_and_u8_targets(device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = SHAPE.iter().product::<usize>();
    let mut rng = StdRng::seed_from_u64(1201);
    let bits: Vec<u8> = (0..n).map(|_| rng.random_range(0..2u8)).collect();
    let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    // One-hot rows, for the row-wise losses' probability targets.
    let onehot: Vec<u8> = (0..n)
        .map(|k| u8::from(k % SHAPE[1] == (k / SHAPE[1] * 7) % SHAPE[1]))
        .collect();
    let as_f32 =
        |v: &[u8]| ArrayD::from_shape_fn(IxDyn(&SHAPE), |i| f32::from(v[i[0] * SHAPE[1] + i[1]]));
    write_f32(d, "probs.npy", &uniform(&SHAPE, 0.01, 0.99, 1202));
    write_f32(d, "logits.npy", &uniform(&SHAPE, -4.0, 4.0, 1203));
    write_f32(d, "big.npy", &uniform(&SHAPE, -10.0, 300.0, 1204));
    for (name, v) in [("bits", &bits), ("bytes", &bytes), ("onehot", &onehot)] {
        write_f32(d, &format!("{name}-f32.npy"), &as_f32(v));
        write_raw(d, &format!("{name}-u8.npy"), "|u1", &SHAPE, v);
        if name != "bytes" {
            write_raw(d, &format!("{name}-bool.npy"), "|b1", &SHAPE, v);
        }
    }
    let cases = [
        ("bce", "probs", "bits"),
        ("bce-with-logits", "logits", "bits"),
        ("mse", "logits", "bits"),
        ("mse", "big", "bytes"),
        ("mae", "big", "bytes"),
        ("huber --delta 2", "big", "bytes"),
        ("smooth-l1", "big", "bytes"),
        ("cce", "probs", "onehot"),
        ("cosine", "logits", "onehot"),
    ];
    for (loss, pred, target) in cases {
        let run = |dtype: &str, grad: &str| {
            let t = format!(
                "--loss {loss} --pred {{{pred}.npy}} --target {{{target}-{dtype}.npy}} \
                 --device {device}"
            );
            json_and_grad(d, &t, grad)
        };
        let want = run("f32", "G-f32.npy");
        for dtype in ["u8", "bool"] {
            if target == "bytes" && dtype == "bool" {
                continue;
            }
            let got = run(dtype, &format!("G-{dtype}.npy"));
            assert_same_bits(&got, &want, &format!("{loss}, {dtype} targets, {device}"));
        }
    }
}

/// uint8 class indices for softmax-ce (with `--ignore-index`, and rows ignored): the bits of
/// the same classes as int64.
fn u8_class_indices(device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = ce_in(d, 1210, &SHAPE, &[(3, 7), (5, 7)], "i64");
    write_classes(d, "t-u8.npy", r.classes.as_ref().unwrap(), "u8");
    for options in ["", "--ignore-index 7 --z-loss 0.01"] {
        let t = |target: &str| {
            format!(
                "--loss softmax-ce {options} --pred {{pred.npy}} --target {{{target}}} \
                 --device {device}"
            )
        };
        let want = json_and_grad(d, &t("target.npy"), "G-i64.npy");
        let got = json_and_grad(d, &t("t-u8.npy"), "G-u8.npy");
        assert_same_bits(
            &got,
            &want,
            &format!("u8 classes {options:?} on the {device}"),
        );
        let classes = r.classes.as_ref().unwrap();
        let counted = if options.is_empty() {
            classes.len()
        } else {
            classes.iter().filter(|&&c| c != 7).count()
        };
        assert!(counted < classes.len() || options.is_empty());
        assert_eq!(got.0["counted"], counted, "{options:?}");
    }
}

checks! {
    cpu bool_and_u8_targets_cpu: bool_and_u8_targets("cpu");
    cpu bool_and_u8_targets_reference: bool_and_u8_targets("reference");
    gpu bool_and_u8_targets_gpu: bool_and_u8_targets("gpu");
    cpu u8_class_indices_cpu: u8_class_indices("cpu");
    gpu u8_class_indices_gpu: u8_class_indices("gpu");
}

/// A bool target with a byte other than 0 and 1 is refused, naming the element; a bool
/// target for softmax-ce is refused even shaped like the prediction (one-hot rows).
#[test]
fn bool_target_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    batch_in(d, &Loss::Bce, 1220);
    let mut v = vec![0u8; SHAPE.iter().product()];
    v[40] = 2;
    write_raw(d, "two.npy", "|b1", &SHAPE, &v);
    rejects(
        d,
        "cpu",
        "--loss bce --pred {pred.npy} --target {two.npy}",
        &["{two.npy}", "bool element 40 (in C order) is the byte 2"],
    );
    write_f32(d, "logits.npy", &uniform(&SHAPE, -3.0, 3.0, 1221));
    v[40] = 1;
    write_raw(d, "hot.npy", "|b1", &SHAPE, &v);
    for device in ["cpu", "reference", "gpu"] {
        if device == "gpu" && cfg!(skip_gpu_tests) {
            continue;
        }
        rejects(
            d,
            device,
            "--loss cross-entropy --pred {logits.npy} --target {hot.npy}",
            &[
                "{hot.npy}",
                "a bool target is 0/1 float targets",
                "--loss softmax-ce takes",
            ],
        );
    }
}

/// `--repeats` of the main job and of `bench`: 0 and 1000001 refused with exit 2 and the same
/// one line in each, before anything is printed; 1 and 1000000 accepted.
#[test]
fn repeats_same_rules_everywhere() {
    for value in ["0", "1000001"] {
        let mut messages = Vec::new();
        for pre in [&[][..], &["bench"][..], &["bench", "--quick"][..]] {
            let mut args: Vec<&str> = pre.to_vec();
            args.extend(["--repeats", value]);
            let out = run(&args);
            let what = args.join(" ");
            assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
            assert!(stdout(&out).is_empty(), "{what}: {}", stdout(&out));
            let err = stderr(&out);
            let lines: Vec<&str> = err.lines().filter(|l| l.contains("wgpu-loss")).collect();
            assert_eq!(lines.len(), 1, "{what}: one line: {err}");
            assert!(lines[0].contains("--repeats"), "{what}: {err}");
            messages.push(lines[0].to_string());
        }
        assert!(
            messages.windows(2).all(|w| w[0] == w[1]),
            "--repeats {value}: {messages:#?}"
        );
        let want = if value == "0" {
            "wgpu-loss: error: --repeats must be at least 1"
        } else {
            "wgpu-loss: error: --repeats 1000001: at most 1000000 (timed runs per loss and path)"
        };
        assert_eq!(messages[0], want);
    }
    for value in ["1", "1000000"] {
        let main = ["--elements", "64", "--rows", "2", "--classes", "8"];
        let bench = ["bench", "--quick", "--max-elements", "64"];
        for pre in [&main[..], &bench[..]] {
            let mut args = vec!["wgpu-loss"];
            args.extend(pre);
            args.extend(["--repeats", value]);
            let checked = wgpu_loss_cli::check_only(args.iter().copied())
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(checked.is_ok(), "{args:?}: refused");
        }
    }
}

/// `--help` of the program and of `compute` lists every loss of the registry: its name and
/// description on one line, then its aliases, then each option with its help and default.
#[test]
fn help_lists_every_loss_and_option() {
    use wgpu_loss::losses::LossInfo;
    for args in [&["--help"][..], &["-h"][..], &["compute", "--help"][..]] {
        let out = run(args);
        assert_success(&out, &args.join(" "));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.starts_with("Losses ("))
            .unwrap_or_else(|| panic!("{args:?}: no list of losses:\n{text}"));
        let infos: Vec<LossInfo> = LossInfo::all().collect();
        // Each loss's line, in the registry's order.
        let mut at = Vec::new();
        for info in &infos {
            let k = lines[start..]
                .iter()
                .position(|l| {
                    l.split_whitespace().next() == Some(info.name())
                        && l.trim_end().ends_with(info.about())
                })
                .unwrap_or_else(|| panic!("{args:?}: no line for {}:\n{text}", info.name()));
            at.push(start + k);
        }
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{args:?}: order {at:?}");
        at.push(lines.len());
        for (k, info) in infos.iter().enumerate() {
            let section = &lines[at[k] + 1..at[k + 1]];
            let aliases = section
                .iter()
                .find_map(|l| l.trim().strip_prefix("aliases: "))
                .map_or(Vec::new(), |a| a.split(", ").collect::<Vec<_>>());
            assert_eq!(
                aliases,
                info.aliases(),
                "{args:?}: {}'s aliases",
                info.name()
            );
            for o in info.options() {
                let flag = format!("--{}", o.name);
                // The default, as printed, read back.
                let default = |l: &str| -> Option<f64> {
                    let d = l.trim_end().strip_suffix(']')?.rsplit_once("[default: ")?.1;
                    if o.integer {
                        d.parse::<i64>().ok().map(|v| v as f64)
                    } else {
                        d.parse().ok()
                    }
                };
                assert!(
                    section.iter().any(|l| {
                        l.split_whitespace().next() == Some(flag.as_str())
                            && l.contains(o.help)
                            && default(l) == Some(o.default)
                    }),
                    "{args:?}: {} lacks {flag} (default {}):\n{}",
                    info.name(),
                    o.default,
                    section.join("\n")
                );
            }
            let options = section.iter().filter(|l| l.trim_start().starts_with("--"));
            assert_eq!(
                options.count(),
                info.options().len(),
                "{args:?}: {}",
                info.name()
            );
        }
    }
}
