"""Shared fixtures: small Kaggle-layout folders written by the synthetic generator."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib

import pytest
import tensorflow as tf

# Two logical CPUs, before TF initialises, so MirroredStrategy has 2 replicas.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import tensorflow_datasets as tfds  # noqa: E402

import tfds_ctscan  # noqa: E402,F401
from tfds_ctscan import synthetic  # noqa: E402

SMALL_COUNTS = {
    "train": {"adenocarcinoma": 3, "large_cell_carcinoma": 3, "normal": 7,
              "squamous_cell_carcinoma": 3},
    "valid": {"adenocarcinoma": 1, "large_cell_carcinoma": 1, "normal": 2,
              "squamous_cell_carcinoma": 1},
    "test": {"adenocarcinoma": 2, "large_cell_carcinoma": 2, "normal": 7,
             "squamous_cell_carcinoma": 2},
}


@pytest.fixture
def kaggle_dir(tmp_path) -> pathlib.Path:
  """A folder holding Data/ in the Kaggle layout, both naming schemes, 40-64 px."""
  synthetic.write_kaggle_layout(tmp_path, seed=3, counts=SMALL_COUNTS,
                                size_range=(40, 64))
  return tmp_path


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir holding tfds_ctscan/kaggle built from a small fixture (34 images)."""
  root = tmp_path_factory.mktemp("small")
  synthetic.write_kaggle_layout(root / "manual", seed=3, counts=SMALL_COUNTS,
                                size_range=(40, 64))
  data_dir = root / "tfds"
  tfds.builder("tfds_ctscan/kaggle", data_dir=str(data_dir)).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
  return str(data_dir)
