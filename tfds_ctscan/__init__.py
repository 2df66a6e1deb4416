"""TFDS builder for the Kaggle "Chest CT-Scan images" dataset: `tfds_ctscan/kaggle` and
`tfds_ctscan/synthetic`."""

from tfds_ctscan.tfds_ctscan_dataset_builder import Builder  # noqa: F401  (registers it)
