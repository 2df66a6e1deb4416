"""tfds_ctscan dataset tests: both configs through TFDS's own test case."""

import tensorflow_datasets as tfds

from tfds_ctscan import tfds_ctscan_dataset_builder


class KaggleTest(tfds.testing.DatasetBuilderTestCase):
  """Reads dummy_data/, which has the Kaggle layout (both folder-naming schemes)."""
  DATASET_CLASS = tfds_ctscan_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["kaggle"]
  SPLITS = {"train": 8, "valid": 4, "test": 10}


class SyntheticTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = tfds_ctscan_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["synthetic"]
  SPLITS = {"train": 613, "valid": 72, "test": 315}


if __name__ == "__main__":
  tfds.testing.test_main()
