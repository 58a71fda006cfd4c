#!/usr/bin/env bash
# The GPU sitting of `python -m bdirnet_jax.study --study=configs/studies/gpu.py`, in one device call (docs/STUDY.md,
# "The GPU study in one sitting"). First, here: bash studies/gpu/prepare_device_call.sh. Then one `run` call with
# carry=[".whl", ".tfds_gpu"], timeout_s=600 and the command `bash studies/gpu/run_on_device.sh`.
#
# It installs the carried wheels (no TensorFlow: training reads the carried, prepared synthetic_blur ArrayRecords),
# continues the study from its committed run records in studies/gpu/ (finished runs are neither retrained nor
# rescored), stops starting runs after STUDY_BUDGET_S so the call ends inside its limit, and returns what a study
# commits as one archive: $OUT/gpu_study.tar.gz (runs/*/config.json, runs/*/study_scores.json, baseline_scores.json,
# report.md/csv/png) plus $OUT/study.log, $OUT/nvidia-smi.txt and $OUT/gpu_util.csv (utilisation every 5 s). Unpack
# it over studies/gpu/ and commit. configs/studies/gpu.py stacks the 6 runs of each config (study.stack_runs).
#
# The same path on a CPU, as a smoke test (no wheels, the smoke study, from scratch):
#   OUT=/tmp/out PYTHON=.venv/bin/python WHEELS=0 STUDY=configs/studies/smoke.py STUDY_DIR=none \
#     DATA_DIR=/tmp/out/tfds bash studies/gpu/run_on_device.sh
set -uo pipefail
OUT="${OUT:-/tmp/gpu_out}"
PYTHON="${PYTHON:-python3}"
STUDY="${STUDY:-configs/studies/gpu.py}"
STUDY_DIR="${STUDY_DIR:-studies/gpu}"  # committed run records to continue from ("none": start empty)
DATA_DIR="${DATA_DIR:-$PWD/.tfds_gpu/data}"
STUDY_BUDGET_S="${STUDY_BUDGET_S:-540}"
mkdir -p "$OUT"
if [ "${WHEELS:-1}" = 1 ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.txt" 2>&1
cat "$OUT/nvidia-smi.txt"

WORK=/tmp/gpu_study
rm -rf "$WORK" && mkdir -p "$WORK"
if [ "$STUDY_DIR" != none ]; then cp -r "$STUDY_DIR"/. "$WORK"/; fi
# Optional (STACK_BENCH=1, ~1-2 min of the sitting): run-steps per second of 1 and 6 stacked runs of the study's
# bdirnet recipe (benchmarks/stacked_train.py), one JSON line each in $OUT/stacked_bench.jsonl.
if [ "${STACK_BENCH:-0}" = 1 ]; then
  timeout -k 10 "${STACK_BENCH_S:-150}" "$PYTHON" benchmarks/stacked_train.py --study="$STUDY" --data_dir="$DATA_DIR" \
    --stacks=1,6 --steps=30 2>"$OUT/stacked_bench.log" | tee "$OUT/stacked_bench.jsonl"
fi
# Device utilisation and memory every 5 s while the study runs (the answer to "does it fill the GPU?").
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_util.csv" 2>/dev/null &
util_pid=$!
# The study resumes, so a cut run is finished by the next sitting; SIGTERM makes the training loop save and stop.
timeout -s TERM -k 20 "$STUDY_BUDGET_S" "$PYTHON" -m bdirnet_jax.study --study="$STUDY" --output="$WORK" \
  --data_dir="$DATA_DIR" 2>&1 | tee "$OUT/study.log"
rc=${PIPESTATUS[0]}
kill "$util_pid" 2>/dev/null
# Reports of the runs finished so far, even if the budget cut the study short.
if [ "$rc" -ne 0 ]; then
  timeout 120 "$PYTHON" -m bdirnet_jax.study --study="$STUDY" --output="$WORK" --data_dir="$DATA_DIR" --report_only \
    2>&1 | tail -5 | tee -a "$OUT/study.log"
fi
(cd "$WORK" && tar czf "$OUT/gpu_study.tar.gz" --exclude='runs/*/checkpoints' --exclude='runs/*/eval' \
  --exclude='runs/*/events.out.tfevents.*' --exclude='jax_cache' --exclude='tfds' \
  report.md report.csv report_psnr.png baseline_scores.json runs)
grep -E "study: (trained|.* score|done)" "$OUT/study.log" | tail -80
echo "study exit code $rc"
exit "$rc"
