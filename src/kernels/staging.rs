//! What both kernel families share on the host: the scratch buffers a call takes from the
//! pool, and binding and recording helpers. The host-array path's transfers and submissions
//! are [`GpuContext::stream`]'s (`src/gpu/stream.rs`).

use std::sync::Arc;

use super::{Kernel, Slot};
use crate::gpu::{GpuContext, KernelPipeline, Pooled};

pub(crate) use crate::gpu::stream::{Bound, Dispatch};
pub(crate) use crate::loss::contiguous;

/// Scratch buffers taken for one call; all go back to the pool at the end.
#[derive(Default)]
pub(crate) struct Taken(pub(crate) Vec<Pooled>);

impl GpuContext {
    /// Takes a scratch buffer of `size` bytes from the pool into `taken`; returns its index.
    pub(crate) fn scratch(
        &self,
        taken: &mut Taken,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> usize {
        let p = self.pool.take(
            &self.device,
            label,
            size,
            usage,
            self.limits.max_buffer_size,
        );
        taken.0.push(p);
        taken.0.len() - 1
    }

    /// Gives a call's scratch buffers back to the pool.
    pub(crate) fn give_back(&self, taken: Taken) {
        for p in taken.0 {
            self.pool.give_back(p);
        }
    }
}

/// A scratch buffer a plan asks for (`RowPlan::scratch_sizes`, `EwPlan::scratch_sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScratchKind {
    Params,
    Partials,
    ClassPartials,
    Norm,
    Stats,
    DomainError,
}

/// `o` bound, or the placeholder of `slot`.
pub(crate) fn or_dummy<'b>(
    ctx: &'b GpuContext,
    o: Option<Bound<'b>>,
    slot: Slot,
) -> wgpu::BindingResource<'b> {
    match o {
        Some(b) => b.resource(),
        None => ctx.dummy(slot).as_entire_binding(),
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
                .unwrap_or_else(|| ctx.dummy(Slot::Norm).as_entire_binding()),
            Slot::Partials => partials.as_entire_binding(),
            Slot::Value => value.resource(),
            _ => norm.unwrap_or(ctx.dummy(Slot::Norm)).as_entire_binding(),
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
