"""The options of `python -m ctdist.cv`: the folds, and the training run each fold is."""

import dataclasses

from ctdist.config import flagtree
from ctdist.config import training

option = flagtree.option


@dataclasses.dataclass(frozen=True)
class CVOptions:
  """A cross-validation: the folds, and the training run each fold is (--model_dir is the
  cross-validation's folder; each fold trains in a folder of its own inside it)."""
  folds: int = option(5, "Number of folds K.")
  repeats: int = option(1, "Repeat the K folds with other group shuffles (seed + repeat).")
  fold: int = option(
      -1, "Run only this fold: 0 .. folds x repeats - 1 (repeat i // folds, fold i % folds); "
      "-1: every fold, then aggregate.")
  inner_parts: int = option(
      8, "Early stopping validates on a grouped, stratified 1/N of each fold's training part.")
  train: training.Options = flagtree.group(training.Options)
