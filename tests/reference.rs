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
            // Log-rates (or rates, away from 0) and counts.
            Loss::PoissonNll {
                log_input: true, ..
            } => (rng.random_range(-3.0..3.0), rng.random_range(0.0..6.0)),
            Loss::PoissonNll { .. } => (rng.random_range(0.1..5.0), rng.random_range(0.0..6.0)),
            Loss::Focal { .. } => (rng.random_range(-6.0..6.0), rng.random_range(0.0..=1.0)),
            // Log-probabilities against probabilities (or log-probabilities).
            Loss::KlDiv {
                log_target: false, ..
            } => (rng.random_range(-6.0..0.0), rng.random_range(0.0..=1.0)),
            Loss::KlDiv { .. } => (rng.random_range(-6.0..0.0), rng.random_range(-6.0..0.0)),
            _ => (rng.random_range(-3.0..3.0), rng.random_range(-3.0..3.0)),
        };
        let d = (pi - ti).abs();
        let near_kink = match loss {
            Loss::Mae => d < 1e-3,
            Loss::Huber { delta, .. } => (d - f64::from(*delta)).abs() < 1e-3,
            Loss::SmoothL1 { beta, .. } => (d - f64::from(*beta)).abs() < 1e-3 || d < 1e-3,
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
                Loss::Mse => wgpu_loss::losses::mse::reference::loss_and_grad(p[k], t_r[k]).0,
                Loss::Mae => wgpu_loss::losses::mae::reference::loss_and_grad(p[k], t_r[k]).0,
                Loss::Huber { delta, .. } => {
                    wgpu_loss::losses::huber::reference::loss_and_grad(
                        p[k],
                        t_r[k],
                        f64::from(delta),
                    )
                    .0
                }
                Loss::SmoothL1 { beta, .. } => {
                    wgpu_loss::losses::smooth_l1::reference::loss_and_grad(
                        p[k],
                        t_r[k],
                        f64::from(beta),
                    )
                    .0
                }
                Loss::Bce => {
                    wgpu_loss::losses::bce::reference::loss_and_grad(p[k], t_r[k], w_r[k % c]).0
                }
                Loss::BceWithLogits => {
                    wgpu_loss::losses::bce_with_logits::reference::loss_and_grad(
                        p[k],
                        t_r[k],
                        w_r[k % c],
                        q_r[k % c],
                    )
                    .0
                }
                Loss::PoissonNll {
                    log_input,
                    full,
                    eps,
                    ..
                } => {
                    wgpu_loss::losses::poisson_nll::reference::loss_and_grad(
                        p[k],
                        t_r[k],
                        log_input,
                        full,
                        f64::from(eps),
                    )
                    .0
                }
                Loss::KlDiv { log_target, .. } => {
                    wgpu_loss::losses::kl_div::reference::loss_and_grad(p[k], t_r[k], log_target).0
                }
                Loss::Focal { alpha, gamma, .. } => {
                    wgpu_loss::losses::focal::reference::loss_and_grad(
                        p[k],
                        t_r[k],
                        f64::from(alpha),
                        f64::from(gamma),
                    )
                    .0
                }
                _ => unreachable!(),
            })
            .collect();
        let gs = f64::from(g_scalar as f32);
        match reduction {
            Reduction::Mean => gs * per.iter().sum::<f64>() / n as f64,
            Reduction::Sum => gs * per.iter().sum::<f64>(),
            Reduction::None => per.iter().zip(&g_r).map(|(l, g)| l * g).sum(),
            other => panic!("a reduction this test does not know: {other:?}"),
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
        Loss::huber().delta(1.0).build().unwrap(),
        Loss::huber().delta(0.3).build().unwrap(),
        Loss::smooth_l1().beta(1.0).build().unwrap(),
        Loss::smooth_l1().beta(0.3).build().unwrap(),
        Loss::smooth_l1().beta(0.0).build().unwrap(),
        Loss::Bce,
        Loss::BceWithLogits,
        Loss::poisson_nll().build().unwrap(),
        Loss::poisson_nll().full(true).build().unwrap(),
        Loss::poisson_nll().log_input(false).build().unwrap(),
        Loss::poisson_nll()
            .log_input(false)
            .full(true)
            .eps(1e-3)
            .build()
            .unwrap(),
        Loss::focal().build().unwrap(),
        Loss::kl_div().build().unwrap(),
        Loss::kl_div().log_target(true).build().unwrap(),
        Loss::focal().alpha(-1.0).gamma(0.0).build().unwrap(),
        Loss::focal().alpha(0.7).gamma(0.5).build().unwrap(),
        Loss::focal().gamma(3.0).build().unwrap(),
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
                let f =
                    |x| wgpu_loss::losses::bce_with_logits::reference::loss_and_grad(x, t, w, q).0;
                let fd = (f(x + h) - f(x - h)) / (2.0 * h);
                let an = wgpu_loss::losses::bce_with_logits::reference::loss_and_grad(x, t, w, q).1;
                assert!(
                    (fd - an).abs() <= 1e-6 * an.abs().max(1.0),
                    "x={x} t={t}: {an} vs {fd}"
                );
            }
        }
    }
    for p in [1e-4, 0.01, 0.5, 0.99, 1.0 - 1e-4] {
        for t in [0.0, 0.3, 1.0] {
            let f = |p| wgpu_loss::losses::bce::reference::loss_and_grad(p, t, 1.0).0;
            let h = 1e-9;
            let fd = (f(p + h) - f(p - h)) / (2.0 * h);
            let an = wgpu_loss::losses::bce::reference::loss_and_grad(p, t, 1.0).1;
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
        wgpu_loss::losses::bce::reference::loss_and_grad(0.8, 1.0, 1.0).0,
        -(0.8f64.ln()),
        max_relative = 1e-15
    );
    assert_eq!(
        wgpu_loss::losses::bce::reference::loss_and_grad(0.0, 1.0, 1.0).0,
        100.0
    );
    assert_eq!(
        wgpu_loss::losses::bce::reference::loss_and_grad(1.0, 0.0, 1.0).0,
        100.0
    );
    assert_eq!(
        wgpu_loss::losses::bce::reference::loss_and_grad(0.0, 1.0, 1.0).1,
        -1e12
    );
    approx::assert_relative_eq!(
        wgpu_loss::losses::bce_with_logits::reference::loss_and_grad(0.0, 0.0, 1.0, 1.0).0,
        2f64.ln(),
        max_relative = 1e-15
    );
    assert_eq!(
        wgpu_loss::losses::bce_with_logits::reference::loss_and_grad(0.0, 0.0, 1.0, 1.0).1,
        0.5
    );
    assert_eq!(
        wgpu_loss::losses::mae::reference::loss_and_grad(2.0, 2.0),
        (0.0, 0.0)
    );
    assert_eq!(
        wgpu_loss::losses::huber::reference::loss_and_grad(3.0, 0.0, 1.0),
        (2.5, 1.0)
    );
    assert_eq!(
        wgpu_loss::losses::mse::reference::loss_and_grad(3.0, 1.0),
        (4.0, 4.0)
    );
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
    // An invalid option is refused when the loss is built.
    assert!(matches!(
        Loss::huber().delta(-1.0).build(),
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

// ---------------------------------------------------------------------------------------------
// Row-wise family: categorical cross entropy, softmax cross entropy, cosine proximity.
// ---------------------------------------------------------------------------------------------

/// The kind of target a row-wise case uses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RowKind {
    Dense,
    I32,
    I64,
}

fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Random inputs for a row-wise case of `b` rows of `c`: prediction (away from the cce clamp
/// at 1e-12 and from [0, 1]'s ends), float targets, class indices (row 0 never ignored, about
/// a quarter of the others `ignore_index`), class weights in [0.2, 2), upstream per row.
struct RowInputs {
    pred: Vec<f32>,
    dense: Vec<f32>,
    classes: Vec<i64>,
    weight: Vec<f32>,
    upstream: Vec<f32>,
}

fn row_inputs(loss: &Loss, b: usize, c: usize, seed: u64) -> RowInputs {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = b * c;
    let pred: Vec<f32> = (0..n)
        .map(|_| match loss {
            Loss::CategoricalCrossEntropy => rng.random_range(0.05..0.95),
            Loss::SoftmaxCrossEntropy { .. } => rng.random_range(-4.0..4.0),
            _ => rng.random_range(-3.0..3.0),
        })
        .collect();
    let mut dense: Vec<f32> = Vec::with_capacity(n);
    for _ in 0..b {
        let mut row: Vec<f32> = (0..c)
            .map(|_| match loss {
                Loss::CosineProximity { .. } => rng.random_range(-3.0..3.0),
                // Probabilities, some exactly 0.
                _ if rng.random_bool(0.2) => 0.0,
                _ => rng.random_range(0.05..1.0),
            })
            .collect();
        if let Loss::SoftmaxCrossEntropy { .. } = loss {
            let s: f32 = row.iter().sum();
            if s == 0.0 {
                row[0] = 1.0;
            } else {
                row.iter_mut().for_each(|t| *t /= s);
            }
        }
        dense.extend(row);
    }
    let ignore_index = match loss {
        Loss::SoftmaxCrossEntropy { ignore_index, .. } => *ignore_index,
        _ => -100,
    };
    let classes = (0..b)
        .map(|r| {
            if r > 0 && rng.random_bool(0.25) {
                ignore_index
            } else {
                // A real class (not ignore_index when that lies in range).
                loop {
                    let k = rng.random_range(0..c as i64);
                    if k != ignore_index || c == 1 {
                        break k;
                    }
                }
            }
        })
        .collect();
    let weight = (0..c).map(|_| rng.random_range(0.2..2.0)).collect();
    let upstream = (0..b).map(|_| rng.random_range(-2.0..2.0)).collect();
    RowInputs {
        pred,
        dense,
        classes,
        weight,
        upstream,
    }
}

/// The per-row losses of the reference's own per-row formulas (None for an ignored row), and
/// the mean's divisor D, computed here independently of `reference::compute`.
fn row_losses(
    loss: &Loss,
    x: &[f64],
    c: usize,
    kind: RowKind,
    dense: &[f64],
    classes: &[i64],
    weight: Option<&[f64]>,
) -> (Vec<Option<f64>>, f64) {
    let b = x.len() / c;
    let mut d = 0.0;
    let per = (0..b)
        .map(|r| {
            let (xr, tr) = (&x[r * c..(r + 1) * c], &dense[r * c..(r + 1) * c]);
            match *loss {
                Loss::CategoricalCrossEntropy => {
                    d += 1.0;
                    Some(
                        wgpu_loss::losses::categorical_cross_entropy::reference::loss_and_grad(
                            xr, tr,
                        )
                        .0,
                    )
                }
                Loss::CosineProximity { eps, .. } => {
                    d += 1.0;
                    Some(
                        wgpu_loss::losses::cosine_proximity::reference::loss_and_grad(
                            xr,
                            tr,
                            f64::from(eps),
                        )
                        .0,
                    )
                }
                Loss::SoftmaxCrossEntropy {
                    label_smoothing,
                    z_loss,
                    ignore_index,
                    softcap,
                    ..
                } => {
                    // The cap applied here, so that the finite differences check the gradient
                    // through it.
                    let cap = f64::from(softcap);
                    let capped: Vec<f64> = if cap > 0.0 {
                        xr.iter().map(|&v| cap * (v / cap).tanh()).collect()
                    } else {
                        xr.to_vec()
                    };
                    let target = if kind == RowKind::Dense {
                        d += 1.0;
                        reference::RowTarget::Probs(tr)
                    } else if classes[r] == ignore_index {
                        return None;
                    } else {
                        let k = classes[r] as usize;
                        d += weight.map_or(1.0, |w| w[k]);
                        reference::RowTarget::Class(k)
                    };
                    Some(
                        wgpu_loss::losses::softmax_cross_entropy::reference::loss_and_grad(
                            &capped,
                            target,
                            weight,
                            f64::from(label_smoothing),
                            f64::from(z_loss),
                        )
                        .0,
                    )
                }
                _ => unreachable!(),
            }
        })
        .collect();
    (per, d)
}

/// One row-wise finite-difference case: the gradient of `reference::compute` against central
/// differences of `g · value` (Mean, Sum) or `Σ_r g_r ℓ_r` (None), the objective reduced here
/// from the per-row formulas (Mean: divided by D, the weight sum of the rows not ignored for
/// class-index targets, else B). Also checks the value, the per-row losses and `counted`.
fn check_rows_fd(
    loss: Loss,
    shape: &[usize],
    kind: RowKind,
    weighted: bool,
    reduction: Reduction,
    seed: u64,
) {
    let c = *shape.last().unwrap();
    let row_shape = &shape[..shape.len() - 1];
    let b: usize = row_shape.iter().product();
    let n = b * c;
    let inp = row_inputs(&loss, b, c, seed);
    let pa = arr(shape, inp.pred.clone());
    let ta = arr(shape, inp.dense.clone());
    let c32: Vec<i32> = inp.classes.iter().map(|&k| k as i32).collect();
    let ci32 = ArrayD::from_shape_vec(IxDyn(row_shape), c32).unwrap();
    let ci64 = ArrayD::from_shape_vec(IxDyn(row_shape), inp.classes.clone()).unwrap();
    let wa = arr(&[c], inp.weight.clone());
    let ga = arr(row_shape, inp.upstream.clone());
    let g_scalar = -1.75f32;
    let mut args = match kind {
        RowKind::Dense => LossArgs::new(pa.view(), ta.view()),
        RowKind::I32 => LossArgs::new(pa.view(), ci32.view()),
        RowKind::I64 => LossArgs::new(pa.view(), ci64.view()),
    }
    .reduction(reduction)
    .upstream(match reduction {
        Reduction::None => Upstream::Array(ga.view()),
        _ => Upstream::Scalar(g_scalar),
    });
    if weighted {
        args = args.weight(wa.view());
    }
    let out = reference::compute(&loss, &args).unwrap();
    let grad = out.grad.clone().unwrap();
    assert_eq!(grad.shape(), shape);
    let grad: Vec<f64> = grad.iter().copied().collect();

    let (dense, w, g_r) = (f64s(&inp.dense), f64s(&inp.weight), f64s(&inp.upstream));
    let w = weighted.then_some(&w[..]);
    let gs = f64::from(g_scalar);
    let objective = |x: &[f64]| -> f64 {
        let (per, d) = row_losses(&loss, x, c, kind, &dense, &inp.classes, w);
        let sum: f64 = per.iter().flatten().sum();
        match reduction {
            Reduction::Mean => gs * sum / d,
            Reduction::Sum => gs * sum,
            Reduction::None => per
                .iter()
                .zip(&g_r)
                .map(|(l, g)| l.unwrap_or(0.0) * g)
                .sum(),
            other => panic!("a reduction this test does not know: {other:?}"),
        }
    };
    let x0 = f64s(&inp.pred);
    let what = format!(
        "{} {:?} weighted={weighted} {} {shape:?} seed {seed}",
        loss.name(),
        kind,
        reduction.name()
    );
    for k in 0..n {
        let mut hi = x0.clone();
        let mut lo = x0.clone();
        hi[k] += FD_STEP;
        lo[k] -= FD_STEP;
        let fd = (objective(&hi) - objective(&lo)) / (2.0 * FD_STEP);
        let an = grad[k];
        assert!(
            (fd - an).abs() <= FD_RTOL * an.abs().max(1.0),
            "{what}: element {k}: analytic {an:e}, finite difference {fd:e}"
        );
    }
    let (per, _) = row_losses(&loss, &x0, c, kind, &dense, &inp.classes, w);
    let not_ignored = per.iter().flatten().count();
    assert_eq!(out.counted, not_ignored, "{what}: counted");
    match reduction {
        Reduction::None => {
            let losses = out.losses.unwrap();
            assert_eq!(losses.shape(), row_shape, "{what}");
            for (got, want) in losses.iter().zip(&per) {
                assert_eq!(*got, want.unwrap_or(0.0), "{what}: per-row loss");
            }
            assert!(out.value.is_none());
        }
        _ => {
            approx::assert_relative_eq!(
                out.value.unwrap() * gs,
                objective(&x0),
                max_relative = 1e-12
            );
            assert!(out.losses.is_none());
        }
    }
}

#[test]
fn every_row_wise_reference_gradient_matches_finite_differences() {
    let shapes: [&[usize]; 5] = [&[3, 5], &[2, 1], &[4, 7], &[2, 3, 4], &[6]];
    let mut seed = 7000u64;
    let mut next = || {
        seed += 1;
        seed
    };
    let mut cases = 0;
    for shape in shapes {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            check_rows_fd(
                Loss::CategoricalCrossEntropy,
                shape,
                RowKind::Dense,
                false,
                reduction,
                next(),
            );
            check_rows_fd(
                Loss::cosine_proximity().build().unwrap(),
                shape,
                RowKind::Dense,
                false,
                reduction,
                next(),
            );
            cases += 2;
            for kind in [RowKind::Dense, RowKind::I32, RowKind::I64] {
                for weighted in [false, true] {
                    for (i, (label_smoothing, z_loss, softcap)) in [
                        (0.0, 0.0, 0.0),
                        (0.1, 0.0, 0.0),
                        (0.0, 1e-3, 0.0),
                        (0.1, 1e-3, 0.0),
                        (0.0, 0.0, 2.0),
                        (0.1, 1e-3, 5.0),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        // PyTorch's default ignore_index, and one inside [0, C) (padding class).
                        let ignore_index = if i % 2 == 0 { -100 } else { 1 };
                        let loss = Loss::softmax_cross_entropy()
                            .label_smoothing(label_smoothing)
                            .z_loss(z_loss)
                            .softcap(softcap)
                            .ignore_index(ignore_index)
                            .build()
                            .unwrap();
                        check_rows_fd(loss, shape, kind, weighted, reduction, next());
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 5 * 3 * (2 + 3 * 2 * 6));
}

/// A row's `(ℓ, ∂ℓ/∂x)` from its `x`.
type RowFn<'a> = dyn Fn(&[f64]) -> (f64, Vec<f64>) + 'a;

/// Asserts a row function's gradient `f(x).1` against central differences of its value
/// `f(x).0`, element by element, within `tol(analytic)`.
#[track_caller]
fn assert_row_fd(f: &RowFn<'_>, x: &[f64], tol: impl Fn(f64) -> f64, what: &str) {
    let an = f(x).1;
    for j in 0..x.len() {
        let (mut hi, mut lo) = (x.to_vec(), x.to_vec());
        hi[j] += FD_STEP;
        lo[j] -= FD_STEP;
        let fd = (f(&hi).0 - f(&lo).0) / (2.0 * FD_STEP);
        assert!(
            (fd - an[j]).abs() <= tol(an[j]),
            "{what} element {j}: analytic {:e}, finite difference {fd:e}",
            an[j]
        );
    }
}

/// Per-row derivatives of softmax cross entropy with large logits, label smoothing, weights
/// and z-loss together, by finite differences of the per-row function itself.
#[test]
fn softmax_row_derivatives_with_large_logits() {
    let x = [30.0, -25.0, 0.5, 12.0];
    let w = [0.5, 2.0, 1.0, 0.0];
    let t = [0.1, 0.6, 0.3, 0.0];
    for target in [
        reference::RowTarget::Class(1),
        reference::RowTarget::Class(3),
        reference::RowTarget::Probs(&t),
    ] {
        for w in [None, Some(&w[..])] {
            let f = |x: &[f64]| {
                wgpu_loss::losses::softmax_cross_entropy::reference::loss_and_grad(
                    x, target, w, 0.1, 1e-3,
                )
            };
            assert_row_fd(
                &f,
                &x,
                |an| 1e-5 * an.abs().max(1.0),
                &format!("{target:?} {w:?}"),
            );
        }
    }
}

/// Soft-capped softmax cross entropy: by finite differences of the per-row function (logits
/// up to 4c, where the cap's derivative is 1e-3, and smoothing, weights and z-loss together),
/// the uncapped reference at y = c·tanh(x/c), and the limits at ±∞ (capped to ±c, gradient 0).
#[test]
fn softcap_row_derivatives_and_limits() {
    use wgpu_loss::losses::softmax_cross_entropy::reference::{
        capped_loss_and_grad, loss_and_grad,
    };
    let c = 10.0;
    let x = [40.0, -25.0, 0.5, 12.0, -3.0];
    let w = [0.5, 2.0, 1.0, 0.0, 1.5];
    let t = [0.1, 0.5, 0.3, 0.0, 0.1];
    for target in [
        reference::RowTarget::Class(1),
        reference::RowTarget::Class(0),
        reference::RowTarget::Probs(&t),
    ] {
        for w in [None, Some(&w[..])] {
            let f = |x: &[f64]| capped_loss_and_grad(x, target, w, 0.1, 1e-3, c);
            let value = f(&x).0;
            let y: Vec<f64> = x.iter().map(|&v| c * (v / c).tanh()).collect();
            assert_eq!(value, loss_and_grad(&y, target, w, 0.1, 1e-3).0);
            // Central differences' rounding, 2ε|ℓ|/h with |ℓ| < 50, is below 2e-8.
            assert_row_fd(
                &f,
                &x,
                |an| 1e-6 * an.abs() + 2e-8,
                &format!("{target:?} {w:?}"),
            );
        }
    }
    // ±∞ logits are capped to ±c: the loss is that of a finite row, and their gradient is 0.
    let inf = [f64::INFINITY, f64::NEG_INFINITY, 1.0];
    let (value, grad) =
        capped_loss_and_grad(&inf, reference::RowTarget::Class(2), None, 0.0, 0.0, c);
    let want = loss_and_grad(
        &[c, -c, 10.0 * (0.1f64).tanh()],
        reference::RowTarget::Class(2),
        None,
        0.0,
        0.0,
    );
    assert_eq!(value, want.0);
    assert!(
        value.is_finite() && grad[0] == 0.0 && grad[1] == 0.0 && grad[2] < 0.0,
        "{grad:?}"
    );
    // A NaN stays NaN.
    let (value, grad) = capped_loss_and_grad(
        &[f64::NAN, 1.0],
        reference::RowTarget::Class(1),
        None,
        0.0,
        0.0,
        c,
    );
    assert!(value.is_nan() && grad.iter().all(|g| g.is_nan()));
    // c = 0 is no cap.
    assert_eq!(
        capped_loss_and_grad(&x, reference::RowTarget::Class(1), None, 0.0, 0.0, 0.0),
        loss_and_grad(&x, reference::RowTarget::Class(1), None, 0.0, 0.0)
    );
}

fn ln_sum_exp(x: &[f64]) -> f64 {
    x.iter().map(|v| v.exp()).sum::<f64>().ln()
}

/// Softmax cross entropy, worked by hand from the formula on a tiny example.
/// PyTorch: `F.cross_entropy(torch.tensor([[1., 2., 3.]]), torch.tensor([2]))`
/// = ln(e¹ + e² + e³) − 3 ≈ 0.40761, gradient softmax(x) − onehot(2).
#[test]
fn softmax_cross_entropy_worked_examples() {
    let x = [1.0, 2.0, 3.0];
    let lse = ln_sum_exp(&x);
    let s: Vec<f64> = x.iter().map(|v| (v - lse).exp()).collect();
    let p = arr(&[1, 3], vec![1.0, 2.0, 3.0]);
    let loss = Loss::softmax_cross_entropy().build().unwrap();

    // Class index, i32 and i64 alike.
    let c32 = ndarray::arr1(&[2i32]).into_dyn();
    let c64 = ndarray::arr1(&[2i64]).into_dyn();
    for out in [
        reference::compute(&loss, &LossArgs::new(p.view(), c32.view())).unwrap(),
        reference::compute(&loss, &LossArgs::new(p.view(), c64.view())).unwrap(),
    ] {
        approx::assert_relative_eq!(out.value.unwrap(), lse - 3.0, max_relative = 1e-14);
        approx::assert_relative_eq!(out.value.unwrap(), 0.40760596444438, max_relative = 1e-12);
        let g = out.grad.unwrap();
        for j in 0..3 {
            let want = s[j] - if j == 2 { 1.0 } else { 0.0 };
            approx::assert_relative_eq!(g[[0, j]], want, max_relative = 1e-14);
        }
        assert_eq!(out.counted, 1);
    }

    // Probability targets: `F.cross_entropy(x, torch.tensor([[0.2, 0.3, 0.5]]))`
    // = −Σ t_j ln s_j, gradient s − t.
    let t = [0.2, 0.3, 0.5];
    let ta = arr(&[1, 3], vec![0.2, 0.3, 0.5]);
    let out = reference::compute(&loss, &LossArgs::new(p.view(), ta.view())).unwrap();
    let tf = f64s(&[0.2f32, 0.3, 0.5]); // what the reference saw
    let want: f64 = -(0..3).map(|j| tf[j] * s[j].ln()).sum::<f64>();
    approx::assert_relative_eq!(out.value.unwrap(), want, max_relative = 1e-13);
    let want_t: f64 = -(0..3).map(|j| t[j] * s[j].ln()).sum::<f64>();
    approx::assert_relative_eq!(out.value.unwrap(), want_t, max_relative = 1e-6);
    let g = out.grad.unwrap();
    let tsum: f64 = tf.iter().sum();
    for j in 0..3 {
        approx::assert_relative_eq!(g[[0, j]], tsum * s[j] - tf[j], max_relative = 1e-13);
    }

    // Label smoothing: `F.cross_entropy(x, torch.tensor([0]), label_smoothing=0.1)`
    // = 0.9 (lse − x_0) + (0.1 / 3) Σ_j (lse − x_j).
    let smooth = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(0.0)
        .ignore_index(-100)
        .build()
        .unwrap();
    let c0 = ndarray::arr1(&[0i64]).into_dyn();
    let out = reference::compute(&smooth, &LossArgs::new(p.view(), c0.view())).unwrap();
    let eps = f64::from(0.1f32);
    let want = (1.0 - eps) * (lse - 1.0) + eps / 3.0 * x.iter().map(|v| lse - v).sum::<f64>();
    approx::assert_relative_eq!(out.value.unwrap(), want, max_relative = 1e-14);

    // Class weights with the weighted mean, and an ignored row:
    // `F.cross_entropy(x, torch.tensor([2, 0, -100]), weight=torch.tensor([0.5, 1., 2.]))`
    // = (w_2 ℓ_0 + w_0 ℓ_1) / (w_2 + w_0), ℓ_r unweighted.
    let p2 = arr(&[3, 3], vec![1.0, 2.0, 3.0, 0.0, 0.0, 1.0, 9.0, 9.0, 9.0]);
    let cls = ndarray::arr1(&[2i64, 0, -100]).into_dyn();
    let w = ndarray::arr1(&[0.5f32, 1.0, 2.0]).into_dyn();
    let out = reference::compute(
        &loss,
        &LossArgs::new(p2.view(), cls.view()).weight(w.view()),
    )
    .unwrap();
    let l0 = lse - 3.0;
    let l1 = ln_sum_exp(&[0.0, 0.0, 1.0]);
    approx::assert_relative_eq!(
        out.value.unwrap(),
        (2.0 * l0 + 0.5 * l1) / 2.5,
        max_relative = 1e-14
    );
    assert_eq!(out.counted, 2);
    let g = out.grad.unwrap();
    assert!(g.slice(ndarray::s![2, ..]).iter().all(|&v| v == 0.0));
    approx::assert_relative_eq!(g[[0, 2]], 2.0 * (s[2] - 1.0) / 2.5, max_relative = 1e-14);

    // z-loss (PaLM; T5X `cross_entropy_with_logits(..., z_loss)` adds z_loss · log_z²):
    // ℓ = (lse − 3) + λ lse², gradient s − onehot + 2 λ lse s.
    let zl = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(1e-3)
        .ignore_index(-100)
        .build()
        .unwrap();
    let out = reference::compute(&zl, &LossArgs::new(p.view(), c64.view())).unwrap();
    let lambda = f64::from(1e-3f32);
    approx::assert_relative_eq!(
        out.value.unwrap(),
        lse - 3.0 + lambda * lse * lse,
        max_relative = 1e-14
    );
    let g = out.grad.unwrap();
    approx::assert_relative_eq!(
        g[[0, 0]],
        s[0] + 2.0 * lambda * lse * s[0],
        max_relative = 1e-14
    );
}

/// Keras's own examples. `keras.losses.categorical_crossentropy([[0, 1, 0], [0, 0, 1]],
/// [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])` = [0.0513, 2.303] = [−ln 0.95, −ln 0.1] (the rows sum
/// to 1, so Keras's renormalisation changes nothing; the 0 probability has target 0).
/// `keras.losses.CosineSimilarity()([[0., 1.], [1., 1.]], [[1., 0.], [1., 1.]])` = −0.5,
/// the mean of −cos = [0, −1].
#[test]
fn cce_and_cosine_worked_examples() {
    let p = arr(&[2, 3], vec![0.05, 0.95, 0.0, 0.1, 0.8, 0.1]);
    let t = arr(&[2, 3], vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let out = reference::compute(
        &Loss::CategoricalCrossEntropy,
        &LossArgs::new(p.view(), t.view()).reduction(Reduction::None),
    )
    .unwrap();
    let l = out.losses.unwrap();
    approx::assert_relative_eq!(l[0], -f64::from(0.95f32).ln(), max_relative = 1e-15);
    approx::assert_relative_eq!(l[1], -f64::from(0.1f32).ln(), max_relative = 1e-15);
    approx::assert_relative_eq!(l[0], 0.0513, epsilon = 1e-4);
    approx::assert_relative_eq!(l[1], 2.303, epsilon = 1e-3);
    let g = out.grad.unwrap();
    approx::assert_relative_eq!(g[[0, 1]], -1.0 / f64::from(0.95f32), max_relative = 1e-15);
    assert_eq!(g[[0, 0]], 0.0);
    assert_eq!(g[[0, 2]], 0.0); // −0 / max(0, 1e-12)
    // The clamps: ln 0 → −100, 1/0 → 1e12.
    assert_eq!(
        wgpu_loss::losses::categorical_cross_entropy::reference::loss_and_grad(&[0.0], &[1.0]),
        (100.0, vec![-1e12])
    );

    let yt = arr(&[2, 2], vec![0.0, 1.0, 1.0, 1.0]);
    let yp = arr(&[2, 2], vec![1.0, 0.0, 1.0, 1.0]);
    let out = reference::compute(
        &Loss::cosine_proximity().build().unwrap(),
        &LossArgs::new(yp.view(), yt.view()),
    )
    .unwrap();
    approx::assert_relative_eq!(out.value.unwrap(), -0.5, max_relative = 1e-15);
    // Row 0: ∂ℓ/∂p = −t / (‖p‖‖t‖) + cos p / ‖p‖² = −[0, 1] (cos = 0), halved by the mean.
    let g = out.grad.unwrap();
    assert_eq!(g[[0, 0]], 0.0);
    approx::assert_relative_eq!(g[[0, 1]], -0.5, max_relative = 1e-15);
    // Row 1: p = t, cos = 1: −t/2 + p/2 = 0.
    approx::assert_relative_eq!(g[[1, 0]], 0.0, epsilon = 1e-15);
}

/// Every row ignored: the mean's divisor is 0, so value 0, gradient 0, nothing counted (PyTorch
/// gives NaN); NaN logits in ignored rows are never read.
#[test]
fn all_rows_ignored() {
    let p = arr(&[3, 4], vec![f32::NAN; 12]);
    for loss in [
        Loss::softmax_cross_entropy().build().unwrap(),
        Loss::softmax_cross_entropy()
            .label_smoothing(0.1)
            .z_loss(1e-3)
            .ignore_index(7)
            .build()
            .unwrap(),
    ] {
        let Loss::SoftmaxCrossEntropy { ignore_index, .. } = loss else {
            unreachable!()
        };
        let cls = ndarray::arr1(&[ignore_index; 3]).into_dyn();
        let w = ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn();
        for weighted in [false, true] {
            let mut args = LossArgs::new(p.view(), cls.view());
            if weighted {
                args = args.weight(w.view());
            }
            let out = reference::compute(&loss, &args).unwrap();
            assert_eq!(out.value, Some(0.0));
            assert_eq!(out.counted, 0);
            assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
            let out = reference::compute(&loss, &args.clone().reduction(Reduction::None)).unwrap();
            assert!(out.losses.unwrap().iter().all(|&l| l == 0.0));
            assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
        }
    }
    // Rows not ignored whose class weights are 0: D = 0 again.
    let p = arr(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let cls = ndarray::arr1(&[0i64, 0]).into_dyn();
    let w = ndarray::arr1(&[0.0f32, 1.0, 1.0]).into_dyn();
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls.view()).weight(w.view()),
    )
    .unwrap();
    assert_eq!(out.value, Some(0.0));
    assert_eq!(out.counted, 2);
    assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
}

/// Logits of ±1e4 stay finite (lse with the maximum subtracted): logits [1e4, −1e4, 0] with
/// class 1 give lse − x_1 = 2e4.
#[test]
fn extreme_logits_are_finite() {
    let p = arr(&[2, 3], vec![1e4, -1e4, 0.0, -1e4, -1e4, 1e4]);
    let cls = ndarray::arr1(&[1i32, 0]).into_dyn();
    let probs = arr(&[2, 3], vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0]);
    let losses = [
        Loss::softmax_cross_entropy().build().unwrap(),
        Loss::softmax_cross_entropy()
            .label_smoothing(0.1)
            .z_loss(1e-3)
            .ignore_index(-100)
            .build()
            .unwrap(),
    ];
    for loss in losses {
        for args in [
            LossArgs::new(p.view(), cls.view()),
            LossArgs::new(p.view(), probs.view()),
        ] {
            let out = reference::compute(&loss, &args.reduction(Reduction::None)).unwrap();
            assert!(out.losses.as_ref().unwrap().iter().all(|l| l.is_finite()));
            assert!(out.grad.unwrap().iter().all(|g| g.is_finite()));
        }
    }
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls.view()).reduction(Reduction::None),
    )
    .unwrap();
    approx::assert_relative_eq!(out.losses.unwrap()[0], 2e4, max_relative = 1e-15);
}

/// Equal logits: softmax is uniform, so the loss is ln C for any class (and any target
/// distribution), `F.cross_entropy(torch.full((1, 5), 7.5), torch.tensor([3]))` = ln 5.
#[test]
fn equal_logits_give_ln_c() {
    let p = arr(&[2, 5], vec![7.5; 10]);
    let cls = ndarray::arr1(&[3i64, 0]).into_dyn();
    let t = arr(
        &[2, 5],
        vec![0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    );
    for args in [
        LossArgs::new(p.view(), cls.view()),
        LossArgs::new(p.view(), t.view()),
    ] {
        let out = reference::compute(
            &Loss::softmax_cross_entropy().build().unwrap(),
            &args.reduction(Reduction::None),
        )
        .unwrap();
        for l in out.losses.unwrap() {
            approx::assert_relative_eq!(l, 5f64.ln(), max_relative = 1e-6);
        }
    }
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls.view()),
    )
    .unwrap();
    approx::assert_relative_eq!(out.value.unwrap(), 5f64.ln(), max_relative = 1e-15);
    // Gradient 1/C − [j = c], halved by the mean over 2 rows.
    approx::assert_relative_eq!(
        out.grad.unwrap()[[0, 3]],
        (0.2 - 1.0) / 2.0,
        max_relative = 1e-14
    );
}

/// A row of −∞ logits but one, with the target on the finite one: loss 0 and a finite (zero)
/// gradient; the zero-weight terms contribute 0, never 0 · ∞ (PyTorch gives NaN for the
/// probability target).
#[test]
fn minus_infinity_logits_with_the_target_on_the_finite_one() {
    let ninf = f32::NEG_INFINITY;
    let p = arr(&[2, 4], vec![ninf, ninf, 2.5, ninf, ninf, 0.0, ninf, ninf]);
    let cls = ndarray::arr1(&[2i32, 1]).into_dyn();
    let onehot = arr(&[2, 4], vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let w = ndarray::arr1(&[1.0f32, 0.5, 2.0, 3.0]).into_dyn();
    for weighted in [false, true] {
        for dense in [false, true] {
            let mut args = if dense {
                LossArgs::new(p.view(), onehot.view())
            } else {
                LossArgs::new(p.view(), cls.view())
            };
            if weighted {
                args = args.weight(w.view());
            }
            let out = reference::compute(
                &Loss::softmax_cross_entropy().build().unwrap(),
                &args.clone().reduction(Reduction::None),
            )
            .unwrap();
            assert!(out.losses.unwrap().iter().all(|&l| l == 0.0));
            assert!(out.grad.unwrap().iter().all(|&g| g == 0.0));
            let out =
                reference::compute(&Loss::softmax_cross_entropy().build().unwrap(), &args).unwrap();
            assert_eq!(out.value, Some(0.0));
        }
    }
    // With a z-loss the row is still finite: ℓ = λ x_c², ∂ℓ/∂x_c = 2 λ x_c.
    let zl = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(1e-3)
        .ignore_index(-100)
        .build()
        .unwrap();
    let out = reference::compute(
        &zl,
        &LossArgs::new(p.view(), cls.view()).reduction(Reduction::Sum),
    )
    .unwrap();
    let lambda = f64::from(1e-3f32);
    approx::assert_relative_eq!(out.value.unwrap(), lambda * 6.25, max_relative = 1e-15);
    let g = out.grad.unwrap();
    assert!(g.iter().all(|v| v.is_finite()));
    approx::assert_relative_eq!(g[[0, 2]], 2.0 * lambda * 2.5, max_relative = 1e-15);
}

/// Cosine with a zero prediction row: loss 0 and gradient −t / (ε · max(‖t‖, ε)), no NaN;
/// zero target row: loss 0, gradient 0.
#[test]
fn cosine_zero_rows() {
    let p = arr(&[3, 3], vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
    let t = arr(&[3, 3], vec![3.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let out = reference::compute(
        &Loss::cosine_proximity().build().unwrap(),
        &LossArgs::new(p.view(), t.view()).reduction(Reduction::None),
    )
    .unwrap();
    let l = out.losses.unwrap();
    assert!(l.iter().all(|&v| v == 0.0), "{l:?}");
    let g = out.grad.unwrap();
    assert!(g.iter().all(|v| !v.is_nan()));
    let eps = f64::from(1e-8f32);
    for j in 0..3 {
        let tj = f64::from(t[[0, j]]);
        approx::assert_relative_eq!(g[[0, j]], -tj / (eps * 5.0), max_relative = 1e-15);
        assert_eq!(g[[1, j]], 0.0);
        assert_eq!(g[[2, j]], 0.0);
    }
}

/// NaN in one row (prediction or float target) makes that row's loss and every one of its
/// gradient entries NaN; the other rows are as without it.
#[test]
fn nan_stays_in_its_row() {
    let smooth = Loss::softmax_cross_entropy()
        .label_smoothing(0.1)
        .z_loss(1e-3)
        .ignore_index(-100)
        .build()
        .unwrap();
    for loss in [
        Loss::CategoricalCrossEntropy,
        Loss::softmax_cross_entropy().build().unwrap(),
        smooth,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        for nan_in_target in [false, true] {
            let (b, c) = (3, 4);
            let inp = row_inputs(&loss, b, c, 99);
            let (mut pred, mut dense) = (inp.pred.clone(), inp.dense.clone());
            if nan_in_target {
                dense[c + 2] = f32::NAN;
            } else {
                pred[c + 2] = f32::NAN;
            }
            let clean_p = arr(&[b, c], inp.pred.clone());
            let clean_t = arr(&[b, c], inp.dense.clone());
            let (pa, ta) = (arr(&[b, c], pred), arr(&[b, c], dense));
            let clean = reference::compute(
                &loss,
                &LossArgs::new(clean_p.view(), clean_t.view()).reduction(Reduction::None),
            )
            .unwrap();
            let out = reference::compute(
                &loss,
                &LossArgs::new(pa.view(), ta.view()).reduction(Reduction::None),
            )
            .unwrap();
            let (l, g) = (out.losses.unwrap(), out.grad.unwrap());
            let (cl, cg) = (clean.losses.unwrap(), clean.grad.unwrap());
            for r in 0..b {
                if r == 1 {
                    assert!(l[r].is_nan(), "{}", loss.name());
                    assert!(
                        g.index_axis(ndarray::Axis(0), r).iter().all(|v| v.is_nan()),
                        "{}",
                        loss.name()
                    );
                } else {
                    assert_eq!(l[r], cl[r]);
                    assert_eq!(
                        g.index_axis(ndarray::Axis(0), r),
                        cg.index_axis(ndarray::Axis(0), r)
                    );
                }
            }
        }
    }
    // Class-index targets: NaN logits in a row that is not ignored.
    let p = arr(&[2, 3], vec![1.0, f32::NAN, 3.0, 1.0, 2.0, 3.0]);
    let cls = ndarray::arr1(&[0i64, 2]).into_dyn();
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), cls.view()).reduction(Reduction::None),
    )
    .unwrap();
    let (l, g) = (out.losses.unwrap(), out.grad.unwrap());
    assert!(l[0].is_nan() && g.index_axis(ndarray::Axis(0), 0).iter().all(|v| v.is_nan()));
    approx::assert_relative_eq!(
        l[1],
        ln_sum_exp(&[1.0, 2.0, 3.0]) - 3.0,
        max_relative = 1e-14
    );
    assert!(
        g.index_axis(ndarray::Axis(0), 1)
            .iter()
            .all(|v| v.is_finite())
    );
}

/// Shapes of the outputs: rank-1 prediction is one row (per-row losses of shape []); rank 3
/// gives per-row losses [2, 3]; loss-only mode gives no gradient.
#[test]
fn row_wise_output_shapes() {
    let p = arr(&[4], vec![0.1, 0.2, 0.3, 0.4]);
    let c = ArrayD::from_elem(IxDyn(&[]), 3i64);
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(p.view(), c.view()).reduction(Reduction::None),
    )
    .unwrap();
    assert_eq!(out.losses.unwrap().shape(), &[] as &[usize]);
    assert_eq!(out.grad.unwrap().shape(), &[4]);
    let p = arr(&[2, 3, 4], vec![0.25; 24]);
    let out = reference::compute(
        &Loss::CategoricalCrossEntropy,
        &LossArgs::new(p.view(), p.view())
            .reduction(Reduction::None)
            .loss_only(),
    )
    .unwrap();
    assert_eq!(out.losses.unwrap().shape(), &[2, 3]);
    assert!(out.grad.is_none());
    assert_eq!(out.counted, 6);
}

#[test]
fn row_wise_reference_errors() {
    let sce = Loss::softmax_cross_entropy().build().unwrap();
    let p = arr(&[3, 5], vec![0.5; 15]);
    let run = |loss: &Loss, args: &LossArgs<'_>| reference::compute(loss, args).unwrap_err();

    // Class index out of range: the first offending row, its value, C.
    let too_large = ndarray::arr1(&[0i32, 5, 7]).into_dyn();
    assert!(matches!(
        run(&sce, &LossArgs::new(p.view(), too_large.view())),
        Error::ClassOutOfRange {
            row: 1,
            class: 5,
            classes: 5
        }
    ));
    let negative = ndarray::arr1(&[-100i64, -1, 2]).into_dyn();
    assert!(matches!(
        run(&sce, &LossArgs::new(p.view(), negative.view())),
        Error::ClassOutOfRange {
            row: 1,
            class: -1,
            ..
        }
    ));
    // -100 is only ignored when it is the ignore_index.
    let other_ignore = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(0.0)
        .ignore_index(-1)
        .build()
        .unwrap();
    assert!(matches!(
        run(&other_ignore, &LossArgs::new(p.view(), negative.view())),
        Error::ClassOutOfRange {
            row: 0,
            class: -100,
            ..
        }
    ));
    // An i64 beyond i32 (one that would wrap to a valid class, too).
    let wide = ndarray::arr1(&[0i64, 1, (1i64 << 32) + 1]).into_dyn();
    assert!(matches!(
        run(&sce, &LossArgs::new(p.view(), wide.view())),
        Error::ClassOutOfRange {
            row: 2,
            class: 4294967297,
            ..
        }
    ));
    // An ignore_index beyond i32 with i64 targets is honoured.
    let wide_ignore = Loss::softmax_cross_entropy()
        .label_smoothing(0.0)
        .z_loss(0.0)
        .ignore_index(1i64 << 40)
        .build()
        .unwrap();
    let ignored = ndarray::arr1(&[0i64, 1i64 << 40, 4]).into_dyn();
    let out = reference::compute(&wide_ignore, &LossArgs::new(p.view(), ignored.view())).unwrap();
    assert_eq!(out.counted, 2);

    // Categorical cross entropy: a probability outside [0, 1], the first in row-major order.
    let mut bad = arr(&[2, 3], vec![0.5; 6]);
    bad[[1, 2]] = -0.1;
    bad[[1, 1]] = 1.5;
    bad[[0, 0]] = f32::NAN; // NaN is not out of the domain
    let t = arr(&[2, 3], vec![0.5; 6]);
    match run(
        &Loss::CategoricalCrossEntropy,
        &LossArgs::new(bad.view(), t.view()),
    ) {
        Error::OutOfDomain {
            what: "prediction",
            index: 4,
            value,
            domain: "[0, 1]",
        } => assert_eq!(value, 1.5),
        e => panic!("{e:?}"),
    }

    // Class targets for the losses that take float targets.
    let cls = ndarray::arr1(&[0i32, 1, 2]).into_dyn();
    for loss in [
        Loss::CategoricalCrossEntropy,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        assert!(matches!(
            run(&loss, &LossArgs::new(p.view(), cls.view())),
            Error::InvalidOption {
                option: "target",
                ..
            }
        ));
    }

    // Wrong target shapes: float targets not the prediction's shape; class targets not the
    // rows' shape.
    let t_bad = arr(&[3, 4], vec![0.5; 12]);
    for loss in [
        Loss::CategoricalCrossEntropy,
        sce,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        assert!(matches!(
            run(&loss, &LossArgs::new(p.view(), t_bad.view())),
            Error::ShapeMismatch { what: "target", .. }
        ));
    }
    let cls_full = ArrayD::<i64>::zeros(IxDyn(&[3, 5]));
    match run(&sce, &LossArgs::new(p.view(), cls_full.view())) {
        Error::ShapeMismatch {
            what: "target",
            expected,
            ..
        } => assert_eq!(expected, vec![3]),
        e => panic!("{e:?}"),
    }

    // Class weights: [C] for softmax, none for the others.
    let t = arr(&[3, 5], vec![0.2; 15]);
    for w in [arr(&[4], vec![1.0; 4]), arr(&[3, 5], vec![1.0; 15])] {
        assert!(matches!(
            run(&sce, &LossArgs::new(p.view(), cls.view()).weight(w.view())),
            Error::ShapeMismatch { what: "weight", .. }
        ));
    }
    let w_neg = arr(&[5], vec![1.0, -1.0, 1.0, 1.0, 1.0]);
    assert!(matches!(
        run(
            &sce,
            &LossArgs::new(p.view(), cls.view()).weight(w_neg.view())
        ),
        Error::InvalidOption {
            option: "weight",
            ..
        }
    ));
    let w5 = arr(&[5], vec![1.0; 5]);
    for loss in [
        Loss::cosine_proximity().build().unwrap(),
        Loss::CategoricalCrossEntropy,
    ] {
        assert!(matches!(
            run(&loss, &LossArgs::new(p.view(), t.view()).weight(w5.view())),
            Error::InvalidOption {
                option: "weight",
                ..
            }
        ));
    }

    // Options: refused when the loss is built, before any call (so before the class range).
    for (built, name) in [
        (
            Loss::softmax_cross_entropy().label_smoothing(1.0).build(),
            "label_smoothing",
        ),
        (
            Loss::softmax_cross_entropy().label_smoothing(-0.1).build(),
            "label_smoothing",
        ),
        (Loss::softmax_cross_entropy().z_loss(-1.0).build(), "z_loss"),
        (Loss::cosine_proximity().eps(0.0).build(), "eps"),
    ] {
        match built {
            Err(Error::InvalidOption { option, .. }) => assert_eq!(option, name),
            other => panic!("{other:?}"),
        }
    }

    // A scalar prediction has no rows.
    let p0 = ArrayD::from_elem(IxDyn(&[]), 0.5f32);
    let c0 = ArrayD::from_elem(IxDyn(&[]), 0i64);
    for loss in [
        Loss::CategoricalCrossEntropy,
        sce,
        Loss::cosine_proximity().build().unwrap(),
    ] {
        assert!(matches!(
            run(&loss, &LossArgs::new(p0.view(), p0.view())),
            Error::InvalidOption { option: "pred", .. }
        ));
    }
    assert!(matches!(
        run(&sce, &LossArgs::new(p0.view(), c0.view())),
        Error::InvalidOption { option: "pred", .. }
    ));

    // An upstream array must be shaped like the rows.
    let g_bad = arr(&[3, 5], vec![1.0; 15]);
    assert!(matches!(
        run(
            &Loss::cosine_proximity().build().unwrap(),
            &LossArgs::new(p.view(), t.view())
                .reduction(Reduction::None)
                .upstream(Upstream::Array(g_bad.view()))
        ),
        Error::ShapeMismatch {
            what: "upstream",
            ..
        }
    ));
}

/// The reference is exact where f64 arithmetic written naively is not: a uniform row of huge
/// logits has loss ln C (its terms are `(m − x_j) + ln S`; `lse − x_j` gave 1e20 + ln C − 1e20
/// = 0); BCE's `ln(1 − p)` of a subnormal or tiny p is −p (`1 − 1e-40` rounds to 1 in f64); BCE
/// with logits of x = −80, t = 0 is e^-80 (`−80 + (80 + e^-80)` loses it in f64).
#[test]
fn exact_where_naive_f64_is_not() {
    for v in [1e20f32, -3e38, 3e38] {
        let x = arr(&[2, 1000], vec![v; 2000]);
        let k = ndarray::arr1(&[0i64, 999]).into_dyn();
        let out = reference::compute(
            &Loss::softmax_cross_entropy().build().unwrap(),
            &LossArgs::new(x.view(), k.view()).reduction(Reduction::None),
        )
        .unwrap();
        for &l in out.losses.as_ref().unwrap() {
            assert!(
                (l - 1000f64.ln()).abs() < 1e-12,
                "uniform {v:e}: {l} != ln 1000"
            );
        }
    }
    let p = arr(&[3], vec![1e-40, 1e-30, 3e-8]);
    let t = arr(&[3], vec![0.0; 3]);
    let out = reference::compute(
        &Loss::Bce,
        &LossArgs::new(p.view(), t.view()).reduction(Reduction::None),
    )
    .unwrap();
    for (&l, &pi) in out.losses.as_ref().unwrap().iter().zip(&p) {
        let want = -(-f64::from(pi)).ln_1p();
        assert!(
            (l - want).abs() <= 1e-15 * want,
            "bce p = {pi:e}: {l:e} != {want:e}"
        );
    }
    let x = arr(&[2], vec![-80.0, 80.0]);
    let t = arr(&[2], vec![0.0, 1.0]);
    let out = reference::compute(
        &Loss::BceWithLogits,
        &LossArgs::new(x.view(), t.view()).reduction(Reduction::None),
    )
    .unwrap();
    let want = (-80f64).exp().ln_1p();
    for &l in out.losses.as_ref().unwrap() {
        assert!(
            (l - want).abs() <= 1e-15 * want,
            "bce-with-logits: {l:e} != {want:e}"
        );
    }
}

/// Infinite logits make a row NaN exactly where PyTorch's `log_softmax` does: a +∞ logit, or a
/// row of −∞ (also under a zero class weight); a −∞ logit among finite ones is ordinary.
#[test]
fn infinite_logits_in_the_reference() {
    let inf = f32::INFINITY;
    let x = arr(
        &[4, 3],
        vec![
            inf, 0.0, 1.0, -inf, -inf, -inf, -inf, 0.5, 1.0, 0.0, -inf, 2.0,
        ],
    );
    let k = ndarray::arr1(&[1i64, 0, 0, 2]).into_dyn();
    let w = arr(&[3], vec![1.0, 0.0, 1.0]);
    let out = reference::compute(
        &Loss::softmax_cross_entropy().build().unwrap(),
        &LossArgs::new(x.view(), k.view())
            .weight(w.view())
            .reduction(Reduction::None),
    )
    .unwrap();
    let (l, g) = (out.losses.unwrap(), out.grad.unwrap());
    assert!(l[[0]].is_nan() && l[[1]].is_nan(), "{l:?}");
    assert_eq!(l[[2]], f64::INFINITY, "the target's logit is −∞");
    assert!(l[[3]].is_finite());
    for r in 0..4 {
        let nan = r < 2;
        for j in 0..3 {
            assert_eq!(
                g[[r, j]].is_nan(),
                nan,
                "gradient [{r}, {j}] = {}",
                g[[r, j]]
            );
        }
    }
}

/// Poisson NLL and the focal loss, per element, by central differences over a grid that
/// reaches confident logits (|x| up to 30, where 1 − σ is 1e-13) and every γ regime (0, below
/// 1, 1, above 1), with soft and hard targets.
#[test]
fn poisson_and_focal_derivatives_on_a_grid() {
    let h = 1e-6;
    let close = |an: f64, fd: f64, what: &str| {
        assert!(
            (fd - an).abs() <= 1e-5 * an.abs().max(1.0),
            "{what}: {an} vs {fd}"
        );
    };
    for x in [-30.0, -8.0, -1.5, -0.1, 0.0, 0.2, 2.0, 9.0, 30.0] {
        for t in [0.0, 0.3, 1.0] {
            for (alpha, gamma) in [
                (0.25, 2.0),
                (-1.0, 0.0),
                (0.6, 0.5),
                (0.25, 1.0),
                (0.9, 3.0),
            ] {
                let f = |x| wgpu_loss::losses::focal::reference::loss_and_grad(x, t, alpha, gamma);
                let fd = (f(x + h).0 - f(x - h).0) / (2.0 * h);
                close(
                    f(x).1,
                    fd,
                    &format!("focal x={x} t={t} α={alpha} γ={gamma}"),
                );
            }
        }
    }
    for x in [-5.0, -0.5, 0.0, 1.0, 4.0] {
        for t in [0.0, 1.0, 2.5, 7.0] {
            let f = |x| {
                wgpu_loss::losses::poisson_nll::reference::loss_and_grad(x, t, true, true, 1e-8)
            };
            close(
                f(x).1,
                (f(x + h).0 - f(x - h).0) / (2.0 * h),
                &format!("poisson x={x} t={t}"),
            );
            let r = x.abs() + 0.5; // a rate
            let g = |r| {
                wgpu_loss::losses::poisson_nll::reference::loss_and_grad(r, t, false, false, 1e-3)
            };
            close(
                g(r).1,
                (g(r + h).0 - g(r - h).0) / (2.0 * h),
                &format!("poisson rate={r} t={t}"),
            );
        }
    }
}

/// Poisson NLL and the focal loss at values worked by hand from PyTorch's and torchvision's
/// definitions: `F.poisson_nll_loss(torch.tensor([0.]), torch.tensor([2.]))` = e^0 − 0 = 1,
/// gradient 1 − 2 = −1; with `full=True` and t = 3, Stirling's 3 ln 3 − 3 + ½ ln(6π) is added;
/// with `log_input=False`, x = 2, t = 2: 2 − 2 ln(2 + ε). The focal loss with γ = 0 and no α
/// is BCE with logits, and at x = 0, t = 1 with defaults it is 0.25 · ln 2 · 0.5².
#[test]
fn poisson_and_focal_worked_examples() {
    use wgpu_loss::losses::{bce_with_logits, focal, poisson_nll};
    assert_eq!(
        poisson_nll::reference::loss_and_grad(0.0, 2.0, true, false, 1e-8),
        (1.0, -1.0)
    );
    let stirling = 3.0 * 3f64.ln() - 3.0 + 0.5 * (6.0 * std::f64::consts::PI).ln();
    approx::assert_relative_eq!(
        poisson_nll::reference::loss_and_grad(0.0, 3.0, true, true, 1e-8).0,
        1.0 + stirling,
        max_relative = 1e-15
    );
    // Stirling's term is masked at t ≤ 1.
    assert_eq!(
        poisson_nll::reference::loss_and_grad(0.0, 1.0, true, true, 1e-8).0,
        1.0
    );
    approx::assert_relative_eq!(
        poisson_nll::reference::loss_and_grad(2.0, 2.0, false, false, 1e-8).0,
        2.0 - 2.0 * (2.0f64 + 1e-8).ln(),
        max_relative = 1e-15
    );
    for x in [-20.0, -1.0, 0.0, 0.5, 15.0] {
        for t in [0.0, 0.4, 1.0] {
            let f = focal::reference::loss_and_grad(x, t, -1.0, 0.0);
            let b = bce_with_logits::reference::loss_and_grad(x, t, 1.0, 1.0);
            approx::assert_relative_eq!(f.0, b.0, max_relative = 1e-12);
            approx::assert_relative_eq!(f.1, b.1, max_relative = 1e-12, epsilon = 1e-300);
        }
    }
    approx::assert_relative_eq!(
        focal::reference::loss_and_grad(0.0, 1.0, 0.25, 2.0).0,
        0.25 * 2f64.ln() * 0.25,
        max_relative = 1e-15
    );
    // Infinite logits give the limits, not NaN.
    assert_eq!(
        focal::reference::loss_and_grad(f64::INFINITY, 1.0, 0.25, 2.0),
        (0.0, 0.0)
    );
    let (l, g) = focal::reference::loss_and_grad(f64::NEG_INFINITY, 0.0, 0.25, 2.0);
    assert_eq!((l, g), (0.0, 0.0));
    assert_eq!(
        focal::reference::loss_and_grad(f64::INFINITY, 0.0, 0.25, 2.0).0,
        f64::INFINITY
    );
}

/// A row's softmax of `v / T`, written the naive way (for rows of moderate logits).
fn naive_softmax(v: &[f64], t: f64) -> Vec<f64> {
    let e: Vec<f64> = v.iter().map(|&x| (x / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Distillation per row: the gradient against central differences of the reference's own
/// loss, and the loss against `T² Σ P ln(P/Q)` from naively formed softmaxes, at several
/// temperatures and row lengths.
#[test]
fn distill_row_derivatives_and_value() {
    let mut rng = StdRng::seed_from_u64(0xd157);
    for t in [0.5f64, 1.0, 3.0] {
        for c in [1usize, 2, 5, 17] {
            let s: Vec<f64> = (0..c).map(|_| rng.random_range(-4.0..4.0)).collect();
            let u: Vec<f64> = (0..c).map(|_| rng.random_range(-4.0..4.0)).collect();
            let f = |x: &[f64]| wgpu_loss::losses::distill::reference::loss_and_grad(x, &u, t);
            let l = f(&s).0;
            let (p, q) = (naive_softmax(&u, t), naive_softmax(&s, t));
            let naive: f64 = t * t * p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
            approx::assert_relative_eq!(l, naive, max_relative = 1e-10, epsilon = 1e-14);
            assert_row_fd(
                &f,
                &s,
                |an| FD_RTOL * an.abs().max(1.0),
                &format!("T={t} C={c}"),
            );
        }
    }
}

/// The generalised Jensen–Shannon divergence per row: the gradient against central
/// differences of the reference's own loss, and the loss against `β KL(P ‖ M) + (1 − β)
/// KL(Q ‖ M)` (`KL(P ‖ Q)`, `KL(Q ‖ P)` at β = 0, 1) from naively formed softmaxes and a naive
/// `M`, for β ∈ {0, 0.01, 0.5, 0.9, 1}, T ∈ {0.5, 1, 2}, several row lengths. Then the −∞
/// cases the reference defines: probabilities of 0 contribute 0 (β = 0.5 stays finite, its
/// gradient 0 where Q_j = 0), β = 0 with a student −∞ where P_j > 0 is +∞ with gradient
/// (Q − P)/T, β = 1 with a teacher −∞ where Q_j > 0 is +∞ with a NaN gradient.
#[test]
fn jsd_row_derivatives_and_value() {
    use wgpu_loss::losses::jsd::reference::loss_and_grad;
    let mut rng = StdRng::seed_from_u64(0x15d);
    let kl = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .filter(|(a, _)| **a != 0.0)
            .map(|(a, b)| a * (a / b).ln())
            .sum()
    };
    for beta in [0.0f64, 0.01, 0.5, 0.9, 1.0] {
        for t in [0.5f64, 1.0, 2.0] {
            for c in [1usize, 2, 5, 17] {
                let s: Vec<f64> = (0..c).map(|_| rng.random_range(-4.0..4.0)).collect();
                let u: Vec<f64> = (0..c).map(|_| rng.random_range(-4.0..4.0)).collect();
                let f = |x: &[f64]| loss_and_grad(x, &u, beta, t);
                let (l, an) = f(&s);
                let (p, q) = (naive_softmax(&u, t), naive_softmax(&s, t));
                let m: Vec<f64> = p
                    .iter()
                    .zip(&q)
                    .map(|(p, q)| beta * p + (1.0 - beta) * q)
                    .collect();
                let naive = if beta == 0.0 {
                    kl(&p, &q)
                } else if beta == 1.0 {
                    kl(&q, &p)
                } else {
                    beta * kl(&p, &m) + (1.0 - beta) * kl(&q, &m)
                };
                approx::assert_relative_eq!(l, naive, max_relative = 1e-10, epsilon = 1e-14);
                for j in 0..c {
                    let (mut hi, mut lo) = (s.clone(), s.clone());
                    hi[j] += FD_STEP;
                    lo[j] -= FD_STEP;
                    let fd = (f(&hi).0 - f(&lo).0) / (2.0 * FD_STEP);
                    assert!(
                        (fd - an[j]).abs() <= FD_RTOL * an[j].abs().max(1.0),
                        "beta={beta} T={t} C={c} element {j}: analytic {:e}, finite difference {fd:e}",
                        an[j]
                    );
                }
            }
        }
    }
    let ninf = f64::NEG_INFINITY;
    // A teacher −∞ and a student −∞ at different classes, β = 0.5: finite, and the gradient
    // at the student's −∞ is 0; the same loss as with the −∞ taken as a very negative logit.
    let (s, u) = ([0.3, ninf, 1.0], [ninf, 0.2, -0.5]);
    let (l, g) = loss_and_grad(&s, &u, 0.5, 1.0);
    let (l2, g2) = loss_and_grad(&[0.3, -1e3, 1.0], &[-1e3, 0.2, -0.5], 0.5, 1.0);
    assert!(
        l.is_finite() && g.iter().all(|v| v.is_finite()),
        "{l} {g:?}"
    );
    assert_eq!(g[1], 0.0);
    approx::assert_relative_eq!(l, l2, max_relative = 1e-12);
    for j in 0..3 {
        approx::assert_abs_diff_eq!(g[j], g2[j], epsilon = 1e-12);
    }
    // β = 0: KL(P ‖ Q) = +∞ with the gradient (Q − P)/T.
    let (l, g) = loss_and_grad(&s, &u, 0.0, 2.0);
    assert_eq!(l, f64::INFINITY);
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    // β = 1: KL(Q ‖ P) = +∞, a NaN gradient.
    let (l, g) = loss_and_grad(&s, &u, 1.0, 1.0);
    assert_eq!(l, f64::INFINITY);
    assert!(g.iter().all(|v| v.is_nan()), "{g:?}");
    // A NaN or +∞ logit, or a row of −∞ (either), is NaN throughout.
    for (s, u) in [
        ([0.0, f64::NAN, 1.0], [0.0, 0.0, 0.0]),
        ([0.0, 0.0, 1.0], [0.0, f64::INFINITY, 0.0]),
        ([ninf; 3], [0.0, 0.0, 0.0]),
        ([0.0, 0.0, 1.0], [ninf; 3]),
    ] {
        for beta in [0.0, 0.5, 1.0] {
            let (l, g) = loss_and_grad(&s, &u, beta, 1.0);
            assert!(
                l.is_nan() && g.iter().all(|v| v.is_nan()),
                "{s:?} {u:?} beta={beta}"
            );
        }
    }
}
