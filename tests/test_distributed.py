"""Two processes (2 CPU devices each, gloo collectives) train like one process with 4 devices."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from bdirnet_jax import checkpoint
from bdirnet_jax import input_pipeline
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train
from bdirnet_jax.train_step import jit_train_step
from configs import tiny
from tests import fakes

WARM, STEPS = 4, 7


class _Concat:
  """The two processes' input pipelines side by side: the global batch a 2-process run assembles."""

  def __init__(self, iterators):
    self.iterators = iterators

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(it) for it in self.iterators]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def get_state(self):
    return {"processes": [it.get_state() for it in self.iterators]}

  def set_state(self, state):
    for it, s in zip(self.iterators, state["processes"]):
      it.set_state(s)


# The schedule horizon is test_reliability.py's: the in-process 4-device reference loads its compiled step.
OVERRIDES = {
  "checkpoint_every_steps": 2,
  "log_every_steps": 2,
  "keep_checkpoints": 10,
  "optim.schedule_steps": fakes.ON_THE_FLY_SCHEDULE_STEPS,
}


def _config(data_dir, steps):
  config = tiny.get_config()
  for key, value in OVERRIDES.items():
    node, *leaf = key.split(".")
    if leaf:
      config[node][leaf[0]] = value
    else:
      config[key] = value
  config.num_train_steps = steps
  config.dataset.data_dir = str(data_dir)
  return config


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _spawn_two(workdir, data_dir, logs, flags):
  """Starts main.py training as processes 0 and 1 of 2 (2 fake CPU devices each), logging to `logs`."""
  port = _free_port()
  procs = []
  for i, path in enumerate(logs):
    with open(path, "w") as log:
      procs.append(
        subprocess.Popen(
          [
            sys.executable,
            "main.py",
            "--mode=train",
            "--config=configs/tiny.py",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            *flags,
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
          ],
          cwd=fakes.REPO,
          env=fakes.subprocess_env(2),
          stdout=log,
          stderr=subprocess.STDOUT,
        )
      )
  return procs


def _two_processes(workdir, data_dir, steps, logdir):
  """Runs main.py as processes 0 and 1 of 2 (2 fake CPU devices each); returns their pids."""
  logs = [logdir / f"steps{steps}_process{i}.log" for i in range(2)]
  procs = _spawn_two(
    workdir, data_dir, logs, [f"--config.num_train_steps={steps}", *[f"--config.{k}={v}" for k, v in OVERRIDES.items()]]
  )
  try:
    for proc, log in zip(procs, logs):
      assert proc.wait(540) == 0, log.read_text()[-4000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for i, log in enumerate(logs):
    assert f"Process {i} of 2, 2 local / 4 global devices" in log.read_text()
  return [p.pid for p in procs], [log.read_text() for log in logs]


def _restore_state(workdir, step, config, devices):
  """The train state of checkpoint `step`, restored onto a mesh of `devices` (whatever wrote it)."""
  mesh = sharding_lib.create_mesh((-1, 1), devices=devices)
  abstract = train.create_state(config, mesh, jax.random.key(0))[2]
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(epath.Path(workdir) / "checkpoints" / str(step) / "state", abstract)


def _data_states(workdir, step):
  folder = epath.Path(workdir) / "checkpoints" / str(step) / "data"
  assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".json")) == [
    "process_0-of-2.json",
    "process_1-of-2.json",
  ]
  return [json.loads((folder / f"process_{i}-of-2.json").read_text()) for i in range(2)]


@pytest.mark.slow
def test_two_processes_match_one_process_and_restore_on_other_device_counts(synthetic_blur_data_dir, tmp_path):
  data_dir = synthetic_blur_data_dir
  config = _config(data_dir, STEPS)
  workdir = tmp_path / "two_processes"

  # The reference: this process (4 devices) runs the loop's steps on the global batches the two processes will
  # assemble, and writes its WARM state as a 2-process checkpoint (each process's data position in its own file).
  mesh = sharding_lib.create_mesh((-1, 1))
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  model, tx, _, shardings, init = train.create_state(config, mesh, init_rng)
  state = init(init_rng)
  step_fn = jit_train_step(model, tx, config, mesh, shardings)
  step_rng = jax.device_put(step_rng, sharding_lib.replicated(mesh))
  batch_sharding = sharding_lib.batch_sharding(mesh)
  data = _Concat([input_pipeline.create_train_iterator(config, process_index=i, process_count=2) for i in range(2)])
  for _ in range(WARM):
    state, _ = step_fn(state, input_pipeline.make_global_batch(next(data), batch_sharding), step_rng)
  manager = checkpoint.create_manager(str(workdir), config)
  checkpoint.save(manager, WARM, state, input_pipeline.prefetch_to_device(data, 1, batch_sharding), force=True)
  manager.wait_until_finished()
  manager.close()
  data_folder = workdir / "checkpoints" / str(WARM) / "data"
  os.remove(data_folder / "process_0-of-1.json")
  for i, process_state in enumerate(data.get_state()["processes"]):
    (data_folder / f"process_{i}-of-2.json").write_text(json.dumps(process_state))
  checkpoint.save_config(str(workdir), config)

  # Two processes resume that checkpoint (written from 1 process, 4 devices) and train to STEPS.
  pids, (text0, _) = _two_processes(workdir, data_dir, STEPS, tmp_path)
  assert f"Resuming from {workdir / 'checkpoints' / str(WARM)}" in text0
  for _ in range(STEPS - WARM):
    state, _ = step_fn(state, input_pipeline.make_global_batch(next(data), batch_sharding), step_rng)
  reference = jax.device_get(state)

  # Only process 0 writes TensorBoard summaries (an event file name carries its writer's pid).
  events = [p.name for p in workdir.iterdir() if p.name.startswith("events.out.tfevents")]
  assert len(events) == 1 and f".{pids[0]}." in events[0], events

  # Every process saved its own data-iterator position, equal to its pipeline's position in the reference.
  assert _data_states(workdir, STEPS) == data.get_state()["processes"]

  # The 2-process result, restored here onto 4 devices (restore_params) and onto 1 device.
  params4, step, _ = checkpoint.restore_params(str(workdir), use_ema=False)
  assert step == STEPS
  assert {d.id for d in jax.tree.leaves(params4)[0].devices()} == {d.id for d in jax.local_devices()}
  state1 = _restore_state(workdir, STEPS, config, jax.devices()[:1])
  assert jax.tree.leaves(state1.params)[0].devices() == {jax.devices()[0]}
  assert int(state1.step) == STEPS and int(state1.nonfinite_steps) == 0
  for a, b in zip(jax.tree.leaves(jax.device_get(params4)), jax.tree.leaves(jax.device_get(state1.params))):
    np.testing.assert_array_equal(a, b)

  # Same math, but gloo sums gradients across processes in another order than one process does across its 4
  # devices: float32 rounding differs in the last bits. From a warm state Adam does not amplify that (from step 0 it
  # does: the zero-initialised output conv gives ~1e-8 gradients whose sign flips with the rounding; measured
  # 2.4e-4 abs after 4 steps). After WARM the 3 steps differ by at most 1.2e-7 abs (params; measured), checked
  # with 8x margin: 1e-6 abs / 1e-4 rel.
  two = jax.device_get(state1)
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(reference, name)), jax.tree.leaves(getattr(two, name))):
      np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)

  # Resuming training needs the same process count (each process continues its own data shard); anything else is a
  # clear error, not a silently different data order.
  with pytest.raises(FileNotFoundError, match="written by a different number of processes"):
    train.train_and_evaluate(config, str(workdir), iter([]))


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_saved_step(synthetic_blur_data_dir, tmp_path):
  """jax's preemption sync point: the notice reaches every process, which all save one step and exit with 0."""
  data_dir = synthetic_blur_data_dir
  workdir = tmp_path / "preempted"
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  procs = _spawn_two(
    workdir,
    data_dir,
    logs,
    ["--config.num_train_steps=1000", "--config.checkpoint_every_steps=1000", "--config.log_every_steps=1"],
  )
  try:
    deadline = time.time() + 480
    while not re.search(r"\] \[3\] .*loss=", logs[0].read_text()):  # only process 0 logs the metrics
      assert all(p.poll() is None for p in procs), [log.read_text()[-3000:] for log in logs]
      assert time.time() < deadline, logs[0].read_text()[-3000:]
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    for proc, log in zip(procs, logs):
      assert proc.wait(240) == 0, log.read_text()[-4000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  texts = [log.read_text() for log in logs]
  stopped = [int(re.search(r"Stopping at step (\d+) after SIGTERM", text).group(1)) for text in texts]
  assert stopped[0] == stopped[1] and 3 <= stopped[0] < 1000, stopped
  assert all(f"Preemption notice: every process saves step {stopped[0]}" in text for text in texts)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(stopped[0])]
  assert len(_data_states(workdir, stopped[0])) == 2
