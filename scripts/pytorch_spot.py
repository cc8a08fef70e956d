#!/usr/bin/env python3
# Usage: a venv with `pip install ./python torch numpy`, then `python scripts/pytorch_spot.py`.
# scripts/pytorch_check.py covers kl-div, distill, batchmean, the divisor and the soft cap too;
# jsd is checked here only.
# A spot check of the new losses and reductions against PyTorch's autograd (CPU, f64 on the
# same f32 inputs), on the package's gpu (llvmpipe), cpu and reference devices.
import numpy as np, torch, torch.nn.functional as F, wgpu_loss
rng = np.random.default_rng(7)
ctxs = {d: wgpu_loss.Context(d) for d in ("gpu", "cpu", "reference")}
rows = []
def check(name, ours, val, grad, tol):
    for d, c in ctxs.items():
        r = ours(c)
        ev = abs(r.value - val) / max(abs(val), 1e-30)
        eg = np.abs(r.grad - grad).max() / max(np.abs(grad).max(), 1e-30)
        ok = ev <= 1e-5 and eg <= tol
        rows.append((name, d, ev, eg, ok))
# kl-div, both targets, batchmean and mean, [6, 7, 50]
for log_target in (False, True):
    lp = np.log(rng.dirichlet(np.ones(50), (6, 7))).astype(np.float32)
    t = rng.dirichlet(np.ones(50), (6, 7)).astype(np.float32)
    t[..., ::9] = 0.0
    if log_target:
        t = np.log(rng.dirichlet(np.ones(50), (6, 7))).astype(np.float32)
    for red in ("batchmean", "mean", "sum"):
        x = torch.tensor(lp, dtype=torch.float64, requires_grad=True)
        v = F.kl_div(x, torch.tensor(t, dtype=torch.float64), reduction=red, log_target=log_target)
        v.backward()
        check(f"kl-div log_target={log_target} {red}",
              lambda c: c.compute("kl-div", lp, t, reduction=red, log_target=log_target),
              v.item(), x.grad.numpy(), 1e-6)
# distill: T^2 * kl_div(log_softmax(s/T), softmax(u/T), batchmean), [64, 1000] and [8, 40000]
for (b, c) in ((64, 1000), (8, 40000)):
    for T in (1.0, 2.0):
        s = (3 * rng.standard_normal((b, c))).astype(np.float32)
        u = (0.5 * s + 2 * rng.standard_normal((b, c))).astype(np.float32)
        x = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        ut = torch.tensor(u, dtype=torch.float64)
        v = T * T * F.kl_div(F.log_softmax(x / T, -1), F.softmax(ut / T, -1), reduction="batchmean")
        v.backward()
        check(f"distill [{b},{c}] T={T}",
              lambda ctx: ctx.compute("distill", s, u, temperature=T), v.item(), x.grad.numpy(), 8e-6)
# jsd: Liger-Kernel's TorchJSD formulation on log_softmax(·/T) (float64 autograd):
# M = logsumexp(ln β + ln P, ln(1 − β) + ln Q), β kl_div(M, ln P) + (1 − β) kl_div(M, ln Q)
# (log_target, batchmean); β = 0: kl_div(ln Q, ln P); β = 1: kl_div(ln P, ln Q). No T².
for (b, c) in ((64, 1000), (8, 40000)):
    for beta, T in ((0.5, 1.0), (0.0, 2.0), (0.1, 0.5), (1.0, 1.0)):
        s = (3 * rng.standard_normal((b, c))).astype(np.float32)
        u = (0.5 * s + 2 * rng.standard_normal((b, c))).astype(np.float32)
        x = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        ut = torch.tensor(u, dtype=torch.float64)
        lq, lp = F.log_softmax(x / T, -1), F.log_softmax(ut / T, -1)
        kl = lambda inp, tgt: F.kl_div(inp, tgt, reduction="batchmean", log_target=True)
        if beta == 0.0:
            v = kl(lq, lp)
        elif beta == 1.0:
            v = kl(lp, lq)
        else:
            lm = torch.logsumexp(torch.stack([lp + np.log(beta), lq + np.log(1 - beta)]), 0)
            v = beta * kl(lm, lp) + (1 - beta) * kl(lm, lq)
        v.backward()
        check(f"jsd [{b},{c}] beta={beta} T={T}",
              lambda ctx: ctx.compute("jsd", s, u, beta=beta, temperature=T), v.item(), x.grad.numpy(), 8e-6)
# softmax-ce with a divisor: sum over D' (torch: cross_entropy(reduction='sum') / D')
xs = (2 * rng.standard_normal((50, 300))).astype(np.float32)
k = rng.integers(0, 300, 50)
x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
v = F.cross_entropy(x, torch.tensor(k), reduction="sum", label_smoothing=0.1) / 777.0
v.backward()
check("softmax-ce divisor 777", lambda c: c.compute("softmax-ce", xs, k, divisor=777.0, label_smoothing=0.1),
      v.item(), x.grad.numpy(), 2e-6)
# softmax-ce with a soft cap: cross_entropy(c * tanh(x / c), ...), autograd through the tanh;
# class ids with smoothing and z-loss, and probability targets; +-inf logits are capped to +-c.
for (b, c, cap) in ((64, 1000, 30.0), (64, 1000, 5.0), (4, 32000, 30.0)):
    xs = (4 * rng.standard_normal((b, c))).astype(np.float32)
    xs[0, 3], xs[1, 7] = np.inf, -np.inf
    k = rng.integers(0, c, b)
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    y = cap * torch.tanh(x / cap)
    lse = torch.logsumexp(y, -1)
    v = F.cross_entropy(y, torch.tensor(k), label_smoothing=0.1) + 1e-3 * (lse * lse).mean()
    v.backward()
    check(f"softmax-ce softcap={cap} [{b},{c}]",
          lambda ctx: ctx.compute("softmax-ce", xs, k, softcap=cap, label_smoothing=0.1, z_loss=1e-3),
          v.item(), x.grad.numpy(), 4e-6)
    t = rng.dirichlet(np.ones(c), b).astype(np.float32)
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    v = F.cross_entropy(cap * torch.tanh(x / cap), torch.tensor(t, dtype=torch.float64), reduction="sum")
    v.backward()
    check(f"softmax-ce softcap={cap} probs [{b},{c}]",
          lambda ctx: ctx.compute("softmax-ce", xs, t, softcap=cap, reduction="sum"),
          v.item(), x.grad.numpy(), 4e-6)
for r in rows:
    print(f"{r[0]:34s} {r[1]:9s} value rel {r[2]:.2e}  grad rel-to-max {r[3]:.2e}  {'ok' if r[4] else 'FAIL'}")
print("all pass" if all(r[4] for r in rows) else "FAILURES")
