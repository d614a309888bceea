#!/usr/bin/env bash
# The stiff-training study as recorded in README.md: the learned relaxation system at eps = 1e-3 (stiffness
# ~1000) with kvaerno5 and radau5, and at eps = 1e-2 (~100) with those and dopri5, seeds 0-2, 150 Adam
# steps each (backprop), two runs side by side; dopri5 at eps = 1e-3 for its first 5 steps only (by
# checkpoint: backprop's graph of its thousands of steps fills the memory). Then the tables and figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
out=experiments/stiff/results
rm -rf "$out"
train() { "$python" experiments/stiff/train.py --out "$out" "$@" > /dev/null; }
(
  for seed in 0 1 2; do train --method dopri5 --eps 1e-2 --seed "$seed"; done
  train --method dopri5 --eps 1e-3 --steps 5 --grad checkpoint
) &
for eps in 1e-3 1e-2; do
  for method in kvaerno5 radau5; do
    for seed in 0 1 2; do train --method "$method" --eps "$eps" --seed "$seed"; done
  done
done
wait
"$python" experiments/stiff/report.py "$out"
