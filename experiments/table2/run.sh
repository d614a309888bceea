#!/usr/bin/env bash
# Table 2 on the spirals: the latent ODE and the RNN for n_obs = 30, 50, 100 as one sweep (seed 0,
# the schedule of conf/train/spirals.yaml), the report, and Figures 8-9 from the n_obs=30 runs.
# Extra arguments go to `noderun train`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/table2/results
noderun=${NODERUN:-.venv/bin/noderun}
rm -rf "$out"
"$noderun" train -m experiment=spiral_latent_ode,spiral_rnn dataset.n_obs=30,50,100 seed=0 train.progress=false \
    hydra.sweep.dir="$out/sweep" "$@"
"$noderun" report "$out/sweep" --metrics status,test_rmse,test_rmse_interp,test_rmse_extrap,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
"$noderun" spiral-figures --latent-ode "$out/sweep/0" --rnn "$out/sweep/3" --out "$out/figures"
