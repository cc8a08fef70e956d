//! Softmax cross entropy over a vocabulary split by columns across devices (tensor
//! parallelism): each rank holds the logits of its own classes, `[B, C_k]` from column
//! `o_k` of a vocabulary of `C`, and the loss is computed in three recorded steps with two
//! all-reduces between them, done by the caller's own transport (NCCL, MPI, a host
//! reduction). The full description, with the formulas and the differences from Megatron's
//! `vocab_parallel_cross_entropy`, is `docs/SHARDS.md`.
//!
//! ```text
//! step 1  record_max   maxima[r] = max_j y_rj over the shard          → all-reduce MAX → M
//! step 2  record_sums  sums[r, ..] = the shard's SHARD_SUMS sums       → all-reduce SUM
//! step 3  record_loss  output = the loss (every shard the same), grad = the shard's columns
//! ```
//!
//! With `y` the (soft-capped) logits, `c` the row's class, `ε` the label smoothing, `λ` the
//! z-loss, `w` the class weights (1 without), `W = Σ_j w_j`, `S = Σ_j exp(y_j − M)`,
//! `lse = M + ln S`, all sums over the whole vocabulary:
//!
//! ```text
//! ℓ_r     = (1 − ε) w_c (lse − y_c) + (ε/C) Σ_j w_j (lse − y_j) + λ lse²
//! ∂ℓ/∂y_j = [(1 − ε) w_c + (ε/C) W + 2λ lse] s_j − (ε/C) w_j − (1 − ε) w_c [j = c]
//! ```
//!
//! the unsharded [`Loss::SoftmaxCrossEntropy`] with class-index targets, to the row-wise
//! tolerance. The per-row sums have the fixed layout `[B, SHARD_SUMS]` f32, row-major, with
//! the slots [`SUM_REST`], [`SUM_TIES`], [`SUM_TARGET_GAP`], [`SUM_TARGET_WEIGHT`],
//! [`SUM_SMOOTH_GAP`], [`SUM_WEIGHT`]: every one is added by the SUM all-reduce, and every one
//! is non-negative, so nothing cancels.
//!
//! Like [`crate::resident`], a [`ShardedLoss`] is planned once ([`GpuContext::sharded`]:
//! pipelines from the context's cache, scratch buffers), and each step only records compute
//! passes into the caller's encoder over the caller's buffers ([`ShardBuffers`]), with bind
//! groups built on the first step with a set of buffers and reused after. Nothing is
//! uploaded, submitted or waited for, and no float atomics are used: the same inputs (and the
//! same reduced values) give the same bits on the same device.
//!
//! ```no_run
//! use wgpu_loss::sharded::{ShardBuffers, ShardSpec};
//! use wgpu_loss::{ClassType, GpuContext, Loss};
//!
//! # fn buffers(ctx: &GpuContext) -> [wgpu::Buffer; 6] { unimplemented!() }
//! # fn all_reduce_max(b: &wgpu::Buffer) {}
//! # fn all_reduce_sum(b: &wgpu::Buffer) {}
//! let ctx = GpuContext::new()?;
//! // This rank: columns 8000..16000 of a 32000-class vocabulary, 64 rows, i64 labels.
//! let [logits, classes, maxima, sums, grad, value] = buffers(&ctx);
//! let spec = ShardSpec::new(64, 8000, 8000, 32000).classes(ClassType::I64);
//! let mut loss = ctx.sharded(&Loss::softmax_cross_entropy().label_smoothing(0.1).build()?, spec)?;
//! let bufs = ShardBuffers::new(&logits, &classes, &maxima, &sums, &grad, &value);
//! let submit = |encoder: wgpu::CommandEncoder| ctx.queue().submit([encoder.finish()]);
//!
//! let mut encoder = ctx.device().create_command_encoder(&Default::default());
//! loss.record_max(&ctx, &mut encoder, &bufs)?;
//! submit(encoder);
//! all_reduce_max(&maxima); // [B] f32, MAX over the ranks
//! let mut encoder = ctx.device().create_command_encoder(&Default::default());
//! loss.record_sums(&ctx, &mut encoder, &bufs)?;
//! submit(encoder);
//! all_reduce_sum(&sums); // [B, SHARD_SUMS] f32, SUM over the ranks
//! let mut encoder = ctx.device().create_command_encoder(&Default::default());
//! loss.record_loss(&ctx, &mut encoder, &bufs)?; // value [1], grad [64, 8000]
//! submit(encoder);
//! # Ok::<(), wgpu_loss::Error>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, KernelPipeline};
use crate::kernels::elementwise::{
    FLAG_SCALE_FROM_NORM, FinalizeParams, MAX_LOOP_TRIPS, check_trips,
};
use crate::kernels::pipeline::{pipeline, pipeline_switched};
use crate::kernels::staging::{Bound, Dispatch, bind_group, encode_dispatches, first_row};
use crate::kernels::{ClassType, Dtype, Io, Kernel, Slot, WORKGROUP_SIZE, group_for};
use crate::loss::{Loss, Reduction};
use crate::resident::{GpuArray, ResidentLoss, ResidentStatus, check_aliases, read_words};

/// f32 sums per row in the `sums` buffer: its layout is `[B, SHARD_SUMS]`, row-major, the
/// slots `SUM_*`. Mirrors `SHARD_SUMS` in `shaders/common/shard_layout.wgsl`.
pub const SHARD_SUMS: usize = 6;
/// Slot of `Σ exp(y_j − M)` over the shard's logits below the row maximum `M` (those equal to
/// `M` are counted in [`SUM_TIES`], so `S − 1 = rest + (ties − 1)` keeps a confident row's
/// small `S − 1`). NaN where the shard has a NaN or `+∞` logit: the row is then NaN.
pub const SUM_REST: usize = 0;
/// Slot of the count of the shard's logits equal to `M`.
pub const SUM_TIES: usize = 1;
/// Slot of `M − y_c ≥ 0` on the shard that holds the row's class `c`, else 0.
pub const SUM_TARGET_GAP: usize = 2;
/// Slot of `w_c` (1 without class weights) on the shard that holds `c`, else 0; summed over
/// the rows, the mean's divisor.
pub const SUM_TARGET_WEIGHT: usize = 3;
/// Slot of `Σ_j w_j (M − y_j) ≥ 0` over the shard (label smoothing only; else 0).
pub const SUM_SMOOTH_GAP: usize = 4;
/// Slot of `Σ_j w_j` over the shard (label smoothing only; else 0).
pub const SUM_WEIGHT: usize = 5;

/// Most rows: the divisor's loop over them takes ≤ 16 384 trips of a workgroup.
const MAX_ROWS: usize = MAX_LOOP_TRIPS as usize * WORKGROUP_SIZE as usize;

/// Most workgroups one step dispatches; the row loop covers the rest.
const MAX_WORKGROUPS: u32 = 4096;

/// Most sets of buffers whose bind groups are kept.
const CACHED_BUFFER_SETS: usize = 4;

/// Mirrors `Params` in `shaders/common/shard.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ShardParams {
    rows: u32,
    cols: u32,
    group: u32,
    row_iters: u32,
    offset: u32,
    vocab: u32,
    flags: u32,
    ignore_lo: u32,
    ignore_hi: u32,
    smooth_per_class: f32,
    _pad: [u32; 2],
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
    inv_softcap: f32,
}

/// Mirrors `Params` in `shaders/sharded_divisor.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DivisorParams {
    rows: u32,
    g: f32,
    _pad: [u32; 2],
}

const FLAG_WEIGHT: u32 = 16;
const FLAG_CLASSES_I64: u32 = 32;
const FLAG_CLASSES_U32: u32 = 64;

/// One shard of a vocabulary-sharded softmax cross entropy: what stays the same from step to
/// step.
///
/// # Shapes
/// The shard's logits are `[rows, width]`: columns `[offset, offset + width)` of a
/// vocabulary of `vocab` classes. Class ids `[rows]` (of the whole batch, the same on every
/// shard) are of the planned [`ClassType`] and global, in `[0, vocab)` or `ignore_index`.
/// Class weights, when planned ([`ShardSpec::weight`]), are the shard's own slice
/// `w[offset..offset + width]`, f32.
///
/// # Storage
/// Logits f32 unless [`ShardSpec::dtype`] says f16 or bf16 (then `width` must be even, so no
/// 32-bit word holds two rows); the gradient is stored like them, or as f32 with
/// [`ShardSpec::grad_dtype`]. Maxima, sums, weights and the output are f32.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ShardSpec {
    /// Rows `B`.
    pub rows: usize,
    /// The shard's width `C_k` (≥ 1).
    pub width: usize,
    /// The global class id `o_k` of the shard's column 0.
    pub offset: usize,
    /// The whole vocabulary `C` (`offset + width ≤ vocab`).
    pub vocab: usize,
    /// The integer type of the class ids (default [`ClassType::I64`], PyTorch's).
    pub classes: ClassType,
    /// Whether the shard's class weights `[width]` are bound (default false).
    pub weight: bool,
    /// The reduction (default `Mean`).
    pub reduction: Reduction,
    /// The scalar upstream gradient `g` (default 1).
    pub upstream: f32,
    /// Storage of the logits (default f32).
    pub dtype: Dtype,
    /// Storage of the gradient (default: as `dtype`); `dtype` or f32.
    pub grad_dtype: Dtype,
}

impl ShardSpec {
    /// `rows` rows of columns `[offset, offset + width)` of a vocabulary of `vocab`: i64
    /// class ids, no weights, `Mean`, `g = 1`, f32.
    pub fn new(rows: usize, width: usize, offset: usize, vocab: usize) -> Self {
        ShardSpec {
            rows,
            width,
            offset,
            vocab,
            classes: ClassType::I64,
            weight: false,
            reduction: Reduction::Mean,
            upstream: 1.0,
            dtype: Dtype::F32,
            grad_dtype: Dtype::F32,
        }
    }

    /// The class ids' integer type, as the buffer holds them.
    pub fn classes(mut self, classes: ClassType) -> Self {
        self.classes = classes;
        self
    }

    /// The shard's class weights `[width]` are bound ([`ShardBuffers::weight`]).
    pub fn weight(mut self) -> Self {
        self.weight = true;
        self
    }

    /// Sets the reduction: `Mean` (divided by the counted rows' class weights, found on the
    /// GPU from the reduced sums), `Sum`, `None` (per-row losses), `BatchMean` (divided by `B`).
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The scalar upstream gradient `g` (finite): the gradient is `g · ∂(value)/∂y`.
    pub fn upstream(mut self, g: f32) -> Self {
        self.upstream = g;
        self
    }

    /// Logits and gradient stored as `dtype` (16-bit storage needs an even `width`).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self.grad_dtype = dtype;
        self
    }

    /// The gradient stored as `grad_dtype`: the logits' (the default) or f32. Call after
    /// [`ShardSpec::dtype`].
    pub fn grad_dtype(mut self, grad_dtype: Dtype) -> Self {
        self.grad_dtype = grad_dtype;
        self
    }

    fn io(&self) -> Io {
        Io {
            input: self.dtype,
            grad: self.grad_dtype,
            vec4: false,
            in_place: false,
        }
    }
}

/// The caller's buffers of one shard, for all three steps (each binds those it uses); each
/// needs `STORAGE` usage and an offset that is a multiple of the device's
/// `min_storage_buffer_offset_alignment`.
#[derive(Clone, Copy, Debug)]
pub struct ShardBuffers<'a> {
    /// `[rows, width]` the shard's logits, of the planned [`ShardSpec::dtype`] (read by every
    /// step).
    pub logits: GpuArray<'a>,
    /// `[rows]` class ids of the planned [`ClassType`] (read by every step).
    pub classes: GpuArray<'a>,
    /// `[width]` f32 the shard's class weights (when planned with [`ShardSpec::weight`]).
    pub weight: Option<GpuArray<'a>>,
    /// `[rows]` f32: step 1 writes the shard's row maxima, the caller all-reduces them with
    /// MAX in place, steps 2 and 3 read them.
    pub maxima: GpuArray<'a>,
    /// `[rows, SHARD_SUMS]` f32: step 2 writes the shard's sums, the caller all-reduces them
    /// with SUM in place, step 3 reads them. A buffer other than `maxima`'s.
    pub sums: GpuArray<'a>,
    /// `[rows, width]` the shard's gradient (step 3), of the planned
    /// [`ShardSpec::grad_dtype`].
    pub grad: GpuArray<'a>,
    /// f32 `[1]`, the value (`Mean`, `Sum`, `BatchMean`), or `[rows]` the per-row losses
    /// (`None`) (step 3).
    pub output: GpuArray<'a>,
}

impl<'a> ShardBuffers<'a> {
    /// The buffers without class weights; add them with [`ShardBuffers::weight`].
    pub fn new(
        logits: impl Into<GpuArray<'a>>,
        classes: impl Into<GpuArray<'a>>,
        maxima: impl Into<GpuArray<'a>>,
        sums: impl Into<GpuArray<'a>>,
        grad: impl Into<GpuArray<'a>>,
        output: impl Into<GpuArray<'a>>,
    ) -> Self {
        ShardBuffers {
            logits: logits.into(),
            classes: classes.into(),
            weight: None,
            maxima: maxima.into(),
            sums: sums.into(),
            grad: grad.into(),
            output: output.into(),
        }
    }

    /// The shard's class weights' buffer.
    pub fn weight(mut self, weight: impl Into<GpuArray<'a>>) -> Self {
        self.weight = Some(weight.into());
        self
    }
}

/// Identity of a set of buffers: bind groups are reused while it stays the same.
type BufferKey = Vec<Option<(wgpu::Buffer, u64)>>;

/// The three steps' dispatches over one set of buffers.
struct StepDispatches {
    max: Vec<Dispatch>,
    sums: Vec<Dispatch>,
    loss: Vec<Dispatch>,
}

/// One shard of a vocabulary-sharded softmax cross entropy, planned for its shape and
/// options and recording its three steps into the caller's encoder. Built by
/// [`GpuContext::sharded`]; see [the module](crate::sharded).
pub struct ShardedLoss {
    loss: Loss,
    spec: ShardSpec,
    workgroups: u32,
    params_stride: u64,
    params: wgpu::Buffer,
    norm: wgpu::Buffer,
    /// `[rows]` the per-row losses the value is added from (`Mean`, `Sum`, `BatchMean`).
    row_losses: wgpu::Buffer,
    stats: wgpu::Buffer,
    max_pipe: Arc<KernelPipeline>,
    sums_pipe: Arc<KernelPipeline>,
    loss_pipe: Arc<KernelPipeline>,
    divisor_pipe: Option<Arc<KernelPipeline>>,
    fin_pipe: Option<Arc<KernelPipeline>>,
    cache: HashMap<BufferKey, StepDispatches>,
    allocations: usize,
}

impl std::fmt::Debug for ShardedLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedLoss")
            .field("loss", &self.loss)
            .field("spec", &self.spec)
            .field("allocations", &self.allocations)
            .finish_non_exhaustive()
    }
}

fn invalid(option: &'static str, reason: String) -> Error {
    Error::InvalidOption { option, reason }
}

impl GpuContext {
    /// Plans one shard of `loss`, a softmax cross entropy
    /// (`Loss::softmax_cross_entropy()...build()`: its `label_smoothing`, `z_loss`,
    /// `ignore_index` and `softcap` apply), with class-index targets: pipelines (from the
    /// context's cache) and scratch buffers are made here, once.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for another loss (`loss`), `width = 0` (`width`),
    /// `offset + width > vocab` (`offset`), a non-finite upstream gradient (`upstream`), a
    /// gradient stored neither as the logits nor as f32 (`grad_dtype`), 16-bit storage of an
    /// odd width (`dtype`), invalid loss options; [`Error::Empty`] for `rows = 0`;
    /// [`Error::Unsupported`] for f16 storage where [`GpuContext::supports_f16`] is false;
    /// [`Error::DeviceLimit`] for more than 4 194 304 rows, a vocabulary of 2^31 classes or
    /// more, a shard that does not fit one storage binding or whose rows take a lane more
    /// than 16 384 trips; pipeline errors.
    pub fn sharded(&self, loss: &Loss, spec: ShardSpec) -> Result<ShardedLoss> {
        let _serial = self.exclusive();
        let Loss::SoftmaxCrossEntropy {
            label_smoothing,
            z_loss,
            ignore_index,
            softcap,
            ..
        } = *loss
        else {
            return Err(invalid(
                "loss",
                format!(
                    "a vocabulary-sharded loss is softmax cross entropy, not {}",
                    loss.name()
                ),
            ));
        };
        loss.validate()?;
        let (b, w) = (spec.rows, spec.width);
        if w == 0 {
            return Err(invalid(
                "width",
                "a shard holds at least one column (width 0)".into(),
            ));
        }
        if b == 0 {
            return Err(Error::Empty { shape: vec![b, w] });
        }
        if spec
            .offset
            .checked_add(w)
            .is_none_or(|end| end > spec.vocab)
        {
            return Err(invalid(
                "offset",
                format!(
                    "the shard's columns {}..{} + {w} lie outside the vocabulary of {} classes",
                    spec.offset, spec.offset, spec.vocab
                ),
            ));
        }
        if spec.vocab > i32::MAX as usize {
            return Err(Error::DeviceLimit {
                what: "classes in a sharded vocabulary",
                needed: spec.vocab as u64,
                limit: i32::MAX as u64,
            });
        }
        if b > MAX_ROWS {
            return Err(Error::DeviceLimit {
                what: "rows of a sharded loss",
                needed: b as u64,
                limit: MAX_ROWS as u64,
            });
        }
        if !spec.upstream.is_finite() {
            return Err(invalid(
                "upstream",
                format!(
                    "the upstream gradient must be finite, got {}",
                    spec.upstream
                ),
            ));
        }
        let io = spec.io();
        if !io.is_supported() {
            return Err(invalid(
                "grad_dtype",
                format!(
                    "a {} gradient for {} logits: the gradient is stored as the logits or as f32",
                    io.grad.name(),
                    io.input.name()
                ),
            ));
        }
        let per_word = io.input.per_word();
        if w % per_word != 0 {
            return Err(invalid(
                "dtype",
                format!(
                    "{} logits need an even shard width (no word shared by two rows), got {w}",
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
                hint: "Create the device with wgpu::Features::SHADER_F16, or store bf16 \
                       (Dtype::Bf16), which needs nothing",
            });
        }
        let n = b * w;
        let bytes = io
            .input
            .bytes(n)
            .max(io.grad.bytes(n))
            .max(Dtype::F32.bytes(b * SHARD_SUMS));
        if bytes > self.max_chunk_elements as u64 * 4 {
            return Err(Error::DeviceLimit {
                what: "bytes of one array bound by a sharded loss",
                needed: bytes,
                limit: self.max_chunk_elements as u64 * 4,
            });
        }
        // Lanes per row, and their trips over the row's units.
        let units = w / per_word;
        let group = group_for(w);
        let lane_trips = units.div_ceil(group as usize) as u64;
        check_trips("loop trips per lane over one shard row", lane_trips)?;
        let per_wg = (WORKGROUP_SIZE / group) as usize;
        let max_dim = self.limits.max_compute_workgroups_per_dimension;
        let workgroups = b
            .div_ceil(per_wg)
            .clamp(1, MAX_WORKGROUPS.min(max_dim) as usize) as u32;
        // ≤ 4 194 304 rows over ≥ 4096 workgroups of ≥ 1 row: ≤ 1024 trips.
        let row_iters = b.div_ceil(per_wg * workgroups as usize) as u32;

        let mut flags = 0;
        if spec.weight {
            flags |= FLAG_WEIGHT;
        }
        match spec.classes {
            ClassType::I64 => flags |= FLAG_CLASSES_I64,
            ClassType::U32 => flags |= FLAG_CLASSES_U32,
            ClassType::I32 => {}
        }
        let ignore = ignore_index as u64;
        let params = ShardParams {
            rows: b as u32,
            cols: w as u32,
            group,
            row_iters,
            offset: spec.offset as u32,
            vocab: spec.vocab as u32,
            flags,
            ignore_lo: ignore as u32,
            ignore_hi: (ignore >> 32) as u32,
            smooth_per_class: (f64::from(label_smoothing) / spec.vocab as f64) as f32,
            _pad: [0; 2],
            label_smoothing,
            z_loss,
            softcap,
            inv_softcap: if softcap > 0.0 { 1.0 / softcap } else { 0.0 },
        };
        let g = spec.upstream;
        // (D, gradient scale, value scale, zero flag) where the host knows D; the mean's is
        // found on the GPU by sharded_divisor.wgsl at each step 3.
        let norm: [f32; 4] = match spec.reduction {
            Reduction::BatchMean => {
                let (gs, vs) = crate::loss::divided_scales(f64::from(g), b as f64);
                [b as f32, gs as f32, vs as f32, 0.0]
            }
            _ => [b as f32, g, 1.0, 0.0],
        };
        let stride = (std::mem::size_of::<ShardParams>() as u64)
            .next_multiple_of(u64::from(self.limits.min_uniform_buffer_offset_alignment));
        let mut block = vec![0u8; (3 * stride) as usize];
        let mut put = |slot: u64, bytes: &[u8]| {
            let at = (stride * slot) as usize;
            block[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(0, bytemuck::bytes_of(&params));
        put(
            1,
            bytemuck::bytes_of(&DivisorParams {
                rows: b as u32,
                g,
                _pad: [0; 2],
            }),
        );
        put(
            2,
            bytemuck::bytes_of(&FinalizeParams {
                count: b as u32,
                scale: 1.0,
                flags: FLAG_SCALE_FROM_NORM,
                _pad: 0,
            }),
        );

        let switches: &[(&str, bool)] = &[("SOFTCAP", softcap > 0.0)];
        let max_pipe = pipeline_switched(self, Kernel::ShardMax, io, switches)?;
        let sums_pipe = pipeline_switched(self, Kernel::ShardSums, io, switches)?;
        let loss_pipe = pipeline_switched(self, Kernel::ShardLoss, io, switches)?;
        let divisor_pipe = (spec.reduction == Reduction::Mean)
            .then(|| pipeline(self, Kernel::ShardDivisor))
            .transpose()?;
        let fin_pipe = (spec.reduction != Reduction::None)
            .then(|| pipeline(self, Kernel::ReducePartials))
            .transpose()?;

        use wgpu::BufferUsages as U;
        let alloc = |label: &'static str, size: u64, usage: U| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16),
                usage,
                mapped_at_creation: false,
            })
        };
        let params_buf = alloc(
            "wgpu-loss sharded params",
            3 * stride,
            U::UNIFORM | U::COPY_DST,
        );
        let norm_buf = alloc(
            "wgpu-loss sharded norm",
            16,
            U::STORAGE | U::UNIFORM | U::COPY_DST,
        );
        let row_losses = alloc("wgpu-loss sharded row losses", b as u64 * 4, U::STORAGE);
        let stats = alloc(
            "wgpu-loss sharded class stats",
            8,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        self.queue.write_buffer(&params_buf, 0, &block);
        self.queue
            .write_buffer(&norm_buf, 0, bytemuck::cast_slice(&norm));
        Ok(ShardedLoss {
            loss: *loss,
            spec,
            workgroups,
            params_stride: stride,
            params: params_buf,
            norm: norm_buf,
            row_losses,
            stats,
            max_pipe,
            sums_pipe,
            loss_pipe,
            divisor_pipe,
            fin_pipe,
            cache: HashMap::new(),
            allocations: 4,
        })
    }
}

/// Which step a dispatch list belongs to.
#[derive(Clone, Copy)]
enum Step {
    Max,
    Sums,
    Loss,
}

impl ShardedLoss {
    /// The loss.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// The shard and options it was planned for.
    pub fn spec(&self) -> &ShardSpec {
        &self.spec
    }

    /// GPU objects this shard's plan has created: its scratch buffers, and one bind group per
    /// dispatch of the three steps for every new set of buffers. Constant after the first
    /// step while the buffers stay.
    pub fn allocations(&self) -> usize {
        self.allocations
    }

    /// Drops the cached bind groups (and with them the references to the caller's buffers).
    pub fn forget_buffers(&mut self) {
        self.cache.clear();
    }

    /// Elements of the output: 1, or `rows` for `Reduction::None`.
    pub fn output_len(&self) -> usize {
        if self.spec.reduction == Reduction::None {
            self.spec.rows
        } else {
            1
        }
    }

    /// Step 1: records one compute pass writing the shard's row maxima `m_k` of the
    /// (soft-capped) logits into `bufs.maxima` (`[rows]` f32; NaN logits left out; −F32_MAX
    /// for a row of −∞ logits and for ignored rows). Then all-reduce `maxima` with **MAX**
    /// across the shards, into every shard's `maxima` buffer, before step 2.
    ///
    /// # Errors
    /// As [`ShardedLoss::record_loss`]: every buffer of `bufs` is checked at every step.
    pub fn record_max(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        bufs: &ShardBuffers<'_>,
    ) -> Result<()> {
        self.record(ctx, encoder, bufs, Step::Max)
    }

    /// Step 2: with `bufs.maxima` holding the all-reduced `M`, records one compute pass
    /// writing the shard's `[rows, SHARD_SUMS]` sums into `bufs.sums` (the `SUM_*` slots; the
    /// class ids' range check and count, [`ShardedLoss::status_blocking`], are made here).
    /// Then all-reduce `sums` with **SUM** across the shards, into every shard's `sums`
    /// buffer, before step 3.
    ///
    /// # Errors
    /// As [`ShardedLoss::record_loss`].
    pub fn record_sums(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        bufs: &ShardBuffers<'_>,
    ) -> Result<()> {
        self.record(ctx, encoder, bufs, Step::Sums)
    }

    /// Step 3: with `bufs.maxima` and `bufs.sums` all-reduced, records one compute pass
    /// writing the loss into `bufs.output` (every shard writes the same value: the
    /// `Mean`'s divisor `D = Σ_r w_{c_r}` over the counted rows is found on the GPU from the
    /// reduced `SUM_TARGET_WEIGHT` slots, in a fixed order) and the shard's gradient
    /// `g · ∂value/∂x` (`[rows, width]`) into `bufs.grad`. Ignored rows, and rows whose class
    /// id is outside `[0, vocab)`, have loss 0 and gradient 0; `D = 0` gives value 0 and
    /// gradient 0.
    ///
    /// # Errors
    /// [`Error::Buffer`], before anything is recorded, for a buffer that is missing (the
    /// weight when planned), given but not planned (the weight), without `STORAGE` usage,
    /// misaligned or too small, and for bindings that would alias in any step: `maxima`,
    /// `sums`, `grad` or `output` in a buffer that a step also reads from (`maxima` and
    /// `sums` in one buffer included), and `grad` and `output` overlapping.
    pub fn record_loss(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        bufs: &ShardBuffers<'_>,
    ) -> Result<()> {
        self.record(ctx, encoder, bufs, Step::Loss)
    }

    /// Reads back what the last submitted step 2 found: rows counted (class id in
    /// `[0, vocab)`, not ignored) and the first row whose class id is out of range. Blocks
    /// until the device is idle.
    ///
    /// # Errors
    /// [`Error::Map`] or [`Error::Poll`].
    pub fn status_blocking(&self, ctx: &GpuContext) -> Result<ResidentStatus> {
        let _serial = ctx.exclusive();
        let words = read_words(ctx.device(), ctx.queue(), &self.stats, 0, 2)?;
        Ok(ResidentStatus {
            counted: words[1] as usize,
            class_out_of_range: first_row(words[0]),
            out_of_domain: None,
        })
    }

    fn record(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        bufs: &ShardBuffers<'_>,
        step: Step,
    ) -> Result<()> {
        let key = self.bind(ctx, bufs)?;
        let steps = self
            .cache
            .get(&key)
            .ok_or_else(|| Error::Gpu("sharded loss without its bind groups".into()))?;
        match step {
            Step::Max => encode_dispatches(encoder, "wgpu-loss sharded_max", &[], &steps.max),
            Step::Sums => encode_dispatches(
                encoder,
                "wgpu-loss sharded_sums",
                &[&self.stats],
                &steps.sums,
            ),
            Step::Loss => encode_dispatches(encoder, "wgpu-loss sharded_loss", &[], &steps.loss),
        }
        Ok(())
    }

    /// Checks every buffer and every step's aliasing, and makes sure the three steps' bind
    /// groups over `bufs` are cached; returns their key.
    fn bind(&mut self, ctx: &GpuContext, bufs: &ShardBuffers<'_>) -> Result<BufferKey> {
        let spec = &self.spec;
        let (b, n) = (spec.rows, spec.rows * spec.width);
        let words = |w: usize| Some((w, Dtype::F32));
        let logits = ResidentLoss::check(ctx, "logits", Some(bufs.logits), Some((n, spec.dtype)))?;
        let classes = ResidentLoss::check(
            ctx,
            "classes",
            Some(bufs.classes),
            words(b * spec.classes.words_per_id() as usize),
        )
        .map_err(|e| match e {
            Error::Buffer { what, reason } => Error::Buffer {
                what,
                reason: format!(
                    "{reason} (planned as {} class ids: `ShardSpec::classes`)",
                    spec.classes.name()
                ),
            },
            e => e,
        })?;
        let weight = ResidentLoss::check(
            ctx,
            "weight",
            bufs.weight,
            spec.weight.then_some((spec.width, Dtype::F32)),
        )?;
        let maxima = ResidentLoss::check(ctx, "maxima", Some(bufs.maxima), words(b))?;
        let sums = ResidentLoss::check(ctx, "sums", Some(bufs.sums), words(b * SHARD_SUMS))?;
        let grad = ResidentLoss::check(ctx, "grad", Some(bufs.grad), Some((n, spec.grad_dtype)))?;
        let output =
            ResidentLoss::check(ctx, "output", Some(bufs.output), words(self.output_len()))?;
        let (Some(logits), Some(classes), Some(maxima), Some(sums), Some(grad), Some(output)) =
            (logits, classes, maxima, sums, grad, output)
        else {
            return Err(Error::Buffer {
                what: "logits",
                reason: "missing".into(),
            });
        };
        type Arr<'b> = (&'static str, bool, GpuArray<'b>, u64);
        fn read<'b>(name: &'static str, a: GpuArray<'b>, x: &Bound<'_>) -> Arr<'b> {
            (name, false, a, x.elems as u64 * 4)
        }
        fn write<'b>(name: &'static str, a: GpuArray<'b>, x: &Bound<'_>) -> Arr<'b> {
            (name, true, a, x.elems as u64 * 4)
        }
        let mut inputs = vec![
            read("logits", bufs.logits, &logits),
            read("classes", bufs.classes, &classes),
        ];
        if let (Some(a), Some(x)) = (bufs.weight, &weight) {
            inputs.push(read("weight", a, x));
        }
        let steps = [
            vec![write("maxima", bufs.maxima, &maxima)],
            vec![
                read("maxima", bufs.maxima, &maxima),
                write("sums", bufs.sums, &sums),
            ],
            vec![
                read("maxima", bufs.maxima, &maxima),
                read("sums", bufs.sums, &sums),
                write("grad", bufs.grad, &grad),
                write("output", bufs.output, &output),
            ],
        ];
        for arrays in steps {
            let all: Vec<_> = inputs.iter().copied().chain(arrays).collect();
            check_aliases(&all)?;
        }

        let key: BufferKey = [
            Some(bufs.logits),
            Some(bufs.classes),
            bufs.weight,
            Some(bufs.maxima),
            Some(bufs.sums),
            Some(bufs.grad),
            Some(bufs.output),
        ]
        .iter()
        .map(|a| a.map(|a| (a.buffer.clone(), a.offset)))
        .collect();
        if self.cache.contains_key(&key) {
            return Ok(key);
        }
        let params = |slot: u64, size: usize| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params,
                offset: slot * self.params_stride,
                size: wgpu::BufferSize::new(size as u64),
            })
        };
        let shard_params = || params(0, std::mem::size_of::<ShardParams>());
        let dummy = |slot: Slot| ctx.placeholder(slot == Slot::Norm, slot as usize);
        let none = self.spec.reduction == Reduction::None;
        let resource = |slot: Slot| -> wgpu::BindingResource<'_> {
            match slot {
                Slot::Params => shard_params(),
                Slot::Pred => logits.resource(),
                Slot::Target => classes.resource(),
                Slot::Weight => match weight {
                    Some(w) => w.resource(),
                    None => dummy(Slot::Weight).as_entire_binding(),
                },
                Slot::Maxima => maxima.resource(),
                Slot::Sums => sums.resource(),
                Slot::ClassStats => self.stats.as_entire_binding(),
                Slot::Grad => grad.resource(),
                Slot::Losses if none => output.resource(),
                Slot::Losses => self.row_losses.as_entire_binding(),
                Slot::Norm => self.norm.as_entire_binding(),
                other => dummy(other).as_entire_binding(),
            }
        };
        let dispatch = |kernel: Kernel, pipe: &Arc<KernelPipeline>, workgroups: u32| Dispatch {
            pipeline: Arc::clone(pipe),
            group: bind_group(ctx, kernel, &pipe.layout, &resource),
            workgroups,
        };
        let wg = self.workgroups;
        let mut loss = Vec::new();
        if let Some(d) = &self.divisor_pipe {
            let group = bind_group(ctx, Kernel::ShardDivisor, &d.layout, &|slot| match slot {
                Slot::Params => params(1, std::mem::size_of::<DivisorParams>()),
                Slot::Sums => sums.resource(),
                _ => self.norm.as_entire_binding(),
            });
            loss.push(Dispatch {
                pipeline: Arc::clone(d),
                group,
                workgroups: 1,
            });
        }
        loss.push(dispatch(Kernel::ShardLoss, &self.loss_pipe, wg));
        if let Some(fin) = &self.fin_pipe {
            loss.push(crate::kernels::staging::closing_dispatch(
                ctx,
                fin,
                params(2, std::mem::size_of::<FinalizeParams>()),
                &self.row_losses,
                output,
                Some(&self.norm),
            ));
        }
        let steps = StepDispatches {
            max: vec![dispatch(Kernel::ShardMax, &self.max_pipe, wg)],
            sums: vec![dispatch(Kernel::ShardSums, &self.sums_pipe, wg)],
            loss,
        };
        if self.cache.len() >= CACHED_BUFFER_SETS {
            self.cache.clear();
        }
        self.allocations += steps.max.len() + steps.sums.len() + steps.loss.len();
        self.cache.insert(key.clone(), steps);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;
    use crate::kernels::mirror;

    /// `ShardParams`, `DivisorParams`, the flags and the sums' layout against the WGSL.
    #[test]
    fn mirrors_match_the_shaders() {
        let members = [
            ("rows", offset_of!(ShardParams, rows)),
            ("cols", offset_of!(ShardParams, cols)),
            ("group", offset_of!(ShardParams, group)),
            ("row_iters", offset_of!(ShardParams, row_iters)),
            ("offset", offset_of!(ShardParams, offset)),
            ("vocab", offset_of!(ShardParams, vocab)),
            ("flags", offset_of!(ShardParams, flags)),
            ("ignore_lo", offset_of!(ShardParams, ignore_lo)),
            ("ignore_hi", offset_of!(ShardParams, ignore_hi)),
            (
                "smooth_per_class",
                offset_of!(ShardParams, smooth_per_class),
            ),
            ("label_smoothing", offset_of!(ShardParams, label_smoothing)),
            ("z_loss", offset_of!(ShardParams, z_loss)),
            ("softcap", offset_of!(ShardParams, softcap)),
            ("inv_softcap", offset_of!(ShardParams, inv_softcap)),
        ];
        let flags = [
            ("FLAG_WEIGHT", FLAG_WEIGHT),
            ("FLAG_CLASSES_I64", FLAG_CLASSES_I64),
            ("FLAG_CLASSES_U32", FLAG_CLASSES_U32),
            ("SHARD_SUMS", SHARD_SUMS as u32),
            ("SUM_REST", SUM_REST as u32),
            ("SUM_TIES", SUM_TIES as u32),
            ("SUM_TARGET_GAP", SUM_TARGET_GAP as u32),
            ("SUM_TARGET_WEIGHT", SUM_TARGET_WEIGHT as u32),
            ("SUM_SMOOTH_GAP", SUM_SMOOTH_GAP as u32),
            ("SUM_WEIGHT", SUM_WEIGHT as u32),
        ];
        for k in [Kernel::ShardMax, Kernel::ShardSums, Kernel::ShardLoss] {
            mirror::check(k, &members, size_of::<ShardParams>(), &flags);
        }
        mirror::check(
            Kernel::ShardDivisor,
            &[
                ("rows", offset_of!(DivisorParams, rows)),
                ("g", offset_of!(DivisorParams, g)),
            ],
            size_of::<DivisorParams>(),
            &flags[3..],
        );
    }
}
