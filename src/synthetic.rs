//! Seeded synthetic inputs for each loss: the CLI's built-in workload, the tests and the
//! benchmarks all draw from here, so they exercise the same distributions.

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::loss::Loss;

/// A prediction and a target of the same shape.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The prediction (probabilities for `Bce`, logits for `BceWithLogits`).
    pub pred: ArrayD<f32>,
    /// The target.
    pub target: ArrayD<f32>,
}

/// A seeded random batch of `shape` suited to `loss` (for a row-wise loss, `shape` is
/// `[..., C]` and "rows" are along the last dimension): predictions and targets uniform in
/// the ranges the loss's file gives (`src/losses/<loss>.rs`, `synthetic`; U(−3, 3) for both
/// unless it says otherwise: probabilities U(0.0005, 0.9995) for BCE, logits U(−8, 8), soft
/// labels U(0, 1)), rows normalised to sum 1 where the loss takes distributions (categorical
/// cross entropy's predictions and targets, softmax cross entropy's targets; see [`classes`]
/// for class indices).
///
/// The same `(loss, shape, seed)` always gives the same batch.
pub fn batch(loss: &Loss, shape: &[usize], seed: u64) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let range = crate::losses::def(loss).synthetic();
    let ((p_lo, p_hi), (t_lo, t_hi)) = (range.pred, range.target);
    let mut pred: Vec<f32> = (0..n).map(|_| rng.random_range(p_lo..p_hi)).collect();
    let mut target: Vec<f32> = (0..n).map(|_| rng.random_range(t_lo..=t_hi)).collect();
    let cols = shape.last().copied().unwrap_or(1).max(1);
    let normalise = |v: &mut [f32]| {
        for row in v.chunks_mut(cols) {
            let sum: f32 = row.iter().sum();
            if sum > 0.0 {
                row.iter_mut().for_each(|x| *x /= sum);
            }
        }
    };
    if range.normalise_pred {
        normalise(&mut pred);
    }
    if range.normalise_target {
        normalise(&mut target);
    }
    let to = |v| ArrayD::from_shape_vec(IxDyn(shape), v).expect("n is the product of shape");
    Batch {
        pred: to(pred),
        target: to(target),
    }
}

/// Seeded class indices, uniform in `[0, classes)`, shaped `rows` (the row shape of a
/// `[..., C]` prediction).
pub fn classes(rows: &[usize], classes: usize, seed: u64) -> ArrayD<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(rows), || rng.random_range(0..classes.max(1)) as i64)
}

/// `n` seeded values from U(lo, hi), shaped `shape` (weights, upstream gradients).
pub fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(lo..=hi))
}
