"""The training loop: owns the mesh, state, checkpoints, metric writers and the input iterator."""

import collections
import copy
import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import input_pipeline
from bdirnet_jax import losses
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import writers
from bdirnet_jax.models import create_model
from bdirnet_jax.train_state import TrainState
from bdirnet_jax.train_state import create_optimizer
from bdirnet_jax.train_state import create_train_state
from bdirnet_jax.train_state import learning_rate_schedule
from bdirnet_jax.train_state import params_kind
from bdirnet_jax.train_state import schedule_steps
from bdirnet_jax.train_step import jit_train_step


class NonFiniteError(FloatingPointError):
  """Raised when config.nan_policy == 'stop' and a step had a non-finite loss or gradient."""


def _saving(manager, action):
  """Runs `action` (a save, or a check of the earlier asynchronous ones), turning a failed save into
  checkpoint.CheckpointSaveError naming the cause and the complete checkpoints (orbax re-raises the background
  thread's error as is, from whichever later call notices it)."""
  try:
    return action()
  except Exception as e:  # pylint: disable=broad-except
    complete = checkpoint.complete_steps(manager.directory)
    raise checkpoint.CheckpointSaveError(
      f"saving a checkpoint in {manager.directory} failed: {e}. Complete checkpoints there: steps {complete} "
      "(rerun the same command to resume from the last one, once the cause is fixed)."
    ) from e


class _Preemption:
  """SIGTERM (preemption) as the step at which the loop saves and stops.

  Several processes: jax.distributed.initialize has installed jax's own SIGTERM notifier, and orbax's
  `reached_preemption` (jax's preemption sync point) turns True on every process at the same step, so all of them
  save that step and stop together; a handler of ours would replace jax's. One process has no coordination service,
  hence no notifier: a handler turns SIGTERM into a flag read between steps, installed from the start so that a
  SIGTERM during restore or compilation still ends in a save.
  """

  def __init__(self):
    self.stopped = False
    self._signalled = False
    self._previous = None
    self._synced = False

  def __enter__(self):
    self._synced = jax.process_count() > 1
    if not self._synced and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint at the current step, then exiting.", signum)
    self._signalled = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def reached(self, step: int, manager) -> bool:
    """Whether to save `step` and stop; with several processes every process must ask at every step."""
    if not self._synced:
      self.stopped = self._signalled
    elif manager.reached_preemption(step):
      logging.warning("Preemption notice: every process saves step %d, then exits.", step)
      self.stopped = True
    return self.stopped


def init_state_fn(model, tx, config):
  """rng -> TrainState; traced once under jit so params are created directly with their shardings."""
  size = max(config.dataset.crop_size, model.downsample_factor * 2) if config.dataset.crop_size else 64
  dummy = jnp.zeros((1, size, size, 3), jnp.float32)

  def init(rng):
    if losses.needs_sharp_view(config.loss):
      variables = model.init(rng, dummy, dummy)
    else:
      variables = model.init(rng, dummy, method=model.deblur)
    return create_train_state(variables["params"], tx)

  return init


def create_state(config, mesh, rng):
  """(model, tx, abstract_state, state_shardings, init_fn)."""
  model = create_model(config.model, config.compute_dtype)
  tx = create_optimizer(config)
  init = init_state_fn(model, tx, config)
  abstract = jax.eval_shape(init, rng)
  shardings = sharding_lib.state_sharding(abstract, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return model, tx, abstract, shardings, jax.jit(init, out_shardings=shardings)


# Fields that never enter the compiled init and train programs (the seed and data order arrive as arguments or
# batches; the rest is the loop's bookkeeping). Of config.dataset only these shape the step: the crop (init's
# dummy input) and the noise the device adds; every other dataset field changes batches, not the program.
RUN_ONLY_FIELDS = (
  "seed",
  "init_from",
  "checkpoint_every_steps",
  "log_every_steps",
  "eval_every_steps",
  "keep_checkpoints",
  "async_checkpointing",
  "nan_policy",
  "profile_steps",
  "eval_datasets",
  "eval_num_grid_images",
)
PROGRAM_DATASET_FIELDS = ("crop_size", "noise_sigma")
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 8  # configs whose compiled programs stay in memory (a study cycles through its configs, seed-major)


def program_key(config: ml_collections.ConfigDict) -> str:
  """The part of `config` the compiled programs depend on, as a string: two runs with equal keys (e.g. a study's
  seeds and training blurs of one config) run the same programs."""
  d = json.loads(config.to_json_best_effort())
  for key in RUN_ONLY_FIELDS:
    d.pop(key, None)
  if (d.get("optim") or {}).get("schedule_steps") is not None:
    d.pop("num_train_steps", None)  # the horizon is schedule_steps then
  d["dataset"] = {k: (d.get("dataset") or {}).get(k) for k in PROGRAM_DATASET_FIELDS}
  return json.dumps(d, sort_keys=True)


def _identity(x):
  return x


def programs(config, mesh, init_rng):
  """(model, tx, abstract_state, state_shardings, init, step_fn, replicate): built once per program key and mesh in
  a process, so later runs of one config reuse the jitted (and already compiled) init and train step."""
  key = (program_key(config), mesh)
  hit = _PROGRAMS.get(key)
  if hit is not None:
    _PROGRAMS.move_to_end(key)
    logging.info("Reusing the compiled programs of an earlier run of this config in this process")
    return hit
  model, tx, abstract, shardings, init = create_state(config, mesh, init_rng)
  step_fn = jit_train_step(model, tx, config, mesh, shardings)
  # Not device_put: with several processes the mesh holds devices this process cannot address.
  replicate = jax.jit(_identity, out_shardings=sharding_lib.replicated(mesh))
  hit = _PROGRAMS[key] = (model, tx, abstract, shardings, init, step_fn, replicate)
  while len(_PROGRAMS) > _MAX_PROGRAMS:
    _PROGRAMS.popitem(last=False)
  return hit


def prepare_workdir(workdir) -> str:
  """The absolute workdir, created; a path that is a file fails in seconds, not at the first checkpoint an hour
  later (orbax refuses relative paths)."""
  path = os.path.abspath(os.path.expanduser(str(workdir)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise config_validation.ConfigError(f"--workdir={workdir} is an existing file, not a directory")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise config_validation.ConfigError(f"--workdir={workdir} cannot be created: {e}") from None
  return path


def check_writable(path: str) -> None:
  """Writes and removes a probe file, before anything is compiled. The directory's times are put back, so a run
  refused later (a checkpoint of another model) leaves the workdir exactly as it was."""
  try:
    before = os.stat(path)
    probe = os.path.join(path, f".write_probe_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
  except OSError as e:
    raise config_validation.ConfigError(f"--workdir={path} is not a writable directory: {e}") from None


def fix_schedule_horizon(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """A copy of `config` whose `optim.schedule_steps` is the horizon the run started with.

  A new run fixes it to `num_train_steps` (unless set); a resumed run reads it from its config.json, so raising
  `num_train_steps` later extends training at the schedule's final rate instead of re-shaping the whole schedule
  (which made the rate jump, e.g. from 1e-6 back to 5e-4).
  """
  config = copy.deepcopy(config)
  requested = config.optim.get("schedule_steps", None)
  saved = None
  if checkpoint.has_checkpoints(workdir) and checkpoint.config_path(workdir).exists():
    old = checkpoint.load_config(workdir)
    saved = old.optim.get("schedule_steps", None) or old.get("num_train_steps", None)
  if saved is not None and requested is not None and int(requested) != int(saved):
    raise config_validation.ConfigError(
      f"config.optim.schedule_steps={requested} differs from the {saved} this run started with in {workdir}: "
      "changing the horizon of a running schedule makes the learning rate jump; use a new --workdir"
    )
  with config.unlocked():
    config.optim.schedule_steps = int(saved or requested or config.num_train_steps)
  return config


def flat_hparams(config: ml_collections.ConfigDict) -> dict:
  """Every config field as {'optim.learning_rate': 0.002, ...}; tuples and None as strings."""

  def as_tree(value):  # lists of dicts (eval_datasets) flatten by index: eval_datasets.0.name
    if isinstance(value, dict):
      return {key: as_tree(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
      return {str(i): as_tree(v) for i, v in enumerate(value)}
    return value

  flat = traverse_util.flatten_dict(as_tree(config.to_dict()), sep=".")
  return {key: v if isinstance(v, (bool, int, float, str)) else str(v) for key, v in flat.items()}


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, train_iterator=None, timings: dict | None = None
) -> TrainState:
  """Trains to config.num_train_steps, resuming from the latest checkpoint in workdir/checkpoints, evaluating on
  `config.eval_datasets` every `config.eval_every_steps` and once at the end.

  `train_iterator` (per-process numpy batches with get_state/set_state) replaces the configured input pipeline,
  for tests and custom data. `timings`, if given, receives setup_s (until the first step is called), compile_s (the
  first step: compilation, or none when an earlier run of this config in this process compiled it, plus one step),
  train_s (the other steps, checkpoints included) and eval_s.
  """
  # SIGTERM is caught from the start, so a preemption during restore or compilation still ends in a clean save.
  with _Preemption() as preemption:
    return _train(config, workdir, train_iterator, preemption, {} if timings is None else timings)


def _evaluate(config, model, state, mesh, workdir, writer, step, final):
  """Scores the EMA (or raw) params on every eval dataset: scalars, an image strip, and at the end the JSON files
  and report that --mode=evaluate writes."""
  from bdirnet_jax import evaluate  # pylint: disable=g-import-not-at-top

  kind = params_kind(config)
  params = state.ema_params if kind == "ema" else state.params
  if jax.process_count() > 1:
    # Evaluation runs on each process's local devices: give it host copies of the global params.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    params = multihost_utils.process_allgather(params, tiled=True)
  summaries = evaluate.evaluate_params(model, params, step, config, mesh, workdir if final else None, params_kind=kind)
  for label, summary in summaries.items():
    if summary.get("psnr") is None:
      continue
    writer.write_scalars(step, {f"eval/{label}/{k}": summary[k] for k in ("psnr", "ssim", "input_psnr", "input_ssim")})
    if summary.get("strip") is not None:
      writer.write_images(step, {f"eval/{label}/strip": summary["strip"][None]})
    logging.info(
      "%s at step %d on %s: %s", "Final evaluation" if final else "Evaluation", step, label, evaluate.headline(summary)
    )
  return summaries


def _train(config, workdir, train_iterator, preemption, timings) -> TrainState:
  t_setup = time.time()
  config_validation.validate(config)
  workdir = prepare_workdir(workdir)
  checkpoint.check_workdir_model(workdir, config)
  config = fix_schedule_horizon(config, workdir)
  check_writable(workdir)  # before orbax creates its folder there (its PermissionError would be a traceback)

  try:
    mesh = sharding_lib.create_mesh(config.mesh_shape)
  except ValueError as e:
    raise config_validation.ConfigError(str(e)) from None
  config_validation.validate_for_mesh(config, mesh)
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  model, tx, abstract_state, state_shardings, init, step_fn, replicate = programs(config, mesh, init_rng)
  num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract_state.params))
  logging.info("Model: %s preset, %d parameters (%.2f M)", config.model.get("preset"), num_params, num_params / 1e6)

  if train_iterator is None:
    train_iterator = input_pipeline.create_train_iterator(config)
  # Global device batches, `prefetch` of them in flight. Checkpoints save the prefetcher's position (that of the
  # next batch it hands out), not the pipeline's underneath, which runs ahead, so a resumed run continues exactly
  # after the last batch trained on. Iterators without get_state/set_state are not saved.
  batches = input_pipeline.prefetch_to_device(
    train_iterator, config.dataset.get("prefetch", 2), sharding_lib.batch_sharding(mesh)
  )
  data = batches if batches.stateful else None

  manager = checkpoint.create_manager(workdir, config)
  latest = manager.latest_step()
  warm = None
  if latest is not None:
    logging.info("Resuming from %s", manager.directory / str(latest))
    state = checkpoint.restore(manager, latest, abstract_state, data)
  elif config.get("init_from"):  # a fine-tune: params (and the EMA) start from another run's; read before compiling
    warm, warm_step = checkpoint.warm_start_params(config.init_from, abstract_state.params)
    logging.info("Starting from the params of %s (its step %d)", config.init_from, warm_step)
  # The first batch is read before anything is compiled, so a dataset that cannot work (missing, images smaller
  # than the crop with small_image_policy='reject') fails in seconds, not after compilation.
  first_batch = next(batches)
  if latest is None:
    state = init(init_rng)
    if warm is not None:  # Adam's moments start at zero whatever the params, so only these two change
      state = state.replace(params=warm, ema_params=jax.tree.map(jnp.copy, warm))
  checkpoint.save_config(workdir, config)

  step_rng = replicate(step_rng)
  writer = writers.create_writer(workdir, jax.process_index())
  hooks = [
    writers.ReportProgress(num_train_steps=config.num_train_steps, writer=writer, every_steps=config.log_every_steps)
  ]
  if jax.process_index() == 0 and config.get("profile_steps", 0) > 0:
    hooks.append(
      writers.Profile(num_profile_steps=config.profile_steps, first_profile=config.log_every_steps + 1, logdir=workdir)
    )
  if jax.process_index() == 0 and latest is None:
    writer.write_hparams(flat_hparams(config))

  step = int(state.step)
  nonfinite_seen = int(state.nonfinite_steps)
  pending = []
  last_saved = latest
  eval_every = config.get("eval_every_steps", 0) or 0
  has_eval = bool(config.get("eval_datasets", None))
  t0 = time.time()
  timings.update(setup_s=t0 - t_setup, compile_s=0.0, train_s=0.0, eval_s=0.0)
  t_first = None

  def check_finite():
    nonlocal nonfinite_seen
    count = int(state.nonfinite_steps)
    if count > nonfinite_seen:
      new = count - nonfinite_seen
      nonfinite_seen = count
      if config.nan_policy == "stop":
        manager.wait_until_finished()
        raise NonFiniteError(
          f"non-finite loss or gradients in {new} step(s) before step {step}; the state was not updated by "
          f"them. Last checkpoint intact: step {last_saved} in {manager.directory}. Lower "
          "config.optim.learning_rate, check the data, or set config.nan_policy='skip'."
        )
      logging.warning("Skipped %d step(s) with non-finite loss or gradients before step %d.", new, step)

  schedule = learning_rate_schedule(config)
  logging.info(
    "Learning-rate schedule over %d steps; training to step %d.", schedule_steps(config), config.num_train_steps
  )
  while step < config.num_train_steps:
    batch = first_batch if first_batch is not None else next(batches)
    first_batch = None
    state, metrics = step_fn(state, batch, step_rng)
    step += 1
    pending.append(metrics)
    if t_first is None:  # one synchronisation, so the log tells compilation apart from training
      jax.block_until_ready(metrics["loss"])
      t_first = time.time()
      timings["compile_s"] = t_first - t0
    # Progress counts completed steps: wait for the previous step (the current one stays queued, so the device
    # never idles), otherwise dispatch runs ahead and steps/s and the ETA swing between log intervals.
    if len(pending) >= 2:
      jax.block_until_ready(pending[-2]["loss"])
      for hook in hooks:
        hook(step - 1)
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      fetched = jax.device_get(pending)
      pending = []
      for hook in hooks:
        hook(step)
      summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
      summary["learning_rate"] = float(schedule(step - 1))
      writer.write_scalars(step, summary)
      check_finite()
      _saving(manager, manager.check_for_errors)
    stop = preemption.reached(step, manager)
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or stop:
      check_finite()
      # A failed asynchronous save stops the run here, with its error.
      _saving(manager, manager.check_for_errors)
      _saving(manager, lambda: checkpoint.save(manager, step, state, data, force=True))
      last_saved = step
    if stop:
      logging.warning("Stopping at step %d after SIGTERM; rerun the same command to resume.", step)
      break
    if has_eval and eval_every and step % eval_every == 0 and step < config.num_train_steps:
      _evaluate(config, model, state, mesh, workdir, writer, step, final=False)
  _saving(manager, lambda: (manager.wait_until_finished(), manager.check_for_errors()))
  manager.close()
  timings["train_s"] = time.time() - (t_first or t0)
  logging.info(
    "Trained to step %d in %.1fs (setup %.1fs, first step with compilation %.1fs, other steps %.1fs)",
    step,
    time.time() - t0,
    timings["setup_s"],
    timings["compile_s"],
    timings["train_s"],
  )
  if has_eval and step >= config.num_train_steps and not preemption.stopped:
    t_eval = time.time()
    _evaluate(config, model, state, mesh, workdir, writer, step, final=True)
    timings["eval_s"] = time.time() - t_eval
  writer.flush()
  return state
