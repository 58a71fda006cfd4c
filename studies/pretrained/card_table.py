"""The model card's per-family table: a workdir or pretrained package on the `synthetic_blur` test split.

  python studies/pretrained/card_table.py --workdir=pretrained/bdirnet-small-mixed --output=studies/pretrained/card

For every blur family (trajectory, linear, Gaussian, defocus) the held-out photos of the test split are cropped and
blurred exactly as the study's test sets are built (`study.testsets.synthetic_sets`: seeded crops and kernels), at
the package's kernel size and noise; each image is scored (PSNR/SSIM, `evaluate`'s protocol) as the blurred input,
the network's output and the Wiener filter given the TRUE kernel (`classical.wiener_oracle`, a non-blind oracle).
The trajectory family is also split into kernels that blur and point-like ones (RMS radius < 0.5 px, which the
default DeblurGAN exposures draw often): a network can only lose PSNR on the latter.

Writes OUTPUT/card_step<N>.json and .md; refuses to overwrite either. The step used for the card is picked with
validate.py (a photo outside the project), never with this table.
"""

import json
import os
import sys
import time

import numpy as np
from absl import app
from absl import flags
from absl import logging

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

FAMILIES = ("trajectory", "linear", "gaussian", "defocus")
POINT_RADIUS_PX = 0.5  # as studies/analysis/trajectory_split.py
METHODS = ("input", "network", "wiener_oracle")


def define_flags(default_variants: int, default_side: int):
  flags.DEFINE_string("workdir", None, "Training workdir or pretrained package.", required=True)
  flags.DEFINE_string("output", None, "Folder for the JSON and markdown (created; files never overwritten).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest; a package has one).")
  flags.DEFINE_integer("variants", default_variants, "Seeded crops per photo.")
  flags.DEFINE_integer("max_side", default_side, "Crop side in pixels.")
  flags.DEFINE_integer("kernel_size", None, "Kernel size (default: the run's config.dataset.kernel_size).")
  flags.DEFINE_float("noise_sigma", None, "Gaussian noise sigma (default: the run's config.dataset.noise_sigma).")


def deblurrer(workdir: str, step: int | None):
  """(restored, deblur): `deblur(blurry uint8 HxWx3)` is the network's float output, one image at a time on
  evaluate's full-resolution path (padded to the model's multiple, cropped back)."""
  import jax  # pylint: disable=g-import-not-at-top

  from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top

  restored = inference.load(workdir, step=step)
  fn = jax.jit(inference.deblur_fn(restored.model))
  m = restored.model.downsample_factor

  def deblur(blurry: np.ndarray) -> np.ndarray:
    x, hw = inference.pad_to_multiple(blurry[None].astype(np.float32) / 255.0, m)
    return np.asarray(inference.crop(fn(restored.params, x), hw))[0]

  return restored, deblur


def score_sets(workdir: str, step: int | None, sets, baselines=("input", "wiener_oracle")) -> tuple[int, dict]:
  """(step, {family: {method: [(psnr, ssim) per image]}}) of the network and the `baselines` on `sets`."""
  from bdirnet_jax import classical  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top

  restored, deblur = deblurrer(workdir, step)
  scores = {}
  for ts in sets:
    per = {"network": testsets.set_scores([deblur(b) for b in ts.blurry], ts)}
    for method in baselines:
      per[method] = [
        classical.score(method, b, s, k, noise_sigma=ts.noise_sigma) for b, s, k in zip(ts.blurry, ts.sharp, ts.kernels)
      ]
    scores[ts.label] = per
    logging.info("%s: %s", ts.label, {k: round(float(np.mean([p for p, _ in v])), 2) for k, v in per.items()})
  return restored.step, scores


def build_sets(workdir: str, photos, variants: int, max_side: int, kernel_size, noise_sigma):
  from bdirnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top

  config = checkpoint.load_config(workdir)
  params = dict(
    kernel_size=int(kernel_size or config.dataset.kernel_size),
    noise_sigma=float(config.dataset.noise_sigma if noise_sigma is None else noise_sigma),
  )
  # trajectory_exposures=None: the default DeblurGAN exposures, point-like kernels included (split out below).
  sets = testsets.synthetic_sets(FAMILIES, variants=variants, max_side=max_side, photos=photos, **params)
  return sets, params


def rows_of(sets, scores) -> list[dict]:
  """Per-family means, plus the trajectory family split into blurring and point-like kernels."""
  from bdirnet_jax import blur  # pylint: disable=g-import-not-at-top

  rows = []
  for ts in sets:
    groups = [(ts.label, np.ones(len(ts), bool))]
    if ts.family == "trajectory":
      point = np.array([blur.rms_radius(k) < POINT_RADIUS_PX for k in ts.kernels])
      groups += [("trajectory (blurring)", ~point), ("trajectory (point-like)", point)]
    for name, mask in groups:
      if not mask.any():
        continue
      row = {"set": name, "images": int(mask.sum())}
      for method in METHODS:
        arr = np.array(scores[ts.label][method])[mask]
        row[f"{method}_psnr"], row[f"{method}_ssim"] = float(arr[:, 0].mean()), float(arr[:, 1].mean())
      row["gain_db"] = row["network_psnr"] - row["input_psnr"]
      rows.append(row)
  return rows


def markdown(rows: list[dict], title: str) -> str:
  lines = [
    title,
    "",
    "| set | images | input PSNR / SSIM | network PSNR / SSIM | gain (dB) | Wiener, true kernel PSNR / SSIM |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['set']} | {r['images']} | {r['input_psnr']:.2f} / {r['input_ssim']:.3f} | {r['network_psnr']:.2f} / "
      f"{r['network_ssim']:.3f} | {r['gain_db']:+.2f} | {r['wiener_oracle_psnr']:.2f} / "
      f"{r['wiener_oracle_ssim']:.3f} |"
    )
  return "\n".join(lines) + "\n"


def write(output: str, stem: str, payload: dict, md: str | None) -> None:
  """Writes OUTPUT/stem.json and (unless `md` is None) .md, refusing to overwrite either."""
  os.makedirs(output, exist_ok=True)
  paths = [os.path.join(output, f"{stem}.{ext}") for ext in ("json", "md")[: 1 if md is None else 2]]
  for path in paths:
    if os.path.exists(path):
      raise SystemExit(f"error: {path} exists; choose another --output (nothing was overwritten)")
  with open(paths[0], "x") as f:
    json.dump(payload, f, indent=2)
    f.write("\n")
  if md is not None:
    with open(paths[1], "x") as f:
      f.write(md)
  logging.info("wrote %s", ", ".join(paths))


def main(argv):
  del argv
  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top

  FLAGS = flags.FLAGS
  t0 = time.time()
  sets, params = build_sets(
    FLAGS.workdir, testsets.test_photos(), FLAGS.variants, FLAGS.max_side, FLAGS.kernel_size, FLAGS.noise_sigma
  )
  step, scores = score_sets(FLAGS.workdir, FLAGS.step, sets)
  rows = rows_of(sets, scores)
  title = (
    f"synthetic_blur test split (held-out photos {sorted({i.split('#')[0] for i in sets[0].image_ids})}), "
    f"{FLAGS.variants} seeded {FLAGS.max_side}x{FLAGS.max_side} crops per photo, kernels {params['kernel_size']}x"
    f"{params['kernel_size']}, noise sigma {params['noise_sigma']}; step {step}"
  )
  payload = {
    "workdir": os.path.basename(os.path.normpath(FLAGS.workdir)),
    "step": step,
    "variants": FLAGS.variants,
    "max_side": FLAGS.max_side,
    **params,
    "rows": rows,
    "fingerprints": {ts.label: ts.fingerprint for ts in sets},
    "seconds": round(time.time() - t0, 1),
  }
  print(markdown(rows, title))
  if FLAGS.output:
    write(FLAGS.output, f"card_step{step}", payload, markdown(rows, title))


if __name__ == "__main__":
  define_flags(default_variants=4, default_side=192)
  app.run(main)
