"""Stacked-training benchmark: how many run-steps per second one device does when R runs of a config share a program.

  python benchmarks/stacked_train.py --config=configs/tiny.py [--stacks=1,2,4,6] [--steps=20] [--config.FIELD=VALUE]
  python benchmarks/stacked_train.py --study=configs/studies/gpu.py [--study_config=bdirnet] [--data_dir=D]

With --study, the runs are that study's runs of `--study_config` (its recipe, steps and training blurs; seeds
0..R-1), as `bdirnet_jax.study` resolves them; --config is ignored then.

For each stack size R, builds what bdirnet_jax/stacked_train.py trains (runs with seeds 0..R-1, training blur
families cycling through --blurs, their own input pipelines stacked on the host, the vmapped step), compiles it
(first step, excluded) and times `--steps` steps twice: the step alone on one stacked batch already on the device
(what the device can do) and the loop with its pipelines (what training gets). Prints one JSON line per R:
  runs, step_run_steps_per_s and loop_run_steps_per_s (runs x steps per second), speedup over R=1 of each,
  compile_s, host_ms_per_step (the loop's wait for its stacked batch).
No checkpoints are written. R=1 is the stacked program with one run, not train.py's step (equal work).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bdirnet_jax import input_pipeline  # noqa: E402
from bdirnet_jax import sharding as sharding_lib  # noqa: E402
from bdirnet_jax import stacked_train  # noqa: E402
from benchmarks import common  # noqa: E402

KEYS = ("runs", "step_run_steps_per_s", "loop_run_steps_per_s", "compile_s", "host_ms_per_step")


def run_configs(config, runs: int, blurs):
  """R copies of `config` that differ as a study's runs do: seed r, training blur blurs[r % len]."""
  out = []
  for r in range(runs):
    c = config.copy_and_resolve_references()
    c.seed = r
    if blurs and c.dataset.get("on_the_fly_blur"):
      c.dataset.blur_family = blurs[r % len(blurs)]
    out.append(c)
  return out


def measure(config, runs: int, steps: int = 20, blurs=("gaussian", "mixed")) -> dict:
  """One JSON row for a stack of `runs` runs of `config` (see the module doc)."""
  if steps < 2:
    raise ValueError(f"--steps must be >= 2, got {steps}")
  configs = run_configs(config, runs, blurs)
  stacked_train.check_stackable(configs)
  mesh = sharding_lib.create_mesh(config.mesh_shape)
  _, _, init, _, _, stack, step_fn, replicate = stacked_train.programs(config, mesh, runs)
  rngs = [jax.random.split(jax.random.key(c.seed)) for c in configs]
  state = stack(*[init(r[0]) for r in rngs])
  step_rngs = replicate(jnp.stack([r[1] for r in rngs]))
  batches = input_pipeline.prefetch_to_device(
    stacked_train.StackedIterator([input_pipeline.create_train_iterator(c) for c in configs]),
    config.dataset.get("prefetch", 2),
    stacked_train.batch_sharding(mesh),
  )
  t = time.perf_counter()
  fixed = next(batches)
  state, metrics = step_fn(state, fixed, step_rngs)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t

  def timed(get_batch):
    nonlocal state
    pending, waits = [], []
    t0 = time.perf_counter()
    for _ in range(steps):
      t = time.perf_counter()
      batch = get_batch()
      waits.append(time.perf_counter() - t)
      state, m = step_fn(state, batch, step_rngs)
      pending.append(m)
      if len(pending) >= 2:  # the loop's synchronisation: the previous step; the current one stays queued
        jax.block_until_ready(pending.pop(0)["loss"])
    jax.block_until_ready(pending)
    return time.perf_counter() - t0, 1e3 * sum(waits) / steps

  step_s, _ = timed(lambda: fixed)
  loop_s, host_ms = timed(lambda: next(batches))
  return dict(
    runs=runs,
    steps=steps,
    batch=int(config.batch_size),
    crop=int(config.dataset.crop_size),
    preset=str(config.model.preset),
    dtype=str(config.compute_dtype),
    devices=jax.device_count(),
    platform=jax.devices()[0].platform,
    device_kind=jax.devices()[0].device_kind,
    compile_s=round(compile_s, 2),
    step_run_steps_per_s=round(runs * steps / step_s, 3),
    loop_run_steps_per_s=round(runs * steps / loop_s, 3),
    host_ms_per_step=round(host_ms, 3),
    load_avg_1min=round(os.getloadavg()[0], 2),
    cpus=os.cpu_count(),
  )


def define_flags(values: flags.FlagValues) -> None:
  config_flags.DEFINE_config_file("config", "configs/tiny.py", "Training config file.", flag_values=values)
  config_flags.DEFINE_config_file("study", None, "Study config: time its runs instead of --config.", flag_values=values)
  flags.DEFINE_string("study_config", "bdirnet", "With --study: which of its configs.", flag_values=values)
  flags.DEFINE_string("data_dir", None, "With --study: TFDS data_dir of the training photos.", flag_values=values)
  flags.DEFINE_list("stacks", ["1", "2", "4", "6"], "Stack sizes (runs per program) to time.", flag_values=values)
  flags.DEFINE_integer("steps", 20, "Timed steps per stack size, step-only and loop each.", flag_values=values)
  flags.DEFINE_list(
    "blurs", ["gaussian", "mixed"], "Training blur families the runs cycle through.", flag_values=values
  )


def main(argv: list[str] | None = None) -> list[dict]:
  """The rows; `argv`: flags as a list (tests), None: the command line's (parsed by app.run)."""
  values = common.parse(define_flags, argv)
  rows, base = [], None
  config, name, blurs = values.config, values["config"].config_filename, tuple(values.blurs)
  if values.study is not None:
    from bdirnet_jax.study import plan  # pylint: disable=g-import-not-at-top

    blurs = tuple(values.study.train_blurs)
    config = plan.training_config(values.study, values.study_config, blurs[0], 0, values.data_dir)
    name = f"{values['study'].config_filename}:{values.study_config}"
  for runs in [int(s) for s in values.stacks]:
    row = measure(config, runs, values.steps, blurs)
    row["config"] = name
    base = base or (row if runs == 1 else None)
    if base:
      for key in ("step_run_steps_per_s", "loop_run_steps_per_s"):
        row[f"{key.split('_')[0]}_speedup_over_1"] = round(row[key] / base[key], 3)
    rows.append(common.emit(row))
  return rows


if __name__ == "__main__":
  common.run_script(define_flags, main)
