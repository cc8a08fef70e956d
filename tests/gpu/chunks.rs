//! Chunked execution (inputs split into successive bindings) and the plain reduction flavour.

use wgpu_loss::{Loss, LossArgs, Reduction, Upstream, synthetic};

use crate::common::{
    SMALL_CHUNK, check_args, chunked_ctx, elementwise_losses, matrix_case, plain_ctx, seed_for,
};

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

/// Every elementwise loss and reduction over [97, 103] in chunks of 1000 elements: chunk
/// boundaries fall mid-row, so the broadcast weights ([103]) start at a different phase in
/// every chunk; full weights and upstream arrays are split with the input. (The row-wise
/// family: `rows::rows_in_small_chunks`.)
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn every_loss_in_small_chunks_with_broadcast_inputs() {
    let ctx = chunked_ctx();
    assert_eq!(ctx.max_chunk_elements(), SMALL_CHUNK);
    let shape = [97usize, 103];
    for loss in elementwise_losses() {
        for reduction in REDUCTIONS {
            for full_weight in [false, true] {
                let what = format!(
                    "chunked/{}/{}/full_w={full_weight}",
                    loss.name(),
                    reduction.name()
                );
                let b = synthetic::batch(&loss, &shape, seed_for(&what));
                let wshape = if full_weight { &shape[..] } else { &shape[1..] };
                let w = synthetic::uniform(wshape, 0.0, 2.0, seed_for(&format!("{what}/w")));
                let q = synthetic::uniform(&shape[1..], 0.5, 3.0, seed_for(&format!("{what}/q")));
                let g = synthetic::uniform(&shape, -2.0, 2.0, seed_for(&format!("{what}/g")));
                let mut args = LossArgs::new(b.pred.view(), b.target.view()).reduction(reduction);
                if loss.takes_weight() {
                    args = args.weight(w.view());
                }
                if loss.takes_pos_weight() {
                    args = args.pos_weight(q.view());
                }
                args = args.upstream(if reduction == Reduction::None {
                    Upstream::Array(g.view())
                } else {
                    Upstream::Scalar(0.75)
                });
                check_args(ctx, &loss, &args, &what);
            }
        }
    }
}

/// A broadcast weight longer than a chunk (so it cannot be bound whole) is expanded and split.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn broadcast_weight_longer_than_a_chunk() {
    let shape = [3usize, 2 * SMALL_CHUNK + 17];
    let what = "chunked/long broadcast weight";
    let b = synthetic::batch(&Loss::Bce, &shape, seed_for(what));
    let w = synthetic::uniform(&shape[1..], 0.0, 2.0, seed_for("long w"));
    let args = LossArgs::new(b.pred.view(), b.target.view())
        .reduction(Reduction::None)
        .weight(w.view());
    check_args(chunked_ctx(), &Loss::Bce, &args, what);
}

/// The plain shared-memory reduction (no subgroups) over every loss, reduction and a spread
/// of sizes.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn plain_reduction_flavour() {
    assert!(!plain_ctx().uses_subgroups());
    for loss in Loss::all_default() {
        for reduction in REDUCTIONS {
            for n in [1, 255, 257, 4097, 1_000_003] {
                matrix_case(plain_ctx(), loss, reduction, n);
            }
        }
    }
}
