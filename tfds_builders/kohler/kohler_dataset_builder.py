"""Köhler et al. (ECCV 2012) recorded camera-shake benchmark: manual-download builder.

48 blurred shots (4 images x 12 recorded shakes), each with ~199 sharp frames
recorded along the shake.  `sharp` is the MIDDLE frame of the shake: with the frame
numbers f sorted ascending, frames[(n - 1) // 2] (frame 100 of 1..199).  The
Köhler protocol (PSNR against the best-matching frame after a scale/translation
fit) needs all frames; they stay in the manual directory and every example stores
`sharp_frames_dir` (relative path of its frame folder), `num_sharp_frames`,
`sharp_frame_index` (the f of the stored frame), `image_index` and `kernel_index`.
"""

from __future__ import annotations

import re
import sys

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/kohler` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

EXPECTED_SHOTS = 48

_LAYOUT = """\
<manual_dir>/                    (archives extracted side by side; any one extra
                                  folder level is fine, e.g. <manual_dir>/Koehler/)
  Blurry{p}_{t}.png              from BlurryImages.zip (p = 1..4, t = 1..12; 48 files;
                                  may sit in a sub-folder such as BlurryImages/)
  Image{p}/Kernel{t}/GroundTruth{p}_{t}_{f}.png
                                 from GroundTruth_pngs_Image{1..4}.zip (f = 1..199,
                                  a few shakes have 198 or 200 frames)"""

_BLURRY_RE = re.compile(r"^Blurry(\d+)_(\d+)\.png$", re.IGNORECASE)
_FRAME_RE = re.compile(r"^GroundTruth(\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def _has_blurry(d: epath.Path) -> bool:
  return any(_BLURRY_RE.match(p.name) for p in d.glob("Blurry*_*.*"))


def _has_gt(d: epath.Path) -> bool:
  return any((d / f"Image{p}").is_dir() for p in range(1, 5))


def middle_frame(frames: list[int]) -> int:
  """The middle frame number of a shake: sorted(frames)[(n - 1) // 2]."""
  frames = sorted(frames)
  return frames[(len(frames) - 1) // 2]


class Builder(_common.ManualDirBuilder):
  """Köhler et al. 2012 real camera-shake benchmark (test only)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download BlurryImages.zip and GroundTruth_pngs_Image{1..4}.zip from "
      "https://webdav.tuebingen.mpg.de/pixel/benchmark4camerashake/ and extract "
      "them into the manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
        description="Köhler et al. 2012 recorded camera-shake benchmark.",
        homepage="https://webdav.tuebingen.mpg.de/pixel/benchmark4camerashake/",
        extra_features={
            "image_index": np.int32,
            "kernel_index": np.int32,
            "sharp_frame_index": np.int32,
            "num_sharp_frames": np.int32,
            "sharp_frames_dir": tfds.features.Text(),
        },
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    blurry_root = _common.find_root(manual_dir, _has_blurry, subdirs=("BlurryImages",), max_depth=3)
    gt_root = _common.find_root(manual_dir, _has_gt, subdirs=("GroundTruth",), max_depth=3)
    if blurry_root is None or gt_root is None:
      missing = "blurred Blurry{p}_{t}.png files" if blurry_root is None else "Image{p}/ folders"
      raise self._layout_error(manual_dir, f"Could not find the Köhler {missing}.")
    shots = []
    for blurry in sorted(blurry_root.glob("Blurry*_*.*"), key=lambda p: p.name):
      m = _BLURRY_RE.match(blurry.name)
      if not m:
        continue
      p, t = int(m.group(1)), int(m.group(2))
      frame_dir = gt_root / f"Image{p}" / f"Kernel{t}"
      frames = {}
      if frame_dir.is_dir():
        for f in frame_dir.iterdir():
          fm = _FRAME_RE.match(f.name)
          if fm and (int(fm.group(1)), int(fm.group(2))) == (p, t):
            frames[int(fm.group(3))] = f
      if not frames:
        raise _common.MissingPairError(
            f"Blurry image {blurry} has no sharp frames: expected "
            f"{frame_dir}/GroundTruth{p}_{t}_<f>.png."
        )
      f_mid = middle_frame(list(frames))
      extra = {
          "image_index": p,
          "kernel_index": t,
          "sharp_frame_index": f_mid,
          "num_sharp_frames": len(frames),
          "sharp_frames_dir": _common.relpath(frame_dir, manual_dir),
      }
      shots.append((p, t, (_common.relpath(blurry, manual_dir), blurry, frames[f_mid], extra)))
    if not shots:
      raise self._layout_error(manual_dir, "Found no Blurry{p}_{t}.png files.")
    shots.sort(key=lambda s: (s[0], s[1]))
    if len(shots) != EXPECTED_SHOTS:
      logging.warning("kohler: %d blurred shots; the benchmark has %d.", len(shots), EXPECTED_SHOTS)
    return {"test": self._generate_examples("test", [s[2] for s in shots])}

  def _generate_examples(self, split, pairs):
    yield from self._pair_examples(split, pairs)
