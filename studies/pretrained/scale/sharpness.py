"""Per-crop check of over-sharpening: does the network add high-frequency energy the sharp image does not have?

  python studies/pretrained/scale/sharpness.py --workdir=W --photos=ihc,retina [--family=trajectory] [--rescale=1]
      [--output=studies/pretrained/scale/before]

For the validation crops of one blur family (validate.py's sets: same seeds, 192 px, the run's kernel size and
noise), prints each crop's kernel RMS radius, input and output PSNR (the tables' protocol), and the Laplacian energy
(variance of `scipy.ndimage.laplace`, mean over channels) of the blurred input and of the output relative to the
sharp crop's.
A ratio well above 1 on a mildly blurred crop is sharpening of a blur that is not there. With --output writes
sharpness_<photos>[_xF]_<family>_step<N>.json (never overwriting).
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import card_table  # noqa: E402
import validate  # noqa: E402


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir or pretrained package.", required=True)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_list("photos", ["ihc", "retina"], f"Validation photos, from {sorted(validate.PHOTOS)}.")
  flags.DEFINE_string("family", "trajectory", f"Blur family, one of {card_table.FAMILIES}.")
  flags.DEFINE_float("rescale", 1.0, "Resize the photos by this factor first (validate.py --rescale).")
  flags.DEFINE_integer("variants", 8, "Seeded crops per photo.")
  flags.DEFINE_integer("max_side", 192, "Crop side in pixels.")
  flags.DEFINE_string("output", None, "Folder for the JSON (created; never overwritten).")


def laplacian_energy(image: np.ndarray) -> float:
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  x = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
  return float(np.mean([ndimage.laplace(x[..., c]).var() for c in range(x.shape[-1])]))


def main(argv):
  del argv
  from bdirnet_jax import blur  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import classical  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import metrics  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top

  FLAGS = flags.FLAGS
  if FLAGS.family not in card_table.FAMILIES:
    raise SystemExit(f"error: --family must be one of {card_table.FAMILIES}, got {FLAGS.family!r}")
  t0 = time.time()
  photos = validate.rescaled(validate.validation_photos(FLAGS.photos), FLAGS.rescale)
  sets, params = card_table.build_sets(FLAGS.workdir, photos, FLAGS.variants, FLAGS.max_side, None, None)
  (ts,) = [s for s in sets if s.family == FLAGS.family]
  restored, deblur = card_table.deblurrer(FLAGS.workdir, FLAGS.step)
  outputs = [deblur(b) for b in ts.blurry]
  network = testsets.set_scores(outputs, ts)  # the tables' protocol (output rounded to uint8)
  rows = []
  for iid, blurry, sharp, kernel, out, (net_psnr, _) in zip(
    ts.image_ids, ts.blurry, ts.sharp, ts.kernels, outputs, network
  ):
    ref = laplacian_energy(sharp)
    rows.append(
      dict(
        image=iid,
        rms_radius_px=float(blur.rms_radius(kernel)),
        input_psnr=classical.score("input", blurry, sharp, kernel, noise_sigma=ts.noise_sigma)[0],
        network_psnr=net_psnr,
        input_energy_ratio=laplacian_energy(blurry) / ref,
        network_energy_ratio=laplacian_energy(np.asarray(metrics.to_uint8(out))) / ref,
      )
    )
  print(f"{FLAGS.family} on {', '.join(FLAGS.photos)} (x{FLAGS.rescale:g}), step {restored.step}:")
  print("image | RMS radius | input dB | network dB | Laplacian energy / sharp: input, network")
  for r in rows:
    print(
      f"{r['image']} | {r['rms_radius_px']:.2f} | {r['input_psnr']:.2f} | {r['network_psnr']:.2f} | "
      f"{r['input_energy_ratio']:.2f}, {r['network_energy_ratio']:.2f}"
    )
  if FLAGS.output:
    payload = dict(
      workdir=os.path.basename(os.path.normpath(FLAGS.workdir)),
      step=restored.step,
      photos=FLAGS.photos,
      rescale=FLAGS.rescale,
      family=FLAGS.family,
      **params,
      rows=rows,
      seconds=round(time.time() - t0, 1),
    )
    stem = f"sharpness{validate.photos_tag(FLAGS.photos, FLAGS.rescale)}_{FLAGS.family}_step{restored.step}"
    card_table.write(FLAGS.output, stem, payload, None)


if __name__ == "__main__":
  define_flags()
  app.run(main)
