#!/usr/bin/env bash
# The split rows' measurement for a GPU lease (docs/TUNING.md, "long rows split across
# workgroups"): the release CLI built here (carry target/release/wgpu-loss), run there.
# Alternates the default (rows over 32 768 split) with never splitting, two rounds, on the
# row shapes that decide the default; writes each round's table and records under $OUT.
#   device run: bash scripts/gpu_split_rows.sh   (carry: target/release/wgpu-loss)
set -euo pipefail
bin=${WGPU_LOSS_BIN:-target/release/wgpu-loss}
out=${OUT:-/tmp/gpu-split}
mkdir -p "$out"
"$bin" --version
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
# B x C at most 2^25 each: the bench also times the CPU path and the f64 reference.
rows=256x128256,64x128256,512x65536,1024x32000
never=18446744073709551615
for round in 1 2; do
    for variant in split never; do
        extra=()
        [[ $variant == never ]] && extra=(--split-rows "$never")
        echo "== round $round: $variant"
        "$bin" bench --losses softmax-ce,cce,distill --sizes 1024 --rows "$rows" --repeats 10 \
            "${extra[@]}" --json "$out/split-$variant-$round.json" | tee "$out/split-$variant-$round.txt"
    done
done
