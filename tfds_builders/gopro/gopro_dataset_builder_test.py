"""DatasetBuilderTestCase for gopro (official layout and repackaged layout)."""

from tfds_builders import _testing
from tfds_builders.gopro import gopro_dataset_builder


class GoproTest(_testing.BuilderTestCase):
  """Official GOPRO_Large layout, both configs."""

  DATASET_CLASS = gopro_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["blur", "blur_gamma"]
  SPLITS = {"train": 3, "test": 2}


class GoproRepackagedTest(_testing.BuilderTestCase):
  """Repackaged train/{input,target} + test/GoPro/{input,target} layout (config blur)."""

  DATASET_CLASS = gopro_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["blur"]
  EXAMPLE_DIR = str(DATASET_CLASS.code_path.parent / "dummy_data_repackaged")
  SPLITS = {"train": 2, "test": 1}


if __name__ == "__main__":
  _testing.test_main()
