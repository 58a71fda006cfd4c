#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what the GPU sitting of the GPU study carries: the wheels the device image lacks
# (.whl/) and the study's training photos as a prepared TFDS dataset (.tfds_gpu/), since building one needs
# TensorFlow, which cannot be carried. Both folders are git-ignored; name them in the device call's `carry`.
# Usage, from the repository root:  bash studies/gpu/prepare_device_call.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
grep -qx '/.tfds_gpu/' .git/info/exclude 2>/dev/null || echo /.tfds_gpu/ >> "$(git rev-parse --git-path info/exclude)"

# The device image (KINDS.md) has jax, flax, optax, orbax, etils, absl, numpy, scipy, scikit-image, protobuf,
# psutil, pyarrow, requests, tqdm, wrapt, attrs, cloudpickle, pyyaml, packaging, six; these it lacks (versions as
# pinned in requirements.txt / installed here).
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 dm-tree==0.1.10 portpicker==1.6.0 \
  importlib_resources==7.1.0 clu==0.0.12 tensorflow-datasets==4.9.10 immutabledict==4.3.1 promise==2.3 \
  simple-parsing==0.1.9 docstring-parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 \
  termcolor==3.3.0 toml==0.10.2

# synthetic_blur/gaussian_k15 (the study's source of sharp training photos, config.dataset.config), train split
# only: the study makes its own test sets from the held-out photos.
rm -rf .tfds_gpu/build && mkdir -p .tfds_gpu/build
"$PY" -c "
import sys
from configs.studies import gpu
from bdirnet_jax import input_pipeline
from bdirnet_jax.study import plan
cfg = plan.training_config(gpu.get_config(), 'bdirnet', 'gaussian', 0, sys.argv[1])
input_pipeline.open_source(cfg.dataset)
" .tfds_gpu/build
src=$(dirname "$(find .tfds_gpu/build -name dataset_info.json | head -1)")
dst=.tfds_gpu/data/${src#.tfds_gpu/build/}
mkdir -p "$dst"
cp "$src"/*.json "$dst"/
cp "$src"/*-train.array_record-* "$dst"/
rm -rf .tfds_gpu/build
du -sh .whl .tfds_gpu
