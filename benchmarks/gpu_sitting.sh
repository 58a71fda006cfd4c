#!/usr/bin/env bash
# One GPU sitting of at most 8 minutes: installs the carried wheels, then runs benchmarks/run_all.py's plan with
# every row streamed to $OUT as it is measured. BENCHMARKS.md ("GPU sitting") says how to launch it with `run`.
#
#   bash benchmarks/gpu_sitting.sh            # on the GPU machine (OUT is set there)
#   OUT=/tmp/x bash benchmarks/gpu_sitting.sh --quick   # the same script's CPU path (tests/test_benchmarks.py)
#
# Env: OUT (default: a new temporary folder), BUDGET (seconds for run_all's plan, default 420), PYTHON (python3),
# WHEELS (folder of wheels to install first, default .whl; skipped when it holds none).
# Files in $OUT (at most 8 come back from the device tool): rows.jsonl (every row, skipped and failed ones with
# the reason, appended as measured), bench.json, bench.md, run_all.log, gpu.txt, and profile.perfetto.json.gz.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-420}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  # the GPU image lacks ml_collections and grain (and grain's own needs): carried as wheels
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { echo "installing the carried wheels failed" | tee "$OUT/run_all.log"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi: $(uname -a)") \
  > "$OUT/gpu.txt" 2>&1
"$PY" -c "import jax, flax, optax, ml_collections, grain; print('jax', jax.__version__, 'flax', flax.__version__)" \
  >> "$OUT/gpu.txt" 2>&1 || { cat "$OUT/gpu.txt"; echo "a package the benchmarks import is missing"; exit 1; }
PYTHONUNBUFFERED=1 timeout $((BUDGET + 40)) "$PY" benchmarks/run_all.py "$@" --budget="$BUDGET" \
  --jsonl="$OUT/rows.jsonl" --out="$OUT/bench.json" --md="$OUT/bench.md" 2>&1 | tee "$OUT/run_all.log"
status=$?
# the profile row's trace (Perfetto UI), if it was written and is small enough to come back
"$PY" - "$OUT" <<'PYEOF'
import json, os, shutil, sys
out = sys.argv[1]
for line in open(os.path.join(out, "rows.jsonl")) if os.path.exists(os.path.join(out, "rows.jsonl")) else ():
  row = json.loads(line)
  path = row.get("trace_file")
  if path and os.path.exists(path) and os.path.getsize(path) < 15e6:
    shutil.copy(path, os.path.join(out, "profile.perfetto.json.gz"))
PYEOF
exit $status
