"""Grouped, stratified folds for cross-validation: copies of one image (exact or near,
`tfds_ctscan.hashing.component_ids`) never straddle two folds, and every fold keeps the
class balance (scikit-learn's StratifiedGroupKFold). Plain arrays in, fold ids out."""

import numpy as np
from sklearn import model_selection

from tfds_ctscan import splitting


class FoldCountError(ValueError):
  """More folds than a class has groups of copies, or fewer than 2."""


def _check(labels, groups, folds: int, class_names=None, flag: str = "folds") -> None:
  labels, groups = np.asarray(labels), np.asarray(groups)
  if len(labels) != len(groups):
    raise ValueError(f"{len(groups)} group ids for {len(labels)} labels")
  if folds < 2:
    raise FoldCountError(f"--{flag}={folds}: needs at least 2 parts")
  for c in np.unique(labels):
    distinct = len(np.unique(groups[labels == c]))
    if distinct < folds:
      name = class_names[c] if class_names is not None else f"class {c}"
      raise FoldCountError(
          f"--{flag}={folds} is more than the {distinct} distinct images (groups of copies) "
          f"of {name}: some part would have none; use --{flag}={distinct} or fewer")


def assign(labels, groups, folds: int, seed: int, class_names=None) -> np.ndarray:
  """The fold (0..folds-1) of each example.

  Args:
    labels: [N] int class labels.
    groups: [N] ids; examples with one id always land in one fold.
    folds: K.
    seed: the shuffle of the groups (the same seed, the same folds).
    class_names: for error messages.

  Raises:
    FoldCountError: K < 2, or a class has fewer than K groups.
  """
  _check(labels, groups, folds, class_names)
  return splitting.parts(labels, groups, folds, seed)


def inner_validation(labels, groups, train_index, parts: int, seed: int,
                     class_names=None) -> np.ndarray:
  """A grouped, stratified 1/`parts` of `train_index` for early stopping inside a fold:
  the held-out fold never decides anything. Returns the indices (a subset of
  `train_index`) that validate; the rest of `train_index` trains."""
  train_index = np.asarray(train_index)
  labels, groups = np.asarray(labels)[train_index], np.asarray(groups)[train_index]
  _check(labels, groups, parts, class_names, flag="inner_parts")
  splitter = model_selection.StratifiedGroupKFold(parts, shuffle=True, random_state=seed)
  _, valid = next(splitter.split(np.zeros(len(labels)), labels, groups))
  return np.sort(train_index[valid])
