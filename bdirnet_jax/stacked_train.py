"""Several runs of one config trained at once: their train states stacked on a leading axis, one vmapped step.

A small model (BDIRNet-small at batch 16) leaves a large accelerator mostly idle, and a study trains many runs
that differ only in their seed and training blur family, which never enter the compiled program
(`train.program_key`). Stacking R such runs makes one program do R runs' work per dispatch:

* State: each run's TrainState is initialised exactly as `train.py` initialises it (the same jitted init, from
  `jax.random.key(seed)`'s first half), then the R states are stacked leaf by leaf: params, optimizer moments,
  EMA, step and NaN counter all get a leading axis of size R.
* Step: `jax.vmap(train_step)` over (state, batch, step rng); the step rng of run r is the second half of
  `jax.random.split(jax.random.key(seed_r))`, as alone. Nothing crosses runs (InfoNCE's negatives are the run's own
  batch), so run r computes what it would alone, up to float rounding of the batched kernels.
* Data: each run has its own input iterator (`input_pipeline.create_train_iterator(config_r)`: its seed, its blur
  family); a step takes one batch from each and stacks them on the host into [R, B, ...].
* Sharding: the runs axis is replicated and the batch axis is split over `data`, as alone (state P(), batches
  P(None, 'data')): every device holds every run and a slice of each run's batch, so any R works on any device count
  and each run's reduction order matches its single-run sharded step.
* Checkpoints: the stacked state and the R iterators' positions in `stack_dir/checkpoints` (orbax, resumable like a
  single run). At the end each run's workdir gets what a single run writes: config.json, its metrics, and its
  final checkpoint (its own state and iterator position), so evaluation, the study's scoring and a later resume
  of that run alone work unchanged. Intermediate per-run checkpoints are not written.

Single process only (the study's case).
"""

import collections
import functools
import hashlib
import json
import os
import time
from typing import Any
from typing import Callable
from typing import Sequence

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bdirnet_jax import atomic_io
from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import input_pipeline
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train
from bdirnet_jax import writers
from bdirnet_jax.train_state import learning_rate_schedule
from bdirnet_jax.train_step import train_step

STACK_FILE = "stack.json"  # the member runs of a stack folder, checked on resume


class Interrupted(RuntimeError):
  """SIGTERM stopped the stacked runs before their last step (their stacked checkpoint is saved)."""


# ---------------------------------------------------------------------------------------------------------------
# Which runs may share a program


def _flat_key(config: ml_collections.ConfigDict) -> dict:
  return traverse_util.flatten_dict(json.loads(train.program_key(config)), sep=".")


def check_stackable(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ConfigError naming the first field (outside `train.RUN_ONLY_FIELDS` and the dataset fields that only
  change batches) whose value differs between `configs`: such runs would need different compiled programs."""
  if not configs:
    raise config_validation.ConfigError("no runs to stack")
  first = _flat_key(configs[0])
  for i, config in enumerate(configs[1:], 1):
    other = _flat_key(config)
    for key in sorted(set(first) | set(other)):
      if first.get(key, "<missing>") != other.get(key, "<missing>"):
        raise config_validation.ConfigError(
          f"runs 0 and {i} cannot be trained in one stacked program: config.{key} differs "
          f"({first.get(key, '<missing>')!r} against {other.get(key, '<missing>')!r}); stacked runs may differ only "
          f"in {', '.join(train.RUN_ONLY_FIELDS)} and the dataset fields outside "
          f"{', '.join(train.PROGRAM_DATASET_FIELDS)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Data: one iterator per run, batches stacked on the host


class StackedIterator:
  """R per-run iterators as one: batches stacked into [R, B, ...]; the state is every run's position."""

  def __init__(self, iterators: Sequence[Any]):
    self.iterators = list(iterators)
    if all(hasattr(it, "get_state") and hasattr(it, "set_state") for it in self.iterators):
      self.get_state = lambda: {"runs": [it.get_state() for it in self.iterators]}
      self.set_state = self._set_state

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(it) for it in self.iterators]
    keys = set(batches[0])
    for r, batch in enumerate(batches):
      if set(batch) != keys:
        raise ValueError(f"run {r}'s batch has keys {sorted(batch)}, run 0's {sorted(keys)}: they cannot be stacked")
    return {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}

  def _set_state(self, state: dict) -> None:
    runs = state.get("runs") if isinstance(state, dict) else None
    if not isinstance(runs, list) or len(runs) != len(self.iterators):
      got = len(runs) if isinstance(runs, list) else runs
      raise ValueError(f"stacked data state holds {got} runs' positions, expected {len(self.iterators)}")
    for it, s in zip(self.iterators, runs):
      it.set_state(s)


class _SavedPosition(grain.DatasetIterator):
  """One run's data position, in the form grain's checkpoint handler saves (a single run's data/ folder)."""

  def __init__(self, state):
    super().__init__(())
    self._state = state

  def __next__(self):
    raise StopIteration

  def get_state(self):
    return self._state

  def set_state(self, state):
    self._state = state


def batch_sharding(mesh) -> NamedSharding:
  """Runs axis whole (replicated), each run's batch axis split over `data` as in a single run."""
  return NamedSharding(mesh, P(None, sharding_lib.DATA_AXIS))


# ---------------------------------------------------------------------------------------------------------------
# Programs


_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 8


def _stack_trees(*trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def programs(config, mesh, num_runs: int):
  """(model, single_shardings, init, stacked_abstract, stacked_shardings, stack, step, replicate), built once per
  program key, mesh and stack size in a process. `init` is train.py's own single-run init (so each run starts
  exactly as alone); `stack` turns R single states into the stacked one; `step` is the vmapped train step."""
  key = (train.program_key(config), mesh, num_runs)
  hit = _PROGRAMS.get(key)
  if hit is not None:
    _PROGRAMS.move_to_end(key)
    logging.info("Reusing the compiled stacked programs of an earlier group of this config in this process")
    return hit
  model, tx, abstract, shardings, init, _, replicate = train.programs(config, mesh, jax.random.key(0))
  stacked_shardings = sharding_lib.state_sharding(abstract, mesh)  # replicated: the runs axis is not split
  stacked_abstract = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct((num_runs, *a.shape), a.dtype, sharding=s), abstract, stacked_shardings
  )
  stack = jax.jit(_stack_trees, out_shardings=stacked_shardings)
  vmapped = jax.vmap(functools.partial(train_step, model=model, tx=tx, config=config))
  step = jax.jit(
    vmapped,
    in_shardings=(stacked_shardings, batch_sharding(mesh), sharding_lib.replicated(mesh)),
    out_shardings=(stacked_shardings, sharding_lib.replicated(mesh)),
    donate_argnums=(0,),
  )
  hit = _PROGRAMS[key] = (model, shardings, init, stacked_abstract, stacked_shardings, stack, step, replicate)
  while len(_PROGRAMS) > _MAX_PROGRAMS:
    _PROGRAMS.popitem(last=False)
  return hit


# ---------------------------------------------------------------------------------------------------------------
# Training


def stack_dir_name(workdirs: Sequence[str]) -> str:
  """A stack folder's name: its first run's name, the count of the others, and a hash of all their paths."""
  paths = [os.path.abspath(str(w)) for w in workdirs]
  digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:10]
  return f"{os.path.basename(paths[0])}+{len(paths) - 1}-{digest}"


def _latest_step(workdir: str) -> int | None:
  if not checkpoint.has_checkpoints(workdir):
    return None
  manager = checkpoint.create_manager(workdir)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def _check_members(stack_dir: str, members: list[dict]) -> None:
  path = epath.Path(stack_dir) / STACK_FILE
  if path.exists():
    saved = json.loads(path.read_text())
    if saved != members:
      raise config_validation.ConfigError(
        f"{path} lists other runs ({[m['workdir'] for m in saved]}) than these "
        f"({[m['workdir'] for m in members]}); use another stack folder"
      )
  else:
    atomic_io.write_text(path, json.dumps(members, indent=1, sort_keys=True))


def train_stacked(
  configs: Sequence[ml_collections.ConfigDict],
  workdirs: Sequence[str],
  stack_dir: str,
  train_iterators: Sequence[Any] | None = None,
  timings: dict | None = None,
):
  """Trains the runs `configs[r]` (workdir `workdirs[r]`) to their `num_train_steps` in one stacked program,
  resuming from `stack_dir/checkpoints`; returns the stacked TrainState.

  The configs may differ only in fields that never enter the compiled program (`check_stackable`). The run
  workdirs must hold no checkpoints yet (a run trained alone part of the way resumes alone). `train_iterators`
  (one per run, numpy batches with get_state/set_state) replace the configured input pipelines, for tests.
  `timings`, if given, receives setup_s, compile_s (first step), train_s and export_s (writing the runs' workdirs).
  Raises `Interrupted` after saving when SIGTERM arrives before the last step.
  """
  timings = {} if timings is None else timings
  with train._Preemption() as preemption:  # pylint: disable=protected-access
    state = _train(list(configs), [str(w) for w in workdirs], str(stack_dir), train_iterators, timings, preemption)
    if preemption.stopped:
      raise Interrupted(f"stacked runs in {stack_dir} stopped at step {int(state.step[0])} (SIGTERM); rerun to resume")
  return state


def _prepare_runs(configs, workdirs, stack_dir):
  """(configs with their schedule horizon fixed, absolute workdirs, absolute stack_dir), every check done before
  anything is compiled."""
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise config_validation.ConfigError(f"stacked runs need distinct workdirs, got {list(workdirs)}")
  if jax.process_count() > 1:
    raise config_validation.ConfigError("stacked training runs in one process")
  if any(c.get("init_from") for c in configs):  # its init is the stacked seeds' fresh params
    raise config_validation.ConfigError("stacked training starts from fresh params; train a config.init_from run alone")
  for config, workdir in zip(configs, workdirs):
    try:
      config_validation.validate(config)
    except config_validation.ConfigError as e:
      raise config_validation.ConfigError(f"run {workdir}: {e}") from None
  check_stackable(configs)
  workdirs = [train.prepare_workdir(w) for w in workdirs]
  stack_dir = train.prepare_workdir(stack_dir)
  stack_step = _latest_step(stack_dir)
  for workdir in workdirs:
    # A run's checkpoints are this stack's exports (e.g. before num_train_steps was raised), never further along.
    step = _latest_step(workdir)
    if step is not None and (stack_step is None or step > stack_step):
      raise config_validation.ConfigError(
        f"--workdir={workdir} holds a checkpoint of step {step} that {stack_dir} did not write: a run trained "
        "alone part of the way resumes alone"
      )
  checkpoint.check_workdir_model(stack_dir, configs[0])
  horizon = train.fix_schedule_horizon(configs[0], stack_dir).optim.schedule_steps
  fixed = []
  for config in configs:
    config = train.fix_schedule_horizon(config, stack_dir)  # a stack resumed with another horizon is refused
    with config.unlocked():
      config.optim.schedule_steps = horizon
    fixed.append(config)
  members = [
    dict(workdir=w, seed=int(c.seed), blur_family=c.dataset.get("blur_family")) for c, w in zip(fixed, workdirs)
  ]
  _check_members(stack_dir, members)
  return fixed, workdirs, stack_dir


def _train(configs, workdirs, stack_dir, train_iterators, timings, preemption):
  t_setup = time.time()
  configs, workdirs, stack_dir = _prepare_runs(configs, workdirs, stack_dir)
  config = configs[0]  # the program's config: the others differ only in run-only fields
  num_runs = len(configs)
  try:
    mesh = sharding_lib.create_mesh(config.mesh_shape)
  except ValueError as e:
    raise config_validation.ConfigError(str(e)) from None
  for c in configs:
    config_validation.validate_for_mesh(c, mesh)
  model, _, init, stacked_abstract, _, stack, step_fn, replicate = programs(config, mesh, num_runs)
  del model
  rngs = [jax.random.split(jax.random.key(c.seed)) for c in configs]  # (init, step) per run, as train.py

  if train_iterators is None:
    train_iterators = [input_pipeline.create_train_iterator(c) for c in configs]
  if len(train_iterators) != num_runs:
    raise ValueError(f"{len(train_iterators)} train iterators for {num_runs} runs")
  batches = input_pipeline.prefetch_to_device(
    StackedIterator(train_iterators), config.dataset.get("prefetch", 2), batch_sharding(mesh)
  )
  data = batches if batches.stateful else None

  manager = checkpoint.create_manager(stack_dir, config)
  latest = manager.latest_step()
  if latest is not None:
    logging.info("Resuming %d stacked runs from %s", num_runs, manager.directory / str(latest))
    state = checkpoint.restore(manager, latest, stacked_abstract, data)
  for workdir in (*workdirs, stack_dir):
    train.check_writable(workdir)
  first_batch = next(batches)  # a dataset that cannot work fails before compilation
  if latest is None:
    state = stack(*[init(r[0]) for r in rngs])
  checkpoint.save_config(stack_dir, config)
  for c, workdir in zip(configs, workdirs):
    checkpoint.save_config(workdir, c)

  step_rngs = replicate(jnp.stack([r[1] for r in rngs]))
  run_writers = [writers.create_writer(w, 0) for w in workdirs]
  stack_writer = writers.create_writer(stack_dir, 0)
  progress = writers.ReportProgress(
    num_train_steps=config.num_train_steps, writer=stack_writer, every_steps=config.log_every_steps
  )
  if latest is None:
    for c, writer in zip(configs, run_writers):
      writer.write_hparams(train.flat_hparams(c))

  step = int(state.step[0])
  nonfinite_seen = np.asarray(jax.device_get(state.nonfinite_steps))
  pending = []
  last_saved = latest
  t0 = time.time()
  timings.update(setup_s=t0 - t_setup, compile_s=0.0, train_s=0.0, export_s=0.0)
  t_first = None

  def check_finite():
    nonlocal nonfinite_seen
    counts = np.asarray(jax.device_get(state.nonfinite_steps))
    new = counts - nonfinite_seen
    nonfinite_seen = counts
    hit = [f"{os.path.basename(workdirs[r])} ({int(n)})" for r, n in enumerate(new) if n > 0]
    if not hit:
      return
    if config.nan_policy == "stop":
      manager.wait_until_finished()
      raise train.NonFiniteError(
        f"non-finite loss or gradients before step {step} in stacked run(s) {', '.join(hit)}; their state was not "
        f"updated by those steps. Last stacked checkpoint intact: step {last_saved} in {manager.directory}. Lower "
        "config.optim.learning_rate, check the data, or set config.nan_policy='skip'."
      )
    logging.warning("Skipped steps with non-finite loss or gradients before step %d: %s", step, ", ".join(hit))

  schedule = learning_rate_schedule(config)
  logging.info("Training %d stacked runs to step %d: %s", num_runs, config.num_train_steps, ", ".join(workdirs))
  while step < config.num_train_steps:
    batch = first_batch if first_batch is not None else next(batches)
    first_batch = None
    state, metrics = step_fn(state, batch, step_rngs)
    step += 1
    pending.append(metrics)
    if t_first is None:
      jax.block_until_ready(metrics["loss"])
      t_first = time.time()
      timings["compile_s"] = t_first - t0
    if len(pending) >= 2:
      jax.block_until_ready(pending[-2]["loss"])
      progress(step - 1)
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      fetched = jax.device_get(pending)
      pending = []
      progress(step)
      lr = float(schedule(step - 1))
      for r, writer in enumerate(run_writers):
        summary = {k: float(np.mean([m[k][r] for m in fetched])) for k in fetched[0]}
        summary["learning_rate"] = lr
        writer.write_scalars(step, summary)
      check_finite()
      manager.check_for_errors()
    stop = preemption.reached(step, manager)
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or stop:
      check_finite()
      manager.check_for_errors()
      checkpoint.save(manager, step, state, data, force=True)
      last_saved = step
    if stop:
      logging.warning("Stopping %d stacked runs at step %d after SIGTERM; rerun to resume.", num_runs, step)
      break
  manager.wait_until_finished()
  manager.check_for_errors()
  manager.close()
  timings["train_s"] = time.time() - (t_first or t0)
  if step >= config.num_train_steps and not preemption.stopped:
    t_export = time.time()
    positions = data.get_state()["runs"] if data is not None else [None] * num_runs
    for r, (c, workdir) in enumerate(zip(configs, workdirs)):
      export_run(c, workdir, jax.tree.map(lambda x, r=r: x[r], state), positions[r])
    timings["export_s"] = time.time() - t_export
  for writer in (*run_writers, stack_writer):
    writer.flush()
  logging.info(
    "Trained %d stacked runs to step %d (setup %.1fs, first step with compilation %.1fs, other steps %.1fs, "
    "writing the runs' workdirs %.1fs)",
    num_runs,
    step,
    timings["setup_s"],
    timings["compile_s"],
    timings["train_s"],
    timings["export_s"],
  )
  return state


def export_run(config, workdir: str, state, data_position=None) -> None:
  """Writes one run's final state as a single run's checkpoint (with its data position, so it can go on alone)
  and its config.json."""
  checkpoint.save_config(workdir, config)
  manager = checkpoint.create_manager(workdir, config)
  try:
    step = int(state.step)
    if step in manager.all_steps():  # written before a crash: orbax commits a step whole or not at all
      return
    position = None if data_position is None else _SavedPosition(data_position)
    checkpoint.save(manager, step, state, position, force=True)
    manager.wait_until_finished()
    manager.check_for_errors()
  finally:
    manager.close()


# ---------------------------------------------------------------------------------------------------------------
# The study's entry point


def train_unfinished(
  runs: Sequence[tuple[ml_collections.ConfigDict, Any]],
  max_stack: int,
  stack_root,
  latest_step: Callable[[Any], int | None],
) -> list[dict]:
  """Trains the study's runs that have not started, up to `max_stack` runs of one program at a time, in the
  order given; returns one timing dict per group trained.

  `runs`: (resolved config, workdir) pairs; `latest_step(workdir)` says how far a run is (None: not started).
  Finished runs and runs trained alone part of the way are left to the caller's single-run loop, as are groups
  of one. Stack folders live in `stack_root`, named after their members (`stack_dir_name`), so a rerun of the
  same study resumes an interrupted group. Raises `Interrupted` after a SIGTERM (the group's state is saved).
  """
  groups: dict[str, list] = {}
  for config, workdir in runs:
    if latest_step(workdir) is None:
      groups.setdefault(train.program_key(config), []).append((config, workdir))
  done = []
  for members in groups.values():
    for start in range(0, len(members), max(1, int(max_stack))):
      chunk = members[start : start + max(1, int(max_stack))]
      if len(chunk) < 2:
        continue
      names = [os.path.basename(str(w)) for _, w in chunk]
      logging.info("study: training %d runs in one stacked program: %s", len(chunk), ", ".join(names))
      timings = dict(runs=names)
      workdirs = [str(w) for _, w in chunk]
      stack_dir = os.path.join(str(stack_root), stack_dir_name(workdirs))
      train_stacked([c for c, _ in chunk], workdirs, stack_dir, timings=timings)
      logging.info(
        "study: trained %d stacked runs: setup %.1fs, compile (first step) %.1fs, train %.1fs, write %.1fs",
        len(chunk),
        timings["setup_s"],
        timings["compile_s"],
        timings["train_s"],
        timings["export_s"],
      )
      done.append(timings)
  return done
