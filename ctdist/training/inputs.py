"""A run's distributed input: the train and validation datasets, one input pipeline per
worker, and the balanced class weights of its training part."""

import atexit
import shutil
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf
from sklearn.utils import class_weight

from ctdist.config import training as training_config
from ctdist.data import examples
from ctdist.data import pipeline
from ctdist.data import plan as plan_lib
from ctdist.data import records
from ctdist.training import strategy as strategy_lib


def balanced_weights(counts: np.ndarray) -> tuple[float, ...]:
  """n / (k * n_c) per class: scikit-learn's 'balanced', from the class counts.

  Raises:
    ValueError: a class without examples, named by its count.
  """
  counts = np.asarray(counts, dtype=np.int64)
  if (counts == 0).any():
    raise ValueError(f"class counts {counts.astype(float).tolist()} include an empty class; "
                     "--class_weight=balanced needs every class in train")
  classes = np.arange(len(counts))
  return tuple(float(w) for w in class_weight.compute_class_weight(
      "balanced", classes=classes, y=np.repeat(classes, counts)))


def class_weights(b, train_split, choice: str) -> tuple[float, ...] | None:
  """The loss weights `--class_weight=choice` asks for (None: every class 1)."""
  if choice == "balanced":
    return balanced_weights(examples.class_counts(b, train_split))
  if choice != "none":
    raise ValueError(f"--class_weight={choice!r}; expected balanced or none")
  return None


def distributed(strategy: tf.distribute.Strategy, b, opts: training_config.Options,
                plan: plan_lib.StepPlan, train_split, valid_split):
  """(train_input, the distributed validation dataset), one input pipeline per worker.

  `train_input(phase, epoch, step)` is the distributed dataset of `phase`'s batches from
  (epoch, step) on (pipeline.phase_batches): the trainer makes one per phase entered and
  on resume. Each shard's examples are decoded and cached once for every phase.
  """
  cache_dir = opts.cache_dir
  if opts.cache == "disk" and not cache_dir:  # this process's, removed when it ends
    cache_dir = tempfile.mkdtemp(prefix="ctdist_cache_")
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
  for split in (train_split, valid_split):
    logging.info("%s input: %s, %s", split, "files sharded" if records.files_sharded(
        b, split, plan.input_pipelines) else "examples sharded" if plan.input_pipelines > 1
        else "one pipeline", f"cache {opts.cache}" + (f" in {cache_dir}" if cache_dir else ""))

  def check(n):
    if n != plan.input_pipelines:  # the plan's count must be the strategy's
      raise RuntimeError(f"{type(strategy).__name__} made {n} input pipelines; the step "
                         f"plan assumed {plan.input_pipelines}")

  shards = {}  # (num_shards, shard) -> (its cached examples, their count)

  def shard(n, i):
    if (n, i) not in shards:
      count, fingerprint = examples.shard_fingerprint(b, train_split, n, i)
      logging.info("%s: train input shard %d of %d: %d examples, fingerprint %s",
                   strategy_lib.worker_id(strategy), i + 1, n, count, fingerprint)
      shards[n, i] = (pipeline.shard_examples(b, train_split, opts.image_size, n, i,
                                              opts.cache, cache_dir), count)
    return shards[n, i]

  def train_input(phase, epoch: int, step: int):
    def make_train_ds(bs, r, n, i):  # a step takes r batches of bs, one per local replica
      check(n)
      ds, count = shard(n, i)
      return pipeline.phase_batches(ds, count, bs, opts.seed, phase.index, phase.epochs,
                                    plan.steps_per_epoch * r, epoch, step * r)
    return plan_lib.distribute(strategy, make_train_ds, opts.batch_size)

  def make_val_ds(bs, r, n, i):
    check(n)
    return pipeline.eval_dataset(b, valid_split, opts.image_size, bs, r, n, i, opts.cache,
                                 cache_dir)

  return train_input, plan_lib.distribute(strategy, make_val_ds, opts.batch_size)
