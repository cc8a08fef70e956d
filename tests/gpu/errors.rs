//! Every error the GPU path can return for bad input, each in its own test, checked before
//! anything is dispatched; and the device-limit checks.

use ndarray::{ArrayD, ArrayView, IxDyn};
use wgpu_loss::{Error, Loss, LossArgs, Reduction, Upstream};

use crate::common::ctx;

fn arr(shape: &[usize], v: f32) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(shape), v)
}

#[track_caller]
fn assert_invalid_option(e: &Error, option: &str) {
    assert!(
        matches!(e, Error::InvalidOption { option: o, .. } if *o == option),
        "{e:?}"
    );
}

#[track_caller]
fn assert_shape_mismatch(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::ShapeMismatch { what: w, .. } if *w == what),
        "{e:?}"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn shape_mismatch_names_both_shapes() {
    let (p, t) = (arr(&[4, 5], 0.5), arr(&[5, 4], 0.5));
    let e = ctx()
        .compute(&Loss::Mse, &LossArgs::new(p.view(), t.view()))
        .unwrap_err();
    assert_shape_mismatch(&e, "target");
    let msg = e.to_string();
    assert!(msg.contains("[4, 5]") && msg.contains("[5, 4]"), "{msg}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn empty_input_is_an_error() {
    let (p, t) = (arr(&[0, 3], 0.5), arr(&[0, 3], 0.5));
    let e = ctx()
        .compute(&Loss::Mse, &LossArgs::new(p.view(), t.view()))
        .unwrap_err();
    assert!(matches!(e, Error::Empty { .. }), "{e:?}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn huber_delta_must_be_finite_and_positive() {
    for delta in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        // Refused when the loss is built, before any call can take it.
        let e = Loss::huber().delta(delta).build().unwrap_err();
        assert_invalid_option(&e, "delta");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn negative_or_nan_weight_is_rejected() {
    let (p, t) = (arr(&[2, 3], 0.5), arr(&[2, 3], 1.0));
    for bad in [-0.5f32, f32::NAN, f32::INFINITY] {
        let mut w = arr(&[3], 1.0);
        w[[2]] = bad;
        for (loss, with_q) in [
            (Loss::Bce, false),
            (Loss::BceWithLogits, false),
            (Loss::BceWithLogits, true),
        ] {
            let args = LossArgs::new(p.view(), t.view());
            let (args, option) = if with_q {
                (args.pos_weight(w.view()), "pos_weight")
            } else {
                (args.weight(w.view()), "weight")
            };
            let e = ctx().compute(&loss, &args).unwrap_err();
            assert_invalid_option(&e, option);
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn weights_on_losses_that_take_none_are_rejected() {
    let (p, t, w) = (arr(&[4], 0.5), arr(&[4], 1.0), arr(&[4], 1.0));
    for loss in [
        Loss::Mse,
        Loss::Mae,
        Loss::huber().delta(1.0).build().unwrap(),
    ] {
        let e = ctx()
            .compute(&loss, &LossArgs::new(p.view(), t.view()).weight(w.view()))
            .unwrap_err();
        assert_invalid_option(&e, "weight");
    }
    let e = ctx()
        .compute(
            &Loss::Bce,
            &LossArgs::new(p.view(), t.view()).pos_weight(w.view()),
        )
        .unwrap_err();
    assert_invalid_option(&e, "pos_weight");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn weight_shape_must_be_a_trailing_part() {
    let (p, t) = (arr(&[4, 6], 0.5), arr(&[4, 6], 1.0));
    for bad in [vec![4usize], vec![6, 1], vec![2, 4, 6], vec![5], vec![]] {
        let w = arr(&bad, 1.0);
        let e = ctx()
            .compute(
                &Loss::Bce,
                &LossArgs::new(p.view(), t.view()).weight(w.view()),
            )
            .unwrap_err();
        assert_shape_mismatch(&e, "weight");
        let e = ctx()
            .compute(
                &Loss::BceWithLogits,
                &LossArgs::new(p.view(), t.view()).pos_weight(w.view()),
            )
            .unwrap_err();
        assert_shape_mismatch(&e, "pos_weight");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn upstream_array_needs_reduction_none() {
    let (p, t, g) = (arr(&[4], 0.5), arr(&[4], 1.0), arr(&[4], 1.0));
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let args = LossArgs::new(p.view(), t.view())
            .reduction(reduction)
            .upstream(Upstream::Array(g.view()));
        let e = ctx().compute(&Loss::Mse, &args).unwrap_err();
        assert_invalid_option(&e, "upstream");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn upstream_array_shape_must_match() {
    let (p, t, g) = (arr(&[4], 0.5), arr(&[4], 1.0), arr(&[5], 1.0));
    let args = LossArgs::new(p.view(), t.view())
        .reduction(Reduction::None)
        .upstream(Upstream::Array(g.view()));
    let e = ctx().compute(&Loss::Mse, &args).unwrap_err();
    assert_shape_mismatch(&e, "upstream");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn non_finite_scalar_upstream_is_rejected() {
    let (p, t) = (arr(&[4], 0.5), arr(&[4], 1.0));
    let args = LossArgs::new(p.view(), t.view()).upstream(Upstream::Scalar(f32::NAN));
    let e = ctx().compute(&Loss::Mse, &args).unwrap_err();
    assert_invalid_option(&e, "upstream");
}

/// 2^32 elements (a broadcast view: no memory) exceed what one call indexes with u32.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn more_than_u32_elements_is_a_device_limit() {
    let one = [0.5f32];
    let big = ArrayView::from(&one[..]).into_dyn();
    let big = big.broadcast(IxDyn(&[1usize << 32])).unwrap();
    let e = ctx()
        .compute(&Loss::Mse, &LossArgs::new(big.view(), big.view()))
        .unwrap_err();
    assert!(matches!(e, Error::DeviceLimit { .. }), "{e:?}");
}

/// A caller's device (`from_device`) with fewer storage bindings than a kernel needs gives a
/// clear device-limit error, and the kernels that fit still run.
#[test]
#[cfg_attr(skip_gpu_tests, ignore)]
fn too_few_storage_bindings_is_a_device_limit() {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("the GPU tests already found an adapter");
    let limits = wgpu::Limits {
        max_storage_buffers_per_shader_stage: 6,
        ..adapter.limits()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("limited"),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device with lower limits");
    let ctx = wgpu_loss::GpuContext::from_device(device, queue, Default::default());
    let (p, t) = (arr(&[10], 0.5), arr(&[10], 1.0));
    let args = LossArgs::new(p.view(), t.view());
    let e = ctx.compute(&Loss::Bce, &args).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DeviceLimit {
                needed: 8,
                limit: 6,
                ..
            }
        ),
        "{e:?}"
    );
    let ok = ctx.compute(&Loss::Mse, &args).unwrap();
    assert_eq!(ok.value, Some(0.25));
}
