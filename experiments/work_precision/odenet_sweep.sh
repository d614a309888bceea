#!/usr/bin/env bash
# The ODE-Net on mnist5k (the default run: adjoint, 6 epochs) with each solver as README.md records it:
# euler and rk4 at step sizes 0.25 and 0.1, bosh3, dopri5 and tsit5 at rtol = atol = 1e-2 and 1e-4; seeds 0, 1;
# two runs side by side, one thread each. Then the table by solver and tolerance, and test error against NFE
# (`noderun report --plot`), one line per solver.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/work_precision/odenet
noderun=${NODERUN:-.venv/bin/noderun}
train() {  # -m must come first
  "$noderun" train "$@" seed=0,1 train.progress=false hydra/launcher=joblib hydra.launcher.n_jobs=2
}
rm -rf "$out"
train -m solver=euler,rk4 solver.step_size=0.25,0.1 hydra.sweep.dir="$out/fixed"
train -m solver=bosh3,dopri5,tsit5 solver.rtol=1e-2,1e-4 'solver.atol=${solver.rtol}' hydra.sweep.dir="$out/adaptive"
metrics=status,test_error,test_nfe_forward_mean,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
"$noderun" report "$out" --group-by solver,solver.rtol,solver.step_size --metrics "$metrics" \
  --plot nfe_forward test_error --hue solver
