//! Distillation from logits: `shaders/distill.wgsl` against `src/losses/distill.rs`
//! (`reference`).

use wgpu_loss::{Error, Loss, LossArgs, Reduction, reference, synthetic};

use crate::common::{REDUCTIONS, check_args, ctx, matrix_rows, seed_for};

fn distill(t: f32) -> Loss {
    Loss::distill().temperature(t).build().unwrap()
}

/// Student logits U(−8, 8) against teacher logits U(−8, 8) (the teacher 0.5 of the student
/// plus noise, so P and Q are related), at temperatures 1 and 2.5, every reduction.
fn case(c: usize) {
    for t in [1.0f32, 2.5] {
        for reduction in REDUCTIONS {
            let b = matrix_rows(c, reduction);
            let what = format!("distill T={t}/C={c}/B={b}/{}", reduction.name());
            let s = synthetic::uniform(&[b, c], -8.0, 8.0, seed_for(&format!("{what}/s")));
            let noise = synthetic::uniform(&[b, c], -4.0, 4.0, seed_for(&format!("{what}/u")));
            let u = &s * 0.5 + &noise;
            let args = LossArgs::new(s.view(), u.view()).reduction(reduction);
            let out = check_args(ctx(), &distill(t), &args, &what);
            assert_eq!(out.counted, b, "{what}: counted");
        }
    }
}

row_matrix!(case);

/// Worked from PyTorch's definition: a student of equal logits against a teacher (0, ln 3):
/// P = (1/4, 3/4), Q = (1/2, 1/2), KL = ¼ ln ½ + ¾ ln (3/2); at T = 1 the gradient is
/// Q − P = (¼, −¼). The same rows scaled by T = 2 give the same P and Q, ℓ = 4 KL and
/// gradient 2 (Q − P).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn worked_example() {
    let kl = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
    for t in [1.0f32, 2.0] {
        let s = ndarray::arr2(&[[5.0f32 * t, 5.0 * t]]).into_dyn();
        let u = ndarray::arr2(&[[0.0f32, 3f32.ln() * t]]).into_dyn();
        let args = LossArgs::new(s.view(), u.view()).reduction(Reduction::Sum);
        let out = ctx().compute(&distill(t), &args).unwrap();
        let tt = f64::from(t);
        approx::assert_relative_eq!(
            f64::from(out.value.unwrap()),
            tt * tt * kl,
            max_relative = 1e-5
        );
        let g = out.grad.unwrap();
        approx::assert_relative_eq!(f64::from(g[[0, 0]]), 0.25 * tt, max_relative = 1e-6);
        approx::assert_relative_eq!(f64::from(g[[0, 1]]), -0.25 * tt, max_relative = 1e-6);
    }
}

/// Identical student and teacher: ℓ = 0 and gradient 0 up to rounding; a teacher logit of −∞
/// (P_j = 0) contributes 0; a student logit of −∞ where P_j > 0 gives +∞; a NaN or +∞ logit in
/// either row, or a teacher row of −∞, gives NaN throughout. Rows of 3 and of 1000 (held in
/// registers by one lane, and shared by a group).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn edges() {
    for c in [3usize, 1000] {
        let what = format!("distill edges C={c}");
        let s = synthetic::uniform(&[7, c], -8.0, 8.0, seed_for(&format!("{what}/s")));
        let mut u = s.clone();
        let mut s = s;
        u[[1, 0]] = f32::NEG_INFINITY;
        s[[2, 1]] = f32::NEG_INFINITY;
        s[[3, 2]] = f32::NAN;
        u[[4, 0]] = f32::INFINITY;
        u.index_axis_mut(ndarray::Axis(0), 5)
            .fill(f32::NEG_INFINITY);
        s[[6, c - 1]] = f32::INFINITY;
        let args = LossArgs::new(s.view(), u.view()).reduction(Reduction::None);
        let gpu = ctx().compute(&distill(1.0), &args).unwrap();
        let cpu = reference::compute(&distill(1.0), &args).unwrap();
        let (l, g) = (gpu.losses.unwrap(), gpu.grad.unwrap());
        assert!(
            l[[0]].abs() <= 1e-5,
            "{what}: identical rows: ℓ = {}",
            l[[0]]
        );
        assert!(
            g.index_axis(ndarray::Axis(0), 0)
                .iter()
                .all(|v| v.abs() <= 1e-6),
            "{what}: identical rows' gradient"
        );
        approx::assert_abs_diff_eq!(
            f64::from(l[[1]]),
            cpu.losses.as_ref().unwrap()[[1]],
            epsilon = 1e-5
        );
        assert!(
            l[[1]].is_finite()
                && g.index_axis(ndarray::Axis(0), 1)
                    .iter()
                    .all(|v| v.is_finite()),
            "{what}: P_j = 0"
        );
        assert_eq!(l[[2]], f32::INFINITY, "{what}: Q_j = 0 where P_j > 0");
        for r in 3..7 {
            assert!(l[[r]].is_nan(), "{what}: row {r}: ℓ = {}", l[[r]]);
            assert!(
                g.index_axis(ndarray::Axis(0), r).iter().all(|v| v.is_nan()),
                "{what}: row {r}: gradient NaN"
            );
            assert!(
                cpu.losses.as_ref().unwrap()[[r]].is_nan(),
                "{what}: reference row {r}"
            );
        }
    }
}

/// Class-index targets are refused (the teacher's logits are a dense `[B, C]`), and so is a
/// temperature that is not finite and positive.
#[test]
fn errors() {
    for t in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let r = Loss::distill().temperature(t).build();
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
    let s = ndarray::ArrayD::<f32>::zeros(vec![2, 3]);
    let k = ndarray::ArrayD::<i64>::zeros(vec![2]);
    let r = reference::compute(&distill(1.0), &LossArgs::new(s.view(), k.view()));
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
