"""Two processes (2 CPU devices each, gloo collectives) train, evaluate and predict like one process with 4 devices."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import skimage.data
from etils import epath
from PIL import Image

from bdirnet_jax import checkpoint
from bdirnet_jax import evaluate
from bdirnet_jax import input_pipeline
from bdirnet_jax import predict
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


def _spawn_two(logs, args):
  """Starts `main.py *args` as processes 0 and 1 of 2 (2 fake CPU devices each), logging to `logs`."""
  port = _free_port()
  procs = []
  for i, path in enumerate(logs):
    with open(path, "w") as log:
      procs.append(
        subprocess.Popen(
          [
            sys.executable,
            "main.py",
            *args,
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


def _train_args(workdir, data_dir, config_file="configs/tiny.py"):
  return ["--mode=train", f"--config={config_file}", f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}"]


def _finish(procs, logs, timeout=540):
  """Waits for both processes (killing what is left on failure); returns their pids and logs."""
  try:
    for proc, log in zip(procs, logs):
      assert proc.wait(timeout) == 0, log.read_text()[-4000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  texts = [log.read_text() for log in logs]
  for i, text in enumerate(texts):
    assert f"Process {i} of 2, 2 local / 4 global devices" in text
  return [p.pid for p in procs], texts


def _two_processes(name, args, logdir):
  """Runs `main.py *args` as processes 0 and 1 of 2 and waits for both; returns their pids and logs."""
  logs = [logdir / f"{name}_process{i}.log" for i in range(2)]
  return _finish(_spawn_two(logs, args), logs)


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


# Evaluation and predict inputs: odd sizes (two of them), an odd count, so the processes' shares differ (3 and 2).
EVAL_SIZES = ((37, 53), (37, 53), (50, 45), (37, 53), (50, 45))
PREDICT_SIZES = ((40, 56), (33, 47), (40, 56), (40, 56), (33, 47))


def _gopro_data_dir(root):
  """A GoPro-layout TFDS dataset (test split: EVAL_SIZES crops of a shipped photo), built by our builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  import tfds_builders  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from tests.test_evaluate import _write_gopro_layout  # pylint: disable=g-import-not-at-top

  _write_gopro_layout(root / "manual", EVAL_SIZES, "test", "GOPR0384_11_00")
  _write_gopro_layout(root / "manual", ((32, 32),), "train", "GOPR0372_07_00")
  builder = tfds.builder("gopro", data_dir=str(root / "tfds"), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
  return str(root / "tfds")


def _eval_config_file(path, gopro_dir):
  """The tiny config evaluating on the GoPro-layout set (main.py takes a list field only from a config file)."""
  path.write_text(
    "from configs import default\nfrom configs import tiny\n\n\ndef get_config():\n  c = tiny.get_config()\n"
    f"  c.eval_datasets = [default.dataset_config('gopro', None, 'test', crop_size=0, data_dir={gopro_dir!r})]\n"
    "  return c\n"
  )
  return path


def _scalars(workdir, tag):
  """[(step, value)] of every TensorBoard event of `tag` in `workdir`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  found = []
  for path in sorted(workdir.glob("events.out.tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag == tag:
          found.append((event.step, float(tf.make_ndarray(value.tensor))))
  return found


def _assert_same_scores(summary, reference):
  """Per-image scores of a multi-process evaluation equal to the single-process reference's, in source order."""
  assert [r["image_id"] for r in summary["per_image"]] == [r["image_id"] for r in reference["per_image"]]
  assert [r["index"] for r in summary["per_image"]] == list(range(len(EVAL_SIZES)))
  for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
    np.testing.assert_allclose(
      [r[key] for r in summary["per_image"]], [r[key] for r in reference["per_image"]], rtol=1e-6
    )
    assert summary[key] == pytest.approx(reference[key], rel=1e-6)
  assert summary["num_images"] == reference["num_images"] == len(EVAL_SIZES)
  assert summary["num_image_sizes"] == reference["num_image_sizes"] == 2


@pytest.mark.slow
def test_two_processes_match_one_process_and_restore_on_other_device_counts(synthetic_blur_data_dir, tmp_path):
  """One 2-process training run (resumed from a 1-process checkpoint, evaluating during and at the end), then
  2-process evaluate and predict of its checkpoint, each against this process (4 devices) doing the same."""
  data_dir = synthetic_blur_data_dir
  config = _config(data_dir, STEPS)
  workdir = tmp_path / "two_processes"
  gopro_dir = _gopro_data_dir(tmp_path / "gopro")
  config_file = _eval_config_file(tmp_path / "eval_cfg.py", gopro_dir)

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
  # A fresh optimizer state restarts the schedule (horizon 4: learning rates 0, 1e-3, 2e-3 for steps 5-7), so the
  # compared steps move the parameters; past the horizon they would run at the floor rate 2e-6 and move a
  # parameter by ~1e-5, less than the tolerance. Same compiled step as without the reset.
  state = jax.device_put(state.replace(opt_state=tx.init(state.params)), shardings)
  warm_params = jax.device_get(state.params)
  manager = checkpoint.create_manager(str(workdir), config)
  checkpoint.save(manager, WARM, state, input_pipeline.prefetch_to_device(data, 1, batch_sharding), force=True)
  manager.wait_until_finished()
  manager.close()
  data_folder = workdir / "checkpoints" / str(WARM) / "data"
  os.remove(data_folder / "process_0-of-1.json")
  for i, process_state in enumerate(data.get_state()["processes"]):
    (data_folder / f"process_{i}-of-2.json").write_text(json.dumps(process_state))
  checkpoint.save_config(str(workdir), config)

  # Two processes resume that checkpoint (written from 1 process, 4 devices) and train to STEPS, evaluating at
  # step 6 (eval_every_steps) and at the end.
  overrides = [f"--config.{k}={v}" for k, v in OVERRIDES.items()] + ["--config.eval_every_steps=2"]
  args = _train_args(workdir, data_dir, config_file) + [f"--config.num_train_steps={STEPS}", *overrides]
  pids, (text0, _) = _two_processes("train", args, tmp_path)
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
  # 2.4e-4 abs after 4 steps).
  # Measured: steps 5-7 (learning rates 0, 1e-3, 2e-3) move a parameter by 1.9e-3 (median; max 3.0e-3), and the two
  # runs differ by at most 4.6e-7. Tolerance 2e-6 abs: 4x the measured difference, 1/900 of the median update
  # (> 500x asserted). Checked once: with the update scaled by 1.01 on the multi-process path only
  # (`if jax.process_count() > 1: updates = 1.01 * updates` in train_step), this test fails here with
  # "Not equal to tolerance rtol=0.0001, atol=2e-06 ... Mismatched elements: 16 / 16 (100%) ... Max absolute
  # difference among violations: 2.7459813e-05".
  atol = 2e-6
  moved = np.concatenate(
    [np.abs(a - b).ravel() for a, b in zip(*map(jax.tree.leaves, (reference.params, warm_params)))]
  )
  assert np.median(moved) > 500 * atol, np.median(moved)
  two = jax.device_get(state1)
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(reference, name)), jax.tree.leaves(getattr(two, name))):
      np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4)

  # Resuming training needs the same process count (each process continues its own data shard); anything else is a
  # clear error, not a silently different data order.
  with pytest.raises(FileNotFoundError, match="written by a different number of processes"):
    train.train_and_evaluate(config, str(workdir), iter([]))

  # The training run's evaluations, against single-process evaluate of the same checkpoints (EMA params, as the
  # loop scores): the final one wrote each process's share as a part file (images i, i+2, ... of process i) and
  # their merge as the one JSON; both scored the whole set, each score once in TensorBoard (process 0's writer).
  single = tmp_path / "single"
  shutil.copytree(workdir, single, ignore=shutil.ignore_patterns("eval", "events.out.tfevents*"))
  ref = {s: evaluate.evaluate(single, step=s)["gopro_test"] for s in (6, STEPS)}
  ids = [r["image_id"] for r in ref[STEPS]["per_image"]]
  parts = workdir / "eval" / ".parts"
  assert sorted(p.name for p in parts.iterdir()) == [f"gopro_test.process_{i}-of-2.json" for i in range(2)]
  for i in range(2):
    part = json.loads((parts / f"gopro_test.process_{i}-of-2.json").read_text())
    assert [r["image_id"] for r in part["per_image"]] == ids[i::2]
  assert sorted(p.name for p in (workdir / "eval").iterdir()) == [
    ".parts",
    "gopro_test.json",
    "gopro_test_grid.png",
    "report.md",
  ]
  final = json.loads((workdir / "eval" / "gopro_test.json").read_text())
  assert final["step"] == STEPS and final["params"] == "ema"
  _assert_same_scores(final, ref[STEPS])
  for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
    logged = _scalars(workdir, f"eval/gopro_test/{key}")
    assert [s for s, _ in logged] == [6, STEPS], logged
    np.testing.assert_allclose([v for _, v in logged], [ref[6][key], ref[STEPS][key]], rtol=1e-6)
  assert len(re.findall(r"Evaluation at step 6 on gopro_test", text0)) == 1

  # --mode=evaluate and --mode=predict with 2 processes (run side by side), against this process doing the same.
  shutil.move(workdir / "eval", tmp_path / "train_eval")
  inputs = tmp_path / "inputs"
  inputs.mkdir()
  photo = skimage.data.coffee()
  for i, (h, w) in enumerate(PREDICT_SIZES):
    Image.fromarray(photo[30 * i : 30 * i + h, 50 * i : 50 * i + w]).save(inputs / f"img{i}.png")
  logs = {m: [tmp_path / f"{m}_process{i}.log" for i in range(2)] for m in ("evaluate", "predict")}
  procs = {
    "evaluate": _spawn_two(logs["evaluate"], ["--mode=evaluate", f"--workdir={workdir}"]),
    "predict": _spawn_two(
      logs["predict"], ["--mode=predict", f"--workdir={workdir}", f"--input={inputs}", f"--output={tmp_path / 'out2'}"]
    ),
  }
  _, evaluate_logs = _finish(procs["evaluate"], logs["evaluate"])
  _, predict_logs = _finish(procs["predict"], logs["predict"])

  # evaluate: part files, their merge as the one JSON, equal to the single-process evaluate of the same step.
  assert sorted(p.name for p in parts.iterdir()) == [f"gopro_test.process_{i}-of-2.json" for i in range(2)]
  merged = json.loads((workdir / "eval" / "gopro_test.json").read_text())
  assert merged["step"] == STEPS
  _assert_same_scores(merged, ref[STEPS])
  assert "eval gopro_test at step 7" in evaluate_logs[0] and "eval gopro_test at step" not in evaluate_logs[1]

  # predict: process i deblurs files i, i+2, ... (3 and 2 of 5); every file is written once, as one process here
  # writes it.
  for i, count in enumerate((3, 2)):
    assert f"predict: process {i}: {count} image(s) found: {count} written, 0 failed" in predict_logs[i], predict_logs[
      i
    ]
  predict.predict(str(workdir), str(inputs), str(tmp_path / "out1"))
  names = [f"img{i}.png" for i in range(len(PREDICT_SIZES))]
  assert (
    sorted(p.name for p in (tmp_path / "out2").iterdir())
    == sorted(p.name for p in (tmp_path / "out1").iterdir())
    == names
  )
  for name in names:
    two_out = np.asarray(Image.open(tmp_path / "out2" / name)).astype(int)
    one_out = np.asarray(Image.open(tmp_path / "out1" / name)).astype(int)
    assert two_out.shape == one_out.shape
    assert np.abs(two_out - one_out).max() <= 1, name


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_saved_step(synthetic_blur_data_dir, tmp_path):
  """jax's preemption sync point: the notice reaches every process, which all save one step and exit with 0."""
  data_dir = synthetic_blur_data_dir
  workdir = tmp_path / "preempted"
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  procs = _spawn_two(
    logs,
    _train_args(workdir, data_dir)
    + ["--config.num_train_steps=1000", "--config.checkpoint_every_steps=1000", "--config.log_every_steps=1"]
    # the other test's schedule horizon: the same compiled step, loaded from the run's compilation cache when that
    # test has compiled it first
    + [f"--config.optim.schedule_steps={fakes.ON_THE_FLY_SCHEDULE_STEPS}"],
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
