#!/usr/bin/env bash
# Figure 3 on mnist5k: train the ODE-Net preset (dopri5, tolerance 1e-3, adjoint; seed 0), then draw
# the four panels from its checkpoint and metrics. Extra arguments go to `noderun train`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/figure3/results
noderun=${NODERUN:-.venv/bin/noderun}
rm -rf "$out"
"$noderun" train experiment=mnist_odenet seed=0 train.progress=false hydra.run.dir="$out/run" "$@"
"$noderun" figure3 "$out/run" --out "$out" --batch-size 128
