"""Gain over the blurred input as a function of how blurred the input is, on the validation photo (outside the
project): where a model helps and where it hurts, for one or more workdirs or packages on the same crops.

  python studies/pretrained/gain_by_input.py --workdirs=pretrained/bdirnet-small-mixed,W2@1500 [--variants=24]

Crops and kernels are validate.py's (seeded; every family), with more variants; each crop's input PSNR puts it in a
bin, and each bin's row gives its count and every model's mean gain (network - input PSNR). Prints markdown; with
--output writes gain_by_input.json/.md there (never overwriting).
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import card_table  # noqa: E402
import validate  # noqa: E402

EDGES = (25.0, 30.0, 35.0)  # input PSNR bins: < 25, 25-30, 30-35, >= 35 dB


def _bins(psnrs) -> np.ndarray:
  return np.searchsorted(np.asarray(EDGES), np.asarray(psnrs), side="right")


def _label(b: int) -> str:
  lo = "" if b == 0 else f"{EDGES[b - 1]:g}"
  hi = "" if b == len(EDGES) else f"{EDGES[b]:g}"
  return f"< {hi} dB" if not lo else (f">= {lo} dB" if not hi else f"{lo}-{hi} dB")


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  t0 = time.time()
  models = []
  for item in FLAGS.workdirs:
    path, _, step = item.partition("@")
    models.append((item, path, int(step) if step else None))
  photos = validate.validation_photos(FLAGS.photos)
  sets, params = card_table.build_sets(
    models[0][1], photos, FLAGS.variants, FLAGS.max_side, FLAGS.kernel_size, FLAGS.noise_sigma
  )
  inputs, gains = None, {}
  for name, path, step in models:
    # The same crops for every model: the input is scored once, with the first.
    _, scores = card_table.score_sets(path, step, sets, baselines=("input",) if inputs is None else ())
    if inputs is None:
      inputs = np.concatenate([[p for p, _ in scores[ts.label]["input"]] for ts in sets])
    net = np.concatenate([[p for p, _ in scores[ts.label]["network"]] for ts in sets])
    gains[name] = net - inputs
  bins = _bins(inputs)
  rows = []
  for b in range(len(EDGES) + 1):
    mask = bins == b
    if mask.any():
      rows.append(
        {"input_psnr": _label(b), "crops": int(mask.sum()), **{n: float(g[mask].mean()) for n, g in gains.items()}}
      )
  lines = [
    f"Gain (dB) by input PSNR, validation photos ({', '.join(n for n, _ in photos)}), {FLAGS.variants} seeded "
    f"{FLAGS.max_side}x{FLAGS.max_side} crops x {len(sets)} families, kernels {params['kernel_size']}x"
    f"{params['kernel_size']}, noise sigma {params['noise_sigma']}",
    "",
    "| input PSNR | crops | " + " | ".join(gains) + " |",
    "|---|---|" + "---|" * len(gains),
  ]
  lines += [f"| {r['input_psnr']} | {r['crops']} | " + " | ".join(f"{r[n]:+.2f}" for n in gains) + " |" for r in rows]
  lines.append(f"| all | {len(inputs)} | " + " | ".join(f"{g.mean():+.2f}" for g in gains.values()) + " |")
  md = "\n".join(lines) + "\n"
  print(md)
  if FLAGS.output:
    payload = {
      "models": list(gains),
      "variants": FLAGS.variants,
      "max_side": FLAGS.max_side,
      **params,
      "rows": rows,
      "input_psnr": inputs.tolist(),
      "gain_db": {n: g.tolist() for n, g in gains.items()},
      "seconds": round(time.time() - t0, 1),
    }
    card_table.write(FLAGS.output, f"gain_by_input{validate.photos_tag(FLAGS.photos)}", payload, md)


if __name__ == "__main__":
  flags.DEFINE_list("workdirs", None, "Workdirs or packages, each optionally @STEP.", required=True)
  flags.DEFINE_string("output", None, "Folder for gain_by_input.json/.md (created; files never overwritten).")
  flags.DEFINE_list("photos", [validate.PHOTO_ID], f"Validation photos, from {sorted(validate.PHOTOS)}.")
  flags.DEFINE_integer("variants", 24, "Seeded crops of the photo per family.")
  flags.DEFINE_integer("max_side", 128, "Crop side in pixels.")
  flags.DEFINE_integer("kernel_size", None, "Kernel size (default: the first model's config.dataset.kernel_size).")
  flags.DEFINE_float("noise_sigma", None, "Noise sigma (default: the first model's config.dataset.noise_sigma).")
  app.run(main)
