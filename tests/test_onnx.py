"""--mode=export --format=onnx: onnxruntime on the CPU reproduces --mode=predict at several sizes."""

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import onnx
import pytest
import skimage.data

from bdirnet_jax import onnx_export
from bdirnet_jax import predict

ROOT = Path(__file__).resolve().parent.parent
# Non-square and not multiples of the tiny network's 4; their predict buckets (64x64, 64x128, 128x64) do not hold
# one another, so predict runs each in its own bucket, as Runner pads it.
SIZES = [(64, 64), (45, 77), (100, 60)]


def test_onnx_export_matches_predict(trained_workdir, tmp_path):
  model_path = tmp_path / "model.onnx"
  cmd = [sys.executable, "main.py", "--mode=export", f"--workdir={trained_workdir}", "--format=onnx"]
  result = subprocess.run(cmd + [f"--output={model_path}"], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]

  graph = onnx.load(str(model_path)).graph
  assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["deblurred"]
  dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
  assert dims == ["batch", "4*height", "4*width", 3]
  assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

  photo = skimage.data.chelsea()
  (tmp_path / "in").mkdir()
  for h, w in SIZES:
    iio.imwrite(tmp_path / "in" / f"{h}x{w}.png", photo[60 : 60 + h, 120 : 120 + w])
  assert predict.predict(str(trained_workdir), str(tmp_path / "in"), str(tmp_path / "out")) == 0

  runner = onnx_export.Runner(model_path)
  assert runner.multiple == 4
  for h, w in SIZES:
    x = iio.imread(tmp_path / "in" / f"{h}x{w}.png").astype(np.float32)[None] / 255
    got = runner(x)
    assert got.shape == x.shape and got.dtype == np.float32
    levels = np.abs(np.round(got[0] * 255).astype(np.int32) - iio.imread(tmp_path / "out" / f"{h}x{w}.png"))
    assert (levels <= 1).mean() >= 0.99, (h, w, (levels <= 1).mean())

  # The graph itself takes any batch and any multiple of 4, and refuses what the contract excludes.
  x = np.random.default_rng(0).random((2, 8, 12, 3), dtype=np.float32)
  assert runner.session.run(None, {"images": x})[0].shape == x.shape
  with pytest.raises(ValueError, match="expects float32"):
    runner(x[0])
