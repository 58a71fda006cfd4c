"""What every benchmark script shares: flags that parse from the command line or from a list (tests)."""

import json
import os
import sys
from collections.abc import Callable

from absl import app
from absl import flags


def parse(define: Callable[[flags.FlagValues], None], argv: list[str] | None) -> flags.FlagValues:
  """The global FLAGS (parsed by app.run) when `argv` is None, else a fresh FlagValues parsed from `argv`.

  A fresh set per call lets tests call several scripts' `main` in one process without duplicate-flag errors.
  """
  if argv is None:
    return flags.FLAGS
  values = flags.FlagValues()
  define(values)
  values([sys.argv[0], *argv])
  return values


def force_host_device_count(count: int) -> None:
  """`count` (> 0) fake CPU devices, for sharded runs on a host without accelerators; must precede importing jax."""
  if count:
    flag = f"--xla_force_host_platform_device_count={count}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def emit(row: dict) -> dict:
  """Prints one JSON line on stdout: run_all collects these, so nothing else a script prints starts with `{`."""
  print(json.dumps(row), flush=True)
  return row


def run_script(define: Callable[[flags.FlagValues], None], main: Callable[[], object]) -> None:
  """A script's `__main__`: its flags defined on the global FLAGS, parsed by absl, then `main()` (which reads them)."""

  def run(argv):
    del argv  # parsed into FLAGS
    main()  # what it returns is for callers in Python: app.run would exit with it

  define(flags.FLAGS)
  app.run(run)
