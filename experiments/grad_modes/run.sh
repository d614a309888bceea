#!/usr/bin/env bash
# The gradient-mode study as README.md records it: the ODE-Net on mnist5k (the default run: dopri5 at 1e-3,
# 6 epochs) and the spiral latent ODE (experiment=spiral_latent_ode: dopri5 at 1e-5, 300 epochs) trained with
# backprop, the adjoint and checkpointing, seeds 0, 1, 2, two runs side by side; each run keeps its model every
# few epochs (the ODE-Net: 2, 4, 6), and `noderun gradcheck` measures every mode's gradient error on seed 0's
# kept models at the run's tolerance (about 2 minutes each: the gradient error over training). Then the tables
# by mode and report.py's figure.
# STAGES picks parts: odenet, latent, gradcheck, report (default: all).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/grad_modes/results
noderun=${NODERUN:-.venv/bin/noderun}
stages=${STAGES:-odenet latent gradcheck report}
train() {  # -m must come first
  "$noderun" train "$@" grad=backprop,adjoint,checkpoint seed=0,1,2 train.progress=false \
    hydra/launcher=joblib hydra.launcher.n_jobs=2
}
[[ $stages == *odenet* ]] && { rm -rf "$out/odenet"; train -m train.keep_checkpoints=2 hydra.sweep.dir="$out/odenet"; }
[[ $stages == *latent* ]] && { rm -rf "$out/latent_ode"; train -m experiment=spiral_latent_ode train.keep_checkpoints=50 \
  hydra.sweep.dir="$out/latent_ode"; }
if [[ $stages == *gradcheck* ]]; then
  for run in "$out"/*/*/; do
    grep -q "^seed: 0$" "$run/.hydra/config.yaml" || continue
    tolerance=$(sed -n 's/^  rtol: //p' "$run/.hydra/config.yaml" | head -n 1)
    for kept in "$run"/checkpoint_epoch*.pt; do
      [[ -e $kept ]] || continue  # models kept by an earlier session are not committed
      epoch=$(basename "$kept" .pt)
      "$noderun" gradcheck "$kept" --tolerances "$tolerance" --batch-size 32 --out "$run/gradcheck/${epoch#checkpoint_}"
    done
  done
fi
if [[ $stages == *report* ]]; then
  for model in odenet latent_ode; do  # those that were run
    [[ -d $out/$model ]] || continue
    "$noderun" report "$out/$model" --group-by grad \
      --metrics status,test_error,test_rmse_extrap,nfe_forward,nfe_backward,saved_tensors_mb,epoch_time_s,wall_time_s
  done
  "${PYTHON:-.venv/bin/python}" experiments/grad_modes/report.py "$out"
fi
