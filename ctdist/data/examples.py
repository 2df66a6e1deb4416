"""Reading a split's examples outside training: class counts, file names, leak flags,
named images, finding boxes, a shard's fingerprint, and a subset's check."""

import collections
import hashlib

import numpy as np
import tensorflow as tf

from ctdist.data import pipeline
from ctdist.data import records
from ctdist.data import subsets


def class_counts(b, split: "str | subsets.Subset") -> np.ndarray:
  """Examples per class in `split`, read from the labels alone."""
  ds = records.read(b, split, 1, 0)
  labels = [int(label) for label in ds.map(lambda ex: ex["label"]).as_numpy_iterator()]
  return np.bincount(labels, minlength=b.info.features["label"].num_classes)


def file_names(b, split: "str | subsets.Subset") -> np.ndarray:
  """The split's file names (e.g. `test/normal/0020.png`), in `eval_dataset`'s order."""
  return file_names_and_labels(b, split)[0]


def file_names_and_labels(b, split: "str | subsets.Subset") -> tuple[np.ndarray, np.ndarray]:
  """The split's file names and label indices, in `eval_dataset`'s order."""
  pairs = list(records.read(b, split, 1, 0).map(
      lambda ex: (ex["file_name"], ex["label"])).as_numpy_iterator())
  return (np.array([n.decode() for n, _ in pairs], dtype=str),
          np.array([int(label) for _, label in pairs], dtype=np.int64))


def leaked_count(b, split: "str | subsets.Subset") -> int:
  """Examples of `split` flagged as copies of an earlier split's images."""
  return int(sum(records.read(b, split, 1, 0).map(lambda ex: tf.cast(ex["leaked"], tf.int32))
                 .as_numpy_iterator()))


def images_named(b, split: "str | subsets.Subset", image_size: int, names) -> dict[str, np.ndarray]:
  """{file name: resized image} of the examples of `split` named in `names`; raises
  MissingFilesError naming those the split does not hold."""
  wanted = set(names)
  found = {}
  for ex in records.read(b, split, 1, 0).as_numpy_iterator():
    name = ex["file_name"].decode()
    if name in wanted:
      found[name] = pipeline.decode_and_resize(ex["image"], image_size).numpy()
  missing = sorted(wanted - set(found))
  if missing:
    raise MissingFilesError(f"{b.info.full_name} {split} has no {', '.join(missing[:5])}"
                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
  return found


class MissingFilesError(KeyError):
  """Files a run's predictions name that the dataset's split does not hold."""

  def __str__(self):  # KeyError's would quote the message
    return str(self.args[0])


class NoFindingsError(ValueError):
  """The dataset records no finding boxes."""


def check_findings(b) -> None:
  """Raises NoFindingsError unless the dataset records where its findings were drawn."""
  if "findings" not in b.info.features:
    raise NoFindingsError(
        f"dataset {b.info.full_name} records no finding boxes (no 'findings' feature): "
        "the pointing game needs tfds_ctscan/synthetic, whose boxes say where each "
        "finding was drawn")


def annotated_examples(b, split: "str | subsets.Subset", image_size: int):
  """(file name, resized image, label, finding boxes K x 4) of every example of `split`,
  in `eval_dataset`'s order; the boxes are (ymin, xmin, ymax, xmax) fractions, none for
  an image without a finding.

  Raises:
    NoFindingsError: the dataset has no `findings` feature.
  """
  check_findings(b)
  ds = records.read(b, split, 1, 0).map(
      lambda ex: (ex["file_name"], pipeline.decode_and_resize(ex["image"], image_size),
                  tf.cast(ex["label"], tf.int32), ex["findings"]))
  for name, image, label, boxes in ds.as_numpy_iterator():
    yield name.decode(), image, int(label), boxes.reshape(-1, 4)


def shard_fingerprint(b, split: "str | subsets.Subset", num_shards: int,
                      shard: int) -> tuple[int, str]:
  """(examples, SHA-1 of their file names) of one input shard, for logs: workers
  of a cluster must report different fingerprints."""
  names = sorted(records.read(b, split, num_shards, shard).map(
      lambda ex: ex["file_name"]).as_numpy_iterator())
  return len(names), hashlib.sha1(b"\n".join(names)).hexdigest()[:12]


def check_subsets(b, *parts: subsets.Subset) -> None:
  """Raises SubsetError naming listed files that their split does not hold, or that a
  subset lists twice (each split expression is read once, file names only)."""
  found = {}
  for subset in parts:
    if subset.split not in found:
      found[subset.split] = set(file_names(b, subset.split).tolist())
    missing = [f for f in subset.files if f not in found[subset.split]]
    if missing:
      raise subsets.SubsetError(
          f"{subset.name}: {len(missing)} of its {len(subset.files)} files are not in "
          f"{b.info.full_name} {subset.split} (e.g. {missing[:3]}); was the dataset rebuilt "
          "since ctdist.cv assigned the folds?")
    twice = sorted(f for f, n in collections.Counter(subset.files).items() if n > 1)
    if twice:
      raise subsets.SubsetError(f"{subset.name}: files listed more than once: {twice[:3]}")
