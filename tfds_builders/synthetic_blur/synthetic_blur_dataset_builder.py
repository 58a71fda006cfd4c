"""Synthetic blur pairs made from sharp photos with `bdirnet_jax.blur.synthesize_blurry`.

Sharp photos come from the manual directory (any folder of images, searched
recursively) or, when the manual directory is absent or empty, from the colour
photos shipped inside installed packages (scikit-image `skimage/data/` and
scikit-learn `load_sample_images()` files).  Nothing is downloaded.

* Split by SOURCE image, never by crop or variant: an image is in `test` when
  `stable_unit("split", image_id) < test_fraction` (sha256-based, stable across
  machines); if that leaves a split empty and there are >= 2 images, the image with
  the lowest (highest) hash value moves to test (train).
* Each source image gives `train_variants` (train) or `test_variants` (test) blurred
  samples.  Variant v uses `rng = np.random.default_rng(seed)` with
  `seed = stable_hash("synthetic_blur", <config name>, image_id, v)` (stored in the
  `seed` feature, as int64 of the low 63 bits), and
  `blurry = synthesize_blurry(sharp, rng, family=..., kernel_size=..., gaussian_sigma=...)`
  (config values, default kernel_size=31, gaussian_sigma=0.01; a None value is not
  passed).  Config `mixed` first draws the family with `rng.integers(len(FAMILIES))`
  and records it in `blur_family`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import io
import sys

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

try:
  from tfds_builders import _common
except ImportError:  # `tfds build tfds_builders/synthetic_blur` without the repo root on sys.path.
  sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
  from tfds_builders import _common

# (package, path inside the package): natural colour photos shipped with the wheels.
PACKAGED_PHOTOS = (
  ("skimage", "data/astronaut.png"),
  ("skimage", "data/chelsea.png"),
  ("skimage", "data/coffee.png"),
  ("skimage", "data/motorcycle_left.png"),
  ("skimage", "data/rocket.jpg"),
  ("skimage", "data/hubble_deep_field.jpg"),
  ("sklearn", "datasets/images/china.jpg"),
  ("sklearn", "datasets/images/flower.jpg"),
)

_LAYOUT = """\
<manual_dir>/**/*.{png,jpg,jpeg,bmp,tif,tiff,webp,ppm,pgm}   (optional)
Any folder of sharp photos, searched recursively; image_id = path relative to it.
Without a manual directory (or with an empty one) the colour photos shipped in
scikit-image and scikit-learn are used: """ + ", ".join(p for _, p in PACKAGED_PHOTOS)


@dataclasses.dataclass(eq=False)
class SyntheticBlurConfig(tfds.core.BuilderConfig):
  """family=None: draw one of bdirnet_jax.blur.FAMILIES per sample (config `mixed`)."""

  family: str | None = None
  train_variants: int = 4
  test_variants: int = 2
  test_fraction: float = 0.25
  # Passed to synthesize_blurry (None: not passed, i.e. the function's default).
  kernel_size: int | None = 31
  gaussian_sigma: float | None = 0.01


def _family_config(family: str | None, name: str, desc: str, **kwargs) -> SyntheticBlurConfig:
  return SyntheticBlurConfig(name=name, family=family, description=desc, **kwargs)


_FAMILY_DESCRIPTIONS = (
  ("trajectory", "Random camera-shake trajectories (Boracchi & Foi 2012)."),
  ("linear", "Linear motion blur (length, angle)."),
  ("gaussian", "Gaussian blur."),
  ("defocus", "Defocus (disk) blur."),
  (None, "One family drawn per sample from bdirnet_jax.blur.FAMILIES."),
)


def packaged_photo_paths() -> list[tuple[str, epath.Path]]:
  """[(image_id, path)] of the shipped photos that are installed (no package import)."""
  out = []
  for pkg, rel in PACKAGED_PHOTOS:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
      logging.warning("synthetic_blur: package %s not installed; skipping %s.", pkg, rel)
      continue
    path = epath.Path(list(spec.submodule_search_locations)[0]) / rel
    if path.exists():
      out.append((f"{pkg}/{rel}", path))
    else:
      logging.warning("synthetic_blur: %s not found in the installed %s.", rel, pkg)
  return out


def assign_splits(image_ids: list[str], test_fraction: float) -> dict[str, list[str]]:
  """Deterministic train/test assignment of source images (see module doc)."""
  u = {i: _common.stable_unit("split", i) for i in image_ids}
  test = sorted(i for i in image_ids if u[i] < test_fraction)
  train = sorted(i for i in image_ids if u[i] >= test_fraction)
  if len(image_ids) >= 2 and test_fraction > 0:
    if not test:
      mv = min(train, key=lambda i: u[i])
      train.remove(mv)
      test.append(mv)
    elif not train:
      mv = max(test, key=lambda i: u[i])
      test.remove(mv)
      train.append(mv)
  return {"train": train, "test": test}


def _decode_rgb(png: bytes) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(io.BytesIO(png)) as img:
    return np.asarray(img.convert("RGB"))


class Builder(_common.ManualDirBuilder):
  """Blurry/sharp pairs synthesised from sharp photos (trajectory, linear, ... blur)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Optional: put sharp photos in the manual directory (nothing is downloaded by TFDS).\n" + _LAYOUT
  )
  EXPECTED_LAYOUT = _LAYOUT
  # 31x31 kernels (the GoPro-like scale), and 15x15 kernels with 8 test variants per photo: the scale a small
  # model learns within minutes on a CPU (the embedded default, configs/default.py).
  BUILDER_CONFIGS = [_family_config(family, family or "mixed", desc) for family, desc in _FAMILY_DESCRIPTIONS] + [
    _family_config(family, f"{family or 'mixed'}_k15", desc + " 15x15 kernels.", kernel_size=15, test_variants=8)
    for family, desc in _FAMILY_DESCRIPTIONS
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "mixed"

  def _info(self) -> tfds.core.DatasetInfo:
    return self._make_info(
      description="Synthetic blur pairs made with bdirnet_jax.blur.synthesize_blurry.",
      homepage="",
      extra_features={
        "variant": np.int32,
        "blur_family": tfds.features.Text(),
        "seed": np.int64,
      },
    )

  def _sources(self, dl_manager) -> list[tuple[str, epath.Path]]:
    raw = getattr(dl_manager, "_manual_dir", None)
    try:
      manual_dir = epath.Path(dl_manager.manual_dir)
    except AssertionError:  # Absent or empty manual dir -> shipped photos.
      manual_dir = None
    if manual_dir is not None:
      if not manual_dir.is_dir():
        raise self._layout_error(manual_dir, f"{manual_dir} is not a directory.")
      images = _common.list_images(manual_dir, recursive=True)
      if not images:
        raise self._layout_error(manual_dir, f"The manual directory {manual_dir} holds no image files.")
      return [(_common.relpath(p, manual_dir), p) for p in images]
    logging.info(
      "synthetic_blur: manual dir %s absent or empty; using photos shipped with scikit-image / scikit-learn.",
      raw,
    )
    photos = packaged_photo_paths()
    if not photos:
      raise _common.ManualDirError(
        "synthetic_blur: no manual directory and none of the packaged photos is "
        f"installed ({', '.join(p for _, p in PACKAGED_PHOTOS)})."
      )
    return photos

  def _split_generators(self, dl_manager):
    sources = dict(self._sources(dl_manager))
    splits = assign_splits(sorted(sources), self.builder_config.test_fraction)
    return {
      split: self._generate_examples(split, [(i, sources[i]) for i in ids]) for split, ids in splits.items() if ids
    }

  def _generate_examples(self, split, sources):
    blur = importlib.import_module("bdirnet_jax.blur")
    cfg = self.builder_config
    n_variants = cfg.train_variants if split == "train" else cfg.test_variants
    kwargs = {}
    if cfg.kernel_size is not None:
      kwargs["kernel_size"] = cfg.kernel_size
    if cfg.gaussian_sigma is not None:
      kwargs["gaussian_sigma"] = cfg.gaussian_sigma
    families = tuple(blur.FAMILIES)
    stats = _common.ConversionStats(f"synthetic_blur/{cfg.name}", split)
    for image_id, path in sources:
      sharp = stats.add(_common.load_image(path, image_id))
      sharp_arr = _decode_rgb(sharp.png_bytes)
      for v in range(n_variants):
        seed = _common.stable_hash("synthetic_blur", cfg.name, image_id, v)
        rng = np.random.default_rng(seed)
        family = cfg.family if cfg.family is not None else families[int(rng.integers(len(families)))]
        out = blur.synthesize_blurry(sharp_arr, rng, family=family, **kwargs)
        out = np.asarray(out)
        if out.dtype != np.uint8 or out.shape != sharp_arr.shape:
          raise _common.SizeMismatchError(
            f"synthesize_blurry(family={family!r}) returned {out.dtype} {out.shape} "
            f"for {path} of shape {sharp_arr.shape}; expected uint8 of the same shape."
          )
        yield (
          f"{image_id}#{v}",
          {
            "blurry": _common.encode_png(out),
            "sharp": sharp.png_bytes,
            "image_id": image_id,
            "variant": v,
            "blur_family": family,
            "seed": seed & 0x7FFFFFFFFFFFFFFF,
          },
        )
    stats.log()
