//! The CPU reference, checked without a GPU: every gradient against central finite
//! differences of its own loss (through the reductions and the upstream gradient), literal
//! cases worked by hand, and the reference's errors.

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgpu_loss::{Error, Loss, LossArgs, Reduction, Upstream, reference};

/// Central differences in f64 with step h = 1e-6 have truncation error O(h² f''') and rounding
/// error O(ε |f| / h) ≈ 1e-10 · |f|; 1e-6 relative (to max(1, |∂|)) leaves a wide margin while
/// catching any wrong factor, sign or missing 1/N.
const FD_STEP: f64 = 1e-6;
const FD_RTOL: f64 = 1e-6;

/// Inputs away from the kinks (MAE, Huber at |d| = δ) and clamps (BCE near 0 and 1), where a
/// finite difference is not a derivative.
fn inputs(loss: &Loss, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut p = Vec::with_capacity(n);
    let mut t = Vec::with_capacity(n);
    while p.len() < n {
        let (pi, ti): (f64, f64) = match loss {
            Loss::Bce => (rng.random_range(0.02..0.98), rng.random_range(0.0..=1.0)),
            Loss::BceWithLogits => (rng.random_range(-8.0..8.0), rng.random_range(0.0..=1.0)),
            _ => (rng.random_range(-3.0..3.0), rng.random_range(-3.0..3.0)),
        };
        let d = (pi - ti).abs();
        let near_kink = match loss {
            Loss::Mae => d < 1e-3,
            Loss::Huber { delta } => (d - f64::from(*delta)).abs() < 1e-3,
            _ => false,
        };
        if !near_kink {
            p.push(pi);
            t.push(ti);
        }
    }
    (p, t)
}

/// For one loss, reduction, weight and upstream: compares every gradient element with a
/// central difference of `g · value` (Mean/Sum) or `Σ g_k ℓ_k` (None), evaluated by the
/// reference itself in f64 arithmetic on f32-representable inputs.
fn check_fd(loss: Loss, reduction: Reduction, seed: u64) {
    let (b, c) = (3usize, 7usize);
    let n = b * c;
    let (p, t) = inputs(&loss, n, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xabcdef);
    let w: Vec<f64> = (0..c).map(|_| rng.random_range(0.2..2.0)).collect();
    let q: Vec<f64> = (0..c).map(|_| rng.random_range(0.5..3.0)).collect();
    let g_scalar = -1.75f64;
    let g_arr: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();

    // The gradient from `reference::compute` (f32 inputs; p and t are f64 here, so round them
    // to f32 and evaluate the objective on the same rounded values).
    let f32v = |v: &[f64]| {
        ArrayD::from_shape_vec(IxDyn(&[b, c]), v.iter().map(|&x| x as f32).collect()).unwrap()
    };
    let (pa, ta) = (f32v(&p), f32v(&t));
    let wa = ArrayD::from_shape_vec(IxDyn(&[c]), w.iter().map(|&x| x as f32).collect()).unwrap();
    let qa = ArrayD::from_shape_vec(IxDyn(&[c]), q.iter().map(|&x| x as f32).collect()).unwrap();
    let ga = f32v(&g_arr);
    let mut args = LossArgs::new(pa.view(), ta.view()).reduction(reduction);
    args = args.upstream(match reduction {
        Reduction::None => Upstream::Array(ga.view()),
        _ => Upstream::Scalar(g_scalar as f32),
    });
    if loss.takes_weight() {
        args = args.weight(wa.view());
    }
    if loss.takes_pos_weight() {
        args = args.pos_weight(qa.view());
    }
    let out = reference::compute(&loss, &args).unwrap();
    let grad = out.grad.unwrap();
    let rounded = |v: &[f64]| -> Vec<f64> { v.iter().map(|&x| f64::from(x as f32)).collect() };
    let p0 = rounded(&p);
    // The objective whose derivative the reference's gradient must be: the per-element
    // formulas, reduced here independently of `reference::compute`, on the same f32-rounded
    // t, w, q and g the reference saw.
    let (t_r, w_r, q_r, g_r) = (rounded(&t), rounded(&w), rounded(&q), rounded(&g_arr));
    let objective = |p: &[f64]| -> f64 {
        let per: Vec<f64> = (0..n)
            .map(|k| match loss {
                Loss::Mse => reference::mse(p[k], t_r[k]).0,
                Loss::Mae => reference::mae(p[k], t_r[k]).0,
                Loss::Huber { delta } => reference::huber(p[k], t_r[k], f64::from(delta)).0,
                Loss::Bce => reference::bce(p[k], t_r[k], w_r[k % c]).0,
                Loss::BceWithLogits => {
                    reference::bce_with_logits(p[k], t_r[k], w_r[k % c], q_r[k % c]).0
                }
                _ => unreachable!(),
            })
            .collect();
        let gs = f64::from(g_scalar as f32);
        match reduction {
            Reduction::Mean => gs * per.iter().sum::<f64>() / n as f64,
            Reduction::Sum => gs * per.iter().sum::<f64>(),
            Reduction::None => per.iter().zip(&g_r).map(|(l, g)| l * g).sum(),
        }
    };
    for k in 0..n {
        let mut hi = p0.clone();
        let mut lo = p0.clone();
        hi[k] += FD_STEP;
        lo[k] -= FD_STEP;
        let fd = (objective(&hi) - objective(&lo)) / (2.0 * FD_STEP);
        let an = grad.as_slice().unwrap()[k];
        assert!(
            (fd - an).abs() <= FD_RTOL * an.abs().max(1.0),
            "{} {}: element {k}: analytic {an:e}, finite difference {fd:e}",
            loss.name(),
            reduction.name()
        );
    }
    // The value is the objective's own reduction (with g = 1).
    if let Some(v) = out.value {
        let gs = f64::from(g_scalar as f32);
        approx::assert_relative_eq!(v * gs, objective(&p0), max_relative = 1e-12);
    }
}

#[test]
fn every_reference_gradient_matches_finite_differences() {
    let losses = [
        Loss::Mse,
        Loss::Mae,
        Loss::Huber { delta: 1.0 },
        Loss::Huber { delta: 0.3 },
        Loss::Bce,
        Loss::BceWithLogits,
    ];
    for (i, loss) in losses.into_iter().enumerate() {
        for (j, reduction) in [Reduction::Mean, Reduction::Sum, Reduction::None]
            .into_iter()
            .enumerate()
        {
            check_fd(loss, reduction, 1000 + 10 * i as u64 + j as u64);
        }
    }
}

/// The per-element derivative of each formula, by finite differences over a grid that
/// includes large logits and probabilities near (not at) the clamps.
#[test]
fn per_element_derivatives_on_a_grid() {
    let h = 1e-7;
    for x in [-30.0, -5.0, -0.5, 0.0, 0.5, 5.0, 30.0] {
        for t in [0.0, 0.3, 1.0] {
            for (w, q) in [(1.0, 1.0), (0.5, 3.0)] {
                let f = |x| reference::bce_with_logits(x, t, w, q).0;
                let fd = (f(x + h) - f(x - h)) / (2.0 * h);
                let an = reference::bce_with_logits(x, t, w, q).1;
                assert!(
                    (fd - an).abs() <= 1e-6 * an.abs().max(1.0),
                    "x={x} t={t}: {an} vs {fd}"
                );
            }
        }
    }
    for p in [1e-4, 0.01, 0.5, 0.99, 1.0 - 1e-4] {
        for t in [0.0, 0.3, 1.0] {
            let f = |p| reference::bce(p, t, 1.0).0;
            let h = 1e-9;
            let fd = (f(p + h) - f(p - h)) / (2.0 * h);
            let an = reference::bce(p, t, 1.0).1;
            assert!(
                (fd - an).abs() <= 1e-5 * an.abs().max(1.0),
                "p={p} t={t}: {an} vs {fd}"
            );
        }
    }
}

/// Literal values, each worked by hand from the formula (PyTorch gives the same:
/// `F.binary_cross_entropy(torch.tensor([0.8]), torch.tensor([1.]))` = −ln 0.8;
/// `F.binary_cross_entropy(torch.tensor([0.]), torch.tensor([1.]))` = 100, its log clamp;
/// `F.binary_cross_entropy_with_logits(torch.tensor([0.]), torch.tensor([0.]))` = ln 2).
#[test]
fn worked_examples() {
    approx::assert_relative_eq!(
        reference::bce(0.8, 1.0, 1.0).0,
        -(0.8f64.ln()),
        max_relative = 1e-15
    );
    assert_eq!(reference::bce(0.0, 1.0, 1.0).0, 100.0);
    assert_eq!(reference::bce(1.0, 0.0, 1.0).0, 100.0);
    assert_eq!(reference::bce(0.0, 1.0, 1.0).1, -1e12);
    approx::assert_relative_eq!(
        reference::bce_with_logits(0.0, 0.0, 1.0, 1.0).0,
        2f64.ln(),
        max_relative = 1e-15
    );
    assert_eq!(reference::bce_with_logits(0.0, 0.0, 1.0, 1.0).1, 0.5);
    assert_eq!(reference::mae(2.0, 2.0), (0.0, 0.0));
    assert_eq!(reference::huber(3.0, 0.0, 1.0), (2.5, 1.0));
    assert_eq!(reference::mse(3.0, 1.0), (4.0, 4.0));
}

/// Mean divides by N, the gradient too (the seed notes' `p − t` is missing both 2 and 1/N).
#[test]
fn mean_gradient_carries_two_over_n() {
    let p = ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn();
    let t = ndarray::arr1(&[0.0f32; 4]).into_dyn();
    let out = reference::compute(&Loss::Mse, &LossArgs::new(p.view(), t.view())).unwrap();
    assert_eq!(out.value, Some(30.0 / 4.0));
    assert_eq!(out.grad.unwrap().as_slice().unwrap(), &[0.5, 1.0, 1.5, 2.0]);
    assert_eq!(out.counted, 4);
}

#[test]
fn reference_errors_match_the_gpu_path() {
    let p = ArrayD::<f32>::from_elem(IxDyn(&[2, 3]), 0.5);
    let t = ArrayD::<f32>::from_elem(IxDyn(&[3, 2]), 0.5);
    assert!(matches!(
        reference::compute(&Loss::Mse, &LossArgs::new(p.view(), t.view())),
        Err(Error::ShapeMismatch { what: "target", .. })
    ));
    let e = ArrayD::<f32>::zeros(IxDyn(&[0]));
    assert!(matches!(
        reference::compute(&Loss::Mse, &LossArgs::new(e.view(), e.view())),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        reference::compute(
            &Loss::Huber { delta: -1.0 },
            &LossArgs::new(p.view(), p.view())
        ),
        Err(Error::InvalidOption {
            option: "delta",
            ..
        })
    ));
    let mut bad = p.clone();
    bad[[1, 2]] = 1.0001;
    bad[[1, 1]] = -1e-7;
    assert!(matches!(
        reference::compute(&Loss::Bce, &LossArgs::new(bad.view(), p.view())),
        Err(Error::OutOfDomain { index: 4, .. })
    ));
}
