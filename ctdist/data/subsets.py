"""Subsets: the examples of a split expression whose file names a JSON file lists (a
cross-validation fold's train and validation parts), accepted wherever a split name is."""

import dataclasses
import json

import tensorflow as tf

from ctdist.store import atomic


class SubsetError(ValueError):
  """A subset file that is missing, malformed, or lists files the dataset lacks."""


@dataclasses.dataclass(frozen=True)
class Subset:
  """The examples of a TFDS split expression (e.g. "train+valid") whose file names are
  listed: a cross-validation fold's part. Accepted wherever a split name is."""
  name: str  # for logs and output files, e.g. "fold0_heldout"
  split: str
  files: tuple[str, ...]

  def __str__(self):
    return self.name


def write_subsets(path: str, train: Subset, valid: Subset) -> None:
  """The train and validation parts of a run (a fold), as `read_subsets` reads them."""
  atomic.write_json(path, {"train": dataclasses.asdict(train),
                          "valid": dataclasses.asdict(valid)})  # atomic: workers read it


def read_subsets(path: str) -> tuple[Subset, Subset]:
  """(train, valid) Subsets from a file `write_subsets` wrote.

  Raises:
    SubsetError: naming the file, if it is missing or not such a file.
  """
  try:
    with tf.io.gfile.GFile(path) as f:
      d = json.load(f)
    return tuple(Subset(d[k]["name"], d[k]["split"], tuple(d[k]["files"]))
                 for k in ("train", "valid"))
  except (OSError, tf.errors.NotFoundError, KeyError, TypeError, ValueError) as e:
    raise SubsetError(f"--subset_file={path}: not a subset file written by ctdist.cv "
                     f"({e!r})") from e
