"""Shared fixtures: small Kaggle-layout folders written by the synthetic generator."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib

import pytest

from tfds_ctscan import synthetic

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
