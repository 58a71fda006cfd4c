"""writers: the log-only writer matches clu's, the progress hook reports what a hand-made clock says, and without
TensorFlow the training loop trains and logs metric lines with no events file and one notice."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bdirnet_jax import writers

ROOT = Path(__file__).resolve().parents[1]


def test_asking_for_tensorboard_changes_no_module(monkeypatch):
  writers.tensorboard_available.cache_clear()
  try:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    before = dict(sys.modules)
    assert not writers.tensorboard_available()
    assert dict(sys.modules) == before  # the question registers no stand-in module
  finally:
    monkeypatch.undo()
    writers.tensorboard_available.cache_clear()


def _messages(monkeypatch, fn) -> list[str]:
  """The INFO messages absl's logging.info receives while fn() runs (clu's module and ours log through absl)."""
  from absl import logging

  got = []
  monkeypatch.setattr(logging, "info", lambda msg, *args: got.append(msg % args if args else msg))
  monkeypatch.setattr(logging, "flush", lambda: None)
  fn()
  monkeypatch.undo()
  return got


def test_log_writer_writes_clus_logging_lines(monkeypatch):
  """The reference is clu's own LoggingWriter (importable here: the test environment has TensorFlow)."""
  pytest.importorskip("tensorflow")
  from clu.metric_writers import logging_writer

  def write(writer):
    writer.write_scalars(7, {"loss": 0.1234567, "steps": 3, "lr": np.float32(0.5).item()})
    writer.write_images(7, {"strip": np.zeros((1, 4, 8, 3))})
    writer.write_texts(7, {"note": "hi"})
    writer.write_hparams({"batch_size": 4})
    writer.close()

  ours = _messages(monkeypatch, lambda: write(writers.LogWriter()))
  assert ours[0] == "[7] loss=0.123457, lr=0.5, steps=3"
  assert ours == _messages(monkeypatch, lambda: write(logging_writer.LoggingWriter()))


class _Writer:
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))


def test_report_progress_every_n_steps_and_at_the_last(monkeypatch):
  clock = iter([100.0, 101.0, 102.0, 103.0, 104.0, 106.0, 108.0, 110.0, 112.0])  # t0, then one per call
  monkeypatch.setattr(writers.time, "monotonic", lambda: next(clock))
  writer = _Writer()
  notes = []
  from clu import platform

  monkeypatch.setattr(platform.work_unit(), "set_notes", notes.append)
  hook = writers.ReportProgress(num_train_steps=7, writer=writer, every_steps=3)
  reported = [step for step in range(1, 8) if hook(step)]
  # Step 1 starts the clock at t=101; step 3 at t=103: 2 steps in 2 s; step 6 at t=108: 3 steps in 5 s; step 7
  # (the last) at t=110: 1 step in 2 s.
  assert reported == [3, 6, 7]
  assert notes[0] == "1.0 steps/s, 42.9% (3/7), ETA: 0m"
  assert notes[1] == "0.6 steps/s, 85.7% (6/7), ETA: 0m"
  assert [s for s in writer.scalars if "steps_per_sec" in s[1]] == [
    (3, {"steps_per_sec": 1.0}),
    (6, {"steps_per_sec": 0.6}),
    (7, {"steps_per_sec": 0.5}),
  ]
  assert (6, {"uptime": 8.0}) in writer.scalars


def test_eta_format_is_clus():
  assert writers._format_secs(123456.7) == "1d10h17m"  # clu's docstring example
  assert writers._format_secs(59) == "0m" and writers._format_secs(3600) == "1h0m"


_WITHOUT_TENSORFLOW = """
import importlib.machinery
import sys

# As if tensorflow and tensorboard were not installed: the path finder does not find them (find_spec is None, an
# import raises ModuleNotFoundError).
class PathFinderWithout:
  @staticmethod
  def find_spec(name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorboard"):
      return None
    return importlib.machinery.PathFinder.find_spec(name, path, target)

  @staticmethod
  def invalidate_caches():
    importlib.machinery.PathFinder.invalidate_caches()

sys.meta_path[:] = [PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
assert PathFinderWithout in sys.meta_path

from absl import flags
from absl import logging
flags.FLAGS(["train", "--logtostderr"])
logging.set_verbosity(logging.INFO)

from bdirnet_jax import train
from configs import tiny
from tests.fakes import PairIterator

config = tiny.get_config()
config.num_train_steps = 4
config.log_every_steps = 2
config.checkpoint_every_steps = 4
train.train_and_evaluate(config, sys.argv[1], PairIterator(config.batch_size, config.dataset.crop_size))
# clu's metric_writers needs TensorFlow: the loop must not have imported it.
needing_tf = ("tensorflow", "tensorboard", "clu.metric_writers", "clu.periodic_actions")
print("imported:", sorted(m for m in sys.modules if m.startswith(needing_tf)))
"""


@pytest.mark.slow
def test_training_without_tensorflow_logs_metric_lines_and_writes_no_events(tmp_path):
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  proc = subprocess.run(
    [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tmp_path / "run")],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  log = proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "imported: []"
  assert log.count("tensorflow/tensorboard not installed") == 1
  for step in (2, 4):
    assert re.search(rf"\[{step}\] (\S+, )*loss=[\d.e+-]+", log), log[-3000:]
  assert re.search(r"Setting work unit notes: [\d.]+ steps/s, 100.0% \(4/4\)", log)
  assert (tmp_path / "run" / "checkpoints" / "4").is_dir()
  assert not [p for p in (tmp_path / "run").rglob("*") if "tfevents" in p.name]
