//! What both kernel families share on the host: buffers taken from the pool for a call, bound
//! buffer ranges, recorded dispatches, and the tail of a call (submit, scopes, readback).

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Kernel, Slot};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, KernelPipeline, Pooled, Readback, Upload};

use crate::gpu::readback::{extend_f32, words};
pub(crate) use crate::loss::contiguous;

/// Buffers taken for one call; all go back to the pool at the end.
#[derive(Default)]
pub(crate) struct Taken(pub(crate) Vec<Pooled>);

impl GpuContext {
    /// Takes a storage buffer for `data` and stages the upload of `data` into it (see
    /// [`GpuContext::stage_upload`]); [`GpuContext::write_uploads`] copies every staged upload
    /// in. Returns the buffer's index in `taken`.
    pub(crate) fn upload<'d, T: bytemuck::Pod>(
        &self,
        taken: &mut Taken,
        uploads: &mut Vec<Upload<'d>>,
        label: &str,
        data: &'d [T],
    ) -> usize {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let p = self.pool.take(
            &self.device,
            label,
            bytes.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            self.limits.max_buffer_size,
        );
        taken.0.push(p);
        let dst = taken.0.len() - 1;
        uploads.push(self.stage_upload(dst, bytes));
        dst
    }

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
}

/// The error scopes a call records under: validation and out-of-memory.
pub(crate) struct Scopes {
    validation: wgpu::ErrorScopeGuard,
    oom: wgpu::ErrorScopeGuard,
}

impl GpuContext {
    /// Opens the error scopes of one call; [`GpuContext::finish_call`] closes them.
    pub(crate) fn open_scopes(&self) -> Scopes {
        Scopes {
            validation: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
            oom: self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        }
    }

    /// Submits `encoder`, closes the call's error scopes, reads back what `results` recorded
    /// into it, and gives every taken buffer back to the pool, whatever happens.
    ///
    /// # Errors
    /// [`Error::Gpu`] for a validation or out-of-memory error in the call; the readback's
    /// [`Error::Map`] or [`Error::Poll`].
    pub(crate) fn finish_call(
        &self,
        encoder: wgpu::CommandEncoder,
        scopes: Scopes,
        taken: Taken,
        results: &mut Results,
    ) -> Result<()> {
        self.queue.submit([encoder.finish()]);
        // Scopes close in the reverse order of opening.
        let oom = pollster::block_on(scopes.oom.pop());
        let validation = pollster::block_on(scopes.validation.pop());
        let readbacks = std::mem::take(&mut results.readbacks);
        let read = self.finish_readbacks(readbacks, &mut |i, bytes| results.take(i, bytes));
        for p in taken.0 {
            self.pool.give_back(p);
        }
        if let Some(e) = validation.or(oom) {
            return Err(Error::Gpu(e.to_string()));
        }
        read
    }
}

/// What one readback of a call becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadInto {
    /// A few words (the value, atomics): kept, in order, for [`Results::next_words`].
    Words,
    /// The next chunk of the gradient, appended to [`Results::grad`].
    Grad,
    /// The next chunk of the losses, appended to [`Results::losses`].
    Losses,
}

/// The readbacks of one call and where each goes. The gradient and the losses are copied
/// straight from the mapped staging buffers into the output vectors (allocated once, at their
/// full length), chunk after chunk, so a call makes no intermediate copy of them.
pub(crate) struct Results {
    readbacks: Vec<Readback>,
    into: Vec<ReadInto>,
    /// The small readbacks, in the order they were recorded.
    words: VecDeque<Vec<u32>>,
    /// The gradient, if asked for.
    pub(crate) grad: Option<Vec<f32>>,
    /// The per-element or per-row losses, if asked for.
    pub(crate) losses: Option<Vec<f32>>,
}

impl Results {
    /// Results with room for a gradient of `grad` elements and `losses` losses.
    pub(crate) fn new(grad: Option<usize>, losses: Option<usize>) -> Self {
        Results {
            readbacks: Vec::new(),
            into: Vec::new(),
            words: VecDeque::new(),
            grad: grad.map(Vec::with_capacity),
            losses: losses.map(Vec::with_capacity),
        }
    }

    /// Records a readback of the first `size` bytes of `src` into `encoder`, going `into`.
    pub(crate) fn record(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        size: u64,
        into: ReadInto,
    ) {
        self.readbacks.push(ctx.record_readback(encoder, src, size));
        self.into.push(into);
    }

    /// The next small readback, in the order they were recorded (empty once they are all
    /// taken, or if the call failed).
    pub(crate) fn next_words(&mut self) -> Vec<u32> {
        self.words.pop_front().unwrap_or_default()
    }

    /// The next small readback as the loss value: its first word's f32 (NaN if it is empty).
    pub(crate) fn next_value(&mut self) -> f32 {
        self.next_words()
            .first()
            .map_or(f32::NAN, |&b| f32::from_bits(b))
    }

    /// Takes the mapped bytes of readback `i`.
    fn take(&mut self, i: usize, bytes: &[u8]) {
        match self.into.get(i) {
            Some(ReadInto::Words) => self.words.push_back(words(bytes)),
            Some(ReadInto::Grad) => {
                if let Some(g) = self.grad.as_mut() {
                    extend_f32(g, bytes);
                }
            }
            Some(ReadInto::Losses) => {
                if let Some(l) = self.losses.as_mut() {
                    extend_f32(l, bytes);
                }
            }
            None => {}
        }
    }
}

/// A buffer range bound as an array of `elems` 32-bit words starting at byte `offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub elems: usize,
}

impl<'a> Bound<'a> {
    pub(crate) fn whole(buffer: &'a wgpu::Buffer, elems: usize) -> Self {
        Bound {
            buffer,
            offset: 0,
            elems,
        }
    }

    pub(crate) fn resource(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.elems as u64 * 4),
        })
    }
}

/// One recorded dispatch: its pipeline, bind group and workgroup count.
pub(crate) struct Dispatch {
    pub pipeline: Arc<KernelPipeline>,
    pub group: wgpu::BindGroup,
    pub workgroups: u32,
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
