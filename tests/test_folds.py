"""Grouped stratified folds on pools built by hand: no group straddles two folds."""

import numpy as np
import pytest

from ctdist.data import folds
from tfds_ctscan import hashing


def _pool():
  """Kaggle-like: 'normal' (class 2) is 32 files of 11 images; others are 1 or 2 copies."""
  labels, groups, g = [], [], 0
  for c, (n, copies) in enumerate([(40, 1), (23, 1), (11, 0), (31, 1)]):
    for i in range(n):
      size = 1 + (i % 2 if copies else 0)  # every other image stored twice
      if c == 2:
        size = [3, 2, 4][i % 3]  # 11 images: 4 x 3 + 4 x 2 + 3 x 4 = 32 files
      labels += [c] * size
      groups += [g] * size
      g += 1
  return np.array(labels), np.array(groups)


def test_no_group_straddles_folds_and_every_fold_keeps_the_classes():
  labels, groups = _pool()
  assert np.bincount(labels)[2] == 32 and len(np.unique(groups[labels == 2])) == 11
  fold_of = folds.assign(labels, groups, 5, seed=0)
  assert sorted(np.unique(fold_of)) == [0, 1, 2, 3, 4]
  for g in np.unique(groups):
    assert len(np.unique(fold_of[groups == g])) == 1, g
  for c in range(4):
    per_fold = np.bincount(fold_of[labels == c], minlength=5)
    # Balanced to within one group's size of an even share.
    assert per_fold.min() >= 1
    assert per_fold.max() - per_fold.min() <= 4 + 1, (c, per_fold)
  np.testing.assert_array_equal(fold_of, folds.assign(labels, groups, 5, seed=0))
  assert (fold_of != folds.assign(labels, groups, 5, seed=1)).any()


def test_too_many_folds_for_a_class_names_the_value_and_the_fix():
  labels = np.array([0] * 10 + [1] * 6)
  groups = np.array(list(range(10)) + [10, 10, 11, 11, 12, 12])  # class 1: 3 images
  with pytest.raises(folds.FoldCountError,
                     match=r"--folds=5 is more than the 3 distinct images \(groups of copies\) "
                           r"of normal: some part would have none; use --folds=3 or fewer"):
    folds.assign(labels, groups, 5, seed=0, class_names=["adeno", "normal"])
  with pytest.raises(folds.FoldCountError, match="--folds=1: needs at least 2 parts"):
    folds.assign(labels, groups, 1, seed=0)


def test_inner_validation_is_a_grouped_part_of_the_training_part():
  labels, groups = _pool()
  fold_of = folds.assign(labels, groups, 5, seed=0)
  train = np.flatnonzero(fold_of != 0)
  valid = folds.inner_validation(labels, groups, train, parts=8, seed=0)
  assert set(valid) < set(train)
  rest = np.setdiff1d(train, valid)
  assert not set(groups[valid]) & set(groups[rest])  # no copy on both sides
  assert len(valid) == pytest.approx(len(train) / 8, abs=6)
  assert set(labels[valid]) == {0, 1, 2, 3}
  # Class "b" (19 images in this training part) is the first short of 20: named, not "1".
  with pytest.raises(folds.FoldCountError, match=r"--inner_parts=20 is more than the 19 "
                     r"distinct images \(groups of copies\) of b: .* use --inner_parts=19"):
    folds.inner_validation(labels, groups, train, 20, 0, ["a", "b", "normal", "c"])


def test_copies_linked_by_a_chain_of_near_copies_share_one_id():
  # Thumbnails as hashes: a-b differ by 1.0, b-c by 1.0, a-c by 2.0 (> 1.6), d far.
  a = np.full(256, 100, np.uint8)
  b, c, d = a + 1, a + 2, a + 50
  ids = hashing.component_ids(np.stack([a, b, c, d, a]))
  assert ids[0] == ids[1] == ids[2] == ids[4] and ids[3] != ids[0]
