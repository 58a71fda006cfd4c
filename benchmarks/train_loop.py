"""Training-loop benchmark: does the loop keep the device busy, or does it wait on the host?

  python benchmarks/train_loop.py --config=configs/default.py [--steps=60] [--config.FIELD=VALUE]

Runs the training loop's own pieces (train.create_state, input_pipeline.create_train_iterator, prefetch_to_device,
jit_train_step, the progress hook and the metric writer, as bdirnet_jax/train.py; no checkpoints) for `--steps`
steps, and the same compiled step alone on one batch already on the device for `--steps` steps, half before and
half after the loop (so a drifting machine load hits both alike). Both exclude compilation and the first step.

Prints one JSON line:
  loop_steps_per_s, step_steps_per_s, ratio (= loop / step-only: 1.0 means the host costs nothing),
  host_ms_per_step (mean time the loop waits for its next batch),
  host_breakdown_ms: per step (one batch), timed serially in this thread on the pipeline's own source and transform:
    decode (reading records from the source), crop_augment, kernel_sampling, transfer (host -> device, synchronised),
    dispatch (returning from the jitted step call, measured in the step-only phase).
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bdirnet_jax import input_pipeline  # noqa: E402
from bdirnet_jax import sharding as sharding_lib  # noqa: E402
from bdirnet_jax import train  # noqa: E402
from bdirnet_jax import writers  # noqa: E402
from bdirnet_jax.train_step import jit_train_step  # noqa: E402

KEYS = ("loop_steps_per_s", "step_steps_per_s", "ratio", "host_ms_per_step", "host_breakdown_ms")
BREAKDOWN = ("decode", "crop_augment", "kernel_sampling", "transfer", "dispatch")


def _host_breakdown(config, mesh, steps: int) -> dict:
  """Per-batch host cost of each pipeline stage, timed serially (ms per step); decode also counts the source's own
  work (a cache, if the source keeps one, is warmed by the first pass over the indices, as in training)."""
  source = input_pipeline.train_source(config)
  transform = input_pipeline.TrainTransform(config.dataset)
  sharding = sharding_lib.batch_sharding(mesh)
  local_bs = input_pipeline.local_batch_size(config.batch_size, jax.process_count())
  rng = np.random.default_rng(0)
  order = np.random.default_rng(1).integers(0, len(source), size=(steps, local_bs))
  totals = dict.fromkeys(BREAKDOWN[:-1], 0.0)
  for indices in order:
    crops = []
    for i in indices:
      t = time.perf_counter()
      record = source[int(i)]
      totals["decode"] += time.perf_counter() - t
      t = time.perf_counter()
      example = transform.crop_augment(record, rng)
      totals["crop_augment"] += time.perf_counter() - t
      if transform.on_the_fly:
        t = time.perf_counter()
        example["kernel"] = transform.sample_kernel(rng)
        totals["kernel_sampling"] += time.perf_counter() - t
      crops.append(example)
    local = {k: np.stack([c[k] for c in crops]) for k in crops[0]}
    t = time.perf_counter()
    jax.block_until_ready(input_pipeline.make_global_batch(local, sharding))
    totals["transfer"] += time.perf_counter() - t
  return {k: 1e3 * v / steps for k, v in totals.items()}


def measure(config, steps: int = 60) -> dict:
  """Loop and step-only throughput of `config` (see the module doc); returns the JSON row."""
  if steps < 2:
    raise ValueError(f"--steps must be >= 2, got {steps}")
  mesh = sharding_lib.create_mesh(config.mesh_shape)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  model, tx, _, state_shardings, init = train.create_state(config, mesh, init_rng)
  batches = input_pipeline.prefetch_to_device(
    input_pipeline.create_train_iterator(config),
    config.dataset.get("prefetch", 2),
    sharding_lib.batch_sharding(mesh),
  )
  state = init(init_rng)
  step_fn = jit_train_step(model, tx, config, mesh, state_shardings)
  step_rng = jax.jit(lambda key: key, out_shardings=sharding_lib.replicated(mesh))(step_rng)

  t = time.perf_counter()
  fixed = next(batches)
  state, metrics = step_fn(state, fixed, step_rng)  # compile + first step: excluded
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - t

  dispatch = []

  def step_only(n):
    nonlocal state
    pending = []
    t0 = time.perf_counter()
    for _ in range(n):
      t = time.perf_counter()
      state, m = step_fn(state, fixed, step_rng)
      dispatch.append(time.perf_counter() - t)
      pending.append(m)
      if len(pending) >= 2:  # the loop's own synchronisation: the previous step, the current one stays queued
        jax.block_until_ready(pending.pop(0)["loss"])
    jax.block_until_ready(pending)
    return time.perf_counter() - t0

  with tempfile.TemporaryDirectory() as logdir:
    writer = writers.create_writer(logdir, jax.process_index())
    hook = writers.ReportProgress(num_train_steps=steps + 1, writer=writer, every_steps=config.log_every_steps)
    step_s = step_only(steps // 2)
    # The loop of train._train, without checkpoints: next batch, step, wait for the previous step, hooks, and every
    # log_every_steps a device_get of the pending metrics and a write of their means.
    waits, pending, step = [], [], 1
    t0 = time.perf_counter()
    for _ in range(steps):
      t = time.perf_counter()
      batch = next(batches)
      waits.append(time.perf_counter() - t)
      state, m = step_fn(state, batch, step_rng)
      step += 1
      pending.append(m)
      if len(pending) >= 2:
        jax.block_until_ready(pending[-2]["loss"])
        hook(step - 1)
      if step % config.log_every_steps == 0:
        fetched = jax.device_get(pending)
        pending = []
        hook(step)
        writer.write_scalars(step, {k: float(np.mean([f[k] for f in fetched])) for k in fetched[0]})
    jax.block_until_ready(pending)
    loop_s = time.perf_counter() - t0
    step_s += step_only(steps - steps // 2)
    writer.flush()

  breakdown = _host_breakdown(config, mesh, min(steps, 20))
  breakdown["dispatch"] = 1e3 * float(np.mean(dispatch))
  loop_rate, step_rate = steps / loop_s, steps / step_s
  return dict(
    config=None,
    steps=steps,
    batch=int(config.batch_size),
    crop=int(config.dataset.crop_size),
    preset=str(config.model.preset),
    blur_family=str(config.dataset.get("blur_family")) if config.dataset.get("on_the_fly_blur") else None,
    devices=jax.device_count(),
    platform=jax.devices()[0].platform,
    first_step_s=round(first_step_s, 2),
    loop_steps_per_s=round(loop_rate, 4),
    step_steps_per_s=round(step_rate, 4),
    ratio=round(loop_rate / step_rate, 4),
    host_ms_per_step=round(1e3 * float(np.mean(waits)), 3),
    host_breakdown_ms={k: round(breakdown[k], 3) for k in BREAKDOWN},
    load_avg_1min=round(os.getloadavg()[0], 2),
    cpus=os.cpu_count(),
  )


_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Training config file with get_config().")
_STEPS = flags.DEFINE_integer("steps", 60, "Steps timed in the loop and (as many) in the step-only run.")


def main(argv):
  del argv
  config = _CONFIG.value
  logging.info("Timing %d loop steps and %d step-only steps", _STEPS.value, _STEPS.value)
  row = measure(config, _STEPS.value)
  row["config"] = flags.FLAGS["config"].config_filename
  print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
