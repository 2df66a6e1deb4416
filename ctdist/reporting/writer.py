"""Writes report.html into a run's or a cross-validation's folder."""

import os

from absl import logging
import tensorflow as tf

from ctdist.config import commands as commands_config
from ctdist.data import builders
from ctdist.reporting import cv_page
from ctdist.reporting import run_page
from ctdist.store import atomic
from ctdist.store import options_file
from ctdist.store import run_files


def is_cv(folder: str) -> bool:
  return tf.io.gfile.exists(os.path.join(folder, run_files.CV_SUMMARY))


def write(folder: str, b=None, limit: int = commands_config.GALLERY) -> str:
  """Writes folder/report.html (a run's or a cv folder's); returns its path."""
  page = (cv_page.cv_report if is_cv(folder) else run_page.run_report)(folder, b, limit)
  path = os.path.join(folder, run_files.REPORT)
  atomic.write_text(path, page)
  logging.info("report: %s", path)
  return path


def builder_of(folder: str, dataset: str | None = None, data_dir: str | None = None):
  """The dataset of a run (or of a cv folder's first fold), unless named."""
  if is_cv(folder):
    summary = run_files.read_json(folder, run_files.CV_SUMMARY)
    folder = os.path.join(folder, summary["per_fold"][0]["fold"])
  return builders.builder(*options_file.run_dataset(folder, dataset, data_dir))
