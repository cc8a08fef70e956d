"""A numpy float64 reference of every loss, written from the contract (shared/LOSSES.md,
docs/PYTORCH.md) independently of the library, and the inputs each loss is tested on.

``reference(name, pred, target, reduction=..., weight=..., pos_weight=..., upstream=...,
**options)`` returns a dict with ``value`` (None for reduction "none"), ``losses`` (for
"none"), ``grad``, ``counted``, and the scales the tests' tolerances are relative to:
``value_scale`` (the reduction of |ℓ|: a tree sum's error is relative to the sum of the
magnitudes of its terms), ``loss_scale`` and ``grad_scale`` (the magnitudes of the terms each
per-element loss and gradient entry is made of; |ℓ| and |∂ℓ| except where a result is a
difference of larger terms, as in cosine proximity).

A loss the library's registry has and ``ELEMENTWISE``/``ROWS`` lack has no reference here:
the tests skip it with the reason ``no numpy reference for <loss>``.
"""

import math

import numpy as np

# ---------------------------------------------------------------------------------------------
# Elementwise losses: f(p, t, w, q, **options) -> (ℓ, ∂ℓ/∂p, scale of ∂ℓ/∂p) elementwise, in f64.
# w is the broadcast weight (1 where none), q the broadcast pos_weight (1 where none).


def _mse(p, t, w, q):
    d = p - t
    return d * d, 2 * d, None


def _mae(p, t, w, q):
    d = p - t
    return np.abs(d), np.sign(d), None


def _huber(p, t, w, q, delta):
    d = p - t
    inside = np.abs(d) <= delta
    loss = np.where(inside, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
    grad = np.where(inside, d, delta * np.sign(d))
    return loss, grad, None


def _smooth_l1(p, t, w, q, beta):
    d = p - t
    inside = np.abs(d) < beta
    b = beta if beta > 0 else 1.0  # β = 0: never inside; avoids 0/0 in the unused branch
    loss = np.where(inside, 0.5 * d * d / b, np.abs(d) - 0.5 * beta)
    grad = np.where(inside, d / b, np.sign(d))
    return loss, grad, None


def _bce(p, t, w, q):
    loss = -w * (t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
    grad = w * (p - t) / np.maximum(p * (1 - p), 1e-12)
    return loss, grad, None


def _bce_with_logits(x, t, w, q):
    lw = 1 + (q - 1) * t
    softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # ln(1 + e^(−x))
    loss = w * ((1 - t) * x + lw * softplus_neg)
    sig = 1 / (1 + np.exp(-x))
    grad = w * (lw * sig - q * t)
    # ℓ is a sum of (1 − t)x and lw·softplus(−x), which cancel for large −x: its error is
    # relative to those terms. The gradient is lw σ − q t: relative to lw σ + q t.
    return loss, grad, np.abs(w) * (lw * sig + q * t)


def _poisson_nll(x, t, w, q, log_input, full, eps):
    if log_input:
        loss, grad = np.exp(x) - t * x, np.exp(x) - t
        scale = np.exp(x) + np.abs(t)
    else:
        loss, grad = x - t * np.log(x + eps), 1 - t / (x + eps)
        scale = 1 + np.abs(t / (x + eps))
    if full:
        tt = np.where(t > 1, t, 2.0)
        stirling = tt * np.log(tt) - tt + 0.5 * np.log(2 * math.pi * tt)
        loss = loss + np.where(t > 1, stirling, 0.0)
    return loss, grad, scale


def _focal(x, t, w, q, alpha, gamma):
    p = 1 / (1 + np.exp(-x))
    ce = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - t * x  # BCE with logits
    pt = p * t + (1 - p) * (1 - t)
    m = 1 - pt
    at = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else np.ones_like(x)
    mg = m**gamma
    loss = at * ce * mg
    # ∂ce/∂x = p − t; ∂m/∂x = (1 − 2t) p (1 − p); ∂(m^γ)/∂x = γ m^(γ−1) ∂m/∂x
    dm = gamma * np.where(m > 0, m ** (gamma - 1), 0.0) * (1 - 2 * t) * p * (1 - p)
    grad = at * ((p - t) * mg + ce * dm)
    return loss, grad, np.abs(at) * (np.abs(p - t) * mg + np.abs(ce * dm))


def _kl_div(p, t, w, q, log_target=False):
    if log_target:
        e = np.exp(t)
        return e * (t - p), -e, e * (np.abs(t) + np.abs(p))
    safe = np.where(t > 0, t, 1.0)
    loss = np.where(t == 0, 0.0, t * (np.log(safe) - p))
    # t ln t − t p: its error is relative to the two terms.
    return loss, -t, np.abs(t) * (np.abs(np.log(safe)) + np.abs(p))


ELEMENTWISE = {
    "mse": _mse,
    "mae": _mae,
    "huber": _huber,
    "smooth-l1": _smooth_l1,
    "bce": _bce,
    "bce-with-logits": _bce_with_logits,
    "poisson-nll": _poisson_nll,
    "focal": _focal,
    "kl-div": _kl_div,
}

# ---------------------------------------------------------------------------------------------
# Row-wise losses: f(x [B, C], target, w, **options) -> dict(losses [B], grad [B, C],
# loss_scale [B], grad_scale [B, C], divisor, counted).


def _lse(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[:, 0]


def _cce(p, t, w):
    loss = -(t * np.maximum(np.log(p), -100)).sum(axis=-1)
    grad = -t / np.maximum(p, 1e-12)
    scale = (np.abs(t) * np.abs(np.maximum(np.log(p), -100))).sum(axis=-1)
    return dict(losses=loss, grad=grad, loss_scale=scale, divisor=p.shape[0], counted=p.shape[0])


def _softmax_ce(x, t, w, label_smoothing, z_loss, ignore_index, softcap=0.0):
    if softcap:
        # Every formula on y = c tanh(x/c), the gradient through the cap. Each capped logit is
        # within 3 ulp, an absolute error of 3 * 2^-24 |y| that e^(y - lse) turns into a
        # relative one, twice: the scales grow by that over the smallest row tolerance, 1e-6
        # (tests/gpu/common.rs `softcap_rtol`).
        th = np.tanh(x / softcap)
        r = _softmax_ce(softcap * th, t, w, label_smoothing, z_loss, ignore_index)
        widen = 1 + 6 * 2.0**-24 * min(softcap, float(np.max(np.abs(x), initial=0.0))) / 1e-6
        d = 1 - th * th
        r["grad"] = r["grad"] * d
        r["grad_scale"] = r["grad_scale"] * d * widen
        r["loss_scale"] = r["loss_scale"] * widen
        return r
    b, c = x.shape
    eps = label_smoothing
    wv = np.ones(c) if w is None else w
    lse = _lse(x)
    s = np.exp(x - lse[:, None])
    if t.dtype.kind == "f":  # probability targets
        wt = wv * ((1 - eps) * t + eps / c)
        loss = (wt * (lse[:, None] - x)).sum(axis=-1)
        grad = wt.sum(axis=-1, keepdims=True) * s - wt
        loss_scale = (np.abs(wt) * (np.abs(lse[:, None]) + np.abs(x))).sum(axis=-1)
        keep = np.ones(b, bool)
        divisor = b
    else:  # class ids
        cls = t.astype(np.int64)
        keep = cls != ignore_index
        safe = np.where(keep, cls, 0)
        rows = np.arange(b)
        wc = (1 - eps) * wv[safe]
        big_w = wv.sum()
        loss = wc * (lse - x[rows, safe]) + eps / c * (wv * (lse[:, None] - x)).sum(axis=-1)
        onehot = np.zeros_like(x)
        onehot[rows, safe] = 1
        grad = wc[:, None] * (s - onehot) + eps / c * (big_w * s - wv)
        loss_scale = wc * (np.abs(lse) + np.abs(x[rows, safe])) + eps / c * (
            wv * (np.abs(lse[:, None]) + np.abs(x))
        ).sum(axis=-1)
        divisor = wv[safe][keep].sum()
    if z_loss:
        loss = loss + z_loss * lse * lse
        grad = grad + 2 * z_loss * lse[:, None] * s
        loss_scale = loss_scale + z_loss * lse * lse
    grad_scale = np.abs(grad) + np.abs(s) * (np.abs(wv).sum() + 2 * z_loss * np.abs(lse[:, None]))
    loss = np.where(keep, loss, 0.0)
    grad = np.where(keep[:, None], grad, 0.0)
    return dict(
        losses=loss,
        grad=grad,
        loss_scale=np.where(keep, loss_scale, 0.0),
        grad_scale=np.where(keep[:, None], grad_scale, 0.0),
        divisor=divisor,
        counted=int(keep.sum()),
    )


def _cosine(p, t, w, eps):
    dot = (p * t).sum(axis=-1)
    pp = (p * p).sum(axis=-1)
    np_, nt = np.sqrt(pp), np.sqrt((t * t).sum(axis=-1))
    den = np.maximum(np_, eps) * np.maximum(nt, eps)
    cos = dot / den
    big = np_ > eps
    safe_pp = np.where(big, pp, 1.0)
    grad = np.where(
        big[:, None],
        -t / den[:, None] + cos[:, None] * p / safe_pp[:, None],
        -t / (eps * np.maximum(nt, eps))[:, None],
    )
    # Each gradient entry is a difference of the two terms; the loss a normalised sum of
    # products (|p_j t_j| / den summed): both relative to the terms' magnitudes.
    grad_scale = np.abs(t) / den[:, None] + np.abs(cos[:, None] * p) / safe_pp[:, None]
    loss_scale = np.abs(p * t).sum(axis=-1) / den
    return dict(
        losses=-cos,
        grad=grad,
        loss_scale=loss_scale,
        grad_scale=grad_scale,
        divisor=p.shape[0],
        counted=p.shape[0],
    )


def _log_softmax(v):
    m = v.max(axis=-1, keepdims=True)
    return (v - m) - np.log(np.exp(v - m).sum(axis=-1, keepdims=True))


def _distill(s, u, w, temperature):
    t = temperature
    log_p, log_q = _log_softmax(u / t), _log_softmax(s / t)
    p, q = np.exp(log_p), np.exp(log_q)
    kl = (p * (log_p - log_q)).sum(axis=-1)
    # KL is formed from d/SA − (ma − mb) − (ln SA − ln SB): its error is relative to those
    # terms (Σ P |a − b| and the log-sum-exps), not to KL, which is small where P ≈ Q.
    scale = (p * np.abs(u - s) / t).sum(axis=-1) + np.abs(_lse(u / t)) + np.abs(_lse(s / t))
    return dict(
        losses=t * t * kl,
        grad=t * (q - p),
        loss_scale=t * t * scale,
        grad_scale=t * (q + p),
        divisor=s.shape[0],
        counted=s.shape[0],
    )


def _jsd(s, u, w, beta=0.5, temperature=1.0):
    # β KL(P ‖ M) + (1 − β) KL(Q ‖ M), M = β P + (1 − β) Q (KL(P ‖ Q) at β = 0, KL(Q ‖ P) at
    # β = 1), P = softmax(u/T), Q = softmax(s/T); no T² factor. Written directly: ln M from
    # np.logaddexp of ln β + ln P and ln(1 − β) + ln Q, the gradient by the chain rule
    # through log_softmax: ∂ℓ/∂ln Q_j = w Q_j (ln Q_j − ln M_j), minus Q_j times their sum.
    t = temperature
    log_p, log_q = _log_softmax(u / t), _log_softmax(s / t)
    p, q = np.exp(log_p), np.exp(log_q)
    if beta == 0.0:
        losses = (p * (log_p - log_q)).sum(axis=-1)
        grad = (q - p) / t
        log_m = log_q
    else:
        if beta == 1.0:
            log_m = log_p
        else:
            log_m = np.logaddexp(math.log(beta) + log_p, math.log(1 - beta) + log_q)
        kp = (p * (log_p - log_m)).sum(axis=-1)
        kq = (q * (log_q - log_m)).sum(axis=-1)
        wq = 1.0 if beta == 1.0 else 1.0 - beta
        losses = kq if beta == 1.0 else beta * kp + (1 - beta) * kq
        dl = wq * q * (log_q - log_m)  # ∂ℓ/∂(ln Q_j), with ∂(ln M)/∂(ln Q) terms summing to 0
        grad = (dl - q * dl.sum(axis=-1, keepdims=True)) / t
    # The f32 paths form ln P, ln Q, ln M and their differences: errors relative to the logs,
    # not to ℓ (0 for P = Q). Scales: Σ (P + Q)(|ln P| + |ln Q| + |ln M| + 1) per row, and
    # (P + Q)(... + |KL|) per gradient entry.
    logs = np.abs(log_p) + np.abs(log_q) + np.abs(log_m) + 1
    scale = ((p + q) * logs).sum(axis=-1)
    return dict(
        losses=losses,
        grad=grad,
        loss_scale=scale,
        grad_scale=(p + q) * (logs + np.abs(losses)[:, None]) / t,
        divisor=s.shape[0],
        counted=s.shape[0],
    )


ROWS = {
    "distill": _distill,
    "jsd": _jsd,
    "cce": _cce,
    "softmax-ce": _softmax_ce,
    "cosine": _cosine,
}


def has_reference(name):
    return name in ELEMENTWISE or name in ROWS


def _broadcast(a, shape):
    return np.ones(shape) if a is None else np.broadcast_to(np.asarray(a, np.float64), shape)


def reference(name, pred, target, *, reduction="mean", weight=None, pos_weight=None,
              upstream=None, divisor=None, **options):
    """The loss ``name`` (a registry name) in float64, as the contract defines it."""
    p = np.asarray(pred, np.float64)
    if name in ELEMENTWISE:
        t = np.asarray(target, np.float64)
        w, q = _broadcast(weight, p.shape), _broadcast(pos_weight, p.shape)
        loss, grad, grad_scale = ELEMENTWISE[name](p, t, w, q, **options)
        r = dict(
            losses=loss,
            grad=grad,
            loss_scale=np.abs(loss),
            grad_scale=np.abs(grad) if grad_scale is None else grad_scale,
            divisor=p.size,
            counted=p.size,
        )
        row_shape = p.shape
    else:
        c = p.shape[-1]
        x = p.reshape(-1, c)
        t = np.asarray(target)
        t = t.reshape(-1, c).astype(np.float64) if t.dtype.kind == "f" else t.reshape(-1)
        w = None if weight is None else np.asarray(weight, np.float64)
        r = ROWS[name](x, t, w, **options)
        r.setdefault("grad_scale", np.abs(r["grad"]))
        row_shape = p.shape[:-1]
        r["losses"] = r["losses"].reshape(row_shape)
        r["loss_scale"] = r["loss_scale"].reshape(row_shape)
        r["grad"] = r["grad"].reshape(p.shape)
        r["grad_scale"] = r["grad_scale"].reshape(p.shape)
    if reduction == "batchmean":
        r["divisor"] = p.shape[0] if p.ndim else 1
    elif divisor is not None:
        r["divisor"] = float(np.float32(divisor))
    return _reduce(r, p, row_shape, reduction, upstream, name in ROWS)


def _reduce(r, p, row_shape, reduction, upstream, rows):
    g_scalar = 1.0 if upstream is None or np.ndim(upstream) == 0 else None
    if g_scalar is not None and upstream is not None:
        g_scalar = float(np.float32(upstream))
    out = dict(counted=r["counted"], losses=None, value=None)
    if reduction == "none":
        g = g_scalar if g_scalar is not None else np.asarray(upstream, np.float64)
        g = np.asarray(g, np.float64)
        if rows and g.ndim:
            g = g[..., None]
        out["losses"] = r["losses"]
        out["loss_scale"] = r["loss_scale"]
        out["grad"] = g * r["grad"]
        out["grad_scale"] = np.abs(g) * r["grad_scale"]
        return out
    d = r["divisor"] if reduction in ("mean", "batchmean") else 1
    k = 0.0 if d == 0 else g_scalar / d
    out["value"] = 0.0 if d == 0 else r["losses"].sum() / d
    out["value_scale"] = 0.0 if d == 0 else r["loss_scale"].sum() / d
    out["grad"] = k * r["grad"]
    out["grad_scale"] = abs(k) * r["grad_scale"]
    return out


# ---------------------------------------------------------------------------------------------
# Inputs: what each loss is tested on, and the option sets it is tested with.


def inputs(name, shape, rng, options=None, classes=False):
    """``(pred, target)`` as float32 (class ids as int64 when ``classes``) inside the loss's
    domain, for a prediction of ``shape``."""
    options = options or {}
    f32 = np.float32
    n = shape
    if name in ("mse", "mae", "huber", "smooth-l1"):
        return (2 * rng.standard_normal(n)).astype(f32), (2 * rng.standard_normal(n)).astype(f32)
    if name == "bce":
        return rng.uniform(0.01, 0.99, n).astype(f32), rng.uniform(0, 1, n).astype(f32)
    if name in ("bce-with-logits", "focal"):
        t = (rng.uniform(0, 1, n) < 0.5).astype(f32)
        return (2 * rng.standard_normal(n)).astype(f32), t
    if name == "poisson-nll":
        t = rng.poisson(2.0, n).astype(f32)
        if options.get("log_input", True):
            return rng.standard_normal(n).astype(f32), t
        return rng.uniform(0.1, 3.0, n).astype(f32), t
    if name == "kl-div":
        logp = np.log(rng.uniform(0.01, 1, n)).astype(f32)
        t = rng.uniform(0, 1, n)
        t[rng.uniform(0, 1, n) < 0.1] = 0.0
        if options.get("log_target", False):
            return logp, np.log(rng.uniform(0.01, 1, n)).astype(f32)
        return logp, t.astype(f32)
    if name == "cce":
        p = rng.uniform(0.05, 1, n)
        t = rng.uniform(0, 1, n)
        return (p / p.sum(-1, keepdims=True)).astype(f32), (t / t.sum(-1, keepdims=True)).astype(f32)
    if name == "softmax-ce":
        x = (2 * rng.standard_normal(n)).astype(f32)
        if classes:
            return x, rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
        t = rng.uniform(0, 1, n)
        return x, (t / t.sum(-1, keepdims=True)).astype(f32)
    if name == "cosine":
        return rng.standard_normal(n).astype(f32), rng.standard_normal(n).astype(f32)
    if name in ("distill", "jsd"):
        s = (2 * rng.standard_normal(n)).astype(f32)
        return s, (0.5 * s + rng.standard_normal(n)).astype(f32)
    raise KeyError(name)


# The option sets each loss is tested with beyond its defaults (registry keywords), and the
# extra arguments (weight, pos_weight, class ids) each case uses: (label, options, extras).
CASES = {
    "mse": [("default", {}, {})],
    "mae": [("default", {}, {})],
    "huber": [("default", {}, {}), ("delta=0.5", {"delta": 0.5}, {}), ("delta=2.5", {"delta": 2.5}, {})],
    "smooth-l1": [("default", {}, {}), ("beta=0", {"beta": 0.0}, {}), ("beta=0.5", {"beta": 0.5}, {})],
    "bce": [("default", {}, {}), ("weight", {}, {"weight": "last"}), ("full weight", {}, {"weight": "full"})],
    "bce-with-logits": [
        ("default", {}, {}),
        ("weight", {}, {"weight": "last"}),
        ("pos_weight", {}, {"pos_weight": "last"}),
        ("both", {}, {"weight": "full", "pos_weight": "last"}),
    ],
    "poisson-nll": [
        ("default", {}, {}),
        ("full", {"full": True}, {}),
        ("rate", {"log_input": False}, {}),
        ("rate full eps", {"log_input": False, "full": True, "eps": 1e-3}, {}),
    ],
    "focal": [
        ("default", {}, {}),
        ("no alpha", {"alpha": -1.0}, {}),
        ("gamma=0", {"gamma": 0.0}, {}),
        ("alpha=0.5 gamma=1.5", {"alpha": 0.5, "gamma": 1.5}, {}),
    ],
    "kl-div": [("default", {}, {}), ("log_target", {"log_target": True}, {})],
    "cce": [("default", {}, {})],
    "softmax-ce": [
        ("probabilities", {}, {}),
        ("class ids", {}, {"classes": True}),
        ("smoothing", {"label_smoothing": 0.1}, {"classes": True}),
        ("z-loss", {"z_loss": 1e-3}, {"classes": True}),
        ("softcap=3", {"softcap": 3.0}, {"classes": True}),
        ("softcap=30, all options",
         {"softcap": 30.0, "label_smoothing": 0.1, "z_loss": 1e-3}, {"weight": "classes"}),
        ("weights ignore", {"ignore_index": 2}, {"classes": True, "weight": "classes"}),
        ("all options, probabilities",
         {"label_smoothing": 0.2, "z_loss": 0.01}, {"weight": "classes"}),
    ],
    "cosine": [("default", {}, {}), ("eps=0.5", {"eps": 0.5}, {})],
    "distill": [("default", {}, {}), ("temperature=2.5", {"temperature": 2.5}, {})],
    "jsd": [
        ("default", {}, {}),
        ("beta=0 temperature=2", {"beta": 0.0, "temperature": 2.0}, {}),
        ("beta=0.1 temperature=0.5", {"beta": 0.1, "temperature": 0.5}, {}),
        ("beta=1", {"beta": 1.0}, {}),
    ],
}
