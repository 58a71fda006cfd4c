"""The study's fixed test sets: held-out photos blurred with seeded kernels that are kept, plus prepared real data.

Synthetic sets (one per blur family):
* photos: exactly the `test` split of the `synthetic_blur` builder (`packaged_photo_paths()` + `assign_splits()`
  with the builder's `test_fraction`), so they follow the builder's photo list and never include a train photo;
* `variants` images per photo: a square crop of side min(max_side, photo's shorter side) at a position drawn from
  `stable_seed("crop", image_id, variant)` (the same crops for every family, so families compare equal content);
* the kernel: `blur.sample_kernel(np.random.default_rng(stable_seed(family, image_id, variant)), family,
  kernel_size, trajectory_exposures=...)` (None: blur's default exposures); then `blur.blur_image` and
  `blur.add_noise(gaussian_sigma=noise_sigma)` with the same rng, rounded to uint8. The kernels stay with the set:
  the classical oracles need them.

Real sets: every dataset of `robustness.REAL_DATASETS` prepared in the study's data_dir, the first `max_real`
test images in source order, centre-cropped to at most max_side x max_side (no kernel: only the `input`
baseline applies). Being crops, they are scored with the synthetic sets' protocol (`rgb_uint8_gauss11`), RealBlur
with its ECC alignment (`realblur_ecc`): study numbers on real sets are not the benchmarks' official ones.

A set's `fingerprint` hashes everything that defines it (pixels, kernels, ids, protocol), so cached scores are
reused only for exactly the same images.
"""

import dataclasses
import hashlib
import io
from typing import Sequence

import numpy as np
from absl import logging

from bdirnet_jax import blur

REALBLUR_PROTOCOL = "realblur_ecc"


@dataclasses.dataclass
class TestSet:
  label: str  # the family name for synthetic sets, e.g. "gopro-blur" for real ones
  family: str | None  # blur family (None: real data)
  protocol: str
  image_ids: list[str]
  blurry: list[np.ndarray]  # uint8 HxWx3
  sharp: list[np.ndarray]  # uint8 HxWx3
  kernels: list[np.ndarray] | None  # float32 kxk, sum 1 (None: real data, kernel unknown)
  noise_sigma: float | None
  fingerprint: str = ""

  def __len__(self) -> int:
    return len(self.image_ids)


def stable_seed(*parts) -> int:
  """A 63-bit seed from sha256 of the parts: the same on every machine and Python version."""
  digest = hashlib.sha256("\x1f".join(["bdirnet-study", *map(str, parts)]).encode()).digest()
  return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


def fingerprint(ts: TestSet) -> str:
  h = hashlib.sha256()
  h.update(f"{ts.label}|{ts.family}|{ts.protocol}|{ts.noise_sigma}".encode())
  for i, iid in enumerate(ts.image_ids):
    h.update(iid.encode())
    for a in (ts.blurry[i], ts.sharp[i]) + ((ts.kernels[i],) if ts.kernels is not None else ()):
      h.update(str(a.shape).encode() + str(a.dtype).encode())
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def test_photos() -> list[tuple[str, np.ndarray]]:
  """[(image_id, uint8 HxWx3)] of the synthetic_blur builder's test split (packaged photos), sorted by id."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as sb  # pylint: disable=g-import-not-at-top

  test_fraction = next(
    c.test_fraction for c in sb.Builder.BUILDER_CONFIGS if c.name == sb.Builder.DEFAULT_BUILDER_CONFIG_NAME
  )
  paths = dict(sb.packaged_photo_paths())
  ids = sb.assign_splits(sorted(paths), test_fraction)["test"]
  if not ids:
    raise RuntimeError("synthetic_blur has no test photo (are scikit-image / scikit-learn installed?)")
  out = []
  for iid in ids:
    with Image.open(io.BytesIO(paths[iid].read_bytes())) as img:
      out.append((iid, np.asarray(img.convert("RGB"))))
  return out


def _crop(photo: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
  h, w = photo.shape[:2]
  top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
  return np.ascontiguousarray(photo[top : top + side, left : left + side])


def synthetic_sets(
  families: Sequence[str],
  *,
  variants: int,
  max_side: int,
  kernel_size: int,
  noise_sigma: float,
  photos: list[tuple[str, np.ndarray]] | None = None,
  trajectory_exposures: Sequence[float] | None = None,
) -> list[TestSet]:
  """One TestSet per family (module doc); `photos` defaults to `test_photos()`."""
  from bdirnet_jax import metrics  # pylint: disable=g-import-not-at-top

  blur.check_families(families, "test blur families", allow_mixed=False)
  photos = test_photos() if photos is None else photos
  crops = []
  for iid, photo in photos:
    side = min(int(max_side), *photo.shape[:2])
    for v in range(int(variants)):
      crops.append((f"{iid}#{v}", iid, v, _crop(photo, side, np.random.default_rng(stable_seed("crop", iid, v)))))
  sets = []
  for family in families:
    ids, blurry, sharp, kernels = [], [], [], []
    for crop_id, iid, v, sharp_img in crops:
      rng = np.random.default_rng(stable_seed(family, iid, v))
      kernel = blur.sample_kernel(rng, family, int(kernel_size), trajectory_exposures=trajectory_exposures)
      y = blur.add_noise(
        rng, blur.blur_image(sharp_img.astype(np.float32) / 255.0, kernel), gaussian_sigma=float(noise_sigma)
      )
      ids.append(crop_id)
      blurry.append(np.round(y * 255.0).astype(np.uint8))
      sharp.append(sharp_img)
      kernels.append(kernel)
    ts = TestSet(family, family, metrics.DEFAULT_PROTOCOL, ids, blurry, sharp, kernels, float(noise_sigma))
    ts.fingerprint = fingerprint(ts)
    sets.append(ts)
  return sets


def _center_crop(image: np.ndarray, max_side: int) -> np.ndarray:
  h, w = image.shape[:2]
  ch, cw = min(h, max_side), min(w, max_side)
  top, left = (h - ch) // 2, (w - cw) // 2
  return np.ascontiguousarray(image[top : top + ch, left : left + cw])


def real_sets(
  data_dir: str | None, *, max_side: int, max_images: int, datasets=None
) -> tuple[list[TestSet], list[str]]:
  """(TestSets of the real datasets prepared in data_dir, labels of those not prepared)."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import metrics  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import robustness  # pylint: disable=g-import-not-at-top

  cfgs, skipped = robustness.test_sets(data_dir, (), robustness.REAL_DATASETS if datasets is None else datasets)
  sets = []
  for ds_cfg in cfgs:
    ids, blurry, sharp = [], [], []
    for example in input_pipeline.create_eval_iterator(ds_cfg, process_index=0, process_count=1):
      if len(ids) >= max_images:
        break
      if "sharp" not in example:
        continue
      ids.append(str(example["image_id"]))
      blurry.append(_center_crop(example["blurry"], max_side))
      sharp.append(_center_crop(example["sharp"], max_side))
    if not ids:
      logging.warning("study: %s has no test image with ground truth; skipped", ds_cfg.label)
      skipped.append(ds_cfg.label)
      continue
    protocol = REALBLUR_PROTOCOL if str(ds_cfg.name).startswith("realblur") else metrics.DEFAULT_PROTOCOL
    ts = TestSet(str(ds_cfg.label), None, protocol, ids, blurry, sharp, None, None)
    ts.fingerprint = fingerprint(ts)
    sets.append(ts)
  return sets, skipped


def set_scores(outputs: Sequence[np.ndarray], ts: TestSet) -> list[tuple[float, float]]:
  """(PSNR, SSIM) of float [0, 1] HxWx3 outputs against the set's sharp images under the set's protocol
  (`protocols.score_images`, so a study and --mode=evaluate score alike)."""
  from bdirnet_jax import protocols  # pylint: disable=g-import-not-at-top

  scores = []
  for out, sharp in zip(outputs, ts.sharp):
    r = protocols.score_images(ts.protocol, np.asarray(out, np.float32)[None], [{"sharp": sharp}])[0]
    scores.append((float(r["psnr"]), float(r["ssim"])))
  return scores
