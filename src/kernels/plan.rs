//! A planned call of either family, for the resident API: one type, so that its caller never
//! matches on the family (the host-array path goes through [`super::host::HostPlan`]).

use super::elementwise::{EwChunkBufs, EwPlan};
use super::rows::{RowChunkBufs, RowPlan};
use super::staging::{Alloc, AsBuffer, Bound, Dispatch, Scratch, ScratchRefs};
use crate::gpu::GpuContext;

/// The plan of either family.
pub(crate) enum Plan {
    /// A row-wise loss.
    Rows(RowPlan),
    /// An elementwise loss.
    Elementwise(EwPlan),
}

/// The arrays of one recorded call, each bound whole: the family takes those it has.
#[derive(Clone, Copy)]
pub(crate) struct ArrayBufs<'a> {
    pub pred: Bound<'a>,
    pub target: Bound<'a>,
    pub upstream: Option<Bound<'a>>,
    pub grad: Option<Bound<'a>>,
    pub losses: Option<Bound<'a>>,
    /// The per-row log-sum-exp out (row-wise).
    pub lse: Option<Bound<'a>>,
    /// Per-element weight (elementwise) or class weights (row-wise).
    pub weight: Option<Bound<'a>>,
    pub pos_weight: Option<Bound<'a>>,
    /// A row-wise mean's divisor, one f32 (planned with `RowSpec::divisor_buffer`).
    pub divisor: Option<Bound<'a>>,
}

impl Plan {
    /// The plan's scratch buffers, each made by `alloc`.
    pub(crate) fn scratch<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B> {
        match self {
            Plan::Rows(p) => p.scratch(alloc),
            Plan::Elementwise(p) => p.scratch(alloc),
        }
    }

    /// Writes the parameter blocks (and host-known scales) through the queue.
    pub(crate) fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>) {
        match self {
            Plan::Rows(p) => p.write_constants(queue, scratch),
            Plan::Elementwise(p) => p.write_constants(queue, scratch),
        }
    }

    /// Every dispatch of one call over `bufs` (the plan has one chunk).
    pub(crate) fn bind(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        bufs: &ArrayBufs<'_>,
    ) -> Vec<Dispatch> {
        let b = *bufs;
        match self {
            Plan::Rows(p) => p.bind(
                ctx,
                scratch,
                &[RowChunkBufs {
                    pred: b.pred,
                    target: b.target,
                    upstream: b.upstream,
                    grad: b.grad,
                    losses: b.losses,
                    lse: b.lse,
                    weight: b.weight,
                }],
                b.divisor,
            ),
            Plan::Elementwise(p) => p.bind(
                ctx,
                scratch,
                &[EwChunkBufs {
                    pred: b.pred,
                    target: b.target,
                    upstream: b.upstream,
                    grad: b.grad,
                    losses: b.losses,
                    weight: b.weight,
                    pos_weight: b.pos_weight,
                }],
            ),
        }
    }

    /// Records one call: clears the atomics, then one compute pass with `dispatches`.
    pub(crate) fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        scratch: &ScratchRefs<'_>,
        dispatches: &[Dispatch],
    ) {
        match self {
            Plan::Rows(p) => p.encode(encoder, scratch, dispatches),
            Plan::Elementwise(p) => p.encode(encoder, scratch, dispatches),
        }
    }
}
