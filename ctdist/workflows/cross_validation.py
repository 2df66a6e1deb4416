"""A cross-validation: each fold one resumable training run on its subset of train + valid,
its held-out part scored after training; then the folds' summary and report."""

import dataclasses
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist.config import cv as cv_config
from ctdist.data import builders
from ctdist.data import cv_plan
from ctdist.data import subsets
from ctdist.model import saved
from ctdist.reporting import writer
from ctdist.scoring import baseline
from ctdist.scoring import cv_summary
from ctdist.scoring import evaluation
from ctdist.scoring import predictions
from ctdist.training import strategy as strategy_lib
from ctdist.workflows import training_run


def run_fold(cvo: cv_config.CVOptions, b, plan: dict, index: int,
             strategy: tf.distribute.Strategy, note: str | None = None) -> str:
  """Trains and scores one fold (resumes an interrupted one, skips a finished one) with
  the process's one `strategy` (and the note of its choice); returns its folder. The
  held-out part is scored after training, never before."""
  name = cv_plan.fold_name(plan, index)
  out = os.path.join(cvo.train.model_dir, name)
  if tf.io.gfile.exists(predictions.path(out, cv_plan.HELDOUT)):
    logging.info("%s: done, skipped", name)
    return out
  fit, valid, held = cv_plan.fold_parts(plan, index)
  pool_files = np.asarray(plan["files"])
  subset = lambda part, idx: subsets.Subset(f"{name}_{part}", cv_plan.POOL,
                                            tuple(pool_files[idx]))
  subset_file = os.path.join(out, "subset.json")
  if strategy_lib.is_chief(strategy):  # the other workers read it once it is there
    tf.io.gfile.makedirs(out)
    subsets.write_subsets(subset_file, subset("train", fit), subset("valid", valid))
  strategy_lib.barrier(strategy)
  logging.info("%s: train %d, inner valid %d, held out %d", name, len(fit), len(valid),
               len(held))
  keras.backend.clear_session()
  result = training_run.run(
      dataclasses.replace(cvo.train, model_dir=out, subset_file=subset_file), strategy,
      note)
  if result:  # the chief
    model = saved.load(os.path.join(out, "model.keras"))
    held_out = subsets.Subset(cv_plan.HELDOUT, cv_plan.POOL, tuple(pool_files[held]))
    evaluation.evaluate(model, b, held_out, out)
    if cvo.train.baseline:  # fitted on the fold's training part, as the model was
      scored = baseline.scored(predictions.load(out, cv_plan.HELDOUT), b,
                               subset("train", fit), cvo.train.seed, held_out)
      for name, p in scored.items():
        tf.io.gfile.makedirs(cv_summary.baseline_folder(out, name))
        predictions.save(p, cv_summary.baseline_folder(out, name))
  return out


def run(cvo: cv_config.CVOptions, strategy=None) -> dict | None:
  """Runs every fold (or `cvo.fold` alone); after every fold, the chief aggregates and
  returns the summary (None for one fold, and on the other workers).

  One strategy serves every fold, made first (or `strategy`, tests): a
  MultiWorkerMirroredStrategy must exist before any other TensorFlow op, and only once.
  """
  note = None
  if strategy is None:
    strategy, note = strategy_lib.choose(cvo.train.strategy, cvo.train.tpu)
  chief = strategy_lib.is_chief(strategy)  # the other workers train, nothing more
  b = builders.builder(cvo.train.data.dataset, cvo.train.data.data_dir, cvo.train.manual_dir)
  plan = cv_plan.load_or_make_plan(b, cvo, write=chief)
  total = cvo.folds * cvo.repeats
  if cvo.fold >= total or cvo.fold < -1:
    raise cv_plan.CVError(f"--fold={cvo.fold}; expected -1 (all) or 0 .. {total - 1}")
  if cvo.fold >= 0:
    run_fold(cvo, b, plan, cvo.fold, strategy, note)
    return None
  for index in range(total):
    run_fold(cvo, b, plan, index, strategy, note)
  if not chief:
    return None
  summary = cv_summary.aggregate(cvo.train.model_dir)
  if cvo.train.report:
    writer.write(cvo.train.model_dir, b)
  return summary
