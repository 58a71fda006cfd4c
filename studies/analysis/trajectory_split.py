"""Splits a study's trajectory test set by how much its kernels blur, from the study's own report.csv.

At small kernel sizes many Boracchi-Foi test kernels (the shortest exposures) are one pixel: those images are not
blurred, and a network can only lose PSNR on them. This prints, per (config, train blur), the mean PSNR over seeds
and images of the point-like kernels and of the blurred ones, beside the input and the Wiener oracle.

  python studies/analysis/trajectory_split.py --study=configs/studies/cpu.py --output=studies/cpu

The kernels are regenerated from the study's fixed seeds (`study_testsets.synthetic_sets`), so the split uses the
kernels alone, never the scores.
"""
import argparse
import csv
import importlib.util
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

POINT_RADIUS_PX = 0.5  # RMS radius below which a kernel is "point-like" (moves energy less than half a pixel)


def rms_radius(kernel: np.ndarray) -> float:
  rows, cols = np.indices(kernel.shape)
  w = kernel / kernel.sum()
  r0, c0 = (w * rows).sum(), (w * cols).sum()
  return float(np.sqrt((w * ((rows - r0) ** 2 + (cols - c0) ** 2)).sum()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", required=True)
  parser.add_argument("--output", required=True)
  args = parser.parse_args()
  from bdirnet_jax import study_testsets  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("_study_config", args.study)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  k = cfg.test.kernel_size or cfg.overrides.dataset.kernel_size
  sigma = cfg.test.noise_sigma if cfg.test.noise_sigma is not None else cfg.overrides.dataset.noise_sigma
  (ts,) = study_testsets.synthetic_sets(["trajectory"], variants=cfg.test.variants, max_side=cfg.test.max_side,
                                        kernel_size=k, noise_sigma=sigma)
  radius = {iid: rms_radius(kern) for iid, kern in zip(ts.image_ids, ts.kernels)}
  point = {iid for iid, r in radius.items() if r < POINT_RADIUS_PX}
  print(f"trajectory test kernels ({k}x{k}): {len(point)} of {len(radius)} point-like (RMS radius < "
        f"{POINT_RADIUS_PX} px); radii: " + ", ".join(f"{r:.2f}" for r in sorted(radius.values())))
  rows = defaultdict(lambda: defaultdict(list))
  with open(os.path.join(args.output, "report.csv")) as f:
    for row in csv.DictReader(f):
      if row["test_set"] != "trajectory":
        continue
      key = (row["config"], row["train_blur"])
      rows[key]["point" if row["image_id"] in point else "blurred"].append(float(row["psnr"]))
  print(f"\n| config | train blur | point-like ({len(point)} images): PSNR | blurred ({len(radius) - len(point)}"
        " images): PSNR |\n|---|---|---|---|")
  for (config, train_blur), parts in sorted(rows.items(), key=lambda kv: (not kv[0][1], kv[0][1], kv[0][0])):
    print(f"| {config} | {train_blur or '–'} | {np.mean(parts['point']):.2f} | {np.mean(parts['blurred']):.2f} |")


if __name__ == "__main__":
  main()
