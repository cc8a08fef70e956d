"""Every loss of the registry, on every device, for every reduction and the option sets of
``npref.CASES``, against the numpy float64 reference (value, per-element losses, gradient,
counted), within the tolerances of ``common`` (the library's own, docs/TESTING.md).

The cases are made from ``wgpu_loss.losses()`` when the tests are collected: a loss added to
the registry without a reference in ``npref`` is a visible skip, ``no numpy reference for
<loss>``.
"""

import zlib

import numpy as np
import pytest

import npref
import wgpu_loss
from common import DEVICES, ELEMENT_TOL, assert_matches, context, registry, row_tol

# Elementwise: three axes, 1005 elements (more than one 256-lane workgroup, not a multiple of
# it). Row-wise: leading axes flatten into 26 rows of 37.
ELEMENTWISE_SHAPE = (3, 5, 67)
ROWS_SHAPE = (2, 13, 37)

# (label, reduction, upstream): upstream None (ones), a scalar, or "array" (one per loss).
REDUCTIONS = [
    ("mean", "mean", None),
    ("sum, upstream -0.5", "sum", -0.5),
    ("none", "none", None),
    ("none, upstream array", "none", "array"),
    ("batchmean", "batchmean", None),
]


def _cases():
    out = []
    for name, info in registry().items():
        if not npref.has_reference(name) or name not in npref.CASES:
            out.append(pytest.param(name, None, None, None, id=f"{name}-no-reference"))
            continue
        for case in npref.CASES[name]:
            for red in REDUCTIONS:
                for device in DEVICES:
                    out.append(pytest.param(name, case, red, device,
                                            id=f"{name}-{case[0]}-{red[0]}-{device}"))
    return out


def _extras(extras, shape, rng):
    kw = {}
    for key in ("weight", "pos_weight"):
        kind = extras.get(key)
        if kind == "last":
            kw[key] = rng.uniform(0.5, 2.0, shape[-1:]).astype(np.float32)
        elif kind == "full":
            kw[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif kind == "classes":
            kw[key] = rng.uniform(0.2, 2.0, shape[-1:]).astype(np.float32)
    return kw


@pytest.mark.parametrize("name,case,red,device", _cases())
def test_against_numpy(name, case, red, device):
    if case is None:
        pytest.skip(f"no numpy reference for {name}")
    info = registry()[name]
    label, options, extras = case
    _, reduction, upstream = red
    shape = ROWS_SHAPE if info["row_wise"] else ELEMENTWISE_SHAPE
    seed = zlib.crc32(f"{name} {label}".encode())
    rng = np.random.default_rng(seed)
    pred, target = npref.inputs(name, shape, rng, options, classes=extras.get("classes", False))
    if extras.get("weight") == "classes" or extras.get("classes"):
        # Make sure the ignored class occurs.
        if target.dtype.kind == "i" and "ignore_index" in options:
            target[::3] = options["ignore_index"]
    kw = _extras(extras, shape, rng)
    if upstream == "array":
        value_shape = shape[:-1] if info["row_wise"] else shape
        kw["upstream"] = rng.uniform(-2, 2, value_shape).astype(np.float32)
    elif upstream is not None:
        kw["upstream"] = upstream
    full = {o["name"]: o["default"] for o in info["options"]}
    full.update(options)
    ref = npref.reference(name, pred, target, reduction=reduction, **kw, **full)
    r = context(device).compute(name, pred, target, reduction=reduction, **kw, **options)
    tol = row_tol(shape[-1]) if info["row_wise"] else ELEMENT_TOL
    assert_matches(r, ref, tol, f"{name} [{label}] {reduction} on {device}")
    assert r.grad.dtype == np.float32 and r.grad.shape == pred.shape


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_loss_has_a_reference(name):
    """The registry against npref: a loss without a reference is a skip that names it."""
    if not npref.has_reference(name) or name not in npref.CASES:
        pytest.skip(f"no numpy reference for {name}")
    info = registry()[name]
    # Every option of the loss is exercised away from its default by some case.
    varied = {k for _, opts, _ in npref.CASES[name] for k in opts}
    missing = [o["name"] for o in info["options"] if o["name"] not in varied]
    assert not missing, f"{name}: options never varied in npref.CASES: {missing}"


@pytest.mark.parametrize("device", DEVICES)
def test_want_grad_false_computes_no_gradient(device):
    rng = np.random.default_rng(1)
    for name, info in registry().items():
        if not npref.has_reference(name):
            continue
        shape = ROWS_SHAPE if info["row_wise"] else ELEMENTWISE_SHAPE
        pred, target = npref.inputs(name, shape, rng)
        full = context(device).compute(name, pred, target)
        alone = context(device).compute(name, pred, target, want_grad=False)
        assert alone.grad is None
        assert alone.value == full.value or device == "gpu", name
        assert context(device).value(name, pred, target) == alone.value, name
        v, g = context(device).value_and_grad(name, pred, target)
        assert v == full.value and np.array_equal(g, full.grad), name


def test_module_level_calls_use_the_default_gpu_context():
    rng = np.random.default_rng(2)
    p, t = npref.inputs("mse", (100,), rng)
    gpu = context("gpu")
    a = wgpu_loss.compute("mse", p, t)
    b = gpu.compute("mse", p, t)
    assert a.value == b.value and np.array_equal(a.grad, b.grad)
    assert wgpu_loss.value("mse", p, t) == b.value
    v, g = wgpu_loss.value_and_grad("mse", p, t)
    assert v == b.value and np.array_equal(g, b.grad)
    assert wgpu_loss.default_context() is wgpu_loss.default_context()
    assert wgpu_loss.default_context().device == "gpu"
