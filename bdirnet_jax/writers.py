"""clu metric writers, usable where TensorFlow is not installed (the GPU image has none).

clu.metric_writers (and clu.periodic_actions, which imports it) import TensorFlow for the TensorBoard writer. When
TensorFlow is missing, `_import_clu()` registers a stand-in for that one submodule before importing clu, logs a
single notice, and clu's plain logging writer is used: the loop, progress reports and profiling keep working and
metrics go to log lines. `tensorboard_available()` only answers the question; it changes nothing.
"""

import functools
import importlib.util
import sys
import types

from absl import logging

_SUMMARY_WRITER = "clu.metric_writers.summary_writer"


@functools.cache
def tensorboard_available() -> bool:
  return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tensorboard"))


@functools.cache
def _stub_summary_writer() -> None:
  """Registers a stand-in for clu's TensorBoard writer module (once), so clu imports without TensorFlow."""
  if _SUMMARY_WRITER in sys.modules:
    return
  stub = types.ModuleType(_SUMMARY_WRITER)

  class SummaryWriter:  # pylint: disable=too-few-public-methods
    def __init__(self, *args, **kwargs):
      raise ImportError("TensorBoard summaries need tensorflow and tensorboard")

  stub.SummaryWriter = SummaryWriter
  sys.modules[_SUMMARY_WRITER] = stub
  logging.warning("tensorflow/tensorboard not installed: no TensorBoard events, metrics go to log lines only.")


def _import_clu(name: str):
  """Imports clu.<name>, first stubbing the TensorBoard writer when TensorFlow is missing."""
  if not tensorboard_available():
    _stub_summary_writer()
  return importlib.import_module(f"clu.{name}")


def create_writer(workdir: str, process_index: int):
  """TensorBoard events + log lines on process 0, nothing but logging elsewhere."""
  metric_writers = _import_clu("metric_writers")
  return metric_writers.create_default_writer(
    workdir, just_logging=process_index > 0 or not tensorboard_available(), asynchronous=True
  )


def periodic_actions():
  return _import_clu("periodic_actions")
