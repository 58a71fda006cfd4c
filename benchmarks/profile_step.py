"""Where one train step's device time goes: a jax.profiler trace of a few steps, summarised to the top fusions.

python benchmarks/profile_step.py --config=configs/gopro.py [--dtype=bfloat16] [--steps=5] [--top=10]
       [--trace_dir=DIR]

Compiles the step (a persistent-cache hit when JAX_COMPILATION_CACHE_DIR holds it), runs two warm-up steps, traces
`--steps` more with `jax.profiler.trace(create_perfetto_trace=True)`, and sums the trace's device events by kernel
name. Prints one JSON line: the step time, the traced device time, and the top `--top` kernels with their total
and mean time, share of the device time, launches per step and a guess at what bounds each (`matmul` for
convolution/GEMM kernels, `memory` for loop/input fusions and copies, `launch` for kernels under 5 us). On a GPU
the events are the CUDA kernels on the device's streams; on a CPU (the `--quick` proxy) they are XLA's host ops.
"""

import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks import train_step  # noqa: E402

MATMUL_HINTS = ("gemm", "conv", "cudnn", "cublas", "cutlass", "matmul", "dot", "xmma", "sm90", "wgmma")
MEMORY_HINTS = ("fusion", "loop", "copy", "transpose", "reduce", "input", "memcpy", "memset", "scatter", "gather")


def define_flags(fv: flags.FlagValues) -> None:
  train_step.define_flags(fv)
  flags.DEFINE_integer("top", 10, "Kernels to report.", flag_values=fv)
  flags.DEFINE_string("trace_dir", None, "Keep the trace here (default: a temporary folder).", flag_values=fv)


def bound(name: str, mean_us: float) -> str:
  lower = name.lower()
  if any(h in lower for h in MATMUL_HINTS):
    return "matmul"
  if mean_us < 5.0:
    return "launch"
  if any(h in lower for h in MEMORY_HINTS):
    return "memory"
  return "other"


def summarise(events: list[dict], steps: int, top: int) -> dict:
  """Device events (name, dur in us) summed by name: the `top` longest, with shares and launches per step."""
  total = collections.Counter()
  count = collections.Counter()
  for e in events:
    total[e["name"]] += float(e["dur"])
    count[e["name"]] += 1
  device_us = sum(total.values())
  rows = []
  for name, us in total.most_common(top):
    mean = us / count[name]
    rows.append(
      dict(
        name=name,
        total_ms_per_step=round(us / 1e3 / steps, 3),
        mean_us=round(mean, 2),
        share=round(us / device_us, 4) if device_us else None,
        launches_per_step=round(count[name] / steps, 2),
        bound=bound(name, mean),
      )
    )
  return dict(
    device_ms_per_step=round(device_us / 1e3 / steps, 3),
    kernels_per_step=round(sum(count.values()) / steps, 1),
    distinct_kernels=len(total),
    top=rows,
  )


def device_events(trace: dict) -> list[dict]:
  """Complete events on the device's rows: a GPU's streams if the trace has any, else XLA's host-side ops."""
  names = {}
  for e in trace.get("traceEvents", []):
    if e.get("ph") == "M" and e.get("name") == "process_name":
      names[e["pid"]] = str(e.get("args", {}).get("name", ""))
  gpu = {pid for pid, n in names.items() if "/device:GPU" in n or "/device:gpu" in n.lower()}
  complete = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
  if gpu:
    return [e for e in complete if e["pid"] in gpu]
  # CPU backend: XLA's thunks/ops run on host threads; keep the HLO-named ones (fusions, convolutions, copies...)
  return [e for e in complete if any(h in e["name"].lower() for h in MATMUL_HINTS + MEMORY_HINTS)]


def main(argv=None):
  fv = common.parse(define_flags, argv)
  common.force_host_device_count(fv.device_count)
  import jax  # pylint: disable=g-import-not-at-top

  config = train_step.apply_overrides(train_step.load_config(fv.config), fv)
  step, state, batch, rng = train_step.build(config)
  t = time.perf_counter()
  compiled = step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - t
  for _ in range(2):
    state, m = compiled(state, batch, rng)
  jax.block_until_ready(m)
  trace_dir = fv.trace_dir or tempfile.mkdtemp(prefix="profile_step_")
  t = time.perf_counter()
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(fv.steps):
      state, m = compiled(state, batch, rng)
    jax.block_until_ready(m)
  wall = time.perf_counter() - t
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))
  if not files:
    raise FileNotFoundError(f"jax.profiler wrote no perfetto_trace.json.gz under {trace_dir}")
  with gzip.open(files[-1], "rt") as f:
    trace = json.load(f)
  device = jax.devices()[0]
  out = dict(
    bench="profile",
    config=fv.config,
    preset=config.model.preset,
    dtype=config.compute_dtype,
    batch=config.batch_size,
    crop=config.dataset.crop_size,
    platform=device.platform,
    device_kind=device.device_kind,
    jax_version=jax.__version__,
    compile_s=round(compile_s, 2),
    traced_steps=fv.steps,
    traced_ms_per_step=round(1e3 * wall / fv.steps, 2),
    trace_file=files[-1],
    **summarise(device_events(trace), fv.steps, fv.top),
  )
  common.emit(out)
  for r in out["top"]:
    logging.info(
      "%8.3f ms/step %5.1f%% x%-6g %-7s %s",
      r["total_ms_per_step"],
      100 * (r["share"] or 0),
      r["launches_per_step"],
      r["bound"],
      r["name"][:100],
    )
  return out


if __name__ == "__main__":
  common.run_script(define_flags, main)
