"""GoPro (Nah et al., CVPR 2017) deblurring pairs: manual-download TFDS builder."""

from __future__ import annotations

import dataclasses
import sys

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/gopro` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

# Official counts (train 22 sequences / 2103 pairs, test 11 / 1111): a mismatch is
# logged as a warning, not an error (partial extractions are allowed).
EXPECTED_COUNTS = {"train": 2103, "test": 1111}

_LAYOUT = """\
Either the official GOPRO_Large.zip, extracted:
  <manual_dir>/GOPRO_Large/
    train/GOPRxxxx_xx_xx/{blur,blur_gamma,sharp}/NNNNNN.png   (22 sequences, 2103 pairs)
    test/GOPRxxxx_xx_xx/{blur,blur_gamma,sharp}/NNNNNN.png    (11 sequences, 1111 pairs)
  (the GOPRO_Large/ level may be omitted: <manual_dir>/{train,test}/GOPR...)
or a repackaged copy (config `blur` only; input = blur, target = sharp):
  <manual_dir>/train/{input,target}/*.png        (or train/GoPro/{input,target})
  <manual_dir>/test/GoPro/{input,target}/*.png   (or test/{input,target})
  (optionally under one more folder, e.g. <manual_dir>/GoPro/ or Datasets/)
Blurry and sharp images are paired by file name."""

# Repackaged layout: candidate (input, target) parents per split, relative to root.
_REPACK_DIRS = {
  "train": ("train", "train/GoPro"),
  "test": ("test/GoPro", "test"),
}


@dataclasses.dataclass(eq=False)
class GoproConfig(tfds.core.BuilderConfig):
  blur_dir: str = "blur"


def _is_official_root(d: epath.Path) -> bool:
  return any(
    (d / split).is_dir() and any(p.name.startswith("GOPR") for p in (d / split).iterdir())
    for split in ("train", "test")
  )


def _is_repack_root(d: epath.Path) -> bool:
  return any(
    (d / c / "input").is_dir() and (d / c / "target").is_dir() for cands in _REPACK_DIRS.values() for c in cands
  )


class Builder(_common.ManualDirBuilder):
  """GoPro_Large blurry/sharp pairs (`blur` or `blur_gamma` inputs)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Download GOPRO_Large.zip from https://seungjunnah.github.io/Datasets/gopro "
    "and extract it into the manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT
  BUILDER_CONFIGS = [
    GoproConfig(
      name="blur",
      blur_dir="blur",
      description="Blurry input from `blur/` (linear CRF; used by MPRNet, Restormer, NAFNet).",
    ),
    GoproConfig(
      name="blur_gamma",
      blur_dir="blur_gamma",
      description="Blurry input from `blur_gamma/` (gamma 2.2 CRF; used by DeepDeblur).",
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "blur"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
      description="GoPro_Large dynamic-scene deblurring pairs (Nah et al. 2017).",
      homepage="https://seungjunnah.github.io/Datasets/gopro",
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    root = _common.find_root(manual_dir, _is_official_root, subdirs=("GOPRO_Large",))
    if root is not None:
      splits = {}
      for split in ("train", "test"):
        pairs = self._official_pairs(manual_dir, root / split)
        if pairs is not None:
          splits[split] = pairs
    else:
      root = _common.find_root(manual_dir, _is_repack_root, subdirs=("GoPro", "Datasets/GoPro"))
      if root is None:
        raise self._layout_error(
          manual_dir,
          "Could not find the GoPro dataset: no `GOPRO_Large/{train,test}/GOPR*/` "
          "sequences and no repackaged `{train,test/GoPro}/{input,target}/` folders.",
        )
      if self.builder_config.blur_dir != "blur":
        raise self._layout_error(
          manual_dir,
          f"Found a repackaged GoPro copy at {root} (input/target folders); it only "
          f"holds the `blur` inputs, so config `{self.builder_config.name}` cannot be "
          "built from it. Extract the official GOPRO_Large.zip instead.",
        )
      splits = {}
      for split, cands in _REPACK_DIRS.items():
        for c in cands:
          if (root / c / "input").is_dir() and (root / c / "target").is_dir():
            splits[split] = self._repack_pairs(manual_dir, root / c)
            break
    if not splits:
      raise self._layout_error(manual_dir, "Found no train or test pairs.")
    for split, pairs in splits.items():
      if len(pairs) != EXPECTED_COUNTS[split]:
        logging.warning(
          "gopro/%s: split %s has %d pairs; the official archive has %d.",
          self.builder_config.name,
          split,
          len(pairs),
          EXPECTED_COUNTS[split],
        )
    return {split: self._generate_examples(split, pairs) for split, pairs in splits.items()}

  def _official_pairs(self, manual_dir, split_dir: epath.Path):
    if not split_dir.is_dir():
      return None
    blur_dir = self.builder_config.blur_dir
    pairs = []
    seqs = sorted((d for d in split_dir.iterdir() if d.is_dir()), key=lambda p: p.name)
    for seq in seqs:
      if not (seq / blur_dir).is_dir() or not (seq / "sharp").is_dir():
        raise self._layout_error(
          manual_dir,
          f"Sequence folder {seq} lacks `{blur_dir}/` or `sharp/` (has: {sorted(p.name for p in seq.iterdir())}).",
        )
      for blurry in _common.list_images(seq / blur_dir):
        sharp = seq / "sharp" / blurry.name
        if not sharp.exists():
          raise _common.MissingPairError(f"Blurry image {blurry} has no sharp counterpart {sharp}.")
        pairs.append((_common.relpath(blurry, manual_dir), blurry, sharp, {}))
    return pairs

  def _repack_pairs(self, manual_dir, parent: epath.Path):
    pairs = []
    for blurry in _common.list_images(parent / "input"):
      sharp = parent / "target" / blurry.name
      if not sharp.exists():
        raise _common.MissingPairError(f"Blurry image {blurry} has no sharp counterpart {sharp}.")
      pairs.append((_common.relpath(blurry, manual_dir), blurry, sharp, {}))
    return pairs

  def _generate_examples(self, split, pairs):
    yield from self._pair_examples(split, pairs)
