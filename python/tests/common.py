"""What the tests share: one context per device for the whole session, the tolerances and the
comparisons.

GPU tests run on the adapter found (llvmpipe without a GPU: ``bash scripts/setup.sh``); without
one they fail with the library's advice, unless ``WGPU_LOSS_SKIP_GPU_TESTS=1``, which skips
them visibly (as the Rust tests' switch of the same name does).
"""

import math
import os

import numpy as np
import pytest

import wgpu_loss

DEVICES = ["gpu", "cpu", "reference"]

_contexts = {}


def context(device):
    """The session's context for ``device`` (created once)."""
    if device not in _contexts:
        try:
            _contexts[device] = wgpu_loss.Context(device)
        except RuntimeError as e:
            if device == "gpu" and os.environ.get("WGPU_LOSS_SKIP_GPU_TESTS") == "1":
                pytest.skip(f"no GPU adapter (WGPU_LOSS_SKIP_GPU_TESTS=1): {e}")
            raise
    return _contexts[device]


# ---------------------------------------------------------------------------------------------
# Tolerances (docs/TESTING.md, the library's own against its f64 reference):
# - a value (mean or sum) is an f32 tree sum: within 1e-5 of the sum of its terms' magnitudes
#   (`value_scale`: the error of a sum is relative to Σ|ℓ_k|, not to Σℓ_k, which may cancel);
# - an elementwise gradient entry or loss is a few f32 ulp of its terms: within 1e-6 of the
#   largest term's magnitude over the batch (about 8 ulp);
# - a row-wise entry also carries its row's statistics (lse, norms), f32 sums of at most C
#   terms: within max(1e-6, 4 √C 2^-24) of the largest term (7.5e-6 at C = 1000).
VALUE_TOL = 1e-5
ELEMENT_TOL = 1e-6


def row_tol(c):
    return max(1e-6, 4 * math.sqrt(c) * 2.0**-24)


def assert_close(got, want, scale, tol, what):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if got.size == 0:
        return
    bound = tol * float(np.max(scale)) + 1e-30
    err = np.abs(got - want)
    k = int(np.argmax(err))
    assert err.flat[k] <= bound, (
        f"{what}: |got - want| = {err.flat[k]:.3g} at flat index {k} (got {got.flat[k]!r}, "
        f"want {want.flat[k]!r}) > {bound:.3g} = {tol:g} x {float(np.max(scale)):.3g}"
    )


def assert_matches(r, ref, tol, what):
    """A LossOutput against a reference dict (npref.reference), within ``tol`` for arrays."""
    if ref["value"] is None:
        assert r.value is None, what
        assert_close(r.losses, ref["losses"], ref["loss_scale"], tol, f"{what}: losses")
    else:
        assert r.losses is None, what
        assert_close(r.value, ref["value"], ref["value_scale"], VALUE_TOL, f"{what}: value")
    assert_close(r.grad, ref["grad"], ref["grad_scale"], tol, f"{what}: grad")
    assert r.counted == ref["counted"], f"{what}: counted {r.counted}, expected {ref['counted']}"


def registry():
    """Every loss of the library's registry, by name."""
    return {info["name"]: info for info in wgpu_loss.losses()}
