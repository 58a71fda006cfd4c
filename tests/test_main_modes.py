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


def test_predict_flags_pick_raw_params_of_the_step_in_bf16(trained_workdir, tmp_path):
  """--use_ema=false --step=4 --bf16 reach the network: the file equals bf16 inference with the raw step-4 params.

  The reference pads the image as predict does, to its bucket (40x52 -> 64x64, reflect). Padded only to the
  network's multiple, as evaluate pads, the result differs by up to 18 uint8 levels (mean 2.5, measured on this
  workdir, in float32 as in bf16, EMA or raw): SAID removes each image's per-channel statistics, and the 24 rows and
  12 columns of reflected border change them. That, not bf16 or the params, is the gap seen between the two paths.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top

  photo = fakes.photo_pairs()[0][0][:40, :52]
  assert cv2.imwrite(str(tmp_path / "p.png"), photo[..., ::-1])
  out = tmp_path / "out.png"
  args = ["--mode=predict", f"--workdir={trained_workdir}", f"--input={tmp_path / 'p.png'}", f"--output={out}"]
  result = _main(*args, "--use_ema=false", "--step=4", "--bf16")
  assert result.returncode == 0, result.stderr[-2000:]
  written = cv2.imread(str(out))[..., ::-1].astype(np.float64)

  def reference(**kwargs):
    restored = inference.load(trained_workdir, **kwargs)
    padded = np.pad(photo.astype(np.float32) / 255, ((0, 24), (0, 12), (0, 0)), mode="reflect")[None]
    rgb = np.asarray(jax.jit(inference.deblur_fn(restored.model))(restored.params, padded))[0, :40, :52]
    return np.rint(np.clip(rgb, 0, 1) * 255)

  raw_bf16 = reference(use_ema=False, step=4, bf16=True)
  assert np.abs(written - raw_bf16).max() <= 1  # measured 0
  # The flags matter: the default (EMA, float32) output is measurably another image.
  assert np.abs(reference() - raw_bf16).max() >= 2
