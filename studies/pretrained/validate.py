"""Scores a workdir or pretrained package on a photo outside the project's train and test photos: this, never the
test split, picks the step to ship.

  python studies/pretrained/validate.py --workdir=W [--step=N] [--output=studies/pretrained/validation]

The photo is matplotlib's sample `grace_hopper.jpg` (Navy photo, public domain), which no `synthetic_blur` split
contains. Seeded crops of it are blurred with every family as the card's test sets are (same builder, same
seeds scheme; kernel size and noise of the run's config unless given) and scored as input, network and Wiener with
the true kernel. Prints the table and the mean gain; with --output writes validation_step<N>.json/.md (never
overwriting).
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


def validation_photos() -> list[tuple[str, np.ndarray]]:
  import matplotlib.cbook  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as img:
    return [(PHOTO_ID, np.asarray(img.convert("RGB")))]


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  t0 = time.time()
  sets, params = card_table.build_sets(
    FLAGS.workdir, validation_photos(), FLAGS.variants, FLAGS.max_side, FLAGS.kernel_size, FLAGS.noise_sigma
  )
  step, scores = card_table.score_sets(FLAGS.workdir, FLAGS.step, sets)
  rows = card_table.rows_of(sets, scores)
  families = [r for r in rows if r["set"] in card_table.FAMILIES]
  mean_gain = float(np.mean([r["gain_db"] for r in families]))
  worst = min(families, key=lambda r: r["gain_db"])
  title = (
    f"validation ({PHOTO_ID}.jpg, outside the project), {FLAGS.variants} seeded {FLAGS.max_side}x{FLAGS.max_side} "
    f"crops, kernels {params['kernel_size']}x{params['kernel_size']}, noise sigma {params['noise_sigma']}; step "
    f"{step}: mean gain over the 4 families {mean_gain:+.2f} dB, worst {worst['set']} {worst['gain_db']:+.2f} dB"
  )
  md = card_table.markdown(rows, title)
  print(md)
  if FLAGS.output:
    payload = {
      "workdir": os.path.basename(os.path.normpath(FLAGS.workdir)),
      "photo": f"matplotlib sample_data/{PHOTO_ID}.jpg",
      "step": step,
      "variants": FLAGS.variants,
      "max_side": FLAGS.max_side,
      **params,
      "mean_gain_db": mean_gain,
      "rows": rows,
      "fingerprints": {ts.label: ts.fingerprint for ts in sets},
      "seconds": round(time.time() - t0, 1),
    }
    card_table.write(FLAGS.output, f"validation_step{step}", payload, md)


if __name__ == "__main__":
  card_table.define_flags(default_variants=8, default_side=128)
  app.run(main)
