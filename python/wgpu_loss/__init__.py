"""Batched loss functions with their gradient, on the GPU through wgpu, on a fast CPU path,
or as an f64 reference, on numpy arrays (and anything numpy reads: ``__array__``,
``__dlpack__``, a CPU ``torch.Tensor``).

>>> import numpy as np, wgpu_loss
>>> ctx = wgpu_loss.Context(device="cpu")                # or "gpu" (default), "reference"
>>> r = ctx.compute("mse", np.array([0.5, 1.0], np.float32), np.zeros(2, np.float32))
>>> r.value, r.grad                                       # doctest: +SKIP
(0.625, array([0.5, 1. ], dtype=float32))

``wgpu_loss.compute(...)`` is the same call on a default context (``device="gpu"``, created on
first use and shared). ``wgpu_loss.losses()`` lists every loss of the library's registry with
its options; a loss's name may be any of its aliases (PyTorch's: ``cross-entropy``, ``l1``),
with ``_`` or ``-`` alike, and its options are keyword arguments (``label_smoothing=0.1``).

The losses (``p`` prediction, ``t`` target, ``d = p - t``, ``w`` weight, ``q`` pos_weight, ``σ``
the logistic function; per row of ``[B, C]``: ``s = softmax(x)``, ``lse = ln Σ_j e^(x_j)``,
``c`` the class id)::

    mse              d²
    mae (l1)         |d|
    huber            ½d² if |d| ≤ δ, else δ(|d| − ½δ)              delta δ > 0 (1)
    smooth-l1        ½d²/β if |d| < β, else |d| − ½β                beta β ≥ 0 (1)
    bce              −w[t ln p + (1−t) ln(1−p)], logs ≥ −100, p ∈ [0, 1]
    bce-with-logits  w[(1−t)x + (1+(q−1)t) ln(1+e^(−x))], stable
    poisson-nll      e^x − t x (log_input), else x − t ln(x + ε); full: + Stirling's term
    focal            α_t · BCE(x, t) · (1 − p_t)^γ                 alpha (0.25), gamma (2)
    cce              −Σ_j t_j ln p_j, on probability rows
    softmax-ce       lse − x_c (class ids) or −Σ_j t_j ln s_j, smoothed (label_smoothing),
                     + z_loss · lse², class weight, ignore_index (−100), softcap c
                     (logits c·tanh(x/c))
    cosine           −p·t / (max(‖p‖, ε) max(‖t‖, ε))               eps ε > 0 (1e-8)
    kl-div           t (ln t − p) of log-probabilities p, 0 where t = 0   log_target (False)
    distill          T² KL(softmax(u/T) ‖ softmax(s/T)), student s, teacher u   temperature (1)

Losses added to the library later are listed by ``losses()`` with their description and
options and work here unchanged. Reductions: ``"mean"`` (default), ``"sum"``, ``"none"``
(``r.losses``: per element, or per row of a row-wise loss).

Inputs: float32 arrays are read in place (no copy, whatever their strides); float64, float16
and other float dtypes are converted to float32. Class ids (softmax-ce) are int32, int64 or
uint32 in place, int8, int16, uint16 and uint8 widened to int32. A bool target is 0/1 float
targets, and a uint8 target float targets 0 to 255, for a loss without class ids.

Errors: ``ValueError`` with the library's message for bad input (shapes, empty input,
options, weights, dtypes, probabilities outside [0, 1], class ids out of range);
``RuntimeError`` for the device (no adapter, a GPU failure). Every call releases the GIL while
it computes, and a ``Context`` may be shared by threads. Details: docs/PYTHON.md.
"""

import threading as _threading

from ._native import Context, LossOutput, __version__, losses

__all__ = [
    "Context",
    "LossOutput",
    "compute",
    "default_context",
    "losses",
    "value",
    "value_and_grad",
    "__version__",
]

_default = None
_default_lock = _threading.Lock()


def default_context():
    """The context ``compute``, ``value`` and ``value_and_grad`` use: ``Context("gpu")``,
    created on first use and shared by every thread. Raises ``RuntimeError`` (each time, until
    one can be created) when no adapter is found."""
    global _default
    ctx = _default
    if ctx is None:
        with _default_lock:
            if _default is None:
                _default = Context("gpu")
            ctx = _default
    return ctx


def compute(loss, pred, target, **kwargs):
    """``Context.compute`` on the default context (see ``default_context``)."""
    return default_context().compute(loss, pred, target, **kwargs)


def value_and_grad(loss, pred, target, **kwargs):
    """``Context.value_and_grad`` on the default context (see ``default_context``)."""
    return default_context().value_and_grad(loss, pred, target, **kwargs)


def value(loss, pred, target, **kwargs):
    """``Context.value`` on the default context (see ``default_context``)."""
    return default_context().value(loss, pred, target, **kwargs)
