"""What every command-line tool of the project shares: quiet logs, --help exiting 0, usage errors in one line.

Logs: the project's own lines at INFO, libraries' chatter hidden.

Orbax logs several KB per checkpoint handler at INFO, TensorFlow and XLA print oneDNN/backend notices from C++,
and they bury the few lines a user needs. By default an INFO (or lower) record is shown only when it comes from
this project's code; warnings and errors of every library still show. `--verbosity=1` (or `-v 1`) shows
everything, as absl would.
"""

import logging as python_logging
import os
import sys
from pathlib import Path

from absl import flags
from absl import logging

_ROOT = Path(__file__).resolve().parents[1]
# The project's code: a record from a file under one of these is the project's own.
OWN = tuple(str(_ROOT / d) + os.sep for d in ("bdirnet_jax", "tfds_builders", "benchmarks", "studies")) + (
  str(_ROOT / "main.py"),
)

# clu's files that write the training loop's own report (metric lines "[step] loss=...", steps/s and ETA notes).
TRAINING_REPORTS = tuple(
  os.sep.join(("clu",) + parts) for parts in (("metric_writers", "logging_writer.py"), ("platform", "local.py"))
)


def verbose_requested(argv) -> bool:
  """Whether argv asks for libraries' logs (--verbosity=N or -v N with N >= 1), read before flags are parsed."""
  for i, arg in enumerate(argv):
    for name in ("--verbosity", "-v", "--v"):
      if arg == name and i + 1 < len(argv):
        value = argv[i + 1]
      elif arg.startswith(name + "="):
        value = arg.split("=", 1)[1]
      else:
        continue
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


def quiet_native_logs(argv=None) -> None:
  """Hides TensorFlow/XLA's C++ INFO notices (oneDNN, backend setup) unless asked; call before they are imported."""
  if not verbose_requested(sys.argv if argv is None else argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("GLOG_minloglevel", "1")
    os.environ.setdefault("TPU_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("TPU_STDERR_LOG_LEVEL", "1")


class OwnLinesOnly(python_logging.Filter):
  """Passes the project's own records, and libraries' warnings and errors (orbax's errors only: it warns on every
  restore of a checkpoint written without its optional metadata file)."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    if record.pathname.startswith(OWN) or record.pathname.endswith(TRAINING_REPORTS):
      return True
    quiet_below = python_logging.ERROR if f"{os.sep}orbax{os.sep}" in record.pathname else python_logging.WARNING
    return record.levelno >= quiet_below


_FILTER = OwnLinesOnly()


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv):
  """absl's parser, but asking for help is a success (absl exits 1 after printing it)."""
  try:
    return flags.FLAGS(argv)
  except SystemExit:
    if any(a in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    usage_error(str(e))


def program_name() -> str:
  """How the running command is typed: `main.py`, or `python -m PACKAGE` for a package's __main__."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name.endswith(".__main__"):
    return f"python -m {spec.name.removesuffix('.__main__')}"
  return Path(sys.argv[0]).name


def usage_error(reason: str):
  """Exits with the reason first, then where the help is (absl would print the whole help, then the reason)."""
  sys.exit(f"error: {reason}\nSee {program_name()} --help for the flags.")


def no_bars_when_redirected() -> None:
  """TFDS draws its dataset-build progress bars into any stream (escape codes in a redirected log); this project's
  bars already draw only on a terminal. For the commands that may build a dataset."""
  if not sys.stderr.isatty():
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    tfds.disable_progress_bar()


def setup_logging() -> None:
  """After flags are parsed: hides libraries' INFO lines unless --verbosity >= 1."""
  handler = logging.get_absl_handler().python_handler  # the absl handler passes records on without filtering
  handler.removeFilter(_FILTER)
  verbosity = flags.FLAGS["verbosity"].value if flags.FLAGS.is_parsed() else 0
  if verbosity < 1:
    handler.addFilter(_FILTER)
