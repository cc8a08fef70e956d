"""Benchmark of the Python package: every loss of the registry, value and gradient, on the
package's GPU and fast CPU paths, against a numpy implementation and PyTorch's forward plus
backward (CPU, and CUDA where present), at a few sizes; median wall time of repeated calls,
ratios in the same run. Writes a JSON file and (with matplotlib) a PNG plot, and prints the
table docs/PYTHON-BENCH.md holds.

    python python/bench.py [--quick] [--out docs/bench/python-<machine>-<date>] [--repeats N]

Each measurement is the median of the calls of three rounds, each round calling every
implementation in turn, its calls back to back (as many as fit in 0.15 s, at least 3 and at
most 20; or N), after one warm-up call (pipelines built, pools warm). Every call computes the value
and the gradient with respect to the prediction from host arrays, and returns them to Python:
the package's ``ctx.compute(loss, pred, target)`` (the gradient a new numpy array; and with
``grad_out=`` an array reused from call to call, written in place), numpy's
float32 formulas, and torch's ``loss = F.<loss>(pred, target); loss.backward()`` on a leaf
tensor that requires grad (its ``.grad`` set to None before each call, so it is allocated
anew, as the package's is). CUDA times include the host-to-device copies (torch's inputs
start on the host, as the package's do) and a synchronisation.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

# This file's folder holds the package's sources (wgpu_loss/ without its compiled extension):
# import the installed package instead, and the tests' inputs.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
sys.path.insert(0, os.path.join(_here, "tests"))

import npref  # noqa: E402  (the inputs each loss is tested on)
import wgpu_loss  # noqa: E402

f32 = np.float32

# ---------------------------------------------------------------------------------------------
# numpy: value and gradient (mean reduction, default options) in float32, vectorised.


def _np_rows_softmax(x):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(-1, keepdims=True)
    return m, e / s, np.log(s)


def _numpy_impl(name, p, t):
    n = p.size
    if name == "mse":
        d = p - t
        return np.mean(d * d), (2 / n) * d
    if name == "mae":
        d = p - t
        return np.mean(np.abs(d)), np.sign(d) / n
    if name in ("huber", "smooth-l1"):
        d = p - t
        a = np.abs(d)
        inside = a <= 1 if name == "huber" else a < 1
        loss = np.where(inside, 0.5 * d * d, a - 0.5)
        return loss.mean(), np.where(inside, d, np.sign(d)) / n
    if name == "bce":
        loss = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
        return loss.mean(), (p - t) / np.maximum(p * (1 - p), 1e-12) / n
    if name == "bce-with-logits":
        e = np.exp(-np.abs(p))
        loss = np.maximum(p, 0) - p * t + np.log1p(e)
        sig = np.where(p >= 0, 1 / (1 + e), e / (1 + e))
        return loss.mean(), (sig - t) / n
    if name == "poisson-nll":
        e = np.exp(p)
        return np.mean(e - t * p), (e - t) / n
    if name == "focal":
        e = np.exp(-np.abs(p))
        sig = np.where(p >= 0, 1 / (1 + e), e / (1 + e))
        ce = np.maximum(p, 0) - p * t + np.log1p(e)
        q = t * (1 - sig) + (1 - t) * sig
        at = 0.25 * t + 0.75 * (1 - t)
        loss = at * ce * q * q
        grad = at * ((sig - t) * q * q + 2 * ce * q * sig * (1 - sig) * (1 - 2 * t))
        return loss.mean(), grad / n
    b = p.shape[0]
    if name == "cce":
        loss = -(t * np.maximum(np.log(p), -100)).sum(-1)
        return loss.mean(), -t / np.maximum(p, 1e-12) / b
    if name == "softmax-ce":
        m, s, ls = _np_rows_softmax(p)
        rows = np.arange(b)
        loss = (m[:, 0] + ls[:, 0]) - p[rows, t]
        s[rows, t] -= 1
        return loss.mean(), s / b
    if name == "cosine":
        dot = (p * t).sum(-1, keepdims=True)
        pp = (p * p).sum(-1, keepdims=True)
        tt = (t * t).sum(-1, keepdims=True)
        den = np.maximum(np.sqrt(pp), 1e-8) * np.maximum(np.sqrt(tt), 1e-8)
        cos = dot / den
        return -cos.mean(), (-t / den + cos * p / pp) / b
    return None


# ---------------------------------------------------------------------------------------------
# torch: the functional loss (or torchvision's focal written out), forward and backward.


def _torch_loss(name):
    import torch
    import torch.nn.functional as F

    def focal(x, t, alpha=0.25, gamma=2.0):  # torchvision.ops.sigmoid_focal_loss, "mean"
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        return (alpha_t * loss).mean()

    return {
        "mse": F.mse_loss,
        "mae": F.l1_loss,
        "huber": F.huber_loss,
        "smooth-l1": F.smooth_l1_loss,
        "bce": F.binary_cross_entropy,
        "bce-with-logits": F.binary_cross_entropy_with_logits,
        "poisson-nll": F.poisson_nll_loss,
        "focal": focal,
        "cce": lambda p, t: -(t * torch.log(p).clamp_min(-100)).sum(-1).mean(),
        "softmax-ce": F.cross_entropy,
        "cosine": lambda p, t: -F.cosine_similarity(p, t, dim=-1).mean(),
    }.get(name)


# ---------------------------------------------------------------------------------------------


ROUNDS = 3


def measure(fns, repeats):
    """Median call time of each of ``fns`` (name -> callable): ROUNDS rounds, each calling
    every function in turn, its calls back to back (after one warm-up call in the first
    round): as many as fit in 0.15 s, at least 3 and at most 20, or ``repeats``. A load spike
    on the machine (it is shared) falls on every implementation alike. Returns name ->
    (median, calls)."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(ROUNDS):
        for k, f in fns.items():
            start = time.perf_counter()
            n = 0
            while True:
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
                n += 1
                if repeats:
                    if n >= repeats:
                        break
                elif n >= 20 or (n >= 3 and time.perf_counter() - start > 0.15):
                    break
    return {k: (statistics.median(v), len(v)) for k, v in times.items()}


def shapes(row_wise, quick):
    if row_wise:
        return [(4096, 1000)] if quick else [(4096, 1000), (256, 32000)]
    return [(1 << 20,)] if quick else [(1 << 20,), (1 << 22,)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one size per loss")
    ap.add_argument("--repeats", type=int, default=0, help="calls per measurement (0: adaptive)")
    ap.add_argument("--out", default=None, help="prefix of the .json and .png written")
    ap.add_argument("--losses", default=None, help="comma-separated losses (default: all)")
    a = ap.parse_args()

    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.is_available()
    except ImportError:
        torch, torch_version, cuda = None, None, False
    gpu = wgpu_loss.Context("gpu")
    cpu = wgpu_loss.Context("cpu")
    rng = np.random.default_rng(0)
    infos = wgpu_loss.losses()
    wanted = a.losses.split(",") if a.losses else [i["name"] for i in infos]
    rows = []
    started = time.perf_counter()
    for info in infos:
        name = info["name"]
        if name not in wanted:
            continue
        for shape in shapes(info["row_wise"], a.quick):
            if not npref.has_reference(name):
                print(f"{name}: no inputs in npref, skipped", file=sys.stderr)
                continue
            pred, target = npref.inputs(name, shape, rng, classes=info["takes_classes"])
            row = {"loss": name, "shape": list(shape), "elements": int(pred.size)}
            fns = {
                "gpu": lambda: gpu.compute(name, pred, target),
                "cpu": lambda: cpu.compute(name, pred, target),
            }
            grad = np.empty_like(pred)  # reused: written in place, nothing allocated per call
            fns["cpu_grad_out"] = lambda: cpu.compute(name, pred, target, grad_out=grad)
            if _numpy_impl(name, pred, target) is not None:
                # A check that the numpy implementation is the same loss, then its time.
                v, g = _numpy_impl(name, pred, target)
                r = cpu.compute(name, pred, target)
                assert abs(v - r.value) <= 1e-4 * abs(r.value) + 1e-6, (name, v, r.value)
                assert np.abs(g - r.grad).max() <= 1e-4 * np.abs(r.grad).max(), name
                fns["numpy"] = lambda: _numpy_impl(name, pred, target)
            fn = _torch_loss(name) if torch is not None else None
            if fn is not None:
                tt = torch.from_numpy(target)
                leaf = torch.from_numpy(pred.copy()).requires_grad_(True)

                def fwd_bwd():
                    leaf.grad = None
                    fn(leaf, tt).backward()

                v = float(fn(leaf, tt))
                assert abs(v - cpu.compute(name, pred, target).value) <= 1e-4 * abs(v) + 1e-6
                fns["torch_cpu"] = fwd_bwd
                if cuda:
                    def cuda_fwd_bwd():
                        x = torch.from_numpy(pred).cuda().requires_grad_(True)
                        fn(x, tt.cuda()).backward()
                        torch.cuda.synchronize()

                    fns["torch_cuda"] = cuda_fwd_bwd
            for k, (median, calls) in measure(fns, a.repeats).items():
                row[f"{k}_ms"], row[f"{k}_calls"] = median, calls
            for k in [k for k in row if k.endswith("_ms")]:
                row[k] *= 1e3
            if "torch_cpu_ms" in row:
                row["cpu_vs_torch"] = row["torch_cpu_ms"] / row["cpu_ms"]
                row["gpu_vs_torch"] = row["torch_cpu_ms"] / row["gpu_ms"]
            if "numpy_ms" in row:
                row["cpu_vs_numpy"] = row["numpy_ms"] / row["cpu_ms"]
            rows.append(row)
            print(line(row), flush=True)
    machine = {
        "date": time.strftime("%Y-%m-%d"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "cuda": torch.cuda.get_device_name() if cuda else None,
        "adapter": gpu.adapter,
        "wgpu_loss": wgpu_loss.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\n{len(rows)} rows in {machine['seconds']} s; adapter {gpu.adapter}")
    print(markdown(rows))
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out + ".json", "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=1)
        print(f"wrote {a.out}.json")
        plot(rows, machine, a.out + ".png")


def _ms(row, k):
    return f"{row[k]:.2f}" if k in row else "—"


def line(row):
    shape = "x".join(map(str, row["shape"]))
    return (f"{row['loss']:16} {shape:>12}  gpu {_ms(row, 'gpu_ms'):>8}  cpu {_ms(row, 'cpu_ms'):>7}"
            f"  numpy {_ms(row, 'numpy_ms'):>8}  torch {_ms(row, 'torch_cpu_ms'):>8} ms"
            + (f"  cpu {row['cpu_vs_torch']:.2f}x torch" if "cpu_vs_torch" in row else "")
            + f"  (grad_out {_ms(row, 'cpu_grad_out_ms')})")


def markdown(rows):
    out = ["| loss | shape | package gpu (ms) | package cpu (ms) | cpu, grad_out (ms) | numpy (ms) "
           "| torch cpu fwd+bwd (ms) | cpu vs torch | cpu vs numpy |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = lambda k: f"{r[k]:.2f}×" if k in r else "—"  # noqa: E731
        shape = " × ".join(map(str, r["shape"]))
        out.append(f"| {r['loss']} | {shape} | {_ms(r, 'gpu_ms')} | {_ms(r, 'cpu_ms')} | "
                   f"{_ms(r, 'cpu_grad_out_ms')} | "
                   f"{_ms(r, 'numpy_ms')} | {_ms(r, 'torch_cpu_ms')} | {ratio('cpu_vs_torch')} | "
                   f"{ratio('cpu_vs_numpy')} |")
    return "\n".join(out)


def plot(rows, machine, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    labels = [f"{r['loss']}\n{'×'.join(map(str, r['shape']))}" for r in rows]
    series = [("package gpu", "gpu_ms"), ("package cpu", "cpu_ms"),
              ("package cpu, grad_out", "cpu_grad_out_ms"), ("numpy", "numpy_ms"),
              ("torch cpu fwd+bwd", "torch_cpu_ms"), ("torch cuda fwd+bwd", "torch_cuda_ms")]
    series = [(n, k) for n, k in series if any(k in r for r in rows)]
    fig, ax = plt.subplots(figsize=(max(10, 0.6 * len(rows)), 5))
    width = 0.8 / len(series)
    for i, (label, k) in enumerate(series):
        xs = [j + (i - len(series) / 2 + 0.5) * width for j in range(len(rows))]
        ax.bar(xs, [r.get(k, 0) for r in rows], width, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("ms per call (value and gradient), median")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_title(f"wgpu_loss from Python, {machine['date']}: {machine['cpus']} CPUs, "
                 f"GPU {machine['adapter']}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
