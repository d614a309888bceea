#!/usr/bin/env bash
# Table 1 on mnist5k: the four presets as one sweep (seed 0, the mnist5k schedule of conf/train/mnist5k.yaml),
# the report of its rows, and the memory-versus-depth check. Extra arguments go to `noderun train`,
# e.g. `dataset=mnist data_dir=/path/to/data` for the full-size reproduction.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/table1/results
noderun=${NODERUN:-.venv/bin/noderun}
rm -rf "$out/sweep"
"$noderun" train -m experiment=mnist_mlp,mnist_resnet,mnist_rknet,mnist_odenet seed=0 train.progress=false \
    hydra.sweep.dir="$out/sweep" "$@"
"$noderun" report "$out/sweep" --metrics status,params,test_error,nfe_forward,nfe_backward,peak_memory_mb,peak_rss_mb,epoch_time_s
"$noderun" memory-depth --out "$out/memory_depth"
