"""RealBlur (Rim et al., ECCV 2020) real-world deblurring pairs: manual-download builder."""

from __future__ import annotations

import dataclasses
import sys

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/realblur` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

EXPECTED_COUNTS = {"train": 3758, "test": 980}

_LAYOUT = """\
<manual_dir>/                          (or <manual_dir>/RealBlur/)
  RealBlur-J_ECC_IMCORR_centroid_itensity_ref/sceneNNN/{blur,gt}/{blur_K,gt_K}.png
  RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/sceneNNN/{blur,gt}/{blur_K,gt_K}.png
  RealBlur_J_train_list.txt  RealBlur_J_test_list.txt
  RealBlur_R_train_list.txt  RealBlur_R_test_list.txt
  RealBlur_J_Tele_test_list.txt  RealBlur_R_Tele_test_list.txt   (optional -> split test_tele)
List lines: `<gt relpath> <blur relpath>` (GT first), paths relative to the folder
holding the lists. Splits come only from the lists (K has gaps)."""

# split -> list-file pattern ({c} = J or R)
_SPLIT_LISTS = {
  "train": "RealBlur_{c}_train_list.txt",
  "test": "RealBlur_{c}_test_list.txt",
  "test_tele": "RealBlur_{c}_Tele_test_list.txt",
}


@dataclasses.dataclass(eq=False)
class RealBlurConfig(tfds.core.BuilderConfig):
  camera: str = "J"


def parse_list(list_path: epath.Path) -> list[tuple[str, str]]:
  """Parses a RealBlur list file -> [(gt_relpath, blur_relpath)].

  Lines are `<gt> <blur> ` (trailing space, last line without newline); blank
  lines are skipped; anything else fails naming the file and line.
  """
  out = []
  text = list_path.read_text(encoding="utf-8")
  for lineno, line in enumerate(text.splitlines(), start=1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 2:
      raise _common.ManualDirError(f"{list_path}:{lineno}: expected `<gt relpath> <blur relpath>`, got {line!r}.")
    out.append((parts[0], parts[1]))
  return out


def _is_root(d: epath.Path) -> bool:
  return any(d.glob("RealBlur_*_list.txt"))


class Builder(_common.ManualDirBuilder):
  """RealBlur-J / RealBlur-R blurry/sharp pairs, split by the official lists."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Download RealBlur.tar.gz (https://cg.postech.ac.kr/research/realblur/) and "
    "extract it into the manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT
  BUILDER_CONFIGS = [
    RealBlurConfig(name="j", camera="J", description="RealBlur-J (camera JPEG images)."),
    RealBlurConfig(name="r", camera="R", description="RealBlur-R (RAW images, BM3D-denoised)."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "j"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
      description="RealBlur real-world motion-blur pairs (Rim et al. 2020).",
      homepage="https://cg.postech.ac.kr/research/realblur/",
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    root = _common.find_root(manual_dir, _is_root, subdirs=("RealBlur",))
    if root is None:
      raise self._layout_error(manual_dir, "Could not find the RealBlur list files (RealBlur_*_list.txt).")
    cam = self.builder_config.camera
    splits = {}
    for split, pattern in _SPLIT_LISTS.items():
      list_path = root / pattern.format(c=cam)
      if not list_path.exists():
        continue
      pairs = []
      for gt_rel, blur_rel in parse_list(list_path):
        blurry, sharp = root / blur_rel, root / gt_rel
        for p in (blurry, sharp):
          if not p.exists():
            raise _common.MissingPairError(f"{p} (listed in {list_path}) does not exist.")
        pairs.append((_common.relpath(blurry, manual_dir), blurry, sharp, {}))
      splits[split] = pairs
      if split in EXPECTED_COUNTS and len(pairs) != EXPECTED_COUNTS[split]:
        logging.warning(
          "realblur/%s: split %s has %d pairs; the official list has %d.",
          self.builder_config.name,
          split,
          len(pairs),
          EXPECTED_COUNTS[split],
        )
    if not splits:
      raise self._layout_error(
        manual_dir,
        f"Found list files in {root} but none for RealBlur-{cam} "
        f"({', '.join(p.format(c=cam) for p in _SPLIT_LISTS.values())}).",
      )
    return {split: self._generate_examples(split, pairs) for split, pairs in splits.items()}

  def _generate_examples(self, split, pairs):
    yield from self._pair_examples(split, pairs)
