#!/usr/bin/env bash
# Regularised training as recorded in README.md: the ODE-Net on mnist5k (the default run: dopri5 at 1e-3,
# adjoint, 6 epochs) and the moons CNF (experiment=cnf_moons: dopri5 at 1e-5, adjoint, 1000 Adam steps),
# each without a regulariser, with the kinetic energy, the Jacobian norm, both (RNODE) and STEER's random
# end time; seeds 0, 1, 2; two runs side by side, one thread each. Then the tables (mean ± std over seeds,
# `noderun report --group-by`) and the figures (report.py).
# STAGES picks parts: odenet, cnf, report (default: all); SEEDS the seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/regularization/results
noderun=${NODERUN:-.venv/bin/noderun}
python=${PYTHON:-.venv/bin/python}
stages=${STAGES:-odenet cnf report}
seeds=${SEEDS:-0 1 2}

# name|overrides: the ODE-Net's weights suit its ∫‖f‖² of ~1,400 per sample at initialisation (2,304 features);
# the CNF's are RNODE's (2-D state)
odenet=("none|" "kinetic|regularizer=kinetic regularizer.kinetic=1e-4" "jacobian|regularizer=jacobian regularizer.jacobian=1e-4"
        "rnode|regularizer=rnode regularizer.kinetic=1e-4 regularizer.jacobian=1e-4" "steer|train.end_time_jitter=0.5"
        "kinetic_strong|regularizer=kinetic regularizer.kinetic=1e-3")
cnf=("none|" "kinetic|regularizer=kinetic" "jacobian|regularizer=jacobian" "rnode|regularizer=rnode"
     "steer|train.end_time_jitter=5.0")

run_lines() {  # model preset name|overrides ...: one line per run: folder, then its overrides
  local model=$1 preset=$2; shift 2
  for seed in $seeds; do
    for variant in "$@"; do
      echo "$out/$model/${variant%%|*}/seed$seed $preset ${variant#*|} seed=$seed"
    done
  done
}
train_one() {
  local folder=$1; shift
  rm -rf "$folder"
  "$noderun" train "$@" threads=1 train.progress=false hydra.run.dir="$folder" > /dev/null 2>&1 \
    || echo "failed: $folder" >&2
}
export -f train_one
export noderun

runs=()
[[ $stages == *odenet* ]] && mapfile -t -O "${#runs[@]}" runs < <(run_lines odenet "" "${odenet[@]}")
[[ $stages == *cnf* ]] && mapfile -t -O "${#runs[@]}" runs < <(run_lines cnf experiment=cnf_moons "${cnf[@]}")
if (( ${#runs[@]} )); then
  printf '%s\n' "${runs[@]}" | xargs -P 2 -L 1 bash -c 'train_one "$@"' _
fi

if [[ $stages == *report* ]]; then
  keys=regularizer.kinetic,regularizer.jacobian,train.end_time_jitter
  costs=test_nfe_forward_mean,nfe_forward,nfe_backward,reg_kinetic,reg_jacobian,epoch_time_s,wall_time_s
  for model in odenet cnf; do  # those that were run
    headline=$([[ $model == odenet ]] && echo test_error || echo test_nll)
    if [[ -d $out/$model ]]; then
      "$noderun" report "$out/$model" --group-by "$keys" --metrics "status,$headline,$costs" > /dev/null
    fi
  done
  "$python" experiments/regularization/report.py "$out"
fi
