#!/usr/bin/env bash
# Work-precision diagrams as recorded in README.md: every bench problem, every applicable method across
# tolerances 1e-3 ... 1e-10 (stiff problems 1e-3 ... 1e-8; fixed-step methods 10 ... 1000 steps), noderun beside
# torchdiffeq and SciPy (pip install -e ".[bench,scipy]"), one thread, the median of 3 interleaved repeats.
set -euo pipefail
cd "$(dirname "$0")/../.."
noderun=${NODERUN:-.venv/bin/noderun}
"$noderun" bench --work-precision --repeats "${REPEATS:-3}" --threads 1 --out experiments/work_precision/results "$@"
