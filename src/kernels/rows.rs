//! Host side of the row-wise family (`shaders/common/rows.wgsl` + one file per loss, and for
//! class-index targets `class_count.wgsl` and `row_divisor.wgsl`): plans row chunks, group
//! sizes and workgroups, uploads, records the dispatches, reads the results back.
//!
//! One call is:
//! - with class-index targets, per chunk one `class_count` dispatch (range check, rows counted,
//!   weight sum per workgroup), then for `Mean` one `row_divisor` dispatch that turns the
//!   weight sum `D` into the scales `(D, g/D, 1/D)` on the GPU;
//! - per chunk (whole rows, at most one storage binding of elements), one row dispatch that
//!   reads each row once (twice if it is longer than `group · ROW_REGS`, three times for a loss
//!   with a second statistics sweep, `jsd`), writes its gradient
//!   and one partial sum of row losses per workgroup; or, for rows longer than
//!   [`crate::ContextOptions::split_rows`] of a loss that allows it (softmax cross entropy,
//!   cce, distill), three dispatches of the same kernel that split each row across
//!   workgroups: segment statistics, the rows finished one lane a row (losses and partial
//!   sums), the gradient;
//! - one `reduce_partials` dispatch that adds the partials in a fixed order.
//!
//! No float atomics, so the same inputs give the same bits on the same device.

use std::borrow::Cow;
use std::sync::Arc;

use super::elementwise::{
    FLAG_SCALE_FROM_NORM, FinalizeParams, MAX_LOOP_TRIPS, check_trips, workgroups_for,
};
use super::host::{self, HostPlan};
use super::staging::{
    Alloc, AsBuffer, Bound, Dispatch, Scratch, ScratchRefs, bind_group, closing_dispatch,
    contiguous, encode_dispatches, or_dummy,
};
use super::{ClassType, Io, Kernel, Slot, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::gpu::stream::{Dest, Outputs, Sink, Step};
use crate::gpu::{GpuContext, KernelPipeline};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Target, Upstream};

/// Elements per register slot a lane keeps between statistics and gradient; mirrors
/// `ROW_REGS` in `shaders/common/rows.wgsl`. Rows up to `group · ROW_REGS` are read once.
pub const ROW_REGS: u32 = 16;

/// The number of elements of a row each lane aims to own when the group size is chosen:
/// equal to [`ROW_REGS`], so every row of up to `WORKGROUP_SIZE · ROW_REGS` = 4096 elements
/// is held in registers and read once, with the fewest lanes (and combine steps) per row.
/// Measured on llvmpipe (2026-11-22, main job, 4096 rows): 16 instead of 4 cut cce over
/// 1000 columns from 316 to 196 ms and cosine over 768 from 306 to 116 ms per call.
pub const ELEMENTS_PER_LANE: usize = ROW_REGS as usize;

// The context's GPU default of `row_elements_per_lane` is this rule's, and its most lanes a
// row a workgroup.
const _: () = assert!(crate::gpu::GPU_ROW_ELEMENTS_PER_LANE == ELEMENTS_PER_LANE);
const _: () = assert!(crate::gpu::GPU_ROW_MAX_LANES == WORKGROUP_SIZE);

/// Most workgroups one row dispatch uses; a row loop covers the rest.
const MAX_ROW_WORKGROUPS: u32 = 4096;

/// Mirrors `Params` in `shaders/common/rows.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    rows: u32,
    cols: u32,
    group: u32,
    row_iters: u32,
    partial_base: u32,
    flags: u32,
    row_base: u32,
    ignore_lo: u32,
    ignore_hi: u32,
    segments: u32,
    seg_units: u32,
    stats_base: u32,
    /// The loss's `LossParams` (`src/losses/<loss>.rs`, `params`).
    loss: [f32; 4],
}

/// Mirrors `Params` in `shaders/class_count.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ClassParams {
    rows: u32,
    cols: u32,
    ignore_lo: u32,
    flags: u32,
    row_base: u32,
    partial_base: u32,
    ignore_hi: u32,
    _pad: u32,
}

/// Mirrors `Params` in `shaders/row_divisor.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DivisorParams {
    count: u32,
    g: f32,
    _pad: [u32; 2],
}

const FLAG_WRITE_GRAD: u32 = 1;
const FLAG_WRITE_LOSSES: u32 = 2;
const FLAG_UPSTREAM_ARRAY: u32 = 4;
/// The class pre-pass's (class_count.wgsl); the row kernels take the weight as their
/// `WEIGHT` switch instead (`row_switches`).
const FLAG_WEIGHT: u32 = 16;
const FLAG_CLASSES_I64: u32 = 32;
const FLAG_CLASSES_U32: u32 = 64;
const FLAG_WRITE_LSE: u32 = 128;

/// The row driver's pipeline switches for `spec` (`override`s in `shaders/common/rows.wgsl`:
/// what its kernels test per element), then the loss's own (`LossDef::switches`).
fn row_switches(spec: &RowSpec) -> Vec<(&'static str, bool)> {
    let mut switches = vec![("CLASSES", spec.classes.is_some()), ("WEIGHT", spec.weight)];
    switches.extend_from_slice(crate::losses::def(&spec.loss).switches(&spec.loss));
    switches
}

/// Lanes per row for rows of `cols` elements on a GPU: the power of two nearest above
/// `cols / ELEMENTS_PER_LANE`, at most a workgroup (the rule of
/// [`crate::ContextOptions::row_elements_per_lane`]'s GPU default).
pub fn group_for(cols: usize) -> u32 {
    lanes_for(cols, cols, ELEMENTS_PER_LANE, WORKGROUP_SIZE)
}

/// Lanes per row for rows of `cols` elements in `units` words, each lane aiming at
/// `per_lane` elements: the power of two at or above `cols / per_lane`, at most `max_lanes`
/// (a power of two), raised to what keeps a lane's trips over its units within
/// [`MAX_LOOP_TRIPS`], at most a workgroup.
pub(crate) fn lanes_for(cols: usize, units: usize, per_lane: usize, max_lanes: u32) -> u32 {
    let want = crate::gpu::lanes_by_length(cols, per_lane, max_lanes) as usize;
    let bound = units.div_ceil(MAX_LOOP_TRIPS as usize).max(1);
    want.max(bound)
        .next_power_of_two()
        .min(WORKGROUP_SIZE as usize) as u32
}

/// Rows split across workgroups (`SPLIT_STATS`, `SPLIT_FINISH`, `SPLIT_GRAD` in
/// `shaders/common/rows.wgsl`): each row's units in `segments` segments of `seg_units` (the
/// last may be shorter).
#[derive(Clone, Copy, Debug)]
struct Split {
    segments: u32,
    seg_units: u32,
}

/// How a row of `units` units (of `per_unit` elements each) is split when `split_rows`
/// elements is the most one segment may hold: into ⌈units / max units⌉ segments of equal
/// units (the last may be shorter), each a workgroup's.
///
/// # Errors
/// [`Error::DeviceLimit`] where a lane's loop over its segment or the combine loop over a
/// row's segments would pass [`MAX_LOOP_TRIPS`], or the segments one dispatch's.
fn split_of(units: usize, per_unit: usize, split_rows: usize, max_dim: u32) -> Result<Split> {
    let most = (split_rows / per_unit.max(1)).max(1);
    let segments = units.div_ceil(most).max(1);
    let seg_units = units.div_ceil(segments);
    let lane_trips = seg_units.div_ceil(WORKGROUP_SIZE as usize) as u64;
    check_trips("loop trips per lane over one row segment", lane_trips)?;
    let limit = MAX_LOOP_TRIPS.min(u64::from(max_dim));
    if segments as u64 > limit {
        return Err(Error::DeviceLimit {
            what: "segments of one split row",
            needed: segments as u64,
            limit,
        });
    }
    Ok(Split {
        segments: segments as u32,
        seg_units: seg_units as u32,
    })
}

/// The split rows' passes in the order they run, each the row kernel with its switch set.
const SPLIT_PASSES: [&str; 3] = ["SPLIT_STATS", "SPLIT_FINISH", "SPLIT_GRAD"];

/// One chunk of whole rows.
#[derive(Clone, Debug)]
pub(crate) struct RowChunk {
    pub row0: usize,
    pub rows: usize,
    workgroups: u32,
    row_iters: u32,
    /// Split rows: the finishing pass's workgroups (one lane a row), else 0.
    finish_workgroups: u32,
    partial_base: u32,
    class_workgroups: u32,
    class_partial_base: u32,
}

/// Class-index targets as the kernels read them: the caller's ids as they are (i32, u32, or
/// i64 as two words each), borrowed when contiguous; `common/classes.wgsl` decodes them.
fn class_words<'b>(target: &'b Target<'_>) -> Cow<'b, [u32]> {
    fn words<T: bytemuck::Pod>(c: Cow<'_, [T]>) -> Cow<'_, [u32]> {
        match c {
            Cow::Borrowed(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
            Cow::Owned(v) => Cow::Owned(bytemuck::cast_slice(&v).to_vec()),
        }
    }
    match target {
        Target::ClassesI32(a) => words(contiguous(a)),
        Target::ClassesI64(a) => words(contiguous(a)),
        Target::ClassesU32(a) => words(contiguous(a)),
        Target::Dense(_) => Cow::Borrowed(&[]),
    }
}

/// A row-wise call without its buffers: the loss, the shape and every option.
#[derive(Clone, Debug)]
pub(crate) struct RowSpec {
    pub loss: Loss,
    pub rows: usize,
    pub cols: usize,
    /// Class-index targets and their type, else float targets.
    pub classes: Option<ClassType>,
    /// Class weights bound.
    pub weight: bool,
    pub reduction: Reduction,
    /// The divisor of a dividing reduction where the call fixes it (`BatchMean`, a `Mean`'s
    /// divisor); else `B`, or the class weights' sum found on the GPU.
    pub divisor: Option<f64>,
    /// A `Mean`'s divisor read on the GPU from a buffer of the caller's (one f32), bound as
    /// [`RowPlan::bind`]'s `divisor`, in place of `divisor` and the batch's own.
    pub divisor_buffer: bool,
    /// An upstream array `[rows]` bound (Reduction::None).
    pub upstream_array: bool,
    /// The scalar upstream gradient.
    pub g: f32,
    pub want_grad: bool,
    /// Each row's log-sum-exp written (a loss that has one: [`crate::losses::LossDef::has_lse`]).
    pub want_lse: bool,
    /// Class ids equal to this are ignored (compared as i64).
    pub ignore_index: i64,
    /// How p, dense t and the gradient are stored.
    pub io: Io,
}

/// A row-wise call planned: chunks, workgroups, parameter blocks and pipelines. Built once per
/// shape and options; [`RowPlan::bind`] and [`RowPlan::encode`] record it any number of times.
pub(crate) struct RowPlan {
    spec: RowSpec,
    kernel: Kernel,
    chunks: Vec<RowChunk>,
    /// Lanes per row (every chunk's `Params::group`).
    group: u32,
    partials: u64,
    class_partials: u64,
    stride: u64,
    params: Vec<u8>,
    norm: [f32; 4],
    /// Long rows split across workgroups, else `None`.
    split: Option<Split>,
    /// Words of the split rows' segment statistics after the partial sums (0 unsplit).
    stats_words: u64,
    /// The row dispatches of each chunk, in order: the row kernel, or the split rows' three
    /// passes ([`SPLIT_PASSES`]).
    row_pipes: Vec<Arc<KernelPipeline>>,
    count_pipe: Option<Arc<KernelPipeline>>,
    divisor_pipe: Option<Arc<KernelPipeline>>,
    fin_pipe: Option<Arc<KernelPipeline>>,
}

/// The buffers of one chunk: inputs, and outputs the call writes.
pub(crate) struct RowChunkBufs<'a> {
    pub pred: Bound<'a>,
    pub target: Bound<'a>,
    pub upstream: Option<Bound<'a>>,
    pub grad: Option<Bound<'a>>,
    pub losses: Option<Bound<'a>>,
    /// `[rows]` log-sum-exp out.
    pub lse: Option<Bound<'a>>,
    /// `[C]` class weights (the same for every chunk).
    pub weight: Option<Bound<'a>>,
}

impl RowPlan {
    /// Plans `spec` with chunks of at most `chunk_elems` elements.
    ///
    /// # Errors
    /// [`Error::DeviceLimit`] for rows longer than a chunk or than the lane loop allows, too
    /// many rows, or too many partial sums; pipeline errors.
    pub(crate) fn new(ctx: &GpuContext, spec: RowSpec, chunk_elems: usize) -> Result<Self> {
        let kernel = Kernel::for_loss(&spec.loss);
        let (b, cols) = (spec.rows, spec.cols);
        if cols > chunk_elems {
            return Err(Error::DeviceLimit {
                what: "row length (elements of one row bound at once)",
                needed: cols as u64,
                limit: chunk_elems as u64,
            });
        }
        if b >= u32::MAX as usize {
            return Err(Error::DeviceLimit {
                what: "rows per call",
                needed: b as u64,
                limit: u64::from(u32::MAX) - 1,
            });
        }
        if spec.io.input.per_word() > 1 && b * cols > chunk_elems {
            // 16-bit storage is bound whole (the resident API): a chunk boundary could fall
            // inside a word.
            return Err(Error::DeviceLimit {
                what: "16-bit elements bound at once",
                needed: (b * cols) as u64,
                limit: chunk_elems as u64,
            });
        }
        // Lanes own whole units: a row spans at most ⌈(C + per_word − 1) / per_word⌉ words
        // (a row may start inside a word).
        // On software adapters, rows of a whole number of vec4 units (4 f32 or 8 16-bit
        // elements) are read and written 16 bytes per lane per trip (io_f32x4.wgsl,
        // io_f16x8.wgsl, io_bf16x8.wgsl; no unit straddles two rows): llvmpipe issues each
        // lane's load separately (`docs/TUNING.md`, "vec4 rows": f32 softmax-ce 4096 × 1000
        // 21.1 → 13.0 ms). GPUs keep one word per lane (unmeasured there).
        let cpu = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
        let io = if cpu {
            spec.io.with_vec4_if_whole(&[cols])
        } else {
            spec.io
        };
        let units = if io.vec4 {
            cols / io.per_unit()
        } else {
            let per_word = io.input.per_word();
            (cols + per_word - 1).div_ceil(per_word)
        };
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        // Long rows of a loss that allows it split across workgroups of a whole workgroup's
        // lanes each.
        let splits = matches!(
            crate::losses::def(&spec.loss).family(),
            crate::losses::Family::Rows(h) if h.splits()
        );
        let split = if splits && cols > ctx.split_rows() {
            let per_unit = if io.vec4 {
                io.per_unit()
            } else {
                io.input.per_word()
            };
            Some(split_of(units, per_unit, ctx.split_rows(), max_dim)?)
        } else {
            None
        };
        let group = match split {
            Some(_) => WORKGROUP_SIZE,
            None => lanes_for(
                cols,
                units,
                ctx.row_elements_per_lane(),
                ctx.row_max_lanes(),
            ),
        };
        let lane_trips = units.div_ceil(group as usize) as u64;
        if split.is_none() {
            check_trips("loop trips per lane over one row", lane_trips)?;
        }
        let loss_params = crate::losses::def(&spec.loss).params(&spec.loss);

        // Whole rows per chunk, workgroups and partial-sum offsets.
        let per_wg = (WORKGROUP_SIZE / group) as usize;
        let rows_per_chunk = chunk_rows(b, (chunk_elems / cols).max(1), per_wg);
        let mut chunks = Vec::new();
        let (mut partials, mut class_partials) = (0u64, 0u64);
        let mut row0 = 0;
        while row0 < b {
            let rows = rows_per_chunk.min(b - row0);
            // Split: one workgroup per segment of each of `slots` rows at once, and the
            // finishing pass's workgroups of one lane a row, which write the partial sums.
            let segments = split.map_or(1, |s| s.segments);
            let most = (MAX_ROW_WORKGROUPS.min(max_dim) / segments).max(1) as usize;
            let slots = rows.div_ceil(per_wg).clamp(1, most) as u32;
            let workgroups = slots * segments;
            let row_iters = rows.div_ceil(per_wg * slots as usize) as u64;
            let finish_workgroups = if split.is_some() {
                let wgs = rows
                    .div_ceil(WORKGROUP_SIZE as usize)
                    .clamp(1, MAX_ROW_WORKGROUPS.min(max_dim) as usize);
                let trips = rows.div_ceil(wgs * WORKGROUP_SIZE as usize) as u64;
                check_trips("row-loop trips per workgroup", trips)?;
                wgs as u32
            } else {
                0
            };
            check_trips("row-loop trips per workgroup", row_iters)?;
            let class_workgroups = if spec.classes.is_some() {
                workgroups_for(rows as u32, max_dim)?
            } else {
                0
            };
            chunks.push(RowChunk {
                row0,
                rows,
                workgroups,
                row_iters: row_iters as u32,
                finish_workgroups,
                partial_base: partials as u32,
                class_workgroups,
                class_partial_base: class_partials as u32,
            });
            partials += u64::from(if split.is_some() {
                finish_workgroups
            } else {
                workgroups
            });
            class_partials += u64::from(class_workgroups);
            row0 += rows;
        }
        // The split rows' segment statistics (eight words each) and finished rows (five),
        // after the partial sums: room for the largest chunk's (its dispatches run in order).
        let stats_words = split.map_or(0, |s| {
            let most = chunks.iter().map(|c| c.rows as u64).max().unwrap_or(0);
            (8 * u64::from(s.segments) + 5) * most
        });
        let max_partials = MAX_LOOP_TRIPS * u64::from(WORKGROUP_SIZE);
        if partials.max(class_partials) > max_partials {
            return Err(Error::DeviceLimit {
                what: "partial sums per call",
                needed: partials.max(class_partials),
                limit: max_partials,
            });
        }

        let reduce_value = spec.reduction != Reduction::None;
        let divisor_on_gpu = spec.reduction == Reduction::Mean
            && (spec.divisor_buffer || (spec.classes.is_some() && spec.divisor.is_none()));
        let g = spec.g;
        // (D, gradient scale, value scale, zero flag) when D is known here; else row_divisor
        // computes it on the GPU.
        let norm: [f32; 4] = if spec.reduction.divides() {
            let d = spec.divisor.unwrap_or(b as f64);
            let (gs, vs) = crate::loss::divided_scales(f64::from(g), d);
            [
                d as f32,
                gs as f32,
                vs as f32,
                f32::from(u8::from(d == 0.0)),
            ]
        } else {
            [b as f32, g, 1.0, 0.0]
        };
        let mut flags = 0;
        if spec.want_grad {
            flags |= FLAG_WRITE_GRAD;
        }
        if spec.reduction == Reduction::None {
            flags |= FLAG_WRITE_LOSSES;
        }
        if spec.upstream_array && spec.want_grad {
            flags |= FLAG_UPSTREAM_ARRAY;
        }
        if spec.want_lse {
            flags |= FLAG_WRITE_LSE;
        }
        match spec.classes {
            Some(ClassType::I64) => flags |= FLAG_CLASSES_I64,
            Some(ClassType::U32) => flags |= FLAG_CLASSES_U32,
            Some(ClassType::I32) | None => {}
        }
        // ignore_index as the two words of an i64.
        let ignore = spec.ignore_index as u64;
        let (ignore_lo, ignore_hi) = (ignore as u32, (ignore >> 32) as u32);

        // Uniform parameter blocks: per chunk a row block and a class block, then the
        // divisor and the finalize blocks.
        let stride = (std::mem::size_of::<RowParams>() as u64)
            .next_multiple_of(u64::from(ctx.limits.min_uniform_buffer_offset_alignment));
        let n = chunks.len() as u64;
        let mut params = vec![0u8; (stride * (2 * n + 2)) as usize];
        let mut put = |slot: u64, bytes: &[u8]| {
            let at = (stride * slot) as usize;
            params[at..at + bytes.len()].copy_from_slice(bytes);
        };
        for (c, ch) in chunks.iter().enumerate() {
            put(
                c as u64,
                bytemuck::bytes_of(&RowParams {
                    rows: ch.rows as u32,
                    cols: cols as u32,
                    group,
                    row_iters: ch.row_iters,
                    partial_base: ch.partial_base,
                    flags,
                    row_base: ch.row0 as u32,
                    ignore_lo,
                    ignore_hi,
                    segments: split.map_or(1, |s| s.segments),
                    seg_units: split.map_or(units as u32, |s| s.seg_units),
                    stats_base: partials as u32,
                    loss: loss_params,
                }),
            );
            put(
                n + c as u64,
                bytemuck::bytes_of(&ClassParams {
                    rows: ch.rows as u32,
                    cols: cols as u32,
                    ignore_lo,
                    flags: (flags & (FLAG_CLASSES_I64 | FLAG_CLASSES_U32))
                        | if spec.weight { FLAG_WEIGHT } else { 0 },
                    row_base: ch.row0 as u32,
                    partial_base: ch.class_partial_base,
                    ignore_hi,
                    _pad: 0,
                }),
            );
        }
        put(
            2 * n,
            bytemuck::bytes_of(&DivisorParams {
                // The caller's buffer holds the one value to add.
                count: if spec.divisor_buffer {
                    1
                } else {
                    class_partials as u32
                },
                g,
                _pad: [0; 2],
            }),
        );
        put(
            2 * n + 1,
            bytemuck::bytes_of(&FinalizeParams {
                count: partials as u32,
                scale: 1.0,
                flags: FLAG_SCALE_FROM_NORM,
                _pad: 0,
            }),
        );

        let switches = row_switches(&spec);
        let row_pipes = match split {
            None => vec![crate::kernels::pipeline::pipeline_switched(
                ctx, kernel, io, &switches,
            )?],
            Some(_) => SPLIT_PASSES
                .iter()
                .map(|pass| {
                    let mut sw = switches.clone();
                    sw.extend(SPLIT_PASSES.iter().map(|p| (*p, p == pass)));
                    crate::kernels::pipeline::pipeline_switched(ctx, kernel, io, &sw)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(RowPlan {
            row_pipes,
            split,
            stats_words,
            count_pipe: spec
                .classes
                .is_some()
                .then(|| crate::kernels::pipeline::pipeline(ctx, Kernel::ClassCount))
                .transpose()?,
            divisor_pipe: divisor_on_gpu
                .then(|| crate::kernels::pipeline::pipeline(ctx, Kernel::RowDivisor))
                .transpose()?,
            fin_pipe: reduce_value
                .then(|| crate::kernels::pipeline::pipeline(ctx, Kernel::ReducePartials))
                .transpose()?,
            spec,
            kernel,
            chunks,
            group,
            partials,
            class_partials,
            stride,
            params,
            norm,
        })
    }

    pub(crate) fn chunks(&self) -> &[RowChunk] {
        &self.chunks
    }

    /// Elements of each row its lanes hold in registers, `group · ROW_REGS`: a longer row's
    /// other elements are read a second time for the gradient. None for split rows, which
    /// are read twice whole.
    pub(crate) fn held_elements(&self) -> usize {
        if self.split.is_some() {
            0
        } else {
            self.group as usize * ROW_REGS as usize
        }
    }

    /// The plan's scratch buffers, each made by `alloc`.
    pub(crate) fn scratch<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B> {
        Scratch::new(
            alloc,
            self.params.len() as u64,
            self.partials + self.stats_words,
            true,
            self.spec.classes.is_some().then_some(self.class_partials),
            self.spec.loss.checks_domain(),
        )
    }

    /// Writes the constant scratch contents (parameters, host-known scales) through the queue;
    /// they take effect at the next submission.
    pub(crate) fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>) {
        queue.write_buffer(scratch.params, 0, &self.params);
        if let Some(norm) = scratch.norm {
            queue.write_buffer(norm, 0, bytemuck::cast_slice(&self.norm));
        }
    }

    /// The bind groups of one call over `chunks` (one per plan chunk): the class pre-pass
    /// and the divisor (class-index targets, or the caller's `divisor` buffer), every chunk's
    /// rows, the closing reduction.
    pub(crate) fn bind(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        chunks: &[RowChunkBufs<'_>],
        divisor: Option<Bound<'_>>,
    ) -> Vec<Dispatch> {
        let mut out: Vec<Dispatch> = chunks
            .iter()
            .enumerate()
            .filter_map(|(c, bf)| self.bind_count(ctx, scratch, c, bf.target, bf.weight))
            .collect();
        out.extend(self.bind_divisor(ctx, scratch, divisor));
        for (c, bf) in chunks.iter().enumerate() {
            out.extend(self.bind_rows(ctx, scratch, c, bf));
        }
        out.extend(self.bind_closing(ctx, scratch));
        out
    }

    fn params_at<'b>(
        &self,
        scratch: &ScratchRefs<'b>,
        slot: u64,
        size: usize,
    ) -> wgpu::BindingResource<'b> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: scratch.params,
            offset: slot * self.stride,
            size: wgpu::BufferSize::new(size as u64),
        })
    }

    /// Whether the call has the class pre-pass (class-index targets).
    pub(crate) fn counts_classes(&self) -> bool {
        self.count_pipe.is_some()
    }

    /// The class pre-pass over chunk `c`'s class ids (`None` without class-index targets).
    pub(crate) fn bind_count(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        c: usize,
        target: Bound<'_>,
        weight: Option<Bound<'_>>,
    ) -> Option<Dispatch> {
        let (Some(p), Some(cp), Some(stats)) =
            (&self.count_pipe, scratch.class_partials, scratch.stats)
        else {
            return None;
        };
        let n = self.chunks.len() as u64;
        let group = bind_group(ctx, Kernel::ClassCount, &p.layout, &|slot| match slot {
            Slot::Params => {
                self.params_at(scratch, n + c as u64, std::mem::size_of::<ClassParams>())
            }
            Slot::Target => target.resource(),
            Slot::Weight => or_dummy(ctx, weight, Slot::Weight),
            Slot::Partials => cp.as_entire_binding(),
            _ => stats.as_entire_binding(),
        });
        Some(Dispatch {
            pipeline: Arc::clone(p),
            group,
            workgroups: self.chunks[c].class_workgroups,
        })
    }

    /// The divisor of the mean from the counted weight, after the whole pre-pass, or from
    /// the caller's `divisor` buffer where planned so (`None` unless class-index targets are
    /// averaged or the divisor is the caller's).
    pub(crate) fn bind_divisor(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        divisor: Option<Bound<'_>>,
    ) -> Option<Dispatch> {
        let d = self.divisor_pipe.as_ref()?;
        let partials = match (self.spec.divisor_buffer, divisor, scratch.class_partials) {
            (true, Some(b), _) => b.resource(),
            (false, _, Some(cp)) => cp.as_entire_binding(),
            _ => return None,
        };
        let n = self.chunks.len() as u64;
        let group = bind_group(ctx, Kernel::RowDivisor, &d.layout, &|slot| match slot {
            Slot::Params => self.params_at(scratch, 2 * n, std::mem::size_of::<DivisorParams>()),
            Slot::Partials => partials.clone(),
            _ => scratch
                .norm
                .unwrap_or(ctx.placeholder(true, 0))
                .as_entire_binding(),
        });
        Some(Dispatch {
            pipeline: Arc::clone(d),
            group,
            workgroups: 1,
        })
    }

    /// The row dispatches of chunk `c` over its buffers: the row kernel's, or the split
    /// rows' three.
    pub(crate) fn bind_rows(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        c: usize,
        bf: &RowChunkBufs<'_>,
    ) -> Vec<Dispatch> {
        self.row_pipes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ch = &self.chunks[c];
                // The split rows' finishing pass has a lane a row.
                let workgroups = if i == 1 {
                    ch.finish_workgroups
                } else {
                    ch.workgroups
                };
                self.bind_rows_of(ctx, scratch, c, bf, p, workgroups)
            })
            .collect()
    }

    fn bind_rows_of(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        c: usize,
        bf: &RowChunkBufs<'_>,
        pipe: &Arc<KernelPipeline>,
        workgroups: u32,
    ) -> Dispatch {
        let or_dummy = |o, slot| or_dummy(ctx, o, slot);
        let group = bind_group(ctx, self.kernel, &pipe.layout, &|slot| match slot {
            Slot::Params => self.params_at(scratch, c as u64, std::mem::size_of::<RowParams>()),
            Slot::Pred => bf.pred.resource(),
            Slot::Target => bf.target.resource(),
            Slot::Upstream => or_dummy(bf.upstream, Slot::Upstream),
            Slot::Grad => or_dummy(bf.grad, Slot::Grad),
            Slot::Losses => or_dummy(bf.losses, Slot::Losses),
            Slot::Lse => or_dummy(bf.lse, Slot::Lse),
            Slot::Partials => scratch.partials.as_entire_binding(),
            Slot::Weight => or_dummy(bf.weight, Slot::Weight),
            Slot::Norm => scratch
                .norm
                .unwrap_or(ctx.placeholder(true, 0))
                .as_entire_binding(),
            _ => match scratch.domain_error {
                Some(e) => e.as_entire_binding(),
                None => ctx
                    .placeholder(false, Slot::DomainError as usize)
                    .as_entire_binding(),
            },
        });
        Dispatch {
            pipeline: Arc::clone(pipe),
            group,
            workgroups,
        }
    }

    /// The closing reduction of the partial sums into the value (none for `Reduction::None`).
    pub(crate) fn bind_closing(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
    ) -> Option<Dispatch> {
        let (Some(fin), Some(value)) = (&self.fin_pipe, scratch.value) else {
            return None;
        };
        let n = self.chunks.len() as u64;
        let params = self.params_at(scratch, 2 * n + 1, std::mem::size_of::<FinalizeParams>());
        Some(closing_dispatch(
            ctx,
            fin,
            params,
            scratch.partials,
            value,
            scratch.norm,
        ))
    }

    /// Records one call: clears the atomics, then one compute pass with every dispatch.
    pub(crate) fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        scratch: &ScratchRefs<'_>,
        dispatches: &[Dispatch],
    ) {
        encode_dispatches(encoder, self.kernel.name(), &scratch.atomics(), dispatches);
    }
}

impl RowPlan {
    /// Steps of the class pre-pass that come before the row steps (one per chunk with
    /// class-index targets, else none).
    pub(crate) fn pre_steps(&self) -> usize {
        if self.counts_classes() {
            self.chunks.len()
        } else {
            0
        }
    }
}

impl HostPlan for RowPlan {
    fn label(&self) -> &'static str {
        self.kernel.name()
    }

    fn scratch_in<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B> {
        self.scratch(alloc)
    }

    fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>) {
        RowPlan::write_constants(self, queue, scratch);
    }

    fn reduces(&self) -> bool {
        self.fin_pipe.is_some()
    }

    /// Pre-pass steps: inputs `[ids]`; row steps: inputs `[p, target, upstream?]`, outputs
    /// `[grad?, losses?, lse?]`; bound whole `[class weights?]`.
    fn record_step(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        whole: &[Bound<'_>],
        k: usize,
        ins: &[Bound<'_>],
        outs: &[Bound<'_>],
    ) -> Vec<Dispatch> {
        let weight = whole.first().copied();
        let pre = self.pre_steps();
        if k < pre {
            let Some(&ids) = ins.first() else {
                return Vec::new();
            };
            let mut v: Vec<Dispatch> = self
                .bind_count(ctx, scratch, k, ids, weight)
                .into_iter()
                .collect();
            if k + 1 == pre {
                v.extend(self.bind_divisor(ctx, scratch, None));
            }
            return v;
        }
        let mut ins = ins.iter().copied();
        let mut outs = outs.iter().copied();
        let (Some(pred), Some(target)) = (ins.next(), ins.next()) else {
            return Vec::new();
        };
        let bufs = RowChunkBufs {
            pred,
            target,
            upstream: if self.spec.upstream_array && self.spec.want_grad {
                ins.next()
            } else {
                None
            },
            grad: if self.spec.want_grad {
                outs.next()
            } else {
                None
            },
            losses: if self.spec.reduction == Reduction::None {
                outs.next()
            } else {
                None
            },
            lse: if self.spec.want_lse {
                outs.next()
            } else {
                None
            },
            weight,
        };
        self.bind_rows(ctx, scratch, k - pre, &bufs)
    }

    fn closing(&self, ctx: &GpuContext, scratch: &ScratchRefs<'_>) -> Option<Dispatch> {
        self.bind_closing(ctx, scratch)
    }
}

/// Rows per chunk for `b` rows when `fit` rows fit one chunk and a workgroup takes `per_wg`:
/// `fit`, except that where the rows take several chunks and a chunk holds more than one
/// workgroup's rows, a whole number of workgroups' (`fit` rounded down to a multiple of
/// `per_wg`). A chunk ending in a workgroup of a few rows would keep one thread of a software
/// adapter busy with it while the others wait (each workgroup runs on one host thread there:
/// with 32 rows to a workgroup, 65 rows a chunk ran as 32 + 32 + 1).
fn chunk_rows(b: usize, fit: usize, per_wg: usize) -> usize {
    if b > fit && fit > per_wg {
        fit / per_wg * per_wg
    } else {
        fit
    }
}

/// Runs a row-wise loss on host arrays: with class-index targets, the class pre-pass streamed
/// over every chunk's ids first (the mean's divisor needs them all); then the plan's chunks
/// streamed through [`GpuContext::stream`] (inputs in, gradient and losses out; the gradient
/// into `into` where given, the caller's array of `B · C` elements); then the value and the
/// checks read back.
pub(crate) fn run(
    ctx: &GpuContext,
    loss: &Loss,
    args: &LossArgs<'_>,
    into: Option<&mut [f32]>,
) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    let (b, cols) = args.rows_cols();
    // Before touching the data (RowPlan::new checks the rest).
    if b >= u32::MAX as usize {
        return Err(Error::DeviceLimit {
            what: "rows per call",
            needed: b as u64,
            limit: u64::from(u32::MAX) - 1,
        });
    }
    let classes = args.target.class_type();
    let ignore_index = loss.ignore_index().unwrap_or(-100);
    let class_data = class_words(&args.target);
    // 32-bit words per class id (2 for i64).
    let per_id = classes.map_or(1, |c| c.words_per_id() as usize);
    let write_losses = args.reduction == Reduction::None;
    let upstream = match &args.upstream {
        Upstream::Array(g) if args.want_grad => Some(contiguous(g)),
        _ => None,
    };
    // Chunk buffers for p, the target, the gradient (per element) and the per-row streams.
    let per_row = per_id * usize::from(classes.is_some())
        + usize::from(upstream.is_some())
        + usize::from(write_losses)
        + usize::from(args.want_lse);
    let per_element = 1 + usize::from(classes.is_none()) + usize::from(args.want_grad);
    let chunk = ctx
        .stream_chunk_elements(4.0 * (per_element as f64 + per_row as f64 / cols as f64))
        .max(cols);
    let spec = RowSpec {
        loss: *loss,
        rows: b,
        cols,
        classes,
        weight: args.weight.is_some(),
        reduction: args.reduction,
        divisor: args.fixed_divisor(),
        divisor_buffer: false,
        upstream_array: matches!(args.upstream, Upstream::Array(_)),
        g: match args.upstream {
            Upstream::Scalar(g) => g,
            _ => 1.0,
        },
        want_grad: args.want_grad,
        want_lse: args.want_lse,
        ignore_index,
        io: Io::F32,
    };
    let plan = RowPlan::new(ctx, spec, chunk.min(ctx.max_chunk_elements))?;
    let pred = contiguous(&args.pred);
    let dense_target: Option<Cow<'_, [f32]>> = args.target.dense().map(contiguous);
    let weight = args.weight.as_ref().map(contiguous);

    // The steps: with class ids, one pre-pass step per chunk (its ids), then one row step per
    // chunk: p, the target (floats or ids), the upstream rows; out the gradient and losses
    // (the order `record_step` reads them in). The class weights are bound whole.
    fn bytes(d: &[f32]) -> &[u8] {
        bytemuck::cast_slice(d)
    }
    let ids = |rows: &std::ops::Range<usize>| -> &[u8] {
        bytemuck::cast_slice(&class_data[rows.start * per_id..rows.end * per_id])
    };
    let chunks = plan.chunks();
    let pre = plan.pre_steps();
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(pre + chunks.len());
    for ch in chunks.iter().take(pre) {
        steps.push(Step {
            inputs: vec![ids(&(ch.row0..ch.row0 + ch.rows))],
            outputs: Vec::new(),
        });
    }
    for ch in chunks {
        let rows = ch.row0..ch.row0 + ch.rows;
        let elems = ch.row0 * cols..(ch.row0 + ch.rows) * cols;
        let target = match &dense_target {
            Some(t) => bytes(&t[elems.clone()]),
            None => ids(&rows),
        };
        let mut inputs = vec![bytes(&pred[elems.clone()]), target];
        inputs.extend(upstream.as_ref().map(|u| bytes(&u[rows.clone()])));
        let mut outputs = Vec::new();
        if args.want_grad {
            outputs.push((elems.len() as u64 * 4, Sink::Grad));
        }
        if write_losses {
            outputs.push((rows.len() as u64 * 4, Sink::Losses));
        }
        if args.want_lse {
            outputs.push((rows.len() as u64 * 4, Sink::Lse));
        }
        steps.push(Step { inputs, outputs });
    }
    let whole: Vec<&[u8]> = weight.as_deref().map(bytes).into_iter().collect();
    let mut out = Outputs::new(
        args.want_grad.then(|| Dest::new(b * cols, into)),
        write_losses.then_some(b),
    )
    .with_lse(args.want_lse.then_some(b));
    let found = host::run(ctx, &plan, &whole, steps, &mut out)?;
    if let Some(row) = found.class_out_of_range {
        return Err(Error::ClassOutOfRange {
            row,
            class: args.target.class_at(row).unwrap_or(-1),
            classes: cols,
        });
    }
    if let Some(row) = found.out_of_domain {
        let start = row * cols;
        let (j, &value) = pred[start..start + cols]
            .iter()
            .enumerate()
            .find(|(_, p)| **p < 0.0 || **p > 1.0)
            .unwrap_or((0, &f32::NAN));
        return Err(Error::OutOfDomain {
            what: "prediction",
            index: start + j,
            value,
            domain: "[0, 1]",
        });
    }
    let (value, counted) = (found.value, found.counted.unwrap_or(b));
    let (_, grad) =
        LossOutput::shape_arrays(args.pred.shape(), None, out.grad.and_then(Dest::into_fresh));
    let (losses, _) = LossOutput::<f32>::shape_arrays(args.row_shape(), out.losses, None);
    let (lse, _) = LossOutput::<f32>::shape_arrays(args.row_shape(), out.lse, None);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted,
        lse,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Chunks of whole workgroups where the rows take several chunks; otherwise what fits.
    #[test]
    fn chunks_hold_whole_workgroups_of_rows() {
        // 256 rows of 128 256 on a software adapter: 65 fit, 32 to a workgroup.
        assert_eq!(chunk_rows(256, 65, 32), 64);
        // 1024 rows of 32 000: 262 fit.
        assert_eq!(chunk_rows(1024, 262, 32), 256);
        // Already whole, or one chunk for all rows: unchanged.
        assert_eq!(chunk_rows(1024, 256, 32), 256);
        assert_eq!(chunk_rows(100, 120, 32), 120);
        assert_eq!(chunk_rows(120, 120, 32), 120);
        // At most one workgroup's rows fit: as many as fit (a GPU's long rows, one a workgroup).
        assert_eq!(chunk_rows(256, 20, 32), 20);
        assert_eq!(chunk_rows(256, 32, 32), 32);
        assert_eq!(chunk_rows(4096, 7, 1), 7);
    }

    /// `RowParams`, `ClassParams`, `DivisorParams` and the flags against the WGSL they mirror.
    #[test]
    fn mirrors_match_the_shaders() {
        let members = [
            ("rows", offset_of!(RowParams, rows)),
            ("cols", offset_of!(RowParams, cols)),
            ("group", offset_of!(RowParams, group)),
            ("row_iters", offset_of!(RowParams, row_iters)),
            ("partial_base", offset_of!(RowParams, partial_base)),
            ("flags", offset_of!(RowParams, flags)),
            ("row_base", offset_of!(RowParams, row_base)),
            ("ignore_lo", offset_of!(RowParams, ignore_lo)),
            ("ignore_hi", offset_of!(RowParams, ignore_hi)),
            ("segments", offset_of!(RowParams, segments)),
            ("seg_units", offset_of!(RowParams, seg_units)),
            ("stats_base", offset_of!(RowParams, stats_base)),
            ("loss", offset_of!(RowParams, loss)),
        ];
        let flags = [
            ("FLAG_WRITE_GRAD", FLAG_WRITE_GRAD),
            ("FLAG_WRITE_LOSSES", FLAG_WRITE_LOSSES),
            ("FLAG_UPSTREAM_ARRAY", FLAG_UPSTREAM_ARRAY),
            ("FLAG_CLASSES_I64", FLAG_CLASSES_I64),
            ("FLAG_CLASSES_U32", FLAG_CLASSES_U32),
            ("FLAG_WRITE_LSE", FLAG_WRITE_LSE),
        ];
        let family =
            |d: &&&dyn crate::losses::LossDef| matches!(d.family(), crate::losses::Family::Rows(_));
        for d in crate::losses::REGISTRY.iter().filter(family) {
            let k = Kernel::Loss(d.stem());
            super::super::mirror::check(k, &members, size_of::<RowParams>(), &flags);
        }
        super::super::mirror::check(
            Kernel::ClassCount,
            &[
                ("rows", offset_of!(ClassParams, rows)),
                ("cols", offset_of!(ClassParams, cols)),
                ("ignore_lo", offset_of!(ClassParams, ignore_lo)),
                ("flags", offset_of!(ClassParams, flags)),
                ("row_base", offset_of!(ClassParams, row_base)),
                ("partial_base", offset_of!(ClassParams, partial_base)),
                ("ignore_hi", offset_of!(ClassParams, ignore_hi)),
            ],
            size_of::<ClassParams>(),
            &[
                ("FLAG_WEIGHT", FLAG_WEIGHT),
                ("FLAG_CLASSES_I64", FLAG_CLASSES_I64),
                ("FLAG_CLASSES_U32", FLAG_CLASSES_U32),
            ],
        );
        super::super::mirror::check(
            Kernel::RowDivisor,
            &[
                ("count", offset_of!(DivisorParams, count)),
                ("g", offset_of!(DivisorParams, g)),
            ],
            size_of::<DivisorParams>(),
            &[],
        );
    }
}

#[cfg(test)]
/// How rows split into segments: equal segments of at most the limit's units, and the loop
/// bounds checked.
#[test]
fn rows_split_into_equal_segments_within_the_bounds() {
    let s = |units, per_unit, most| {
        split_of(units, per_unit, most, 65_535).map(|s| (s.segments, s.seg_units))
    };
    // 128 256 f32 logits at the GPU default: 4 segments of 32 064.
    assert_eq!(s(128_256, 1, 32_768).ok(), Some((4, 32_064)));
    // Just above one segment: two halves; vec4 units of 4 elements count as 4.
    assert_eq!(s(32_769, 1, 32_768).ok(), Some((2, 16_385)));
    assert_eq!(s(32_064, 4, 32_768).ok(), Some((4, 8016)));
    // Segments of one unit, and a limit below one unit.
    assert_eq!(s(7, 1, 1).ok(), Some((7, 1)));
    assert_eq!(s(7, 4, 1).ok(), Some((7, 1)));
    // A lane's trips over a segment (units / 256) and the segment count are bounded.
    let lane = MAX_LOOP_TRIPS as usize * WORKGROUP_SIZE as usize;
    assert!(s(lane, 1, usize::MAX).is_ok());
    assert!(matches!(
        s(lane + 1, 1, usize::MAX),
        Err(Error::DeviceLimit { .. })
    ));
    assert!(s(MAX_LOOP_TRIPS as usize, 1, 1).is_ok());
    assert!(matches!(
        s(MAX_LOOP_TRIPS as usize + 1, 1, 1),
        Err(Error::DeviceLimit { .. })
    ));
    assert!(matches!(
        split_of(100, 1, 1, 64),
        Err(Error::DeviceLimit { .. })
    ));
}

#[cfg(test)]
mod group_tests {
    /// tests/gpu/common.rs's `lanes_per_row` repeats this rule: the same values.
    #[test]
    fn lanes_per_row_on_software_adapters_and_the_trip_bound() {
        use super::lanes_for;
        use crate::gpu::{CPU_ROW_ELEMENTS_PER_LANE as CPU, CPU_ROW_MAX_LANES as MAX};
        // One lane up to C = 4096, vec4 units or not; then the power of two above C / 4096,
        // at most 8.
        assert_eq!(lanes_for(1000, 250, CPU, MAX), 1);
        assert_eq!(lanes_for(4096, 4096, CPU, MAX), 1);
        assert_eq!(lanes_for(4097, 4097, CPU, MAX), 2);
        assert_eq!(lanes_for(32_000, 8000, CPU, MAX), 8);
        assert_eq!(lanes_for(128_256, 32_064, CPU, MAX), 8);
        // Beyond 8 lanes only for the loop-trip bound (16 384 units a lane).
        assert_eq!(lanes_for(1 << 19, 1 << 17, CPU, MAX), 8);
        assert_eq!(lanes_for((1 << 19) + 4, (1 << 17) + 1, CPU, MAX), 16);
        assert_eq!(lanes_for(200_001, 200_001, CPU, MAX), 16);
        // Many elements per lane asked for, no cap: the trip bound wins.
        assert_eq!(lanes_for(300_000, 300_000, 1 << 20, 256), 32);
        assert_eq!(lanes_for(16_384, 16_384, 1 << 20, 256), 1);
        assert_eq!(lanes_for(16_385, 16_385, 1 << 20, 256), 2);
        // 0 elements per lane is taken as 1; never more than a workgroup.
        assert_eq!(lanes_for(100, 100, 0, 256), 128);
        assert_eq!(lanes_for(1 << 22, 1 << 22, 1, 256), 256);
    }

    #[test]
    fn group_sizes_of_the_gpu_tests() {
        for c in 1..=10_000usize {
            let want = c.div_ceil(16).max(1).next_power_of_two().min(256) as u32;
            assert_eq!(super::group_for(c), want, "C = {c}");
        }
    }
}
