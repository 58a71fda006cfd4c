"""Train-step benchmark: compile time, median step time, images/s, model FLOPs, TFLOP/s and peak memory.

python benchmarks/train_step.py --config=configs/tiny.py [--steps=20] [--dtype=bfloat16] [--device_count=4]
python benchmarks/train_step.py --config=configs/tiny.py --device_count=4 --collectives
Prints one JSON line and a one-row table. `compile_s` is `lower_s` (tracing to a jaxpr, `trace_s` of it, then
lowering to StableHLO) plus `xla_compile_s` (XLA's passes, and on a GPU its autotuning), both measured before the
first step runs, so they are separate from `step_ms`. With JAX_COMPILATION_CACHE_DIR set, a second process reads
the executable from the cache and `xla_compile_s` is the cache hit. `--compile_only` stops after compiling (a CPU
proxy for compile time).
`--collectives` compiles the step and prints only `{"collectives": {...}}`: how many all-reduce, all-gather,
collective-permute, all-to-all and reduce-scatter instructions the compiled (optimised) HLO holds.
Step time is the median over `steps` steps after one warm-up, each synchronised with block_until_ready.

Model FLOPs are counted for the CPU backend, whatever the backend that runs the step: the *unrolled* (scan=False,
remat=False) step is lowered against one CPU device (every jax install has the CPU backend) and XLA's cost analysis
of that lowered, unoptimised HLO is taken. A GPU backend's cost analysis may return nothing (it did on the H200 with
jax 0.11.2), a scanned loop body is counted once, and a compiled module's count depends on the backend's rewrites,
so none of those measures the model. If the CPU cost analysis also returns nothing, the convolutions and matmuls of
the step's jaxpr are counted instead (`flops_source` says which). The compiled count is reported beside it as
`xla_compiled_flops`.
"""

import os
import sys
import time

from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("config", "configs/tiny.py", "Config file with get_config().", flag_values=fv)
  flags.DEFINE_integer("steps", 20, "Timed steps after one warm-up.", flag_values=fv)
  flags.DEFINE_string("dtype", None, "Override config.compute_dtype.", flag_values=fv)
  flags.DEFINE_string("preset", None, "Override config.model.preset.", flag_values=fv)
  flags.DEFINE_integer("batch_size", None, "Override config.batch_size.", flag_values=fv)
  flags.DEFINE_integer("crop", None, "Override config.dataset.crop_size.", flag_values=fv)
  flags.DEFINE_integer("device_count", None, "Fake CPU devices.", flag_values=fv)
  flags.DEFINE_bool("collectives", False, "Print the compiled step's collective counts only.", flag_values=fv)
  flags.DEFINE_string("hlo_out", None, "Also write the compiled HLO text to this file.", flag_values=fv)
  flags.DEFINE_bool("compile_only", False, "Compile, report compile_s, stop.", flag_values=fv)
  flags.DEFINE_float("flops", None, "Model FLOPs per step, if known (skips counting them).", flag_values=fv)
  flags.DEFINE_bool(
    "count_flops",
    True,
    "Count model FLOPs (on the CPU backend) after the steps; off: run_all counts them apart.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "flops_only", False, "Only count the model FLOPs per step (CPU backend), print them, stop.", flag_values=fv
  )
  flags.DEFINE_enum("scan", None, ["true", "false"], "Override config.model.scan.", flag_values=fv)
  flags.DEFINE_enum("remat", None, ["true", "false"], "Override config.model.remat.", flag_values=fv)
  for alias, name in (("device-count", "device_count"), ("compile-only", "compile_only"), ("hlo-out", "hlo_out")):
    flags.DEFINE_alias(alias, name, flag_values=fv)


def load_config(path: str):
  import importlib.util  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config: no config file at {path!r}")
  spec = importlib.util.spec_from_file_location("bench_config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def apply_overrides(config, fv: flags.FlagValues):
  """The config with the command line's dtype, preset, batch, crop, scan and remat."""
  if fv.dtype:
    config.compute_dtype = fv.dtype
  if fv.preset:
    config.model.preset = fv.preset
  if fv.batch_size:
    config.batch_size = fv.batch_size
  if fv.crop:
    config.dataset.crop_size = fv.crop
  if fv.scan:
    config.model.scan = fv.scan == "true"
  if fv.remat:
    config.model.remat = fv.remat == "true"
  return config


def build(config):
  """(jitted step, initialised state, a random uint8 batch, step rng) over all devices."""
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np

  from bdirnet_jax import input_pipeline
  from bdirnet_jax import sharding as sharding_lib
  from bdirnet_jax import train
  from bdirnet_jax.train_step import jit_train_step

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
  return step, state, batch, step_rng


def main(argv=None):
  fv = common.parse(define_flags, argv)
  common.force_host_device_count(fv.device_count)
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np

  config = apply_overrides(load_config(fv.config), fv)
  if fv.flops_only:
    t = time.perf_counter()
    flops, source = model_flops(config)
    return common.emit(
      dict(
        bench="flops",
        config=fv.config,
        preset=config.model.preset,
        dtype=config.compute_dtype,
        batch=config.batch_size,
        crop=config.dataset.crop_size,
        flops_per_step=flops,
        flops_source=source,
        count_s=round(time.perf_counter() - t, 1),
        jax_version=jax.__version__,
      )
    )
  step, state, batch, step_rng = build(config)
  b, c = config.batch_size, config.dataset.crop_size
  t = time.perf_counter()
  traced = step.trace(state, batch, step_rng)
  trace_s = time.perf_counter() - t
  lowered = traced.lower()
  lower_s = time.perf_counter() - t
  t = time.perf_counter()
  compiled = lowered.compile()
  xla_compile_s = time.perf_counter() - t
  compile_s = lower_s + xla_compile_s
  if fv.hlo_out:
    with open(fv.hlo_out, "w") as f:
      f.write(compiled.as_text())
  if fv.collectives:
    return common.emit({"collectives": count_collectives(compiled.as_text())})
  device = jax.devices()[0]
  out = dict(
    config=fv.config,
    preset=config.model.preset,
    dtype=config.compute_dtype,
    batch=b,
    crop=c,
    scan=bool(config.model.scan),
    remat=bool(config.model.remat),
    devices=jax.device_count(),
    platform=device.platform,
    device_kind=device.device_kind,
    jax_version=jax.__version__,
    xla_flags=os.environ.get("XLA_FLAGS", ""),
    compilation_cache=bool(os.environ.get("JAX_COMPILATION_CACHE_DIR")),
    compile_s=round(compile_s, 2),
    trace_s=round(trace_s, 2),
    lower_s=round(lower_s, 2),
    xla_compile_s=round(xla_compile_s, 2),
  )
  if fv.compile_only:
    common.emit(out)
    return out
  compiled_flops = _flops(compiled.cost_analysis())
  if fv.flops:
    flops, source = fv.flops, "--flops"
  elif fv.count_flops:
    flops, source = model_flops(config)
  else:
    flops, source = None, "not counted here (--nocount_flops)"
  state, m = compiled(state, batch, step_rng)
  jax.block_until_ready(m)
  times = []
  for _ in range(fv.steps):
    t = time.perf_counter()
    state, m = compiled(state, batch, step_rng)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  med = float(np.median(times))
  stats = device.memory_stats() or {}
  out.update(
    step_ms=round(med * 1e3, 2),
    images_per_s=round(b / med, 1),
    flops_per_step=flops,
    flops_source=source,
    xla_compiled_flops=compiled_flops,
    tflops_per_s=round(flops / med / 1e12, 3) if flops else None,
    peak_bytes=stats.get("peak_bytes_in_use"),
  )
  common.emit(out)
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
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  return flops if flops > 0 else None


def abstract_step(config):
  """The unrolled train step jitted over one CPU device, and abstract (state, batch, rng) to lower it with."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp

  from bdirnet_jax import sharding as sharding_lib
  from bdirnet_jax import train
  from bdirnet_jax.train_step import jit_train_step

  unrolled = config.copy_and_resolve_references()
  unrolled.model.scan = False
  unrolled.model.remat = False
  mesh = sharding_lib.create_mesh((1, 1), devices=jax.devices("cpu")[:1])
  rng = jax.random.key(0)
  model, tx, abstract, shardings, _ = train.create_state(unrolled, mesh, rng)
  step = jit_train_step(model, tx, unrolled, mesh, shardings)
  b, c = config.batch_size, config.dataset.crop_size
  image = jax.ShapeDtypeStruct((b, c, c, 3), jnp.uint8, sharding=sharding_lib.batch_sharding(mesh))
  key = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=sharding_lib.replicated(mesh))
  return step, (abstract, {"blurry": image, "sharp": image}, key)


def model_flops(config) -> tuple[float | None, str]:
  """(FLOPs of one unrolled train step, how they were counted), on the CPU backend whatever runs the step."""
  import jax  # pylint: disable=g-import-not-at-top

  step, args = abstract_step(config)
  flops = _flops(step.lower(*args).cost_analysis())
  if flops:
    return flops, "xla_cost_analysis_cpu"
  logging.warning("the CPU cost analysis returned no FLOPs: counting the jaxpr's convolutions and matmuls")
  return jaxpr_matmul_flops(jax.make_jaxpr(step)(*args).jaxpr), "jaxpr_conv_dot"


def jaxpr_matmul_flops(jaxpr) -> float:
  """2 x multiply-adds of every convolution and dot_general in a jaxpr and its sub-jaxprs (scan bodies x length).

  Elementwise work is left out. Measured against XLA's CPU count of the same unrolled step: 0.97x (tiny), 1.02x
  (BDIRNet-base and the U-Net baseline at base), so it stands in for it when no cost analysis answers.
  """
  import math  # pylint: disable=g-import-not-at-top

  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    elif name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) / rhs[out_feature_dim]
    times = eqn.params.get("length", 1) if name == "scan" else 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          total += times * jaxpr_matmul_flops(inner)
  return total


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
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
    lines.append("| " + " | ".join(str(v) for v in values) + " |")
  logging.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
  common.run_script(define_flags, main)
