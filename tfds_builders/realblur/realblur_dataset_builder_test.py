"""DatasetBuilderTestCase for realblur (configs j and r; tele list only for J)."""

from tfds_builders import _testing
from tfds_builders.realblur import realblur_dataset_builder


class RealBlurJTest(_testing.BuilderTestCase):
  DATASET_CLASS = realblur_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["j"]
  SPLITS = {"train": 3, "test": 2, "test_tele": 1}


class RealBlurRTest(_testing.BuilderTestCase):
  DATASET_CLASS = realblur_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["r"]
  SPLITS = {"train": 3, "test": 2}


if __name__ == "__main__":
  _testing.test_main()
