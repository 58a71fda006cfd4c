"""Metric writers and the training loop's report hooks, with or without TensorFlow (the GPU image has none).

* With tensorflow and tensorboard installed, process 0 writes TensorBoard events and log lines through clu's
  `metric_writers` (other processes: log lines only).
* Without them, `clu.metric_writers` cannot be imported at all (its package imports the TensorBoard writer, which
  imports TensorFlow), nor can `clu.periodic_actions` (it imports `metric_writers`). The loop then writes log
  lines only, through `LogWriter` (clu's `LoggingWriter` format: `[step] key=value, ...`), and one notice says so.
* The report hooks are this module's in both cases (`ReportProgress`, `Profile`), so they never import
  `periodic_actions`: the progress note goes through `clu.platform` (it logs "Setting work unit notes: ..."), the
  profile through `jax.profiler`; neither needs TensorFlow.

`tensorboard_available()` only answers the question; it changes nothing.
"""

import functools
import importlib.util
import time
from typing import Any
from typing import Mapping

from absl import logging


@functools.cache
def tensorboard_available() -> bool:
  return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tensorboard"))


@functools.cache
def _log_notice() -> None:
  logging.warning("tensorflow/tensorboard not installed: no TensorBoard events, metrics go to log lines only.")


class LogWriter:
  """The metric writer without TensorFlow: every value as an INFO log line, in clu's LoggingWriter format (the
  quiet log passes the project's own lines; tools and tests read `[step] loss=...`)."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(scalars.items())]
    logging.info("[%d] %s", step, ", ".join(values))

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    logging.info("[%d] Got images: %s.", step, {k: v.shape for k, v in images.items()})

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    logging.info("[%d] Got texts: %s.", step, texts)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    logging.info("[Hyperparameters] %s", hparams)

  def flush(self) -> None:
    logging.flush()

  def close(self) -> None:
    self.flush()


def create_writer(workdir: str, process_index: int):
  """TensorBoard events + log lines on process 0, log lines elsewhere; log lines only without TensorFlow."""
  if not tensorboard_available():
    _log_notice()
    return LogWriter()
  from clu import metric_writers  # pylint: disable=g-import-not-at-top

  return metric_writers.create_default_writer(workdir, just_logging=process_index > 0, asynchronous=True)


def _format_secs(secs: float) -> str:
  """123456.7 -> "1d10h17m" (clu's progress format)."""
  days, rest = divmod(int(secs), 24 * 3600)
  hours, rest = divmod(rest, 3600)
  return (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + f"{rest // 60}m"


class ReportProgress:
  """Called after every step: every `every_steps` steps and at the last one, the steps/s since the previous report,
  the progress and the ETA as a work-unit note (a log line here), and steps_per_sec/uptime scalars to `writer`.

  The first call only starts the clock (its step's time is unknown), as clu's hook of the same name does.
  """

  def __init__(self, *, num_train_steps: int, writer, every_steps: int):
    self._num_train_steps = num_train_steps
    self._writer = writer
    self._every_steps = every_steps
    self._t0 = time.monotonic()
    self._previous: tuple[int, float] | None = None

  def __call__(self, step: int) -> bool:
    """Whether it reported."""
    from clu import platform  # pylint: disable=g-import-not-at-top

    now = time.monotonic()
    if self._previous is None:
      self._previous = (step, now)
      return False
    previous_step, previous_time = self._previous
    due = step % self._every_steps == 0 or step == self._num_train_steps
    if step == previous_step or not due:
      return False
    steps_per_sec = (step - previous_step) / max(now - previous_time, 1e-9)
    eta = (self._num_train_steps - step) / steps_per_sec
    platform.work_unit().set_notes(
      f"{steps_per_sec:.1f} steps/s, {100 * step / self._num_train_steps:.1f}% ({step}/{self._num_train_steps}), "
      f"ETA: {_format_secs(eta)}"
    )
    self._writer.write_scalars(step, {"steps_per_sec": steps_per_sec})
    self._writer.write_scalars(step, {"uptime": now - self._t0})
    self._previous = (step, now)
    return True


class Profile:
  """Called after every step: a `jax.profiler` trace of the `num_profile_steps` steps after `first_profile - 1`,
  written under `logdir` (TensorBoard's profile plugin and Perfetto read it)."""

  def __init__(self, *, num_profile_steps: int, first_profile: int, logdir: str):
    self._first = first_profile
    self._last = first_profile + num_profile_steps
    self._logdir = logdir
    self._running = False

  def __call__(self, step: int) -> None:
    import jax  # pylint: disable=g-import-not-at-top

    if step == self._first and not self._running:
      try:
        jax.profiler.start_trace(self._logdir)
        self._running = True
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("Could not start profiling: %s", e)
    elif step >= self._last and self._running:
      jax.profiler.stop_trace()
      self._running = False
      logging.info("Profiled %d steps (to step %d) under %s", self._last - self._first, step, self._logdir)
