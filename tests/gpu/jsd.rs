//! The generalised Jensen–Shannon divergence: `shaders/jsd.wgsl` (the row driver's second
//! sweep) against `src/losses/jsd.rs` (`reference`).

use wgpu_loss::{Error, Loss, LossArgs, Reduction, reference, synthetic};

use crate::common::{REDUCTIONS, check_args, ctx, matrix_rows, seed_for};

fn jsd(beta: f32, t: f32) -> Loss {
    Loss::jsd().beta(beta).temperature(t).build().unwrap()
}

/// Student logits U(−8, 8) against teacher logits (0.5 of the student plus U(−4, 4) noise, so
/// P and Q are related): β = 0.5 at T = 1 with every reduction, and β = 0 (T = 2, `Mean`),
/// β = 0.1 (T = 1, `Sum`), β = 1 (T = 0.5, `None`).
fn case(c: usize) {
    let mut cases: Vec<(f32, f32, Reduction)> = REDUCTIONS.iter().map(|&r| (0.5, 1.0, r)).collect();
    cases.extend([
        (0.0, 2.0, Reduction::Mean),
        (0.1, 1.0, Reduction::Sum),
        (1.0, 0.5, Reduction::None),
    ]);
    for (beta, t, reduction) in cases {
        let b = matrix_rows(c, reduction);
        let what = format!("jsd beta={beta} T={t}/C={c}/B={b}/{}", reduction.name());
        let s = synthetic::uniform(&[b, c], -8.0, 8.0, seed_for(&format!("{what}/s")));
        let noise = synthetic::uniform(&[b, c], -4.0, 4.0, seed_for(&format!("{what}/u")));
        let u = &s * 0.5 + &noise;
        let args = LossArgs::new(s.view(), u.view()).reduction(reduction);
        let out = check_args(ctx(), &jsd(beta, t), &args, &what);
        assert_eq!(out.counted, b, "{what}: counted");
    }
}

row_matrix!(case);

/// Edge row lengths of the second sweep: a workgroup ± 1 (255, 257: groups of 16 and 32
/// lanes), an odd length, and 4097 / 8193, just past a workgroup's 256 · ROW_REGS = 4096 held
/// elements (the second sweep's re-read loop runs one and two extra units per lane); an empty
/// batch.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn edge_lengths() {
    for c in [255usize, 257, 999, 4095, 4097, 8193] {
        for (beta, t) in [(0.5f32, 1.0f32), (0.25, 2.0), (1.0, 1.0), (0.0, 0.5)] {
            let what = format!("jsd edge beta={beta} T={t}/C={c}");
            let s = synthetic::uniform(&[5, c], -8.0, 8.0, seed_for(&format!("{what}/s")));
            let u = synthetic::uniform(&[5, c], -8.0, 8.0, seed_for(&format!("{what}/u")));
            let args = LossArgs::new(s.view(), u.view()).reduction(Reduction::None);
            check_args(ctx(), &jsd(beta, t), &args, &what);
        }
    }
    // An empty batch is refused, as for every row-wise loss.
    let s = ndarray::ArrayD::<f32>::zeros(vec![0, 7]);
    let r = ctx().compute(&jsd(0.5, 1.0), &LossArgs::new(s.view(), s.view()));
    assert!(matches!(r, Err(Error::Empty { .. })), "empty batch: {r:?}");
}

/// Worked by hand: a student of equal logits, Q = (½, ½), against a teacher with
/// P = (¼, ¾) (logits 0, ln 3; P from the f32-rounded ln 3, a relative change of 3e-8).
/// β = ½: M = (3/8, 5/8),
/// ℓ = ½ [¼ ln(2/3) + ¾ ln(6/5)] + ½ [½ ln(4/3) + ½ ln(4/5)],
/// ∂ℓ/∂s_j = ½ Q_j (ln(Q_j/M_j) − KL(Q ‖ M)); β = 0 is KL(P ‖ Q) with gradient Q − P; β = 1
/// is KL(Q ‖ P) = ½ ln 2 + ½ ln(2/3). At T = 2 the logits are doubled: the same P, Q and ℓ
/// (no T² factor), the gradient halved.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let e = f64::from(3f32.ln()).exp();
    let (p, q) = ([1.0 / (1.0 + e), e / (1.0 + e)], [0.5f64, 0.5]);
    let m = [0.5 * p[0] + 0.25, 0.5 * p[1] + 0.25];
    let kl_pm: f64 = (0..2).map(|j| p[j] * (p[j] / m[j]).ln()).sum();
    let kl_qm: f64 = (0..2).map(|j| q[j] * (q[j] / m[j]).ln()).sum();
    let kl_pq: f64 = (0..2).map(|j| p[j] * (p[j] / q[j]).ln()).sum();
    let kl_qp: f64 = (0..2).map(|j| q[j] * (q[j] / p[j]).ln()).sum();
    for t in [1.0f32, 2.0] {
        let s = ndarray::arr2(&[[5.0f32 * t, 5.0 * t]]).into_dyn();
        let u = ndarray::arr2(&[[0.0f32, 3f32.ln() * t]]).into_dyn();
        let args = LossArgs::new(s.view(), u.view()).reduction(Reduction::Sum);
        let tt = f64::from(t);
        for beta in [0.0f32, 0.5, 1.0] {
            let (want, grad): (f64, [f64; 2]) = match beta {
                0.0 => (kl_pq, [(q[0] - p[0]) / tt, (q[1] - p[1]) / tt]),
                1.0 => {
                    let g = |j: usize| q[j] * ((q[j] / p[j]).ln() - kl_qp) / tt;
                    (kl_qp, [g(0), g(1)])
                }
                _ => {
                    let g = |j: usize| 0.5 * q[j] * ((q[j] / m[j]).ln() - kl_qm) / tt;
                    (0.5 * kl_pm + 0.5 * kl_qm, [g(0), g(1)])
                }
            };
            let out = ctx().compute(&jsd(beta, t), &args).unwrap();
            approx::assert_relative_eq!(f64::from(out.value.unwrap()), want, max_relative = 2e-5);
            let g = out.grad.unwrap();
            for j in 0..2 {
                approx::assert_abs_diff_eq!(
                    f64::from(g[[0, j]]),
                    grad[j],
                    epsilon = 2e-6 * grad[j].abs().max(0.1)
                );
            }
            // The reference too.
            let r = reference::compute(&jsd(beta, t), &args).unwrap();
            approx::assert_relative_eq!(r.value.unwrap(), want, max_relative = 1e-12);
            let rg = r.grad.unwrap();
            for j in 0..2 {
                approx::assert_relative_eq!(rg[[0, j]], grad[j], max_relative = 1e-10);
            }
        }
    }
}

/// Identical student and teacher: ℓ = 0 and gradient 0 up to rounding; −∞ logits (a teacher
/// −∞, a student −∞, both at the same class) are probabilities of 0; a NaN or +∞ logit in
/// either row, or a row of −∞, gives NaN throughout. β = 0: a student −∞ where P_j > 0 gives
/// ℓ = +∞ with a finite gradient; β = 1: a teacher −∞ where Q_j > 0 gives ℓ = +∞ and a NaN
/// gradient. Rows of 3, of 1000 (a group) and of 5000 (the re-read path).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn edges() {
    for c in [3usize, 1000, 5000] {
        for beta in [0.0f32, 0.3, 0.5, 1.0] {
            let what = format!("jsd edges beta={beta} C={c}");
            let s = synthetic::uniform(&[10, c], -8.0, 8.0, seed_for(&format!("{what}/s")));
            let mut u = s.clone();
            let mut s = s;
            u[[1, 0]] = f32::NEG_INFINITY;
            s[[2, 1]] = f32::NEG_INFINITY;
            s[[3, 2]] = f32::NAN;
            u[[4, 0]] = f32::INFINITY;
            u.index_axis_mut(ndarray::Axis(0), 5)
                .fill(f32::NEG_INFINITY);
            s[[6, c - 1]] = f32::INFINITY;
            s.index_axis_mut(ndarray::Axis(0), 7)
                .fill(f32::NEG_INFINITY);
            u[[8, 0]] = f32::NAN;
            s[[9, 0]] = f32::NEG_INFINITY;
            u[[9, 0]] = f32::NEG_INFINITY;
            let args = LossArgs::new(s.view(), u.view()).reduction(Reduction::None);
            let loss = jsd(beta, 1.0);
            let gpu = ctx().compute(&loss, &args).unwrap();
            let cpu = reference::compute(&loss, &args).unwrap();
            let fast = wgpu_loss::cpu::compute(&loss, &args).unwrap();
            let (l, g) = (gpu.losses.unwrap(), gpu.grad.unwrap());
            let (rl, rg) = (cpu.losses.unwrap(), cpu.grad.unwrap());
            let (fl, fg) = (fast.losses.unwrap(), fast.grad.unwrap());
            let row = |a: &ndarray::ArrayD<f32>, r: usize| {
                a.index_axis(ndarray::Axis(0), r)
                    .iter()
                    .copied()
                    .collect::<Vec<_>>()
            };
            assert!(
                l[[0]].abs() <= 1e-5,
                "{what}: identical rows: ℓ = {}",
                l[[0]]
            );
            assert!(
                row(&g, 0).iter().all(|v| v.abs() <= 1e-6),
                "{what}: identical rows' gradient"
            );
            // Rows 1, 2, 9: a −∞ among finite logits.
            for r in [1usize, 2, 9] {
                let want = rl[[r]];
                for (name, got) in [("GPU", l[[r]]), ("CPU", fl[[r]])] {
                    if want.is_infinite() {
                        assert_eq!(f64::from(got), want, "{what}: {name} row {r}");
                    } else {
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5,
                            "{what}: {name} row {r}: ℓ = {got}, reference {want}"
                        );
                    }
                }
                let rgr: Vec<f64> = rg.index_axis(ndarray::Axis(0), r).iter().copied().collect();
                for (name, got) in [("GPU", row(&g, r)), ("CPU", row(&fg, r))] {
                    for (k, (&gv, &want)) in got.iter().zip(&rgr).enumerate() {
                        let ok = if want.is_nan() {
                            gv.is_nan()
                        } else {
                            (f64::from(gv) - want).abs() <= 1e-6
                        };
                        assert!(
                            ok,
                            "{what}: {name} row {r} gradient {k}: {gv}, reference {want}"
                        );
                    }
                }
            }
            let expect_inf = |r: usize| match (beta, r) {
                (0.0, 2) => Some(false), // ℓ = +∞, gradient finite
                (1.0, 1) => Some(true),  // ℓ = +∞, gradient NaN
                _ => None,
            };
            for r in [1usize, 2] {
                match expect_inf(r) {
                    Some(nan_grad) => {
                        assert_eq!(rl[[r]], f64::INFINITY, "{what}: reference row {r}");
                        assert_eq!(l[[r]], f32::INFINITY, "{what}: row {r}");
                        assert_eq!(
                            row(&g, r).iter().all(|v| v.is_nan()),
                            nan_grad,
                            "{what}: row {r} gradient"
                        );
                        assert!(
                            nan_grad || row(&g, r).iter().all(|v| v.is_finite()),
                            "{what}: row {r} gradient finite"
                        );
                    }
                    None => {
                        assert!(l[[r]].is_finite(), "{what}: row {r}: ℓ = {}", l[[r]]);
                        assert!(
                            row(&g, r).iter().all(|v| v.is_finite()),
                            "{what}: row {r}: gradient finite"
                        );
                    }
                }
            }
            for r in 3..9 {
                for (name, lv, gv) in [("GPU", l[[r]], row(&g, r)), ("CPU", fl[[r]], row(&fg, r))] {
                    assert!(lv.is_nan(), "{what}: {name} row {r}: ℓ = {lv}");
                    assert!(
                        gv.iter().all(|v| v.is_nan()),
                        "{what}: {name} row {r}: gradient NaN"
                    );
                }
                assert!(rl[[r]].is_nan(), "{what}: reference row {r}");
                assert!(
                    rg.index_axis(ndarray::Axis(0), r)
                        .iter()
                        .all(|v| v.is_nan()),
                    "{what}: reference row {r}: gradient"
                );
            }
        }
    }
}

/// JSD with β = ½ is symmetric in P and Q and at most ln 2; for 0 < β < 1 it is at most
/// `−β ln β − (1 − β) ln(1 − β)` (disjoint supports, reached with near-one-hot rows of
/// different classes).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn bounds_and_symmetry() {
    let c = 300;
    let s = synthetic::uniform(&[9, c], -8.0, 8.0, seed_for("jsd sym/s"));
    let u = synthetic::uniform(&[9, c], -8.0, 8.0, seed_for("jsd sym/u"));
    let loss = jsd(0.5, 1.0);
    let a = ctx()
        .compute(
            &loss,
            &LossArgs::new(s.view(), u.view()).reduction(Reduction::None),
        )
        .unwrap()
        .losses
        .unwrap();
    let b = ctx()
        .compute(
            &loss,
            &LossArgs::new(u.view(), s.view()).reduction(Reduction::None),
        )
        .unwrap()
        .losses
        .unwrap();
    for r in 0..9 {
        assert!(
            (a[[r]] - b[[r]]).abs() <= 1e-6,
            "row {r}: {} vs {}",
            a[[r]],
            b[[r]]
        );
        assert!(
            a[[r]] >= -1e-7 && a[[r]] <= std::f32::consts::LN_2,
            "row {r}: {}",
            a[[r]]
        );
    }
    // Disjoint supports: logits 0 and −200 (exp(−200) is 0 in f32).
    let mut s = ndarray::ArrayD::<f32>::from_elem(vec![1, 4], -200.0);
    let mut u = s.clone();
    s[[0, 0]] = 0.0;
    u[[0, 3]] = 0.0;
    for beta in [0.1f32, 0.5, 0.9] {
        let out = ctx()
            .compute(
                &jsd(beta, 1.0),
                &LossArgs::new(s.view(), u.view()).reduction(Reduction::Sum),
            )
            .unwrap();
        let bb = f64::from(beta);
        let want = -bb * bb.ln() - (1.0 - bb) * (1.0 - bb).ln();
        approx::assert_relative_eq!(f64::from(out.value.unwrap()), want, max_relative = 1e-5);
    }
}

/// Class-index targets are refused (the teacher's logits are a dense `[B, C]`), and so are a
/// β outside [0, 1] and a temperature that is not finite and positive.
#[test]
fn errors() {
    for b in [-0.1f32, 1.5, f32::NAN, f32::INFINITY, -f32::INFINITY] {
        let r = Loss::jsd().beta(b).build();
        assert!(
            matches!(r, Err(Error::InvalidOption { option: "beta", .. })),
            "beta = {b}: {r:?}"
        );
    }
    for t in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let r = Loss::jsd().temperature(t).build();
        assert!(
            matches!(
                r,
                Err(Error::InvalidOption {
                    option: "temperature",
                    ..
                })
            ),
            "T = {t}: {r:?}"
        );
    }
    for b in [0.0f32, 1.0, 0.5] {
        assert!(Loss::jsd().beta(b).build().is_ok(), "beta = {b}");
    }
    let s = ndarray::ArrayD::<f32>::zeros(vec![2, 3]);
    let k = ndarray::ArrayD::<i64>::zeros(vec![2]);
    let r = reference::compute(&jsd(0.5, 1.0), &LossArgs::new(s.view(), k.view()));
    assert!(
        matches!(
            r,
            Err(Error::InvalidOption {
                option: "target",
                ..
            })
        ),
        "{r:?}"
    );
}
