"""`tfds build` for environments without apache-beam.

The `tfds` console script of tensorflow-datasets 4.9.10 imports its
`convert_format` command at start-up, which subclasses `apache_beam.DoFn` at module
level, so `tfds build ...` fails with `ModuleNotFoundError: No module named
'apache_beam'` unless apache-beam is installed.  This module runs TFDS's own
`build` command (same flags, same code) without that import:

    python -m tfds_builders.cli build tfds_builders/gopro \\
        --manual_dir=/data/manual --data_dir=/data/tensorflow_datasets
    python -m tfds_builders.cli build gopro --config=blur_gamma --manual_dir=... --data_dir=...
    python -m tfds_builders.cli build --help

Both a builder folder and a registered name work (this module imports
`tfds_builders`, which registers every builder).  Our builders write ArrayRecord
unless `--file_format=tfrecord` is given.  With apache-beam installed, plain
`tfds build tfds_builders/gopro ...` works the same way.
"""

from __future__ import annotations

import dataclasses
import logging as python_logging
import sys

import simple_parsing
import tensorflow_datasets as tfds
from absl import app
from absl import flags
from absl import logging
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils

import tfds_builders  # noqa: F401  (registers the builders)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Args(cli_utils.Args):
  """TFDS `build` command for the tfds_builders datasets."""

  command: build.Args = simple_parsing.subparsers({"build": build.Args})

  def execute(self) -> None:
    self.command.execute()


_parse_flags = cli_utils.make_flags_parser(Args, description=__doc__.splitlines()[0])


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
  args.execute()


def launch_cli() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  launch_cli()
