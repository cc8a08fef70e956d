//! A training loop that never leaves the GPU: a two-layer MLP learns a synthetic
//! classification task by full-batch gradient descent, with the loss and its gradient from
//! wgpu-loss's softmax cross entropy recorded into the same command encoders as the model.
//! `cargo run --release --example training_loop`
//!
//! What it shows:
//! - **The GPU-resident API.** The example owns every buffer (inputs, weights, activations,
//!   logits, gradients, the loss value). `GpuContext::resident` plans the loss once;
//!   `ResidentLoss::record` adds it to the example's encoder between the forward pass and the
//!   backward pass: no upload, no submit, no map, no wait.
//! - **The model is the caller's own WGSL.** The forward and backward matrix products and the
//!   SGD update are compute shaders written below (`MLP_WGSL`), one invocation per output
//!   element, every loop bounded, every dispatch sized from the workgroup size.
//! - **Reading back only when wanted.** Ten steps are recorded per encoder and submitted
//!   together; the loss value is read back with a `ValueReader` every 50 steps for the loss
//!   curve, and the logits once at the end for the accuracy.
//! - **The same model on the CPU.** The first steps are run again on the CPU in f64, with the
//!   crate's reference (`wgpu_loss::reference::compute`) for the loss and its gradient, from
//!   the same initial weights; losses and weights must agree within a stated tolerance.
//!
//! The program exits non-zero if the CPU check fails, the loss does not at least halve, or
//! the training accuracy stays below `MIN_ACCURACY`.
//!
//! The model, for inputs `X` [N, D] and class indices `y` [N]:
//!
//! ```text
//! A      = relu(X W1 + b1)                  [N, H]    hidden activations
//! Z      = A W2 + b2                        [N, K]    logits
//! L      = mean_n softmax_cross_entropy(Z_n, y_n)
//! G      = ∂L/∂Z                            [N, K]    (from wgpu-loss, already divided by N)
//! ∂W2    = Aᵀ G,   ∂b2 = Σ_n G_n
//! Δ      = (G W2ᵀ) ⊙ [A > 0]                [N, H]
//! ∂W1    = Xᵀ Δ,   ∂b1 = Σ_n Δ_n
//! θ     ← θ − lr ∂θ                          for θ in (W1, b1, W2, b2)
//! ```
//!
//! Each bias is stored as the last row of its weight matrix: `w1` is [D + 1, H], `w2` is
//! [H + 1, K], so one SGD dispatch updates a layer's weights and bias together.

use std::error::Error;
use std::f64::consts::TAU;
use std::process::ExitCode;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;
use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentLoss, ResidentSpec, ValueReader};
use wgpu_loss::{ClassType, GpuContext, Loss, LossArgs, reference};

// ---------------------------------------------------------------------------------------------
// The task, the model and the schedule
// ---------------------------------------------------------------------------------------------

/// Training examples (the whole batch).
const N: usize = 2048;
/// Input features.
const D: usize = 8;
/// Hidden units.
const H: usize = 32;
/// Classes.
const K: usize = 4;
/// Each class is a mixture of this many Gaussian blobs, so the classes are not separable
/// by a linear model in general: the hidden layer earns its keep.
const BLOBS_PER_CLASS: usize = 2;
/// Blob centres are drawn from N(0, CENTRE_SPREAD²) per coordinate, points around them from
/// N(0, 1): centres of different blobs are about CENTRE_SPREAD·√(2D) = 6 standard deviations
/// apart, so blobs touch but rarely overlap.
const CENTRE_SPREAD: f64 = 1.5;
/// Seed of the data and of the initial weights.
const SEED: u64 = 4;

/// Gradient-descent steps (updates).
const STEPS: usize = 1000;
/// Learning rate.
const LR: f32 = 0.2;
/// Steps recorded into one command encoder before it is submitted.
const STEPS_PER_SUBMIT: usize = 10;
/// The loss is read back every this many steps (a multiple of `STEPS_PER_SUBMIT`).
const READ_EVERY: usize = 50;

/// Steps compared with the CPU model.
const CPU_STEPS: usize = 3;
/// Relative tolerance on each of the first losses. The GPU's logits are f32 sums of D + 1 and
/// then H + 1 terms, off by at most (D + H + 2)·2⁻²⁴ ≈ 2.5e-6 relative to the sums of the
/// terms' magnitudes, and the loss kernel adds ~1e-7: 1e-5 is above both.
const LOSS_RTOL: f64 = 1e-5;
/// Absolute tolerance on the weights (which are O(1)) after `CPU_STEPS` updates. A weight
/// gradient is an f32 sum over the N = 2048 examples, off by at most N·2⁻²⁴ ≈ 1.2e-4 times
/// the sum of its terms' magnitudes. Each row of the mean cross entropy's gradient has an L1
/// norm ≤ 2/N, so these sums are ≤ 2·max|A| ≈ 28 for `w2` and ≤ 2·max|x|·max|W2| ≈ 10 for
/// `w1`: three updates at lr = 0.2 could differ by 3·0.2·1.2e-4·28 ≈ 2e-3 at worst.
/// Rounding errors of random sign grow like √N instead, ≈ 5e-5 with the same magnitudes
/// (themselves bounds: most activations are far below the largest). We allow 1e-4.
///
/// A ReLU whose input is within rounding of 0 could switch on one side and not the other,
/// a larger difference; the CPU model reports how close to 0 its hidden inputs came.
const WEIGHT_ATOL: f64 = 1e-4;

/// The training accuracy the model must reach (97.85% measured with this seed on llvmpipe;
/// the blobs overlap a little, so 100% is out of reach).
const MIN_ACCURACY: f64 = 0.95;

/// Workgroup size of every kernel below, passed to the shader as the override `WG`.
const WG: u32 = 64;
/// llvmpipe silently stops a shader loop after 65 535 iterations; the longest loop here runs
/// over the N examples.
const MAX_LOOP_TRIPS: usize = 65_535;
const _: () =
    assert!(N < MAX_LOOP_TRIPS && D < MAX_LOOP_TRIPS && H < MAX_LOOP_TRIPS && K < MAX_LOOP_TRIPS);
const _: () =
    assert!(READ_EVERY.is_multiple_of(STEPS_PER_SUBMIT) && STEPS.is_multiple_of(READ_EVERY));

// ---------------------------------------------------------------------------------------------
// The model's kernels
// ---------------------------------------------------------------------------------------------

/// The forward and backward passes and the SGD update. Sizes are pipeline-overridable
/// constants set by the host when it builds the pipelines (`constants()`), so every loop has
/// a trip count fixed at pipeline creation. Each kernel has one invocation per output
/// element and guards the tail with `arrayLength` of its output.
const MLP_WGSL: &str = r#"
override WG: u32;         // workgroup size
override N: u32;          // examples
override D: u32;          // input features
override H: u32;          // hidden units
override K: u32;          // classes
override LR: f32;         // learning rate

@group(0) @binding(0) var<storage, read> x: array<f32>;              // inputs [N, D]
@group(0) @binding(1) var<storage, read> w1: array<f32>;             // [D + 1, H]: W1, then b1
@group(0) @binding(2) var<storage, read> w2: array<f32>;             // [H + 1, K]: W2, then b2
@group(0) @binding(3) var<storage, read_write> act: array<f32>;      // hidden activations A [N, H]
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;   // Z [N, K]
@group(0) @binding(5) var<storage, read> grad: array<f32>;           // G = ∂L/∂Z [N, K] (wgpu-loss)
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;    // Δ = ∂L/∂(X W1 + b1) [N, H]
@group(0) @binding(7) var<storage, read_write> gw1: array<f32>;      // ∂L/∂w1 [D + 1, H]
@group(0) @binding(8) var<storage, read_write> gw2: array<f32>;      // ∂L/∂w2 [H + 1, K]
@group(0) @binding(9) var<storage, read_write> param: array<f32>;    // SGD: a layer's w1 or w2
@group(0) @binding(10) var<storage, read> param_grad: array<f32>;    // SGD: its gradient

// A[n, h] = relu(b1[h] + Σ_d X[n, d] W1[d, h])
@compute @workgroup_size(WG)
fn hidden_forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&act)) { return; }
    let n = i / H;
    let h = i % H;
    var z = w1[D * H + h];
    for (var d = 0u; d < D; d++) {
        z += x[n * D + d] * w1[d * H + h];
    }
    act[i] = max(z, 0.0);
}

// Z[n, k] = b2[k] + Σ_h A[n, h] W2[h, k]
@compute @workgroup_size(WG)
fn logits_forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&logits)) { return; }
    let n = i / K;
    let k = i % K;
    var z = w2[H * K + k];
    for (var h = 0u; h < H; h++) {
        z += act[n * H + h] * w2[h * K + k];
    }
    logits[i] = z;
}

// Δ[n, h] = [A[n, h] > 0] Σ_k G[n, k] W2[h, k]   (relu' from the stored activation)
@compute @workgroup_size(WG)
fn hidden_backward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&delta)) { return; }
    let n = i / H;
    let h = i % H;
    var s = 0.0;
    if (act[i] > 0.0) {
        for (var k = 0u; k < K; k++) {
            s += grad[n * K + k] * w2[h * K + k];
        }
    }
    delta[i] = s;
}

// ∂w2[j, k] = Σ_n A[n, j] G[n, k] for j < H;  ∂b2[k] = Σ_n G[n, k] (row j = H).
// `select` evaluates both of its arms, so the index into `act` is clamped.
@compute @workgroup_size(WG)
fn w2_grad(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&gw2)) { return; }
    let j = i / K;
    let k = i % K;
    var s = 0.0;
    for (var n = 0u; n < N; n++) {
        let a = select(1.0, act[n * H + min(j, H - 1u)], j < H);
        s += a * grad[n * K + k];
    }
    gw2[i] = s;
}

// ∂w1[j, h] = Σ_n X[n, j] Δ[n, h] for j < D;  ∂b1[h] = Σ_n Δ[n, h] (row j = D)
// (the index into `x` clamped likewise).
@compute @workgroup_size(WG)
fn w1_grad(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&gw1)) { return; }
    let j = i / H;
    let h = i % H;
    var s = 0.0;
    for (var n = 0u; n < N; n++) {
        let xj = select(1.0, x[n * D + min(j, D - 1u)], j < D);
        s += xj * delta[n * H + h];
    }
    gw1[i] = s;
}

// θ ← θ − lr ∂θ
@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&param)) { return; }
    param[i] = param[i] - LR * param_grad[i];
}
"#;

/// The values of the shader's overrides.
fn constants() -> [(&'static str, f64); 6] {
    [
        ("WG", f64::from(WG)),
        ("N", N as f64),
        ("D", D as f64),
        ("H", H as f64),
        ("K", K as f64),
        ("LR", f64::from(LR)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Data and initial weights
// ---------------------------------------------------------------------------------------------

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // in (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// N points [N, D] (row-major) and their classes: point n belongs to class n mod K and is
/// drawn around one of its class's blob centres.
fn blobs(rng: &mut StdRng) -> (Vec<f32>, Vec<i32>) {
    let centres: Vec<f64> = (0..K * BLOBS_PER_CLASS * D)
        .map(|_| CENTRE_SPREAD * normal(rng))
        .collect();
    let mut x = Vec::with_capacity(N * D);
    let mut y = Vec::with_capacity(N);
    for n in 0..N {
        let class = n % K;
        let blob = class * BLOBS_PER_CLASS + rng.random_range(0..BLOBS_PER_CLASS);
        let centre = &centres[blob * D..(blob + 1) * D];
        x.extend(centre.iter().map(|&c| (c + normal(rng)) as f32));
        y.push(class as i32);
    }
    (x, y)
}

/// He-initialised weights [fan_in + 1, fan_out], the bias row last and zero.
fn he_init(rng: &mut StdRng, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let scale = (2.0 / fan_in as f64).sqrt();
    let mut w: Vec<f32> = (0..fan_in * fan_out)
        .map(|_| (scale * normal(rng)) as f32)
        .collect();
    w.extend(std::iter::repeat_n(0.0, fan_out));
    w
}

// ---------------------------------------------------------------------------------------------
// The model on the GPU: the example's buffers, pipelines and bind groups
// ---------------------------------------------------------------------------------------------

/// Usage of every buffer here: bound as storage, read back, written at creation.
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// The example's buffers: everything the loop touches lives here, on the GPU.
struct Buffers {
    x: wgpu::Buffer,
    classes: wgpu::Buffer,
    w1: wgpu::Buffer,
    w2: wgpu::Buffer,
    act: wgpu::Buffer,
    logits: wgpu::Buffer,
    grad: wgpu::Buffer,
    value: wgpu::Buffer,
    delta: wgpu::Buffer,
    gw1: wgpu::Buffer,
    gw2: wgpu::Buffer,
}

impl Buffers {
    fn new(device: &wgpu::Device, x: &[f32], classes: &[i32], w1: &[f32], w2: &[f32]) -> Self {
        let init = |label: &str, contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: USAGE,
            })
        };
        let zeros = |label: &str, elems: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (elems * 4) as u64,
                usage: USAGE,
                mapped_at_creation: false,
            })
        };
        Buffers {
            x: init("x [N, D]", bytemuck::cast_slice(x)),
            classes: init("classes [N] i32", bytemuck::cast_slice(classes)),
            w1: init("w1 [D + 1, H]", bytemuck::cast_slice(w1)),
            w2: init("w2 [H + 1, K]", bytemuck::cast_slice(w2)),
            act: zeros("act [N, H]", N * H),
            logits: zeros("logits [N, K]", N * K),
            grad: zeros("grad [N, K]", N * K),
            value: zeros("loss value [1]", 1),
            delta: zeros("delta [N, H]", N * H),
            gw1: zeros("gw1 [D + 1, H]", (D + 1) * H),
            gw2: zeros("gw2 [H + 1, K]", (H + 1) * K),
        }
    }
}

/// One kernel launch, bound once and recorded every step.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: u32,
}

/// The MLP's kernels, ready to record: the forward pass (hidden layer, logits) and the
/// backward pass (Δ, both weight gradients, both SGD updates).
struct GpuMlp {
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
}

impl GpuMlp {
    fn new(device: &wgpu::Device, b: &Buffers) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mlp"),
            source: wgpu::ShaderSource::Wgsl(MLP_WGSL.into()),
        });
        let constants = constants();
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None, // derived from the bindings the entry point uses
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            })
        };
        // One invocation per element of the output, `elements.div_ceil(WG)` workgroups.
        let dispatch = |label: &str,
                        pipeline: &wgpu::ComputePipeline,
                        bindings: &[(u32, &wgpu::Buffer)],
                        elements: usize| {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = bindings
                .iter()
                .map(|&(binding, buffer)| wgpu::BindGroupEntry {
                    binding,
                    resource: buffer.as_entire_binding(),
                })
                .collect();
            Dispatch {
                pipeline: pipeline.clone(),
                bind_group: device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                }),
                workgroups: u32::try_from(elements.div_ceil(WG as usize)).expect("few workgroups"),
            }
        };
        let sgd = pipeline("sgd");
        GpuMlp {
            forward: vec![
                dispatch(
                    "hidden_forward",
                    &pipeline("hidden_forward"),
                    &[(0, &b.x), (1, &b.w1), (3, &b.act)],
                    N * H,
                ),
                dispatch(
                    "logits_forward",
                    &pipeline("logits_forward"),
                    &[(2, &b.w2), (3, &b.act), (4, &b.logits)],
                    N * K,
                ),
            ],
            backward: vec![
                dispatch(
                    "hidden_backward",
                    &pipeline("hidden_backward"),
                    &[(2, &b.w2), (3, &b.act), (5, &b.grad), (6, &b.delta)],
                    N * H,
                ),
                dispatch(
                    "w2_grad",
                    &pipeline("w2_grad"),
                    &[(3, &b.act), (5, &b.grad), (8, &b.gw2)],
                    (H + 1) * K,
                ),
                dispatch(
                    "w1_grad",
                    &pipeline("w1_grad"),
                    &[(0, &b.x), (6, &b.delta), (7, &b.gw1)],
                    (D + 1) * H,
                ),
                dispatch("sgd w1", &sgd, &[(9, &b.w1), (10, &b.gw1)], (D + 1) * H),
                dispatch("sgd w2", &sgd, &[(9, &b.w2), (10, &b.gw2)], (H + 1) * K),
            ],
        }
    }

    /// Records `dispatches` as one compute pass (wgpu orders the dispatches inside it).
    fn record_pass(encoder: &mut wgpu::CommandEncoder, label: &str, dispatches: &[Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        for d in dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups, 1, 1);
        }
    }
}

/// Records one training step into `encoder`: forward, loss (value and ∂L/∂Z from wgpu-loss),
/// and, when `update`, backward and SGD. Nothing is submitted.
fn record_step(
    ctx: &GpuContext,
    mlp: &GpuMlp,
    loss: &mut ResidentLoss,
    b: &Buffers,
    encoder: &mut wgpu::CommandEncoder,
    update: bool,
) -> wgpu_loss::Result<()> {
    GpuMlp::record_pass(encoder, "forward", &mlp.forward);
    let bufs = ResidentBuffers::new(&b.logits, &b.classes, &b.value).grad(&b.grad);
    loss.record(ctx, encoder, &bufs)?;
    if update {
        GpuMlp::record_pass(encoder, "backward", &mlp.backward);
    }
    Ok(())
}

/// Reads `len` f32 values of `buffer` (a one-off reader: used outside the loop only).
fn read_all(ctx: &GpuContext, buffer: &wgpu::Buffer, len: usize) -> wgpu_loss::Result<Vec<f32>> {
    ValueReader::new(ctx.device(), len).read_blocking(
        ctx.device(),
        ctx.queue(),
        GpuArray::from(buffer),
    )
}

// ---------------------------------------------------------------------------------------------
// The same model on the CPU, in f64
// ---------------------------------------------------------------------------------------------

/// The MLP with f64 weights, the same layout as on the GPU.
struct CpuMlp {
    w1: Vec<f64>,
    w2: Vec<f64>,
}

impl CpuMlp {
    /// One step: returns the loss before the update and the smallest |input| of a ReLU. The
    /// loss and ∂L/∂Z come from the crate's f64 reference, which takes f32 logits (the GPU's
    /// logits are f32 too).
    fn step(&mut self, x: &[f32], classes: &ArrayD<i32>) -> wgpu_loss::Result<(f64, f64)> {
        let (w1, w2) = (&self.w1, &self.w2);
        let xf = |n: usize, j: usize| if j < D { f64::from(x[n * D + j]) } else { 1.0 };
        let mut act = vec![0.0f64; N * H];
        let mut nearest_kink = f64::INFINITY;
        for n in 0..N {
            for h in 0..H {
                let z: f64 = (0..=D).map(|j| xf(n, j) * w1[j * H + h]).sum();
                act[n * H + h] = z.max(0.0);
                nearest_kink = nearest_kink.min(z.abs());
            }
        }
        let af = |n: usize, j: usize| if j < H { act[n * H + j] } else { 1.0 };
        let logits = ArrayD::from_shape_fn(IxDyn(&[N, K]), |i| {
            let (n, k) = (i[0], i[1]);
            (0..=H).map(|j| af(n, j) * w2[j * K + k]).sum::<f64>() as f32
        });
        let out = reference::compute(
            &Loss::softmax_cross_entropy().build()?,
            &LossArgs::new(logits.view(), classes.view()),
        )?;
        let g = out.grad.expect("the gradient was asked for");
        let g = g.as_slice().expect("standard layout");

        let gw2: Vec<f64> = (0..(H + 1) * K)
            .map(|i| (0..N).map(|n| af(n, i / K) * g[n * K + i % K]).sum())
            .collect();
        let delta: Vec<f64> = (0..N * H)
            .map(|i| {
                let (n, h) = (i / H, i % H);
                if act[i] > 0.0 {
                    (0..K).map(|k| g[n * K + k] * w2[h * K + k]).sum()
                } else {
                    0.0
                }
            })
            .collect();
        let gw1: Vec<f64> = (0..(D + 1) * H)
            .map(|i| (0..N).map(|n| xf(n, i / H) * delta[n * H + i % H]).sum())
            .collect();

        let lr = f64::from(LR);
        self.w1.iter_mut().zip(&gw1).for_each(|(w, g)| *w -= lr * g);
        self.w2.iter_mut().zip(&gw2).for_each(|(w, g)| *w -= lr * g);
        Ok((out.value.expect("a mean"), nearest_kink))
    }
}

/// The index of the largest value (the first of equals).
fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best })
}

/// The largest |a − b|.
fn max_abs_diff(gpu: &[f32], cpu: &[f64]) -> f64 {
    gpu.iter()
        .zip(cpu)
        .fold(0.0f64, |m, (&a, &b)| m.max((f64::from(a) - b).abs()))
}

// ---------------------------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("training_loop: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter_summary());
    let device = ctx.device();

    // The task and the initial weights, seeded.
    let mut rng = StdRng::seed_from_u64(SEED);
    let (x, y) = blobs(&mut rng);
    let w1 = he_init(&mut rng, D, H);
    let w2 = he_init(&mut rng, H, K);
    println!(
        "task: {N} points in {D} dimensions, {K} classes of {BLOBS_PER_CLASS} Gaussian blobs each; \
         model: {D} -> {H} (relu) -> {K}, full-batch gradient descent, lr {LR}"
    );

    // Buffers, kernels and the loss, all made once.
    let bufs = Buffers::new(device, &x, &y, &w1, &w2);
    let mlp = GpuMlp::new(device, &bufs);
    let mut loss = ctx.resident(
        &Loss::softmax_cross_entropy().build()?,
        ResidentSpec::new(&[N, K]).classes(ClassType::I32),
    )?;
    let reader = ValueReader::new(device, 1);
    let read_loss = || -> wgpu_loss::Result<f32> {
        Ok(reader.read_blocking(device, ctx.queue(), GpuArray::from(&bufs.value))?[0])
    };
    let new_encoder = || {
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("training steps"),
        })
    };

    // --- The first steps, one submission each, checked against the CPU --------------------
    let mut curve: Vec<(usize, f32)> = Vec::new();
    for step in 0..CPU_STEPS {
        let mut encoder = new_encoder();
        record_step(&ctx, &mlp, &mut loss, &bufs, &mut encoder, true)?;
        ctx.queue().submit([encoder.finish()]);
        curve.push((step, read_loss()?));
    }
    let gpu_w1 = read_all(&ctx, &bufs.w1, w1.len())?;
    let gpu_w2 = read_all(&ctx, &bufs.w2, w2.len())?;

    let mut cpu = CpuMlp {
        w1: w1.iter().map(|&v| f64::from(v)).collect(),
        w2: w2.iter().map(|&v| f64::from(v)).collect(),
    };
    let classes = ArrayD::from_shape_vec(IxDyn(&[N]), y.clone())?;
    println!(
        "first {CPU_STEPS} steps against the same model on the CPU (f64, wgpu_loss::reference):"
    );
    let mut worst_loss_rel = 0.0f64;
    let mut nearest_kink = f64::INFINITY;
    for &(step, gpu_loss) in &curve {
        let (cpu_loss, kink) = cpu.step(&x, &classes)?;
        nearest_kink = nearest_kink.min(kink);
        let rel = (f64::from(gpu_loss) - cpu_loss).abs() / cpu_loss.abs();
        worst_loss_rel = worst_loss_rel.max(rel);
        println!("  step {step}: loss GPU {gpu_loss:.7} CPU {cpu_loss:.7} (rel diff {rel:.1e})");
    }
    let weight_diff = max_abs_diff(&gpu_w1, &cpu.w1).max(max_abs_diff(&gpu_w2, &cpu.w2));
    println!(
        "  weights after {CPU_STEPS} updates: max |GPU - CPU| = {weight_diff:.1e} (tolerance \
         {WEIGHT_ATOL:.0e}); the ReLU inputs came within {nearest_kink:.1e} of 0"
    );
    if worst_loss_rel > LOSS_RTOL {
        return Err(format!(
            "the GPU's first losses differ from the CPU's by {worst_loss_rel:.1e} > {LOSS_RTOL:.0e}"
        )
        .into());
    }
    if weight_diff > WEIGHT_ATOL {
        return Err(format!(
            "the GPU's weights after {CPU_STEPS} steps differ from the CPU's by {weight_diff:.1e} \
             > {WEIGHT_ATOL:.0e} (a ReLU input came within {nearest_kink:.1e} of 0)"
        )
        .into());
    }

    // --- Training: STEPS_PER_SUBMIT steps per encoder, the loss read every READ_EVERY -----
    // Step s records the loss of the weights after s updates, then (for s < STEPS) the
    // update; the last one only evaluates, so its logits match the final loss.
    println!("loss curve (step: loss of the weights after that many updates):");
    for &(step, l) in &curve {
        println!("  {step:>5}: {l:.6}");
    }
    let reads_before = reader.reads();
    let allocations = loss.allocations(); // the loss's GPU objects, all made by now
    let start = Instant::now();
    let mut encoder = new_encoder();
    for step in CPU_STEPS..=STEPS {
        record_step(&ctx, &mlp, &mut loss, &bufs, &mut encoder, step < STEPS)?;
        if step % STEPS_PER_SUBMIT == 0 || step == STEPS {
            let full = std::mem::replace(&mut encoder, new_encoder());
            ctx.queue().submit([full.finish()]);
        }
        if step % READ_EVERY == 0 {
            let l = read_loss()?;
            println!("  {step:>5}: {l:.6}");
            curve.push((step, l));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if loss.allocations() != allocations {
        return Err(format!(
            "the loss allocated during the loop: {allocations} -> {} GPU objects",
            loss.allocations()
        )
        .into());
    }
    let reads = reader.reads() - reads_before;
    println!(
        "{} steps in {seconds:.2} s ({:.0} steps/s), the loss read back {reads} times, \
         nothing allocated by the loss ({allocations} GPU objects, all from before the loop)",
        STEPS - CPU_STEPS,
        (STEPS - CPU_STEPS) as f64 / seconds
    );

    // --- Evaluation: the final logits, read back once --------------------------------------
    let status = loss.status_blocking(&ctx)?;
    if status.class_out_of_range.is_some() || status.counted != N {
        return Err(format!("the loss reports bad class indices: {status:?}").into());
    }
    let logits = read_all(&ctx, &bufs.logits, N * K)?;
    let correct = logits
        .chunks_exact(K)
        .zip(&y)
        .filter(|&(row, &class)| argmax(row) == class as usize)
        .count();
    let accuracy = correct as f64 / N as f64;
    let (first, last) = (curve[0].1, curve[curve.len() - 1].1);
    println!(
        "final loss {last:.6} (from {first:.6}); training accuracy {:.2}% ({correct}/{N}), \
         required {:.0}%",
        100.0 * accuracy,
        100.0 * MIN_ACCURACY
    );
    let halved = last < 0.5 * first; // false for NaN
    if !halved {
        return Err(format!("the loss did not halve: {first} -> {last}").into());
    }
    if accuracy < MIN_ACCURACY {
        return Err(format!(
            "training accuracy {:.2}% is below {:.0}%",
            100.0 * accuracy,
            100.0 * MIN_ACCURACY
        )
        .into());
    }
    println!("ok");
    Ok(())
}
