"""A split's per-example predictions, and their file `predictions_<split>.json` (written
by `ctdist.evaluate`, read by `ctdist.compare`)."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from ctdist.store import atomic
from ctdist.store import run_files


@dataclasses.dataclass(frozen=True)
class Predictions:
  """One model's probabilities on every example of one split, in the split's order.

  `groups` ids exact copies inside the split alike (a bootstrap resamples them whole);
  `file_names` are the dataset's, e.g. `test/normal/0020.png`.
  """
  dataset: str  # TFDS full name, e.g. tfds_ctscan/kaggle/1.0.0
  split: str
  class_names: tuple[str, ...]
  temperature: float  # of the model's softmax when it predicted (1: uncalibrated)
  file_names: np.ndarray  # [N] str
  labels: np.ndarray  # [N] int
  probs: np.ndarray  # [N, K] float
  leaked: np.ndarray  # [N] bool
  groups: np.ndarray  # [N] int

  def __post_init__(self):
    n = len(self.labels)
    for name in ("file_names", "probs", "leaked", "groups"):
      if len(getattr(self, name)) != n:
        raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} labels")
    if n and self.probs.shape[1] != len(self.class_names):
      raise ValueError(f"probabilities have {self.probs.shape[1]} columns for "
                       f"{len(self.class_names)} classes")


def take(p: Predictions, index) -> Predictions:
  """The examples at `index` (an index array or mask), in that order."""
  return dataclasses.replace(p, file_names=p.file_names[index], labels=p.labels[index],
                             probs=p.probs[index], leaked=p.leaked[index],
                             groups=p.groups[index])


def by_file(p: Predictions) -> Predictions:
  """`p` ordered by file name (the order two runs' predictions are paired in).

  Raises:
    ValueError: a file name repeats.
  """
  if len(set(p.file_names.tolist())) != len(p.file_names):
    raise ValueError(f"{p.dataset} {p.split}: file names repeat in the predictions")
  return take(p, np.argsort(p.file_names, kind="stable"))


def path(model_dir: str, split: str) -> str:
  return os.path.join(model_dir, f"predictions_{split}.json")


def save(p: Predictions, model_dir: str) -> str:
  """Writes predictions_<split>.json in `model_dir` (atomically); returns its path."""
  out = path(model_dir, p.split)
  atomic.write_json(out, {
      "dataset": p.dataset, "split": p.split, "class_names": list(p.class_names),
      "temperature": p.temperature,
      "examples": [{"file_name": str(f), "label": int(y), "leaked": bool(k), "group": int(g),
                    "probabilities": [float(v) for v in row]}
                   for f, y, k, g, row in zip(p.file_names, p.labels, p.leaked, p.groups,
                                              p.probs)]})
  return out


class NoPredictionsError(FileNotFoundError):
  """A run folder without the predictions of the asked split."""


class PredictionsFileError(ValueError):
  """A predictions file that is not one ctdist wrote."""


def load(model_dir: str, split: str) -> Predictions:
  """The predictions `ctdist.evaluate` wrote for `split` in `model_dir`.

  Raises:
    NoPredictionsError: the file is missing (the message says how to write it).
    PredictionsFileError: the file is not a predictions file.
  """
  where = path(model_dir, split)
  if not tf.io.gfile.exists(where):
    raise NoPredictionsError(
        f"{where} not found: {model_dir} has no predictions for the {split} split; write them "
        f"with python -m ctdist.evaluate --model_dir={model_dir} --split={split}")
  try:
    d = run_files.read_json(model_dir, os.path.basename(where))
    ex = d["examples"]
    k = len(d["class_names"])
    return Predictions(
        dataset=d["dataset"], split=d["split"], class_names=tuple(d["class_names"]),
        temperature=float(d["temperature"]),
        file_names=np.array([e["file_name"] for e in ex], dtype=str),
        labels=np.array([e["label"] for e in ex], dtype=np.int64),
        probs=np.array([e["probabilities"] for e in ex], dtype=np.float64).reshape(-1, k),
        leaked=np.array([e["leaked"] for e in ex], dtype=bool),
        groups=np.array([e["group"] for e in ex], dtype=np.int64))
  except (KeyError, TypeError, ValueError) as e:  # RunFileError is a ValueError
    raise PredictionsFileError(f"{where} is not a ctdist predictions file: {e!r}") from e
