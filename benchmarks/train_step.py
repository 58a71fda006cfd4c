"""Train-step benchmark: compile time, median step time, images/s, model FLOPs, TFLOP/s and peak memory.

python benchmarks/train_step.py --config=configs/tiny.py [--steps=20] [--dtype=bfloat16] [--device-count=4]
python benchmarks/train_step.py --config=configs/tiny.py --device-count=4 --collectives
Prints one JSON line and a one-row table. `compile_s` is the time of `.lower(...).compile()` alone, measured before
the first step runs, so it is separate from `step_ms` (and includes no persistent-cache hit unless
JAX_COMPILATION_CACHE_DIR is set). `--compile-only` stops after compiling (a CPU proxy for compile time).
`--collectives` compiles the step and prints only `{"collectives": {...}}`: how many all-reduce, all-gather,
collective-permute, all-to-all and reduce-scatter instructions the compiled (optimised) HLO holds.
Step time is the median over `steps` steps after one warm-up, each synchronised with block_until_ready.

Model FLOPs come from XLA's cost analysis of the *unrolled* (scan=False) step, lowered but not compiled: a scanned
loop body is counted once by the cost analysis, and the compiled module's count depends on the backend's rewrites,
so neither measures the model. The compiled count is reported beside it as `xla_compiled_flops`.
"""

import argparse
import json
import os
import sys
import time


def main(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--config", default="configs/tiny.py")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--dtype", default=None)
  p.add_argument("--preset", default=None)
  p.add_argument("--batch_size", type=int, default=None)
  p.add_argument("--crop", type=int, default=None)
  p.add_argument("--device_count", "--device-count", type=int, default=None, help="fake CPU devices")
  p.add_argument("--collectives", action="store_true", help="print the compiled step's collective counts only")
  p.add_argument("--hlo_out", "--hlo-out", default=None, help="also write the compiled HLO text to this file")
  p.add_argument("--compile_only", "--compile-only", action="store_true", help="compile, report compile_s, stop")
  p.add_argument("--flops", type=float, default=None, help="model FLOPs per step, if known (skips counting them)")
  p.add_argument("--scan", default=None, choices=("true", "false"), help="override config.model.scan")
  p.add_argument("--remat", default=None, choices=("true", "false"), help="override config.model.remat")
  args = p.parse_args(argv)
  if args.device_count:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.device_count}"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import importlib.util

  import jax
  import numpy as np

  from bdirnet_jax import input_pipeline
  from bdirnet_jax import sharding as sharding_lib
  from bdirnet_jax import train
  from bdirnet_jax.train_step import jit_train_step

  spec = importlib.util.spec_from_file_location("cfg", args.config)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  if args.dtype:
    config.compute_dtype = args.dtype
  if args.preset:
    config.model.preset = args.preset
  if args.batch_size:
    config.batch_size = args.batch_size
  if args.crop:
    config.dataset.crop_size = args.crop
  if args.scan:
    config.model.scan = args.scan == "true"
  if args.remat:
    config.model.remat = args.remat == "true"
  mesh = sharding_lib.create_mesh(config.mesh_shape)
  init_rng, step_rng = jax.random.split(jax.random.key(0))
  model, tx, _, shardings, init = train.create_state(config, mesh, init_rng)
  state = init(init_rng)
  step = jit_train_step(model, tx, config, mesh, shardings)
  b, c = config.batch_size, config.dataset.crop_size
  rng = np.random.default_rng(0)
  batch = input_pipeline.make_global_batch(
    {
      "blurry": rng.integers(0, 255, (b, c, c, 3), dtype=np.uint8),
      "sharp": rng.integers(0, 255, (b, c, c, 3), dtype=np.uint8),
    },
    sharding_lib.batch_sharding(mesh),
  )
  t = time.perf_counter()
  compiled = step.lower(state, batch, step_rng).compile()
  compile_s = time.perf_counter() - t
  if args.hlo_out:
    with open(args.hlo_out, "w") as f:
      f.write(compiled.as_text())
  if args.collectives:
    out = {"collectives": count_collectives(compiled.as_text())}
    print(json.dumps(out))
    return out
  if args.compile_only:
    out = dict(
      config=args.config,
      preset=config.model.preset,
      dtype=config.compute_dtype,
      batch=b,
      crop=c,
      scan=bool(config.model.scan),
      remat=bool(config.model.remat),
      devices=jax.device_count(),
      platform=jax.devices()[0].platform,
      compile_s=round(compile_s, 2),
    )
    print(json.dumps(out))
    return out
  compiled_flops = _flops(compiled.cost_analysis())
  flops = args.flops
  if flops is None and config.model.scan:
    flops = model_flops(config, mesh, state, batch, step_rng)
  if flops is None:
    flops = _flops(step.lower(state, batch, step_rng).cost_analysis())
  state, m = compiled(state, batch, step_rng)
  jax.block_until_ready(m)
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    state, m = compiled(state, batch, step_rng)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  med = float(np.median(times))
  stats = jax.devices()[0].memory_stats() or {}
  out = dict(
    config=args.config,
    preset=config.model.preset,
    dtype=config.compute_dtype,
    batch=b,
    crop=c,
    scan=bool(config.model.scan),
    devices=jax.device_count(),
    platform=jax.devices()[0].platform,
    device_kind=jax.devices()[0].device_kind,
    jax_version=jax.__version__,
    compile_s=round(compile_s, 2),
    step_ms=round(med * 1e3, 2),
    images_per_s=round(b / med, 1),
    flops_per_step=flops,
    xla_compiled_flops=compiled_flops,
    tflops_per_s=round(flops / med / 1e12, 3) if flops else None,
    peak_bytes=stats.get("peak_bytes_in_use"),
  )
  print(json.dumps(out))
  print_table([out])
  return out


COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all", "reduce-scatter")


def count_collectives(hlo_text: str) -> dict[str, int]:
  """Collective instructions in an HLO module's text, by opcode; an async pair (`-start`/`-done`) counts once.

  Matches the opcode where it is applied (`= f32[..] all-reduce(`, `all-reduce-start(`), not instruction names
  (`%all-reduce.3 = ...`) or `-done` halves.
  """
  import re  # pylint: disable=g-import-not-at-top

  counts = {}
  for op in COLLECTIVES:
    counts[op] = len(re.findall(rf"\s{re.escape(op)}(?:-start)?\(", hlo_text))
  return counts


def _flops(cost):
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else None


def model_flops(config, mesh, state, batch, rng):
  """FLOPs of one step of the same model unrolled, from the lowered (pre-optimisation) HLO."""
  from bdirnet_jax import train  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.train_step import jit_train_step  # pylint: disable=g-import-not-at-top

  unrolled = config.copy_and_resolve_references()
  unrolled.model.scan = False
  unrolled.model.remat = False
  model, tx, abstract, shardings, _ = train.create_state(unrolled, mesh, rng)
  step = jit_train_step(model, tx, unrolled, mesh, shardings)
  return _flops(step.lower(abstract, batch, rng).cost_analysis())


def print_table(rows):
  header = (
    "preset",
    "dtype",
    "batch",
    "crop",
    "devices",
    "compile_s",
    "step_ms",
    "images_per_s",
    "tflops_per_s",
    "peak_GB",
  )
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for r in rows:
    peak = r.get("peak_bytes")
    values = [
      r["preset"],
      r["dtype"],
      r["batch"],
      r["crop"],
      r["devices"],
      r["compile_s"],
      r["step_ms"],
      r["images_per_s"],
      r["tflops_per_s"],
      round(peak / 1e9, 2) if peak else "n/a",
    ]
    print("| " + " | ".join(str(v) for v in values) + " |")


if __name__ == "__main__":
  main()
