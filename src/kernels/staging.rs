//! What both kernel families share on the host: their typed scratch ([`Scratch`]), and
//! binding and recording helpers. The host-array path's transfers and submissions
//! are [`GpuContext::stream`]'s (`src/gpu/stream.rs`).

use std::sync::Arc;

use super::{Kernel, Slot};
use crate::gpu::{GpuContext, KernelPipeline, Pooled};

pub(crate) use crate::gpu::stream::{Bound, Dispatch};
pub(crate) use crate::simd::contiguous;

/// A buffer a plan's scratch can be made of: one of its own ([`wgpu::Buffer`], the resident
/// API) or one taken from the pool ([`Pooled`], the host-array path).
pub(crate) trait AsBuffer {
    fn buffer(&self) -> &wgpu::Buffer;
}

impl AsBuffer for wgpu::Buffer {
    fn buffer(&self) -> &wgpu::Buffer {
        self
    }
}

impl AsBuffer for Pooled {
    fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

/// The buffers a planned call owns besides the arrays it reads and writes, by what they hold
/// (both families; the row-wise ones only in row-wise plans).
pub(crate) struct Scratch<B> {
    /// The uniform parameter blocks: one per chunk (and per pass), then the closing ones.
    pub params: B,
    /// One partial sum per workgroup of the loss dispatches.
    pub partials: B,
    /// Row-wise: the scales `(D, g/D, 1/D, zero flag)`, a uniform.
    pub norm: Option<B>,
    /// Class-index targets: the pre-pass's partial weight sums.
    pub class_partials: Option<B>,
    /// Class-index targets: the first out-of-range row and the rows counted (atomics).
    pub stats: Option<B>,
    /// BCE and categorical cross entropy: the first out-of-domain index (an atomic).
    pub domain_error: Option<B>,
}

/// What [`Scratch::new`] asks for, per buffer: a label, a size in bytes and a usage.
pub(crate) type Alloc<'f, B> = dyn FnMut(&'static str, u64, wgpu::BufferUsages) -> B + 'f;

impl<B: AsBuffer> Scratch<B> {
    /// The scratch of a plan with `params` bytes of parameter blocks and `partials` partial
    /// sums, with the optional buffers it uses.
    pub(crate) fn new(
        alloc: &mut Alloc<'_, B>,
        params: u64,
        partials: u64,
        rows: bool,
        class_partials: Option<u64>,
        domain_error: bool,
    ) -> Self {
        use wgpu::BufferUsages as U;
        let atomics = U::STORAGE | U::COPY_DST | U::COPY_SRC;
        Scratch {
            params: alloc("wgpu-loss params", params, U::UNIFORM | U::COPY_DST),
            partials: alloc("wgpu-loss partials", (partials * 4).max(4), U::STORAGE),
            norm: rows.then(|| alloc("wgpu-loss norm", 16, U::STORAGE | U::UNIFORM | U::COPY_DST)),
            class_partials: class_partials
                .map(|n| alloc("wgpu-loss class partials", (n * 4).max(4), U::STORAGE)),
            stats: class_partials.map(|_| alloc("wgpu-loss class stats", 8, atomics)),
            domain_error: domain_error.then(|| alloc("wgpu-loss domain error", 4, atomics)),
        }
    }

    /// The buffers, bound with the call's `value` output where it has one.
    pub(crate) fn refs<'a>(&'a self, value: Option<Bound<'a>>) -> ScratchRefs<'a> {
        ScratchRefs {
            params: self.params.buffer(),
            partials: self.partials.buffer(),
            norm: self.norm.as_ref().map(AsBuffer::buffer),
            class_partials: self.class_partials.as_ref().map(AsBuffer::buffer),
            stats: self.stats.as_ref().map(AsBuffer::buffer),
            domain_error: self.domain_error.as_ref().map(AsBuffer::buffer),
            value,
        }
    }

    /// Every buffer, for giving them back.
    pub(crate) fn into_buffers(self) -> impl Iterator<Item = B> {
        [self.params, self.partials]
            .into_iter()
            .chain(self.norm)
            .chain(self.class_partials)
            .chain(self.stats)
            .chain(self.domain_error)
    }

    /// How many buffers there are.
    pub(crate) fn len(&self) -> usize {
        2 + [
            self.norm.is_some(),
            self.class_partials.is_some(),
            self.stats.is_some(),
            self.domain_error.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count()
    }
}

/// A call's scratch as the bind functions see it, with the value it writes.
#[derive(Clone, Copy)]
pub(crate) struct ScratchRefs<'a> {
    pub params: &'a wgpu::Buffer,
    pub partials: &'a wgpu::Buffer,
    pub norm: Option<&'a wgpu::Buffer>,
    pub class_partials: Option<&'a wgpu::Buffer>,
    pub stats: Option<&'a wgpu::Buffer>,
    pub domain_error: Option<&'a wgpu::Buffer>,
    /// `[1]` the value (Mean, Sum).
    pub value: Option<Bound<'a>>,
}

impl<'a> ScratchRefs<'a> {
    /// The atomics every step starts from zero: class stats, domain error.
    pub(crate) fn atomics(&self) -> Vec<&'a wgpu::Buffer> {
        [self.stats, self.domain_error]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// `o` bound, or the placeholder of `slot`.
pub(crate) fn or_dummy<'b>(
    ctx: &'b GpuContext,
    o: Option<Bound<'b>>,
    slot: Slot,
) -> wgpu::BindingResource<'b> {
    match o {
        Some(b) => b.resource(),
        None => ctx
            .placeholder(slot == Slot::Norm, slot as usize)
            .as_entire_binding(),
    }
}

/// A loss value read back: the first word's f32 (NaN if there is none).
pub(crate) fn first_f32(words: Option<Vec<u32>>) -> f32 {
    words
        .and_then(|w| w.first().copied())
        .map_or(f32::NAN, f32::from_bits)
}

/// The closing dispatch of a call that reduces: `reduce_partials` adds `partials` into
/// `value`, with its parameter block bound at `params` and the scales of `norm` (row-wise
/// calls; the placeholder otherwise).
pub(crate) fn closing_dispatch(
    ctx: &GpuContext,
    fin: &Arc<KernelPipeline>,
    params: wgpu::BindingResource<'_>,
    partials: &wgpu::Buffer,
    value: Bound<'_>,
    norm: Option<&wgpu::Buffer>,
) -> Dispatch {
    let params = std::cell::Cell::new(Some(params));
    let group = bind_group(
        ctx,
        Kernel::ReducePartials,
        &fin.layout,
        &|slot| match slot {
            Slot::Params => params
                .take()
                .unwrap_or_else(|| ctx.placeholder(true, 0).as_entire_binding()),
            Slot::Partials => partials.as_entire_binding(),
            Slot::Value => value.resource(),
            _ => norm.unwrap_or(ctx.placeholder(true, 0)).as_entire_binding(),
        },
    );
    Dispatch {
        pipeline: Arc::clone(fin),
        group,
        workgroups: 1,
    }
}

/// Decodes the "first offending row" atomics (`u32::MAX − row`, 0 for none).
pub(crate) fn first_row(word: u32) -> Option<usize> {
    (word != 0).then(|| (u32::MAX - word) as usize)
}

/// A bind group for `kernel` with each binding's resource chosen by its slot.
pub(crate) fn bind_group<'a>(
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

/// Records one call: clears `clears` (the first-offender atomics, which start from zero), then
/// one compute pass with every dispatch in order.
pub(crate) fn encode_dispatches(
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    clears: &[&wgpu::Buffer],
    dispatches: &[Dispatch],
) {
    for b in clears {
        encoder.clear_buffer(b, 0, None);
    }
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    dispatch_into(&mut pass, dispatches);
}

/// Records `dispatches` in order into an open compute pass (its pipeline and bind group 0 are
/// left set to the last dispatch's).
pub(crate) fn dispatch_into(pass: &mut wgpu::ComputePass<'_>, dispatches: &[Dispatch]) {
    for d in dispatches {
        pass.set_pipeline(&d.pipeline.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.workgroups, 1, 1);
    }
}
