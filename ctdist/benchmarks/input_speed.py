"""Input and build speed: ctdist's tf.data pipeline against the seed notebook's
ImageDataGenerator, and the TFDS build of a Kaggle-layout folder."""

import contextlib
import io
import os
import pathlib
import shutil
import statistics
import time

from ctdist.config import bench as bench_config
from ctdist.data import pipeline


# ---- input ------------------------------------------------------------------------------
def _notebook_generator(folder: pathlib.Path, image_size: int, batch_size: int):
  """The seed notebook's input on `folder` (a `Data/`): Keras 2 ImageDataGenerator with
  its augmentations."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  gen = tf_keras.preprocessing.image.ImageDataGenerator(
      rescale=1 / 255.0, rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
      zoom_range=0.1, horizontal_flip=True)
  return gen.flow_from_directory(str(folder / "train"),
                                 target_size=(image_size, image_size),
                                 batch_size=batch_size, class_mode="categorical", seed=0)


def _unzip(archive: pathlib.Path, into: str) -> str:
  shutil.unpack_archive(archive, into)
  return into


def _kaggle_folder(opts: bench_config.BenchOptions) -> pathlib.Path:
  """`Data/` of --folder (any form the builder's manual dir accepts: the zip, its folder,
  a parent of Data/, Data/), or of the synthetic config written to --tmp."""
  from tfds_ctscan import layout  # pylint: disable=g-import-not-at-top
  from tfds_ctscan import synthetic  # pylint: disable=g-import-not-at-top
  folder = opts.folder
  if folder is None:
    folder = os.path.join(opts.tmp, "folder")
    synthetic.write_kaggle_layout(folder, seed=0)
  return layout.kaggle_root(folder, lambda z: _unzip(z, os.path.join(opts.tmp, "unzip")))


def _images_per_sec(batches, steps: int, batch_size: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return steps * batch_size / (time.perf_counter() - start)


def bench_input(opts: bench_config.BenchOptions) -> dict:
  """ctdist's input pipeline (first epoch, steady state) against ImageDataGenerator."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  folder, epochs = _kaggle_folder(opts), opts.epochs
  b = tfds.builder("tfds_ctscan/kaggle", data_dir=opts.data.data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(folder)))
  n = b.info.splits["train"].num_examples
  steps = n // opts.batch_size
  it = iter(pipeline.train_dataset(b, "train", opts.image_size, opts.batch_size, seed=0))
  first = _images_per_sec(it, steps, opts.batch_size)
  steady = statistics.median(
      _images_per_sec(it, steps, opts.batch_size) for _ in range(max(1, epochs)))
  baseline = _images_per_sec(_notebook_generator(folder, opts.image_size, opts.batch_size),
                             steps, opts.batch_size)
  return {
      "config": {"folder": str(folder), "train_images": n, "image_size": opts.image_size,
                 "batch_size": opts.batch_size, "steady_epochs": epochs},
      "results": [
          {"name": "ctdist first epoch (TFRecords: decode, resize, fill cache)",
           "images_per_sec": first},
          {"name": "ctdist steady state (from cache)", "images_per_sec": steady},
          {"name": "notebook: ImageDataGenerator.flow_from_directory + augmentation",
           "images_per_sec": baseline}],
      "ratios": {"steady_vs_notebook": steady / baseline, "first_vs_notebook": first / baseline},
      "notes": "ctdist augments inside the train step on the accelerator (timed by `step`); "
               "the notebook's generator augments here, on the CPU."}


# ---- build ------------------------------------------------------------------------------
def bench_build(opts: bench_config.BenchOptions) -> dict:
  """`tfds build tfds_ctscan` (the kaggle config) on a Kaggle-layout folder: scan, decode,
  hash, flag leaks, encode, write TFRecords. The synthetic files stand in for the real
  ones (same counts and layout)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  folder = _kaggle_folder(opts)
  rates = []
  for i in range(max(1, opts.repeats)):
    b = tfds.builder("tfds_ctscan/kaggle", data_dir=os.path.join(opts.tmp, f"build{i}"))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Dataset ... prepared" lines
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(folder)))
    seconds = time.perf_counter() - start
    n = sum(split.num_examples for split in b.info.splits.values())
    rates.append(n / seconds)
  return {"config": {"folder": str(folder), "images": n, "repeats": len(rates),
                     "cpu_threads": os.cpu_count()},
          "results": [{"name": "tfds build tfds_ctscan (kaggle config), median",
                       "images_per_sec": statistics.median(rates)}]}
