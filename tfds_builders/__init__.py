"""TFDS builders for the deblurring datasets used by bdirnet_jax.

Importing this package registers every builder with TFDS (names: gopro, hide,
realblur, kohler, lai, synthetic_blur) so that `tfds.builder("gopro/blur", ...)`
and `tfds.data_source("gopro/blur", ...)` find them.  It imports
tensorflow_datasets (cheap) but neither tensorflow nor jax.

All builders are manual-download only and write ArrayRecord by default; see
tfds_builders/README.md.
"""

from tfds_builders.gopro import gopro_dataset_builder as _gopro  # noqa: F401
from tfds_builders.hide import hide_dataset_builder as _hide  # noqa: F401
from tfds_builders.kohler import kohler_dataset_builder as _kohler  # noqa: F401
from tfds_builders.lai import lai_dataset_builder as _lai  # noqa: F401
from tfds_builders.realblur import realblur_dataset_builder as _realblur  # noqa: F401
from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as _synthetic_blur  # noqa: F401

BUILDER_NAMES = ("gopro", "hide", "realblur", "kohler", "lai", "synthetic_blur")

__all__ = ["BUILDER_NAMES"]
