"""Batched loss functions with their gradient, on the GPU through wgpu, on a fast CPU path,
or as an f64 reference, on numpy arrays.

The losses (``p`` prediction, ``t`` target, ``d = p - t``, ``w`` weight, ``q`` pos_weight, ``σ``
the logistic function; per row of ``[B, C]``: ``s = softmax(x)``, ``lse = ln Σ_j e^(x_j)``,
``c`` the class id), with their options (keyword arguments) and defaults::

    mse              ℓ = d²                                       ∂ℓ/∂p = 2d
    mae (l1)         ℓ = |d|                                      ∂ℓ/∂p = sign(d), 0 at 0
    huber            ℓ = ½d² if |d| ≤ δ, else δ(|d| − ½δ)          delta δ > 0 (1.0)
    smooth-l1        ℓ = ½d²/β if |d| < β, else |d| − ½β           beta β ≥ 0 (1.0)
    bce              ℓ = −w[t max(ln p, −100) + (1−t) max(ln(1−p), −100)], p ∈ [0, 1]
                                                                  ∂ℓ/∂p = w(p − t) / max(p(1−p), 1e-12)
    bce-with-logits  ℓ = w[(1−t)x + (1+(q−1)t) ln(1+e^(−x))]       ∂ℓ/∂x = w[(1+(q−1)t)σ(x) − qt]
    poisson-nll      ℓ = e^x − t x (log_input=True), else x − t ln(x + eps); full=True adds
                     t ln t − t + ½ ln(2πt) where t > 1           log_input (True), full (False), eps (1e-8)
    focal            ℓ = α_t · BCE(x, t) · (1 − p_t)^γ, p_t = σ(x)t + (1−σ(x))(1−t),
                     α_t = αt + (1−α)(1−t) (1 if α < 0)            alpha (0.25), gamma (2.0)
    kl-div           ℓ = t (ln t − p), 0 where t = 0 (p log-probabilities); log_target=True:
                     ℓ = e^t (t − p)                              ∂ℓ/∂p = −t, or −e^t
    cce              ℓ_r = −Σ_j t_j max(ln p_j, −100), probabilities in [0, 1]
    softmax-ce       class ids: ℓ_r = (1−ε) w_c (lse − x_c) + (ε/C) Σ_j w_j (lse − x_j);
    (cross-entropy)  probabilities: ℓ_r = −Σ_j w_j t'_j ln s_j, t' = (1−ε)t + ε/C; + λ lse²
                     label_smoothing ε (0.0), z_loss λ (0.0), ignore_index (−100), weight w [C],
                     softcap c (0.0: none; else every formula on c·tanh(x/c))
    cosine           ℓ_r = −p·t / (max(‖p‖, ε) max(‖t‖, ε))          eps ε > 0 (1e-8)
    distill          ℓ_r = T² Σ_j P_j (ln P_j − ln Q_j), P = softmax(u/T) of the teacher's
                     logits u (target), Q = softmax(s/T) of the student's s   temperature T > 0 (1.0)

Reductions: ``"mean"`` (Σℓ/D; D = N elements, B rows, or for class ids the sum of the class
weights of the rows not ignored, and 0 with every row ignored), ``"sum"``, ``"none"``,
``"batchmean"`` (Σℓ over the first dimension's size, PyTorch kl_div's). ``divisor=D``: a
row-wise mean divides by D instead (the global count over micro-batches or ranks).
Losses added to the library later are listed by ``losses()`` and work without a new stub.
"""

from typing import Any, List, Literal, Optional, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = Any  # a numpy array, or anything numpy reads (__dlpack__, __array__, sequences)
Reduction = Literal["mean", "sum", "none", "batchmean"]
Device = Literal["gpu", "cpu", "reference"]
OptionValue = Union[float, int, bool]

class OptionInfo(TypedDict):
    name: str  # the keyword argument (label_smoothing)
    default: OptionValue
    help: str
    kind: Literal["float", "int", "bool"]

class LossInfo(TypedDict):
    name: str
    aliases: List[str]
    about: str
    row_wise: bool
    takes_weight: bool
    takes_pos_weight: bool
    takes_classes: bool
    options: List[OptionInfo]

class LossOutput:
    """The result of ``compute``."""

    @property
    def value(self) -> Optional[float]:
        """The loss value for reduction "mean" or "sum"; None for "none"."""
    @property
    def grad(self) -> Optional[npt.NDArray[np.float32]]:
        """∂value/∂pred times the upstream gradient, pred's shape; None if want_grad=False."""
    @property
    def losses(self) -> Optional[npt.NDArray[np.float32]]:
        """Reduction "none": per element (pred's shape) or per row (pred's shape without its
        last axis); else None."""
    @property
    def counted(self) -> int:
        """The elements, or the rows not ignored (row-wise losses)."""
    @property
    def lse(self) -> Optional[npt.NDArray[np.float32]]:
        """With want_lse=True (softmax-ce): each row's log-sum-exp of the logits the softmax
        sees (after softcap), ignored rows included, shaped like the rows; else None."""

class Context:
    """Where losses are computed: "gpu" (wgpu: Vulkan, Metal, DX12, GL; Mesa's llvmpipe
    without a GPU), "cpu" (the fast f32 path on every core) or "reference" (the f64
    reference, rounded once to f32). Safe to share between threads; each call releases the
    GIL while it computes.

    Raises RuntimeError when no adapter is found or the device cannot be created (gpu), and
    ValueError for an unknown device or backend, or GPU options given to another device.
    """

    def __init__(
        self,
        device: Device = "gpu",
        *,
        adapter: Optional[str] = None,
        backend: Optional[Literal["vulkan", "metal", "dx12", "gl"]] = None,
        memory_budget: Optional[int] = None,
    ) -> None:
        """``adapter``: part of an adapter's name, any case (else WGPU_ADAPTER_NAME, else the
        preferred adapter: discrete GPUs first, software ones last). ``backend``: restrict the
        backends. ``memory_budget``: bytes of chunk buffers a call holds (default 256 MiB)."""
    @property
    def device(self) -> Device: ...
    @property
    def adapter(self) -> Optional[str]:
        """The GPU adapter in use (name, backend, type, subgroups), None off the GPU."""
    def compute(
        self,
        loss: str,
        pred: ArrayLike,
        target: ArrayLike,
        *,
        reduction: Reduction = "mean",
        divisor: Optional[float] = None,
        weight: Optional[ArrayLike] = None,
        pos_weight: Optional[ArrayLike] = None,
        upstream: Union[None, float, ArrayLike] = None,
        want_grad: bool = True,
        grad_out: Optional[npt.NDArray[np.float32]] = None,
        want_lse: bool = False,
        **options: OptionValue,
    ) -> LossOutput:
        """The loss ``loss`` (a registry name or alias, ``_`` or ``-`` alike:
        "softmax-ce", "cross_entropy") of ``pred`` against ``target``.

        - ``pred``: float32 (read in place, any strides); other floats converted to float32.
        - ``target``: floats of pred's shape, or class ids (int32/int64/uint32 in place;
          int8/int16/uint8/uint16 widened) of pred's shape without its last axis.
        - ``divisor``: with reduction "mean" of a row-wise loss, divide by it instead of
          this batch's count (value 0 and gradient 0 for 0).
        - ``weight``: per element (bce, bce-with-logits: pred's shape or a trailing part) or
          per class (softmax-ce: [C]); ``pos_weight``: bce-with-logits, a trailing part.
        - ``upstream``: a scalar (any reduction) or, with reduction "none", an array of the
          losses' shape: the gradient is multiplied by it (the chain rule).
        - ``grad_out``: a float32 array of pred's shape the gradient is written into (and
          returned as ``r.grad``); on "cpu" written directly, with nothing allocated.
        - ``want_lse``: softmax-ce only: also return each row's log-sum-exp as ``r.lse``.
        - ``**options``: the loss's options (``wgpu_loss.losses()``): switches take bools,
          integer options ints, the others floats.

        Raises ValueError with the library's message for bad input (unknown loss or option,
        shapes, empty input, dtypes, probabilities outside [0, 1], class ids out of range,
        negative weights) and RuntimeError for the device.
        """
    def value_and_grad(
        self,
        loss: str,
        pred: ArrayLike,
        target: ArrayLike,
        *,
        reduction: Literal["mean", "sum", "batchmean"] = "mean",
        divisor: Optional[float] = None,
        weight: Optional[ArrayLike] = None,
        pos_weight: Optional[ArrayLike] = None,
        upstream: Union[None, float, ArrayLike] = None,
        **options: OptionValue,
    ) -> Tuple[float, npt.NDArray[np.float32]]:
        """``(value, grad)``; reduction "none" is a ValueError (use ``compute``)."""
    def value(
        self,
        loss: str,
        pred: ArrayLike,
        target: ArrayLike,
        *,
        reduction: Literal["mean", "sum", "batchmean"] = "mean",
        divisor: Optional[float] = None,
        weight: Optional[ArrayLike] = None,
        pos_weight: Optional[ArrayLike] = None,
        **options: OptionValue,
    ) -> float:
        """The value alone (no gradient computed); reduction "none" is a ValueError."""

def losses() -> List[LossInfo]:
    """Every loss of the library's registry, in its order, with its options."""

def default_context() -> Context:
    """The shared Context("gpu") the module-level calls use, created on first use."""

def compute(loss: str, pred: ArrayLike, target: ArrayLike, **kwargs: Any) -> LossOutput:
    """``Context.compute`` on ``default_context()``."""

def value_and_grad(
    loss: str, pred: ArrayLike, target: ArrayLike, **kwargs: Any
) -> Tuple[float, npt.NDArray[np.float32]]:
    """``Context.value_and_grad`` on ``default_context()``."""

def value(loss: str, pred: ArrayLike, target: ArrayLike, **kwargs: Any) -> float:
    """``Context.value`` on ``default_context()``."""
