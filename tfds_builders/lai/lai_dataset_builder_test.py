"""DatasetBuilderTestCase for lai (one class per config: counts differ)."""

from tfds_builders import _testing
from tfds_builders.lai import lai_dataset_builder


class LaiSyntheticUniformTest(_testing.BuilderTestCase):
  DATASET_CLASS = lai_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["synthetic_uniform"]
  SPLITS = {"test": 3}


class LaiSyntheticNonuniformTest(_testing.BuilderTestCase):
  DATASET_CLASS = lai_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["synthetic_nonuniform"]
  SPLITS = {"test": 2}


class LaiRealTest(_testing.BuilderTestCase):
  """Blurry-only config (no `sharp`, no supervised keys)."""

  DATASET_CLASS = lai_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["real"]
  SPLITS = {"test": 2}


if __name__ == "__main__":
  _testing.test_main()
