"""DatasetBuilderTestCase for kohler."""

from tfds_builders import _testing
from tfds_builders.kohler import kohler_dataset_builder


class KohlerTest(_testing.BuilderTestCase):
  DATASET_CLASS = kohler_dataset_builder.Builder
  SPLITS = {"test": 3}


if __name__ == "__main__":
  _testing.test_main()
