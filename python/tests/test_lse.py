"""``want_lse=True``: each row's log-sum-exp of softmax-ce (after ``softcap``), against numpy in
f64 on every device, ignored rows included, every reduction; ``None`` unless asked for; a
loss without one is a ValueError."""

import numpy as np
import pytest

import npref
from common import DEVICES, assert_close, context, row_tol

SHAPE = (3, 11, 257)


def numpy_lse(x, softcap=0.0):
    y = np.asarray(x, np.float64)
    if softcap:
        y = softcap * np.tanh(y / softcap)
    m = y.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(y - m).sum(axis=-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("softcap", [0.0, 5.0])
def test_lse_against_numpy(device, reduction, softcap):
    rng = np.random.default_rng(17 + int(softcap))
    pred, target = npref.inputs("softmax-ce", SHAPE, rng, classes=True)
    target[0, 3] = -100  # ignored: its log-sum-exp is still given
    ctx = context(device)
    r = ctx.compute("softmax-ce", pred, target, reduction=reduction, softcap=softcap,
                    label_smoothing=0.1, want_lse=True)
    assert r.lse.shape == SHAPE[:-1] and r.lse.dtype == np.float32
    want = numpy_lse(pred, softcap)
    # m + ln S: ln S within the row sum's relative error, against max(|lse|, 1); with a cap,
    # its 3-ulp error on y too (tests/gpu/common.rs `softcap_rtol`).
    tol = row_tol(SHAPE[-1]) + 6 * 2.0**-24 * min(softcap, float(np.abs(pred).max()))
    assert_close(r.lse, want, np.maximum(np.abs(want), 1.0), tol, f"lse on {device}")
    plain = ctx.compute("softmax-ce", pred, target, reduction=reduction, softcap=softcap,
                        label_smoothing=0.1)
    assert plain.lse is None
    assert np.array_equal(plain.grad, r.grad), "the gradient does not depend on want_lse"
    assert "lse=array" in repr(r) and "lse" not in repr(plain)


@pytest.mark.parametrize("device", DEVICES)
def test_lse_of_minus_infinity_and_nan_rows(device):
    x = np.zeros((3, 5), np.float32)
    x[0, :] = -np.inf
    x[1, 2] = np.nan
    x[2, 4] = -np.inf
    r = context(device).compute("softmax-ce", x, np.array([1, 0, 3]), reduction="none",
                                want_lse=True)
    assert r.lse[0] == -np.inf and np.isnan(r.lse[1])
    assert abs(r.lse[2] - np.log(4)) < 1e-6


@pytest.mark.parametrize("loss", ["mse", "cosine", "distill"])
def test_lse_refused_elsewhere(loss):
    rng = np.random.default_rng(5)
    pred, target = npref.inputs(loss, (4, 9), rng)
    with pytest.raises(ValueError, match="log-sum-exp"):
        context("cpu").compute(loss, pred, target, want_lse=True)


@pytest.mark.parametrize("device", DEVICES)
def test_lse_against_torch_logsumexp(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(23)
    pred, target = npref.inputs("softmax-ce", (64, 1000), rng, classes=True)
    r = context(device).compute("softmax-ce", pred, target, softcap=30.0, want_lse=True)
    x = torch.from_numpy(pred).double()
    want = torch.logsumexp(30.0 * torch.tanh(x / 30.0), dim=-1).numpy()
    tol = row_tol(1000) + 6 * 2.0**-24 * 30.0
    assert_close(r.lse, want, np.maximum(np.abs(want), 1.0), tol, f"torch lse on {device}")
