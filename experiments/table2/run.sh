#!/usr/bin/env bash
# Table 2 on the authors' spirals (dataset.kind=archimedean): the latent ODE and both RNN baselines for
# n_obs = 30, 50, 100 and seeds 0, 1, 2 as one sweep (the schedule of conf/train/spirals.yaml), two jobs
# side by side (joblib, one thread each), the reports, and Figures 8 and 9 from seed 0's n_obs=30 runs.
# Extra arguments go to `noderun train`; OUT names the results folder (default experiments/table2/results), e.g.
#   OUT=experiments/table2/results_future bash experiments/table2/run.sh dataset=spirals dataset.train_future=true
# (dataset=spirals so that the sweep's first composition, before any experiment applies, knows the key)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-experiments/table2/results}
noderun=${NODERUN:-.venv/bin/noderun}
jobs=${JOBS:-2}
rm -rf "$out"
"$noderun" train -m experiment=spiral_latent_ode,spiral_rnn,spiral_rnn_no_gaps dataset.n_obs=30,50,100 seed=0,1,2 \
    train.progress=false hydra/launcher=joblib hydra.launcher.n_jobs="$jobs" hydra.sweep.dir="$out/sweep" "$@"
metrics=status,test_rmse_extrap,test_rmse_interp,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
"$noderun" report "$out/sweep" --metrics "$metrics"
"$noderun" report "$out/sweep" --group-by experiment,dataset.n_obs --metrics "$metrics"
"$noderun" spiral-figures --latent-ode "$out/sweep/0" --rnn "$out/sweep/9" --out "$out/figures"
