//! The user-facing API: the inputs `LossArgs` takes (arrays, views, `Vec`s and slices of any
//! dimension; class ids as i32, i64, u32), `from_slices`, the loss builders, and the `Compute`
//! calls of each device with their results. Each call is compared, bit for bit, with the
//! general `compute` on the same device over `ArrayViewD` inputs: the conveniences must not
//! change a single result. The CPU devices need no GPU; the GPU test needs an adapter.

use ndarray::{Array2, ArrayD, ArrayView2, Ix1, Ix2, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgpu_loss::cpu::Cpu;
use wgpu_loss::losses::LossInfo;
use wgpu_loss::reference::Reference;
use wgpu_loss::{Compute, Error, GpuContext, Loss, LossArgs, LossOutput, Reduction, Target};

/// Seeded values in `[lo, hi)`.
fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A result's value, losses and gradient as bits, and its count.
type Bits = (Option<u32>, Option<Vec<u32>>, Option<Vec<u32>>, usize);

/// The bits of every part of a result.
fn bits(o: &LossOutput<f32>) -> Bits {
    let words = |a: &ArrayD<f32>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    (
        o.value.map(f32::to_bits),
        o.losses.as_ref().map(words),
        o.grad.as_ref().map(words),
        o.counted,
    )
}

/// Every form of the prediction and target gives the same bits as `ArrayViewD` inputs.
#[test]
fn every_input_form_gives_the_same_result() {
    let (b, c) = (5, 7);
    let p = uniform(b * c, -2.0, 2.0, 1);
    let t = uniform(b * c, -2.0, 2.0, 2);
    let pd = ArrayD::from_shape_vec(IxDyn(&[b, c]), p.clone()).unwrap();
    let td = ArrayD::from_shape_vec(IxDyn(&[b, c]), t.clone()).unwrap();
    let want = Cpu
        .compute(&Loss::Mse, &LossArgs::new(pd.view(), td.view()))
        .unwrap();
    let p2 = Array2::from_shape_vec((b, c), p.clone()).unwrap();
    let t2 = Array2::from_shape_vec((b, c), t.clone()).unwrap();
    let pv = ArrayView2::from_shape((b, c), &p).unwrap();
    let forms: Vec<(&str, LossArgs<'_>)> = vec![
        ("&Array2", LossArgs::new(&p2, &t2)),
        ("ArrayView2", LossArgs::new(pv, t2.view())),
        ("&ArrayD", LossArgs::new(&pd, &td)),
        (
            "from_slices",
            LossArgs::from_slices(&p, &[b, c], &t).unwrap(),
        ),
    ];
    for (what, args) in forms {
        let got = Cpu.compute(&Loss::Mse, &args).unwrap();
        assert_eq!(bits(&got), bits(&want), "{what}");
        assert_eq!(got.grad.unwrap().shape(), &[b, c], "{what}");
    }
    // One-dimensional forms: &Vec, &[f32], &[f32; N].
    let flat = Cpu.compute(&Loss::Mse, &LossArgs::new(&p, &t)).unwrap();
    assert_eq!(bits(&flat).0, bits(&want).0, "&Vec: the same mean");
    let s = Cpu
        .compute(&Loss::Mse, &LossArgs::new(p.as_slice(), t.as_slice()))
        .unwrap();
    assert_eq!(bits(&s), bits(&flat), "&[f32]");
    let (a, z) = ([0.5f32, -1.0, 3.0], [0.0f32, 0.0, 1.0]);
    let arr = Cpu.value(&Loss::Mse, LossArgs::new(&a, &z)).unwrap();
    assert_eq!(arr, (0.25 + 1.0 + 4.0) / 3.0, "&[f32; 3]");
}

/// Class ids as `Vec<i32>`, `Vec<i64>` and `Vec<u32>`, through `from_slices`, give the same
/// bits as the `ArrayViewD` of i64.
#[test]
fn class_ids_of_every_type_give_the_same_result() {
    let (b, c) = (6, 9);
    let x = uniform(b * c, -4.0, 4.0, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let k64: Vec<i64> = (0..b).map(|_| rng.random_range(0..c as i64)).collect();
    let k32: Vec<i32> = k64.iter().map(|&k| k as i32).collect();
    let ku: Vec<u32> = k64.iter().map(|&k| k as u32).collect();
    let loss = Loss::softmax_cross_entropy()
        .label_smoothing(0.05)
        .build()
        .unwrap();
    let xd = ArrayD::from_shape_vec(IxDyn(&[b, c]), x.clone()).unwrap();
    let kd = ArrayD::from_shape_vec(IxDyn(&[b]), k64.clone()).unwrap();
    let want = Cpu.compute(&loss, &LossArgs::new(&xd, &kd)).unwrap();
    for (what, args) in [
        ("i64", LossArgs::from_slices(&x, &[b, c], &k64).unwrap()),
        ("i32", LossArgs::from_slices(&x, &[b, c], &k32).unwrap()),
        ("u32", LossArgs::from_slices(&x, &[b, c], &ku).unwrap()),
    ] {
        assert_eq!(args.target.shape(), &[b], "{what}: the rows' shape");
        assert_eq!(
            bits(&Cpu.compute(&loss, &args).unwrap()),
            bits(&want),
            "{what}"
        );
    }
    assert!(matches!(
        LossArgs::from_slices(&x, &[b, c], &ku).unwrap().target,
        Target::ClassesU32(_)
    ));
}

/// A slice whose length is not the product of the shape is refused, naming both.
#[test]
fn from_slices_rejects_a_shape_that_does_not_match() {
    let p = vec![0.0f32; 10];
    let e = LossArgs::from_slices(&p, &[3, 4], &p).unwrap_err();
    match e {
        Error::ShapeMismatch { expected, got, .. } => {
            assert_eq!(expected, vec![3, 4]);
            assert_eq!(got, vec![10]);
        }
        other => panic!("{other:?}"),
    }
    // A shape whose product overflows is a mismatch too, never a panic.
    assert!(LossArgs::from_slices(&p, &[usize::MAX, 2], &p).is_err());
}

/// `value_and_grad`, `value` and `losses` give exactly the parts `compute` gives, on both CPU
/// devices, for every loss with its default options.
#[test]
fn the_calls_give_the_parts_of_compute() {
    let devices: [(&str, &dyn Compute); 2] = [("cpu", &Cpu), ("reference", &Reference)];
    for info in LossInfo::all() {
        let loss = info.default_loss();
        let (b, c) = (4, 6);
        let mut p = uniform(b * c, 0.05, 0.95, 5);
        let mut t = uniform(b * c, 0.0, 1.0, 6);
        if info.is_row_wise() {
            // Rows of probabilities (categorical cross entropy takes them; the others too).
            for row in p.chunks_mut(c).chain(t.chunks_mut(c)) {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
            }
        }
        for (name, dev) in devices {
            let what = format!("{}/{name}", info.name());
            let args = || LossArgs::from_slices(&p, &[b, c], &t).unwrap();
            let full = dev.compute(&loss, &args()).unwrap();
            let vg = dev.value_and_grad(&loss, args()).unwrap();
            assert_eq!(
                Some(vg.value.to_bits()),
                full.value.map(f32::to_bits),
                "{what}"
            );
            let want_grad: Vec<u32> = full.grad.unwrap().iter().map(|x| x.to_bits()).collect();
            let got_grad: Vec<u32> = vg.grad_vec().iter().map(|x| x.to_bits()).collect();
            assert_eq!(got_grad, want_grad, "{what}: grad_vec");
            assert_eq!(vg.counted, full.counted, "{what}");
            assert_eq!(vg.clone().into_grad_vec(), vg.grad_vec(), "{what}");
            let g2 = vg.grad_into::<Ix2>().unwrap();
            assert_eq!(g2.dim(), (b, c), "{what}: grad_into");
            let v = dev.value(&loss, args()).unwrap();
            assert_eq!(v.to_bits(), full.value.unwrap().to_bits(), "{what}: value");
            let none = dev
                .compute(&loss, &args().reduction(Reduction::None).loss_only())
                .unwrap();
            let l = dev.losses(&loss, args()).unwrap();
            assert_eq!(Some(l), none.losses, "{what}: losses");
            // compute_into: the same result, the gradient in the caller's array instead.
            let mut grad = ArrayD::<f32>::from_elem(IxDyn(&[b, c]), f32::NAN);
            let mut into = dev.compute_into(&loss, &args(), grad.view_mut()).unwrap();
            assert!(
                into.grad.is_none(),
                "{what}: compute_into returns no gradient"
            );
            into.grad = Some(grad);
            let want = bits(&dev.compute(&loss, &args()).unwrap());
            assert_eq!(bits(&into), want, "{what}: into");
        }
    }
}

/// `compute_into` on `dev`: a gradient of the wrong shape is `ShapeMismatch` (`what:
/// "grad"`), loss-only arguments `InvalidOption` (`option: "grad"`), an argument error the
/// same as `compute`'s and before either; none touches the array.
fn into_errors(dev: &dyn Compute, name: &str) {
    let (p, t) = (uniform(20, 0.0, 1.0, 1), uniform(20, 0.0, 1.0, 2));
    let args = LossArgs::from_slices(&p, &[4, 5], &t).unwrap();
    for shape in [&[5, 4][..], &[20], &[4, 5, 1], &[4, 6]] {
        let mut grad = ArrayD::<f32>::from_elem(IxDyn(shape), 7.0);
        let err = dev
            .compute_into(&Loss::Mse, &args, grad.view_mut())
            .unwrap_err();
        match &err {
            Error::ShapeMismatch {
                what: "grad",
                expected,
                got,
            } => {
                assert_eq!(expected, &[4, 5], "{name}");
                assert_eq!(got, shape, "{name}");
            }
            e => panic!("{name}/{shape:?}: expected ShapeMismatch for grad, got {e:?}"),
        }
        assert!(grad.iter().all(|&v| v == 7.0), "{name}: {shape:?} touched");
    }
    let mut grad = ArrayD::<f32>::from_elem(IxDyn(&[4, 5]), 7.0);
    let err = dev.compute_into(&Loss::Mse, &args.clone().loss_only(), grad.view_mut());
    assert!(
        matches!(err, Err(Error::InvalidOption { option: "grad", .. })),
        "{name}: {err:?}"
    );
    // A target of the wrong shape.
    let short = uniform(16, 0.0, 1.0, 3);
    let bad = LossArgs::new(
        ArrayView2::from_shape((4, 5), &p[..]).unwrap(),
        ArrayView2::from_shape((4, 4), &short[..]).unwrap(),
    );
    let want = format!("{:?}", dev.compute(&Loss::Mse, &bad).unwrap_err());
    let mut wrong = ArrayD::<f32>::from_elem(IxDyn(&[3]), 7.0);
    let got = dev
        .compute_into(&Loss::Mse, &bad, wrong.view_mut())
        .unwrap_err();
    assert_eq!(format!("{got:?}"), want, "{name}");
    assert!(
        grad.iter().chain(&wrong).all(|&v| v == 7.0),
        "{name}: touched"
    );
}

/// `compute_into`'s errors on both CPU devices (the fast path writes directly, the reference
/// through `Compute`'s default).
#[test]
fn compute_into_errors() {
    into_errors(&Cpu, "cpu");
    into_errors(&Reference, "reference");
}

/// `compute_into`'s errors on the GPU, the same.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn gpu_compute_into_errors() {
    let ctx = GpuContext::new().expect("GPU tests need an adapter");
    into_errors(&ctx, "gpu");
}

/// `value_and_grad` and `value` need a reduction that gives a value.
#[test]
fn value_calls_refuse_reduction_none() {
    let p = vec![0.5f32; 4];
    for dev in [&Cpu as &dyn Compute, &Reference] {
        let args = || LossArgs::new(&p, &p).reduction(Reduction::None);
        for e in [
            dev.value_and_grad(&Loss::Mse, args()).unwrap_err(),
            dev.value(&Loss::Mse, args()).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    Error::InvalidOption {
                        option: "reduction",
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
}

/// `grad_into` to the wrong dimension is an error, not a panic.
#[test]
fn grad_into_the_wrong_dimension_is_an_error() {
    let p = vec![0.5f32; 6];
    let vg = Cpu
        .value_and_grad(&Loss::Mse, LossArgs::from_slices(&p, &[2, 3], &p).unwrap())
        .unwrap();
    assert!(matches!(
        vg.clone().grad_into::<Ix1>(),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(vg.grad_into::<Ix2>().unwrap().dim(), (2, 3));
}

/// Each builder's defaults are the registry's, its setters set what they name, and `build`
/// refuses every invalid option by name.
#[test]
fn builders_default_to_the_registry_and_validate() {
    let by_name = |n: &str| LossInfo::named(n).unwrap().default_loss();
    assert_eq!(Loss::huber().build().unwrap(), by_name("huber"));
    assert_eq!(Loss::smooth_l1().build().unwrap(), by_name("smooth-l1"));
    assert_eq!(
        Loss::softmax_cross_entropy().build().unwrap(),
        by_name("softmax-ce")
    );
    assert_eq!(Loss::cosine_proximity().build().unwrap(), by_name("cosine"));

    let sce = Loss::softmax_cross_entropy()
        .label_smoothing(0.25)
        .z_loss(1e-3)
        .ignore_index(-1)
        .softcap(30.0)
        .build()
        .unwrap();
    assert!(matches!(
        sce,
        Loss::SoftmaxCrossEntropy { label_smoothing, z_loss, ignore_index: -1, softcap, .. }
            if label_smoothing == 0.25 && z_loss == 1e-3 && softcap == 30.0
    ));
    assert!(matches!(
        Loss::huber().delta(2.5).build().unwrap(),
        Loss::Huber { delta, .. } if delta == 2.5
    ));

    let refused = [
        (Loss::huber().delta(0.0).build(), "delta"),
        (Loss::huber().delta(f32::NAN).build(), "delta"),
        (Loss::smooth_l1().beta(-1.0).build(), "beta"),
        (
            Loss::softmax_cross_entropy().label_smoothing(1.0).build(),
            "label_smoothing",
        ),
        (Loss::softmax_cross_entropy().z_loss(-1.0).build(), "z_loss"),
        (
            Loss::softmax_cross_entropy().softcap(-1.0).build(),
            "softcap",
        ),
        (Loss::cosine_proximity().eps(0.0).build(), "eps"),
    ];
    for (r, option) in refused {
        match r {
            Err(Error::InvalidOption { option: o, .. }) => {
                assert!(o.replace('-', "_") == option, "{o} for {option}")
            }
            other => panic!("{option}: {other:?}"),
        }
    }
}

/// On the GPU, the calls give exactly the parts of `GpuContext::compute`.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn gpu_calls_give_the_parts_of_compute() {
    let ctx = GpuContext::new().expect("GPU tests need an adapter");
    let (b, c) = (33, 257);
    let x = uniform(b * c, -3.0, 3.0, 7);
    let mut rng = StdRng::seed_from_u64(8);
    let k: Vec<i64> = (0..b).map(|_| rng.random_range(0..c as i64)).collect();
    let loss = Loss::softmax_cross_entropy().z_loss(1e-4).build().unwrap();
    let args = || LossArgs::from_slices(&x, &[b, c], &k).unwrap();
    let full = ctx.compute(&loss, &args()).unwrap();
    let vg = Compute::value_and_grad(&ctx, &loss, args()).unwrap();
    assert_eq!(Some(vg.value.to_bits()), full.value.map(f32::to_bits));
    assert_eq!(Some(vg.grad.clone()), full.grad);
    assert_eq!(vg.counted, b);
    let v = ctx.value(&loss, args()).unwrap();
    assert_eq!(
        v.to_bits(),
        vg.value.to_bits(),
        "loss-only gives the same value"
    );
    let cpu = Cpu.value(&loss, args()).unwrap();
    assert!((v - cpu).abs() <= 1e-5 * cpu.abs(), "GPU {v}, CPU {cpu}");
}
