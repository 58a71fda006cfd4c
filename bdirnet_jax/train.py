"""The training loop: owns the mesh, state, checkpoints, metric writers and the input iterator."""
import signal
import threading
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import losses
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import writers
from bdirnet_jax.models import create_model
from bdirnet_jax.train_state import TrainState, create_optimizer, create_train_state, learning_rate_schedule
from bdirnet_jax.train_step import jit_train_step


class NonFiniteError(FloatingPointError):
  """Raised when config.nan_policy == 'stop' and a step had a non-finite loss or gradient."""


class _TerminationFlag:
  """Turns SIGTERM into a flag the loop checks between steps, so it can save before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received signal %d: saving a checkpoint at the current step, then exiting.", signum)
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


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


def _batches_with_state(iterator, mesh, size: int) -> Iterator:
  """Yields (global device batch, iterator state after that batch), keeping `size` batches in flight.

  The state is the prefetcher's, i.e. the position of the next batch it will hand out, not of the iterator
  underneath (which runs `size` batches ahead), so a checkpoint resumes exactly after the last consumed batch.
  """
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  prefetcher = input_pipeline.prefetch_to_device(iterator, size, sharding_lib.batch_sharding(mesh))
  stateful = hasattr(iterator, "get_state")
  for batch in prefetcher:
    yield batch, prefetcher.get_state() if stateful else None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, train_iterator=None) -> TrainState:
  """Trains to config.num_train_steps, resuming from the latest checkpoint in workdir/checkpoints.

  `train_iterator` (per-process numpy batches with get_state/set_state) replaces the configured input pipeline,
  for tests and custom data.
  """
  # SIGTERM is caught from the start, so a preemption during restore or compilation still ends in a clean save.
  with _TerminationFlag() as term:
    return _train(config, workdir, train_iterator, term)


def _train(config, workdir, train_iterator, term) -> TrainState:
  config_validation.validate(config)
  workdir = str(workdir)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  checkpoint.check_workdir_model(workdir, config)

  try:
    mesh = sharding_lib.create_mesh(config.mesh_shape)
  except ValueError as e:
    raise config_validation.ConfigError(str(e)) from None
  config_validation.validate_for_mesh(config, mesh)
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  model, tx, abstract_state, state_shardings, init = create_state(config, mesh, init_rng)

  if train_iterator is None:
    from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    train_iterator = input_pipeline.create_train_iterator(config)

  manager = checkpoint.create_manager(workdir, config)
  latest = manager.latest_step()
  if latest is not None:
    logging.info("Resuming from %s", manager.directory / str(latest))
    state, data_state = checkpoint.restore(manager, latest, abstract_state)
    if data_state is not None and hasattr(train_iterator, "set_state"):
      train_iterator.set_state(data_state)
  # The first batch is read before anything is compiled, so a dataset that cannot work (missing, images smaller
  # than the crop with small_image_policy='reject') fails in seconds, not after compilation.
  batches = _batches_with_state(train_iterator, mesh, config.dataset.get("prefetch", 2))
  first_batch = next(batches)
  if latest is None:
    state = init(init_rng)
  checkpoint.save_config(workdir, config)

  step_fn = jit_train_step(model, tx, config, mesh, state_shardings)
  # Not device_put: with several processes the mesh holds devices this process cannot address.
  step_rng = jax.jit(lambda key: key, out_shardings=sharding_lib.replicated(mesh))(step_rng)
  writer = writers.create_writer(workdir, jax.process_index())
  pa = writers.periodic_actions()
  hooks = [pa.ReportProgress(num_train_steps=config.num_train_steps, writer=writer)]
  if jax.process_index() == 0 and config.get("profile_steps", 0) > 0:
    hooks.append(pa.Profile(num_profile_steps=config.profile_steps, first_profile=config.log_every_steps + 1,
                            logdir=workdir))
  if jax.process_index() == 0 and latest is None:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})

  step = int(state.step)
  nonfinite_seen = int(state.nonfinite_steps)
  pending = []
  last_saved = latest
  t0 = time.time()

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
            "config.optim.learning_rate, check the data, or set config.nan_policy='skip'.")
      logging.warning("Skipped %d step(s) with non-finite loss or gradients before step %d.", new, step)

  schedule = learning_rate_schedule(config)
  while step < config.num_train_steps:
    batch, data_state = first_batch if first_batch is not None else next(batches)
    first_batch = None
    state, metrics = step_fn(state, batch, step_rng)
    step += 1
    pending.append(metrics)
    for hook in hooks:
      hook(step)
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      fetched = jax.device_get(pending)
      pending = []
      summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
      summary["learning_rate"] = float(schedule(step - 1))
      writer.write_scalars(step, summary)
      check_finite()
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or term.requested:
      check_finite()
      checkpoint.save(manager, step, state, data_state, force=True)
      last_saved = step
    if term.requested:
      logging.warning("Stopping at step %d after SIGTERM; rerun the same command to resume.", step)
      break
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  logging.info("Trained to step %d in %.1fs", step, time.time() - t0)
  return state

