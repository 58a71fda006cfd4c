"""clu metric writers, usable where TensorFlow is not installed (the GPU image has none).

clu.metric_writers (and clu.periodic_actions, which imports it) import TensorFlow for the TensorBoard writer. When
TensorFlow is missing we register a stand-in for that one submodule, log a single notice, and use clu's plain
logging writer: the loop, progress reports and profiling keep working and metrics go to log lines.
"""
import importlib.util
import sys
import types

from absl import logging

_TENSORBOARD = None


def tensorboard_available() -> bool:
  global _TENSORBOARD
  if _TENSORBOARD is None:
    _TENSORBOARD = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tensorboard"))
    if not _TENSORBOARD and "clu.metric_writers.summary_writer" not in sys.modules:
      stub = types.ModuleType("clu.metric_writers.summary_writer")

      class SummaryWriter:  # pylint: disable=too-few-public-methods
        def __init__(self, *args, **kwargs):
          raise ImportError("TensorBoard summaries need tensorflow and tensorboard")

      stub.SummaryWriter = SummaryWriter
      sys.modules[stub.__name__] = stub
      logging.warning("tensorflow/tensorboard not installed: no TensorBoard events, metrics go to log lines only.")
  return _TENSORBOARD


def create_writer(workdir: str, process_index: int):
  """TensorBoard events + log lines on process 0, nothing but logging elsewhere."""
  tb = tensorboard_available()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(workdir, just_logging=process_index > 0 or not tb,
                                              asynchronous=True)


def periodic_actions():
  tensorboard_available()
  from clu import periodic_actions as pa  # pylint: disable=g-import-not-at-top
  return pa
