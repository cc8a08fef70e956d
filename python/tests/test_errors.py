"""Every error path, each in its own test: ValueError with the library's one-line message for
bad input, RuntimeError for the device; never a crash. Each runs on every device (``ctx``),
since the three must refuse the same inputs."""

import numpy as np
import pytest

import wgpu_loss

f32 = np.float32


def p_t(n=6):
    return np.full(n, 0.5, f32), np.zeros(n, f32)


def logits(b=4, c=5):
    return np.zeros((b, c), f32)


def raises(exc, match, f, *a, **kw):
    with pytest.raises(exc) as info:
        f(*a, **kw)
    msg = str(info.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    for m in [match] if isinstance(match, str) else match:
        assert m in msg, f"{m!r} not in {msg!r}"
    return msg


# --- the loss and its options ------------------------------------------------------------------


def test_unknown_loss_lists_every_loss(ctx):
    msg = raises(ValueError, "no loss named \"nope\"", ctx.compute, "nope", *p_t())
    for info in wgpu_loss.losses():
        assert info["name"] in msg
        for alias in info["aliases"]:
            assert alias in msg


def test_unknown_option_lists_the_loss_options(ctx):
    raises(ValueError, ["huber", "\"deltaa\"", "the options of huber: delta", "reduction"],
           ctx.compute, "huber", *p_t(), deltaa=1.0)


def test_option_of_another_loss_says_whose_it_is(ctx):
    raises(ValueError, ["the mse loss takes no keyword \"delta\"", "an option of huber",
                        "the mse loss has no options"],
           ctx.compute, "mse", *p_t(), delta=1.0)


def test_option_out_of_range_is_the_library_message(ctx):
    raises(ValueError, "invalid option delta", ctx.compute, "huber", *p_t(), delta=0.0)
    raises(ValueError, "label smoothing must be in [0, 1)", ctx.compute, "softmax-ce",
           logits(), np.zeros(4, np.int64), label_smoothing=1.0)
    raises(ValueError, "z_loss", ctx.compute, "softmax-ce", logits(), np.zeros(4, np.int64),
           z_loss=float("nan"))


def test_option_kinds(ctx):
    raises(ValueError, "option full takes a bool (a switch), got 1 of type int",
           ctx.compute, "poisson-nll", *p_t(), full=1)
    raises(ValueError, "option delta takes a float, got True",
           ctx.compute, "huber", *p_t(), delta=True)
    raises(ValueError, "option ignore_index takes an int, got 2.0",
           ctx.compute, "softmax-ce", logits(), np.zeros(4, np.int64), ignore_index=2.0)
    raises(ValueError, "option delta takes a float, got '1'",
           ctx.compute, "huber", *p_t(), delta="1")


def test_option_given_twice(ctx):
    raises(ValueError, "option label_smoothing given twice", ctx.compute, "softmax-ce",
           logits(), np.zeros(4, np.int64), label_smoothing=0.1, **{"label-smoothing": 0.2})


def test_unknown_reduction(ctx):
    raises(ValueError, "reduction must be one of \"mean\", \"sum\", \"none\", \"batchmean\", got \"avg\"",
           ctx.compute, "mse", *p_t(), reduction="avg")


def test_reduction_none_with_value_only(ctx):
    raises(ValueError, "invalid option reduction: `none` gives per-element losses",
           ctx.value, "mse", *p_t(), reduction="none")
    raises(ValueError, "invalid option reduction", ctx.value_and_grad, "mse", *p_t(),
           reduction="none")


# --- shapes --------------------------------------------------------------------------------------


def test_wrong_shape_names_both(ctx):
    raises(ValueError, ["shape mismatch for target", "[2, 3]", "[3, 2]"],
           ctx.compute, "mse", np.zeros((2, 3), f32), np.zeros((3, 2), f32))


def test_class_ids_of_the_wrong_shape(ctx):
    raises(ValueError, ["shape mismatch for target", "[4]", "[5]"],
           ctx.compute, "softmax-ce", logits(4, 5), np.zeros(5, np.int64))


def test_empty_input(ctx):
    raises(ValueError, "empty input: the prediction has shape [0]",
           ctx.compute, "mse", np.zeros(0, f32), np.zeros(0, f32))
    raises(ValueError, "empty input", ctx.compute, "softmax-ce", np.zeros((0, 5), f32),
           np.zeros(0, np.int64))


def test_scalar_prediction_of_a_row_wise_loss(ctx):
    raises(ValueError, "rank >= 1", ctx.compute, "cosine", np.float32(1.0), np.float32(1.0))


def test_too_many_axes():
    a = np.zeros((1,) * 33, f32)
    raises(ValueError, "pred: 33 axes; at most 32", wgpu_loss.Context("cpu").compute, "mse",
           a, a)


# --- values --------------------------------------------------------------------------------------


def test_class_id_out_of_range(ctx):
    raises(ValueError, "target class 5 of row 1 is outside [0, 5)", ctx.compute, "softmax-ce",
           logits(), np.array([0, 5, 1, 1]))
    raises(ValueError, "target class -1 of row 0", ctx.compute, "softmax-ce", logits(),
           np.array([-1, 0, 0, 0], np.int32))


def test_probability_out_of_domain(ctx):
    raises(ValueError, "prediction element 2 (flat, row-major) is 1.5, outside [0, 1]",
           ctx.compute, "bce", np.array([0.5, 0.5, 1.5], f32), np.zeros(3, f32))
    raises(ValueError, "outside [0, 1]", ctx.compute, "cce",
           np.array([[0.5, -0.5]], f32), np.array([[1.0, 0.0]], f32))


def test_nan_propagates_as_the_library_says(ctx):
    """NaN in is NaN out (the value and that element's gradient), never an error; a NaN BCE
    probability is not out of its domain; a row with a NaN logit has loss and gradient NaN."""
    p = np.array([0.5, np.nan, 0.25], f32)
    r = ctx.compute("mse", p, np.zeros(3, f32))
    assert np.isnan(r.value) and np.isnan(r.grad[1]) and np.isfinite(r.grad[[0, 2]]).all()
    assert np.isnan(ctx.compute("bce", p, np.zeros(3, f32)).value)
    x = logits(3, 4)
    x[1, 2] = np.nan
    r = ctx.compute("softmax-ce", x, np.zeros(3, np.int64), reduction="none")
    assert np.isnan(r.losses[1]) and np.isnan(r.grad[1]).all()
    assert np.isfinite(r.losses[[0, 2]]).all() and np.isfinite(r.grad[[0, 2]]).all()


def test_class_ids_for_a_loss_of_float_targets(ctx):
    raises(ValueError, "the mse loss takes f32 targets shaped like the prediction, not i64 class",
           ctx.compute, "mse", np.zeros(3, f32), np.zeros(3, np.int64))


# --- weights and upstream ------------------------------------------------------------------------


def test_weight_for_a_loss_without_one(ctx):
    raises(ValueError, "the mse loss takes no weight", ctx.compute, "mse", *p_t(),
           weight=np.ones(6, f32))
    raises(ValueError, "the bce loss takes no pos_weight", ctx.compute, "bce", *p_t(),
           pos_weight=np.ones(6, f32))


def test_negative_weight(ctx):
    raises(ValueError, "weight element 1 is -1", ctx.compute, "bce", *p_t(3),
           weight=np.array([1, -1, 1], f32))


def test_weight_of_the_wrong_shape(ctx):
    raises(ValueError, "shape mismatch for weight", ctx.compute, "softmax-ce", logits(4, 5),
           np.zeros(4, np.int64), weight=np.ones(4, f32))


def test_upstream_array_needs_reduction_none(ctx):
    raises(ValueError, "an upstream gradient array needs reduction none", ctx.compute, "mse",
           *p_t(), upstream=np.ones(6, f32))


def test_upstream_of_the_wrong_shape(ctx):
    raises(ValueError, "shape mismatch for upstream", ctx.compute, "mse", *p_t(),
           reduction="none", upstream=np.ones(5, f32))


def test_upstream_not_finite_or_bool(ctx):
    raises(ValueError, "the upstream gradient must be finite", ctx.compute, "mse", *p_t(),
           upstream=float("inf"))
    raises(ValueError, "upstream must be a number or an array of floats, got a bool",
           ctx.compute, "mse", *p_t(), upstream=True)


# --- dtypes and objects --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, "U3", object])
def test_prediction_must_hold_floats(ctx, dtype):
    p = np.zeros(3, dtype)
    raises(ValueError, "pred must hold floats (float32; float64 and float16 are converted",
           ctx.compute, "mse", p, np.zeros(3, f32))


def test_target_dtypes_refused(ctx):
    raises(ValueError, "a bool target is 0/1 float targets, and the softmax-ce loss takes class",
           ctx.compute, "softmax-ce", logits(), np.zeros(4, bool))
    raises(ValueError, "uint64 class ids are not read", ctx.compute, "softmax-ce", logits(),
           np.zeros(4, np.uint64))
    raises(ValueError, "target must hold floats (float targets) or integers (class ids)",
           ctx.compute, "mse", np.zeros(2, f32), np.array(["a", "b"]))


def test_weight_must_hold_floats(ctx):
    raises(ValueError, "weight must hold floats", ctx.compute, "bce", *p_t(3),
           weight=np.ones(3, np.int64))


def test_objects_numpy_cannot_read(ctx):
    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("this array lives on another device")

    class BrokenDlpack:
        def __dlpack__(self, *a, **kw):
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")

        def __dlpack_device__(self):
            return (1, 0)

    raises(ValueError, ["pred: cannot be read as an array", "another device"],
           ctx.compute, "mse", Broken(), np.zeros(1, f32))
    raises(ValueError, ["target: cannot be read as an array", "use tensor.detach()"],
           ctx.compute, "mse", np.zeros(1, f32), BrokenDlpack())
    raises(ValueError, "pred: cannot be read as an array", ctx.compute, "mse",
           [[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0]])


# --- devices -------------------------------------------------------------------------------------


def test_unknown_device():
    raises(ValueError, "device must be \"gpu\", \"cpu\" or \"reference\", got \"tpu\"",
           wgpu_loss.Context, "tpu")


def test_gpu_options_off_the_gpu():
    raises(ValueError, "adapter applies to device=\"gpu\" only", wgpu_loss.Context, "cpu",
           adapter="llvmpipe")
    raises(ValueError, "memory_budget applies to device=\"gpu\" only", wgpu_loss.Context,
           "reference", memory_budget=1 << 20)


def test_unknown_backend_and_negative_budget():
    raises(ValueError, "backend must be \"vulkan\", \"metal\", \"dx12\" or \"gl\"",
           wgpu_loss.Context, "gpu", backend="opencl")
    raises(ValueError, "memory_budget must be >= 0 bytes, got -1", wgpu_loss.Context, "gpu",
           memory_budget=-1)


def test_no_matching_adapter_is_a_runtime_error(gpu):
    raises(RuntimeError, ["no GPU adapter found: none matches ContextOptions::adapter_name",
                          "no-such-adapter-42"],
           wgpu_loss.Context, "gpu", adapter="no-such-adapter-42")
