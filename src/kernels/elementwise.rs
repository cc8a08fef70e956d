//! Host side of the elementwise family (`shaders/common/elementwise.wgsl` + one file per loss):
//! plans chunks and workgroups, uploads, records the dispatches, reads the results back.
//!
//! One call is, per chunk of at most one storage binding of elements, one dispatch that reads
//! `p` and `t` once and writes the gradient and one partial sum per workgroup; then one
//! `reduce_partials` dispatch adds all partials in a fixed order. No float atomics, so the
//! same inputs give the same bits on the same device.

use std::borrow::Cow;
use std::sync::Arc;

use ndarray::ArrayViewD;

use super::host::{self, HostPlan};
use super::staging::{
    Alloc, AsBuffer, Bound, Dispatch, Scratch, ScratchRefs, bind_group, closing_dispatch,
    contiguous, encode_dispatches, or_dummy,
};
use super::{Io, Kernel, Slot, WORKGROUP_SIZE};
use crate::error::{Error, Result};
use crate::gpu::stream::{Dest, Outputs, Sink, Step};
use crate::gpu::{GpuContext, KernelPipeline};
use crate::loss::{Loss, LossArgs, LossOutput, Reduction, Upstream};

/// Most workgroups one chunk's dispatch uses on a GPU; the grid-stride loop covers the rest.
/// (CPU adapters size the grid by [`CPU_ELEMENTS_PER_LANE`] instead.)
pub const MAX_WORKGROUPS_PER_CHUNK: u32 = 4096;

/// Most trips of any kernel loop. llvmpipe silently ends a loop after 65 535 iterations, so
/// every loop is sized to stay far below; the planner refuses inputs that would not.
pub const MAX_LOOP_TRIPS: u64 = 16_384;

/// `Ok` where a loop of `trips` trips stays within [`MAX_LOOP_TRIPS`].
///
/// # Errors
/// [`Error::DeviceLimit`] naming `what` where it would not.
pub(crate) fn check_trips(what: &'static str, trips: u64) -> Result<()> {
    if trips > MAX_LOOP_TRIPS {
        return Err(Error::DeviceLimit {
            what,
            needed: trips,
            limit: MAX_LOOP_TRIPS,
        });
    }
    Ok(())
}

/// Mirrors `Params` in `shaders/common/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ElementwiseParams {
    pub n: u32,
    pub partial_base: u32,
    pub index_base: u32,
    pub w_len: u32,
    pub w_phase: u32,
    pub q_len: u32,
    pub q_phase: u32,
    pub grad_scale: f32,
    /// The loss's `LossParams` (`src/losses/<loss>.rs`, `params`).
    pub loss: [f32; 4],
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

/// Elements (units, for 16-bit storage) each lane of an elementwise dispatch aims to handle on
/// a CPU adapter (llvmpipe): a workgroup costs about 2 µs to start there, and a grid-stride
/// loop of 8 trips amortises it while keeping few concurrent streams per lane
/// (`docs/TUNING.md`: 1.6–2.0× faster than one element per lane up to 4096 workgroups, from
/// 2^16 to 2^25 elements). GPUs keep one element per lane.
pub const CPU_ELEMENTS_PER_LANE: u32 = 8;

/// vec4 units each lane aims to handle on a CPU adapter when the arrays are moved a vec4 at a
/// time (`docs/TUNING.md`: 4 vec4 trips per lane was the best grid, 1.1–1.3× faster than 2
/// or 8).
pub const CPU_VEC4S_PER_LANE: u32 = 4;

/// The elementwise driver's pipeline switches for `spec` (`override`s in
/// `shaders/common/elementwise.wgsl`), then the loss's own (`LossDef::switches`).
fn ew_switches(spec: &EwSpec) -> Vec<(&'static str, bool)> {
    let mut switches = vec![
        ("WRITE_GRAD", spec.want_grad),
        ("WRITE_LOSSES", spec.reduction == Reduction::None),
        ("UPSTREAM_ARRAY", spec.upstream_array && spec.want_grad),
        ("WEIGHT", spec.weight.is_some()),
        ("POS_WEIGHT", spec.pos_weight.is_some()),
    ];
    switches.extend_from_slice(crate::losses::def(&spec.loss).switches(&spec.loss));
    switches
}

/// Workgroups for a chunk of `n` elements: one element per invocation up to
/// [`MAX_WORKGROUPS_PER_CHUNK`], then a grid-stride loop.
pub(crate) fn workgroups_for(n: u32, max_per_dim: u32) -> Result<u32> {
    grid_for(n, max_per_dim, 1, MAX_WORKGROUPS_PER_CHUNK)
}

/// Workgroups for `n` elements at `per_lane` elements per invocation, at most `max_wg`.
fn grid_for(n: u32, max_per_dim: u32, per_lane: u32, max_wg: u32) -> Result<u32> {
    let wg = n
        .div_ceil(WORKGROUP_SIZE * per_lane)
        .clamp(1, max_wg.min(max_per_dim));
    let trips = u64::from(n).div_ceil(u64::from(wg) * u64::from(WORKGROUP_SIZE));
    check_trips("grid-stride loop trips per invocation", trips)?;
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
}

/// How a broadcast input (weight, pos_weight) is planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BroadcastPlan {
    /// As long as the prediction: chunked alongside it.
    Full,
    /// `len` elements bound whole; element i uses `[(base + i) % len]`.
    Whole(usize),
}

impl BroadcastPlan {
    fn of(b: &Broadcast<'_>) -> Option<Self> {
        match b {
            Broadcast::Absent => None,
            Broadcast::Full(_) => Some(BroadcastPlan::Full),
            Broadcast::Whole(d) => Some(BroadcastPlan::Whole(d.len())),
        }
    }

    /// `(len, phase)` for the params block of the chunk starting at `base` with `n` elements.
    fn len_phase(this: Option<Self>, base: usize, n: usize) -> (u32, u32) {
        match this {
            None => (0, 0),
            Some(BroadcastPlan::Full) => (n as u32, 0),
            Some(BroadcastPlan::Whole(len)) => (len as u32, (base % len) as u32),
        }
    }
}

/// An elementwise call without its buffers: the loss, the size and every option.
#[derive(Clone, Debug)]
pub(crate) struct EwSpec {
    pub loss: Loss,
    pub n: usize,
    pub weight: Option<BroadcastPlan>,
    pub pos_weight: Option<BroadcastPlan>,
    pub reduction: Reduction,
    /// The divisor of a dividing reduction: `N` unless the call fixes it (`BatchMean`).
    pub divisor: f64,
    pub upstream_array: bool,
    pub g: f32,
    pub want_grad: bool,
    /// How p, t and the gradient are stored.
    pub io: Io,
}

/// One chunk of at most one storage binding of elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EwChunk {
    pub base: usize,
    pub len: usize,
    workgroups: u32,
}

/// An elementwise call planned: chunks, workgroups, parameter blocks and pipelines.
pub(crate) struct EwPlan {
    spec: EwSpec,
    kernel: Kernel,
    chunks: Vec<EwChunk>,
    partials: u64,
    stride: u64,
    params: Vec<u8>,
    ew_pipe: Arc<KernelPipeline>,
    fin_pipe: Option<Arc<KernelPipeline>>,
}

/// The buffers of one chunk.
pub(crate) struct EwChunkBufs<'a> {
    pub pred: Bound<'a>,
    pub target: Bound<'a>,
    pub upstream: Option<Bound<'a>>,
    pub grad: Option<Bound<'a>>,
    pub losses: Option<Bound<'a>>,
    pub weight: Option<Bound<'a>>,
    pub pos_weight: Option<Bound<'a>>,
}

impl EwPlan {
    /// Plans `spec` with chunks of at most `chunk_elems` elements.
    ///
    /// # Errors
    /// [`Error::DeviceLimit`] for 2^32 − 1 elements or more, or too many partial sums;
    /// pipeline errors.
    pub(crate) fn new(ctx: &GpuContext, spec: EwSpec, chunk_elems: usize) -> Result<Self> {
        let kernel = Kernel::for_loss(&spec.loss);
        let n = spec.n;
        if n >= u32::MAX as usize {
            return Err(Error::DeviceLimit {
                what: "elements per call",
                needed: n as u64,
                limit: u64::from(u32::MAX) - 1,
            });
        }
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        // Arrays whose every chunk is a whole number of vec4 units (4 f32 or 8 16-bit
        // elements) move 16 bytes per lane per array per trip (`docs/TUNING.md`: f32
        // 1.2–1.27× on llvmpipe; 16-bit: "16-bit storage a vec4 of words at a time").
        let io = spec.io.with_vec4_if_whole(&[n, chunk_elems]);
        let cpu = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
        let (per_lane, max_wg) = match (cpu, io.vec4) {
            (true, true) => (CPU_VEC4S_PER_LANE, u32::MAX),
            (true, false) => (CPU_ELEMENTS_PER_LANE, u32::MAX),
            (false, _) => (1, MAX_WORKGROUPS_PER_CHUNK),
        };
        let mut chunks = Vec::with_capacity(n.div_ceil(chunk_elems));
        let mut partials = 0u64;
        let mut base = 0;
        // Elements per unit (per invocation per trip): 4 or 8 for vec4, 2 for 16-bit words.
        let per_unit = io.per_unit();
        if io.input.per_word() > 1 && n > chunk_elems {
            // 16-bit storage is bound whole (the resident API): a chunk boundary could fall
            // inside a word.
            return Err(Error::DeviceLimit {
                what: "16-bit elements bound at once",
                needed: n as u64,
                limit: chunk_elems as u64,
            });
        }
        while base < n {
            let len = chunk_elems.min(n - base);
            // One invocation per unit of the chunk.
            let workgroups = grid_for(len.div_ceil(per_unit) as u32, max_dim, per_lane, max_wg)?;
            chunks.push(EwChunk {
                base,
                len,
                workgroups,
            });
            partials += u64::from(workgroups);
            base += len;
        }
        let max_partials = MAX_LOOP_TRIPS * u64::from(WORKGROUP_SIZE);
        if partials > max_partials {
            return Err(Error::DeviceLimit {
                what: "partial sums per call",
                needed: partials,
                limit: max_partials,
            });
        }
        let g = spec.g;
        let (grad_scale, value_scale) = if spec.reduction.divides() {
            let (gs, vs) = crate::loss::divided_scales(f64::from(g), spec.divisor);
            (gs as f32, vs as f32)
        } else {
            (g, 1.0)
        };
        let loss_params = crate::losses::def(&spec.loss).params(&spec.loss);
        // Uniform parameter blocks: one slot per chunk, then the finalize block.
        let stride = (std::mem::size_of::<ElementwiseParams>() as u64)
            .next_multiple_of(u64::from(ctx.limits.min_uniform_buffer_offset_alignment));
        let count = chunks.len() as u64;
        let mut params = vec![0u8; (stride * (count + 1)) as usize];
        let mut partial_base = 0u32;
        for (c, ch) in chunks.iter().enumerate() {
            let (w_len, w_phase) = BroadcastPlan::len_phase(spec.weight, ch.base, ch.len);
            let (q_len, q_phase) = BroadcastPlan::len_phase(spec.pos_weight, ch.base, ch.len);
            let p = ElementwiseParams {
                n: ch.len as u32,
                partial_base,
                index_base: ch.base as u32,
                w_len,
                w_phase,
                q_len,
                q_phase,
                grad_scale,
                loss: loss_params,
            };
            let at = (stride * c as u64) as usize;
            params[at..at + std::mem::size_of::<ElementwiseParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
            partial_base += ch.workgroups;
        }
        let at = (stride * count) as usize;
        params[at..at + std::mem::size_of::<FinalizeParams>()].copy_from_slice(bytemuck::bytes_of(
            &FinalizeParams {
                count: partials as u32,
                scale: value_scale,
                flags: 0,
                _pad: 0,
            },
        ));
        Ok(EwPlan {
            ew_pipe: crate::kernels::pipeline::pipeline_switched(
                ctx,
                kernel,
                io,
                &ew_switches(&spec),
            )?,
            fin_pipe: (spec.reduction != Reduction::None)
                .then(|| crate::kernels::pipeline::pipeline(ctx, Kernel::ReducePartials))
                .transpose()?,
            spec,
            kernel,
            chunks,
            partials,
            stride,
            params,
        })
    }

    pub(crate) fn chunks(&self) -> &[EwChunk] {
        &self.chunks
    }

    /// The plan's scratch buffers, each made by `alloc`.
    pub(crate) fn scratch<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B> {
        Scratch::new(
            alloc,
            self.params.len() as u64,
            self.partials,
            false,
            None,
            self.spec.loss.checks_domain(),
        )
    }

    /// Writes the parameter blocks through the queue (effective at the next submission).
    pub(crate) fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>) {
        queue.write_buffer(scratch.params, 0, &self.params);
    }

    /// The bind groups of one call over `chunks` (one per plan chunk): every chunk's
    /// dispatch, then the closing reduction.
    pub(crate) fn bind(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        chunks: &[EwChunkBufs<'_>],
    ) -> Vec<Dispatch> {
        let mut out: Vec<Dispatch> = chunks
            .iter()
            .enumerate()
            .map(|(c, bf)| self.bind_chunk(ctx, scratch, c, bf))
            .collect();
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

    /// The dispatch of chunk `c` over its buffers.
    pub(crate) fn bind_chunk(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        c: usize,
        bf: &EwChunkBufs<'_>,
    ) -> Dispatch {
        let group = bind_group(ctx, self.kernel, &self.ew_pipe.layout, &|slot| match slot {
            Slot::Params => {
                self.params_at(scratch, c as u64, std::mem::size_of::<ElementwiseParams>())
            }
            Slot::Pred => bf.pred.resource(),
            Slot::Target => bf.target.resource(),
            Slot::Upstream => or_dummy(ctx, bf.upstream, Slot::Upstream),
            Slot::Grad => or_dummy(ctx, bf.grad, Slot::Grad),
            Slot::Losses => or_dummy(ctx, bf.losses, Slot::Losses),
            Slot::Partials => scratch.partials.as_entire_binding(),
            Slot::Weight => or_dummy(ctx, bf.weight, Slot::Weight),
            Slot::PosWeight => or_dummy(ctx, bf.pos_weight, Slot::PosWeight),
            Slot::DomainError => match scratch.domain_error {
                Some(e) => e.as_entire_binding(),
                None => ctx
                    .placeholder(false, Slot::DomainError as usize)
                    .as_entire_binding(),
            },
            // Not bindings of the elementwise kernels.
            _ => ctx.placeholder(true, 0).as_entire_binding(),
        });
        Dispatch {
            pipeline: Arc::clone(&self.ew_pipe),
            group,
            workgroups: self.chunks[c].workgroups,
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
        let at = self.chunks.len() as u64;
        let params = self.params_at(scratch, at, std::mem::size_of::<FinalizeParams>());
        Some(closing_dispatch(
            ctx,
            fin,
            params,
            scratch.partials,
            value,
            None,
        ))
    }

    /// Records one call: clears the domain-error atomic, then one compute pass.
    pub(crate) fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        scratch: &ScratchRefs<'_>,
        dispatches: &[Dispatch],
    ) {
        encode_dispatches(encoder, self.kernel.name(), &scratch.atomics(), dispatches);
    }
}

impl HostPlan for EwPlan {
    fn label(&self) -> &'static str {
        self.kernel.name()
    }

    fn scratch_in<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B> {
        self.scratch(alloc)
    }

    fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>) {
        EwPlan::write_constants(self, queue, scratch);
    }

    fn reduces(&self) -> bool {
        self.fin_pipe.is_some()
    }

    /// Inputs `[p, t, upstream?, weight?, pos_weight?]` (the broadcast ones as long as p),
    /// outputs `[grad?, losses?]`; bound whole `[weight?, pos_weight?]` (the shorter ones).
    fn record_step(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        whole: &[Bound<'_>],
        k: usize,
        ins: &[Bound<'_>],
        outs: &[Bound<'_>],
    ) -> Vec<Dispatch> {
        let mut ins = ins.iter().copied();
        let mut whole = whole.iter().copied();
        let mut outs = outs.iter().copied();
        let (pred, target) = (ins.next(), ins.next());
        let upstream = if self.spec.upstream_array {
            ins.next()
        } else {
            None
        };
        let mut broadcast = |plan: Option<BroadcastPlan>| match plan {
            Some(BroadcastPlan::Full) => ins.next(),
            Some(BroadcastPlan::Whole(_)) => whole.next(),
            None => None,
        };
        let weight = broadcast(self.spec.weight);
        let pos_weight = broadcast(self.spec.pos_weight);
        let (Some(pred), Some(target)) = (pred, target) else {
            return Vec::new();
        };
        let bufs = EwChunkBufs {
            pred,
            target,
            upstream,
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
            weight,
            pos_weight,
        };
        vec![self.bind_chunk(ctx, scratch, k, &bufs)]
    }

    fn closing(&self, ctx: &GpuContext, scratch: &ScratchRefs<'_>) -> Option<Dispatch> {
        self.bind_closing(ctx, scratch)
    }
}

/// Runs an elementwise loss on host arrays: the plan's chunks streamed through
/// [`GpuContext::stream`] (inputs in, gradient and losses out; the gradient into `into` where
/// given, the caller's array of `n` elements), then the value and the domain check read back.
pub(crate) fn run(
    ctx: &GpuContext,
    loss: &Loss,
    args: &LossArgs<'_>,
    into: Option<&mut [f32]>,
) -> Result<LossOutput<f32>> {
    args.validate(loss)?;
    let n = args.len();
    // Before touching the data: a broadcast view this large would be materialised below.
    if n >= u32::MAX as usize {
        return Err(Error::DeviceLimit {
            what: "elements per call",
            needed: n as u64,
            limit: u64::from(u32::MAX) - 1,
        });
    }
    let pred = contiguous(&args.pred);
    // validate() admits only float targets for the elementwise family.
    let target = match args.target.dense() {
        Some(t) => contiguous(t),
        None => return Err(Error::Gpu("elementwise loss given class indices".into())),
    };
    let upstream = match &args.upstream {
        Upstream::Array(g) if args.want_grad => Some(contiguous(g)),
        _ => None,
    };
    let write_losses = args.reduction == Reduction::None;
    // Chunks sized for the streams of 4 bytes per element: p, t, and each optional one,
    // counting a broadcast weight as one when it is too long to bind whole (it is expanded).
    let chunk_for = |limit: usize| {
        let full = |w: Option<&ArrayViewD<'_, f32>>| w.is_some_and(|w| w.len() > limit);
        let streams = 2
            + usize::from(upstream.is_some())
            + usize::from(full(args.weight.as_ref()))
            + usize::from(full(args.pos_weight.as_ref()))
            + usize::from(args.want_grad)
            + usize::from(write_losses);
        ctx.stream_chunk_elements(4.0 * streams as f64)
    };
    let first = chunk_for(n - 1);
    let chunk = chunk_for(first);
    let weight = Broadcast::new(args.weight.as_ref(), n, chunk);
    let pos_weight = Broadcast::new(args.pos_weight.as_ref(), n, chunk);
    let spec = EwSpec {
        loss: *loss,
        n,
        weight: BroadcastPlan::of(&weight),
        pos_weight: BroadcastPlan::of(&pos_weight),
        reduction: args.reduction,
        divisor: args.fixed_divisor().unwrap_or(n as f64),
        upstream_array: upstream.is_some(),
        g: match args.upstream {
            Upstream::Scalar(g) => g,
            _ => 1.0,
        },
        want_grad: args.want_grad,
        io: Io::F32,
    };
    let plan = EwPlan::new(ctx, spec, chunk)?;
    let write_losses = args.reduction == Reduction::None;
    fn bytes(d: &[f32]) -> &[u8] {
        bytemuck::cast_slice(d)
    }
    // Each step's inputs: p, t, the upstream rows, the broadcast inputs as long as p (the
    // order `record_step` reads them in); the shorter broadcast inputs are bound whole.
    let steps: Vec<Step<'_>> = plan
        .chunks()
        .iter()
        .map(|ch| {
            let r = ch.base..ch.base + ch.len;
            let mut inputs = vec![bytes(&pred[r.clone()]), bytes(&target[r.clone()])];
            inputs.extend(upstream.as_ref().map(|u| bytes(&u[r.clone()])));
            for b in [&weight, &pos_weight] {
                if let Broadcast::Full(d) = b {
                    inputs.push(bytes(&d[r.clone()]));
                }
            }
            let size = ch.len as u64 * 4;
            let mut outputs = Vec::new();
            if args.want_grad {
                outputs.push((size, Sink::Grad));
            }
            if write_losses {
                outputs.push((size, Sink::Losses));
            }
            Step { inputs, outputs }
        })
        .collect();
    let whole: Vec<&[u8]> = [&weight, &pos_weight]
        .into_iter()
        .filter_map(|b| match b {
            Broadcast::Whole(d) => Some(bytes(d)),
            _ => None,
        })
        .collect();
    let mut out = Outputs::new(
        args.want_grad.then(|| Dest::new(n, into)),
        write_losses.then_some(n),
    );
    let found = host::run(ctx, &plan, &whole, steps, &mut out)?;
    if let Some(index) = found.out_of_domain {
        return Err(Error::OutOfDomain {
            what: "prediction",
            index,
            value: pred.get(index).copied().unwrap_or(f32::NAN),
            domain: "[0, 1]",
        });
    }
    let value = found.value;
    let (losses, grad) = LossOutput::shape_arrays(
        args.pred.shape(),
        out.losses,
        out.grad.and_then(Dest::into_fresh),
    );
    Ok(LossOutput {
        value,
        losses,
        grad,
        counted: n,
        lse: None,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// `ElementwiseParams`, `FinalizeParams` and the flags against the WGSL they mirror.
    #[test]
    fn mirrors_match_the_shaders() {
        let members = [
            ("n", offset_of!(ElementwiseParams, n)),
            ("partial_base", offset_of!(ElementwiseParams, partial_base)),
            ("index_base", offset_of!(ElementwiseParams, index_base)),
            ("w_len", offset_of!(ElementwiseParams, w_len)),
            ("w_phase", offset_of!(ElementwiseParams, w_phase)),
            ("q_len", offset_of!(ElementwiseParams, q_len)),
            ("q_phase", offset_of!(ElementwiseParams, q_phase)),
            ("grad_scale", offset_of!(ElementwiseParams, grad_scale)),
            ("loss", offset_of!(ElementwiseParams, loss)),
        ];
        let family = |d: &&&dyn crate::losses::LossDef| {
            matches!(d.family(), crate::losses::Family::Elementwise(_))
        };
        for d in crate::losses::REGISTRY.iter().filter(family) {
            let k = Kernel::Loss(d.stem());
            super::super::mirror::check(k, &members, size_of::<ElementwiseParams>(), &[]);
        }
        super::super::mirror::check(
            Kernel::ReducePartials,
            &[
                ("count", offset_of!(FinalizeParams, count)),
                ("scale", offset_of!(FinalizeParams, scale)),
                ("flags", offset_of!(FinalizeParams, flags)),
            ],
            size_of::<FinalizeParams>(),
            &[("FLAG_SCALE_FROM_NORM", FLAG_SCALE_FROM_NORM)],
        );
    }
}
