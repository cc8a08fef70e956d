//! The mean's divisor fixed by the call: `LossArgs::divisor` (a row-wise mean over the
//! caller's global count) and `Reduction::BatchMean` (the first dimension's size), on the GPU,
//! the fast CPU path and the reference.

use ndarray::ArrayD;
use wgpu_loss::{Compute, Error, Loss, LossArgs, LossOutput, Reduction, cpu::Cpu, reference};

use crate::common::{check_args, class_rows, ctx, logits, prob_rows, seed_for};

fn devices() -> [(&'static str, &'static dyn Compute); 3] {
    [
        ("gpu", ctx() as &dyn Compute),
        ("cpu", &Cpu),
        ("reference", &reference::Reference),
    ]
}

fn ce() -> Loss {
    Loss::softmax_cross_entropy()
        .label_smoothing(0.05)
        .ignore_index(2)
        .build()
        .unwrap()
}

/// `D'` against the reference on every row-wise loss, with class-index and probability
/// targets, 1 row and 300 rows of 1000 (longer than a workgroup's share).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn divisor_matches_the_reference() {
    for &(b, c) in &[(1usize, 7usize), (300, 1000)] {
        for d in [1.0f32, 77.25, 1e6] {
            let what = format!("divisor {d} [{b}, {c}]");
            let x = logits(&[b, c], seed_for(&format!("{what}/x")));
            let k = class_rows(&[b], c, seed_for(&format!("{what}/k")));
            let t = prob_rows(&[b, c], seed_for(&format!("{what}/t")));
            let args = LossArgs::new(x.view(), k.view()).divisor(d);
            check_args(ctx(), &ce(), &args, &what);
            for loss in Loss::all_default().into_iter().filter(Loss::is_row_wise) {
                let x = match loss {
                    Loss::CategoricalCrossEntropy => t.clone(),
                    _ => x.clone(),
                };
                let args = LossArgs::new(x.view(), t.view()).divisor(d);
                check_args(ctx(), &loss, &args, &format!("{what} {}", loss.name()));
            }
        }
    }
}

/// The divisor the batch would use anyway gives the same gradient bits as the plain mean on
/// each device, and the value within one rounding (it is divided once more on the host path).
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn own_count_as_divisor_is_the_mean() {
    let (b, c) = (97usize, 300usize);
    let x = logits(&[b, c], seed_for("own count/x"));
    let k = class_rows(&[b], c, seed_for("own count/k"));
    let counted = k.iter().filter(|&&v| v != 2).count();
    for (name, dev) in devices() {
        let plain = dev
            .compute(&ce(), &LossArgs::new(x.view(), k.view()))
            .unwrap();
        let fixed = dev
            .compute(
                &ce(),
                &LossArgs::new(x.view(), k.view()).divisor(counted as f32),
            )
            .unwrap();
        assert_eq!(plain.counted, counted, "{name}");
        assert_eq!(fixed.counted, counted, "{name}");
        assert_eq!(plain.grad, fixed.grad, "{name}: gradient bits");
        approx::assert_relative_eq!(
            plain.value.unwrap(),
            fixed.value.unwrap(),
            max_relative = 1.2e-7
        );
    }
}

/// Micro-batches with the global count as their divisor add up to the whole batch's mean:
/// the value, and (rows being independent) each micro-batch's gradient rows are the whole
/// batch's.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn micro_batches_add_up_to_the_whole_batch() {
    let (b, c) = (120usize, 513usize);
    let x = logits(&[b, c], seed_for("micro/x"));
    let k = class_rows(&[b], c, seed_for("micro/k"));
    let whole = ctx()
        .compute(&ce(), &LossArgs::new(x.view(), k.view()))
        .unwrap();
    let d = whole.counted as f32;
    let mut value = 0.0f64;
    for m in 0..4 {
        let rows = m * 30..(m + 1) * 30;
        let xs = x.slice(ndarray::s![rows.clone(), ..]).to_owned().into_dyn();
        let ks = k.slice(ndarray::s![rows.clone()]).to_owned().into_dyn();
        let part = ctx()
            .compute(&ce(), &LossArgs::new(xs.view(), ks.view()).divisor(d))
            .unwrap();
        value += f64::from(part.value.unwrap());
        let want = whole
            .grad
            .as_ref()
            .unwrap()
            .slice(ndarray::s![rows, ..])
            .to_owned();
        assert_eq!(
            part.grad.unwrap(),
            want.into_dyn(),
            "micro-batch {m}: gradient bits"
        );
    }
    approx::assert_relative_eq!(value, f64::from(whole.value.unwrap()), max_relative = 1e-6);
}

/// `D' = 0`: value 0 and gradient exactly 0 on every device, even with a NaN row.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn zero_divisor_gives_zero() {
    let (b, c) = (9usize, 40usize);
    let mut x = logits(&[b, c], seed_for("zero/x"));
    x[[4, 7]] = f32::NAN;
    let k = class_rows(&[b], c, seed_for("zero/k"));
    for (name, dev) in devices() {
        let out = dev
            .compute(&ce(), &LossArgs::new(x.view(), k.view()).divisor(0.0))
            .unwrap();
        assert_eq!(out.value, Some(0.0), "{name}");
        assert!(
            out.grad.unwrap().iter().all(|&g| g == 0.0),
            "{name}: gradient 0"
        );
    }
}

/// `BatchMean` divides the sum by the first dimension's size, for both families and every
/// device: `[5, 6, 70]` rows (cosine) and a `[5, 6, 70]` KL divergence divide by 5.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn batchmean_divides_by_the_first_dimension() {
    let shape = [5usize, 6, 70];
    let x = logits(&shape, seed_for("batchmean/x"));
    let t = prob_rows(&shape, seed_for("batchmean/t"));
    let logp = x.mapv(|v| -v.abs());
    for (loss, pred) in [
        (Loss::cosine_proximity().build().unwrap(), &x),
        (Loss::kl_div().build().unwrap(), &logp),
    ] {
        for (name, dev) in devices() {
            let what = format!("{name} {}", loss.name());
            let sum: LossOutput<f32> = dev
                .compute(
                    &loss,
                    &LossArgs::new(pred.view(), t.view()).reduction(Reduction::Sum),
                )
                .unwrap();
            let bm = dev
                .compute(
                    &loss,
                    &LossArgs::new(pred.view(), t.view()).reduction(Reduction::BatchMean),
                )
                .unwrap();
            approx::assert_relative_eq!(
                bm.value.unwrap(),
                sum.value.unwrap() / 5.0,
                max_relative = 2.4e-7
            );
            // The kernels scale inside each element's expression (cosine's has two terms that
            // partly cancel), so the gradient is compared within 1e-6 of its largest entry,
            // the host-path tolerance.
            let want: ArrayD<f32> = sum.grad.unwrap().mapv(|g| g / 5.0);
            let tol = 1e-6 * want.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            for (a, b) in bm.grad.unwrap().iter().zip(want.iter()) {
                assert!((a - b).abs() <= tol, "{what}: {a} against {b}");
            }
        }
        let args = LossArgs::new(pred.view(), t.view()).reduction(Reduction::BatchMean);
        check_args(ctx(), &loss, &args, &format!("batchmean {}", loss.name()));
    }
}

/// Each misuse of the divisor is refused before any work, with `InvalidOption("divisor")`.
#[test]
fn divisor_errors() {
    let x = ArrayD::<f32>::zeros(vec![3, 4]);
    let k = ArrayD::<i64>::zeros(vec![3]);
    let t = ArrayD::<f32>::zeros(vec![3, 4]);
    let cases: Vec<(&str, Loss, LossArgs<'_>)> = vec![
        (
            "elementwise",
            Loss::Mse,
            LossArgs::new(x.view(), t.view()).divisor(2.0),
        ),
        (
            "sum",
            ce(),
            LossArgs::new(x.view(), k.view())
                .reduction(Reduction::Sum)
                .divisor(2.0),
        ),
        (
            "batchmean",
            ce(),
            LossArgs::new(x.view(), k.view())
                .reduction(Reduction::BatchMean)
                .divisor(2.0),
        ),
        (
            "negative",
            ce(),
            LossArgs::new(x.view(), k.view()).divisor(-1.0),
        ),
        (
            "nan",
            ce(),
            LossArgs::new(x.view(), k.view()).divisor(f32::NAN),
        ),
        (
            "inf",
            ce(),
            LossArgs::new(x.view(), k.view()).divisor(f32::INFINITY),
        ),
    ];
    for (what, loss, args) in cases {
        for (name, dev) in [
            ("cpu", &Cpu as &dyn Compute),
            ("reference", &reference::Reference),
        ] {
            let r = dev.compute(&loss, &args);
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidOption {
                        option: "divisor",
                        ..
                    })
                ),
                "{what} on {name}: {r:?}"
            );
        }
    }
}
