//! Host side of the elementwise family (`shaders/common/elementwise.wgsl` + one file per loss):
//! plans chunks and workgroups, uploads, records the dispatches, reads the results back.
//!
//! One call is, per chunk of at most one storage binding of elements, one dispatch that reads
//! `p` and `t` once and writes the gradient and one partial sum per workgroup; then one
//! `reduce_partials` dispatch adds all partials in a fixed order. No float atomics, so the
//! same inputs give the same bits on the same device.

use std::borrow::Cow;

use ndarray::ArrayViewD;

use super::staging::{Taken, contiguous};
use super::{Kernel, Slot, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};

/// Most workgroups one chunk's dispatch uses; the grid-stride loop covers the rest.
/// 4096 keeps llvmpipe's threads busy (a copy kernel ran 4.6× faster with 4096 than 256).
pub const MAX_WORKGROUPS_PER_CHUNK: u32 = 4096;

/// Most trips of any kernel loop. llvmpipe silently ends a loop after 65 535 iterations, so
/// every loop is sized to stay far below; the planner refuses inputs that would not.
pub const MAX_LOOP_TRIPS: u64 = 16_384;

/// Mirrors `Params` in `shaders/common/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ElementwiseParams {
    pub n: u32,
    pub partial_base: u32,
    pub flags: u32,
    pub index_base: u32,
    pub w_len: u32,
    pub w_phase: u32,
    pub q_len: u32,
    pub q_phase: u32,
    pub grad_scale: f32,
    pub delta: f32,
    pub _pad: [u32; 2],
}

/// Mirrors `Params` in `shaders/reduce_partials.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FinalizeParams {
    pub count: u32,
    pub scale: f32,
    pub flags: u32,
    pub _pad: u32,
}

/// `FinalizeParams::flags`: take the value scale from the `norm` uniform (row-wise calls
/// whose divisor is computed on the GPU).
pub(crate) const FLAG_SCALE_FROM_NORM: u32 = 1;

pub(crate) const FLAG_WRITE_GRAD: u32 = 1;
pub(crate) const FLAG_WRITE_LOSSES: u32 = 2;
pub(crate) const FLAG_UPSTREAM_ARRAY: u32 = 4;

/// Workgroups for a chunk of `n` elements: one element per invocation up to
/// [`MAX_WORKGROUPS_PER_CHUNK`], then a grid-stride loop.
pub(crate) fn workgroups_for(n: u32, max_per_dim: u32) -> Result<u32> {
    let wg = n
        .div_ceil(WORKGROUP_SIZE)
        .clamp(1, MAX_WORKGROUPS_PER_CHUNK.min(max_per_dim));
    let trips = u64::from(n).div_ceil(u64::from(wg) * u64::from(WORKGROUP_SIZE));
    if trips > MAX_LOOP_TRIPS {
        return Err(Error::DeviceLimit {
            what: "grid-stride loop trips per invocation",
            needed: trips,
            limit: MAX_LOOP_TRIPS,
        });
    }
    Ok(wg)
}

/// How a broadcast input (weight, pos_weight) is bound.
enum Broadcast<'b> {
    /// Not given.
    Absent,
    /// As long as the prediction (or expanded to it): chunked alongside it.
    Full(Cow<'b, [f32]>),
    /// Shorter, and small enough to bind whole: element i uses `data[(base + i) % len]`.
    Whole(Cow<'b, [f32]>),
}

impl<'b> Broadcast<'b> {
    fn new(w: Option<&'b ArrayViewD<'_, f32>>, n: usize, max_elems: usize) -> Self {
        let Some(w) = w else { return Broadcast::Absent };
        let data = contiguous(w);
        if data.len() == n {
            Broadcast::Full(data)
        } else if data.len() <= max_elems {
            Broadcast::Whole(data)
        } else {
            // Too long to bind whole and shorter than the input: expand (rare; costs memory).
            let len = data.len();
            Broadcast::Full(Cow::Owned((0..n).map(|k| data[k % len]).collect()))
        }
    }

    /// `(len, phase)` for the params block of the chunk starting at `base` with `n` elements.
    fn len_phase(&self, base: usize, n: usize) -> (u32, u32) {
        match self {
            Broadcast::Absent => (0, 0),
            Broadcast::Full(_) => (n as u32, 0),
            Broadcast::Whole(d) => (d.len() as u32, (base % d.len()) as u32),
        }
    }
}

/// Runs an elementwise loss: see the module docs.
pub(crate) fn run(ctx: &GpuContext, loss: &Loss, args: &LossArgs<'_>) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    let kernel = Kernel::for_loss(loss);
    let n = args.len();
    if n >= u32::MAX as usize {
        return Err(Error::DeviceLimit {
            what: "elements per call",
            needed: n as u64,
            limit: u64::from(u32::MAX) - 1,
        });
    }
    let chunk = ctx.max_chunk_elements;
    let chunks = n.div_ceil(chunk);
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension;

    // Plan: workgroups and partial-sum offsets per chunk.
    let mut plan = Vec::with_capacity(chunks);
    let mut partials = 0u64;
    for c in 0..chunks {
        let base = c * chunk;
        let len = chunk.min(n - base);
        let wg = workgroups_for(len as u32, max_dim)?;
        plan.push((base, len, wg, partials as u32));
        partials += u64::from(wg);
    }
    let max_partials = MAX_LOOP_TRIPS * u64::from(WORKGROUP_SIZE);
    if partials > max_partials {
        return Err(Error::DeviceLimit {
            what: "partial sums per call",
            needed: partials,
            limit: max_partials,
        });
    }

    let reduce_value = args.reduction != Reduction::None;
    let write_losses = args.reduction == Reduction::None;
    let pred = contiguous(&args.pred);
    // validate() admits only float targets for the elementwise family.
    let target = match args.target.dense() {
        Some(t) => contiguous(t),
        None => return Err(Error::Gpu("elementwise loss given class indices".into())),
    };
    let weight = Broadcast::new(args.weight.as_ref(), n, chunk);
    let pos_weight = Broadcast::new(args.pos_weight.as_ref(), n, chunk);
    let upstream = match &args.upstream {
        Upstream::Array(g) if args.want_grad => Some(contiguous(g)),
        _ => None,
    };
    let g = match args.upstream {
        Upstream::Scalar(g) => g,
        _ => 1.0,
    };
    let (grad_scale, value_scale) = match args.reduction {
        Reduction::Mean => ((f64::from(g) / n as f64) as f32, (1.0 / n as f64) as f32),
        Reduction::Sum | Reduction::None => (g, 1.0),
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
    let delta = match *loss {
        Loss::Huber { delta } => delta,
        _ => 0.0,
    };

    let ew = ctx.pipeline(kernel)?;
    let fin = if reduce_value {
        Some(ctx.pipeline(Kernel::ReducePartials)?)
    } else {
        None
    };

    let scopes = ctx.open_scopes();
    let mut taken = Taken::default();
    use wgpu::BufferUsages as U;

    // Uniform parameter blocks: one slot per chunk, then the finalize block.
    let stride = (std::mem::size_of::<ElementwiseParams>() as u64)
        .next_multiple_of(u64::from(ctx.limits.min_uniform_buffer_offset_alignment));
    let params_idx = ctx.scratch(
        &mut taken,
        "wgpu-loss params",
        stride * (chunks as u64 + 1),
        U::UNIFORM | U::COPY_DST,
    );
    let partials_idx = ctx.scratch(&mut taken, "wgpu-loss partials", partials * 4, U::STORAGE);
    let value_idx = ctx.scratch(&mut taken, "wgpu-loss value", 4, U::STORAGE | U::COPY_SRC);
    let err_idx = (kernel == Kernel::Bce).then(|| {
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
    let whole_weight = match &weight {
        Broadcast::Whole(d) => Some(ctx.upload(&mut taken, "wgpu-loss weight", d)),
        _ => None,
    };
    let whole_pos_weight = match &pos_weight {
        Broadcast::Whole(d) => Some(ctx.upload(&mut taken, "wgpu-loss pos_weight", d)),
        _ => None,
    };

    struct ChunkBufs {
        pred: usize,
        target: usize,
        upstream: Option<usize>,
        grad: Option<usize>,
        losses: Option<usize>,
        weight: Option<usize>,
        pos_weight: Option<usize>,
    }
    let mut chunk_bufs = Vec::with_capacity(chunks);
    let mut params_bytes = vec![0u8; (stride * (chunks as u64 + 1)) as usize];
    for (c, &(base, len, _wg, partial_base)) in plan.iter().enumerate() {
        let range = base..base + len;
        let full = |b: &Broadcast<'_>, taken: &mut Taken, label: &str| match b {
            Broadcast::Full(d) => Some(ctx.upload(taken, label, &d[range.clone()])),
            _ => None,
        };
        let bufs = ChunkBufs {
            pred: ctx.upload(&mut taken, "wgpu-loss pred", &pred[range.clone()]),
            target: ctx.upload(&mut taken, "wgpu-loss target", &target[range.clone()]),
            upstream: upstream
                .as_ref()
                .map(|u| ctx.upload(&mut taken, "wgpu-loss upstream", &u[range.clone()])),
            grad: args.want_grad.then(|| {
                ctx.scratch(
                    &mut taken,
                    "wgpu-loss grad",
                    len as u64 * 4,
                    U::STORAGE | U::COPY_SRC,
                )
            }),
            losses: write_losses.then(|| {
                ctx.scratch(
                    &mut taken,
                    "wgpu-loss losses",
                    len as u64 * 4,
                    U::STORAGE | U::COPY_SRC,
                )
            }),
            weight: full(&weight, &mut taken, "wgpu-loss weight").or(whole_weight),
            pos_weight: full(&pos_weight, &mut taken, "wgpu-loss pos_weight").or(whole_pos_weight),
        };
        let (w_len, w_phase) = weight.len_phase(base, len);
        let (q_len, q_phase) = pos_weight.len_phase(base, len);
        let p = ElementwiseParams {
            n: len as u32,
            partial_base,
            flags,
            index_base: base as u32,
            w_len,
            w_phase,
            q_len,
            q_phase,
            grad_scale,
            delta,
            _pad: [0; 2],
        };
        let at = (stride * c as u64) as usize;
        params_bytes[at..at + std::mem::size_of::<ElementwiseParams>()]
            .copy_from_slice(bytemuck::bytes_of(&p));
        chunk_bufs.push(bufs);
    }
    let fin_at = (stride * chunks as u64) as usize;
    let fp = FinalizeParams {
        count: partials as u32,
        scale: value_scale,
        flags: 0,
        _pad: 0,
    };
    params_bytes[fin_at..fin_at + std::mem::size_of::<FinalizeParams>()]
        .copy_from_slice(bytemuck::bytes_of(&fp));
    ctx.queue
        .write_buffer(&taken.0[params_idx].buffer, 0, &params_bytes);

    let buf = |i: usize| &taken.0[i].buffer;
    let whole = |i: usize| buf(i).as_entire_binding();
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
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-loss elementwise"),
        });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name()),
            timestamp_writes: None,
        });
        pass.set_pipeline(&ew.pipeline);
        for (c, (&(_, len, wg, _), bufs)) in plan.iter().zip(&chunk_bufs).enumerate() {
            let opt = |o: Option<usize>, slot: Slot, elems: usize| match o {
                Some(i) => sized(i, elems),
                None => ctx.dummy(slot).as_entire_binding(),
            };
            let entries: Vec<wgpu::BindGroupEntry> = kernel
                .bindings()
                .iter()
                .map(|b| wgpu::BindGroupEntry {
                    binding: b.index,
                    resource: match b.slot {
                        Slot::Params => {
                            params_at(c as u64, std::mem::size_of::<ElementwiseParams>())
                        }
                        Slot::Pred => sized(bufs.pred, len),
                        Slot::Target => sized(bufs.target, len),
                        Slot::Upstream => opt(bufs.upstream, Slot::Upstream, len),
                        Slot::Grad => opt(bufs.grad, Slot::Grad, len),
                        Slot::Losses => opt(bufs.losses, Slot::Losses, len),
                        Slot::Partials => whole(partials_idx),
                        Slot::Weight => opt(
                            bufs.weight,
                            Slot::Weight,
                            weight.len_phase(0, len).0 as usize,
                        ),
                        Slot::PosWeight => opt(
                            bufs.pos_weight,
                            Slot::PosWeight,
                            pos_weight.len_phase(0, len).0 as usize,
                        ),
                        Slot::DomainError => opt(err_idx, Slot::DomainError, 1),
                        Slot::Value => whole(value_idx),
                        // Not bindings of the elementwise kernels.
                        Slot::Norm | Slot::ClassStats => ctx.dummy(Slot::Norm).as_entire_binding(),
                    },
                })
                .collect();
            let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("wgpu-loss elementwise chunk"),
                layout: &ew.layout,
                entries: &entries,
            });
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(wg, 1, 1);
        }
        if let Some(fin) = &fin {
            let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("wgpu-loss reduce_partials"),
                layout: &fin.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params_at(chunks as u64, std::mem::size_of::<FinalizeParams>()),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: sized(partials_idx, partials as usize),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: sized(value_idx, 1),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: ctx.dummy(Slot::Norm).as_entire_binding(),
                    },
                ],
            });
            pass.set_pipeline(&fin.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }
    // Readbacks, in a fixed order: value, domain error, then per chunk grad and losses.
    let mut readbacks = Vec::new();
    if reduce_value {
        readbacks.push(ctx.record_readback(&mut encoder, buf(value_idx), 4));
    }
    if let Some(e) = err_idx {
        readbacks.push(ctx.record_readback(&mut encoder, buf(e), 4));
    }
    for (&(_, len, _, _), bufs) in plan.iter().zip(&chunk_bufs) {
        for i in [bufs.grad, bufs.losses].into_iter().flatten() {
            readbacks.push(ctx.record_readback(&mut encoder, buf(i), len as u64 * 4));
        }
    }
    let mut results = ctx
        .finish_call(encoder, scopes, readbacks, taken)?
        .into_iter();
    let mut next = || results.next().unwrap_or_default();
    let value = reduce_value.then(|| next().first().map_or(f32::NAN, |&b| f32::from_bits(b)));
    if err_idx.is_some() {
        let first = next().first().copied().unwrap_or(u32::MAX);
        if first != u32::MAX {
            let index = first as usize;
            return Err(Error::OutOfDomain {
                what: "prediction",
                index,
                value: pred.get(index).copied().unwrap_or(f32::NAN),
                domain: "[0, 1]",
            });
        }
    }
    let mut grad = args.want_grad.then(|| Vec::with_capacity(n));
    let mut losses = write_losses.then(|| Vec::with_capacity(n));
    for _ in 0..chunks {
        for out in [grad.as_mut(), losses.as_mut()].into_iter().flatten() {
            out.extend(next().into_iter().map(f32::from_bits));
        }
    }
    let (losses, grad) = LossOutput::shape_arrays(args.pred.shape(), losses, grad);
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted: n,
    })
}
