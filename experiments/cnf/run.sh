#!/usr/bin/env bash
# Continuous normalizing flows against planar flows (the paper's section 4), seeds 0, 1, 2, the schedule of
# conf/train/toy2d.yaml (1000 Adam steps; lr 1e-3 for the CNF, 1e-2 for the planar flow): maximum likelihood on
# two circles and two moons (a CNF of 64 units against 64 planar layers), density matching at K = M = 2, 8, 32
# against each target of $DM_TARGETS, two jobs side by side (joblib, one thread each), the reports (each run,
# and mean ± std over seeds), and the figures from seed 0's runs.
# STAGES picks parts: likelihood, matching, figures (default: all). Extra arguments go to every `noderun train`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/cnf/results
noderun=${NODERUN:-.venv/bin/noderun}
targets=${DM_TARGETS:-gaussians moons}
stages=${STAGES:-likelihood matching figures}
seeds=${SEEDS:-0,1,2}
jobs=${JOBS:-2}
train() {  # -m must come first
  "$noderun" train "$@" train.progress=false hydra/launcher=joblib hydra.launcher.n_jobs="$jobs"
}

if [[ $stages == *likelihood* ]]; then
  rm -rf "$out/likelihood"
  train -m experiment=cnf_circles,nf_circles,cnf_moons,nf_moons seed="$seeds" hydra.sweep.dir="$out/likelihood" "$@"
  metrics=status,test_nll,test_nll_data,steps,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
  "$noderun" report "$out/likelihood" --metrics "$metrics"
  "$noderun" report "$out/likelihood" --group-by experiment --metrics "$metrics"
fi
if [[ $stages == *matching* ]]; then
  for target in $targets; do
    rm -rf "$out/matching/$target"
    train -m experiment=dm_cnf model.width=2,8,32 dataset.name="$target" seed="$seeds" \
        hydra.sweep.dir="$out/matching/$target/cnf" "$@"
    train -m experiment=dm_nf model.layers=2,8,32 dataset.name="$target" seed="$seeds" \
        hydra.sweep.dir="$out/matching/$target/nf" "$@"
  done
  metrics=status,test_kl,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
  "$noderun" report "$out/matching" --metrics "$metrics"
  "$noderun" report "$out/matching" --group-by dataset.name,experiment,model.width,model.layers --metrics "$metrics"
fi
if [[ $stages == *figures* ]]; then
  per_config=$(( $(tr -cd , <<<"$seeds" | wc -c) + 1 ))  # jobs per configuration: seed varies fastest
  first() { local i; for ((i = 0; i < $1; i++)); do printf '%s ' "$2/$((i * per_config))"; done; }
  # shellcheck disable=SC2046
  "$noderun" flow-figures $(first 4 "$out/likelihood") --out "$out/figures/likelihood"
  for target in $targets; do
    # shellcheck disable=SC2046
    "$noderun" flow-figures $(first 3 "$out/matching/$target/cnf") $(first 3 "$out/matching/$target/nf") \
        --out "$out/figures/matching_$target"
  done
fi
