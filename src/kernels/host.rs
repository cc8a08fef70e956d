//! The host-array path's tail, written once for both families: a plan's scratch from the
//! pool, its inputs bound whole (written once), its constants, its steps streamed through
//! [`GpuContext::stream`], and the small results decoded. Each family says how its steps are
//! bound ([`HostPlan`]); `elementwise::run` and `rows::run` build the steps from the host
//! arrays and turn what was found into errors and outputs.

use super::staging::{
    Alloc, AsBuffer, Bound, Dispatch, Scratch, ScratchRefs, first_f32, first_row,
};
use crate::error::Result;
use crate::gpu::stream::{Call, Outputs, Step};
use crate::gpu::{GpuContext, Pooled};

/// What a planned call of either family gives the host path.
pub(crate) trait HostPlan {
    /// The label of its encoders and passes.
    fn label(&self) -> &'static str;
    /// Its scratch buffers, each made by `alloc`.
    fn scratch_in<B: AsBuffer>(&self, alloc: &mut Alloc<'_, B>) -> Scratch<B>;
    /// Writes its parameter blocks (and host-known scales) through the queue.
    fn write_constants(&self, queue: &wgpu::Queue, scratch: &ScratchRefs<'_>);
    /// Whether it reduces into a value (not `Reduction::None`).
    fn reduces(&self) -> bool;
    /// Step `k`'s dispatches over the step's input and output buffers (in the order the
    /// family's steps list them) and the inputs bound whole.
    fn record_step(
        &self,
        ctx: &GpuContext,
        scratch: &ScratchRefs<'_>,
        whole: &[Bound<'_>],
        k: usize,
        ins: &[Bound<'_>],
        outs: &[Bound<'_>],
    ) -> Vec<Dispatch>;
    /// The dispatch after the last step (the value's reduction), if any.
    fn closing(&self, ctx: &GpuContext, scratch: &ScratchRefs<'_>) -> Option<Dispatch>;
}

/// The small results of a call.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Found {
    /// The value (`Mean`, `Sum`).
    pub value: Option<f32>,
    /// Class-index targets: the first row whose id is out of range.
    pub class_out_of_range: Option<usize>,
    /// Class-index targets: the rows counted.
    pub counted: Option<usize>,
    /// The first out-of-domain index (BCE: an element; categorical cross entropy: a row).
    pub out_of_domain: Option<usize>,
}

/// Runs `plan` over `steps` (inputs in, `out` appended to), with `whole` bound whole in every
/// step, and returns what it found.
///
/// # Errors
/// Those of [`GpuContext::stream`].
pub(crate) fn run<P: HostPlan>(
    ctx: &GpuContext,
    plan: &P,
    whole: &[&[u8]],
    steps: Vec<Step<'_>>,
    out: &mut Outputs<'_>,
) -> Result<Found> {
    use wgpu::BufferUsages as U;
    let take = |label: &str, size: u64, usage: U| {
        ctx.pool
            .take(&ctx.device, label, size, usage, ctx.limits.max_buffer_size)
    };
    let scratch: Scratch<Pooled> =
        plan.scratch_in(&mut |label, size, usage| take(label, size, usage));
    let value = take("wgpu-loss value", 4, U::STORAGE | U::COPY_SRC);
    let whole: Vec<(Pooled, usize)> = whole
        .iter()
        .map(|bytes| {
            let p = take(
                "wgpu-loss bound whole",
                bytes.len() as u64,
                U::STORAGE | U::COPY_DST,
            );
            ctx.queue.write_buffer(&p.buffer, 0, bytes);
            (p, bytes.len() / 4)
        })
        .collect();
    let found = {
        let refs = scratch.refs(plan.reduces().then(|| Bound::whole(&value.buffer, 1)));
        plan.write_constants(&ctx.queue, &refs);
        let whole_bound: Vec<Bound<'_>> = whole
            .iter()
            .map(|(p, elems)| Bound::whole(&p.buffer, *elems))
            .collect();
        let mut record = |k: usize, ins: &[Bound<'_>], outs: &[Bound<'_>]| {
            plan.record_step(ctx, &refs, &whole_bound, k, ins, outs)
        };
        let clears = refs.atomics();
        let mut words_of = Vec::new();
        if let Some(v) = refs.value {
            words_of.push((v.buffer, 4));
        }
        if let Some(s) = refs.stats {
            words_of.push((s, 8));
        }
        if let Some(e) = refs.domain_error {
            words_of.push((e, 4));
        }
        let call = Call {
            label: plan.label(),
            clears: &clears,
            steps,
            closing: plan.closing(ctx, &refs).into_iter().collect(),
            words: &words_of,
        };
        ctx.stream(call, &mut record, out).map(|words| {
            let mut words = words.into_iter();
            let mut found = Found {
                value: refs.value.map(|_| first_f32(words.next())),
                ..Found::default()
            };
            if refs.stats.is_some() {
                let stats = words.next().unwrap_or_default();
                found.class_out_of_range = first_row(stats.first().copied().unwrap_or(0));
                found.counted = Some(stats.get(1).copied().unwrap_or(0) as usize);
            }
            if refs.domain_error.is_some() {
                found.out_of_domain =
                    first_row(words.next().and_then(|w| w.first().copied()).unwrap_or(0));
            }
            found
        })
    };
    for p in scratch
        .into_buffers()
        .chain([value])
        .chain(whole.into_iter().map(|(p, _)| p))
    {
        ctx.pool.give_back(p);
    }
    found
}
