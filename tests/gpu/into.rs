//! `GpuContext::compute_into`: the gradient read back into the caller's array, chunk by
//! chunk, with exactly the bits of `GpuContext::compute`.

use ndarray::{ArrayD, IxDyn, Slice};
use wgpu_loss::{GpuContext, Loss, LossArgs, LossOutput, Reduction, synthetic};

use crate::common::{chunked_ctx, ctx, seed_for};

/// Every part of a result as bits.
fn bits(o: &LossOutput<f32>) -> Vec<u32> {
    let mut v: Vec<u32> = o.value.iter().map(|v| v.to_bits()).collect();
    for a in [&o.losses, &o.grad, &o.lse].into_iter().flatten() {
        v.extend(a.iter().map(|x| x.to_bits()));
    }
    v.push(o.counted as u32);
    v
}

/// `compute_into` into an array full of NaN gives exactly the bits of `compute` (value,
/// losses, log-sum-exps, count, and the gradient in the array), and no gradient of its own.
#[track_caller]
fn same_bits_into(ctx: &GpuContext, loss: &Loss, args: &LossArgs<'_>, what: &str) {
    let want = bits(&ctx.compute(loss, args).unwrap());
    let mut grad = ArrayD::<f32>::from_elem(args.pred.shape(), f32::NAN);
    let mut out = ctx.compute_into(loss, args, grad.view_mut()).unwrap();
    assert!(
        out.grad.is_none(),
        "{what}: compute_into returns no gradient"
    );
    out.grad = Some(grad);
    assert_eq!(bits(&out), want, "{what}");
}

/// Every loss with its default options, each reduction, at the edges of a workgroup (256
/// lanes) and of a 16-bit word, row-wise over one class, odd rows and rows longer than a
/// workgroup; on the default context (one chunk) and on one of 1000-element chunks, where the
/// gradient arrives in many pieces, each written after the one before (rows of at most 1000
/// there).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn compute_into_gives_the_bits_of_compute() {
    for (ctx, name) in [(ctx(), "one chunk"), (chunked_ctx(), "1000-element chunks")] {
        for loss in Loss::all_default() {
            let shapes: &[&[usize]] = if loss.is_row_wise() {
                &[&[1, 1], &[7, 33], &[65, 255], &[3, 5003]]
            } else {
                &[&[1], &[255], &[257], &[4097]]
            };
            // A chunk binds whole rows: the chunked context takes rows of at most 1000.
            let fits = |s: &&&[usize]| s[s.len() - 1] <= ctx.max_chunk_elements();
            for &shape in shapes.iter().filter(fits) {
                for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                    let what =
                        format!("into/{name}/{}/{shape:?}/{}", loss.name(), reduction.name());
                    let seed = seed_for(&what);
                    let b = synthetic::batch(&loss, shape, seed);
                    let k = synthetic::classes(&shape[..1], shape[shape.len() - 1], seed);
                    let args = if loss.takes_classes() {
                        LossArgs::new(b.pred.view(), k.view())
                    } else {
                        LossArgs::new(b.pred.view(), b.target.view())
                    }
                    .reduction(reduction);
                    same_bits_into(ctx, &loss, &args, &what);
                }
            }
        }
    }
}

/// Rows that are ignored get a gradient of 0 whatever the array held, and with every row
/// ignored (the mean's D = 0) the whole gradient is 0.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn compute_into_zeroes_ignored_rows() {
    let loss = Loss::softmax_cross_entropy().build().unwrap();
    let x = synthetic::uniform(&[9, 33], -4.0, 4.0, 11);
    let mut k = synthetic::classes(&[9], 33, 12);
    for r in [0, 4, 8] {
        k[r] = -100;
    }
    same_bits_into(
        ctx(),
        &loss,
        &LossArgs::new(x.view(), k.view()),
        "into/ignored",
    );
    let none = ArrayD::<i64>::from_elem(IxDyn(&[9]), -100);
    let args = LossArgs::new(x.view(), none.view());
    same_bits_into(ctx(), &loss, &args, "into/all ignored");
    let mut grad = ArrayD::<f32>::from_elem(IxDyn(&[9, 33]), f32::NAN);
    ctx().compute_into(&loss, &args, grad.view_mut()).unwrap();
    assert!(
        grad.iter().all(|&g| g == 0.0),
        "every row ignored: {grad:?}"
    );
}

/// A gradient view that is not contiguous (every other column of a transposed array) is
/// written through a temporary array: the same values, and the columns between untouched.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn compute_into_a_strided_view() {
    for loss in [Loss::Mse, Loss::softmax_cross_entropy().build().unwrap()] {
        let what = format!("into/strided/{}", loss.name());
        let b = synthetic::batch(&loss, &[40, 17], seed_for(&what));
        let args = LossArgs::new(b.pred.view(), b.target.view());
        let want = ctx().compute(&loss, &args).unwrap();
        let mut big = ArrayD::<f32>::from_elem(IxDyn(&[17, 80]), 7.0);
        {
            let mut grad = big.slice_each_axis_mut(|ax| {
                Slice::new(0, None, if ax.axis.index() == 1 { 2 } else { 1 })
            });
            grad.swap_axes(0, 1);
            let out = ctx().compute_into(&loss, &args, grad.view_mut()).unwrap();
            assert_eq!(out.value.map(f32::to_bits), want.value.map(f32::to_bits));
            let got: Vec<u32> = grad.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = want.grad.unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{what}");
        }
        let between = big.slice_each_axis(|ax| {
            let col = ax.axis.index() == 1;
            Slice::new(isize::from(col), None, if col { 2 } else { 1 })
        });
        assert!(
            between.iter().all(|&v| v == 7.0),
            "{what}: the other columns"
        );
    }
}

// Its errors, the same on every device: tests/api.rs (`gpu_compute_into_errors`).
