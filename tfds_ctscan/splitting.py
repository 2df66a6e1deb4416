"""Grouped, stratified parts of a pool of images: copies of one image (exact or near,
`hashing.component_ids`) never straddle two parts and every part keeps the class balance
(scikit-learn's StratifiedGroupKFold, shuffled by a seed). ctdist's cross-validation
folds are these parts; a folder without split folders is split into train, valid and
test by them."""

import numpy as np
from sklearn import model_selection

# A pool's split: 10 parts, 7 train, 1 valid, 2 test.
PARTS = {"train": 7, "valid": 1, "test": 2}


class TooFewImagesError(ValueError):
  """A class has fewer groups of copies than there are parts."""


def parts(labels, groups, k: int, seed: int) -> np.ndarray:
  """The part (0..k-1) of each example: grouped, stratified, shuffled by `seed`."""
  labels, groups = np.asarray(labels), np.asarray(groups)
  part_of = np.full(len(labels), -1)
  splitter = model_selection.StratifiedGroupKFold(k, shuffle=True, random_state=seed)
  for i, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
    part_of[held_out] = i
  return part_of


def split_pool(labels, groups, seed: int, class_names) -> list[str]:
  """The split (train, valid or test, `PARTS`) of each example of a pool.

  Raises:
    TooFewImagesError: a class has fewer distinct images (groups of copies) than parts.
  """
  labels, groups = np.asarray(labels), np.asarray(groups)
  k = sum(PARTS.values())
  for c in np.unique(labels):
    distinct = len(np.unique(groups[labels == c]))
    if distinct < k:
      raise TooFewImagesError(
          f"class {class_names[c]!r} has {distinct} distinct images (groups of copies): "
          f"splitting a folder into train, valid and test takes at least {k} a class; "
          "add images, or give train/, valid/ and test/ folders yourself")
  names = [s for s, n in PARTS.items() for _ in range(n)]
  return [names[p] for p in parts(labels, groups, k, seed)]
