"""Scores a workdir or pretrained package on a photo outside the project's train and test photos: this, never the
test split, picks the step to ship.

  python studies/pretrained/validate.py --workdir=W [--step=N] [--output=studies/pretrained/validation]
      [--photos=grace_hopper,camera,coins,grass,brick,gravel,ihc,retina] [--rescale=2]

The photo is matplotlib's sample `grace_hopper.jpg` (Navy photo, public domain), which no `synthetic_blur` split
contains. `--photos` takes other packaged photos that no split contains: scikit-image's grayscale `camera.png` (CC0,
Lav Varshney), `coins.png` (no known copyright restrictions), `grass.png`, `brick.png` and `gravel.png` (CC0
textures from cc0textures.com), given to the network as equal RGB channels, and its colour `ihc.png`
(immunohistochemistry, no known copyright restrictions) and `retina.jpg` (fundus photo, CC0, M. Haggstrom): content
that is soft at its native scale, as the test photos' is in places. `--rescale` resizes every photo first (a
stress test of content softness, studies/pretrained/scale/). Seeded crops of each photo are blurred with every
family as the card's test sets are (same builder, same seeds scheme; kernel size and noise of the run's config
unless given) and scored as input, network and Wiener with the true kernel. Prints the table and the mean gain;
with --output writes validation[_PHOTOS][_xF]_step<N>.json/.md (never overwriting; the suffix names the photos
when they are not grace_hopper alone, and the rescale).
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import card_table  # noqa: E402

PHOTO_ID = "grace_hopper"
# name -> (package, path inside it); none is a synthetic_blur photo (tests/test_pretrained.py checks).
PHOTOS = {
  PHOTO_ID: ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
  "camera": ("skimage", "data/camera.png"),
  "coins": ("skimage", "data/coins.png"),
  "grass": ("skimage", "data/grass.png"),
  "brick": ("skimage", "data/brick.png"),
  "gravel": ("skimage", "data/gravel.png"),
  "ihc": ("skimage", "data/ihc.png"),
  "retina": ("skimage", "data/retina.jpg"),
}


def validation_photos(names=(PHOTO_ID,)) -> list[tuple[str, np.ndarray]]:
  """[(name, uint8 HxWx3)] of the named validation photos; grayscale ones as three equal channels."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top

  out = []
  for name in names:
    if name not in PHOTOS:
      raise SystemExit(f"error: unknown validation photo {name!r}; choose from {sorted(PHOTOS)}")
    pkg, rel = PHOTOS[name]
    path = os.path.join(os.path.dirname(importlib.util.find_spec(pkg).origin), rel)
    with Image.open(path) as img:
      out.append((name, np.asarray(img.convert("RGB"))))
  return out


def rescaled(photos, factor: float) -> list[tuple[str, np.ndarray]]:
  """The photos resized by `factor` (bicubic when magnifying, antialiased Lanczos when shrinking).

  Magnifying makes the content soft without blurring the ground truth: a blind deblurrer that reads the blur from
  how soft the content looks over-sharpens such photos (studies/pretrained/scale/)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if factor <= 0:
    raise SystemExit(f"error: --rescale must be positive, got {factor}")
  if factor == 1:
    return list(photos)
  out = []
  for name, photo in photos:
    h, w = photo.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    out.append((name, np.asarray(Image.fromarray(photo).resize(size, Image.BICUBIC if factor > 1 else Image.LANCZOS))))
  return out


def photos_tag(names, rescale: float = 1.0) -> str:
  """The suffix of a record's file name: empty for grace_hopper alone (the first records' names), else the photos
  (and `_x<factor>` when they were rescaled)."""
  tag = "" if list(names) == [PHOTO_ID] else "_" + "+".join(names)
  return tag if rescale == 1 else f"{tag}_x{rescale:g}"


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  t0 = time.time()
  photos = rescaled(validation_photos(FLAGS.photos), FLAGS.rescale)
  sets, params = card_table.build_sets(
    FLAGS.workdir, photos, FLAGS.variants, FLAGS.max_side, FLAGS.kernel_size, FLAGS.noise_sigma
  )
  step, scores = card_table.score_sets(FLAGS.workdir, FLAGS.step, sets)
  rows = card_table.rows_of(sets, scores)
  families = [r for r in rows if r["set"] in card_table.FAMILIES]
  mean_gain = float(np.mean([r["gain_db"] for r in families]))
  worst = min(families, key=lambda r: r["gain_db"])
  names = ", ".join(name for name, _ in photos) + ("" if FLAGS.rescale == 1 else f"; rescaled x{FLAGS.rescale:g}")
  title = (
    f"validation ({names}, outside the project), {FLAGS.variants} seeded {FLAGS.max_side}x{FLAGS.max_side} "
    f"crops, kernels {params['kernel_size']}x{params['kernel_size']}, noise sigma {params['noise_sigma']}; step "
    f"{step}: mean gain over the 4 families {mean_gain:+.2f} dB, worst {worst['set']} {worst['gain_db']:+.2f} dB"
  )
  md = card_table.markdown(rows, title)
  print(md)
  if FLAGS.output:
    payload = {
      "workdir": os.path.basename(os.path.normpath(FLAGS.workdir)),
      "photo": f"matplotlib sample_data/{PHOTO_ID}.jpg" if FLAGS.photos == [PHOTO_ID] else None,
      "photos": {name: "/".join(PHOTOS[name]) for name, _ in photos},
      "rescale": FLAGS.rescale,
      "step": step,
      "variants": FLAGS.variants,
      "max_side": FLAGS.max_side,
      **params,
      "mean_gain_db": mean_gain,
      "rows": rows,
      "fingerprints": {ts.label: ts.fingerprint for ts in sets},
      "seconds": round(time.time() - t0, 1),
    }
    card_table.write(FLAGS.output, f"validation{photos_tag(FLAGS.photos, FLAGS.rescale)}_step{step}", payload, md)


if __name__ == "__main__":
  card_table.define_flags(default_variants=8, default_side=128)
  flags.DEFINE_list("photos", [PHOTO_ID], f"Validation photos, from {sorted(PHOTOS)}.")
  flags.DEFINE_float("rescale", 1.0, "Resize the photos by this factor before cropping (>1: softer content).")
  app.run(main)
