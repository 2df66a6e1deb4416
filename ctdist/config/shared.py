"""Option groups several commands share: which run, which data, which split, what batch.

Each is declared once; a command's tree nests the groups it needs (with an empty prefix,
so the flags keep their names: --model_dir, --dataset, --data_dir, --split, --batch_size).
"""

import dataclasses
import os

from ctdist.config import flagtree

option = flagtree.option
MODEL_FILE = "model.keras"


class RunFolderError(ValueError):
  """A command that reads a run was not told which, or was told twice."""


@dataclasses.dataclass(frozen=True)
class DataSource:
  """A TFDS dataset and where it is built."""
  dataset: str | None = option(
      None, "TFDS name: tfds_ctscan/kaggle or tfds_ctscan/synthetic (evaluate, calibrate, "
      "explain, report: default the run's, from its options.json).")
  data_dir: str | None = option(
      None, "TFDS data_dir, a local path or gs://... (evaluate, calibrate, explain, report: "
      "default the run's; bench: one in --tmp).")


@dataclasses.dataclass(frozen=True)
class RunFolder:
  """The trained run a command reads: ctdist.train's --model_dir."""
  model_dir: str | None = option(
      None, "The run's folder (ctdist.train's --model_dir), holding model.keras and "
      "options.json.")
  model: str | None = option(
      None, "Old spelling: the path of a model.keras; use --model_dir=ITS_FOLDER instead.")

  def check(self) -> None:
    """Raises RunFolderError unless exactly one of --model_dir and --model is given (a
    field check would refuse the empty default that the flags start from)."""
    if self.model_dir is None and self.model is None:
      raise RunFolderError("name the trained run: --model_dir=DIR (ctdist.train's "
                           "--model_dir, e.g. runs/demo/model)")
    if self.model_dir is not None and self.model is not None:
      raise RunFolderError(f"--model_dir={self.model_dir} and --model={self.model} both "
                           "name a run; give --model_dir alone")

  @property
  def folder(self) -> str:
    """The run's folder (that of --model's file)."""
    self.check()
    if self.model_dir is not None:
      return self.model_dir
    return os.path.dirname(self.model) or "."

  @property
  def model_file(self) -> str:
    self.check()
    return self.model if self.model is not None else os.path.join(self.model_dir, MODEL_FILE)

  @property
  def flag(self) -> str | None:
    """How the user named the model file (for messages): the old --model, or None."""
    return f"--model={self.model}" if self.model is not None else None


@dataclasses.dataclass(frozen=True)
class SplitChoice:
  """The split a command scores."""
  split: str | None = option("test", "Split: train, valid or test.")


@dataclasses.dataclass(frozen=True)
class PredictBatch:
  """How many images a forward pass takes (any size: nothing trains)."""
  batch_size: int = option(32, "Prediction batch size.")

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"--batch_size={self.batch_size}; use 1 or more")
