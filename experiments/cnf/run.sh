#!/usr/bin/env bash
# Continuous normalizing flows against planar flows (the paper's section 4), seed 0, the schedule of
# conf/train/toy2d.yaml (1000 Adam steps): maximum likelihood on two circles and two moons (a CNF of
# 64 units against 64 planar layers, and the planar flow again with 5x the steps and data), density matching
# at K = M = 2, 8, 32 against each target of $DM_TARGETS, the reports, and the figures.
# STAGES picks parts: likelihood, matching, figures (default: all). Extra arguments go to every `noderun train`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/cnf/results
noderun=${NODERUN:-.venv/bin/noderun}
targets=${DM_TARGETS:-gaussians moons}
stages=${STAGES:-likelihood matching figures}
train() { "$noderun" train "$@" seed=0 train.progress=false; }  # -m must come first

if [[ $stages == *likelihood* ]]; then
  rm -rf "$out/likelihood"
  train -m experiment=cnf_circles,nf_circles,cnf_moons,nf_moons hydra.sweep.dir="$out/likelihood" "$@"
  train -m experiment=nf_moons dataset.n_train=51200 hydra.sweep.dir="$out/likelihood/long" "$@"  # 5x the steps
  "$noderun" report "$out/likelihood" --metrics status,test_nll,test_nll_data,steps,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
fi
if [[ $stages == *matching* ]]; then
  for target in $targets; do
    rm -rf "$out/matching/$target"
    train -m experiment=dm_cnf model.width=2,8,32 dataset.name="$target" hydra.sweep.dir="$out/matching/$target/cnf" "$@"
    train -m experiment=dm_nf model.layers=2,8,32 dataset.name="$target" hydra.sweep.dir="$out/matching/$target/nf" "$@"
  done
  "$noderun" report "$out/matching" --metrics status,test_kl,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
fi
if [[ $stages == *figures* ]]; then
  "$noderun" flow-figures "$out"/likelihood/{0,1,2,3} --out "$out/figures/likelihood"
  for target in $targets; do
    "$noderun" flow-figures "$out/matching/$target"/cnf/{0,1,2} "$out/matching/$target"/nf/{0,1,2} \
        --out "$out/figures/matching_$target"
  done
fi
