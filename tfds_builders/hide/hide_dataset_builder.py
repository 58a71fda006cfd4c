"""HIDE (Shen et al., ICCV 2019) human-aware deblurring pairs: manual-download builder."""

from __future__ import annotations

import sys

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/hide` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

EXPECTED_COUNTS = {"train": 6397, "test": 2025}

_LAYOUT = """\
<manual_dir>/HIDE_dataset/            (the HIDE_dataset/ level may be omitted)
  train/*.png                        (6397 blurry)
  test/test-close-ups/*.png          (blurry)
  test/test-long-shot/*.png          (blurry; 2025 test images in total)
  GT/*.png                           (sharp, one flat folder for both splits)
  train.txt, test.txt                (not needed: the folders are authoritative)
A blurry image is paired with GT/<same basename>; names like `109fromGOPR1096.MP4.png`
are also looked up without `.MP4` (and the reverse)."""

# split name -> folders (relative to the HIDE root) holding its blurry images.
_SPLIT_DIRS = {
  "train": ("train",),
  "test": ("test/test-close-ups", "test/test-long-shot"),
  "test_close_ups": ("test/test-close-ups",),
  "test_long_shot": ("test/test-long-shot",),
}


def _is_root(d: epath.Path) -> bool:
  return (d / "GT").is_dir() and ((d / "train").is_dir() or (d / "test").is_dir())


def gt_candidates(blurry_name: str) -> list[str]:
  """GT file names to try for a blurry file name (with and without `.MP4`)."""
  cands = [blurry_name]
  stem, dot, ext = blurry_name.rpartition(".")
  if not dot:
    return cands
  if stem.upper().endswith(".MP4"):
    cands.append(stem[: -len(".MP4")] + "." + ext)
  else:
    cands.append(stem + ".MP4." + ext)
  return cands


class Builder(_common.ManualDirBuilder):
  """HIDE blurry/sharp pairs; test also split into close-ups and long shots."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Download HIDE_dataset.zip (https://github.com/joanshen0508/HA_deblur) and "
    "extract it into the manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
      description="HIDE human-aware motion deblurring pairs (Shen et al. 2019).",
      homepage="https://github.com/joanshen0508/HA_deblur",
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    root = _common.find_root(manual_dir, _is_root, subdirs=("HIDE_dataset",))
    if root is None:
      raise self._layout_error(manual_dir, "Could not find the HIDE dataset (a folder with GT/ and train/ or test/).")
    gt_dir = root / "GT"
    gt_names = {p.name for p in gt_dir.iterdir()}
    splits = {}
    for split, dirs in _SPLIT_DIRS.items():
      if not all((root / d).is_dir() for d in dirs):
        continue
      pairs = []
      for d in dirs:
        for blurry in _common.list_images(root / d):
          gt_name = next((n for n in gt_candidates(blurry.name) if n in gt_names), None)
          if gt_name is None:
            raise _common.MissingPairError(
              f"Blurry image {blurry} has no sharp counterpart in {gt_dir} (tried "
              f"{', '.join(gt_candidates(blurry.name))})."
            )
          pairs.append((_common.relpath(blurry, manual_dir), blurry, gt_dir / gt_name, {}))
      if not pairs:
        continue
      splits[split] = pairs
      if split in EXPECTED_COUNTS and len(pairs) != EXPECTED_COUNTS[split]:
        logging.warning(
          "hide: split %s has %d pairs; the official archive has %d.",
          split,
          len(pairs),
          EXPECTED_COUNTS[split],
        )
    if not splits:
      raise self._layout_error(manual_dir, f"Found no blurry images under {root}.")
    return {split: self._generate_examples(split, pairs) for split, pairs in splits.items()}

  def _generate_examples(self, split, pairs):
    yield from self._pair_examples(split, pairs)
