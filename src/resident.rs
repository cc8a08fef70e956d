//! GPU-resident losses: record a loss into the caller's [`wgpu::CommandEncoder`] over the
//! caller's buffers, for a training loop that never leaves the GPU.
//!
//! [`GpuContext::resident`] plans a loss once for a shape and its options, building its
//! pipelines and scratch buffers (partial sums, scales). [`ResidentLoss::record`] then records
//! one step: no upload, no submit, no map, no wait. Bind groups are built on the first step
//! with a set of buffers and reused while the same buffers come back, so a loop of a million
//! steps allocates nothing after its first ([`ResidentLoss::allocations`] counts). The loss
//! value stays in the caller's buffer; [`ValueReader`] reads it back when wanted (every K
//! steps), asynchronously or blocking.
//!
//! Every loss is covered, on f32, f16 or bf16 buffers ([`ResidentSpec::dtype`]; class indices
//! as i32, i64 or u32, [`ResidentSpec::classes`]), each array bound from its offset, so an input must fit in one storage binding (the
//! host path's chunking does not apply here). 16-bit arrays are packed two elements to a word
//! ([`Dtype`]); the kernels compute in f32 and round the gradient once when they store it.
//!
//! ```no_run
//! use wgpu_loss::resident::{GpuArray, ResidentBuffers, ResidentSpec, ValueReader};
//! use wgpu_loss::{ClassType, GpuContext, Loss};
//!
//! # fn buffers(ctx: &GpuContext) -> (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer, wgpu::Buffer) { unimplemented!() }
//! let ctx = GpuContext::new()?;                 // or GpuContext::from_device(device, queue, ..)
//! // Logits [64, 10] f32, class indices [64] i32, gradient [64, 10] f32, loss value [1] f32:
//! // the caller's STORAGE buffers.
//! let (logits, classes, grad, value) = buffers(&ctx);
//! let spec = ResidentSpec::new(&[64, 10]).classes(ClassType::I32);
//! let mut loss = ctx.resident(&Loss::softmax_cross_entropy().build()?, spec)?;
//! let reader = ValueReader::new(ctx.device(), 1);
//! for step in 0..1000 {
//!     let mut encoder = ctx.device().create_command_encoder(&Default::default());
//!     // ... the forward pass writes `logits` ...
//!     let bufs = ResidentBuffers::new(&logits, &classes, &value).grad(&grad);
//!     loss.record(&ctx, &mut encoder, &bufs)?;
//!     // ... the backward pass reads `grad` ...
//!     ctx.queue().submit([encoder.finish()]);
//!     if step % 100 == 0 {
//!         let v = reader.read_blocking(ctx.device(), ctx.queue(), GpuArray::from(&value))?;
//!         println!("step {step}: loss {}", v[0]);
//!     }
//! }
//! # Ok::<(), wgpu_loss::Error>(())
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::kernels::elementwise::{BroadcastPlan, EwPlan, EwSpec};
use crate::kernels::plan::{ArrayBufs, Plan};
use crate::kernels::rows::{RowPlan, RowSpec};
use crate::kernels::staging::{
    Bound, Dispatch, Scratch, ScratchRefs, bind_group, dispatch_into, first_row,
};
use crate::kernels::{ClassType, Dtype, Io, Kernel};
use crate::loss::{Loss, Reduction, fixed_divisor};

/// An array in a caller's buffer, starting at byte `offset`: 32-bit elements, or 16-bit ones
/// packed two to a word (see [`Dtype`]).
#[derive(Clone, Copy, Debug)]
pub struct GpuArray<'a> {
    /// The buffer (needs `STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of element 0; a multiple of the device's
    /// `min_storage_buffer_offset_alignment`.
    pub offset: u64,
}

impl<'a> GpuArray<'a> {
    /// The array starting at byte `offset` of `buffer`.
    pub fn at(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        GpuArray { buffer, offset }
    }
}

impl<'a> From<&'a wgpu::Buffer> for GpuArray<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        GpuArray { buffer, offset: 0 }
    }
}

/// The upstream gradient of a resident loss.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum ResidentUpstream {
    /// `g = 1`.
    #[default]
    Ones,
    /// A scalar `g`, fixed when the loss is planned.
    Scalar(f32),
    /// One `g_r` per row from a GPU buffer ([`ResidentBuffers::upstream`]); only with
    /// [`Reduction::None`].
    Buffer,
}

/// The shape and options of a resident loss: what stays the same from step to step.
///
/// # Shapes
/// `shape` is the prediction's, `[..., C]` (rows = the leading dimensions). Targets are of the
/// same shape and storage as the prediction, or with [`ResidentSpec::classes`] class indices
/// (i32, i64 or u32, as planned) shaped like the rows.
///
/// # Storage
/// Prediction and dense target are f32 unless [`ResidentSpec::dtype`] says f16 or bf16; the
/// gradient is stored like them, or as f32 with [`ResidentSpec::grad_dtype`]. 16-bit arrays
/// are packed two elements to a word, so `n` elements take [`Dtype::bytes`]`(n)` bytes.
/// Weights, `pos_weight`, upstream gradients and the output are always f32.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResidentSpec {
    /// The prediction's shape.
    pub shape: Vec<usize>,
    /// Class-index targets, and their integer type, instead of float targets.
    pub classes: Option<ClassType>,
    /// Length of the weight, if one is bound: class weights `[C]` (softmax cross entropy), or
    /// a per-element weight broadcast from a trailing part of the shape (BCE losses).
    pub weight: Option<usize>,
    /// Length of `pos_weight` (BCE with logits), a trailing part of the shape, if bound.
    pub pos_weight: Option<usize>,
    /// The reduction (default `Mean`).
    pub reduction: Reduction,
    /// The upstream gradient (default ones).
    pub upstream: ResidentUpstream,
    /// Whether the gradient is written (default true).
    pub want_grad: bool,
    /// Storage of the prediction and dense target (default f32).
    pub dtype: Dtype,
    /// Storage of the gradient (default: as `dtype`); `dtype` or f32.
    pub grad_dtype: Dtype,
    /// The divisor `D'` of a row-wise `Mean` in place of the batch's own (default `None`; see
    /// [`crate::LossArgs::divisor`]).
    pub divisor: Option<f32>,
    /// Whether a row-wise `Mean`'s divisor `D'` is read on the GPU, at each step, from the
    /// caller's [`ResidentBuffers::divisor`] (default false; see
    /// [`ResidentSpec::divisor_buffer`]).
    pub divisor_buffer: bool,
    /// Whether the gradient overwrites the prediction (default false; see
    /// [`ResidentSpec::grad_in_place`]).
    pub grad_in_place: bool,
    /// Whether each row's log-sum-exp is written to [`ResidentBuffers::lse`] (default false;
    /// see [`ResidentSpec::lse`]).
    pub lse: bool,
}

impl ResidentSpec {
    /// A prediction of `shape`, float targets, `Mean`, upstream 1, with the gradient.
    pub fn new(shape: &[usize]) -> Self {
        ResidentSpec {
            shape: shape.to_vec(),
            classes: None,
            weight: None,
            pos_weight: None,
            reduction: Reduction::Mean,
            upstream: ResidentUpstream::Ones,
            want_grad: true,
            dtype: Dtype::F32,
            grad_dtype: Dtype::F32,
            divisor: None,
            divisor_buffer: false,
            grad_in_place: false,
            lse: false,
        }
    }

    /// Prediction, dense target and gradient stored as `dtype` (f16 and bf16 halve the bytes
    /// these memory-bound kernels move; arithmetic and accumulation stay f32).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self.grad_dtype = dtype;
        self
    }

    /// The gradient stored as `grad_dtype`: the input's [`ResidentSpec::dtype`] (the default)
    /// or [`Dtype::F32`]. Call after [`ResidentSpec::dtype`].
    pub fn grad_dtype(mut self, grad_dtype: Dtype) -> Self {
        self.grad_dtype = grad_dtype;
        self
    }

    fn io(&self) -> Io {
        Io {
            input: self.dtype,
            grad: self.grad_dtype,
            vec4: false,
            in_place: self.grad_in_place,
        }
    }

    /// The gradient is written over the prediction (row-wise losses): no gradient buffer is
    /// bound ([`ResidentBuffers::grad`] stays `None`), and after the step `pred` holds
    /// `∂/∂pred` in its own storage, bit for bit what a separate gradient buffer would hold.
    /// Saves the second `[B, C]` buffer of a large vocabulary. The prediction must not also
    /// be the target. 16-bit storage needs an even `C` (no word shared by two rows).
    pub fn grad_in_place(mut self) -> Self {
        self.grad_in_place = true;
        self
    }

    /// Class-index targets, one per row, of type `class_type`: the buffer's bytes are read as
    /// that type, so it must be the type the buffer holds (PyTorch's class tensors are
    /// [`ClassType::I64`]). Each id is range-checked as the integer it is.
    pub fn classes(mut self, class_type: ClassType) -> Self {
        self.classes = Some(class_type);
        self
    }

    /// A weight over the last dimension is bound: class weights `[C]` for softmax cross
    /// entropy, a per-column weight for the BCE losses.
    pub fn weight(mut self) -> Self {
        self.weight = self.shape.last().copied();
        self
    }

    /// A weight of `len` elements is bound (BCE losses: a trailing part of the shape, or the
    /// whole shape).
    pub fn weight_len(mut self, len: usize) -> Self {
        self.weight = Some(len);
        self
    }

    /// A `pos_weight` over the last dimension is bound (BCE with logits).
    pub fn pos_weight(mut self) -> Self {
        self.pos_weight = self.shape.last().copied();
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// A row-wise `Mean` divides by `divisor` (finite, `≥ 0`) instead of the batch's `D`
    /// (as [`crate::LossArgs::divisor`]).
    pub fn divisor(mut self, divisor: f32) -> Self {
        self.divisor = Some(divisor);
        self
    }

    /// A row-wise `Mean` divides by `D'` read from a buffer the caller fills
    /// ([`ResidentBuffers::divisor`]: one f32 at its offset), at each step on the GPU: the
    /// global count of counted rows (or tokens) across micro-batches or ranks, known only
    /// once they are all seen, with no host round trip. `D' = 0` gives a value and gradient
    /// of 0 (as [`ResidentSpec::divisor`]`(0.0)`); a negative or NaN `D'` gives NaN, visibly.
    /// The class pre-pass still range-checks the ids and counts the rows (`counted`).
    pub fn divisor_buffer(mut self) -> Self {
        self.divisor_buffer = true;
        self
    }

    /// Each row's log-sum-exp is written to the caller's [`ResidentBuffers::lse`], f32 `[B]`
    /// (softmax cross entropy: of the logits its softmax sees, as
    /// [`crate::LossArgs::want_lse`]), whatever the reduction, ignored rows included.
    pub fn lse(mut self) -> Self {
        self.lse = true;
        self
    }

    /// Sets the upstream gradient.
    pub fn upstream(mut self, upstream: ResidentUpstream) -> Self {
        self.upstream = upstream;
        self
    }

    /// The value only; no gradient is written.
    pub fn loss_only(mut self) -> Self {
        self.want_grad = false;
        self
    }
}

/// The caller's buffers for one step.
#[derive(Clone, Copy, Debug)]
pub struct ResidentBuffers<'a> {
    /// Prediction, `B·C` elements of the planned [`ResidentSpec::dtype`].
    pub pred: GpuArray<'a>,
    /// Targets: `B·C` elements stored like the prediction, or `B` class indices of the
    /// planned [`ClassType`].
    pub target: GpuArray<'a>,
    /// Weight, f32, of the planned length (when planned with one).
    pub weight: Option<GpuArray<'a>>,
    /// `pos_weight`, f32, of the planned length (BCE with logits, when planned with one).
    pub pos_weight: Option<GpuArray<'a>>,
    /// Upstream gradient, f32, one per loss: `B` rows or `N` elements (with
    /// [`ResidentUpstream::Buffer`]).
    pub upstream: Option<GpuArray<'a>>,
    /// Gradient out, the prediction's size, of the planned [`ResidentSpec::grad_dtype`]
    /// (unless planned loss-only).
    pub grad: Option<GpuArray<'a>>,
    /// A row-wise mean's divisor `D'`, one f32 (when planned with
    /// [`ResidentSpec::divisor_buffer`]).
    pub divisor: Option<GpuArray<'a>>,
    /// The value out, f32 `[1]` (`Mean`, `Sum`), or the per-row (`B`) or per-element (`N`)
    /// losses (`None`).
    pub output: GpuArray<'a>,
    /// Each row's log-sum-exp out, f32 `[B]` (when planned with [`ResidentSpec::lse`]).
    pub lse: Option<GpuArray<'a>>,
}

impl<'a> ResidentBuffers<'a> {
    /// Prediction, target and output; add the others with the setters.
    pub fn new(
        pred: impl Into<GpuArray<'a>>,
        target: impl Into<GpuArray<'a>>,
        output: impl Into<GpuArray<'a>>,
    ) -> Self {
        ResidentBuffers {
            pred: pred.into(),
            target: target.into(),
            weight: None,
            pos_weight: None,
            upstream: None,
            grad: None,
            divisor: None,
            output: output.into(),
            lse: None,
        }
    }

    /// The buffer each row's log-sum-exp is written to (f32 `[B]` at its offset).
    pub fn lse(mut self, lse: impl Into<GpuArray<'a>>) -> Self {
        self.lse = Some(lse.into());
        self
    }

    /// The buffer holding the mean's divisor `D'` (one f32 at its offset).
    pub fn divisor(mut self, divisor: impl Into<GpuArray<'a>>) -> Self {
        self.divisor = Some(divisor.into());
        self
    }

    /// The gradient's buffer.
    pub fn grad(mut self, grad: impl Into<GpuArray<'a>>) -> Self {
        self.grad = Some(grad.into());
        self
    }

    /// The weight's buffer.
    pub fn weight(mut self, weight: impl Into<GpuArray<'a>>) -> Self {
        self.weight = Some(weight.into());
        self
    }

    /// The `pos_weight` buffer.
    pub fn pos_weight(mut self, pos_weight: impl Into<GpuArray<'a>>) -> Self {
        self.pos_weight = Some(pos_weight.into());
        self
    }

    /// The upstream gradient's buffer.
    pub fn upstream(mut self, upstream: impl Into<GpuArray<'a>>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }
}

/// What the last recorded step found, read back by [`ResidentLoss::status_blocking`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentStatus {
    /// Rows (row-wise family) or elements (elementwise family) that counted (not ignored).
    pub counted: usize,
    /// The first row whose class index is out of range, if any (its gradient and loss are 0).
    pub class_out_of_range: Option<usize>,
    /// The first row (categorical cross entropy) or element (BCE) with a probability outside
    /// [0, 1], if any.
    pub out_of_domain: Option<usize>,
}

/// Identity of a step's buffers: bind groups are reused while it stays the same.
type BufferKey = Vec<Option<(wgpu::Buffer, u64)>>;

/// Most sets of buffers whose bind groups are kept (double and triple buffering fit).
const CACHED_BUFFER_SETS: usize = 4;

/// A loss planned for one shape and set of options, recording into the caller's encoder.
/// Built by [`GpuContext::resident`].
pub struct ResidentLoss {
    loss: Loss,
    spec: ResidentSpec,
    /// Rows and row length (row-wise), or `(N, 1)` (elementwise).
    rows: usize,
    cols: usize,
    plan: Plan,
    scratch: Scratch<wgpu::Buffer>,
    cache: HashMap<BufferKey, Vec<Dispatch>>,
    /// Zeroing dispatches of the atomics, for `record_in_pass` (built on its first use).
    clear_dispatches: Option<Vec<Dispatch>>,
    allocations: usize,
}

impl std::fmt::Debug for ResidentLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentLoss")
            .field("loss", &self.loss)
            .field("spec", &self.spec)
            .field("allocations", &self.allocations)
            .finish_non_exhaustive()
    }
}

fn bad(what: &'static str, reason: String) -> Error {
    Error::Buffer { what, reason }
}

fn invalid(option: &'static str, reason: String) -> Error {
    Error::InvalidOption { option, reason }
}

/// Whether `len` is the element count of a trailing part of `shape` (or all of it).
fn is_trailing(shape: &[usize], len: usize) -> bool {
    (0..shape.len()).any(|k| shape[k..].iter().product::<usize>() == len)
}

impl GpuContext {
    /// Plans `loss` for GPU-resident use: pipelines and scratch buffers are built here, once.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for options the loss does not take or that are out of range
    /// (class indices for a loss with float targets, a weight of a length that is not a
    /// trailing part of the shape, an upstream buffer without
    /// `Reduction::None`, a `grad_dtype` that is neither the input's nor f32, `lse` for a loss
    /// without a log-sum-exp),
    /// [`Error::Unsupported`] for f16 storage where [`GpuContext::supports_f16`] is false,
    /// [`Error::Empty`], [`Error::DeviceLimit`] when an array does not fit in one storage
    /// binding; pipeline errors.
    pub fn resident(&self, loss: &Loss, spec: ResidentSpec) -> Result<ResidentLoss> {
        let _serial = self.exclusive();
        loss.validate()?;
        crate::loss::check_divisor(loss, spec.reduction, spec.divisor)?;
        crate::loss::check_lse(loss, spec.lse)?;
        if spec.divisor_buffer {
            // The rules of a fixed divisor (any finite value stands for the buffer's), and not
            // both.
            crate::loss::check_divisor(loss, spec.reduction, Some(1.0))?;
            if spec.divisor.is_some() {
                return Err(invalid(
                    "divisor",
                    "a divisor fixed in the spec and one read from a buffer: plan one".into(),
                ));
            }
        }
        let shape = &spec.shape;
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(Error::Empty {
                shape: shape.clone(),
            });
        }
        let row_wise = loss.is_row_wise();
        let (rows, cols) = if row_wise {
            let Some(&cols) = shape.last() else {
                return Err(invalid(
                    "shape",
                    "a row-wise loss needs a prediction of rank >= 1".into(),
                ));
            };
            (n / cols, cols)
        } else {
            (n, 1)
        };
        if spec.classes.is_some() && !loss.takes_classes() {
            return Err(invalid(
                "target",
                format!("the {} loss takes float targets", loss.name()),
            ));
        }
        if let Some(len) = spec.weight {
            let ok = loss.takes_weight()
                && if row_wise {
                    len == cols
                } else {
                    is_trailing(shape, len)
                };
            if !ok {
                return Err(invalid(
                    "weight",
                    format!(
                        "the {} loss takes no weight of {len} elements for shape {shape:?}",
                        loss.name()
                    ),
                ));
            }
        }
        if let Some(len) = spec.pos_weight {
            if !(loss.takes_pos_weight() && is_trailing(shape, len)) {
                return Err(invalid(
                    "pos_weight",
                    format!(
                        "the {} loss takes no pos_weight of {len} elements for shape {shape:?}",
                        loss.name()
                    ),
                ));
            }
        }
        if spec.upstream == ResidentUpstream::Buffer && spec.reduction != Reduction::None {
            return Err(invalid(
                "upstream",
                "an upstream gradient buffer needs reduction none".into(),
            ));
        }
        if let ResidentUpstream::Scalar(g) = spec.upstream {
            if !g.is_finite() {
                return Err(invalid(
                    "upstream",
                    format!("the upstream gradient must be finite, got {g}"),
                ));
            }
        }
        if spec.grad_in_place {
            let reason = if !row_wise {
                Some(format!(
                    "the {} loss is elementwise; a gradient in place is for the row-wise losses",
                    loss.name()
                ))
            } else if !spec.want_grad {
                Some("a loss-only step writes no gradient to put in place".into())
            } else if spec.grad_dtype != spec.dtype {
                Some(format!(
                    "a gradient in place is stored as the prediction ({}), not {}",
                    spec.dtype.name(),
                    spec.grad_dtype.name()
                ))
            } else if spec.dtype != Dtype::F32 && cols % 2 == 1 {
                Some(format!(
                    "16-bit rows of odd length ({cols}) share words, which a gradient in place                      cannot write row by row; use an even C or f32"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(invalid("grad_in_place", reason));
            }
        }
        let io = spec.io();
        if !io.is_supported() {
            return Err(invalid(
                "grad_dtype",
                format!(
                    "a {} gradient for {} inputs: the gradient is stored as the input or as f32",
                    io.grad.name(),
                    io.input.name()
                ),
            ));
        }
        if io.input == Dtype::F16 && !self.supports_f16() {
            return Err(Error::Unsupported {
                what: "f16 storage",
                reason: "the device cannot run WGSL's pack2x16float/unpack2x16float \
                         (wgpu DownlevelFlags::SHADER_F16_IN_F32)"
                    .into(),
                hint: "Create the device with wgpu::Features::SHADER_F16 (Mesa's Vulkan drivers \
                       need it for f16 conversions), or store bf16 (Dtype::Bf16), which needs \
                       nothing",
            });
        }
        let bytes = io.input.bytes(n).max(io.grad.bytes(n));
        if bytes > self.max_chunk_elements as u64 * 4 {
            return Err(Error::DeviceLimit {
                what: "bytes of one array bound by a resident loss",
                needed: bytes,
                limit: self.max_chunk_elements as u64 * 4,
            });
        }
        let g = match spec.upstream {
            ResidentUpstream::Scalar(g) => g,
            _ => 1.0,
        };
        let plan = if row_wise {
            let ignore_index = loss.ignore_index().unwrap_or(-100);
            Plan::Rows(RowPlan::new(
                self,
                RowSpec {
                    loss: *loss,
                    rows,
                    cols,
                    classes: spec.classes,
                    weight: spec.weight.is_some(),
                    reduction: spec.reduction,
                    divisor: fixed_divisor(spec.reduction, shape, spec.divisor),
                    divisor_buffer: spec.divisor_buffer,
                    upstream_array: spec.upstream == ResidentUpstream::Buffer,
                    g,
                    want_grad: spec.want_grad,
                    want_lse: spec.lse,
                    ignore_index,
                    io,
                },
                n,
            )?)
        } else {
            let broadcast = |len: Option<usize>| {
                len.map(|len| {
                    if len == n {
                        BroadcastPlan::Full
                    } else {
                        BroadcastPlan::Whole(len)
                    }
                })
            };
            Plan::Elementwise(EwPlan::new(
                self,
                EwSpec {
                    loss: *loss,
                    n,
                    weight: broadcast(spec.weight),
                    pos_weight: broadcast(spec.pos_weight),
                    reduction: spec.reduction,
                    divisor: fixed_divisor(spec.reduction, shape, None).unwrap_or(n as f64),
                    upstream_array: spec.upstream == ResidentUpstream::Buffer,
                    g,
                    want_grad: spec.want_grad,
                    io,
                },
                n,
            )?)
        };
        let mut alloc = |label: &'static str, size: u64, usage: wgpu::BufferUsages| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let scratch = plan.scratch(&mut alloc);
        let allocations = scratch.len();
        let r = ResidentLoss {
            loss: *loss,
            spec,
            rows,
            cols,
            plan,
            scratch,
            cache: HashMap::new(),
            clear_dispatches: None,
            allocations,
        };
        r.write_constants(&self.queue)?;
        Ok(r)
    }
}

impl ResidentLoss {
    /// The loss.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// The shape and options it was planned for.
    pub fn spec(&self) -> &ResidentSpec {
        &self.spec
    }

    /// GPU objects this loss has created: its scratch buffers, and one bind group per dispatch
    /// for every new set of buffers. Constant after the first step while the buffers stay.
    pub fn allocations(&self) -> usize {
        self.allocations
    }

    /// Drops the cached bind groups, and with them this loss's references to the caller's
    /// buffers (it keeps the last few sets it was given, so their memory is not freed while
    /// they are cached). The next step rebuilds its bind groups.
    pub fn forget_buffers(&mut self) {
        self.cache.clear();
    }

    /// The bytes one [`ResidentLoss::record`] step's passes read and write, the traffic its
    /// speed is bounded by (at the device's copy bandwidth): the prediction read once (the
    /// part of each row beyond what its lanes hold in registers, 16 elements a lane, read
    /// again for the gradient and for each further statistics sweep: 4096 elements held for
    /// a row of 256 lanes on a GPU, 16 for a row of one lane on a software adapter; none for
    /// a row split across workgroups, [`crate::ContextOptions::split_rows`]; not again for
    /// the gradient of categorical cross entropy, written in the first sweep), the dense target
    /// read as often, class ids read twice (the class pre-pass and the loss
    /// pass, 4 bytes each), and the gradient
    /// written once, at the spec's storage sizes, and each row's log-sum-exp where planned
    /// (4 bytes a row). Weights and the partial sums are left out.
    pub fn pass_bytes(&self) -> u64 {
        let n = (self.rows * self.cols) as u64;
        let e = 4 / self.spec.dtype.per_word() as u64;
        let g = if self.spec.want_grad {
            4 / self.spec.grad_dtype.per_word() as u64
        } else {
            0
        };
        let reread = match (&self.plan, crate::losses::def(&self.loss).family()) {
            (Plan::Rows(p), crate::losses::Family::Rows(hooks)) => {
                // Each further statistics sweep, and the gradient's unless it is written
                // early (in the first sweep) or not at all.
                let grad_sweep = u64::from(self.spec.want_grad && !hooks.grad_early());
                let sweeps = hooks.sweeps() - 1 + grad_sweep;
                sweeps * (self.rows * self.cols.saturating_sub(p.held_elements())) as u64
            }
            _ => 0,
        };
        let target = match self.spec.classes {
            Some(_) if self.loss.is_row_wise() => 4 * 2 * self.rows as u64,
            _ => e * (n + reread),
        };
        let lse = if self.spec.lse {
            4 * self.rows as u64
        } else {
            0
        };
        e * (n + reread) + target + g * n + lse
    }

    /// Elements of the output: 1 (`Mean`, `Sum`), or one per row (row-wise) or per element
    /// (elementwise) for `None`.
    pub fn output_len(&self) -> usize {
        if self.spec.reduction == Reduction::None {
            self.rows
        } else {
            1
        }
    }

    fn missing_scratch() -> Error {
        Error::Gpu("resident loss without its bind groups".into())
    }

    fn write_constants(&self, queue: &wgpu::Queue) -> Result<()> {
        let refs = self.scratch.refs(None);
        self.plan.write_constants(queue, &refs);
        Ok(())
    }

    /// The bytes each of the caller's arrays takes from its offset, in the order of
    /// [`BINDINGS`]: pred, target, weight, pos_weight, upstream, divisor, grad, output, lse
    /// (0 for one the plan does not use).
    fn binding_bytes(&self) -> [u64; 9] {
        let (b, n) = (self.rows, self.rows * self.cols);
        let spec = &self.spec;
        let f32s = |len: usize| Dtype::F32.bytes(len);
        [
            spec.dtype.bytes(n),
            match spec.classes {
                Some(c) => c.bytes(b),
                None => spec.dtype.bytes(n),
            },
            spec.weight.map_or(0, f32s),
            spec.pos_weight.map_or(0, f32s),
            if spec.upstream == ResidentUpstream::Buffer {
                f32s(b)
            } else {
                0
            },
            if spec.divisor_buffer { f32s(1) } else { 0 },
            if spec.want_grad && !spec.grad_in_place {
                spec.grad_dtype.bytes(n)
            } else {
                0
            },
            f32s(self.output_len()),
            if spec.lse { f32s(b) } else { 0 },
        ]
    }

    /// A target buffer error, with what the planned target is and how to plan the other kind.
    fn with_target_hint(&self, e: Error) -> Error {
        let Error::Buffer { what, reason } = e else {
            return e;
        };
        let hint = match self.spec.classes {
            Some(c) => format!(
                " (planned as {} class ids, {} bytes each: `.classes({c:?})`; a buffer of \
                 another integer type needs that type in the spec)",
                c.name(),
                c.words_per_id() * 4
            ),
            None if self.loss.takes_classes() => format!(
                " (planned as {} float targets shaped like the prediction; class ids need \
                 `.classes(ClassType::I32)` or `I64`/`U32` in the spec)",
                self.spec.dtype.name()
            ),
            None => String::new(),
        };
        Error::Buffer {
            what,
            reason: reason + &hint,
        }
    }

    /// Checks one of the caller's arrays: present when needed, `STORAGE`, aligned, in bounds.
    /// `needed`: the elements and their storage (`crate::sharded` checks its arrays so too).
    pub(crate) fn check<'a>(
        ctx: &GpuContext,
        what: &'static str,
        a: Option<GpuArray<'a>>,
        needed: Option<(usize, Dtype)>,
    ) -> Result<Option<Bound<'a>>> {
        let (a, (elems, dtype)) = match (a, needed) {
            (None, None) => return Ok(None),
            (Some(a), Some(elems)) => (a, elems),
            (None, Some(_)) => {
                return Err(bad(what, "required by the planned spec, not given".into()));
            }
            (Some(_), None) => {
                return Err(bad(
                    what,
                    "given, but the planned spec does not use it".into(),
                ));
            }
        };
        if !a.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(bad(
                what,
                format!("needs STORAGE usage, has {:?}", a.buffer.usage()),
            ));
        }
        let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
        if !a.offset.is_multiple_of(align) {
            return Err(bad(
                what,
                format!(
                    "offset {} is not a multiple of the device's storage offset alignment {align}",
                    a.offset
                ),
            ));
        }
        let bytes = dtype.bytes(elems);
        if a.offset + bytes > a.buffer.size() {
            return Err(bad(
                what,
                format!(
                    "needs {elems} {} elements ({bytes} bytes) from offset {}, but the buffer has {} bytes",
                    dtype.name(),
                    a.offset,
                    a.buffer.size()
                ),
            ));
        }
        Ok(Some(Bound {
            buffer: a.buffer,
            offset: a.offset,
            elems: (bytes / 4) as usize,
        }))
    }

    /// Records one step into `encoder`: clears the loss's atomics and adds one compute pass.
    /// Nothing is submitted, mapped or waited for. Bind groups are built the first time a set
    /// of buffers is seen and reused after.
    ///
    /// # Errors
    /// [`Error::Buffer`] for a buffer that is missing, not needed, without `STORAGE` usage,
    /// misaligned or too small (a target buffer's message says how the target was planned:
    /// float targets, or class ids of which [`ClassType`]), and for bindings that would alias:
    /// `grad`, `output` or `lse` in a buffer that is also bound as an input, or two of them
    /// overlapping. All checked before anything is recorded.
    pub fn record(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        bufs: &ResidentBuffers<'_>,
    ) -> Result<()> {
        let key = self.bind_step(ctx, bufs)?;
        let dispatches = self.cache.get(&key).ok_or_else(Self::missing_scratch)?;
        let refs: ScratchRefs<'_> = self.scratch.refs(None);
        self.plan.encode(encoder, &refs, dispatches);
        Ok(())
    }

    /// As [`ResidentLoss::record`], into a compute pass the caller has open (between its own
    /// forward and backward dispatches, say). The loss's atomics are zeroed by a first
    /// one-workgroup dispatch instead of `clear_buffer` (which a pass cannot hold); wgpu orders
    /// the dispatches of a pass. The pass's pipeline and bind group 0 are left set to the
    /// loss's last dispatch: set yours again before your next dispatch.
    ///
    /// # Errors
    /// As [`ResidentLoss::record`].
    pub fn record_in_pass(
        &mut self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bufs: &ResidentBuffers<'_>,
    ) -> Result<()> {
        let key = self.bind_step(ctx, bufs)?;
        if self.clear_dispatches.is_none() {
            let pipe = crate::kernels::pipeline::pipeline(ctx, Kernel::ClearWords)?;
            let clears: Vec<Dispatch> = self
                .scratch
                .refs(None)
                .atomics()
                .into_iter()
                .map(|buf| Dispatch {
                    pipeline: Arc::clone(&pipe),
                    group: bind_group(ctx, Kernel::ClearWords, &pipe.layout, &|_| {
                        buf.as_entire_binding()
                    }),
                    workgroups: 1,
                })
                .collect();
            self.allocations += clears.len();
            self.clear_dispatches = Some(clears);
        }
        if let Some(clears) = &self.clear_dispatches {
            dispatch_into(pass, clears);
        }
        let dispatches = self.cache.get(&key).ok_or_else(Self::missing_scratch)?;
        dispatch_into(pass, dispatches);
        Ok(())
    }

    /// Validates `bufs` and makes sure their bind groups are cached; returns their key.
    fn bind_step(&mut self, ctx: &GpuContext, bufs: &ResidentBuffers<'_>) -> Result<BufferKey> {
        let (b, c) = (self.rows, self.cols);
        let n = b * c;
        let spec = &self.spec;
        let on = |cond: bool, elems: usize, dtype: Dtype| cond.then_some((elems, dtype));
        let f32s = |len: Option<usize>| len.map(|l| (l, Dtype::F32));
        let target_need = match spec.classes {
            Some(c) => (b * c.words_per_id() as usize, Dtype::F32), // words
            None => (n, spec.dtype),
        };
        let pred = Self::check(ctx, "pred", Some(bufs.pred), Some((n, spec.dtype)))?;
        let target = Self::check(ctx, "target", Some(bufs.target), Some(target_need))
            .map_err(|e| self.with_target_hint(e))?;
        let weight = Self::check(ctx, "weight", bufs.weight, f32s(spec.weight))?;
        let pos_weight = Self::check(ctx, "pos_weight", bufs.pos_weight, f32s(spec.pos_weight))?;
        let upstream = Self::check(
            ctx,
            "upstream",
            bufs.upstream,
            on(spec.upstream == ResidentUpstream::Buffer, b, Dtype::F32),
        )?;
        let divisor = Self::check(
            ctx,
            "divisor",
            bufs.divisor,
            on(spec.divisor_buffer, 1, Dtype::F32),
        )?;
        if spec.grad_in_place && bufs.grad.is_some() {
            return Err(bad(
                "grad",
                "given, but the gradient is planned in place over pred (`grad_in_place`): \
                 bind no grad buffer"
                    .into(),
            ));
        }
        let grad = Self::check(
            ctx,
            "grad",
            bufs.grad,
            on(spec.want_grad && !spec.grad_in_place, n, spec.grad_dtype),
        )?;
        let output = Self::check(
            ctx,
            "output",
            Some(bufs.output),
            Some((self.output_len(), Dtype::F32)),
        )?;
        let lse = Self::check(ctx, "lse", bufs.lse, on(spec.lse, b, Dtype::F32))?;
        let (Some(pred), Some(target), Some(output)) = (pred, target, output) else {
            return Err(bad("pred", "missing".into()));
        };
        check_aliasing(bufs, &self.binding_bytes(), spec.grad_in_place)?;
        let key: BufferKey = [
            Some(bufs.pred),
            Some(bufs.target),
            bufs.weight,
            bufs.pos_weight,
            bufs.upstream,
            bufs.divisor,
            bufs.grad,
            Some(bufs.output),
            bufs.lse,
        ]
        .iter()
        .map(|a| a.map(|a| (a.buffer.clone(), a.offset)))
        .collect();
        let none = spec.reduction == Reduction::None;
        let value = (!none).then_some(output);
        let losses = none.then_some(output);
        if !self.cache.contains_key(&key) {
            let refs = self.scratch.refs(value);
            let bufs = ArrayBufs {
                pred,
                target,
                upstream,
                // In place: the kernel writes the gradient through pred's own range.
                grad: if spec.grad_in_place { Some(pred) } else { grad },
                losses,
                lse,
                weight,
                pos_weight,
                divisor,
            };
            let dispatches = self.plan.bind(ctx, &refs, &bufs);
            if self.cache.len() >= CACHED_BUFFER_SETS {
                self.cache.clear();
            }
            self.allocations += dispatches.len();
            self.cache.insert(key.clone(), dispatches);
        }
        Ok(key)
    }

    /// Reads back what the last submitted step found: rows counted, and the first row with an
    /// out-of-range class or the first out-of-domain probability. Blocks until the device is
    /// idle.
    ///
    /// # Errors
    /// [`Error::Map`] or [`Error::Poll`].
    pub fn status_blocking(&self, ctx: &GpuContext) -> Result<ResidentStatus> {
        let _serial = ctx.exclusive();
        let mut status = ResidentStatus {
            counted: self.rows,
            class_out_of_range: None,
            out_of_domain: None,
        };
        if let Some(stats) = &self.scratch.stats {
            let words = read_words(ctx.device(), ctx.queue(), stats, 0, 2)?;
            status.class_out_of_range = first_row(words[0]);
            status.counted = words[1] as usize;
        }
        if let Some(err) = &self.scratch.domain_error {
            let words = read_words(ctx.device(), ctx.queue(), err, 0, 1)?;
            status.out_of_domain = first_row(words[0]);
        }
        Ok(status)
    }
}

/// The names of [`ResidentBuffers`]' arrays, in the order of [`ResidentLoss::binding_bytes`],
/// and whether the loss writes each.
const BINDINGS: [(&str, bool); 9] = [
    ("pred", false),
    ("target", false),
    ("weight", false),
    ("pos_weight", false),
    ("upstream", false),
    ("divisor", false),
    ("grad", true),
    ("output", true),
    ("lse", true),
];

/// Refuses bindings that would alias: a buffer the loss writes (grad, output) bound as anything
/// it reads (wgpu forbids one buffer as read-only and read-write storage in one dispatch; the
/// error would only surface in the caller's `encoder.finish()`), and two written arrays whose
/// byte ranges overlap. Read-only arrays may share a buffer. `pred_written`: the gradient is
/// in place, so pred is written too.
fn check_aliasing(bufs: &ResidentBuffers<'_>, bytes: &[u64; 9], pred_written: bool) -> Result<()> {
    let arrays = [
        Some(bufs.pred),
        Some(bufs.target),
        bufs.weight,
        bufs.pos_weight,
        bufs.upstream,
        bufs.divisor,
        bufs.grad,
        Some(bufs.output),
        bufs.lse,
    ];
    let bound: Vec<(&'static str, bool, GpuArray<'_>, u64)> = arrays
        .iter()
        .zip(BINDINGS)
        .zip(bytes)
        .filter_map(|((a, (name, writes)), &len)| {
            // A gradient in place writes pred (its bytes: the prediction's, bytes[0]).
            let writes = writes || (pred_written && name == "pred");
            a.map(|a| (name, writes, a, len))
        })
        .collect();
    check_aliases(&bound)
}

/// Refuses, among the arrays of one dispatch `(name, written, array, bytes)`, a written array
/// in a buffer that another array is bound from for reading, and two written arrays whose
/// byte ranges overlap (the rules of [`check_aliasing`]; `crate::sharded` checks each of its
/// steps so).
pub(crate) fn check_aliases(bound: &[(&'static str, bool, GpuArray<'_>, u64)]) -> Result<()> {
    for (i, &(name_a, writes_a, a, len_a)) in bound.iter().enumerate() {
        for &(name_b, writes_b, b, len_b) in &bound[i + 1..] {
            if a.buffer != b.buffer || !(writes_a || writes_b) {
                continue;
            }
            let (what, other) = if writes_b {
                (name_b, name_a)
            } else {
                (name_a, name_b)
            };
            if writes_a && writes_b {
                let overlap = a.offset < b.offset.saturating_add(len_b)
                    && b.offset < a.offset.saturating_add(len_a);
                if overlap {
                    return Err(bad(
                        what,
                        format!(
                            "its bytes {}..{} overlap those of {other} ({}..{}) in the same \
                             buffer: give each output its own range",
                            b.offset,
                            b.offset.saturating_add(len_b),
                            a.offset,
                            a.offset.saturating_add(len_a)
                        ),
                    ));
                }
                continue;
            }
            return Err(bad(
                what,
                format!(
                    "is the buffer {other} is bound from: the loss writes {what} and reads \
                     {other}, and wgpu forbids one buffer bound for reading and writing in \
                     one dispatch (whatever the offsets); give {what} a buffer of its own"
                ),
            ));
        }
    }
    Ok(())
}

/// Copies `len` words of `src` from `offset` into a new staging buffer, submits, and waits.
pub(crate) fn read_words(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    src: &wgpu::Buffer,
    offset: u64,
    len: usize,
) -> Result<Vec<u32>> {
    let reader = ValueReader::new(device, len);
    let bytes = reader.read_blocking(device, queue, GpuArray::at(src, offset))?;
    Ok(bytes.iter().map(|v| v.to_bits()).collect())
}

/// Reads a few f32 values (a loss value, per-row losses) back from a caller's buffer into the
/// host, through one staging buffer made once. The source buffer needs `COPY_SRC` usage.
#[derive(Debug)]
pub struct ValueReader {
    staging: wgpu::Buffer,
    len: usize,
    reads: AtomicUsize,
}

impl ValueReader {
    /// A reader of up to `len` f32 values.
    pub fn new(device: &wgpu::Device, len: usize) -> Self {
        ValueReader {
            staging: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-loss value reader"),
                size: (len.max(1) as u64 * 4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            len,
            reads: AtomicUsize::new(0),
        }
    }

    /// How many reads this reader has made.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Records a copy of `len` values of `src` into the reader's staging buffer, into the
    /// caller's `encoder` (say, at the end of a training step); after submitting it, call
    /// [`ValueReader::map`].
    ///
    /// # Errors
    /// [`Error::Buffer`] if `src` lacks `COPY_SRC` or is too small.
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder, src: GpuArray<'_>) -> Result<()> {
        let bytes = self.len as u64 * 4;
        if !src.buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(bad(
                "output",
                format!(
                    "needs COPY_SRC usage to be read back, has {:?}",
                    src.buffer.usage()
                ),
            ));
        }
        if !src.offset.is_multiple_of(4) || src.offset + bytes > src.buffer.size() {
            return Err(bad(
                "output",
                format!(
                    "cannot read {} values from offset {} of a {}-byte buffer",
                    self.len,
                    src.offset,
                    src.buffer.size()
                ),
            ));
        }
        let copy = bytes
            .next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
            .min(src.buffer.size() - src.offset);
        encoder.copy_buffer_to_buffer(src.buffer, src.offset, &self.staging, 0, copy);
        Ok(())
    }

    /// Maps the staging buffer after the submission holding [`ValueReader::record_copy`].
    /// The returned future resolves once the device has finished that work and the map is
    /// done. It never polls the device itself and never spins: wgpu completes the map inside
    /// a `device.poll` (or a later `queue.submit`), whose callback wakes the task awaiting the
    /// future. So something must drive the device while you wait:
    ///
    /// - **A plain loop**: `device.poll(wgpu::PollType::wait_indefinitely())` after the
    ///   submission, then the future is ready (`pollster::block_on(future)` returns at once);
    ///   [`ValueReader::read_blocking`] does exactly this.
    /// - **An async runtime** (tokio, smol, ...): a thread that drives the device, such as
    ///   `std::thread::spawn(move || loop { device.poll(wgpu::PollType::wait_indefinitely()).ok(); })`
    ///   (it sleeps in the driver while there is no work), or a `device.poll(PollType::Poll)`
    ///   on the runtime's own tick; the task awaiting the future sleeps until the callback
    ///   wakes it.
    ///
    /// ```no_run
    /// # use wgpu_loss::{GpuContext, resident::{GpuArray, ValueReader}};
    /// # async fn f(ctx: &GpuContext, value: &wgpu::Buffer) -> wgpu_loss::Result<()> {
    /// let reader = ValueReader::new(ctx.device(), 1);
    /// let future = reader.read(ctx.device(), ctx.queue(), GpuArray::from(value))?;
    /// // Another thread (or the runtime) calls `device.poll(..)`; this task sleeps till then.
    /// let v = future.await?;
    /// # Ok(()) }
    /// ```
    pub fn map(&self) -> ReadFuture<'_> {
        let shared = Arc::new(Mutex::new(MapState::default()));
        let done = Arc::clone(&shared);
        self.staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| {
                let waker = {
                    let mut state = done.lock().unwrap_or_else(PoisonError::into_inner);
                    state.result = Some(r);
                    state.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            });
        self.reads.fetch_add(1, Ordering::Relaxed);
        ReadFuture {
            reader: self,
            shared,
        }
    }

    /// [`ValueReader::record_copy`] in an encoder of its own, submitted, then
    /// [`ValueReader::map`].
    ///
    /// # Errors
    /// As [`ValueReader::record_copy`].
    pub fn read<'r>(
        &'r self,
        device: &'r wgpu::Device,
        queue: &wgpu::Queue,
        src: GpuArray<'_>,
    ) -> Result<ReadFuture<'r>> {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-loss value read"),
        });
        self.record_copy(&mut encoder, src)?;
        queue.submit([encoder.finish()]);
        Ok(self.map())
    }

    /// [`ValueReader::read`], blocking until the values are back.
    ///
    /// # Errors
    /// As [`ValueReader::read`], and [`Error::Poll`].
    pub fn read_blocking(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        src: GpuArray<'_>,
    ) -> Result<Vec<f32>> {
        let fut = self.read(device, queue, src)?;
        device.poll(wgpu::PollType::wait_indefinitely())?;
        pollster::block_on(fut)
    }

    fn take(&self) -> Result<Vec<f32>> {
        let data =
            self.staging.slice(..).get_mapped_range().map_err(|e| {
                Error::Gpu(format!("mapping the value reader's staging buffer: {e}"))
            })?;
        let words: &[f32] = bytemuck::cast_slice(&data);
        let out = words[..self.len].to_vec();
        drop(data);
        self.staging.unmap();
        Ok(out)
    }
}

/// What the map callback of a [`ReadFuture`] left: its result, and the task to wake.
#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// The future of [`ValueReader::read`] and [`ValueReader::map`]: ready once wgpu has run the
/// map's callback, which happens inside a `device.poll` or `queue.submit` that someone else
/// makes (see [`ValueReader::map`]). Polling it takes a lock and never spins.
pub struct ReadFuture<'r> {
    reader: &'r ValueReader,
    shared: Arc<Mutex<MapState>>,
}

impl std::fmt::Debug for ReadFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFuture").finish_non_exhaustive()
    }
}

impl Future for ReadFuture<'_> {
    type Output = Result<Vec<f32>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        match state.result.take() {
            Some(Ok(())) => {
                drop(state);
                Poll::Ready(self.reader.take())
            }
            Some(Err(e)) => Poll::Ready(Err(Error::Map(e))),
            None => {
                // Woken by the map callback; keep only the latest task's waker.
                match &state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => state.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
