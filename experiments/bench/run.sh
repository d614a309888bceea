#!/usr/bin/env bash
# The benchmark as recorded in README.md: every case, noderun beside torchdiffeq (needs the bench
# extra: pip install -e ".[bench]"), one torch thread, 5 timed repeats after a warm-up. Run it on a
# quiet machine: nothing else training. Extra arguments go to `noderun bench`.
set -euo pipefail
cd "$(dirname "$0")/../.."
noderun=${NODERUN:-.venv/bin/noderun}
"$noderun" bench --threads 1 --repeats 5 --out experiments/bench/results "$@"
