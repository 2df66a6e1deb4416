"""The prepared TFDS builder of a dataset, built on first use where that is possible."""

import contextlib
import io

from absl import logging
import tensorflow_datasets as tfds

BUILD_HINT = (
    "build it first: `tfds build tfds_ctscan --config=synthetic --data_dir={data_dir}` "
    "for the offline synthetic data, or `tfds build tfds_ctscan "
    "--manual_dir=KAGGLE_DOWNLOAD --data_dir={data_dir}` for the real one "
    "(or pass --manual_dir to ctdist.train)")


class DatasetNotBuiltError(FileNotFoundError):
  """The requested TFDS dataset has not been prepared in data_dir."""


class UnknownDatasetError(ValueError):
  """A dataset name that no registered TFDS dataset or config answers to."""


class UnknownSplitError(ValueError):
  """A split the dataset does not have."""


def check_name(dataset: str) -> None:
  """Raises UnknownDatasetError unless `dataset` ("NAME" or "NAME/CONFIG[:VERSION]") is a
  registered dataset and config; the message lists the configs."""
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  name, _, config = dataset.partition("/")
  config = config.partition(":")[0]
  try:
    cls = tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UnknownDatasetError(
        f"--dataset={dataset}: no dataset {name!r} is registered; use "
        "tfds_ctscan/kaggle or tfds_ctscan/synthetic") from e
  configs = sorted(getattr(cls, "builder_configs", {}) or {})
  if config and config not in configs:
    raise UnknownDatasetError(f"--dataset={dataset}: {name} has no config {config!r}; use "
                              f"one of {', '.join(f'{name}/{c}' for c in configs)}")


def check_split(b, split: str, flag: str = "--split") -> None:
  """Raises UnknownSplitError unless the prepared builder `b` has `split`."""
  if split not in b.info.splits:
    raise UnknownSplitError(f"{flag}={split}: {b.info.full_name} has the splits "
                            f"{', '.join(b.info.splits)}; use one of them")


def builder(dataset: str, data_dir: str | None, manual_dir: str | None = None):
  """Returns the prepared TFDS builder, preparing it if `manual_dir` is given.

  Raises:
    UnknownDatasetError: no such dataset or config.
    DatasetNotBuiltError: not prepared and no `manual_dir`; says how to build it.
  """
  check_name(dataset)
  b = tfds.builder(dataset, data_dir=data_dir)
  if not b.is_prepared():
    if manual_dir is None and not dataset.endswith("/synthetic"):
      raise DatasetNotBuiltError(
          f"dataset {dataset!r} is not built in {b.data_dir}; "
          + BUILD_HINT.format(data_dir=data_dir or "~/tensorflow_datasets"))
    logging.info("building %s in %s (first use)", dataset, b.data_dir)
    # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout: its
    # sizes are unknown here and the line above says what happens.
    with contextlib.redirect_stdout(io.StringIO()):
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir))
    logging.info("built %s: %s", dataset, ", ".join(
        f"{name} {split.num_examples}" for name, split in sorted(b.info.splits.items())))
  return b
