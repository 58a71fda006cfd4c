"""main.py from the command line: bad usage and a missing checkpoint step exit non-zero with one readable line.
(User-facing predict behaviour is in test_cli.py.)"""

import os
import subprocess
import sys

import pytest

from tests import fakes


def _main(*args, timeout=300):
  env = fakes.subprocess_env(1, os.environ.get("JAX_COMPILATION_CACHE_DIR"))
  return subprocess.run(
    [sys.executable, "main.py", *args], cwd=fakes.REPO, env=env, capture_output=True, text=True, timeout=timeout
  )


@pytest.mark.parametrize(
  "args,message",
  [
    (["--mode=predict"], "--mode=predict needs --input=FILE_OR_DIR and --output=DIR"),
    (["--mode=export"], "--mode=export needs --output=FILE"),
    (["--mode=train"], "--mode=train needs --config=configs/NAME.py"),
    (["--mode=predict", "--input=x", "--output=y", "extra"], "error: unexpected arguments: extra"),
    (["--mode=deblur"], "--mode"),
  ],
)
def test_usage_errors_exit_non_zero_naming_the_problem(tmp_path, args, message):
  result = _main(f"--workdir={tmp_path}", *args, timeout=120)
  assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr


def test_missing_step_is_one_line(trained_workdir, tmp_path):
  result = _main("--mode=export", f"--workdir={trained_workdir}", f"--output={tmp_path / 'm.bin'}", "--step=3")
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith("error: no checkpoint of step 3 in "), result.stderr[-600:]
  assert result.stderr.strip().endswith("it has steps [4]")
  assert not (tmp_path / "m.bin").exists()
