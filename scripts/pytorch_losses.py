#!/usr/bin/env python3
"""PyTorch's losses, forward plus backward, on the shapes `wgpu-loss bench` sweeps.

The comparison the README's H100 table rests on. For each loss and shape it times

    loss = F.<loss>(p, t); (grad,) = torch.autograd.grad(loss, p)

(the value and the gradient with respect to the prediction, `reduction='mean'`, the same work
as one `wgpu-loss` kernel step), with CUDA events around each iteration, the median of
`--repeats` iterations after warm-ups. Inputs are drawn from the same ranges as
`wgpu_loss::synthetic` (the timings do not depend on the values).

GB/s counts the same minimum traffic as `wgpu-loss bench`: element bytes x (prediction +
target + gradient), class-index targets 4 B per row, so the two tools' GB/s compare directly.
`kernels` is the number of CUDA kernels one forward plus backward launches (torch.profiler).

With `--wgpu-json F` (the records of `wgpu-loss bench --json F` from the same machine) it also
prints, per loss and shape, the wgpu-loss kernel step's time and how many times faster it is
than PyTorch (PyTorch's time over ours). `--compile` adds `torch.compile`d versions, the
strongest PyTorch baseline (one or two fused Triton kernels).

    python3 scripts/pytorch_losses.py --json pytorch.json --wgpu-json wgpu.json

`--device cpu` times PyTorch on the host instead (`torch.set_num_threads` all cores, or
`--threads`; the host clock around each iteration) and compares with wgpu-loss's `cpu`
records, the fast CPU path (which writes into a gradient allocated once; PyTorch allocates a
fresh one per iteration, part of its forward plus backward). `--all` adds the losses beyond
the H100 run's eight (smooth-l1, poisson-nll, focal, kl-div, distill, jsd).

    python3 scripts/pytorch_losses.py --device cpu --all --json cpu.json --wgpu-json wgpu.json

Needs PyTorch with CUDA unless `--device cpu`. `--compare-only PYTORCH_JSON --wgpu-json F` prints the comparison
table from saved records without PyTorch.
"""

import argparse
import json
import os
import statistics
import sys
import time

ELEMENTWISE = ["mse", "mae", "huber", "bce", "bce-with-logits"]
ROW_WISE = ["cce", "softmax-ce", "cosine"]
# The losses added since the H100 run (the default sweep keeps its eight; `--all` adds these).
ELEMENTWISE_MORE = ["smooth-l1", "poisson-nll", "focal", "kl-div"]
ROW_WISE_MORE = ["distill", "jsd"]
ALL = ELEMENTWISE + ELEMENTWISE_MORE + ROW_WISE + ROW_WISE_MORE
ROWS_OF = set(ROW_WISE + ROW_WISE_MORE)
DEFAULT_SIZES = [1 << e for e in range(10, 27, 2)]
DEFAULT_ROWS = [(4096, 1000), (1024, 32000), (256, 128256)]
QUICK_SIZES = [1 << 16, 1 << 20]
QUICK_ROWS = [(128, 8192)]
BYTES = {"f32": 4, "bf16": 2, "f16": 2}


def parse_rows(s):
    out = []
    for part in s.split(","):
        b, c = part.lower().split("x")
        out.append((int(b), int(c)))
    return out


def make_case(torch, F, loss, shape, dtype, gen, dev):
    """Inputs on `dev` and the forward-plus-backward closure for one loss and shape.

    The ranges are `wgpu_loss::synthetic`'s; the options are the CLI's defaults (huber and
    smooth-l1 1, poisson-nll log_input without Stirling's term, focal alpha 0.25 gamma 2,
    kl-div probabilities as targets, distill and jsd T = 1, jsd beta 0.5).
    """

    def u(lo, hi):
        x = torch.rand(shape, generator=gen, device=dev, dtype=torch.float32)
        return (lo + (hi - lo) * x).to(dtype)

    t_classes = None
    if loss in ("mse", "mae", "huber", "smooth-l1", "cosine"):
        p, t = u(-3.0, 3.0), u(-3.0, 3.0)
    elif loss == "poisson-nll":
        p, t = u(-3.0, 3.0), u(0.0, 6.0)
    elif loss == "focal":
        p, t = u(-6.0, 6.0), u(0.0, 1.0)
    elif loss == "kl-div":
        p, t = u(-8.0, 0.0), u(0.0, 1.0)
    elif loss in ("distill", "jsd"):
        p, t = u(-8.0, 8.0), u(-8.0, 8.0)
    elif loss == "bce":
        p, t = u(0.0005, 0.9995), u(0.0, 1.0)
    elif loss == "bce-with-logits":
        p, t = u(-8.0, 8.0), u(0.0, 1.0)
    elif loss == "cce":
        p, t = u(0.0005, 1.0), u(0.0, 1.0)
        p = (p / p.sum(dim=1, keepdim=True)).to(dtype)
        t = (t / t.sum(dim=1, keepdim=True)).to(dtype)
    elif loss == "softmax-ce":
        p = u(-8.0, 8.0)
        t_classes = torch.randint(0, shape[1], (shape[0],), generator=gen, device=dev)
        t = None
    else:
        raise ValueError(loss)
    p.requires_grad_(True)

    def value(p):
        if loss == "mse":
            return F.mse_loss(p, t)
        if loss == "mae":
            return F.l1_loss(p, t)
        if loss == "huber":
            return F.huber_loss(p, t, delta=1.0)
        if loss == "smooth-l1":
            return F.smooth_l1_loss(p, t, beta=1.0)
        if loss == "poisson-nll":
            return F.poisson_nll_loss(p, t, log_input=True, full=False)
        if loss == "focal":
            # torchvision.ops.sigmoid_focal_loss(reduction="mean"), written out.
            pr = torch.sigmoid(p)
            ce = F.binary_cross_entropy_with_logits(p, t, reduction="none")
            p_t = pr * t + (1 - pr) * (1 - t)
            return ((0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2).mean()
        if loss == "kl-div":
            # The crate's mean over elements (PyTorch warns that "mean" is not batchmean).
            return F.kl_div(p, t, reduction="mean")
        if loss == "distill":
            # T^2 KL(softmax(u/T) || softmax(s/T)) per row, mean over rows, T = 1.
            return F.kl_div(F.log_softmax(p, -1), F.softmax(t, -1), reduction="batchmean")
        if loss == "jsd":
            # Liger-Kernel's LigerJSD at beta 0.5 over log_softmax, mean over rows.
            logq, logp = F.log_softmax(p, -1), F.log_softmax(t, -1)
            P, Q = logp.exp(), logq.exp()
            logm = torch.log(0.5 * P + 0.5 * Q)
            return (0.5 * (P * (logp - logm)) + 0.5 * (Q * (logq - logm))).sum(-1).mean()
        if loss == "bce":
            return F.binary_cross_entropy(p, t)
        if loss == "bce-with-logits":
            return F.binary_cross_entropy_with_logits(p, t)
        if loss == "cce":
            # No fused PyTorch op: the formula of LOSSES.md (clamped log, rows summed, mean).
            return -(t * torch.log(p).clamp_min(-100.0)).sum(dim=1).mean()
        if loss == "softmax-ce":
            return F.cross_entropy(p, t_classes)
        if loss == "cosine":
            return (-F.cosine_similarity(p, t, dim=1, eps=1e-8)).mean()
        raise ValueError(loss)

    n = p.numel()
    rows = shape[0] if len(shape) == 2 else 0
    b = BYTES[dtype_name(torch, dtype)]
    min_bytes = b * 2 * n + (4 * rows if t_classes is not None else b * n)
    return p, value, min_bytes


def dtype_name(torch, dtype):
    return {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}[dtype]


def time_step(torch, step, warmup, repeats, dev="cuda"):
    """Median of per-iteration times (ms) of `step()`: CUDA events, or the host clock on CPU."""
    if dev == "cpu":
        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            a = time.perf_counter()
            step()
            times.append((time.perf_counter() - a) * 1e3)
        return statistics.median(times)
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        z = torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        z.record()
        z.synchronize()
        times.append(a.elapsed_time(z))
    return statistics.median(times)


def count_kernels(torch, step):
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sum(
        1
        for e in prof.events()
        if getattr(e, "device_type", None) is not None and "CUDA" in str(e.device_type)
    )


def copy_gbps(torch, repeats, dev="cuda"):
    """Copy of 256 MiB on `dev`, one read and one write counted."""
    n = 1 << 26
    src = torch.rand(n, device=dev)
    dst = torch.empty_like(src)
    ms = time_step(torch, lambda: dst.copy_(src), 3, max(repeats, 10), dev)
    return 2 * 4 * n / (ms * 1e-3) / 1e9


def run(args):
    import torch
    import torch.nn.functional as F

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        sys.exit("pytorch_losses.py: PyTorch sees no CUDA device (--device cpu times the CPU)")
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    losses = args.losses or (ALL if args.all else ELEMENTWISE + ROW_WISE)
    repeats = args.repeats or (10 if args.quick else 30)
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    if dev == "cpu":
        threads = args.threads or os.cpu_count()
        torch.set_num_threads(threads)
        device = f"CPU, {threads} threads"
        clock = "the host clock"
    else:
        device = torch.cuda.get_device_name()
        clock = "CUDA events"
    ceiling = copy_gbps(torch, repeats, dev)
    print(f"device: {device}; torch {torch.__version__}; dtype {args.dtype}")
    print(f"ceiling: torch copy_ of 256 MiB {ceiling:.1f} GB/s (one read + one write)")
    print(f"times: median of {repeats} forward+backward iterations after warm-ups, {clock}")
    print(f"{'loss':<16} {'shape':>12} {'path':>15} {'ms':>9} {'GB/s':>8} {'% copy':>7} {'kernels':>8}")
    records = []
    for loss in losses:
        shapes = [(b, c) for b, c in rows] if loss in ROWS_OF else [(n,) for n in sizes]
        for shape in shapes:
            p, value, min_bytes = make_case(torch, F, loss, shape, dtype, gen, dev)
            paths = [("pytorch-eager", value)]
            if args.compile:
                paths.append(("pytorch-compile", torch.compile(value, dynamic=False)))
            for path, fn in paths:

                def step(fn=fn):
                    (g,) = torch.autograd.grad(fn(p), p)
                    return g

                warm = (5 if path == "pytorch-eager" else 3) if dev == "cuda" else 2
                ms = time_step(torch, step, warm, repeats, dev)
                kernels = count_kernels(torch, step) if dev == "cuda" else None
                gbps = min_bytes / (ms * 1e-3) / 1e9
                rec = {
                    "loss": loss,
                    "shape": list(shape),
                    "path": path,
                    "adapter": device,
                    "dtype": args.dtype,
                    "median_ms": ms,
                    "bytes": min_bytes,
                    "gbps": gbps,
                    "ceiling_gbps": ceiling,
                    "percent_of_ceiling": 100 * gbps / ceiling,
                    "kernels": kernels,
                    "torch": torch.__version__,
                    "device": dev,
                }
                records.append(rec)
                shape_s = "x".join(map(str, shape))
                print(
                    f"{loss:<16} {shape_s:>12} {path:>15} {ms:>9.4f} {gbps:>8.1f} "
                    f"{rec['percent_of_ceiling']:>7.1f} {kernels if kernels is not None else '-':>8}",
                    flush=True,
                )
            del p
            if dev == "cuda":
                torch.cuda.empty_cache()
    return records


def compare(records, wgpu_path, ours_path="gpu-kernel"):
    """Markdown table: wgpu-loss's `ours_path` records (the kernel step, or `cpu`: the fast CPU
    path into a gradient allocated once) against each PyTorch path, same loss and shape."""
    with open(wgpu_path) as f:
        ours = [r for r in json.load(f) if r["path"] == ours_path]
    key = lambda r: (r["loss"], tuple(r["shape"]), r["dtype"])
    mine = {key(r): r for r in ours}
    paths = sorted({r["path"] for r in records})
    head = "| loss | shape | dtype | wgpu-loss ms | GB/s | " + " | ".join(
        f"{p} ms | {p} / wgpu-loss" for p in paths
    )
    print(head + " |")
    print("|" + "---|" * (5 + 2 * len(paths)))
    groups = {}
    for r in records:
        groups.setdefault(key(r), {})[r["path"]] = r
    for k, by_path in groups.items():
        w = mine.get(k)
        if w is None:
            continue
        cells = [k[0], "x".join(map(str, k[1])), k[2], f"{w['median_ms']:.4f}", f"{w['gbps']:.1f}"]
        for p in paths:
            r = by_path.get(p)
            if r is None:
                cells += ["", ""]
            else:
                cells += [f"{r['median_ms']:.4f}", f"{r['median_ms'] / w['median_ms']:.2f}x"]
        print("| " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2^16, 2^20 and 128x8192, 10 repeats")
    ap.add_argument("--losses", type=lambda s: s.split(","), default=None)
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--rows", type=parse_rows, default=None, help="BxC[,BxC...]")
    ap.add_argument("--dtype", choices=sorted(BYTES), default="f32")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd losses")
    ap.add_argument("--all", action="store_true", help="every loss of the crate, not the eight")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="where PyTorch runs; cpu compares with wgpu-loss's `cpu` records")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--wgpu-json", help="wgpu-loss bench --json records to compare against")
    ap.add_argument("--compare-only", help="PyTorch records (--json) to compare, no timing")
    args = ap.parse_args()
    for loss in args.losses or []:
        if loss not in ALL:
            sys.exit(f"pytorch_losses.py: unknown loss {loss!r}")
    if args.compare_only:
        if not args.wgpu_json:
            sys.exit("pytorch_losses.py: --compare-only needs --wgpu-json")
        with open(args.compare_only) as f:
            compare(json.load(f), args.wgpu_json, ours_path(args))
        return
    records = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"records written to {args.json}")
    if args.wgpu_json:
        compare(records, args.wgpu_json, ours_path(args))


def ours_path(args):
    """Which wgpu-loss records PyTorch on `args.device` is compared with."""
    return "cpu" if args.device == "cpu" else "gpu-kernel"


if __name__ == "__main__":
    main()
