"""torch tensors in (CPU tensors read through ``__dlpack__`` without a copy), and the values and
gradients of ``torch.nn.functional``'s losses (autograd in float64) on every device. Skipped,
saying so, where torch is not installed (CI: ``pip install torch`` to run them)."""

import tracemalloc

import numpy as np
import pytest

from common import DEVICES, context

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
F = torch.nn.functional

# f32 results against torch's float64: the value within 1e-5 relative, the gradient within
# 1e-5 of its largest entry (the library's tolerances against its own f64 reference, 1e-5 and
# 1e-6 to 7.5e-6, with room for torch's own float64 arithmetic, which is not the reference's).
TOL = 1e-5


def _torch_case(name, rng):
    """(wgpu-loss name, pred, target, wgpu-loss kwargs, torch loss of (pred, target))."""
    n = (64, 33)
    x = torch.tensor(rng.standard_normal(n), dtype=torch.float32)
    t = torch.tensor(rng.standard_normal(n), dtype=torch.float32)
    prob = torch.tensor(rng.uniform(0.02, 0.98, n), dtype=torch.float32)
    bits = torch.tensor(rng.uniform(0, 1, n) < 0.5, dtype=torch.float32)
    w = torch.tensor(rng.uniform(0.5, 2, n[-1:]), dtype=torch.float32)
    counts = torch.tensor(rng.poisson(2.0, n), dtype=torch.float32)
    classes = torch.tensor(rng.integers(0, n[-1], n[0]), dtype=torch.int64)
    classes[::5] = 3
    d = torch.float64
    return {
        "mse": ("mse", x, t, {}, lambda a, b: F.mse_loss(a, b.to(d))),
        "l1": ("l1", x, t, {}, lambda a, b: F.l1_loss(a, b.to(d))),
        "huber": ("huber", x, t, {"delta": 0.7}, lambda a, b: F.huber_loss(a, b.to(d), delta=0.7)),
        "smooth_l1": ("smooth-l1", x, t, {"beta": 0.5},
                      lambda a, b: F.smooth_l1_loss(a, b.to(d), beta=0.5)),
        "bce": ("bce", prob, bits, {"weight": w},
                lambda a, b: F.binary_cross_entropy(a, b.to(d), weight=w.to(d))),
        "bce_logits": ("bce-with-logits", x, bits, {"weight": w, "pos_weight": 2 * w},
                       lambda a, b: F.binary_cross_entropy_with_logits(
                           a, b.to(d), weight=w.to(d), pos_weight=2 * w.to(d))),
        "poisson": ("poisson-nll", x, counts, {"full": True},
                    lambda a, b: F.poisson_nll_loss(a, b.to(d), full=True)),
        "cross_entropy": ("cross-entropy", x, classes,
                          {"weight": w, "label_smoothing": 0.1, "ignore_index": 3},
                          lambda a, b: F.cross_entropy(a, b, weight=w.to(d),
                                                       label_smoothing=0.1, ignore_index=3)),
        "cross_entropy_probs": ("cross_entropy", x, torch.softmax(t, -1), {},
                                lambda a, b: F.cross_entropy(a, b.to(d))),
        "cosine": ("cosine", x, t, {},
                   lambda a, b: -F.cosine_similarity(a, b.to(d), dim=-1).mean()),
    }[name]


CASES = ["mse", "l1", "huber", "smooth_l1", "bce", "bce_logits", "poisson", "cross_entropy",
         "cross_entropy_probs", "cosine"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("device", DEVICES)
def test_against_torch_functional(case, device):
    rng = np.random.default_rng(CASES.index(case))
    name, pred, target, kw, torch_loss = _torch_case(case, rng)
    r = context(device).compute(name, pred, target, **kw)
    p64 = pred.to(torch.float64).requires_grad_(True)
    want = torch_loss(p64, target)
    want.backward()
    assert abs(r.value - want.item()) <= TOL * abs(want.item()), (r.value, want.item())
    g = p64.grad.numpy()
    err = np.abs(r.grad - g).max()
    assert err <= TOL * np.abs(g).max(), (case, err, np.abs(g).max())


def test_cpu_tensors_are_read_without_a_copy():
    n = 1 << 23
    p, t = torch.full((n,), 0.5), torch.zeros(n)
    cpu = context("cpu")
    cpu.compute("mse", p, t)
    tracemalloc.start()
    r = cpu.compute("mse", p, t)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert r.value == 0.25


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_layouts_and_dtypes(device):
    ctx = context(device)
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.standard_normal((40, 60)), dtype=torch.float32)
    t = torch.tensor(rng.standard_normal((40, 60)), dtype=torch.float32)
    want = ctx.compute("mse", x[:, ::2].numpy().copy(), t[:, ::2].numpy().copy())
    got = ctx.compute("mse", x[:, ::2], t[:, ::2])  # strided: a view, read as it is
    assert got.value == want.value and np.array_equal(got.grad, want.grad)
    got = ctx.compute("mse", x.T, t.T)
    assert got.grad.shape == (60, 40)
    x64 = x.to(torch.float64)
    assert ctx.compute("mse", x64, t).value == ctx.compute("mse", x, t).value
    c = torch.tensor(rng.integers(0, 60, 40))
    for dtype in (torch.int64, torch.int32, torch.uint8):
        r = ctx.compute("softmax-ce", x, c.to(dtype))
        assert r.value == ctx.compute("softmax-ce", x, c.numpy()).value


def test_tensor_that_requires_grad_says_detach(ctx):
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="pred: cannot be read as an array.*detach"):
        ctx.compute("mse", x, torch.zeros(3))
    assert ctx.compute("mse", x.detach(), torch.zeros(3)).value == 0.0


def test_gradient_back_into_autograd():
    """The pattern of docs/PYTHON.md: a torch.autograd.Function whose forward is the package's
    value and whose backward hands its gradient (times grad_output) back to autograd. A linear
    layer trained through it gets torch's own gradients."""
    ctx = context("cpu")

    class WgpuCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(fctx, logits, classes):
            r = ctx.compute("cross-entropy", logits.detach(), classes)
            fctx.save_for_backward(torch.from_numpy(r.grad))
            return logits.new_tensor(r.value)

        @staticmethod
        def backward(fctx, grad_output):
            (grad,) = fctx.saved_tensors
            return grad * grad_output, None

    torch.manual_seed(0)
    layer = torch.nn.Linear(20, 7)
    x, c = torch.randn(32, 20), torch.randint(0, 7, (32,))
    WgpuCrossEntropy.apply(layer(x), c).backward()
    ours = layer.weight.grad.clone()
    layer.zero_grad()
    F.cross_entropy(layer(x), c).backward()
    assert torch.allclose(ours, layer.weight.grad, rtol=1e-5, atol=1e-7)
