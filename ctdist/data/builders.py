"""The prepared TFDS builder of a dataset, built on first use where that is possible."""

import contextlib
import io
import signal
import threading

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


class BuildStopped(BaseException):
  """A SIGTERM or SIGINT during a build on first use. A BaseException, as KeyboardInterrupt
  is: no `except Exception` on the way (an image that does not decode) may take it for
  something else."""

  def __init__(self, signum: int, dataset: str, where: str):
    self.signum = signum
    super().__init__(
        f"stopped by {signal.Signals(signum).name} while building {dataset} in {where}; an "
        "unfinished build is not kept: run the same command again to build it")

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


@contextlib.contextmanager
def _stop_on_signals(dataset: str, where: str):
  """Turns a SIGTERM or SIGINT into BuildStopped, raised where the build is: TFDS builds
  into an `incomplete.*` folder and removes it on an exception (a signal's default effect
  would leave it behind). A second signal takes its default effect."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {}

  def stop(signum, frame):
    del frame
    for s, handler in previous.items():
      signal.signal(s, handler)
    raise BuildStopped(signum, dataset, where)

  for s in (signal.SIGTERM, signal.SIGINT):
    previous[s] = signal.signal(s, stop)
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def check_name(dataset: str):
  """The registered builder class of `dataset` ("NAME" or "NAME/CONFIG[:VERSION]").

  Raises:
    UnknownDatasetError: no dataset NAME is registered.
  """
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  name = dataset.partition("/")[0]
  try:
    return tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise UnknownDatasetError(
        f"--dataset={dataset}: no dataset {name!r} is registered; use "
        "tfds_ctscan/kaggle, tfds_ctscan/synthetic or tfds_ctscan/YOUR_FOLDER_CONFIG") from e


def _own_config(cls, dataset: str) -> str | None:
  """The config of `dataset` when it is not one of the builder's listed configs: a
  user's own folder (tfds_ctscan: any other name), read back from its files."""
  config = dataset.partition("/")[2].partition(":")[0]
  if config and config not in (getattr(cls, "builder_configs", None) or {}):
    return config
  return None


def check_split(b, split: str, flag: str = "--split") -> None:
  """Raises UnknownSplitError unless the prepared builder `b` has `split`."""
  if split not in b.info.splits:
    raise UnknownSplitError(f"{flag}={split}: {b.info.full_name} has the splits "
                            f"{', '.join(b.info.splits)}; use one of them")


def builder(dataset: str, data_dir: str | None, manual_dir: str | None = None):
  """Returns the prepared TFDS builder, preparing it if `manual_dir` is given.

  Raises:
    UnknownDatasetError: no such dataset.
    DatasetNotBuiltError: not prepared and no `manual_dir`; says how to build it.
    BuildStopped: a SIGTERM or SIGINT while building; an unfinished build is not kept.
  """
  cls = check_name(dataset)
  own = _own_config(cls, dataset)
  if own is not None:
    b = _own_folder(cls, dataset, own, data_dir, manual_dir)
  else:
    b = tfds.builder(dataset, data_dir=data_dir)
  if not b.is_prepared():
    if manual_dir is None and not dataset.endswith("/synthetic"):
      raise DatasetNotBuiltError(
          f"dataset {dataset!r} is not built in {b.data_dir}; "
          + BUILD_HINT.format(data_dir=data_dir or "~/tensorflow_datasets"))
    logging.info("building %s in %s (first use)", dataset, b.data_dir)
    # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout: its
    # sizes are unknown here and the line above says what happens.
    with contextlib.redirect_stdout(io.StringIO()), _stop_on_signals(dataset, b.data_dir):
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir))
    logging.info("built %s: %s", dataset, ", ".join(
        f"{name} {split.num_examples}" for name, split in sorted(b.info.splits.items())))
  return b


def _own_folder(cls, dataset: str, config: str, data_dir: str | None,
                manual_dir: str | None):
  """The builder of a user's folder dataset: read from its files (TFDS reads a config
  the code does not list from the prepared dataset), or one to build from `manual_dir`
  with the config's default options."""
  name = dataset.partition("/")[0]
  try:
    return tfds.builder(dataset, data_dir=data_dir)
  except ValueError as e:  # TFDS: "BuilderConfig ... not found": no files, no code
    if manual_dir is None:
      configs = ", ".join(f"{name}/{c}" for c in sorted(getattr(cls, "builder_configs", {})))
      raise DatasetNotBuiltError(
          f"--dataset={dataset}: not built in {data_dir or '~/tensorflow_datasets'} (the "
          f"configs {configs} come with the code; any other name is your own folder): "
          f"`tfds build {name} --config='{{\"name\": \"{config}\"}}' "
          f"--manual_dir=YOUR_FOLDER --data_dir={data_dir or '~/tensorflow_datasets'}`, "
          "or check the name") from e
  return cls(config=cls.builder_config_cls(name=config), data_dir=data_dir)
