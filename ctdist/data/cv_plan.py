"""A cross-validation's plan (folds.json): every pool image's fold in every repeat, copies
kept together, checked against the data on every re-run."""

import os

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ctdist.config import cv as cv_config
from ctdist.data import examples
from ctdist.data import folds as folds_lib
from ctdist.store import atomic
from ctdist.store import run_files
from tfds_ctscan import hashing

POOL = "train+valid"
HELDOUT = "heldout"


class CVError(ValueError):
  """Folds that cannot be made, a folder of another cross-validation, missing folds."""


def pool(b):
  """(file names, labels, copy groups) of train + valid: exact and near copies (the
  builder's thumbnails, `tfds_ctscan.hashing`) share a group."""
  names, labels, thumbs = [], [], []
  for ex in tfds.as_numpy(b.as_dataset(split=POOL, shuffle_files=False)):
    names.append(ex["file_name"].decode())
    labels.append(int(ex["label"]))
    thumbs.append(hashing.perceptual_hash(ex["image"]))
  return np.array(names), np.array(labels), hashing.component_ids(np.stack(thumbs))


def make_plan(names, labels, groups, cvo: cv_config.CVOptions, class_names) -> dict:
  """Every repeat's fold of every pool file (seed = the training seed + repeat)."""
  seed = cvo.train.seed
  return {"dataset": cvo.train.data.dataset, "pool": POOL, "folds": cvo.folds,
          "repeats": cvo.repeats, "seed": seed,
          "inner_parts": cvo.inner_parts, "class_names": list(class_names),
          "files": names.tolist(), "labels": labels.tolist(),
          "groups": groups.tolist(),
          "fold_of": [folds_lib.assign(labels, groups, cvo.folds, seed + r, class_names).tolist()
                      for r in range(cvo.repeats)]}


def load_or_make_plan(b, cvo: cv_config.CVOptions, write: bool = True) -> dict:
  """The folder's folds.json, checked against `cvo` and the data; made on first use (and
  written unless `write` is False: the workers of a cluster make the same plan, the chief
  writes it)."""
  root = cvo.train.model_dir
  path = os.path.join(root, run_files.FOLDS)
  plan = run_files.read_json(root, run_files.FOLDS, None)
  if plan is not None:
    asked = {"dataset": cvo.train.data.dataset, "folds": cvo.folds, "repeats": cvo.repeats,
             "seed": cvo.train.seed, "inner_parts": cvo.inner_parts}
    changed = [f"--{k}={plan.get(k)} -> {v}" for k, v in asked.items() if plan.get(k) != v]
    if changed:
      raise CVError(f"{root} holds a cross-validation with other folds: {', '.join(changed)}; "
                    "use its flags or another --model_dir")
    names, labels = examples.file_names_and_labels(b, POOL)
    if sorted(names.tolist()) != sorted(plan["files"]):
      raise CVError(f"{path} lists other files than {b.info.full_name} {POOL} holds now; "
                    "the dataset was rebuilt: use another --model_dir")
    now = dict(zip(names.tolist(), labels.tolist()))
    class_names = b.info.features["label"].names
    relabelled = [f"{n} ({class_names[was]} -> {class_names[now[n]]})"
                  for n, was in zip(plan["files"], plan["labels"]) if now[n] != was]
    if relabelled:
      files = f"{len(relabelled)} file{'s' * (len(relabelled) > 1)}"
      raise CVError(f"{path} gives {files} another label than {b.info.full_name} {POOL} "
                    f"holds now: {', '.join(relabelled[:5])}"
                    + (", ..." if len(relabelled) > 5 else "")
                    + "; the dataset was rebuilt: use another --model_dir")
    return plan
  names, labels, groups = pool(b)
  plan = make_plan(names, labels, groups, cvo, list(b.info.features["label"].names))
  if not write:
    return plan
  tf.io.gfile.makedirs(root)
  atomic.write_json(path, plan)
  logging.info("%d folds x %d repeat(s) of %d pool images (%d groups of copies) -> %s",
               cvo.folds, cvo.repeats, len(names), len(set(groups.tolist())), path)
  return plan


def fold_name(plan: dict, index: int) -> str:
  r, k = divmod(index, plan["folds"])
  return f"repeat{r}_fold{k}"


def fold_parts(plan: dict, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, inner valid, held-out) pool indices of fold `index`."""
  r, k = divmod(index, plan["folds"])
  fold_of = np.asarray(plan["fold_of"][r])
  held = np.flatnonzero(fold_of == k)
  rest = np.flatnonzero(fold_of != k)
  valid = folds_lib.inner_validation(plan["labels"], plan["groups"], rest,
                                     plan["inner_parts"], plan["seed"] + r, plan["class_names"])
  return np.setdiff1d(rest, valid), valid, held
