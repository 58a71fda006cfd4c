"""The study's command line: `python -m bdirnet_jax.study --study=configs/studies/NAME.py --output=DIR
[--data_dir=D] [--report_only] [--study.FIELD=VALUE]` (see the package docstring).

`--study` is a path as in the repository; one that does not exist in the working directory is looked up beside the
installed `configs` package (`plan.resolve_path`), so an installed copy runs from any directory.
"""

import os
import sys
import time

import jax
from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from bdirnet_jax import command_line
from bdirnet_jax.study import plan

FLAGS = flags.FLAGS
_STUDY_FLAG = ("--study", "-study")


def define_flags():
  config_flags.DEFINE_config_file("study", None, "Study config file (configs/studies/NAME.py).", lock_config=True)
  flags.DEFINE_string("output", None, "Study folder: runs/, caches, report.md, report.csv, report_psnr.png.")
  flags.DEFINE_string(
    "data_dir",
    None,
    "TFDS data_dir: synthetic_blur is built there for training (default "
    "OUTPUT/tfds) and every real dataset prepared there is a test set.",
  )
  flags.DEFINE_bool("report_only", False, "Train nothing: report the finished runs, list the others as not run.")


def _resolve_study_file(value: str) -> str:
  path, colon, arg = value.partition(":")  # config_flags passes what follows a colon to get_config
  return plan.resolve_path(path) + colon + arg


def resolve_study_argument(argv: list[str]) -> list[str]:
  """argv with the --study file's path resolved (`plan.resolve_path`), in both `--study=PATH` and `--study PATH`
  forms; everything else as it was."""
  out = list(argv)
  for i, arg in enumerate(out):
    name, eq, value = arg.partition("=")
    if name in _STUDY_FLAG and eq:
      out[i] = f"{name}={_resolve_study_file(value)}"
    elif arg in _STUDY_FLAG and i + 1 < len(out):
      out[i + 1] = _resolve_study_file(out[i + 1])
  return out


def setup_compilation_cache(output: epath.Path) -> None:
  """DIR/jax_cache as JAX's persistent compilation cache, unless one is configured already."""
  if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_compilation_cache_dir", str(output / "jax_cache"))
  compilation_cache.reset_cache()  # re-initialise even if something was compiled before in this process


def main(argv):
  from bdirnet_jax.study import runner  # pylint: disable=g-import-not-at-top

  command_line.setup_logging()
  if len(argv) > 1:
    command_line.usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["study"].present or not FLAGS.output:
    command_line.usage_error("--study=configs/studies/NAME.py and --output=DIR are required")
  study_file = FLAGS["study"].config_filename.partition(":")[0]
  if not os.path.isfile(study_file):
    command_line.usage_error(f"--study={study_file}: no such study config file ({plan.where_looked(study_file)})")
  command_line.no_bars_when_redirected()
  t0 = time.time()
  setup_compilation_cache(epath.Path(FLAGS.output))
  try:
    runner.run(FLAGS.study, FLAGS.output, data_dir=FLAGS.data_dir, report_only=FLAGS.report_only)
  except runner.StudyInterrupted as e:
    logging.warning("study: %s", e)
    raise SystemExit(1) from None
  logging.info("study: done in %.1fs", time.time() - t0)


def run():
  """The command, once `define_flags()` has run: --study resolved, then absl's app.run."""
  app.run(main, argv=resolve_study_argument(sys.argv), flags_parser=command_line.parse_flags)
