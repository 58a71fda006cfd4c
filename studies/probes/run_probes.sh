#!/bin/bash
# Recipe probes for configs/studies/cpu.py (2026-11-27): can another recipe, at the same CPU time per run, make the
# runs trained on `mixed` learn more? BDIRNet (configs/default.py), trained on `mixed`, seed 0, the study's data
# (studies/cpu/tfds, built by the study). Judged ONLY by the training log's psnr - input_psnr (on-the-fly kernels
# over the training photos): no probe is scored on the study's test images. Run from the repository root, idle.
set -u
cd "$(dirname "$0")/../.."
common="--config=studies/probes/probe_config.py --config.seed=0 --config.dataset.on_the_fly_blur=True
 --config.dataset.blur_family=mixed --config.dataset.data_dir=studies/cpu/tfds --config.dataset.crop_size=64
 --config.dataset.kernel_size=15 --config.dataset.noise_sigma=0.01 --config.checkpoint_every_steps=100
 --config.log_every_steps=50 --config.optim.warmup_steps=20"
run() {
  local name=$1; shift
  local s; s=$(date +%s)
  # shellcheck disable=SC2086
  python main.py --mode=train --workdir="studies/probes/$name" $common "$@" > "studies/probes/$name.log" 2>&1
  echo "$name rc=$? wall=$(( $(date +%s) - s ))s" >> studies/probes/times.txt
}
run tiny_b8_900 --config.model.preset=tiny --config.batch_size=8 --config.num_train_steps=900 --config.optim.learning_rate=2e-3
run small_b8_300_lr4e-3 --config.model.preset=small --config.batch_size=8 --config.num_train_steps=300 --config.optim.learning_rate=4e-3
run small_b4_600 --config.model.preset=small --config.batch_size=4 --config.num_train_steps=600 --config.optim.learning_rate=2e-3
