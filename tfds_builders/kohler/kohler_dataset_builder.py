"""Köhler et al. (ECCV 2012) recorded camera-shake benchmark: manual-download builder.

48 blurred shots (4 images x 12 recorded shakes), each with ~199 sharp frames
recorded along the shake.  The official protocol (`bdirnet_jax.kohler_protocol`:
PSNR against the best-matching frame after a gain/translation fit) needs every
frame, so each example stores them all: `sharp_frames` (in frame order) and
`sharp_frame_numbers` (their f).  `sharp` is the MIDDLE frame (sorted frame
numbers, frames[(n - 1) // 2], frame 100 of 1..199), for pipelines that want one
pair; `sharp_frame_index` is its f.  Also: `num_sharp_frames`, `sharp_frames_dir`,
`image_index`, `kernel_index`.

Ground truth may be extracted side by side (`Image{p}/Kernel{t}/`) or one folder
per zip (`GroundTruth_pngs_Image{p}/[Image{p}/]Kernel{t}/`), as unzip tools do.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

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
                                  a few shakes have 198 or 200 frames); one folder
                                  per zip also works: GroundTruth_pngs_Image{p}/
                                  Image{p}/Kernel{t}/... or GroundTruth_pngs_Image{p}/
                                  Kernel{t}/..."""

_BLURRY_RE = re.compile(r"^Blurry(\d+)_(\d+)\.png$", re.IGNORECASE)
_FRAME_RE = re.compile(r"^GroundTruth(\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)
_IMAGE_DIR_RE = re.compile(r"^(?:GroundTruth_pngs_)?Image(\d+)$", re.IGNORECASE)
_GT_SEARCH_DEPTH = 4


def _has_blurry(d: epath.Path) -> bool:
  return any(_BLURRY_RE.match(p.name) for p in d.glob("Blurry*_*.*"))


def _subdirs(d: epath.Path) -> list[epath.Path]:
  try:
    return sorted((c for c in d.iterdir() if c.is_dir()), key=lambda c: c.name)
  except OSError:
    return []


def find_gt_dirs(manual_dir: epath.Path) -> dict[int, epath.Path]:
  """{p: the folder holding image p's Kernel{t}/ folders}, shallowest first.

  Side by side, that is <root>/Image{p}; extracted one zip per folder it is
  GroundTruth_pngs_Image{p}/Image{p} or GroundTruth_pngs_Image{p} itself.  Each
  image is looked up on its own, so any mix of the two layouts works.
  """
  found: dict[int, epath.Path] = {}
  level = [manual_dir]
  for _ in range(_GT_SEARCH_DEPTH):
    nxt = []
    for d in level:
      for c in _subdirs(d):
        if c.name.lower().startswith("kernel"):
          continue  # frames live here: nothing deeper to find
        m = _IMAGE_DIR_RE.match(c.name)
        if m and int(m.group(1)) not in found and any(k.name.lower().startswith("kernel") for k in _subdirs(c)):
          found[int(m.group(1))] = c
        nxt.append(c)
    level = nxt
  return found


def middle_frame(frames: list[int]) -> int:
  """The middle frame number of a shake: sorted(frames)[(n - 1) // 2]."""
  frames = sorted(frames)
  return frames[(len(frames) - 1) // 2]


class Builder(_common.ManualDirBuilder):
  """Köhler et al. 2012 real camera-shake benchmark (test only)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "1.1.0": "sharp_frames and sharp_frame_numbers (every frame, for the official protocol); "
    "ground truth extracted one folder per zip.",
  }

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
        "sharp_frames": tfds.features.Sequence(_common.image_feature()),
        "sharp_frame_numbers": tfds.features.Sequence(np.int32),
      },
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    blurry_root = _common.find_root(manual_dir, _has_blurry, subdirs=("BlurryImages",), max_depth=3)
    gt_dirs = find_gt_dirs(manual_dir)
    if blurry_root is None or not gt_dirs:
      missing = "blurred Blurry{p}_{t}.png files" if blurry_root is None else "Image{p}/Kernel{t}/ folders"
      raise self._layout_error(manual_dir, f"Could not find the Köhler {missing}.")
    shots = []
    for blurry in sorted(blurry_root.glob("Blurry*_*.*"), key=lambda p: p.name):
      m = _BLURRY_RE.match(blurry.name)
      if not m:
        continue
      p, t = int(m.group(1)), int(m.group(2))
      image_dir = gt_dirs.get(p)
      frame_dir = (image_dir or manual_dir / f"Image{p}") / f"Kernel{t}"
      frames = {}
      if frame_dir.is_dir():
        for f in frame_dir.iterdir():
          fm = _FRAME_RE.match(f.name)
          if fm and (int(fm.group(1)), int(fm.group(2))) == (p, t):
            frames[int(fm.group(3))] = f
      if not frames:
        raise _common.MissingPairError(
          f"Blurry image {blurry} has no sharp frames: expected {frame_dir}/GroundTruth{p}_{t}_<f>.png."
        )
      f_mid = middle_frame(list(frames))
      numbers = sorted(frames)
      extra = {
        "image_index": p,
        "kernel_index": t,
        "sharp_frame_index": f_mid,
        "num_sharp_frames": len(frames),
        "sharp_frames_dir": _common.relpath(frame_dir, manual_dir),
        "sharp_frame_numbers": np.asarray(numbers, np.int32),
        "sharp_frames": [frames[f] for f in numbers],  # paths: read lazily, one shake at a time
      }
      shots.append((p, t, (_common.relpath(blurry, manual_dir), blurry, frames[f_mid], extra)))
    if not shots:
      raise self._layout_error(manual_dir, "Found no Blurry{p}_{t}.png files.")
    shots.sort(key=lambda s: (s[0], s[1]))
    if len(shots) != EXPECTED_SHOTS:
      logging.warning("kohler: %d blurred shots; the benchmark has %d.", len(shots), EXPECTED_SHOTS)
    return {"test": self._generate_examples("test", [s[2] for s in shots])}

  def _generate_examples(self, split, pairs):
    def with_frames():
      for image_id, blurry, sharp, extra in pairs:
        extra = dict(extra)
        loaded = [_common.load_image(f) for f in extra["sharp_frames"]]
        middle = loaded[extra["sharp_frame_numbers"].tolist().index(extra["sharp_frame_index"])]
        for img, f in zip(loaded, extra["sharp_frames"]):
          _common.check_same_size(middle, img, sharp, f)
        extra["sharp_frames"] = [img.png_bytes for img in loaded]
        yield image_id, blurry, sharp, extra

    yield from self._pair_examples(split, with_frames())
