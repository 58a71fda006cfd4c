"""The card's ONNX check: `--mode=export --format=onnx` of a package, run by onnxruntime on the CPU, against
`--mode=predict` of the same package, on crops of the validation photo (outside the project's photos).

  python studies/pretrained/onnx_check.py --workdir=pretrained/bdirnet-small-mixed [--output=DIR]

Both commands run as a user runs them (subprocesses of main.py). Prints one JSON line: per size the share of
values within one uint8 level and the largest difference; with --output writes onnx_check_step<N>.json (never
overwriting).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import imageio.v3 as iio
import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import card_table  # noqa: E402
import validate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Square, non-square and not a multiple of 8 (the network's), at different predict buckets.
CROPS = [(128, 128, 40, 60), (101, 157, 80, 30), (200, 72, 20, 200)]  # height, width, top, left

flags.DEFINE_string("workdir", None, "pretrained package (or training workdir) to export and predict with")
flags.DEFINE_string("output", None, "folder for onnx_check_step<N>.json")


def _main_py(*args: str) -> None:
  result = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    raise SystemExit(f"main.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def main(argv):
  del argv
  from bdirnet_jax import onnx_export  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import pretrained  # pylint: disable=g-import-not-at-top

  workdir = os.path.abspath(flags.FLAGS.workdir)
  photo = validate.validation_photos()[0][1]
  report = {"workdir": flags.FLAGS.workdir, "photo": validate.PHOTO_ID, "sizes": {}}
  with tempfile.TemporaryDirectory() as tmp:
    os.mkdir(os.path.join(tmp, "in"))
    for h, w, top, left in CROPS:
      iio.imwrite(os.path.join(tmp, "in", f"{h}x{w}.png"), photo[top : top + h, left : left + w])
    t0 = time.time()
    model = os.path.join(tmp, "model.onnx")
    _main_py("--mode=export", f"--workdir={workdir}", "--format=onnx", f"--output={model}")
    report["export_seconds"] = round(time.time() - t0, 1)
    report["onnx_bytes"] = os.path.getsize(model)
    _main_py("--mode=predict", f"--workdir={workdir}", f"--input={tmp}/in", f"--output={tmp}/out")
    runner = onnx_export.Runner(model)
    for h, w, _, _ in CROPS:
      x = iio.imread(os.path.join(tmp, "in", f"{h}x{w}.png")).astype(np.float32)[None] / 255
      got = np.round(runner(x)[0] * 255).astype(np.int32)
      levels = np.abs(got - iio.imread(os.path.join(tmp, "out", f"{h}x{w}.png")).astype(np.int32))
      report["sizes"][f"{h}x{w}"] = {"within_one_level": float((levels <= 1).mean()), "max_levels": int(levels.max())}
  meta = pathlib.Path(workdir) / pretrained.METADATA_FILE  # a package says its step; a training workdir does not
  step = report["step"] = json.loads(meta.read_text())["step"] if meta.exists() else None
  report["passes"] = all(s["within_one_level"] >= 0.99 for s in report["sizes"].values())
  print(json.dumps(report))
  if flags.FLAGS.output:
    card_table.write(flags.FLAGS.output, f"onnx_check_step{step}", report, md=None)
  return 0 if report["passes"] else 1


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
