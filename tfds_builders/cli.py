"""`tfds build` for environments without apache-beam.

The `tfds` console script of tensorflow-datasets 4.9.10 imports its
`convert_format` command at start-up, which subclasses `apache_beam.DoFn` at module
level, so `tfds build ...` fails with `ModuleNotFoundError: No module named
'apache_beam'` unless apache-beam is installed.  This module runs TFDS's own
`build` command (same flags, same code) without that import:

    python -m tfds_builders.cli build tfds_builders/gopro \\
        --manual_dir=/data/manual --data_dir=/data/tensorflow_datasets
    python -m tfds_builders.cli build gopro --config=blur_gamma --manual_dir=... --data_dir=...
    python -m tfds_builders.cli --help         (the builders, their configs and the path form)
    python -m tfds_builders.cli build --help   (every option of TFDS's build)

Both a builder folder and a registered name work (this module imports
`tfds_builders`, which registers every builder).  Our builders write ArrayRecord
unless `--file_format=tfrecord` is given.  With apache-beam installed, plain
`tfds build tfds_builders/gopro ...` works the same way.

A missing or empty manual dir prints the builder's expected layout (no traceback); a build that fails on its
manual dir removes the dataset folders it created.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging as python_logging
import os
import shutil
import sys
from pathlib import Path

import simple_parsing
import tensorflow_datasets as tfds
from absl import app
from absl import flags
from absl import logging
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils

import tfds_builders  # (registers the builders)
from tfds_builders import _common


@dataclasses.dataclass(frozen=True, kw_only=True)
class Args(cli_utils.Args):
  """TFDS `build` command for the tfds_builders datasets."""

  command: build.Args = simple_parsing.subparsers({"build": build.Args})

  def execute(self) -> None:
    self.command.execute()


def _builders_help() -> str:
  lines = []
  for name in tfds_builders.BUILDER_NAMES:
    configs = [c.name for c in (tfds.builder_cls(name).BUILDER_CONFIGS or [])]
    lines.append(f"  {name:<15} tfds_builders/{name:<15} configs: {', '.join(configs) or '(none)'}")
  return "\n".join(lines)


def _description() -> str:
  return (
    "Builds this project's TFDS datasets with TFDS's own `build` command (no apache-beam needed).\n\n"
    "  python -m tfds_builders.cli build BUILDER [--config=NAME] --manual_dir=DIR --data_dir=DIR\n\n"
    "BUILDER is a registered name or a builder folder (path form tfds_builders/NAME):\n"
    f"{_builders_help()}\n\n"
    "e.g. python -m tfds_builders.cli build tfds_builders/gopro --config=blur --manual_dir=/data/manual "
    "--data_dir=/data/tensorflow_datasets\n"
    "The manual dir layout of each builder: tfds_builders/README.md (a build with an empty --manual_dir prints it).\n"
    "`build --help` lists every option of TFDS's build command."
  )


def _parse_flags(argv: list[str]) -> Args:
  parser = cli_utils.ArgumentParser(
    description=_description(), allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_arguments(Args, dest="args")
  return parser.parse_args(argv[1:]).args


def _check_manual_dirs(command: build.Args) -> None:
  """Exits with a builder's expected-layout message when its manual dir is missing or empty, before TFDS starts
  (which would log its set-up and create the dataset's folders first)."""
  paths = command.paths
  for ds in list(command.positional_datasets) + list(command.datasets):
    name = Path(ds).name if Path(ds).is_dir() else ds.split("/")[0].split(":")[0]
    if name not in tfds_builders.BUILDER_NAMES:
      continue
    layout = getattr(tfds.builder_cls(name), "EXPECTED_LAYOUT", "")
    if not layout:
      continue
    if paths.manual_dir is not None:
      manual_dir = Path(os.path.expanduser(str(paths.manual_dir)))
      manual_dir = manual_dir / name if paths.add_name_to_manual_dir else manual_dir
    else:
      downloads = paths.download_dir or Path(os.path.expanduser(str(paths.data_dir))) / "downloads"
      manual_dir = Path(os.path.expanduser(str(downloads))) / "manual"
    if not manual_dir.is_dir() or not any(manual_dir.iterdir()):
      problem = (
        f"{name}: manual directory {manual_dir} is "
        f"{'empty' if manual_dir.is_dir() else 'missing'}"
        f"{'' if paths.manual_dir is not None else ' (the default; pass --manual_dir=DIR)'}."
      )
      sys.exit(f"error: {_common.manual_dir_error(manual_dir, layout, problem)}")


def _snapshot(data_dir: Path, depth: int = 3) -> set[Path] | None:
  """The paths under `data_dir` down to <name>/<config>/<version>; None when `data_dir` does not exist yet."""
  if not data_dir.is_dir():
    return None
  found, level = set(), [data_dir]
  for _ in range(depth):
    level = [p for d in level if d.is_dir() for p in d.iterdir()]
    found.update(level)
  return found


def _remove_new(data_dir: Path, before: set[Path] | None) -> None:
  """Removes what a failed build added under `data_dir` (the whole folder if the build created it)."""
  if before is None:
    shutil.rmtree(data_dir, ignore_errors=True)
    return
  for path in sorted(_snapshot(data_dir) - before, key=lambda p: len(p.parts)):
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      path.unlink()


def main(args: Args) -> None:
  tfds.core.visibility.set_availables(
    [
      tfds.core.visibility.DatasetType.TFDS_PUBLIC,
      tfds.core.visibility.DatasetType.COMMUNITY_PUBLIC,
    ]
  )
  if not flags.FLAGS.is_parsed() or (not flags.FLAGS.logtostderr and not flags.FLAGS.alsologtostderr):
    formatter = python_logging.Formatter("{levelname}[{filename}]: {message}", style="{")
    logging.use_python_logging(quiet=True)
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler().python_handler
    handler.setFormatter(formatter)
    handler.setStream(sys.stderr)
  _check_manual_dirs(args.command)
  data_dir = Path(os.path.expanduser(str(args.command.paths.data_dir)))
  before = _snapshot(data_dir)
  try:
    args.execute()
  except _common.ManualDirError as e:  # the layout message is the whole answer: no traceback, no partial dataset
    _remove_new(data_dir, before)
    sys.exit(f"error: {e}")


def launch_cli() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  launch_cli()
