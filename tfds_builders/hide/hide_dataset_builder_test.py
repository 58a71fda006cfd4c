"""DatasetBuilderTestCase for hide."""

from tfds_builders import _testing
from tfds_builders.hide import hide_dataset_builder


class HideTest(_testing.BuilderTestCase):
  DATASET_CLASS = hide_dataset_builder.Builder
  SPLITS = {"train": 3, "test": 3, "test_close_ups": 2, "test_long_shot": 1}
  # `test` is the union of the two subsets; the subsets must still be disjoint.
  OVERLAPPING_SPLITS = ["test"]


if __name__ == "__main__":
  _testing.test_main()
