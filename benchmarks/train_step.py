"""Train-step benchmark: compile time, median step time, images/s and XLA-counted FLOPs for a config.

python benchmarks/train_step.py --config=configs/tiny.py [--steps=20] [--dtype=bfloat16] [--device_count=4]
Prints one JSON line. Step time is the median over `steps` steps after one warm-up, each synchronised with
block_until_ready.
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
  p.add_argument("--device_count", type=int, default=None, help="fake CPU devices")
  args = p.parse_args(argv)
  if args.device_count:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.device_count}"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import importlib.util
  import jax
  import numpy as np
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
  mesh = sharding_lib.create_mesh(config.mesh_shape)
  init_rng, step_rng = jax.random.split(jax.random.key(0))
  model, tx, _, shardings, init = train.create_state(config, mesh, init_rng)
  state = init(init_rng)
  step = jit_train_step(model, tx, config, mesh, shardings)
  b, c = config.batch_size, config.dataset.crop_size
  rng = np.random.default_rng(0)
  batch = sharding_lib.global_batch({"blurry": rng.integers(0, 255, (b, c, c, 3), dtype=np.uint8),
                                     "sharp": rng.integers(0, 255, (b, c, c, 3), dtype=np.uint8)}, mesh)
  t = time.perf_counter()
  compiled = step.lower(state, batch, step_rng).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
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
  out = dict(config=args.config, preset=config.model.preset, dtype=config.compute_dtype, batch=b, crop=c,
             devices=jax.device_count(), platform=jax.devices()[0].platform, compile_s=round(compile_s, 2),
             step_ms=round(med * 1e3, 2), images_per_s=round(b / med, 1), flops_per_step=flops,
             tflops_per_s=round(flops / med / 1e12, 3), peak_bytes=stats.get("peak_bytes_in_use"))
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
