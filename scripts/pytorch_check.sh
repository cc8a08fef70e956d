#!/usr/bin/env bash
# Differential check of every loss against PyTorch's autograd (scripts/pytorch_check.py): value,
# gradient and per-element/per-row losses of `wgpu-loss compute` on --device gpu, cpu and
# reference, against PyTorch float64 (mpmath where f64 cancels) on the same f32 inputs, with
# PyTorch float32 as the yardstick of what f32 can do. Writes docs/pytorch-check.md and exits
# non-zero if any case fails. The criterion is stated in the Python script's docstring.
#
# Needs no GPU (Mesa's llvmpipe Vulkan driver is an adapter: scripts/setup.sh installs it) and
# does not run in CI: it downloads PyTorch. The virtual environment is made on first use.
#
#   bash scripts/pytorch_check.sh                        # everything, ~1.5 minutes on 2 cores
#   bash scripts/pytorch_check.sh --only softmax-ce      # cases whose loss/name contains it
#   bash scripts/pytorch_check.sh --devices cpu,reference --md /tmp/x.md --json /tmp/x.json
#
# Environment: PYTORCH_VENV (default target/pytorch-venv), CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PYTORCH_VENV:-target/pytorch-venv}
if ! "$venv/bin/python" -c 'import torch, numpy, mpmath' 2>/dev/null; then
    echo "pytorch_check: making $venv (torch, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install torch numpy   # mpmath comes with torch (through sympy)
fi

cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/wgpu-loss"
exec "$venv/bin/python" scripts/pytorch_check.py --bin "$bin" \
    --command "bash scripts/pytorch_check.sh${*:+ $*}" "$@"
