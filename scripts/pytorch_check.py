#!/usr/bin/env python3
"""Differential check of the `wgpu-loss compute` CLI against PyTorch's autograd.

Every loss, option and reduction of the CLI, value and gradient (and the per-element or
per-row losses of `--reduction none`), on `--device gpu`, `--device cpu` (the fast f32 path)
and `--device reference` (the f64 reference rounded to f32), is compared with an oracle:

* **The oracle** is PyTorch in float64 with autograd on the same f32 inputs, widened. Losses
  PyTorch has are its functions (`F.mse_loss`, `F.l1_loss`, `F.huber_loss`, `F.smooth_l1_loss`,
  `F.binary_cross_entropy`, `F.binary_cross_entropy_with_logits`, `F.cross_entropy`); the
  crate's own losses (categorical cross entropy on probabilities, the z-loss term, cosine
  proximity with per-norm floors) are written in torch ops and differentiated by autograd.
  Where f64 itself cancels (BCE with logits of a confident logit, the small loss of a
  confident softmax row), a case is marked `oracle="mp"` and the oracle is the same
  mathematical function evaluated by mpmath at 50 digits; the report then also gives
  PyTorch-f64's own error there.
* **The yardstick** is PyTorch in float32: the same function on the same f32 inputs, on the
  CPU, with autograd in float32.
* **Pass criterion**, per case (loss, inputs, options, reduction), per device and per output
  (value, gradient, per-item losses): with

      e(x) = max_k |x_k - oracle_k| / max(max_k |oracle_k|, 2^-126)

  over the elements where both are finite (2^-126, the smallest normal f32: f32 has no
  relative precision below it), the case passes if

      e_ours <= max(FLOOR, 4 * e_t32),   FLOOR = 1e-5 for a value, 1e-6 for an array,

  and every non-finite oracle element is matched exactly by ours (NaN by NaN, +inf by +inf,
  -inf by -inf) and every finite one by a finite one. e_t32 counts only the elements where
  PyTorch-f32's non-finite pattern matches the oracle (its mismatches are reported, and make
  the bound stricter, never looser). The CLI prints a non-finite reduced value as JSON null,
  so a null value matches any non-finite oracle value (NaN and +-inf cannot be told apart
  there; the per-item losses of `--reduction none` can). Elementwise f32 ulps (|x - oracle|
  over the f32 spacing at the oracle) are reported, not judged.
* **Named expected differences** (`DIFFERENCES` below) are the places where the crate's
  documentation (docs/PYTORCH.md, the losses' rustdoc) states a behaviour
  other than PyTorch's. There the oracle is PyTorch's result *patched* to the documented
  behaviour (the same patch applied to the float32 yardstick), and the script checks that the
  plain PyTorch result really differs (the record lists the differences triggered). Error
  cases (exit 2) are checked for the exit status. Nothing else is excused: a case PyTorch gets
  right in f32 and the crate does not is a failure.

Inputs are seeded numpy arrays (the seed of each case is the CRC-32 of its name), so every
run checks the same numbers. The script writes a Markdown report (and optionally JSON) and
exits 1 if any case fails.

Usage: scripts/pytorch_check.sh [--devices gpu,cpu,reference] [--only SUBSTRING]
       python3 scripts/pytorch_check.py --bin target/release/wgpu-loss [--md docs/pytorch-check.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

try:
    import mpmath
except ImportError:  # torch depends on sympy, which depends on mpmath
    mpmath = None

# --------------------------------------------------------------------------------------------
# The pass criterion's constants
# --------------------------------------------------------------------------------------------

F32_TINY = 2.0**-126  # smallest normal f32: the floor of the error's denominator
FLOOR = {"value": 1e-5, "losses": 1e-6, "grad": 1e-6, "lse": 1e-6}  # e_ours below this always passes
RATIO = 4.0  # ... and so does e_ours <= RATIO * e_t32
MP_DIGITS = 50

# --------------------------------------------------------------------------------------------
# Named expected differences: where the crate documents a behaviour other than PyTorch's.
# Each is applied as a patch of the oracle (see `patch_*` below) or, for errors, as an
# expected exit status; `where` says where the crate documents it.
# --------------------------------------------------------------------------------------------

DIFFERENCES = {
    "mean-over-zero-rows": (
        "softmax-ce with class indices, mean, every row ignored or every counted class weight 0 "
        "(D = 0): value 0 and gradient 0, where PyTorch gives NaN",
        "PYTORCH.md (Where we differ)",
    ),
    "ignored-rows-not-read": (
        "softmax-ce: an ignored row has loss 0 and gradient 0 even if its logits are NaN/inf "
        "(PyTorch's log_softmax backward makes its gradient NaN)",
        "PYTORCH.md (Row-wise losses, NaN and infinities: 'Ignored rows are not read')",
    ),
    "zero-weight-term": (
        "softmax-ce: a term whose weight (w_j t'_j, (1-eps) w_c, (eps/C) w_j) is exactly 0 "
        "contributes 0 against a -inf logit, where PyTorch computes 0 * -inf = NaN",
        "PYTORCH.md (Where we differ: probability targets), src/losses/softmax_cross_entropy.rs (its reference: every term)",
    ),
    "bce-logits-infinite": (
        "bce-with-logits: x = +-inf gives the loss's limit (0, or +inf where a target weighs on "
        "it); a factor that is exactly 0 (w, 1-t, q t) makes its term 0; PyTorch gives NaN",
        "PYTORCH.md (Where we differ, elementwise), src/losses/bce_with_logits.rs (its reference)",
    ),
    "nan-difference": (
        "elementwise losses: a NaN difference p - t (inf - inf, or a NaN input) is NaN in the loss "
        "and the gradient; PyTorch's l1_loss gradient there is sign(NaN) = 0",
        "PYTORCH.md (Where we differ, elementwise; NaN)",
    ),
    "bce-nan-propagates": (
        "bce: a NaN probability is not an error; it propagates to its element's loss and "
        "gradient and to the reduced value (PyTorch's binary_cross_entropy raises)",
        "PYTORCH.md (Where we differ, elementwise)",
    ),
    "cce-grad-guard": (
        "cce: the gradient is -t / max(p, 1e-12) (PYTORCH.md), not autograd's -t/p for "
        "p < 1e-12 nor autograd's 0 where the log is clamped at -100",
        "PYTORCH.md (Row-wise losses)",
    ),
    "row-nan-whole-row": (
        "cce: NaN anywhere in a row's inputs makes that row's whole gradient NaN (autograd "
        "of the formula: only the NaN element's)",
        "PYTORCH.md (Row-wise losses, NaN and infinities), src/losses/categorical_cross_entropy.rs (its reference)",
    ),
    "gpu-subnormal-flush": (
        "GPU only: a loss or gradient element below the smallest normal f32 (2^-126) may come out 0 "
        "(llvmpipe flushes subnormal results)",
        "PYTORCH.md (Elementwise losses, Accuracy)",
    ),
    "error-out-of-domain": (
        "a BCE or cce probability outside [0, 1] is an error (exit 2) naming the element; "
        "PyTorch raises for BCE and returns NaN for the cce formula",
        "PYTORCH.md (Where we differ)",
    ),
    "error-class-out-of-range": (
        "a class index outside [0, C) that is not ignore_index is an error (exit 2) naming the row; "
        "PyTorch raises",
        "PYTORCH.md (Where we differ)",
    ),
    "lse-plus-inf-row": (
        "softmax-ce --lse-out: a row with a +inf logit (uncapped) has log-sum-exp NaN, as its "
        "loss; torch.logsumexp gives +inf",
        "PYTORCH.md (Softmax cross entropy: the log-sum-exp output)",
    ),
    "error-negative-weight": (
        "a negative weight is an error (exit 2); PyTorch accepts it",
        "PYTORCH.md (Where we differ, elementwise)",
    ),
}

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

ROWWISE = {"cce", "softmax-ce", "cosine", "distill", "jsd"}


@dataclasses.dataclass
class Case:
    loss: str  # the CLI's --loss
    name: str  # unique within the loss
    pred: np.ndarray  # float32
    target: np.ndarray  # float32, or an integer type (softmax-ce class indices)
    weight: Optional[np.ndarray] = None  # --weight (bce, bce-with-logits)
    pos_weight: Optional[np.ndarray] = None  # --pos-weight (bce-with-logits)
    class_weight: Optional[np.ndarray] = None  # --class-weight (softmax-ce)
    delta: Optional[float] = None
    beta: Optional[float] = None
    label_smoothing: Optional[float] = None
    ignore_index: Optional[int] = None
    z_loss: Optional[float] = None
    eps: Optional[float] = None
    log_input: Optional[int] = None  # poisson-nll's switches, 0 or 1
    full: Optional[int] = None
    alpha: Optional[float] = None  # focal
    gamma: Optional[float] = None
    softcap: Optional[float] = None  # softmax-ce
    log_target: Optional[int] = None  # kl-div, 0 or 1
    temperature: Optional[float] = None  # distill
    divisor: Optional[float] = None  # a row-wise mean's --divisor
    lse: bool = False  # softmax-ce --lse-out: each row's log-sum-exp, against torch.logsumexp
    reductions: tuple = ("mean", "sum", "none")
    oracle: str = "torch"  # "torch" (PyTorch f64) or "mp" (mpmath, where f64 cancels)
    expect_error: Optional[str] = None  # a DIFFERENCES key of an error case (exit 2)

    @property
    def key(self) -> str:
        return f"{self.loss}/{self.name}"

    def scalar_options(self) -> list:
        """The loss options given, as (CLI flag, value)."""
        return [(flag, v) for flag, v in (
            ("--delta", self.delta), ("--beta", self.beta),
            ("--label-smoothing", self.label_smoothing), ("--ignore-index", self.ignore_index),
            ("--z-loss", self.z_loss), ("--eps", self.eps), ("--log-input", self.log_input),
            ("--full", self.full), ("--alpha", self.alpha), ("--gamma", self.gamma),
            ("--softcap", self.softcap), ("--log-target", self.log_target),
            ("--temperature", self.temperature), ("--divisor", self.divisor))
            if v is not None]

    def flags(self) -> str:
        out = [f"{flag} {v}" for flag, v in self.scalar_options()]
        for flag, a in (("--weight", self.weight), ("--pos-weight", self.pos_weight),
                        ("--class-weight", self.class_weight)):
            if a is not None:
                out.append(f"{flag} {list(a.shape)}")
        return " ".join(out)

    def describe(self) -> str:
        t = self.target
        tdesc = f"{t.dtype} {list(t.shape)}" if t.dtype != np.float32 else f"{list(t.shape)}"
        return f"pred {list(self.pred.shape)}, target {tdesc}" + (
            f", {self.flags()}" if self.flags() else "")


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def softmax_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# Shapes that exercise the kernels: one element, around the 256-lane workgroup, several
# workgroups, [37, 29] (odd rows), [64, 1000], rank 3; row-wise also [3, 5000] (rows longer
# than the 4096 a lane group keeps in registers: read twice), one row (rank 1), C = 1.
ELEM_SHAPES = [(1,), (255,), (257,), (4097,), (37, 29), (64, 1000), (4, 33, 65)]
ROW_SHAPES = [(37, 29), (64, 1000), (3, 5000), (4, 7, 257), (255,), (257, 1)]

# Edge probabilities: 0, 1, within 2^-24 of 1, subnormal, tiny.
EDGE_P = [0.0, 1.0, 1 - 2e-6, 1e-40, 3e-44, 1e-30, 0.5]


def elementwise_cases() -> list[Case]:
    cases = []

    def add(loss, name, p, t, **kw):
        cases.append(Case(loss, name, f32(p), f32(t), **kw))

    # KL divergence (PyTorch kl_div): log-probabilities against probabilities (some exactly 0)
    # or log-probabilities (log_target); every reduction, batchmean included.
    for lt in (0, 1):
        for shape in ((37, 29), (6, 7, 50), (1000,)):
            r = rng_for(f"kl{lt}{shape}")
            lp = np.log(softmax_np(r.normal(0, 1, shape)))
            t = softmax_np(r.normal(0, 1, shape))
            t[r.uniform(0, 1, shape) < 0.1] = 0.0
            if lt:
                t = np.log(softmax_np(r.normal(0, 1, shape)))
            add("kl-div", f"log_target={lt}{list(shape)}", lp, t, log_target=lt,
                reductions=("mean", "sum", "none", "batchmean"))

    # MSE, MAE, Huber: normal data on every shape, ties, NaN and +-inf.
    for loss in ("mse", "mae", "huber", "smooth-l1"):
        for shape in ELEM_SHAPES:
            r = rng_for(f"{loss}{shape}")
            add(loss, f"normal{list(shape)}", r.normal(0, 2, shape), r.normal(0, 2, shape))
        r = rng_for(f"{loss}-specials")
        p, t = r.normal(0, 2, (37, 29)), r.normal(0, 2, (37, 29))
        p[0, :6] = [np.nan, np.inf, -np.inf, np.inf, 3.0, -np.inf]
        t[0, :6] = [1.0, 2.0, 1.0, np.inf, np.nan, -np.inf]
        p[1, :3] = t[1, :3]  # d = 0 exactly: sign 0
        add(loss, "nan-inf-ties[37,29]", p, t)
    r = rng_for("mae-ties")
    t = r.normal(0, 1, 4097)
    p = t.copy()
    p[::3] += r.normal(0, 1, p[::3].shape)
    add("mae", "ties[4097]", p, t)
    for delta, scale in ((0.5, 0.6), (2.5, 3.0), (1e-3, 2e-3)):
        r = rng_for(f"huber-delta{delta}")
        t = r.normal(0, 1, (37, 29))
        p = t + r.normal(0, scale, (37, 29))
        add("huber", f"delta={delta}[37,29]", p, t, delta=delta)
    # |d| == delta exactly (t = 0): the quadratic branch at the boundary.
    add("huber", "at-delta[6]", [0.5, -0.5, 0.25, 1.0, -2.0, 0.0], [0.0] * 6, delta=0.5)
    # Smooth L1: other betas (0: the L1 loss), and |d| == beta exactly (the linear branch:
    # PyTorch's test is |d| < beta).
    for beta, scale in ((0.5, 0.6), (2.5, 3.0), (1e-3, 2e-3), (0.0, 1.0)):
        r = rng_for(f"smooth-l1-beta{beta}")
        t = r.normal(0, 1, (37, 29))
        p = t + r.normal(0, scale, (37, 29))
        add("smooth-l1", f"beta={beta}[37,29]", p, t, beta=beta)
    add("smooth-l1", "at-beta[6]", [0.5, -0.5, 0.25, 1.0, -2.0, 0.0], [0.0] * 6, beta=0.5)

    # Poisson NLL: log-rates (and rates) against counts, every switch, Stirling's mask at
    # t <= 1, large log-rates (e^x near its overflow), NaN and infinities.
    for shape in ELEM_SHAPES:
        r = rng_for(f"poisson-nll{shape}")
        add("poisson-nll", f"log-rates[{list(shape)}]", r.normal(0, 1.5, shape),
            r.poisson(2.0, shape))
    for log_input, full, eps in ((1, 1, None), (0, 0, None), (0, 1, 1e-3)):
        r = rng_for(f"poisson-nll-{log_input}{full}")
        x = r.normal(0, 1.5, (37, 29))
        if not log_input:
            x = np.exp(x)
        add("poisson-nll", f"log_input={log_input},full={full}[37,29]", x,
            r.poisson(3.0, (37, 29)) + r.uniform(0, 1, (37, 29)) * (r.uniform(0, 1, (37, 29)) < 0.3),
            log_input=log_input, full=full, eps=eps)
    r = rng_for("poisson-nll-specials")
    x, t = r.normal(0, 1, (5, 29)), r.poisson(2.0, (5, 29)).astype(np.float64)
    x[0, :6] = [np.nan, np.inf, -np.inf, 80.0, -80.0, 20.0]
    t[0, :6] = [1.0, 2.0, 3.0, 0.0, 4.0, 1.0]
    add("poisson-nll", "nan-inf-large[5,29]", x, t, full=1)

    # Sigmoid focal loss (torchvision's formula): soft and hard targets, every gamma regime,
    # no alpha, confident logits.
    for shape in ELEM_SHAPES:
        r = rng_for(f"focal{shape}")
        add("focal", f"hard[{list(shape)}]", r.normal(0, 3, shape), r.integers(0, 2, shape))
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.0), (0.6, 0.5), (0.25, 1.0), (0.9, 3.5)):
        r = rng_for(f"focal-{alpha}-{gamma}")
        add("focal", f"alpha={alpha},gamma={gamma}[37,29]", r.normal(0, 4, (37, 29)),
            r.uniform(0, 1, (37, 29)), alpha=alpha, gamma=gamma)
    xe, te = np.meshgrid(f32([-80.0, -30.0, -12.0, -1.0, 0.0, 1.0, 12.0, 30.0, 80.0]),
                         f32([0.0, 1.0, 0.3]), indexing="ij")
    add("focal", "confident-logits[9,3]", xe, te)

    # BCE on probabilities.
    for shape in ELEM_SHAPES:
        r = rng_for(f"bce{shape}")
        p = np.clip(r.uniform(0, 1, shape), 1e-6, 1 - 1e-6)
        add("bce", f"uniform[{list(shape)}]", p, r.integers(0, 2, shape))
    r = rng_for("bce-soft")
    add("bce", "soft-targets[4097]", r.uniform(0.01, 0.99, 4097), r.uniform(0, 1, 4097))
    pe, te = np.meshgrid(f32(EDGE_P), f32([0.0, 1.0, 0.25]), indexing="ij")
    add("bce", "edge-probabilities[7,3]", pe, te)
    r = rng_for("bce-weights")
    p, t = r.uniform(0.02, 0.98, (37, 29)), r.uniform(0, 1, (37, 29))
    add("bce", "weight[C][37,29]", p, t, weight=f32(r.uniform(0, 3, 29)))
    add("bce", "weight-full[37,29]", p, t, weight=f32(r.uniform(0, 3, (37, 29))))
    p3, t3 = r.uniform(0.02, 0.98, (4, 33, 65)), r.integers(0, 2, (4, 33, 65))
    add("bce", "weight[33,65][4,33,65]", p3, t3, weight=f32(r.uniform(0, 2, (33, 65))))
    w = f32(r.uniform(0, 2, 7))
    w[0] = 0.0
    add("bce", "edge+weight[C][3,7]", pe.T, te.T, weight=w)
    p = r.uniform(0.1, 0.9, 257)
    p[[3, 100]] = np.nan
    add("bce", "nan-probability[257]", p, r.integers(0, 2, 257))
    # Singletons: the accuracy claims of docs/PYTORCH.md (ln p and ln(1 - p) to a few ulp relative).
    for pv, tv in ((1 - 2e-6, 1.0), (1e-40, 1.0), (1e-40, 0.0), (3e-44, 0.0), (1e-30, 0.0),
                   (1e-30, 1.0), (0.0, 1.0), (1.0, 1.0), (1 - 2e-6, 0.0)):
        add("bce", f"single p={pv:g} t={tv:g}", [pv], [tv], reductions=("mean", "none"))
    add("bce", "p=1.5 (error)", [0.5, 1.5], [0.0, 1.0], expect_error="error-out-of-domain")
    add("bce", "p=-0.1 (error)", [-0.1, 0.5], [0.0, 1.0], expect_error="error-out-of-domain")
    add("bce", "weight<0 (error)", [0.5, 0.5], [0.0, 1.0], weight=f32([1.0, -1.0]),
        expect_error="error-negative-weight")

    # BCE with logits.
    for shape in ELEM_SHAPES:
        r = rng_for(f"bcel{shape}")
        add("bce-with-logits", f"normal[{list(shape)}]", r.normal(0, 3, shape),
            r.integers(0, 2, shape))
    r = rng_for("bcel-soft")
    add("bce-with-logits", "soft-targets[4097]", r.normal(0, 4, 4097), r.uniform(0, 1, 4097))
    xs = f32([20, -20, 80, -80, 1e4, -1e4, 0.0, -19.4])
    xe, te = np.meshgrid(xs, f32([0.0, 1.0, 0.3]), indexing="ij")
    add("bce-with-logits", "confident-logits[8,3]", xe, te)
    xi, ti = np.meshgrid(f32([np.inf, -np.inf, np.nan, 1.0]), f32([0.0, 1.0, 0.3]),
                         indexing="ij")
    add("bce-with-logits", "inf-nan-logits[4,3]", xi, ti)
    add("bce-with-logits", "inf-logits+weight0[4,3]", xi, ti, weight=f32([0.0, 1.0, 2.0]))
    add("bce-with-logits", "inf-logits+pos_weight[4,3]", xi, ti,
        pos_weight=f32([0.0, 3.0, 0.5]))
    r = rng_for("bcel-weights")
    x, t = r.normal(0, 3, (37, 29)), r.uniform(0, 1, (37, 29))
    add("bce-with-logits", "weight[C][37,29]", x, t, weight=f32(r.uniform(0, 3, 29)))
    add("bce-with-logits", "weight-full[37,29]", x, t, weight=f32(r.uniform(0, 3, (37, 29))))
    add("bce-with-logits", "pos_weight[C][37,29]", x, t, pos_weight=f32(r.uniform(0, 4, 29)))
    add("bce-with-logits", "weight+pos_weight[37,29]", x, t,
        weight=f32(r.uniform(0, 3, (37, 29))), pos_weight=f32(r.uniform(0, 4, 29)))
    x3, t3 = r.normal(0, 3, (4, 33, 65)), r.integers(0, 2, (4, 33, 65))
    add("bce-with-logits", "pos_weight[65][4,33,65]", x3, t3,
        pos_weight=f32(r.uniform(0, 4, 65)), weight=f32(r.uniform(0, 2, (33, 65))))
    # Singletons whose loss f64 cancels (PyTorch's form): oracle by mpmath.
    for xv, tv in ((-80.0, 0.0), (-19.4, 0.0), (-20.0, 0.0), (20.0, 1.0), (80.0, 1.0),
                   (1e4, 1.0), (-1e4, 0.0), (5.0, 0.3), (-30.0, 1e-3)):
        add("bce-with-logits", f"single x={xv:g} t={tv:g}", [xv], [tv], oracle="mp",
            reductions=("mean", "none"))
    add("bce-with-logits", "small-losses[8] (mp)", [-80, -19.4, -20, 20, 80, -40, 40, -17],
        [0, 0, 0, 1, 1, 0, 1, 0], oracle="mp")
    return cases


def rowwise_cases() -> list[Case]:
    cases = []

    def add(loss, name, p, t, **kw):
        t = np.asarray(t)
        cases.append(Case(loss, name, f32(p), t if t.dtype.kind in "iu" else f32(t), **kw))

    # Categorical cross entropy on probabilities.
    for shape in ROW_SHAPES:
        r = rng_for(f"cce{shape}")
        p = softmax_np(r.normal(0, 2, shape)) if shape[-1] > 1 else r.uniform(0.05, 1, shape)
        t = softmax_np(r.normal(0, 1, shape)) if shape[-1] > 1 else r.uniform(0, 1, shape)
        add("cce", f"soft[{list(shape)}]", p, t)
    r = rng_for("cce-onehot")
    p = softmax_np(r.normal(0, 2, (64, 1000)))
    add("cce", "onehot[64,1000]", p, np.eye(1000)[r.integers(0, 1000, 64)])
    # Edge probabilities with targets on them and off them (t = 0 against p = 0: 0 * -100).
    pe = np.tile(f32(EDGE_P), (4, 1))
    te = np.stack([np.full(7, 1 / 7), np.eye(7)[3], np.eye(7)[4], np.where(pe[0] < 1e-20, 0, 0.25)])
    add("cce", "edge-probabilities[4,7]", pe, te)
    pn = softmax_np(r.normal(0, 1, (5, 29)))
    tn = softmax_np(r.normal(0, 1, (5, 29)))
    pn[1, 4], tn[3, 7] = np.nan, np.nan
    add("cce", "nan-row[5,29]", pn, tn)
    add("cce", "p=1.5 (error)", [[0.5, 1.5]], [[0.5, 0.5]], expect_error="error-out-of-domain")
    add("cce", "p=-0.1 (error)", [[-0.1, 0.5]], [[0.5, 0.5]], expect_error="error-out-of-domain")

    # Softmax cross entropy, class indices.
    sce = "softmax-ce"
    for shape in ROW_SHAPES:
        r = rng_for(f"sce{shape}")
        x = r.normal(0, 3, shape)
        c = r.integers(0, shape[-1], shape[:-1]).astype(np.int64)
        add(sce, f"classes-i64[{list(shape)}]", x, c)
    r = rng_for("sce-int-types")
    x = r.normal(0, 3, (37, 29))
    c = r.integers(0, 29, 37)
    add(sce, "classes-i32[37,29]", x, c.astype(np.int32))
    c8 = r.integers(0, 256, 64).astype(np.uint8)
    c8[:5] = 255
    add(sce, "classes-u8+ignore=255[64,1000]", r.normal(0, 3, (64, 1000)), c8, ignore_index=255)
    ci = c.copy()
    ci[::4] = -100
    add(sce, "ignore=-100[37,29]", x, ci)
    add(sce, "ignore=3 (a valid class)[37,29]", x, np.where(c % 3 == 0, 3, c), ignore_index=3)
    add(sce, "all-ignored[37,29]", x, np.full(37, -100, np.int64))
    xn = x.copy()
    xn[0, :] = np.nan
    xn[1, 2] = np.inf
    add(sce, "ignored-nan-rows[37,29]", xn, np.where(np.arange(37) < 2, -100, ci))
    add(sce, "all-ignored+nan[37,29]", xn, np.full(37, -100, np.int64))
    w = f32(r.uniform(0.1, 3, 29))
    add(sce, "class-weight[37,29]", x, ci, class_weight=w)
    w0 = w.copy()
    w0[np.unique(c)] = 0.0
    add(sce, "class-weight-zero-on-targets (D=0)[37,29]", x, c.astype(np.int64), class_weight=w0)
    add(sce, "label-smoothing=0.1[37,29]", x, ci, label_smoothing=0.1)
    add(sce, "label-smoothing+class-weight[37,29]", x, ci, class_weight=w, label_smoothing=0.25)
    add(sce, "z-loss=1e-4[37,29]", x, ci, z_loss=1e-4)
    xl = r.normal(0, 3, (3, 5000))
    cl = r.integers(0, 5000, 3).astype(np.int64)
    add(sce, "all-options[3,5000]", xl, cl, class_weight=f32(r.uniform(0, 2, 5000)),
        label_smoothing=0.1, z_loss=0.01)
    x3 = r.normal(0, 3, (4, 7, 257))
    c3 = r.integers(0, 257, (4, 7)).astype(np.int64)
    c3[0, :3] = 7
    add(sce, "all-options+ignore=7[4,7,257]", x3, c3, class_weight=f32(r.uniform(0, 2, 257)),
        label_smoothing=0.05, z_loss=1e-3, ignore_index=7)
    # Extreme finite logits: +-1e4, uniform rows of 1e20 and -1e20, mixed.
    xe = r.normal(0, 1, (8, 29)) * 1e4
    xe[2] = 1e20
    xe[3] = -1e20
    xe[4, :] = 0.0
    xe[4, 5] = 1e20
    xe[5, :] = -1e4
    xe[5, 0] = 1e4
    ce = r.integers(0, 29, 8).astype(np.int64)
    ce[5] = 1
    add(sce, "extreme-logits[8,29]", xe, ce)
    add(sce, "extreme-logits+smoothing+weight[8,29]", xe, ce, label_smoothing=0.1,
        class_weight=f32(r.uniform(0.5, 2, 29)))
    add(sce, "z-loss on +-1e4 rows[6,29]", xe[[0, 1, 5, 6, 7, 4]][:5], ce[[0, 1, 5, 6, 7]],
        z_loss=1e-4)
    add(sce, "z-loss on 1e20 rows[2,29]", xe[[2, 3]], ce[[2, 3]], z_loss=1e-4)
    # Confident rows (target logit +20/+80 above the rest): a small loss, ln S near S = 1;
    # f64 loses it (1 + 28 e^-80 == 1), so the oracle is mpmath.
    xc = r.normal(0, 1, (8, 29))
    cc = r.integers(0, 29, 8).astype(np.int64)
    for i, gap in enumerate((20, 20, 40, 80, 80, 15, 30, 60)):
        xc[i, cc[i]] = xc[i].max() + gap
    add(sce, "confident-rows[8,29] (mp)", xc, cc, oracle="mp")
    add(sce, "confident-rows+smoothing[8,29] (mp)", xc, cc, oracle="mp", label_smoothing=0.1)
    add(sce, "confident-rows+z-loss[8,29] (mp)", xc, cc, oracle="mp", z_loss=1e-4)
    # ... and one confident row at a time, so that each row's own relative error counts.
    for i in (0, 2, 3):
        add(sce, f"confident-row gap={(20, 20, 40, 80)[i]}[1,29] (mp)", xc[i:i + 1],
            cc[i:i + 1], oracle="mp")
    add(sce, "confident-row gap=80 probs[1,29] (mp)", xc[3:4],
        np.eye(29, dtype=np.float32)[cc[3:4]], oracle="mp")
    # Infinities and NaN: -inf among finite (ordinary), the target on a -inf logit (+inf),
    # a row of -inf (NaN), a +inf logit (NaN), a NaN logit (NaN); other rows unaffected.
    xs = r.normal(0, 2, (7, 29))
    cs = r.integers(1, 29, 7).astype(np.int64)
    xs[0, 0] = -np.inf
    xs[1, 0] = -np.inf
    cs[1] = 0
    xs[2, :] = -np.inf
    xs[3, 4] = np.inf
    xs[4, 9] = np.nan
    xs[5, :] = -np.inf
    xs[5, cs[5]] = 0.0  # -inf but one, the target on the finite one: loss 0
    add(sce, "inf-nan-logits[7,29]", xs, cs)
    add(sce, "inf-nan-logits+smoothing[7,29]", xs, cs, label_smoothing=0.1)
    wz = f32(np.ones(29))
    wz[0] = 0.0
    add(sce, "target-weight-0-on-inf-logit[7,29]", xs, cs, class_weight=wz)
    add(sce, "smoothing+weight-0-on-inf-logit[7,29]", xs, cs, class_weight=wz,
        label_smoothing=0.1)
    add(sce, "class-out-of-range (error)", [[0.0, 1.0]], np.array([2], np.int64),
        expect_error="error-class-out-of-range")
    add(sce, "class=-1 (error)", [[0.0, 1.0]], np.array([-1], np.int64),
        expect_error="error-class-out-of-range")

    # Softmax cross entropy, probability targets.
    for shape in ROW_SHAPES[:4]:
        r = rng_for(f"sce-probs{shape}")
        add(sce, f"probs[{list(shape)}]", r.normal(0, 3, shape),
            softmax_np(r.normal(0, 1, shape)))
    r = rng_for("sce-probs-opts")
    x = r.normal(0, 3, (37, 29))
    t = softmax_np(r.normal(0, 1, (37, 29)))
    add(sce, "probs-onehot[37,29]", x, np.eye(29)[r.integers(0, 29, 37)])
    add(sce, "probs+class-weight[37,29]", x, t, class_weight=f32(r.uniform(0, 3, 29)))
    add(sce, "probs+smoothing[37,29]", x, t, label_smoothing=0.2)
    add(sce, "probs+z-loss[37,29]", x, t, z_loss=1e-3)
    add(sce, "probs+all-options[37,29]", x, t, class_weight=f32(r.uniform(0, 3, 29)),
        label_smoothing=0.1, z_loss=1e-4)
    tp = softmax_np(r.normal(0, 1, (8, 29)))
    add(sce, "probs-extreme-logits[8,29]", xe, tp)
    xm = r.normal(0, 2, (5, 29))
    tm = softmax_np(r.normal(0, 1, (5, 29)))
    xm[0, :3] = -np.inf
    tm[0, :3] = 0.0  # zero targets against -inf: 0 (PyTorch: NaN)
    xm[1, 0] = -np.inf  # a target weight on -inf: +inf
    xm[2, 4] = np.nan
    tm[3, 1] = np.nan
    add(sce, "probs-inf-nan[5,29]", xm, tm)
    add(sce, "probs-inf+smoothing[5,29]", xm, tm, label_smoothing=0.1)
    wz = f32(r.uniform(0.5, 2, 29))
    wz[0] = 0.0  # a class weight of 0 on row 1's -inf logit, whose target is > 0: 0
    add(sce, "probs+class-weight-0-on-inf-logit[5,29]", xm, tm, class_weight=wz)

    # Cosine proximity.
    for shape in ROW_SHAPES:
        r = rng_for(f"cos{shape}")
        p = r.normal(0, 1, shape)
        add("cosine", f"normal[{list(shape)}]", p, p + r.normal(0, 1, shape))
    r = rng_for("cos-edge")
    p, t = r.normal(0, 1, (8, 29)), r.normal(0, 1, (8, 29))
    p[0], t[1], p[2], t[2] = 0, 0, 0, 0  # zero rows: loss 0, never NaN
    p[3] = r.choice([1e20, 2e19, -1e20], 29)  # squares overflow f32
    t[3] = r.choice([2e19, 1e20, -2e19], 29)
    p[4] = r.normal(0, 1, 29) * 3e37
    p[5, :] = 1.0
    p[5, 0] = 1e20  # mixed magnitudes
    t[6] = r.normal(0, 1, 29) * 1e-20  # tiny target (clamped at eps)
    p[7] = -t[7]  # cos = -1 exactly in exact arithmetic
    add("cosine", "edge-rows[8,29]", p, t)
    pt, tt = r.normal(0, 1, (4, 29)) * 1e-20, r.normal(0, 1, (4, 29)) * 1e-20
    add("cosine", "tiny-rows (clamped)[4,29]", pt, tt)
    add("cosine", "tiny-rows eps=1e-30[4,29]", pt, tt, eps=1e-30)
    ps = r.normal(0, 1, (6, 29)) * np.array([1e-4, 5e-4, 2e-3, 1e-3, 1, 1e-5])[:, None]
    add("cosine", "eps=1e-3 around the floor[6,29]", ps, r.normal(0, 1, (6, 29)), eps=1e-3)
    # Parallel rows (p = k t, k of either sign): cos = +-1, the gradient cancels to ~0.
    tpar = r.normal(0, 1, (37, 29))
    add("cosine", "parallel-rows[37,29]", tpar * r.choice([-3.0, -0.5, 0.25, 2.0], (37, 1)), tpar)
    pn, tn = r.normal(0, 1, (4, 29)), r.normal(0, 1, (4, 29))
    pn[0, 3], tn[1, 5], pn[2, 0] = np.nan, np.nan, np.inf
    add("cosine", "nan-inf[4,29]", pn, tn)

    # Softmax cross entropy with a soft cap (Gemma 2: 30), alone and with every option,
    # saturated and infinite logits; with a divisor of the mean.
    r = rng_for("sce-softcap")
    xs = r.normal(0, 6, (37, 29))
    cs = r.integers(0, 29, 37)
    ts = softmax_np(r.normal(0, 1, (37, 29)))
    add(sce, "softcap=30[37,29]", xs, cs, softcap=30.0)
    add(sce, "softcap=3[37,29]", xs, cs, softcap=3.0)
    add(sce, "softcap=5+all-options[37,29]", xs, cs, softcap=5.0, label_smoothing=0.1,
        z_loss=1e-3, class_weight=f32(r.uniform(0, 3, 29)))
    add(sce, "probs+softcap=10[37,29]", xs, ts, softcap=10.0)
    xh = r.normal(0, 300, (6, 29))
    xh[0, 1], xh[1, 2], xh[2, :] = np.inf, -np.inf, np.inf
    add(sce, "softcap=30 on +-300 and +-inf rows[6,29]", xh, r.integers(0, 29, 6), softcap=30.0)
    xl = r.normal(0, 4, (3, 32000))
    add(sce, "softcap=30[3,32000]", xl, r.integers(0, 32000, 3), softcap=30.0)
    add(sce, "divisor=777[37,29]", xs, cs, divisor=777.0, reductions=("mean",))
    add(sce, "divisor=0.5+smoothing+weights[37,29]", xs, cs, divisor=0.5, label_smoothing=0.1,
        class_weight=f32(r.uniform(0, 3, 29)), reductions=("mean",))
    # --lse-out: each row's log-sum-exp (ignored rows included) against torch.logsumexp of the
    # capped logits; infinite rows (a +inf row is NaN, as its loss: lse-plus-inf-row).
    r = rng_for("sce-lse")
    ci = cs.copy()
    ci[[3, 10, 17]] = -100
    add(sce, "lse+ignored+smoothing[37,29]", xs, ci, label_smoothing=0.1, lse=True)
    add(sce, "lse+probs[37,29]", xs, ts, lse=True, reductions=("none",))
    add(sce, "lse+softcap=30[3,32000]", xl, r.integers(0, 32000, 3), softcap=30.0, lse=True)
    xi = r.normal(0, 3, (6, 29))
    xi[0, 1], xi[1, :], xi[2, 4], xi[3, 0] = np.inf, -np.inf, -np.inf, np.nan
    ki = r.integers(5, 29, 6)
    add(sce, "lse on +-inf and nan rows[6,29]", xi, ki, lse=True, reductions=("none",))
    add(sce, "lse+softcap=5 on +-inf and nan rows[6,29]", xi, ki, softcap=5.0, lse=True,
        reductions=("none",))

    # Distillation from logits, T = 1, 2 and 0.5, short and long rows; batchmean (its mean).
    for (b, c) in ((37, 29), (5, 4097), (2, 40000)):
        r = rng_for(f"distill[{b},{c}]")
        s_ = r.normal(0, 3, (b, c))
        u_ = 0.5 * s_ + r.normal(0, 2, (b, c))
        for T in (1.0, 2.0, 0.5):
            add("distill", f"T={T}[{b},{c}]", s_, u_, temperature=T,
                reductions=("mean", "sum", "none", "batchmean"))
    r = rng_for("distill-inf")
    s_, u_ = r.normal(0, 3, (4, 29)), r.normal(0, 3, (4, 29))
    u_[0, 3] = -np.inf  # P_j = 0 contributes 0
    add("distill", "teacher -inf[4,29]", s_, u_)
    # The generalised Jensen-Shannon divergence: beta 0, 0.1, 0.5, 1 at T = 1 and 2, long rows.
    r = rng_for("jsd[37,29]")
    s_ = r.normal(0, 3, (37, 29))
    u_ = 0.5 * s_ + r.normal(0, 2, (37, 29))
    for beta in (0.0, 0.1, 0.5, 1.0):
        for T in (1.0, 2.0):
            add("jsd", f"beta={beta} T={T}[37,29]", s_, u_, beta=beta, temperature=T,
                reductions=("mean", "sum", "none", "batchmean"))
    for (b, c, T) in ((5, 4097, 1.0), (2, 40000, 0.5)):
        r = rng_for(f"jsd[{b},{c}]")
        s_ = r.normal(0, 3, (b, c))
        add("jsd", f"beta=0.5 T={T}[{b},{c}]", s_, 0.5 * s_ + r.normal(0, 2, (b, c)), beta=0.5,
            temperature=T)
    r = rng_for("distill-div")
    add("distill", "divisor=100[37,29]", r.normal(0, 3, (37, 29)), r.normal(0, 3, (37, 29)),
        divisor=100.0, reductions=("mean",))
    return cases


def all_cases() -> list[Case]:
    cases = elementwise_cases() + rowwise_cases()
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys)), "case names must be unique"
    return cases


# --------------------------------------------------------------------------------------------
# The oracle and the float32 yardstick: PyTorch (same code, two dtypes), with the documented
# differences patched in.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    value: Optional[np.ndarray] = None  # 0-d, float64 (mean, sum)
    losses: Optional[np.ndarray] = None  # per element / per row (none)
    grad: Optional[np.ndarray] = None
    counted: Optional[int] = None
    lse: Optional[np.ndarray] = None  # per row (--lse-out)
    triggered: tuple = ()  # names of DIFFERENCES that changed PyTorch's plain result


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).numpy().copy()


def zmul(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """a * v, but exactly 0 where a == 0 (even against an infinite v)."""
    return torch.where(a == 0, torch.zeros_like(v), a * v)


def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: a and b are not the same number (NaN equal to NaN)."""
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    return ~same


class _Rows:
    """A row-wise case's prediction and target as [B, C] tensors in one dtype."""

    def __init__(self, case: Case, dtype):
        c = case.pred.shape[-1]
        self.C = c
        self.B = case.pred.size // c
        self.row_shape = case.pred.shape[:-1]
        self.x = torch.tensor(case.pred.reshape(self.B, c), dtype=dtype, requires_grad=True)
        if case.target.dtype.kind in "iu":
            self.classes = torch.tensor(case.target.reshape(self.B).astype(np.int64))
            self.t = None
        else:
            self.classes = None
            self.t = torch.tensor(case.target.reshape(self.B, c), dtype=dtype)


def per_item(case: Case, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Callable]:
    """PyTorch's per-element (per-row) losses, reduction 'none', in `dtype`.

    Returns (prediction leaf, losses, divisor D of the mean, reduced(reduction) -> scalar tensor
    through PyTorch's own reduction where it has one).
    """
    loss = case.loss
    if loss not in ROWWISE:
        p = torch.tensor(case.pred, dtype=dtype, requires_grad=True)
        t = torch.tensor(case.target, dtype=dtype)
        w = None if case.weight is None else torch.tensor(case.weight, dtype=dtype)
        q = None if case.pos_weight is None else torch.tensor(case.pos_weight, dtype=dtype)
        if loss == "mse":
            fn = lambda r: F.mse_loss(p, t, reduction=r)
        elif loss == "mae":
            fn = lambda r: F.l1_loss(p, t, reduction=r)
        elif loss == "huber":
            delta = float(np.float32(case.delta if case.delta is not None else 1.0))
            fn = lambda r: F.huber_loss(p, t, reduction=r, delta=delta)
        elif loss == "smooth-l1":
            beta = float(np.float32(case.beta if case.beta is not None else 1.0))
            fn = lambda r: F.smooth_l1_loss(p, t, reduction=r, beta=beta)
        elif loss == "bce":
            # PyTorch refuses a NaN probability; the crate propagates it (bce-nan-propagates,
            # patched in `evaluate`): evaluate PyTorch on the others.
            we = None if w is None else w.expand_as(p)
            fn = lambda r: F.binary_cross_entropy(
                torch.where(torch.isnan(p), torch.full_like(p, 0.5), p), t, weight=we,
                reduction=r)
        elif loss == "bce-with-logits":
            fn = lambda r: F.binary_cross_entropy_with_logits(p, t, weight=w, pos_weight=q,
                                                              reduction=r)
        elif loss == "poisson-nll":
            li = case.log_input is None or case.log_input == 1
            full = case.full == 1
            eps = float(np.float32(case.eps if case.eps is not None else 1e-8))
            fn = lambda r: F.poisson_nll_loss(p, t, log_input=li, full=full, eps=eps,
                                              reduction=r)
        elif loss == "focal":
            # torchvision.ops.sigmoid_focal_loss, written out (torchvision is not installed).
            alpha = float(np.float32(case.alpha if case.alpha is not None else 0.25))
            gamma = float(np.float32(case.gamma if case.gamma is not None else 2.0))

            def fn(r):
                pr = torch.sigmoid(p)
                ce = F.binary_cross_entropy_with_logits(p, t, reduction="none")
                p_t = pr * t + (1 - pr) * (1 - t)
                out = ce * ((1 - p_t) ** gamma)
                if alpha >= 0:
                    out = (alpha * t + (1 - alpha) * (1 - t)) * out
                return {"none": out, "sum": out.sum(), "mean": out.mean()}[r]
        elif loss == "kl-div":
            lt = case.log_target == 1
            fn = lambda r: F.kl_div(p, t, reduction=r, log_target=lt)
        else:
            raise ValueError(loss)
        return p, fn("none"), torch.tensor(float(p.numel()), dtype=dtype), fn

    rows = _Rows(case, dtype)
    x, B, C = rows.x, rows.B, rows.C
    if loss == "cce":
        # The crate's formula, -sum t * clamp(ln p, min=-100), differentiated by autograd.
        L = -(rows.t * torch.log(x).clamp(min=-100)).sum(-1)
        return x, L, torch.tensor(float(B), dtype=dtype), None
    if loss == "distill":
        # T^2 KL(softmax(u/T) || softmax(s/T)) per row (the Hinton recipe; PyTorch's kl_div
        # of log_softmax against softmax, summed over the row).
        T = float(np.float32(case.temperature if case.temperature is not None else 1.0))
        logq = F.log_softmax(x / T, -1)
        L = T * T * F.kl_div(logq, F.softmax(rows.t / T, -1), reduction="none").sum(-1)
        return x, L, torch.tensor(float(B), dtype=dtype), None
    if loss == "jsd":
        # Liger-Kernel's LigerJSD on log_softmax of the logits over T: beta KL(P || M) +
        # (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q; beta 0 is KL(P || Q), 1 KL(Q || P).
        T = float(np.float32(case.temperature if case.temperature is not None else 1.0))
        beta = float(np.float32(case.beta if case.beta is not None else 0.5))
        logq = F.log_softmax(x / T, -1)
        logp = F.log_softmax(rows.t / T, -1)
        P, Q = logp.exp(), logq.exp()
        if beta == 0.0:
            L = (P * (logp - logq)).sum(-1)
        elif beta == 1.0:
            L = (Q * (logq - logp)).sum(-1)
        else:
            logm = torch.log(beta * P + (1 - beta) * Q)
            L = (beta * (P * (logp - logm)) + (1 - beta) * (Q * (logq - logm))).sum(-1)
        return x, L, torch.tensor(float(B), dtype=dtype), None
    if loss == "cosine":
        eps = float(np.float32(case.eps if case.eps is not None else 1e-8))
        npn = torch.linalg.vector_norm(x, dim=-1).clamp(min=eps)
        ntn = torch.linalg.vector_norm(rows.t, dim=-1).clamp(min=eps)
        L = -(x * rows.t).sum(-1) / (npn * ntn)
        return x, L, torch.tensor(float(B), dtype=dtype), None
    # softmax-ce: F.cross_entropy on [B, C] (PyTorch puts classes at dim 1 for rank > 2; the
    # crate at the last dim, so leading dimensions are flattened into rows here).
    w = None if case.class_weight is None else torch.tensor(case.class_weight, dtype=dtype)
    ls = float(np.float32(case.label_smoothing or 0.0))
    ii = case.ignore_index if case.ignore_index is not None else -100
    tgt = rows.classes if rows.classes is not None else rows.t
    # Gemma 2's soft cap: the logits c tanh(x / c), autograd through the tanh.
    cap = float(np.float32(case.softcap)) if case.softcap else 0.0
    capped = lambda: cap * torch.tanh(x / cap) if cap else x  # a fresh graph per use
    fn = lambda r: F.cross_entropy(capped(), tgt, weight=w, ignore_index=ii, label_smoothing=ls,
                                   reduction=r)
    L = fn("none")
    if rows.classes is not None:
        counted = rows.classes != ii
        wc = torch.ones(B, dtype=dtype) if w is None else w[rows.classes.clamp(0, C - 1)]
        D = (wc * counted).sum()
    else:
        counted = torch.ones(B, dtype=torch.bool)
        D = torch.tensor(float(B), dtype=dtype)
    if case.z_loss:
        lam = float(np.float32(case.z_loss))
        L = L + lam * lse_rows(capped()) ** 2 * counted  # not a PyTorch loss
        fn = None
    return x, L, D, fn


def lse_rows(x: torch.Tensor) -> torch.Tensor:
    """ln sum_j exp x_j per row, as m + ln sum_j exp(x_j - m) with the row maximum m held
    constant: its autograd is exp(x_j - m) / S, the softmax. (torch.logsumexp's backward is
    exp(x_j - lse), which loses ln C next to a logit of 1e20 even in f64: every s_j becomes 1.)"""
    m = x.detach().max(dim=-1, keepdim=True).values
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return m.squeeze(-1) + torch.log(torch.exp(x - m).sum(-1))


def softmax_documented_rows(case: Case, dtype):
    """softmax-ce per-row losses as the crate documents them, in torch ops: each term
    a_j (lse - x_j) with a_j = w_j t'_j (probabilities) or (1-eps) w_c [j=c] + (eps/C) w_j
    (classes) contributes 0 when a_j == 0 (`zero-weight-term`); ignored rows are 0 and not read
    (`ignored-rows-not-read`). Returns (leaf, losses)."""
    rows = _Rows(case, dtype)
    x, B, C = rows.x, rows.B, rows.C
    w = (torch.ones(C, dtype=dtype) if case.class_weight is None
         else torch.tensor(case.class_weight, dtype=dtype))
    ls = float(np.float32(case.label_smoothing or 0.0))
    if rows.classes is not None:
        ii = case.ignore_index if case.ignore_index is not None else -100
        counted = rows.classes != ii
        onehot = F.one_hot(rows.classes.clamp(0, C - 1), C).to(dtype) * counted[:, None]
        a = (1 - ls) * onehot * w + (ls / C) * w * counted[:, None]
        xr = torch.where(counted[:, None], x, torch.zeros_like(x))  # ignored rows not read
    else:
        counted = torch.ones(B, dtype=torch.bool)
        a = w * ((1 - ls) * rows.t + ls / C)
        xr = x
    neglogsm = -torch.log_softmax(xr, dim=-1)
    L = zmul(a, neglogsm).sum(-1)
    if case.z_loss:
        L = L + float(np.float32(case.z_loss)) * lse_rows(xr) ** 2 * counted
    return x, L


def evaluate(case: Case, reduction: str, dtype) -> Result:
    """The oracle (float64) or the yardstick (float32): PyTorch's result for `reduction`,
    with the named expected differences patched in."""
    p, L, D, fn = per_item(case, dtype)
    (G,) = torch.autograd.grad(L.sum(), p, allow_unused=True)
    Lp, Gp, triggered = L.detach().clone(), G.clone(), []

    # --- patches at the per-item level (the documented behaviour) ---
    if case.loss not in ROWWISE:
        pd = p.detach()
        t = torch.tensor(case.target, dtype=dtype)
        nan = torch.isnan(pd - t)
        if nan.any():
            newL = torch.where(nan, torch.full_like(Lp, math.nan), Lp)
            newG = torch.where(nan, torch.full_like(Gp, math.nan), Gp)
            if case.loss == "bce" and torch.isnan(pd).any():
                triggered.append("bce-nan-propagates")
            if differs(newL, Lp).any() or differs(newG, Gp).any():
                triggered.append("nan-difference")
            Lp, Gp = newL, newG
    if case.loss == "bce-with-logits":
        x = p.detach()
        t = torch.tensor(case.target, dtype=dtype)
        w = torch.ones_like(x) if case.weight is None else torch.tensor(case.weight, dtype=dtype)
        q = (torch.ones_like(x) if case.pos_weight is None
             else torch.tensor(case.pos_weight, dtype=dtype))
        lw = 1 + (q - 1) * t
        lin = torch.where(x >= 0, zmul(1 - t, x), zmul(-q * t, x))
        limit = zmul(w * torch.ones_like(x), lw * torch.log1p(torch.exp(-x.abs())) + lin)
        inf = torch.isinf(x) & ~torch.isnan(t)
        new = torch.where(inf, limit, Lp)
        if differs(new, Lp).any():
            triggered.append("bce-logits-infinite")
        Lp = new
    if case.loss == "cce":
        rows = _Rows(case, dtype)
        x, t = rows.x.detach(), rows.t
        doc = -t / x.clamp(min=1e-12)
        new = torch.where(torch.isnan(x) | torch.isnan(t), Gp, doc)
        if differs(new, Gp).any():
            triggered.append("cce-grad-guard")
        nanrow = (torch.isnan(x) | torch.isnan(t)).any(-1, keepdim=True)
        new2 = torch.where(nanrow, torch.full_like(new, math.nan), new)
        if differs(new2, new).any():
            triggered.append("row-nan-whole-row")
        Gp = new2
    if case.loss == "softmax-ce":
        xd, Ld = softmax_documented_rows(case, dtype)
        (Gd,) = torch.autograd.grad(Ld.sum(), xd)
        rows = _Rows(case, dtype)
        if rows.classes is not None:
            ii = case.ignore_index if case.ignore_index is not None else -100
            ign = rows.classes == ii
            if (differs(Lp[ign], 0 * Lp[ign]).any() or differs(Gp[ign], 0 * Gp[ign]).any()
                    or torch.isnan(Gp[ign]).any()):
                if torch.isnan(Gp[ign]).any() or torch.isnan(Lp[ign]).any():
                    triggered.append("ignored-rows-not-read")
            Lp = torch.where(ign, torch.zeros_like(Lp), Lp)
            Gp = torch.where(ign[:, None], torch.zeros_like(Gp), Gp)
        # Rows with a -inf logit (and no NaN/+inf, not all -inf): the zero-weight rule.
        xv = rows.x.detach()
        neg = torch.isneginf(xv).any(-1) & ~torch.isnan(xv).any(-1) & ~torch.isposinf(xv).any(-1)
        neg &= ~torch.isneginf(xv).all(-1)
        if case.softcap:
            neg &= False  # capped to -c: finite, PyTorch's own result stands
        if rows.t is not None:
            neg &= ~torch.isnan(rows.t).any(-1)
        if neg.any():
            newL = torch.where(neg, Ld.detach(), Lp)
            newG = torch.where(neg[:, None], Gd, Gp)
            if differs(newL, Lp).any() or differs(newG, Gp).any():
                triggered.append("zero-weight-term")
            Lp, Gp = newL, newG

    shape_items = case.pred.shape[:-1] if case.loss in ROWWISE else case.pred.shape
    counted = int(case.pred.size if case.loss not in ROWWISE else
                  (np.asarray(case.target).reshape(-1) != (case.ignore_index if case.ignore_index
                                                           is not None else -100)).sum()
                  if case.target.dtype.kind in "iu" else case.pred.size // case.pred.shape[-1])
    res = Result(counted=counted)
    patched = bool(triggered)
    if reduction == "none":
        res.losses = to_np(Lp).reshape(shape_items)
        res.grad = to_np(Gp).reshape(case.pred.shape)
    else:
        if case.divisor is not None and reduction == "mean":
            # --divisor D': the row-wise mean's divisor (PyTorch has none: sum / D').
            D = torch.tensor(float(np.float32(case.divisor)), dtype=dtype)
            fn = None
        if reduction == "batchmean":
            # The sum over the first dimension's size (PyTorch's kl_div batchmean).
            D = torch.tensor(float(case.pred.shape[0]), dtype=dtype)
            if case.loss != "kl-div":
                fn = None
        if fn is not None and not patched:
            # PyTorch's own reduction (and autograd through it).
            out = fn(reduction)
            (g,) = torch.autograd.grad(out, p)
            v, g = out.detach(), g
        else:
            scale = (1 / D if reduction in ("mean", "batchmean")
                     else torch.tensor(1.0, dtype=dtype))
            v, g = Lp.sum() * scale, Gp * scale
        if reduction == "mean" and case.loss == "softmax-ce" and float(D) == 0.0:
            # mean-over-zero-rows: value 0 and gradient 0 (PyTorch: NaN).
            if differs(v, torch.zeros_like(v)).any() or differs(g, torch.zeros_like(g)).any():
                triggered.append("mean-over-zero-rows")
            v, g = torch.zeros_like(v), torch.zeros_like(g)
        res.value = to_np(v).reshape(())
        res.grad = to_np(g).reshape(case.pred.shape)
    if case.lse:
        # torch.logsumexp of the logits the softmax sees (capped as the loss caps them).
        x = torch.tensor(case.pred, dtype=dtype)
        cap = float(np.float32(case.softcap)) if case.softcap else 0.0
        y = cap * torch.tanh(x / cap) if cap else x
        lse = torch.logsumexp(y, dim=-1)
        plus = torch.isposinf(y).any(-1) & ~torch.isnan(y).any(-1)
        if plus.any():
            triggered.append("lse-plus-inf-row")
            lse = torch.where(plus, torch.full_like(lse, math.nan), lse)
        res.lse = to_np(lse).reshape(shape_items)
    res.triggered = tuple(dict.fromkeys(triggered))
    return res


# ---- mpmath oracle for the cases where f64 cancels ----------------------------------------


def mp_evaluate(case: Case, reduction: str) -> Result:
    """The same mathematical functions at MP_DIGITS digits (finite inputs only)."""
    mp = mpmath.mp
    mp.dps = MP_DIGITS
    M = mpmath.mpf
    if case.loss == "bce-with-logits":
        x = [M(float(v)) for v in case.pred.reshape(-1)]
        t = [M(float(v)) for v in case.target.reshape(-1)]
        n = len(x)
        w = (np.broadcast_to(case.weight, case.pred.shape).reshape(-1)
             if case.weight is not None else np.ones(n))
        q = (np.broadcast_to(case.pos_weight, case.pred.shape).reshape(-1)
             if case.pos_weight is not None else np.ones(n))
        L, G = [], []
        for xi, ti, wi, qi in zip(x, t, w, q):
            wi, qi = M(float(wi)), M(float(qi))
            lw = 1 + (qi - 1) * ti
            L.append(wi * ((1 - ti) * xi + lw * mpmath.log1p(mpmath.exp(-xi))))
            G.append(wi * (lw / (1 + mpmath.exp(-xi)) - qi * ti))
        D = M(n)
        items_shape = case.pred.shape
    elif case.loss == "softmax-ce":
        C = case.pred.shape[-1]
        X = case.pred.reshape(-1, C)
        w = case.class_weight if case.class_weight is not None else np.ones(C)
        w = [M(float(v)) for v in w]
        eps = M(float(np.float32(case.label_smoothing or 0.0)))
        lam = M(float(np.float32(case.z_loss or 0.0)))
        ii = case.ignore_index if case.ignore_index is not None else -100
        L, G, D = [], [], M(0)
        for r, xr in enumerate(X):
            xr = [M(float(v)) for v in xr]
            if case.target.dtype.kind in "iu":
                c = int(case.target.reshape(-1)[r])
                if c == ii:
                    L.append(M(0))
                    G.extend([M(0)] * C)
                    continue
                a = [(1 - eps) * w[j] * (j == c) + eps / C * w[j] for j in range(C)]
                D += w[c]
            else:
                tr = [M(float(v)) for v in case.target.reshape(-1, C)[r]]
                a = [w[j] * ((1 - eps) * tr[j] + eps / C) for j in range(C)]
                D += 1
            m = max(xr)
            S = mpmath.fsum(mpmath.exp(v - m) for v in xr)
            lse = m + mpmath.log(S)
            s = [mpmath.exp(v - lse) for v in xr]
            A = mpmath.fsum(a)
            L.append(mpmath.fsum(aj * (lse - xj) for aj, xj in zip(a, xr) if aj != 0)
                     + lam * lse**2)
            G.extend(A * sj - aj + 2 * lam * lse * sj for sj, aj in zip(s, a))
        items_shape = case.pred.shape[:-1]
    else:
        raise ValueError(f"no mpmath oracle for {case.loss}")
    res = Result(counted=None)
    if reduction == "none":
        res.losses = np.array([float(v) for v in L]).reshape(items_shape)
        res.grad = np.array([float(v) for v in G]).reshape(case.pred.shape)
    else:
        scale = 1 / D if reduction == "mean" else M(1)
        res.value = np.array(float(mpmath.fsum(L) * scale))
        res.grad = np.array([float(v * scale) for v in G]).reshape(case.pred.shape)
    return res


def pytorch_error(case: Case, reduction: str) -> Optional[str]:
    """For an error case: what PyTorch does with the same inputs (a message or a value)."""
    try:
        r = evaluate(case, reduction, torch.float64)
        v = r.value if r.value is not None else r.losses
        return f"PyTorch returns {np.array2string(np.asarray(v), precision=4)}"
    except Exception as e:  # noqa: BLE001 - any exception is PyTorch refusing the input
        return f"PyTorch raises {type(e).__name__}: {str(e).splitlines()[0][:100]}"


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Err:
    e: float  # max |x - o| / max(max |o|, 2^-126) over elements finite in both
    ulps: float  # max elementwise f32 ulps over the same elements
    special_mismatch: int  # elements whose NaN/+-inf/finite class differs from the oracle
    first_mismatch: str = ""
    flushed: int = 0  # GPU: subnormal oracle elements that came out 0 (gpu-subnormal-flush)


def f32_spacing(o: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(o).astype(np.float32)).astype(np.float64)


def compare(x: Optional[np.ndarray], o: np.ndarray, allow_flush: bool = False,
            null_is_nonfinite: bool = False) -> Err:
    o = np.asarray(o, dtype=np.float64)
    if x is None:  # a null JSON value: non-finite
        ok = null_is_nonfinite and not np.isfinite(o).all()
        return Err(0.0, 0.0, 0 if ok else 1, "" if ok else f"null vs {o}")
    x = np.asarray(x, dtype=np.float64).reshape(o.shape)
    cls = lambda a: np.where(np.isnan(a), 0, np.where(np.isposinf(a), 1,
                                                      np.where(np.isneginf(a), 2, 3)))
    mism = cls(x) != cls(o)
    n_mism = int(mism.sum())
    first = ""
    if n_mism:
        k = np.flatnonzero(mism.reshape(-1))[0]
        idx = np.unravel_index(k, o.shape) if o.shape else ()
        first = f"at {list(map(int, idx))}: {x.reshape(-1)[k]:.6g} vs oracle {o.reshape(-1)[k]:.6g}"
    both = np.isfinite(x) & np.isfinite(o)
    flushed = 0
    if allow_flush:
        fl = both & (np.abs(o) < F32_TINY) & (x == 0)
        flushed = int((fl & (o != 0)).sum())
        both &= ~fl
    of = o[np.isfinite(o)]
    scale = max(float(np.abs(of).max()) if of.size else 0.0, F32_TINY)
    if both.any():
        d = np.abs(x[both] - o[both])
        e = float(d.max()) / scale
        ulps = float((d / f32_spacing(o[both])).max())
    else:
        e, ulps = 0.0, 0.0
    return Err(e, ulps, n_mism, first, flushed)


# --------------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------------


class Cli:
    def __init__(self, binary: str, workdir: str):
        self.binary = binary
        self.workdir = workdir
        self.adapter: Optional[str] = None
        self.calls = 0
        self.seconds = 0.0

    def inputs(self, case: Case) -> dict:
        d = os.path.join(self.workdir, f"{zlib.crc32(case.key.encode()):08x}")
        os.makedirs(d, exist_ok=True)
        files = {}
        for flag, a in (("--pred", case.pred), ("--target", case.target),
                        ("--weight", case.weight), ("--pos-weight", case.pos_weight),
                        ("--class-weight", case.class_weight)):
            if a is not None:
                path = os.path.join(d, flag.strip("-") + ".npy")
                if not os.path.exists(path):
                    np.save(path, a)
                files[flag] = path
        return files

    def run(self, case: Case, reduction: str, device: str) -> dict:
        files = self.inputs(case)
        out_dir = os.path.dirname(files["--pred"])
        g = os.path.join(out_dir, f"grad-{device}-{reduction}.npy")
        l_out = os.path.join(out_dir, f"losses-{device}-{reduction}.npy")
        e_out = os.path.join(out_dir, f"lse-{device}-{reduction}.npy")
        for f in (g, l_out, e_out):
            if os.path.exists(f):
                os.remove(f)
        cmd = [self.binary, "compute", "--loss", case.loss, "--reduction", reduction,
               "--device", device, "--json", "--grad-out", g]
        for flag, path in files.items():
            cmd += [flag, path]
        for flag, v in case.scalar_options():
            cmd += [flag, repr(v)]
        if reduction == "none":
            cmd += ["--loss-out", l_out]
        if case.lse:
            cmd += ["--lse-out", e_out]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        out = {"rc": proc.returncode, "cmd": cmd,
               "stderr": "\n".join(l for l in proc.stderr.splitlines() if "XDG_RUNTIME_DIR" not in l)}
        if proc.returncode == 0:
            js = json.loads(proc.stdout)
            out["json"] = js
            if js.get("adapter"):
                self.adapter = js["adapter"]
            out["grad"] = np.load(g)
            if reduction == "none":
                out["losses"] = np.load(l_out)
            if case.lse:
                out["lse"] = np.load(e_out)
        return out


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    device: str
    loss: str
    case: str
    reduction: str
    output: str  # value, losses, grad, counted, error
    e_ours: float
    e_t32: float
    bound: float
    ratio: float  # e_ours / bound: <= 1 passes (with matching specials)
    ulps_ours: float
    ulps_t32: float
    passed: bool
    oracle: str
    notes: str = ""
    triggered: tuple = ()
    detail: str = ""  # for failures: inputs and numbers


def fmt_arr(a) -> str:
    return np.array2string(np.asarray(a).reshape(-1)[:8], precision=8, separator=", ")


def check_case(case: Case, devices: list[str], cli: Cli) -> list[Record]:
    records = []
    if case.expect_error:
        for red in case.reductions[:1]:
            pt = pytorch_error(case, red)
            for dev in devices:
                r = cli.run(case, red, dev)
                ok = r["rc"] == 2
                records.append(Record(dev, case.loss, case.name, red, "error", 0.0, 0.0, 0.0,
                                      0.0 if ok else math.inf, 0.0, 0.0, ok, "-",
                                      notes=f"exit {r['rc']}: {r['stderr'][:120]}; {pt}",
                                      triggered=(case.expect_error,)))
        return records

    for red in case.reductions:
        o = evaluate(case, red, torch.float64)
        t32 = evaluate(case, red, torch.float32)
        oracle_name = "torch64"
        notes = []
        if case.oracle == "mp":
            mo = mp_evaluate(case, red)
            for name in ("value", "losses", "grad"):
                if getattr(mo, name) is not None:
                    te = compare(getattr(o, name), getattr(mo, name))
                    notes.append(f"torch64 {name} err {te.e:.1e}")
            mo.counted, mo.triggered = o.counted, o.triggered
            o = mo
            oracle_name = "mp"
        outputs = ["losses", "grad"] if red == "none" else ["value", "grad"]
        if case.lse:
            outputs.append("lse")
        for dev in devices:
            r = cli.run(case, red, dev)
            if r["rc"] != 0:
                records.append(Record(dev, case.loss, case.name, red, "exit", math.inf, 0.0, 0.0,
                                      math.inf, 0.0, 0.0, False, oracle_name,
                                      notes=f"exit {r['rc']}: {r['stderr'][:200]}"))
                continue
            js = r["json"]
            ours = {"value": None if js["value"] is None else np.array(js["value"]),
                    "losses": r.get("losses"), "grad": r["grad"], "lse": r.get("lse")}
            for out in outputs:
                ref = getattr(o, out)
                eo = compare(ours[out], ref, allow_flush=(dev == "gpu"),
                             null_is_nonfinite=(out == "value"))
                et = compare(getattr(t32, out), ref)
                bound = max(FLOOR[out], RATIO * et.e)
                passed = eo.special_mismatch == 0 and eo.e <= bound
                n = list(notes)
                trig = list(o.triggered)
                if eo.flushed:
                    trig.append("gpu-subnormal-flush")
                    n.append(f"{eo.flushed} subnormal flushed")
                if et.special_mismatch:
                    n.append(f"torch32 specials wrong at {et.special_mismatch}")
                if eo.special_mismatch:
                    n.append(f"ours specials wrong at {eo.special_mismatch} ({eo.first_mismatch})")
                if ours[out] is None:
                    n.append("value null (non-finite)")
                detail = ""
                if not passed:
                    detail = failure_detail(case, red, out, ours[out], ref, getattr(t32, out))
                records.append(Record(dev, case.loss, case.name, red, out, eo.e, et.e, bound,
                                      eo.e / bound if bound else math.inf, eo.ulps, et.ulps,
                                      passed, oracle_name, "; ".join(n),
                                      tuple(dict.fromkeys(trig)), detail))
            # `counted` in the JSON: elements, or rows not ignored.
            if o.counted is not None and js.get("counted") != o.counted:
                records.append(Record(dev, case.loss, case.name, red, "counted", math.inf, 0.0,
                                      0.0, math.inf, 0.0, 0.0, False, oracle_name,
                                      notes=f"counted {js.get('counted')} vs {o.counted}"))
    return records


def failure_detail(case: Case, red: str, out: str, ours, ref, t32) -> str:
    """Where a failing output is worst: the element, its inputs, ours vs torch32 vs oracle."""
    ref = np.asarray(ref, dtype=np.float64)
    if ours is None:
        return f"ours null (non-finite); torch32 {t32}; oracle {ref}"
    x = np.asarray(ours, dtype=np.float64).reshape(ref.shape)
    t = np.asarray(t32, dtype=np.float64).reshape(ref.shape)
    cls_bad = (np.isnan(x) != np.isnan(ref)) | (np.isfinite(x) != np.isfinite(ref)) | (
        np.isinf(x) & np.isinf(ref) & (np.sign(x) != np.sign(ref)))
    with np.errstate(invalid="ignore"):
        d = np.where(cls_bad, np.inf, np.abs(np.nan_to_num(x - ref, nan=0.0)))
    k = int(np.argmax(d.reshape(-1))) if d.size else 0
    idx = np.unravel_index(k, ref.shape) if ref.shape else ()
    s = (f"worst at {out}{list(map(int, idx))}: ours {x.reshape(-1)[k]:.9g}, torch32 "
         f"{t.reshape(-1)[k]:.9g}, oracle {ref.reshape(-1)[k]:.17g}")
    if case.loss in ROWWISE and ref.shape:
        row = idx[: len(case.pred.shape) - 1] if out == "grad" else idx
        s += f"; row {list(map(int, row))}: pred {fmt_arr(case.pred[tuple(row)])}"
        tg = case.target[tuple(row)]
        s += f", target {fmt_arr(tg) if np.ndim(tg) else int(tg) if case.target.dtype.kind in 'iu' else float(tg)}"
    elif ref.shape:
        s += f"; pred {case.pred[idx]!r}, target {case.target[idx]!r}"
    else:
        s += f"; pred {fmt_arr(case.pred)}, target {fmt_arr(case.target)}"
    return s


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def g3(v: float) -> str:
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf"
    return f"{v:.2e}"


def report(records: list[Record], cases: list[Case], devices: list[str], cli: Cli,
           command: str, elapsed: float) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        # The report itself (rewritten by every run) does not count as a local change.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!docs/pytorch-check.md"],
                               capture_output=True, text=True).stdout.strip()
        tree = f"{head}{' with local changes' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        tree = "unknown"
    lines = [
        "# Differential check against PyTorch",
        "",
        f"- **Date**: {now}",
        f"- **Machine**: {platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}); "
        f"GPU adapter: **{cli.adapter or 'none used'}**; tree {tree}",
        f"- **PyTorch** {torch.__version__} (CPU, float64 oracle and float32 yardstick), "
        f"numpy {np.__version__}, mpmath {getattr(mpmath, '__version__', 'n/a')}, "
        f"Python {platform.python_version()}",
        f"- **Reproduce**: `{command}`",
        f"- **Run**: {len(cases)} cases × their reductions × {len(devices)} devices "
        f"({', '.join(devices)}), {cli.calls} CLI calls ({cli.seconds:.0f} s), {elapsed:.0f} s in all",
        "",
        "## What is checked",
        "",
        "Each case (loss, inputs, options, reduction) runs `wgpu-loss compute ... --json "
        "--grad-out G.npy [--loss-out L.npy]` on each device. The oracle is PyTorch in float64 "
        "with autograd on the same f32 inputs (its functions where it has the loss; the crate's "
        "formulas in torch ops for cce, the z-loss and cosine; mpmath at 50 digits for the cases "
        "marked `mp`, where f64 itself cancels). The yardstick is PyTorch in float32 (CPU).",
        "",
        "`e = max|x − oracle| / max(max|oracle|, 2^-126)` over the elements finite in both; "
        f"a case passes if `e_ours ≤ max(floor, {RATIO:g}·e_t32)` (floor 1e-5 for a value, "
        "1e-6 for an array) and every NaN/±inf of the oracle is matched exactly. `ratio` is "
        "e_ours over that bound (≤ 1 passes). `ulps`: max elementwise f32 ulps (reported, not "
        "judged). A reduced value the CLI prints as `null` is non-finite: it matches a NaN or "
        "±inf oracle value (the JSON cannot tell them apart).",
        "",
        "## Named expected differences (documented by the crate)",
        "",
        "| name | documented behaviour checked instead of PyTorch's | where | records triggering it |",
        "|---|---|---|---|",
    ]
    for name, (what, where) in DIFFERENCES.items():
        n = sum(1 for r in records if name in r.triggered)
        lines.append(f"| `{name}` | {what} | {where} | {n} |")
    lines += ["", "## Totals", "", "| device | records | passed | failed | cases failing |",
              "|---|---|---|---|---|"]
    for dev in devices:
        rs = [r for r in records if r.device == dev]
        bad = [r for r in rs if not r.passed]
        lines.append(f"| {dev} | {len(rs)} | {len(rs) - len(bad)} | {len(bad)} | "
                     f"{len({(r.loss, r.case, r.reduction) for r in bad})} |")
    failures = [r for r in records if not r.passed]
    lines += ["", "## Failures", ""]
    if not failures:
        lines.append("None.")
    else:
        lines += ["| device | loss | case | reduction | output | e_ours | e_t32 | ratio | notes | detail |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in failures:
            case = next(c for c in cases if c.loss == r.loss and c.name == r.case)
            lines.append(f"| {r.device} | {r.loss} | {r.case} ({case.flags() or 'no options'}) | "
                         f"{r.reduction} | {r.output} | {g3(r.e_ours)} | {g3(r.e_t32)} | "
                         f"{g3(r.ratio)} | {r.notes} | {r.detail} |")
    loose = sorted((r for r in records if r.passed and r.output in FLOOR
                    and r.e_ours > FLOOR[r.output]), key=lambda r: -r.e_ours)
    lines += ["", "## Passing only by the ratio (e_ours above the floor: PyTorch f32 is as far off)",
              "", "These pass the criterion, but only because PyTorch in float32 misses the oracle "
              "by a comparable amount; they are where f32 itself is the limit (or where the crate "
              "is no better than PyTorch).", ""]
    if not loose:
        lines.append("None.")
    else:
        lines += ["| device | loss | case | reduction | output | e_ours | e_t32 | ratio | notes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in loose:
            lines.append(f"| {r.device} | {r.loss} | {r.case} | {r.reduction} | {r.output} | "
                         f"{g3(r.e_ours)} | {g3(r.e_t32)} | {g3(r.ratio)} | {r.notes} |")
    lines += ["", "## Worst ratios (closest to the bound)", ""]
    for dev in devices:
        rs = sorted((r for r in records if r.device == dev and r.output != "error"),
                    key=lambda r: -r.ratio)[:12]
        lines += [f"### {dev}", "", "| loss | case | reduction | output | e_ours | e_t32 | ratio | ulps ours | notes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rs:
            lines.append(f"| {r.loss} | {r.case} | {r.reduction} | {r.output} | {g3(r.e_ours)} | "
                         f"{g3(r.e_t32)} | {g3(r.ratio)} | {g3(r.ulps_ours)} | {r.notes} |")
        lines.append("")
    # Every record is in the JSON (--json FILE); here, per loss and device.
    lines += ["## Per loss", "", "| loss | device | records | passed | worst ratio |",
              "|---|---|---|---|---|"]
    for loss in sorted({r.loss for r in records}):
        for dev in devices:
            rs = [r for r in records if r.device == dev and r.loss == loss]
            worst = max((r.ratio for r in rs if r.output != "error"), default=0.0)
            lines.append(f"| {loss} | {dev} | {len(rs)} | {sum(r.passed for r in rs)} | "
                         f"{g3(worst)} |")
    lines += ["", "Every record: `--json FILE`.", ""]
    lines += ["## Cases", "", "| loss | case | inputs | oracle | reductions |", "|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c.loss} | {c.name} | {c.describe()} | {c.oracle} | "
                     f"{', '.join(c.reductions[:1] if c.expect_error else c.reductions)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the wgpu-loss binary")
    ap.add_argument("--devices", default="gpu,cpu,reference")
    ap.add_argument("--only", default="", help="run only cases whose loss/name contains this")
    ap.add_argument("--md", default="docs/pytorch-check.md", help="Markdown report ('' for none)")
    ap.add_argument("--json", default="", help="also write every record as JSON here")
    ap.add_argument("--command", default="", help="the reproducing command, for the report")
    args = ap.parse_args()
    if mpmath is None:
        print("error: mpmath is needed (pip install mpmath)", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    devices = [d for d in args.devices.split(",") if d]
    cases = [c for c in all_cases() if args.only in c.key]
    t0 = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="pytorch-check-")
    records: list[Record] = []
    try:
        cli = Cli(args.bin, workdir)
        for i, case in enumerate(cases):
            rs = check_case(case, devices, cli)
            records += rs
            bad = [r for r in rs if not r.passed]
            worst = max((r.ratio for r in rs), default=0.0)
            print(f"[{i + 1:3}/{len(cases)}] {case.key:60} worst ratio {g3(worst):>8}"
                  f"{'  FAIL ' + str(len(bad)) if bad else ''}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    command = args.command or " ".join(["python3"] + sys.argv)
    if args.md:
        with open(args.md, "w") as f:
            f.write(report(records, cases, devices, cli, command, elapsed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adapter": cli.adapter, "torch": torch.__version__,
                       "records": [dataclasses.asdict(r) for r in records]}, f, indent=1,
                      default=str)
    fails = [r for r in records if not r.passed]
    for dev in devices:
        rs = [r for r in records if r.device == dev]
        print(f"{dev}: {len(rs)} records, {sum(r.passed for r in rs)} passed, "
              f"{sum(not r.passed for r in rs)} failed")
    for r in fails:
        print(f"FAIL {r.device} {r.loss} {r.case} {r.reduction} {r.output}: e_ours {g3(r.e_ours)} "
              f"e_t32 {g3(r.e_t32)} {r.notes} {r.detail}")
    print(f"{len(cases)} cases, {elapsed:.0f} s; report: {args.md or '-'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
