"""Crashes, preemption, non-finite steps and reused workdirs: the run either resumes exactly or stops cleanly."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from bdirnet_jax import checkpoint
from bdirnet_jax import train
from configs import tiny
from tests import fakes

STEPS = 14  # enough steps after each kill that the run is still going when the signal lands


@pytest.fixture(scope="module")
def data_dir(synthetic_blur_data_dir):
  return synthetic_blur_data_dir


@pytest.fixture(scope="module")
def compile_cache():
  return os.environ.get("JAX_COMPILATION_CACHE_DIR")  # the run's (tests/conftest.py)


def _train_cmd(workdir, data_dir, checkpoint_every=2, config="configs/tiny.py"):
  # checkpoint_every_steps is not part of the compiled step, so runs that differ in it share the compilation cache
  # (and the schedule horizon is test_distributed.py's).
  return [
    sys.executable,
    os.path.join(fakes.REPO, "main.py"),
    "--mode=train",
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={data_dir}",
    f"--config.num_train_steps={STEPS}",
    f"--config.optim.schedule_steps={fakes.ON_THE_FLY_SCHEDULE_STEPS}",
    f"--config.checkpoint_every_steps={checkpoint_every}",
    "--config.log_every_steps=2",
  ]


def _launch(cmd, log_path, cache, cwd=fakes.REPO):
  log = open(log_path, "w")  # a file, not a pipe: absl logs enough to fill a pipe buffer and block the child
  env = dict(fakes.subprocess_env(4, cache), PYTHONPATH=fakes.REPO)
  proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
  log.close()
  return proc


def _tail(path, n=40):
  return "\n".join(epath.Path(path).read_text().splitlines()[-n:])


def _wait_for(predicate, proc, log_path, timeout=300):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, f"run ended (rc={proc.returncode}) before the kill point:\n{_tail(log_path)}"
    assert time.time() < deadline, f"kill point not reached in {timeout}s:\n{_tail(log_path)}"
    time.sleep(0.01)


def _finished(proc, log_path, timeout=300):
  try:
    rc = proc.wait(timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  assert rc == 0, f"rc={rc}:\n{_tail(log_path)}"


def _entries(ckpt_dir):
  return sorted(p.name for p in epath.Path(ckpt_dir).iterdir()) if epath.Path(ckpt_dir).exists() else []


def _steps(ckpt_dir):
  return sorted(int(n) for n in _entries(ckpt_dir) if n.isdigit())


def _load(workdir, step=None):
  """(state as numpy, data iterator state) of a checkpoint written by a 4-device run."""
  ckpt_dir = epath.Path(workdir) / "checkpoints"
  step = max(_steps(ckpt_dir)) if step is None else step
  with ocp.StandardCheckpointer() as checkpointer:
    state = jax.device_get(checkpointer.restore(ckpt_dir / str(step) / "state"))
  data = json.loads((ckpt_dir / str(step) / "data" / "process_0-of-1.json").read_text())
  return state, data


@pytest.mark.slow
def test_sigkill_and_sigterm_then_resume_is_bit_identical_to_uninterrupted_run(tmp_path, data_dir, compile_cache):
  # Uninterrupted reference (also fills the compilation cache, so the interrupted runs start in seconds), in the
  # README's command shape: run from another folder with a relative --workdir and config file (orbax needs absolute
  # paths, main.py makes them so), ending with the final evaluation on a test set and its input PSNR.
  (tmp_path / "relative_cfg.py").write_text(
    "from configs import tiny\n"
    "from bdirnet_jax.data_config import dataset_config\n"
    "def get_config():\n"
    "  c = tiny.get_config()\n"
    "  c.eval_datasets = [dataset_config(config='gaussian_k15', split='test', crop_size=0,\n"
    f"                                   data_dir={str(data_dir)!r})]\n"
    "  return c\n"
  )
  ref, ref_log = tmp_path / "runs" / "ref", tmp_path / "ref.log"
  cmd = _train_cmd("runs/ref", data_dir, config="relative_cfg.py")
  _finished(_launch(cmd, ref_log, compile_cache, cwd=tmp_path), ref_log, timeout=600)
  assert _steps(ref / "checkpoints")[-1] == STEPS
  text = ref_log.read_text()
  final = rf"Final evaluation at step {STEPS} on synthetic_blur_test: PSNR [\d.]+ dB \(input [\d.]+\)"
  assert re.search(final, text), text[-3000:]
  summary = json.loads((ref / "eval" / "synthetic_blur_test.json").read_text())
  assert summary["num_images"] == 16
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  records = list(tfds.data_source("synthetic_blur/gaussian_k15", split="test", data_dir=str(data_dir)))
  psnr, input_psnr = np.mean(fakes.reference_psnrs(ref, records), axis=0)
  assert summary["psnr"] == pytest.approx(psnr, abs=1e-3)
  assert summary["input_psnr"] == pytest.approx(input_psnr, abs=1e-3)

  work = tmp_path / "work"
  ckpts = work / "checkpoints"

  # 1. SIGKILL while checkpoint 4 is being written (its temporary folder exists, not yet renamed).
  log = tmp_path / "a.log"
  proc = _launch(_train_cmd(work, data_dir), log, compile_cache)
  _wait_for(lambda: any(n.startswith("4.orbax-checkpoint-tmp") or n == "4" for n in _entries(ckpts)), proc, log)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(60) == -signal.SIGKILL
  after_kill = _entries(ckpts)
  half_written = [n for n in after_kill if not n.isdigit()]
  assert half_written, f"the kill missed the save window: {after_kill}"
  # Only complete checkpoints carry a step number; the half-written one stays a temporary folder.
  complete = _steps(ckpts)
  assert complete and max(complete) in (2, 4), after_kill
  state, _ = _load(work)
  assert int(state["step"]) == max(complete)

  # 2. Resume without periodic checkpoints, SIGTERM once step resumed_from + 2 is logged: the process saves the
  # step it reached (the only new checkpoint) and exits with status 0.
  resumed_from = max(complete)
  log = tmp_path / "b.log"
  proc = _launch(_train_cmd(work, data_dir, checkpoint_every=1000), log, compile_cache)
  logged = re.compile(rf"\] \[{resumed_from + 2}\] .*loss=")
  _wait_for(lambda: logged.search(log.read_text()), proc, log)
  proc.send_signal(signal.SIGTERM)
  _finished(proc, log, timeout=120)
  text = log.read_text()
  assert f"Resuming from {ckpts / str(resumed_from)}" in text
  assert "Received signal 15" in text
  stopped_at = int(re.search(r"Stopping at step (\d+) after SIGTERM", text).group(1))
  assert resumed_from + 2 <= stopped_at < STEPS
  assert set(_steps(ckpts)) - set(complete) == {stopped_at}
  assert not [n for n in _entries(ckpts) if not n.isdigit()], _entries(ckpts)  # no half-written leftovers
  state, _ = _load(work)
  assert int(state["step"]) == stopped_at

  # 3. Resume to the end: parameters, EMA, optimizer state and data position equal the uninterrupted run's.
  log = tmp_path / "c.log"
  _finished(_launch(_train_cmd(work, data_dir), log, compile_cache), log)
  assert f"Resuming from {ckpts / str(stopped_at)}" in log.read_text()
  ref_state, ref_data = _load(ref)
  state, data = _load(work)
  assert data == ref_data
  assert int(state["step"]) == STEPS and int(state["nonfinite_steps"]) == 0
  assert jax.tree.structure(state) == jax.tree.structure(ref_state)
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


def _nan_config(policy, steps):
  config = tiny.get_config()
  config.nan_policy = policy
  config.num_train_steps = steps
  config.optim.schedule_steps = 4  # one horizon for both policies' runs: one compiled step, loaded from the cache
  config.checkpoint_every_steps = 2
  config.log_every_steps = 2
  config.async_checkpointing = False
  # Reconstruction loss only: the single-view graph compiles in half the time, and the guard does not depend on it.
  for key in ("identity_weight", "latent_weight", "infonce_weight", "stats_weight", "fft_weight"):
    config.loss[key] = 0.0
  return config


def test_nan_policy_stop_raises_and_keeps_last_good_checkpoint(tmp_path):
  config = _nan_config("stop", 4)
  data = fakes.NaNAt(fakes.PairIterator(config.batch_size, config.dataset.crop_size), nan_index=2)  # step 3
  with pytest.raises(
    train.NonFiniteError,
    match=r"non-finite loss or gradients in 1 step\(s\) before step 4.*"
    r"Last checkpoint intact: step 2 in",
  ):
    train.train_and_evaluate(config, tmp_path, data)
  assert _entries(tmp_path / "checkpoints") == ["2"]
  state, data_state = _load(tmp_path)
  assert int(state["step"]) == 2 and data_state == {"index": 2}
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def test_nan_policy_skip_leaves_params_unchanged_for_that_step(tmp_path):
  config = _nan_config("skip", 3)
  config.checkpoint_every_steps = 1
  data = fakes.NaNAt(fakes.PairIterator(config.batch_size, config.dataset.crop_size), nan_index=2)  # step 3
  final = jax.device_get(train.train_and_evaluate(config, tmp_path, data))
  assert int(final.step) == 3 and int(final.nonfinite_steps) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(final.params))
  step1, _ = _load(tmp_path, step=1)
  step2, _ = _load(tmp_path, step=2)
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(step2[name]), jax.tree.leaves(getattr(final, name))):
      np.testing.assert_array_equal(a, b)
  # The finite step 2 did change the params, so the equality above is not vacuous.
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(step1["params"]), jax.tree.leaves(step2["params"])))


def _snapshot(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    out[os.path.relpath(dirpath, root) + "/"] = os.stat(dirpath).st_mtime_ns
  return out


def test_workdir_of_another_preset_fails_clearly_and_nothing_is_overwritten(tmp_path, trained_workdir, data_dir):
  workdir = tmp_path / "w"
  shutil.copytree(trained_workdir, workdir, copy_function=shutil.copy2)
  before = _snapshot(workdir)
  cmd = [
    sys.executable,
    "main.py",
    "--mode=train",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--config.model.preset=small",
    f"--config.dataset.data_dir={data_dir}",
  ]
  result = subprocess.run(
    cmd, cwd=fakes.REPO, env=fakes.subprocess_env(4), capture_output=True, text=True, timeout=300, check=False
  )
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: --workdir={workdir} holds checkpoints of a different model"), last
  assert "'preset': ('tiny', 'small')" in last and "Nothing was overwritten" in last
  assert _snapshot(workdir) == before

  # Without config.json the guard above cannot know; the checkpoint itself then refuses the other model.
  os.remove(workdir / "config.json")
  before = _snapshot(workdir)
  result = subprocess.run(
    cmd, cwd=fakes.REPO, env=fakes.subprocess_env(4), capture_output=True, text=True, timeout=300, check=False
  )
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert re.match(r"error: checkpoint \S+/checkpoints/4 does not match the model of this config", last), last
  assert _snapshot(workdir) == before


def test_missing_config_and_file_workdir_fail_with_one_line(tmp_path):
  env = fakes.subprocess_env(1)
  run = lambda *args: subprocess.run(
    [sys.executable, "main.py", *args], cwd=fakes.REPO, env=env, capture_output=True, text=True, timeout=300
  )
  proc = run("--config=configs/no_such_config.py", f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
    "error: --config=configs/no_such_config.py: no such config file"
  )
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  proc = run("--config=configs/tiny.py", f"--workdir={a_file}")
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
    f"error: --workdir={a_file} is an existing file, not a directory"
  )


class _FailedWrite:
  """An orbax commit future whose background write failed (a full disk)."""

  def result(self, timeout=None):
    del timeout
    raise OSError(28, "No space left on device")


def test_failed_async_save_stops_the_run_and_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
  """The asynchronous write of step 2 fails in the background: the run stops at the next step with that error
  instead of training on without checkpoints, and step 1's checkpoint stays whole and restorable."""
  real_async_save = ocp.StandardCheckpointHandler.async_save

  async def async_save(self, directory, *args, **kwargs):
    futures = await real_async_save(self, directory, *args, **kwargs)
    return futures + [_FailedWrite()] if "2" in epath.Path(str(directory)).parent.name else futures

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)
  config = fakes.trained_workdir_config()  # its compiled step; checkpoint_every_steps is not part of it
  config.checkpoint_every_steps = 1
  with pytest.raises(checkpoint.CheckpointSaveError) as e:
    train.train_and_evaluate(config, tmp_path, fakes.PairIterator(config.batch_size, config.dataset.crop_size))
  assert str(e.value).startswith(f"saving a checkpoint in {tmp_path / 'checkpoints'} failed: ")
  assert "No space left on device" in str(e.value) and "Complete checkpoints there: steps [1]" in str(e.value)
  assert _steps(tmp_path / "checkpoints") == [1]
  state, data_state = _load(tmp_path)
  assert int(state["step"]) == 1 and data_state == {"index": 1}
