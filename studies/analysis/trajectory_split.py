"""Splits a study's trajectory test set by how much its kernels blur, from the study's own report.csv.

At small kernel sizes many Boracchi-Foi test kernels (the shortest exposures) are one pixel: those images are not
blurred, and a network can only lose PSNR on them. This prints, per (config, train blur), the mean PSNR over seeds
and images of the point-like kernels and of the blurred ones, beside the input and the classical baselines.

  python studies/analysis/trajectory_split.py --study=configs/studies/cpu.py --output=studies/cpu

The kernels are regenerated exactly as the study builds them (`study.plan.synthetic_test_params` of its first run's
config, `study.testsets.synthetic_sets`), so the split uses the kernels alone, never the scores.
"""

import csv
import os
import sys
from collections import defaultdict

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

POINT_RADIUS_PX = 0.5  # RMS radius below which a kernel is "point-like" (moves energy less than half a pixel)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("study", None, "Study config file (configs/studies/NAME.py).", lock_config=True)
flags.DEFINE_string("output", None, "The study's folder (its report.csv is read).")


def main(argv):
  del argv
  if FLAGS.study is None or not FLAGS.output:
    raise app.UsageError("--study=configs/studies/NAME.py and --output=DIR are required")
  from bdirnet_jax import blur  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.study import plan  # pylint: disable=g-import-not-at-top
  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top

  cfg = FLAGS.study
  first = plan.training_config(
    cfg, cfg.configs[0], cfg.train_blurs[0], int(cfg.seeds[0]), os.path.join(FLAGS.output, "tfds")
  )
  params = plan.synthetic_test_params(cfg, first)
  (ts,) = testsets.synthetic_sets(["trajectory"], variants=cfg.test.variants, max_side=cfg.test.max_side, **params)
  radius = {iid: blur.rms_radius(kern) for iid, kern in zip(ts.image_ids, ts.kernels)}
  point = {iid for iid, r in radius.items() if r < POINT_RADIUS_PX}
  k = params["kernel_size"]
  print(
    f"trajectory test kernels ({k}x{k}): {len(point)} of {len(radius)} point-like (RMS radius < "
    f"{POINT_RADIUS_PX} px); radii: " + ", ".join(f"{r:.2f}" for r in sorted(radius.values()))
  )
  rows = defaultdict(lambda: defaultdict(list))
  with open(os.path.join(FLAGS.output, "report.csv")) as f:
    for row in csv.DictReader(f):
      if row["test_set"] != "trajectory":
        continue
      key = (row["config"], row["train_blur"])
      rows[key]["point" if row["image_id"] in point else "blurred"].append(float(row["psnr"]))
  print(
    f"\n| config | train blur | point-like ({len(point)} images): PSNR | blurred ({len(radius) - len(point)}"
    " images): PSNR |\n|---|---|---|---|"
  )
  for (config, train_blur), parts in sorted(rows.items(), key=lambda kv: (not kv[0][1], kv[0][1], kv[0][0])):
    print(f"| {config} | {train_blur or '–'} | {np.mean(parts['point']):.2f} | {np.mean(parts['blurred']):.2f} |")


if __name__ == "__main__":
  app.run(main)
