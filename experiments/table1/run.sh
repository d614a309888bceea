#!/usr/bin/env bash
# Table 1 on mnist5k: the four presets for seeds 0, 1, 2 as one sweep (the mnist5k schedule of
# conf/train/mnist5k.yaml), two jobs side by side (joblib, one thread each), the per-run report, the
# table by preset (mean ± std over the seeds), and the memory-versus-depth check. Extra arguments go to
# `noderun train`, e.g. `dataset=mnist data_dir=/path/to/data` for the full-size reproduction.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/table1/results
noderun=${NODERUN:-.venv/bin/noderun}
jobs=${JOBS:-2}
rm -rf "$out/sweep"
"$noderun" train -m experiment=mnist_mlp,mnist_resnet,mnist_rknet,mnist_odenet seed=0,1,2 train.progress=false \
    hydra/launcher=joblib hydra.launcher.n_jobs="$jobs" hydra.sweep.dir="$out/sweep" "$@"
metrics=status,params,test_error,nfe_forward,nfe_backward,peak_memory_mb,peak_rss_mb,epoch_time_s
"$noderun" report "$out/sweep" --metrics "$metrics"
"$noderun" report "$out/sweep" --group-by experiment --metrics "$metrics"
"$noderun" memory-depth --out "$out/memory_depth"
