//! The host-array path's executor: one loop, written once for both kernel families, that
//! streams host arrays through a fixed ring of chunk buffers and the results back out.
//!
//! A call is a list of [`Step`]s (one per chunk, and per pass for calls of two passes), each
//! with the host bytes of its inputs and the sizes of its outputs. The ring has two slots,
//! each with one device buffer and one staging buffer per input and per output, sized for the
//! largest step; so a call holds at most two steps' worth of buffers, whatever its size
//! ([`crate::ContextOptions::memory_budget`] sizes the chunks to fit). Where the host can map
//! storage buffers ([`GpuContext::maps_storage`]: a software adapter, whose device memory is
//! the host's), each input and output is one buffer, both bound and mapped, and the device
//! copies below are skipped: one host copy in and one out per array. Step `k` runs in slot
//! `k mod 2`:
//!
//! 1. its inputs are copied into the slot's upload staging (mapped; on every core when large);
//! 2. one submission copies them to the device buffers, runs the step's dispatches (the
//!    family's [`StepRecorder`] binds them over the slot's buffers; the last step also runs
//!    the call's closing dispatches), and copies the outputs into the slot's readback staging;
//! 3. while the device runs it, step `k − 1`'s readbacks are waited for (that submission
//!    only), appended to the outputs, and its slot freed for step `k + 1`.
//!
//! So the upload of chunk `k + 1` and the readback of chunk `k − 1` overlap the kernels of
//! chunk `k`. The small results (the value, the atomics) are read once, after the last step.

use std::sync::Arc;

use super::readback::{extend_f32, fill, words, write_f32};
use super::{GpuContext, KernelPipeline, Pooled};
use crate::error::{Error, Result};

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

/// Slots of the ring: one being filled or drained on the host while the other runs.
pub(crate) const RING_SLOTS: usize = 2;

/// What one output of a step is appended to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sink {
    /// The gradient.
    Grad,
    /// The per-element or per-row losses.
    Losses,
    /// The per-row log-sum-exp.
    Lse,
}

/// One step of a streamed call: the host bytes of its inputs and its outputs' sizes, in the
/// order the [`StepRecorder`] receives their buffers.
pub(crate) struct Step<'d> {
    /// Uploaded into the slot's input buffers, in order: whole 32-bit words (an empty slice
    /// uploads nothing).
    pub inputs: Vec<&'d [u8]>,
    /// Bytes of each output and where it goes, read back after the step, in order.
    pub outputs: Vec<(u64, Sink)>,
}

/// Binds step `k`'s dispatches over its input and output buffers (as many as the step has).
pub(crate) type StepRecorder<'r> =
    dyn FnMut(usize, &[Bound<'_>], &[Bound<'_>]) -> Vec<Dispatch> + 'r;

/// Where a streamed gradient goes: a fresh array, allocated once at its full length and
/// appended to, or the caller's ([`crate::GpuContext::compute_into`]), written in step order.
pub(crate) enum Dest<'g> {
    /// A fresh array.
    Fresh(Vec<f32>),
    /// The caller's, of the gradient's full length, and how much of it is written.
    Caller {
        /// The caller's array.
        out: &'g mut [f32],
        /// Its elements written so far.
        at: usize,
    },
}

impl<'g> Dest<'g> {
    /// A fresh array of `n` elements, or the caller's `into`.
    pub(crate) fn new(n: usize, into: Option<&'g mut [f32]>) -> Self {
        match into {
            Some(out) => Dest::Caller { out, at: 0 },
            None => Dest::Fresh(Vec::with_capacity(n)),
        }
    }

    /// The fresh array; `None` where the gradient went to the caller's.
    pub(crate) fn into_fresh(self) -> Option<Vec<f32>> {
        match self {
            Dest::Fresh(v) => Some(v),
            Dest::Caller { .. } => None,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        match self {
            Dest::Fresh(v) => extend_f32(v, bytes),
            Dest::Caller { out, at } => *at += write_f32(&mut out[*at..], bytes),
        }
    }
}

/// The streamed outputs, in step order: the gradient where its [`Dest`] says, the losses and
/// the log-sum-exps into arrays allocated once at their full length and appended to.
pub(crate) struct Outputs<'g> {
    /// The gradient, if asked for.
    pub grad: Option<Dest<'g>>,
    /// The losses, if asked for.
    pub losses: Option<Vec<f32>>,
    /// The per-row log-sum-exp, if asked for.
    pub lse: Option<Vec<f32>>,
}

impl<'g> Outputs<'g> {
    /// The gradient into `grad`, and room for `losses` losses.
    pub(crate) fn new(grad: Option<Dest<'g>>, losses: Option<usize>) -> Self {
        Outputs {
            grad,
            losses: losses.map(Vec::with_capacity),
            lse: None,
        }
    }

    /// With room for `lse` log-sum-exps too.
    pub(crate) fn with_lse(mut self, lse: Option<usize>) -> Self {
        self.lse = lse.map(Vec::with_capacity);
        self
    }

    fn take(&mut self, sink: Sink, bytes: &[u8]) {
        let fresh = match sink {
            Sink::Grad => {
                if let Some(g) = self.grad.as_mut() {
                    g.take(bytes);
                }
                return;
            }
            Sink::Losses => self.losses.as_mut(),
            Sink::Lse => self.lse.as_mut(),
        };
        if let Some(out) = fresh {
            extend_f32(out, bytes);
        }
    }
}

/// A whole streamed call: its steps, what it clears first, what it runs after the last step,
/// and the small buffers it reads at the end.
pub(crate) struct Call<'a, 'd> {
    /// Label of the command encoders and passes.
    pub label: &'a str,
    /// Buffers zeroed before the first step (the first-offender atomics).
    pub clears: &'a [&'a wgpu::Buffer],
    /// The steps, in order.
    pub steps: Vec<Step<'d>>,
    /// Dispatches after the last step's, in the same pass (the value's reduction).
    pub closing: Vec<Dispatch>,
    /// Small buffers read back after the closing dispatches: `(buffer, bytes)`.
    pub words: &'a [(&'a wgpu::Buffer, u64)],
}

/// One input's or output's buffers in a slot: the one the kernels bind, and the staging
/// buffer the host maps, or none where the host maps the bound buffer itself
/// ([`GpuContext::maps_storage`]: no device copy).
struct Staged {
    device: Pooled,
    staging: Option<Pooled>,
}

impl Staged {
    /// The buffer the host maps.
    fn host(&self) -> &wgpu::Buffer {
        &self.staging.as_ref().unwrap_or(&self.device).buffer
    }
}

/// One slot's buffers, per input and per output.
struct Slot {
    inputs: Vec<Staged>,
    outputs: Vec<Staged>,
}

/// Per position `i`, the largest `i`-th size over all of `sizes` (one list per step), rounded
/// up to whole words and at least 4 bytes: what slot buffer `i` must hold.
fn largest(sizes: impl Iterator<Item = Vec<u64>>) -> Vec<u64> {
    let mut most: Vec<u64> = Vec::new();
    for s in sizes {
        if most.len() < s.len() {
            most.resize(s.len(), 4);
        }
        for (m, &b) in most.iter_mut().zip(&s) {
            *m = (*m).max(b.next_multiple_of(4));
        }
    }
    most
}

/// The device buffers of `bufs` bound as arrays of `sizes` bytes.
fn bound_all(bufs: &[Staged], sizes: impl Iterator<Item = u64>) -> Vec<Bound<'_>> {
    bufs.iter()
        .zip(sizes)
        .map(|(b, bytes)| Bound::whole(&b.device.buffer, (bytes / 4).max(1) as usize))
        .collect()
}

impl GpuContext {
    /// Runs `call` (see the module's documentation), appending its streamed outputs to `out`,
    /// and returns the words of each of `call.words`, in order.
    ///
    /// # Errors
    /// [`Error::Gpu`] for a validation or out-of-memory error in any step (reported over
    /// any other), [`Error::Map`] or [`Error::Poll`] when a transfer fails.
    pub(crate) fn stream(
        &self,
        call: Call<'_, '_>,
        record: &mut StepRecorder<'_>,
        out: &mut Outputs<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut kept = Vec::new();
        let ran = self.stream_steps(&call, record, out, &mut kept);
        // Scopes close in the reverse order of opening.
        let oom = pollster::block_on(oom.pop());
        let validation = pollster::block_on(validation.pop());
        match (validation.or(oom), ran) {
            (Some(e), _) => Err(Error::Gpu(e.to_string())),
            (None, Err(e)) => Err(e),
            (None, Ok(words)) => {
                // Only a call whose every map settled gives its buffers back: a pending map
                // would break the next user.
                for p in kept {
                    self.pool.give_back(p);
                }
                Ok(words)
            }
        }
    }

    fn stream_steps(
        &self,
        call: &Call<'_, '_>,
        record: &mut StepRecorder<'_>,
        out: &mut Outputs<'_>,
        kept: &mut Vec<Pooled>,
    ) -> Result<Vec<Vec<u32>>> {
        use wgpu::BufferUsages as U;
        let steps = &call.steps;
        let in_bytes = largest(
            steps
                .iter()
                .map(|s| s.inputs.iter().map(|b| b.len() as u64).collect()),
        );
        let out_bytes = largest(
            steps
                .iter()
                .map(|s| s.outputs.iter().map(|&(b, _)| b).collect()),
        );
        let take = |label: &str, size: u64, usage: U| {
            self.pool.take(
                &self.device,
                label,
                size,
                usage,
                self.limits.max_buffer_size,
            )
        };
        // Where the host can map storage buffers, each input and output is one buffer that
        // is both bound and mapped (`map`); else a device buffer and a staging buffer, copied
        // between by the device (the device side's copy usage `to`, the staging side's `from`).
        let direct = self.maps_storage();
        let pair = |label: &str, size: u64, map: U, to: U, from: U| {
            if direct {
                Staged {
                    device: take(label, size, U::STORAGE | map),
                    staging: None,
                }
            } else {
                Staged {
                    device: take(label, size, U::STORAGE | to),
                    staging: Some(take(label, size, map | from)),
                }
            }
        };
        let mut ring: Vec<Slot> = (0..RING_SLOTS.min(steps.len()))
            .map(|_| Slot {
                inputs: in_bytes
                    .iter()
                    .map(|&b| {
                        pair(
                            "wgpu-loss chunk in",
                            b,
                            U::MAP_WRITE,
                            U::COPY_DST,
                            U::COPY_SRC,
                        )
                    })
                    .collect(),
                outputs: out_bytes
                    .iter()
                    .map(|&b| {
                        pair(
                            "wgpu-loss chunk out",
                            b,
                            U::MAP_READ,
                            U::COPY_SRC,
                            U::COPY_DST,
                        )
                    })
                    .collect(),
            })
            .collect();
        let words: Vec<Pooled> = call
            .words
            .iter()
            .map(|&(_, size)| take("wgpu-loss result words", size, U::MAP_READ | U::COPY_DST))
            .collect();

        let mut pending: Option<(usize, wgpu::SubmissionIndex)> = None;
        let mut result = Ok(());
        for (k, step) in steps.iter().enumerate() {
            let slot = &ring[k % ring.len()];
            if let Err(e) = self.fill_inputs(slot, &step.inputs) {
                result = Err(e);
                break;
            }
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(call.label),
                });
            if k == 0 {
                for b in call.clears {
                    encoder.clear_buffer(b, 0, None);
                }
            }
            for (b, bytes) in slot.inputs.iter().zip(&step.inputs) {
                let size = (bytes.len() as u64).next_multiple_of(4);
                if let (Some(staging), true) = (&b.staging, size > 0) {
                    encoder.copy_buffer_to_buffer(&staging.buffer, 0, &b.device.buffer, 0, size);
                }
            }
            let ins = bound_all(&slot.inputs, step.inputs.iter().map(|b| b.len() as u64));
            let outs = bound_all(&slot.outputs, step.outputs.iter().map(|&(b, _)| b));
            let dispatches = record(k, &ins, &outs);
            let last = k + 1 == steps.len();
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(call.label),
                    timestamp_writes: None,
                });
                let closing: &[Dispatch] = if last { &call.closing } else { &[] };
                for d in dispatches.iter().chain(closing) {
                    pass.set_pipeline(&d.pipeline.pipeline);
                    pass.set_bind_group(0, &d.group, &[]);
                    pass.dispatch_workgroups(d.workgroups, 1, 1);
                }
            }
            for (b, &(size, _)) in slot.outputs.iter().zip(&step.outputs) {
                if let Some(staging) = &b.staging {
                    encoder.copy_buffer_to_buffer(&b.device.buffer, 0, &staging.buffer, 0, size);
                }
            }
            if last {
                for ((src, size), staging) in call.words.iter().zip(&words) {
                    encoder.copy_buffer_to_buffer(src, 0, &staging.buffer, 0, *size);
                }
            }
            let index = self.queue.submit([encoder.finish()]);
            // While the device runs step k, the previous step's results come out.
            if let Some((j, at)) = pending.replace((k, index)) {
                if let Err(e) = self.drain(&ring[j % ring.len()], &steps[j], at, out) {
                    result = Err(e);
                    pending = None;
                    break;
                }
            }
        }
        if let (Ok(()), Some((j, at))) = (&result, pending) {
            result = self.drain(&ring[j % ring.len()], &steps[j], at.clone(), out);
        }
        let small = result.and_then(|()| self.read_words(&words, call.words));
        // The ring and the word buffers go back to the pool only when the call succeeded.
        if small.is_ok() {
            for slot in ring.drain(..) {
                for b in slot.inputs.into_iter().chain(slot.outputs) {
                    kept.push(b.device);
                    kept.extend(b.staging);
                }
            }
            kept.extend(words);
        }
        small
    }

    /// Copies a step's inputs into its slot's upload staging buffers (idle: the step that used
    /// them last has been waited for) and unmaps them.
    fn fill_inputs(&self, slot: &Slot, inputs: &[&[u8]]) -> Result<()> {
        let staged: Vec<(&wgpu::Buffer, u64)> = slot
            .inputs
            .iter()
            .zip(inputs)
            .filter(|(_, b)| !b.is_empty())
            .map(|(s, b)| (s.host(), (b.len() as u64).next_multiple_of(4)))
            .collect();
        let mut bytes = inputs.iter().filter(|b| !b.is_empty());
        self.each_mapped(
            &staged,
            wgpu::MapMode::Write,
            wgpu::PollType::Poll,
            &mut |_, slice| {
                let src = bytes.next().copied().unwrap_or_default();
                let mut view = slice
                    .get_mapped_range_mut()
                    .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
                fill(view.slice(..src.len()), src);
                Ok(())
            },
        )
    }

    /// Waits for submission `at` (step `step`'s), then appends its outputs from the slot's
    /// readback staging to `out`.
    fn drain(
        &self,
        slot: &Slot,
        step: &Step<'_>,
        at: wgpu::SubmissionIndex,
        out: &mut Outputs<'_>,
    ) -> Result<()> {
        let staged: Vec<(&wgpu::Buffer, u64)> = slot
            .outputs
            .iter()
            .zip(&step.outputs)
            .map(|(s, &(size, _))| (s.host(), size))
            .collect();
        self.read_mapped(
            &staged,
            wgpu::PollType::Wait {
                submission_index: Some(at),
                timeout: None,
            },
            &mut |i, bytes| out.take(step.outputs[i].1, bytes),
        )
    }

    /// Reads the small results after the last submission.
    fn read_words(
        &self,
        staging: &[Pooled],
        words_of: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u32>>> {
        let staged: Vec<(&wgpu::Buffer, u64)> = staging
            .iter()
            .zip(words_of)
            .map(|(s, &(_, size))| (&s.buffer, size))
            .collect();
        let mut got = vec![Vec::new(); staged.len()];
        self.read_mapped(
            &staged,
            wgpu::PollType::wait_indefinitely(),
            &mut |i, bytes| got[i] = words(bytes),
        )?;
        Ok(got)
    }

    /// Maps `staged` for reading after polling with `poll`, hands each mapped range to `sink`
    /// with its index, and unmaps it.
    fn read_mapped(
        &self,
        staged: &[(&wgpu::Buffer, u64)],
        poll: wgpu::PollType,
        sink: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<()> {
        self.each_mapped(staged, wgpu::MapMode::Read, poll, &mut |i, slice| {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("mapping a result buffer: {e}")))?;
            sink(i, &view);
            Ok(())
        })
    }

    /// Maps every buffer of `staged` (its first `size` bytes) with `mode` after polling with
    /// `poll`, calls `f` on each mapped slice in order while nothing has failed, and unmaps
    /// every buffer that was mapped. The first failure is returned.
    fn each_mapped(
        &self,
        staged: &[(&wgpu::Buffer, u64)],
        mode: wgpu::MapMode,
        poll: wgpu::PollType,
        f: &mut dyn FnMut(usize, wgpu::BufferSlice<'_>) -> Result<()>,
    ) -> Result<()> {
        let (polled, status) = self.map_all(staged, mode, poll);
        let mut first_err = polled.err().map(Error::from);
        for (i, ((buffer, size), st)) in staged.iter().zip(status).enumerate() {
            match st {
                Some(Ok(())) => {
                    if first_err.is_none() {
                        first_err = f(i, buffer.slice(..*size)).err();
                    }
                    buffer.unmap();
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(Error::Map(e));
                }
                None => {
                    first_err.get_or_insert(Error::Gpu("a staging buffer was never mapped".into()));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
