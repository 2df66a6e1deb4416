"""TFDS builder for chest-CT slices: the Kaggle "Chest CT-Scan images" dataset
(`tfds_ctscan/kaggle`), an offline synthetic set (`tfds_ctscan/synthetic`), and your own
class folders under a config name of your choice (`CtScanConfig(name=...)`)."""

from tfds_ctscan.tfds_ctscan_dataset_builder import Builder  # noqa: F401  (registers it)
from tfds_ctscan.tfds_ctscan_dataset_builder import CtScanConfig  # noqa: F401
