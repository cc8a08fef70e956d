//! The host-array path's streaming (`src/gpu/stream.rs`): inputs larger than the memory budget
//! run through a ring of chunk buffers sized to fit it, with the same results.

use std::sync::OnceLock;

use wgpu_loss::DEFAULT_MEMORY_BUDGET;
use wgpu_loss::{ContextOptions, GpuContext, Loss, LossArgs, Reduction};
use wgpu_loss::{LossOutput, synthetic};

use crate::common::{check_args, ctx, make, seed_for};

/// The budget of [`small_budget_ctx`]: 1 MiB of chunk buffers, a quarter of one 4 MiB input
/// of the tests below (2^20 f32 elements).
const SMALL_BUDGET: u64 = 1 << 20;

/// A context whose host-array calls hold at most [`SMALL_BUDGET`] bytes of chunk buffers.
fn small_budget_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        make(
            ContextOptions {
                memory_budget: Some(SMALL_BUDGET),
                ..Default::default()
            },
            "1 MiB memory budget",
        )
    })
}

/// A context with no budget at all: every chunk is the smallest (64 elements, or one row).
fn no_budget_ctx() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        make(
            ContextOptions {
                memory_budget: Some(0),
                ..Default::default()
            },
            "no memory budget",
        )
    })
}

fn grad_bits(out: &LossOutput<f32>) -> Vec<u32> {
    out.grad
        .as_ref()
        .map(|g| g.iter().map(|v| v.to_bits()).collect())
        .unwrap_or_default()
}

fn losses_bits(out: &LossOutput<f32>) -> Vec<u32> {
    out.losses
        .as_ref()
        .map(|g| g.iter().map(|v| v.to_bits()).collect())
        .unwrap_or_default()
}

/// `args` on the streamed context `small` against the f64 reference, and its gradient and
/// per-element losses bit for bit those of a call with the default budget (one chunk), since
/// neither depends on how the elements are chunked (the value's partial sums do: it is checked
/// against the reference).
#[track_caller]
fn streamed_as_one_chunk(small: &GpuContext, loss: &Loss, args: &LossArgs<'_>, what: &str) {
    check_args(small, loss, args, what);
    let streamed = small.compute(loss, args).expect("streamed call");
    let whole = ctx().compute(loss, args).expect("default call");
    assert!(
        grad_bits(&streamed) == grad_bits(&whole),
        "{what}: gradient differs from the one-chunk call's"
    );
    assert!(
        losses_bits(&streamed) == losses_bits(&whole),
        "{what}: losses differ from the one-chunk call's"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn the_budget_is_the_option() {
    assert_eq!(ctx().memory_budget(), DEFAULT_MEMORY_BUDGET);
    assert_eq!(small_budget_ctx().memory_budget(), SMALL_BUDGET);
}

/// Every loss over 2^20 elements (4 MiB per input, 4× the budget: dozens of chunks through two
/// slots), each reduction, as one chunk ([`streamed_as_one_chunk`]).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn inputs_larger_than_the_memory_budget() {
    let small = small_budget_ctx();
    for loss in Loss::all_default() {
        let shape: &[usize] = if loss.is_row_wise() {
            &[1024, 1024]
        } else {
            &[1 << 20]
        };
        for reduction in [Reduction::Mean, Reduction::None] {
            let what = format!("streamed/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, shape, seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            streamed_as_one_chunk(small, &loss, &args, &what);
        }
    }
}

/// Short rows in chunks of several workgroups each, where what fits a chunk is not a whole
/// number of workgroups' rows (rows of 3 in chunks of a power of two of elements): each chunk
/// is cut to whole workgroups, and the rows that leaves over run in the next: as one chunk
/// ([`streamed_as_one_chunk`]).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn rows_in_chunks_of_whole_workgroups() {
    let small = small_budget_ctx();
    for loss in Loss::all_default().into_iter().filter(Loss::is_row_wise) {
        for reduction in [Reduction::Mean, Reduction::None] {
            let what = format!("whole workgroups/{}/{}", loss.name(), reduction.name());
            let b = synthetic::batch(&loss, &[40_000, 3], seed_for(&what));
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            streamed_as_one_chunk(small, &loss, &args, &what);
        }
    }
}

/// Class-index targets through the streamed pre-pass: the divisor of the mean needs every
/// chunk's ids before the first row is computed (ignored rows and class weights included).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn class_targets_larger_than_the_memory_budget() {
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(0.0)
        .ignore_index(3)
        .build()
        .unwrap();
    let (rows, cols) = (4099usize, 257usize);
    let what = "streamed/softmax-ce classes";
    let x = synthetic::uniform(&[rows, cols], -4.0, 4.0, seed_for(what));
    let ids = synthetic::classes(&[rows], cols, seed_for("ids"));
    let w = synthetic::uniform(&[cols], 0.1, 2.0, seed_for("class w"));
    let args = LossArgs::new(x.view(), ids.view())
        .reduction(Reduction::Mean)
        .weight(w.view());
    check_args(small_budget_ctx(), &loss, &args, what);
    check_args(no_budget_ctx(), &loss, &args, &format!("{what}, no budget"));
}

/// No budget: chunks of 64 elements, and rows longer than that in chunks of one row.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn smallest_chunks() {
    let c = no_budget_ctx();
    for loss in Loss::all_default() {
        let shape: &[usize] = if loss.is_row_wise() {
            &[37, 300]
        } else {
            &[64 * 37 + 5]
        };
        let what = format!("no budget/{}", loss.name());
        let b = synthetic::batch(&loss, shape, seed_for(&what));
        for reduction in [Reduction::Sum, Reduction::None] {
            let args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
            check_args(c, &loss, &args, &format!("{what}/{}", reduction.name()));
        }
    }
}

/// A probability outside [0, 1] in a late chunk is still found, and named by its index.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn domain_error_in_a_late_chunk() {
    let n = 1usize << 20;
    let b = synthetic::batch(&Loss::Bce, &[n], seed_for("late domain"));
    let mut p = b.pred.clone();
    p[[n - 7]] = 1.5;
    let args = LossArgs::new(p.view(), b.target.view());
    match small_budget_ctx().compute(&Loss::Bce, &args) {
        Err(wgpu_loss::Error::OutOfDomain { index, .. }) => assert_eq!(index, n - 7),
        other => panic!("want OutOfDomain at {}, got {other:?}", n - 7),
    }
}
