#!/usr/bin/env bash
# Continuous normalizing flows against planar flows (the paper's section 4), seed 0, the schedule of
# conf/train/toy2d.yaml: maximum likelihood on two circles and two moons (CNF of 64 units against 64
# planar layers), density matching at K = M = 2, 8, 32 on dataset.name=$DM_TARGETS, the reports, and the
# figures. Extra arguments go to every `noderun train`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/cnf/results
noderun=${NODERUN:-.venv/bin/noderun}
targets=${DM_TARGETS:-gaussians}
rm -rf "$out"
"$noderun" train -m experiment=cnf_circles,nf_circles,cnf_moons,nf_moons seed=0 train.progress=false \
    hydra.sweep.dir="$out/likelihood" "$@"
"$noderun" report "$out/likelihood" --metrics status,test_nll,test_nll_data,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
"$noderun" train -m experiment=dm_cnf model.width=2,8,32 dataset.name="$targets" seed=0 train.progress=false \
    hydra.sweep.dir="$out/matching_cnf" "$@"
"$noderun" train -m experiment=dm_nf model.layers=2,8,32 dataset.name="$targets" seed=0 train.progress=false \
    hydra.sweep.dir="$out/matching_nf" "$@"
"$noderun" report "$out" --metrics status,test_kl,train_loss,nfe_forward,nfe_backward,epoch_time_s,wall_time_s
"$noderun" flow-figures "$out"/likelihood/{0,1,2,3} --out "$out/figures/likelihood"
"$noderun" flow-figures "$out"/matching_cnf/* "$out"/matching_nf/* --out "$out/figures/matching"
