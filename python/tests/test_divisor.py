"""``divisor=D``: a row-wise mean over the caller's count, against the numpy reference on every
device; ``D = 0`` gives 0; a divisor with an elementwise loss or another reduction is a
ValueError."""

import numpy as np
import pytest

import npref
from common import DEVICES, assert_matches, context, row_tol

SHAPE = (2, 13, 37)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("divisor", [1.0, 7.5, 1e4])
def test_divisor_against_numpy(device, divisor):
    rng = np.random.default_rng(int(divisor * 10) + 1)
    pred, target = npref.inputs("softmax-ce", SHAPE, rng, classes=True)
    ref = npref.reference("softmax-ce", pred, target, divisor=divisor,
                          label_smoothing=0.0, z_loss=0.0, ignore_index=-100)
    r = context(device).compute("softmax-ce", pred, target, divisor=divisor)
    assert_matches(r, ref, row_tol(SHAPE[-1]), f"divisor {divisor} on {device}")
    assert r.counted == SHAPE[0] * SHAPE[1]


@pytest.mark.parametrize("device", DEVICES)
def test_zero_divisor_gives_zero(device):
    rng = np.random.default_rng(3)
    pred, target = npref.inputs("cosine", SHAPE, rng)
    r = context(device).compute("cosine", pred, target, divisor=0.0)
    assert r.value == 0.0
    assert not r.grad.any()


@pytest.mark.parametrize(
    "loss,kw",
    [("mse", {}), ("softmax-ce", {"reduction": "sum"}), ("softmax-ce", {"reduction": "batchmean"}),
     ("softmax-ce", {"divisor_value": -1.0})],
)
def test_divisor_errors(loss, kw):
    rng = np.random.default_rng(4)
    pred, target = npref.inputs(loss, SHAPE, rng)
    d = kw.pop("divisor_value", 2.0)
    with pytest.raises(ValueError, match="divisor"):
        context("cpu").compute(loss, pred, target, divisor=d, **kw)
