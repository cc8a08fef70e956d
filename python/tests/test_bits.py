"""The package gives the library's own bits.

The check: the command line ``wgpu-loss compute`` (crate ``wgpu-loss-cli``, which calls the
library directly, with no Python anywhere) is run over ``.npy`` files of the same inputs, on the
same device, and its value, per-element losses and gradient must be the package's **bit for
bit**: the package adds nothing (no conversion of float32 inputs, no other reduction, the
same default context options) between numpy and the library. With the tolerance tests
(test_reference.py: gpu and cpu against numpy's float64) this pins the GPU and CPU results
down completely: the library's (deterministic) bits, and those within the stated tolerances.

The binary is ``$WGPU_LOSS_CLI``, or ``target/release/wgpu-loss`` of this repository (built by
``cargo build --release -p wgpu-loss-cli``; CI builds it first); without one these tests are
skipped, saying so.
"""

import json
import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import npref
from common import context, registry

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("WGPU_LOSS_CLI", ROOT / "target" / "release" / "wgpu-loss"))


def _cli_or_skip():
    if not CLI.is_file():
        pytest.skip(f"no wgpu-loss binary at {CLI}: cargo build --release -p wgpu-loss-cli "
                    "(or set WGPU_LOSS_CLI)")
    return CLI


def _cases():
    out = []
    for name in registry():
        for device in ("gpu", "cpu"):
            for reduction in ("mean", "none"):
                out.append(pytest.param(name, device, reduction, id=f"{name}-{device}-{reduction}"))
    return out


@pytest.mark.parametrize("name,device,reduction", _cases())
def test_same_bits_as_the_command_line(name, device, reduction, tmp_path):
    if not npref.has_reference(name) or name not in npref.CASES:
        pytest.skip(f"no numpy reference for {name} (its inputs come from npref)")
    cli = _cli_or_skip()
    info = registry()[name]
    # The case with the most options set (options are mapped the same way on both sides).
    label, options, extras = max(npref.CASES[name], key=lambda c: (len(c[1]), len(c[2])))
    shape = (7, 300) if info["row_wise"] else (3, 1001)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    pred, target = npref.inputs(name, shape, rng, options, classes=extras.get("classes", False))
    kw, flags = {}, []
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", target)
    for key, cli_flag in (("weight", "--weight"), ("pos_weight", "--pos-weight")):
        if extras.get(key):
            w = rng.uniform(0.5, 2.0, shape[-1:]).astype(np.float32)
            kw[key] = w
            np.save(tmp_path / f"{key}.npy", w)
            if key == "weight" and info["row_wise"]:
                cli_flag = "--class-weight"
            flags += [cli_flag, str(tmp_path / f"{key}.npy")]
    for k, v in options.items():
        value = str(int(v)) if isinstance(v, bool) else repr(v)
        flags.append(f"--{k.replace('_', '-')}={value}")
    outs = ["--grad-out", str(tmp_path / "g.npy")]
    if reduction == "none":
        outs += ["--loss-out", str(tmp_path / "l.npy")]
    cmd = [str(cli), "compute", "--loss", name, "--pred", str(tmp_path / "p.npy"),
           "--target", str(tmp_path / "t.npy"), "--reduction", reduction, "--device", device,
           "--json", *flags, *outs]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{' '.join(cmd)}\n{run.stderr}"
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("{")][-1]
    cli_out = json.loads(line)

    r = context(device).compute(name, pred, target, reduction=reduction, **kw, **options)
    grad = np.load(tmp_path / "g.npy")
    assert grad.dtype == np.float32
    assert np.array_equal(r.grad.view(np.uint32), grad.view(np.uint32)), f"{name}: gradient bits"
    assert r.counted == cli_out["counted"]
    if reduction == "none":
        losses = np.load(tmp_path / "l.npy")
        assert np.array_equal(r.losses.view(np.uint32), losses.view(np.uint32)), f"{name}: losses"
    else:
        # The JSON value is the f32's shortest decimal: it parses back to the same f32.
        assert np.float32(cli_out["value"]) == np.float32(r.value), (cli_out["value"], r.value)


@pytest.mark.parametrize("device", ["gpu", "cpu", "reference"])
def test_deterministic(device):
    """The same inputs twice, and on a second context: the same bits (no float atomics on the
    GPU, fixed blocks on the CPU)."""
    import wgpu_loss

    rng = np.random.default_rng(7)
    second = wgpu_loss.Context(device)
    for name, info in registry().items():
        if not npref.has_reference(name):
            continue
        shape = (64, 333) if info["row_wise"] else (70_001,)
        pred, target = npref.inputs(name, shape, rng)
        a = context(device).compute(name, pred, target)
        b = context(device).compute(name, pred, target)
        c = second.compute(name, pred, target)
        for r in (b, c):
            assert np.float32(r.value).view(np.uint32) == np.float32(a.value).view(np.uint32), name
            assert np.array_equal(r.grad.view(np.uint32), a.grad.view(np.uint32)), name
