"""Lai et al. (CVPR 2016) deblurring benchmark: manual-download builder (test only)."""

from __future__ import annotations

import dataclasses
import re
import sys

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/lai` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

_LAYOUT = """\
<manual_dir>/                          (any one extra folder level is fine)
  ground_truth.txt                     (25 names: {manmade,natural,people,saturated,text}_01..05)
  synthetic_uniform.txt                (100 lines `<gt>_kernel_0{1-4}  <kernel size>`)
  synthetic_nonuniform.txt             (100 lines `<gt>_gyro_{07,16,23,24}  <size>`)
  real.txt                             (100 names, no ground truth)
  synthetic_dataset/ground_truth/<gt>.png
  synthetic_dataset/uniform/<gt>_kernel_0K.png
  synthetic_dataset/nonuniform/<gt>_gyro_KK.png   (folder name unverified: also
                                        non_uniform/, non-uniform/, nonuniform_blur/)
  real_dataset/<name>.jpg              (.png also accepted)
List lines may carry more columns (the official lists add the kernel size, read in
MATLAB with textscan('%s %f')): only the first field is the name.  A list file may be
missing: then the folder's images are used."""

_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_SUFFIX_RE = re.compile(r"^(?P<gt>.+)_(?:kernel|gyro)_\d+$")


@dataclasses.dataclass(eq=False)
class LaiConfig(tfds.core.BuilderConfig):
  list_file: str = ""
  folders: tuple[str, ...] = ()
  has_sharp: bool = True
  expected_count: int = 100


def read_names(list_path: epath.Path) -> list[str]:
  """Names from a Lai list file: the first whitespace-separated field of each line.

  The official lists have two columns (`manmade_01_kernel_01     51`: name and
  kernel size); extensions, blank lines and `#` comments are ignored.
  """
  names = []
  for line in list_path.read_text(encoding="utf-8").splitlines():
    fields = line.split()
    if not fields or fields[0].startswith("#"):
      continue
    name = fields[0]
    name = name.split("/")[-1]
    for ext in _EXTS:
      if name.endswith(ext):
        name = name[: -len(ext)]
        break
    names.append(name)
  return names


def _find_file(folder: epath.Path, name: str) -> epath.Path | None:
  for ext in _EXTS:
    p = folder / (name + ext)
    if p.exists():
      return p
  return None


def _is_root(d: epath.Path) -> bool:
  return (d / "synthetic_dataset").is_dir() or (d / "real_dataset").is_dir()


class Builder(_common.ManualDirBuilder):
  """Lai et al. 2016: synthetic uniform / non-uniform (with GT) and real blurred images."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Download the Lai et al. 2016 benchmark (synthetic and real datasets, "
    "http://vllab.ucmerced.edu/wlai24/cvpr16_deblur_study/) and extract it into the "
    "manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT
  BUILDER_CONFIGS = [
    LaiConfig(
      name="synthetic_uniform",
      list_file="synthetic_uniform.txt",
      folders=("synthetic_dataset/uniform",),
      description="Synthetic uniform blur (4 kernels x 25 images), with ground truth.",
    ),
    LaiConfig(
      name="synthetic_nonuniform",
      list_file="synthetic_nonuniform.txt",
      folders=(
        "synthetic_dataset/nonuniform",
        "synthetic_dataset/non_uniform",
        "synthetic_dataset/non-uniform",
        "synthetic_dataset/nonuniform_blur",
      ),
      description="Synthetic non-uniform (gyro) blur, 4 x 25 images, with ground truth.",
    ),
    LaiConfig(
      name="real",
      list_file="real.txt",
      folders=("real_dataset",),
      has_sharp=False,
      description="100 real blurred images, no ground truth (blurry-only, no supervised keys).",
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "synthetic_uniform"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
      description="Lai et al. 2016 comparative deblurring benchmark.",
      homepage="http://vllab.ucmerced.edu/wlai24/cvpr16_deblur_study/",
    )

  def _split_generators(self, dl_manager):
    manual_dir = self._manual_dir(dl_manager)
    root = _common.find_root(manual_dir, _is_root)
    if root is None:
      raise self._layout_error(manual_dir, "Could not find the Lai et al. folders synthetic_dataset/ or real_dataset/.")
    cfg = self.builder_config
    folder = next((root / f for f in cfg.folders if (root / f).is_dir()), None)
    if folder is None:
      raise self._layout_error(
        manual_dir,
        f"Config {cfg.name}: none of {', '.join(cfg.folders)} exists under {root} "
        f"(found in synthetic_dataset/: {_common.describe_dir(root / 'synthetic_dataset').strip()}).",
      )
    list_path = root / cfg.list_file
    if list_path.exists():
      names = read_names(list_path)
      blurry_files = []
      for n in names:
        f = _find_file(folder, n)
        if f is None:
          raise _common.MissingPairError(
            f"{n} (listed in {list_path}) has no image in {folder} (tried {', '.join(_EXTS[:3])})."
          )
        blurry_files.append(f)
    else:
      logging.warning("lai/%s: %s missing; using every image in %s.", cfg.name, list_path, folder)
      blurry_files = _common.list_images(folder)
    pairs = []
    gt_dir = root / "synthetic_dataset" / "ground_truth"
    for blurry in blurry_files:
      sharp = None
      if cfg.has_sharp:
        m = _SUFFIX_RE.match(blurry.stem)
        if not m:
          raise _common.MissingPairError(
            f"Cannot derive the ground-truth name of {blurry} (expected <gt>_kernel_0K or <gt>_gyro_KK)."
          )
        sharp = _find_file(gt_dir, m.group("gt"))
        if sharp is None:
          raise _common.MissingPairError(
            f"Blurry image {blurry} has no sharp counterpart {gt_dir / (m.group('gt') + '.png')}."
          )
      pairs.append((_common.relpath(blurry, manual_dir), blurry, sharp, {}))
    if not pairs:
      raise self._layout_error(manual_dir, f"Found no images for config {cfg.name} in {folder}.")
    if len(pairs) != cfg.expected_count:
      logging.warning("lai/%s: %d images; the benchmark has %d.", cfg.name, len(pairs), cfg.expected_count)
    return {"test": self._generate_examples("test", pairs)}

  def _generate_examples(self, split, pairs):
    yield from self._pair_examples(split, pairs)
