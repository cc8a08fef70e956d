"""What the package reads: dtypes and their conversions, layouts (strided, reversed, unaligned,
byte-swapped), objects numpy reads (``__array__``, ``__dlpack__``, sequences), float32 read in
place without a copy, the GIL released, and edge shapes."""

import threading
import time
import tracemalloc

import numpy as np
import pytest

import npref
import wgpu_loss
from common import ELEMENT_TOL, assert_matches, context, registry, row_tol

f32 = np.float32


def bits(a):
    return np.asarray(a, f32).view(np.uint32)


def same(a, b):
    assert (a.value is None and b.value is None) or bits(a.value) == bits(b.value)
    for x, y in ((a.grad, b.grad), (a.losses, b.losses)):
        assert (x is None and y is None) or np.array_equal(bits(x), bits(y))
    assert a.counted == b.counted


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((33, 65)).astype(f32), rng.standard_normal((33, 65)).astype(f32)


# --- dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.longdouble, ">f4", ">f8"])
def test_other_floats_are_converted_to_float32(ctx, data, dtype):
    p, t = data
    p, t = p.astype(dtype), t.astype(dtype)  # float16 rounds: compare with its values in f32
    want = ctx.compute("mse", p.astype(f32), t.astype(f32), reduction="none")
    same(ctx.compute("mse", p, t, reduction="none"), want)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.int8, np.int16,
                                   np.uint8, np.uint16, ">i8"])
def test_class_id_dtypes(ctx, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 7)).astype(f32)
    c = rng.integers(0, 7, 50)
    want = ctx.compute("softmax-ce", x, c.astype(np.int64))
    same(ctx.compute("softmax-ce", x, c.astype(dtype)), want)


def test_uint32_ids_never_match_a_negative_ignore_index(ctx):
    x = np.zeros((3, 4), f32)
    r = ctx.compute("softmax-ce", x, np.array([0, 1, 2], np.uint32), ignore_index=-100)
    assert r.counted == 3
    r = ctx.compute("softmax-ce", x, np.array([0, 1, 2], np.int64), ignore_index=1)
    assert r.counted == 2


def test_bool_and_uint8_targets_are_floats_for_float_losses(ctx):
    p = np.array([0.2, 0.9, 0.6], f32)
    t = np.array([False, True, True])
    same(ctx.compute("bce", p, t), ctx.compute("bce", p, t.astype(f32)))
    t8 = np.array([0, 3, 255], np.uint8)
    same(ctx.compute("mse", p, t8), ctx.compute("mse", p, t8.astype(f32)))


def test_probability_targets_of_softmax_ce_in_float64(ctx):
    x = np.zeros((2, 3), f32)
    t = np.array([[0.2, 0.3, 0.5], [1, 0, 0]])
    same(ctx.compute("softmax-ce", x, t), ctx.compute("softmax-ce", x, t.astype(f32)))


# --- layouts -------------------------------------------------------------------------------------


def test_layouts_give_the_contiguous_bits(ctx, data):
    p, t = data
    big = np.zeros((66, 130), f32)
    big[::2, ::2] = p
    raw = np.zeros(p.size * 4 + 1, np.uint8)
    unaligned = raw[1:].view(f32).reshape(p.shape)
    unaligned[...] = p
    assert not unaligned.flags.aligned
    want = ctx.compute("huber", p, t, reduction="none")
    for name, q in [("strided", big[::2, ::2]), ("reversed", p[::-1, ::-1].copy()[::-1, ::-1]),
                    ("unaligned", unaligned), ("fortran", np.asfortranarray(p))]:
        assert np.array_equal(q, p)
        same(ctx.compute("huber", q, t, reduction="none"), want)
    # A transposed prediction is a different array: its gradient comes back in its shape.
    r = ctx.compute("mse", p.T, t.T)
    assert r.grad.shape == p.T.shape
    assert np.array_equal(bits(r.grad), bits(ctx.compute("mse", p.T.copy(), t.T.copy()).grad))


def test_sequences_scalars_and_array_objects(ctx):
    class ArrayLike:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    class DlpackOnly:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, *args, **kw):
            return self.a.__dlpack__(*args, **kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    p = np.array([0.5, -1.0, 2.0], f32)
    t = np.array([0.0, 1.0, 1.5], f32)
    want = ctx.compute("mse", p, t)
    same(ctx.compute("mse", [0.5, -1.0, 2.0], (0.0, 1.0, 1.5)), want)
    same(ctx.compute("mse", ArrayLike(p), ArrayLike(t)), want)
    same(ctx.compute("mse", DlpackOnly(p), DlpackOnly(t)), want)
    assert ctx.compute("mse", 2.0, 0.5).value == 2.25  # 0-d: one element


def test_upstream_forms(ctx, data):
    p, t = data
    base = ctx.compute("mse", p, t)
    for g in (0.5, np.float32(0.5), np.float64(0.5), np.array(0.5), [0.5]):
        if isinstance(g, list):
            continue
        r = ctx.compute("mse", p, t, upstream=g)
        assert np.allclose(r.grad, 0.5 * base.grad, rtol=1e-6, atol=0)
    g = np.full(p.shape, 0.5, np.float64)
    r = ctx.compute("mse", p, t, reduction="none", upstream=g)
    assert np.allclose(r.grad, 0.5 * ctx.compute("mse", p, t, reduction="none").grad, rtol=1e-6)


# --- no copy, the GIL ----------------------------------------------------------------------------


def test_float32_inputs_are_read_without_a_copy(cpu):
    """numpy's allocations are traced by tracemalloc (the results, allocated by Rust, are
    not): reading 2 x 32 MiB of C-contiguous or strided float32 allocates nothing in numpy,
    while float64 input shows its float32 copies."""
    n = 1 << 23
    p, t = np.full(n, 0.5, f32), np.zeros(n, f32)
    p2, t2 = np.full(2 * n, 0.5, f32)[::2], np.zeros(2 * n, f32)[::2]

    def peak(*a):
        tracemalloc.start()
        cpu.compute("mse", *a)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(p, t) < 1 << 20
    assert peak(p2, t2) < 1 << 20
    assert peak(p.astype(np.float64), t.astype(np.float64)) >= 2 * 4 * n


@pytest.mark.parametrize("device", ["gpu", "cpu", "reference"])
def test_the_gil_is_released_while_computing(device):
    """A Python thread keeps running while another thread's call computes: the longest pause
    of a loop in this thread, during one long call in another, is a small part of the call
    (with the GIL held it would be the whole call)."""
    ctx = context(device)
    n = {"gpu": 1 << 23, "cpu": 1 << 25, "reference": 1 << 22}[device]
    p, t = np.full(n, 0.5, f32), np.zeros(n, f32)
    ctx.compute("mse", p[:1000], t[:1000])  # pipelines built, pools warm
    done = threading.Event()
    took = []

    def work():
        start = time.perf_counter()
        ctx.compute("mse", p, t)
        took.append(time.perf_counter() - start)
        done.set()

    th = threading.Thread(target=work)
    # From before the start: a call holding the GIL from its first instant (before this
    # thread's loop ever runs) shows as one pause as long as the call.
    last = time.perf_counter()
    longest = 0.0
    th.start()
    while True:
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        if done.is_set():
            break
    th.join()
    assert took[0] > 0.02, f"the call took {took[0]:.3f} s: too short to tell"
    assert longest < 0.5 * took[0], f"this thread paused {longest:.3f} s of a {took[0]:.3f} s call"


# --- edge shapes ---------------------------------------------------------------------------------


def _edge_cases():
    out = []
    for name, info in registry().items():
        shapes = ([(1, 1), (1,), (3, 7), (9, 1001), (5, 257), (2, 4097), (1, 70_000)]
                  if info["row_wise"] else [(), (1,), (257,), (1, 1, 3), (4097,), (3, 1001)])
        for s in shapes:
            out.append(pytest.param(name, s, id=f"{name}-{'x'.join(map(str, s)) or 'scalar'}"))
    return out


@pytest.mark.parametrize("name,shape", _edge_cases())
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_edge_shapes(ctx, name, shape, reduction):
    if not npref.has_reference(name):
        pytest.skip(f"no numpy reference for {name}")
    info = registry()[name]
    rng = np.random.default_rng(len(shape) * 1000 + sum(shape))
    pred, target = npref.inputs(name, shape, rng, classes=info["takes_classes"])
    defaults = {o["name"]: o["default"] for o in info["options"]}
    ref = npref.reference(name, pred, target, reduction=reduction, **defaults)
    r = ctx.compute(name, pred, target, reduction=reduction)
    tol = row_tol(shape[-1]) if info["row_wise"] else ELEMENT_TOL
    assert_matches(r, ref, tol, f"{name} {shape} {reduction}")
    assert r.grad.shape == pred.shape


def test_empty_prediction_is_a_value_error_not_a_crash(ctx):
    for name, info in registry().items():
        shape = (0, 4) if info["row_wise"] else (0,)
        with pytest.raises(ValueError, match="empty input"):
            ctx.compute(name, np.zeros(shape, f32), np.zeros(shape, f32))


def test_losses_lists_the_registry():
    infos = wgpu_loss.losses()
    names = [i["name"] for i in infos]
    assert len(names) == len(set(names)) and "mse" in names and "softmax-ce" in names
    for i in infos:
        assert set(i) == {"name", "aliases", "about", "row_wise", "takes_weight",
                          "takes_pos_weight", "takes_classes", "options"}
        assert i["about"]
        for o in i["options"]:
            assert set(o) == {"name", "default", "help", "kind"}
            assert "-" not in o["name"]
            assert o["kind"] in ("float", "int", "bool")
            assert isinstance(o["default"], {"float": float, "int": int, "bool": bool}[o["kind"]])
    sce = {i["name"]: i for i in infos}["softmax-ce"]
    assert "cross-entropy" in sce["aliases"] and sce["takes_classes"] and sce["row_wise"]
    assert {o["name"]: o["default"] for o in sce["options"]} == {
        "label_smoothing": 0.0, "z_loss": 0.0, "ignore_index": -100, "softcap": 0.0}


def test_aliases_and_underscores(ctx):
    x = np.zeros((2, 3), f32)
    c = np.array([0, 2])
    want = ctx.compute("softmax-ce", x, c, label_smoothing=0.1)
    for name in ("cross-entropy", "cross_entropy", "softmax_ce"):
        same(ctx.compute(name, x, c, label_smoothing=0.1), want)
    same(ctx.compute("softmax-ce", x, c, **{"label-smoothing": 0.1}), want)
    p = np.array([0.5], f32)
    same(ctx.compute("l1", p, p), ctx.compute("mae", p, p))


def test_reprs(ctx):
    assert repr(ctx).startswith(f"Context(device='{ctx.device}'")
    assert (ctx.adapter is None) == (ctx.device != "gpu")
    r = ctx.compute("mse", np.zeros((2, 3), f32), np.zeros((2, 3), f32))
    assert repr(r) == "LossOutput(value=0, grad=array[2, 3], losses=None, counted=6)"


# --- grad_out ------------------------------------------------------------------------------------


def test_grad_out_receives_the_same_bits(ctx):
    rng = np.random.default_rng(9)
    for name, info in registry().items():
        if not npref.has_reference(name):
            continue
        shape = (6, 300) if info["row_wise"] else (2, 1001)
        pred, target = npref.inputs(name, shape, rng, classes=info["takes_classes"])
        want = ctx.compute(name, pred, target, reduction="none")
        out = np.full(shape, np.nan, f32)
        r = ctx.compute(name, pred, target, reduction="none", grad_out=out)
        assert r.grad is out
        same(r, want)
        # Not contiguous: written through a temporary, the same bits.
        wide = np.full((shape[0], 2 * shape[1]), np.nan, f32)
        r = ctx.compute(name, pred, target, reduction="none", grad_out=wide[:, ::2])
        assert np.array_equal(bits(wide[:, ::2]), bits(want.grad))
        assert np.isnan(wide[:, 1::2]).all()


def test_grad_out_refusals(ctx):
    p, t = np.zeros((2, 3), f32), np.zeros((2, 3), f32)
    for bad, match in [
        (np.zeros((3, 2), f32), r"shape mismatch for grad_out: expected \[2, 3\], got \[3, 2\]"),
        (np.zeros((2, 3)), "grad_out: must be a numpy array of float32"),
        ([[0.0] * 3] * 2, "grad_out: must be a numpy array of float32"),
        (np.frombuffer(bytearray(25), f32, 6, 1).reshape(2, 3), "grad_out: must be an aligned"),
        (p, "grad_out: cannot be written"),  # the prediction itself
    ]:
        with pytest.raises(ValueError, match=match):
            ctx.compute("mse", p, t, grad_out=bad)
    ro = np.zeros((2, 3), f32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out: cannot be written"):
        ctx.compute("mse", p, t, grad_out=ro)
    with pytest.raises(ValueError, match="grad_out: want_grad=False"):
        ctx.compute("mse", p, t, grad_out=np.zeros((2, 3), f32), want_grad=False)
