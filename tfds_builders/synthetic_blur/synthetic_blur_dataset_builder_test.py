"""DatasetBuilderTestCase for synthetic_blur (dummy_data = a small folder of photos).

The builder imports the real `bdirnet_jax.blur`.  Only when that module does not
exist at all (ModuleNotFoundError for `bdirnet_jax.blur` itself) is a small numpy
stand-in with the same signature installed, so the builder can be tested on its
own; any other import error of the real module is raised.
"""

import importlib
import sys
import types

import numpy as np

from tfds_builders import _testing
from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder

STAND_IN_FAMILIES = ("trajectory", "linear", "gaussian", "defocus")


def _stand_in_synthesize_blurry(sharp_uint8, rng, *, family="mixed", kernel_size=31, gaussian_sigma=0.01, **_):
  """Box blur of random size + Gaussian noise; deterministic in `rng`."""
  if family not in STAND_IN_FAMILIES:
    family = STAND_IN_FAMILIES[int(rng.integers(len(STAND_IN_FAMILIES)))]
  x = np.asarray(sharp_uint8, np.float64) / 255.0
  k = int(rng.integers(1, max(2, min(kernel_size, 7)) // 2 + 1)) * 2 + 1
  p = np.pad(x, ((k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode="symmetric")
  y = np.zeros_like(x)
  for dy in range(k):
    for dx in range(k):
      y += p[dy : dy + x.shape[0], dx : dx + x.shape[1]]
  y = y / (k * k) + gaussian_sigma * rng.standard_normal(x.shape)
  return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)


def ensure_blur_module() -> bool:
  """Imports bdirnet_jax.blur; installs the stand-in if it does not exist. True = real."""
  try:
    importlib.import_module("bdirnet_jax.blur")
    return True
  except ModuleNotFoundError as e:
    if e.name not in ("bdirnet_jax.blur", "bdirnet_jax"):
      raise
  mod = types.ModuleType("bdirnet_jax.blur")
  mod.FAMILIES = STAND_IN_FAMILIES
  mod.synthesize_blurry = _stand_in_synthesize_blurry
  mod.IS_STAND_IN = True
  sys.modules["bdirnet_jax.blur"] = mod
  return False


ensure_blur_module()


class SyntheticBlurTest(_testing.BuilderTestCase):
  """All five configs on 7 tiny photos (RGB, gray, RGBA, 16-bit, JPEG).

  Split by source image: 6 train images x 4 variants, 1 test image x 2 variants.
  """

  DATASET_CLASS = synthetic_blur_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["trajectory", "linear", "gaussian", "defocus", "mixed"]
  SPLITS = {"train": 24, "test": 2}


if __name__ == "__main__":
  _testing.test_main()
