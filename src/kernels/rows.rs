//! Host side of the row-wise family (`shaders/common/rows.wgsl` + one file per loss, and for
//! class-index targets `class_count.wgsl` and `row_divisor.wgsl`): plans row chunks, group
//! sizes and workgroups, uploads, records the dispatches, reads the results back.
//!
//! One call is:
//! - with class-index targets, per chunk one `class_count` dispatch (range check, rows counted,
//!   weight sum per workgroup), then for `Mean` one `row_divisor` dispatch that turns the
//!   weight sum `D` into the scales `(D, g/D, 1/D)` on the GPU;
//! - per chunk (whole rows, at most one storage binding of elements), one row dispatch that
//!   reads each row once (twice if it is longer than `group · ROW_REGS`), writes its gradient
//!   and one partial sum of row losses per workgroup;
//! - one `reduce_partials` dispatch that adds the partials in a fixed order.
//!
//! No float atomics, so the same inputs give the same bits on the same device.

use std::borrow::Cow;

use super::elementwise::{FLAG_SCALE_FROM_NORM, FinalizeParams, MAX_LOOP_TRIPS, workgroups_for};
use super::staging::{Taken, contiguous};
use super::{Kernel, Slot, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
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
    ignore_index: i32,
    eps: f32,
    z_loss: f32,
    _pad: [u32; 2],
}

/// Mirrors `Params` in `shaders/class_count.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ClassParams {
    rows: u32,
    cols: u32,
    ignore_index: i32,
    flags: u32,
    row_base: u32,
    partial_base: u32,
    _pad: [u32; 2],
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
const FLAG_CLASSES: u32 = 8;
const FLAG_WEIGHT: u32 = 16;

/// Lanes per row for rows of `cols` elements: the power of two nearest above
/// `cols / ELEMENTS_PER_LANE`, at most a workgroup.
pub fn group_for(cols: usize) -> u32 {
    let want = cols.div_ceil(ELEMENTS_PER_LANE).max(1);
    want.next_power_of_two().min(WORKGROUP_SIZE as usize) as u32
}

/// One chunk of whole rows.
struct RowChunk {
    row0: usize,
    rows: usize,
    workgroups: u32,
    row_iters: u32,
    partial_base: u32,
    class_workgroups: u32,
    class_partial_base: u32,
}

/// Class indices as the kernels read them: i32, with `ignore_index` mapped to the value the
/// kernels compare against and every other value outside `[0, C)` mapped to a negative value
/// that is not it (so an i64 index beyond i32 is still reported, not wrapped into range).
fn gpu_classes(target: &Target<'_>, cols: usize, ignore: i64) -> (Vec<i32>, i32) {
    let gpu_ignore = i32::try_from(ignore).unwrap_or(-1);
    let bad = if gpu_ignore == -1 { -2 } else { -1 };
    let map = |c: i64| -> i32 {
        if c == ignore {
            gpu_ignore
        } else if (0..cols as i64).contains(&c) {
            c as i32
        } else {
            bad
        }
    };
    let v = match target {
        Target::ClassesI32(a) => a.iter().map(|&c| map(i64::from(c))).collect(),
        Target::ClassesI64(a) => a.iter().map(|&c| map(c)).collect(),
        Target::Dense(_) => Vec::new(),
    };
    (v, gpu_ignore)
}

/// A bind group for `kernel` with each binding's resource chosen by its slot.
fn bind_group<'a>(
    ctx: &GpuContext,
    kernel: Kernel,
    layout: &wgpu::BindGroupLayout,
    resource: &dyn Fn(Slot) -> wgpu::BindingResource<'a>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = kernel
        .bindings()
        .iter()
        .map(|b| wgpu::BindGroupEntry {
            binding: b.index,
            resource: resource(b.slot),
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(kernel.name()),
        layout,
        entries: &entries,
    })
}

/// Runs a row-wise loss: see the module docs.
pub(crate) fn run(ctx: &GpuContext, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    let kernel = Kernel::for_loss(loss);
    let (b, cols) = args.rows_cols();
    let chunk_elems = ctx.max_chunk_elements;
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
    let group = group_for(cols);
    let lane_trips = cols.div_ceil(group as usize) as u64;
    if lane_trips > MAX_LOOP_TRIPS {
        return Err(Error::DeviceLimit {
            what: "loop trips per lane over one row",
            needed: lane_trips,
            limit: MAX_LOOP_TRIPS,
        });
    }
    let classes = args.target.is_classes();
    let (label_smoothing, z_loss, ignore_index, eps) = match *loss {
        Loss::SoftmaxCrossEntropy {
            label_smoothing,
            z_loss,
            ignore_index,
        } => (label_smoothing, z_loss, ignore_index, 0.0),
        Loss::CosineProximity { eps } => (0.0, 0.0, -100, eps),
        _ => (0.0, 0.0, -100, 0.0),
    };
    let (class_data, gpu_ignore) = if classes {
        gpu_classes(&args.target, cols, ignore_index)
    } else {
        (Vec::new(), 0)
    };

    // Plan: whole rows per chunk, workgroups and partial-sum offsets.
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
    let rows_per_chunk = (chunk_elems / cols).max(1);
    let per_wg = (WORKGROUP_SIZE / group) as usize;
    let mut plan = Vec::new();
    let (mut partials, mut class_partials) = (0u64, 0u64);
    let mut row0 = 0;
    while row0 < b {
        let rows = rows_per_chunk.min(b - row0);
        let workgroups = rows
            .div_ceil(per_wg)
            .clamp(1, MAX_ROW_WORKGROUPS.min(max_dim) as usize) as u32;
        let row_iters = rows.div_ceil(per_wg * workgroups as usize) as u64;
        if row_iters > MAX_LOOP_TRIPS {
            return Err(Error::DeviceLimit {
                what: "row-loop trips per workgroup",
                needed: row_iters,
                limit: MAX_LOOP_TRIPS,
            });
        }
        let class_workgroups = if classes {
            workgroups_for(rows as u32, max_dim)?
        } else {
            0
        };
        plan.push(RowChunk {
            row0,
            rows,
            workgroups,
            row_iters: row_iters as u32,
            partial_base: partials as u32,
            class_workgroups,
            class_partial_base: class_partials as u32,
        });
        partials += u64::from(workgroups);
        class_partials += u64::from(class_workgroups);
        row0 += rows;
    }
    let max_partials = MAX_LOOP_TRIPS * u64::from(WORKGROUP_SIZE);
    if partials.max(class_partials) > max_partials {
        return Err(Error::DeviceLimit {
            what: "partial sums per call",
            needed: partials.max(class_partials),
            limit: max_partials,
        });
    }

    let reduce_value = args.reduction != Reduction::None;
    let write_losses = args.reduction == Reduction::None;
    let divisor_on_gpu = classes && args.reduction == Reduction::Mean;
    let pred = contiguous(&args.pred);
    let dense_target: Option<Cow<'_, [f32]>> = args.target.dense().map(contiguous);
    let weight = args.weight.as_ref().map(contiguous);
    let upstream = match &args.upstream {
        Upstream::Array(g) if args.want_grad => Some(contiguous(g)),
        _ => None,
    };
    let g = match args.upstream {
        Upstream::Scalar(g) => g,
        _ => 1.0,
    };
    // (D, gradient scale, value scale) when D is known here; else row_divisor computes it.
    let norm: [f32; 4] = match args.reduction {
        Reduction::Mean => [
            b as f32,
            (f64::from(g) / b as f64) as f32,
            (1.0 / b as f64) as f32,
            0.0,
        ],
        Reduction::Sum | Reduction::None => [b as f32, g, 1.0, 0.0],
    };
    let mut flags = 0;
    if args.want_grad {
        flags |= FLAG_WRITE_GRAD;
    }
    if write_losses {
        flags |= FLAG_WRITE_LOSSES;
    }
    if upstream.is_some() {
        flags |= FLAG_UPSTREAM_ARRAY;
    }
    if classes {
        flags |= FLAG_CLASSES;
    }
    if weight.is_some() {
        flags |= FLAG_WEIGHT;
    }

    let row_pipe = ctx.pipeline(kernel)?;
    let count_pipe = classes
        .then(|| ctx.pipeline(Kernel::ClassCount))
        .transpose()?;
    let divisor_pipe = divisor_on_gpu
        .then(|| ctx.pipeline(Kernel::RowDivisor))
        .transpose()?;
    let fin_pipe = reduce_value
        .then(|| ctx.pipeline(Kernel::ReducePartials))
        .transpose()?;

    let scopes = ctx.open_scopes();
    let mut taken = Taken::default();
    use wgpu::BufferUsages as U;

    // Uniform parameter blocks: per chunk a row block and a class block, then the divisor and
    // the finalize blocks.
    let stride = (std::mem::size_of::<RowParams>() as u64)
        .next_multiple_of(u64::from(ctx.limits.min_uniform_buffer_offset_alignment));
    let chunks = plan.len() as u64;
    let slots = 2 * chunks + 2;
    let params_idx = ctx.scratch(
        &mut taken,
        "wgpu-loss row params",
        stride * slots,
        U::UNIFORM | U::COPY_DST,
    );
    let partials_idx = ctx.scratch(&mut taken, "wgpu-loss partials", partials * 4, U::STORAGE);
    let class_partials_idx = classes.then(|| {
        ctx.scratch(
            &mut taken,
            "wgpu-loss class partials",
            class_partials * 4,
            U::STORAGE,
        )
    });
    let value_idx = ctx.scratch(&mut taken, "wgpu-loss value", 4, U::STORAGE | U::COPY_SRC);
    let norm_idx = ctx.scratch(
        &mut taken,
        "wgpu-loss norm",
        16,
        U::STORAGE | U::UNIFORM | U::COPY_DST,
    );
    ctx.queue
        .write_buffer(&taken.0[norm_idx].buffer, 0, bytemuck::cast_slice(&norm));
    let stats_idx = classes.then(|| {
        let i = ctx.scratch(
            &mut taken,
            "wgpu-loss class stats",
            8,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        ctx.queue.write_buffer(
            &taken.0[i].buffer,
            0,
            bytemuck::cast_slice(&[u32::MAX, 0u32]),
        );
        i
    });
    let err_idx = (kernel == Kernel::CategoricalCrossEntropy).then(|| {
        let i = ctx.scratch(
            &mut taken,
            "wgpu-loss domain error",
            4,
            U::STORAGE | U::COPY_DST | U::COPY_SRC,
        );
        ctx.queue
            .write_buffer(&taken.0[i].buffer, 0, bytemuck::bytes_of(&u32::MAX));
        i
    });
    let weight_idx = weight
        .as_ref()
        .map(|w| ctx.upload(&mut taken, "wgpu-loss class weight", w));

    struct ChunkBufs {
        pred: usize,
        target: usize,
        target_len: usize,
        upstream: Option<usize>,
        grad: Option<usize>,
        losses: Option<usize>,
    }
    let mut bufs = Vec::with_capacity(plan.len());
    let mut params_bytes = vec![0u8; (stride * slots) as usize];
    let mut put = |slot: u64, bytes: &[u8]| {
        let at = (stride * slot) as usize;
        params_bytes[at..at + bytes.len()].copy_from_slice(bytes);
    };
    for (c, ch) in plan.iter().enumerate() {
        let rows = ch.row0..ch.row0 + ch.rows;
        let elems = ch.row0 * cols..(ch.row0 + ch.rows) * cols;
        let (target, target_len) = match &dense_target {
            Some(t) => (
                ctx.upload(&mut taken, "wgpu-loss target", &t[elems.clone()]),
                elems.len(),
            ),
            None => (
                ctx.upload(&mut taken, "wgpu-loss classes", &class_data[rows.clone()]),
                rows.len(),
            ),
        };
        bufs.push(ChunkBufs {
            pred: ctx.upload(&mut taken, "wgpu-loss pred", &pred[elems.clone()]),
            target,
            target_len,
            upstream: upstream
                .as_ref()
                .map(|u| ctx.upload(&mut taken, "wgpu-loss upstream", &u[rows.clone()])),
            grad: args.want_grad.then(|| {
                ctx.scratch(
                    &mut taken,
                    "wgpu-loss grad",
                    elems.len() as u64 * 4,
                    U::STORAGE | U::COPY_SRC,
                )
            }),
            losses: write_losses.then(|| {
                ctx.scratch(
                    &mut taken,
                    "wgpu-loss losses",
                    rows.len() as u64 * 4,
                    U::STORAGE | U::COPY_SRC,
                )
            }),
        });
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
                ignore_index: gpu_ignore,
                eps: if kernel == Kernel::CosineProximity {
                    eps
                } else {
                    label_smoothing
                },
                z_loss,
                _pad: [0; 2],
            }),
        );
        put(
            chunks + c as u64,
            bytemuck::bytes_of(&ClassParams {
                rows: ch.rows as u32,
                cols: cols as u32,
                ignore_index: gpu_ignore,
                flags: flags & FLAG_WEIGHT,
                row_base: ch.row0 as u32,
                partial_base: ch.class_partial_base,
                _pad: [0; 2],
            }),
        );
    }
    put(
        2 * chunks,
        bytemuck::bytes_of(&DivisorParams {
            count: class_partials as u32,
            g,
            _pad: [0; 2],
        }),
    );
    put(
        2 * chunks + 1,
        bytemuck::bytes_of(&FinalizeParams {
            count: partials as u32,
            scale: 1.0,
            flags: FLAG_SCALE_FROM_NORM,
            _pad: 0,
        }),
    );
    ctx.queue
        .write_buffer(&taken.0[params_idx].buffer, 0, &params_bytes);

    let buf = |i: usize| &taken.0[i].buffer;
    let sized = |i: usize, elems: usize| {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: buf(i),
            offset: 0,
            size: wgpu::BufferSize::new(elems as u64 * 4),
        })
    };
    let params_at = |slot: u64, size: usize| {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: buf(params_idx),
            offset: slot * stride,
            size: wgpu::BufferSize::new(size as u64),
        })
    };
    let opt = |o: Option<usize>, slot: Slot, elems: usize| match o {
        Some(i) => sized(i, elems),
        None => ctx.dummy(slot).as_entire_binding(),
    };
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-loss rows"),
        });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name()),
            timestamp_writes: None,
        });
        if let (Some(p), Some(cp), Some(stats)) = (&count_pipe, class_partials_idx, stats_idx) {
            pass.set_pipeline(&p.pipeline);
            for (c, (ch, bf)) in plan.iter().zip(&bufs).enumerate() {
                let bg = bind_group(ctx, Kernel::ClassCount, &p.layout, &|slot| match slot {
                    Slot::Params => {
                        params_at(chunks + c as u64, std::mem::size_of::<ClassParams>())
                    }
                    Slot::Target => sized(bf.target, bf.target_len),
                    Slot::Weight => opt(weight_idx, Slot::Weight, cols),
                    Slot::Partials => sized(cp, class_partials as usize),
                    _ => sized(stats, 2),
                });
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(ch.class_workgroups, 1, 1);
            }
            if let Some(d) = &divisor_pipe {
                let bg = bind_group(ctx, Kernel::RowDivisor, &d.layout, &|slot| match slot {
                    Slot::Params => params_at(2 * chunks, std::mem::size_of::<DivisorParams>()),
                    Slot::Partials => sized(cp, class_partials as usize),
                    _ => sized(norm_idx, 4),
                });
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(1, 1, 1);
            }
        }
        pass.set_pipeline(&row_pipe.pipeline);
        for (c, (ch, bf)) in plan.iter().zip(&bufs).enumerate() {
            let elems = ch.rows * cols;
            let bg = bind_group(ctx, kernel, &row_pipe.layout, &|slot| match slot {
                Slot::Params => params_at(c as u64, std::mem::size_of::<RowParams>()),
                Slot::Pred => sized(bf.pred, elems),
                Slot::Target => sized(bf.target, bf.target_len),
                Slot::Upstream => opt(bf.upstream, Slot::Upstream, ch.rows),
                Slot::Grad => opt(bf.grad, Slot::Grad, elems),
                Slot::Losses => opt(bf.losses, Slot::Losses, ch.rows),
                Slot::Partials => sized(partials_idx, partials as usize),
                Slot::Weight => opt(weight_idx, Slot::Weight, cols),
                Slot::Norm => sized(norm_idx, 4),
                _ => opt(err_idx, Slot::DomainError, 1),
            });
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(ch.workgroups, 1, 1);
        }
        if let Some(fin) = &fin_pipe {
            let bg = bind_group(
                ctx,
                Kernel::ReducePartials,
                &fin.layout,
                &|slot| match slot {
                    Slot::Params => {
                        params_at(2 * chunks + 1, std::mem::size_of::<FinalizeParams>())
                    }
                    Slot::Partials => sized(partials_idx, partials as usize),
                    Slot::Value => sized(value_idx, 1),
                    _ => sized(norm_idx, 4),
                },
            );
            pass.set_pipeline(&fin.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }
    // Readbacks, in a fixed order: value, class stats, domain error, then per chunk grad and
    // losses.
    let mut readbacks = Vec::new();
    if reduce_value {
        readbacks.push(ctx.record_readback(&mut encoder, buf(value_idx), 4));
    }
    if let Some(i) = stats_idx {
        readbacks.push(ctx.record_readback(&mut encoder, buf(i), 8));
    }
    if let Some(i) = err_idx {
        readbacks.push(ctx.record_readback(&mut encoder, buf(i), 4));
    }
    for (ch, bf) in plan.iter().zip(&bufs) {
        if let Some(i) = bf.grad {
            readbacks.push(ctx.record_readback(&mut encoder, buf(i), (ch.rows * cols) as u64 * 4));
        }
        if let Some(i) = bf.losses {
            readbacks.push(ctx.record_readback(&mut encoder, buf(i), ch.rows as u64 * 4));
        }
    }
    let mut results = ctx
        .finish_call(encoder, scopes, readbacks, taken)?
        .into_iter();
    let mut next = || results.next().unwrap_or_default();
    let value = reduce_value.then(|| next().first().map_or(f32::NAN, |&b| f32::from_bits(b)));
    let mut counted = b;
    if classes {
        let stats = next();
        let first_bad = stats.first().copied().unwrap_or(u32::MAX);
        if first_bad != u32::MAX {
            let row = first_bad as usize;
            return Err(Error::ClassOutOfRange {
                row,
                class: args.target.classes().get(row).copied().unwrap_or(-1),
                classes: cols,
            });
        }
        counted = stats.get(1).copied().unwrap_or(0) as usize;
    }
    if err_idx.is_some() {
        let first = next().first().copied().unwrap_or(u32::MAX);
        if first != u32::MAX {
            let start = first as usize * cols;
            let row = &pred[start..start + cols];
            let (j, &value) = row
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
    }
    let mut grad = args.want_grad.then(|| Vec::with_capacity(b * cols));
    let mut losses = write_losses.then(|| Vec::with_capacity(b));
    for _ in &plan {
        for out in [grad.as_mut(), losses.as_mut()].into_iter().flatten() {
            out.extend(next().into_iter().map(f32::from_bits));
        }
    }
    let (_, grad) = LossOutput::shape_arrays(args.pred.shape(), None, grad);
    let (losses, _) = LossOutput::<f32>::shape_arrays(args.row_shape(), losses, None);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted,
    })
}
