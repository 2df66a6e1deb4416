"""Trains the ResNet50 chest-CT classifier: head, then fine-tune, on any strategy.

Run: python -m ctdist.train --strategy=mirrored --model_dir=runs/kaggle
     (python -m ctdist.train --helpfull lists every flag)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import atexit
import hashlib
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
from sklearn.utils import class_weight

from ctdist import augment
from ctdist import calibrate as calibrate_lib
from ctdist import dataflags
from ctdist import data as data_lib
from ctdist import evaluate as evaluate_lib
from ctdist import faults
from ctdist import files
from ctdist import hardware
from ctdist import loop
from ctdist import metrics
from ctdist import model as model_lib
from ctdist import options
from ctdist import plots
from ctdist import report as report_lib
from ctdist import strategy as strategy_lib
from tfds_ctscan import layout
from tfds_ctscan import scan


def balanced_weights(counts: np.ndarray) -> tuple[float, ...]:
  """n / (k * n_c) per class: scikit-learn's 'balanced', from the class counts."""
  counts = np.asarray(counts, dtype=np.int64)
  if (counts == 0).any():
    raise ValueError(f"class counts {counts.astype(float).tolist()} include an empty class; "
                     "--class_weight=balanced needs every class in train")
  classes = np.arange(len(counts))
  return tuple(float(w) for w in class_weight.compute_class_weight(
      "balanced", classes=classes, y=np.repeat(classes, counts)))


def weights_checksum(model: keras.Model) -> str:
  """SHA-1 of every weight's bytes: equal on every worker of a synchronous run."""
  h = hashlib.sha1()
  for w in model.get_weights():
    h.update(np.ascontiguousarray(w).tobytes())
  return h.hexdigest()[:16]


def _inputs(strategy, b, opts: options.Options, plan: data_lib.StepPlan, train_split,
            valid_split):
  """Distributed train and validation datasets, one input pipeline per worker."""
  cache_dir = opts.cache_dir
  if opts.cache == "disk" and not cache_dir:  # this process's, removed when it ends
    cache_dir = tempfile.mkdtemp(prefix="ctdist_cache_")
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
  for split in (train_split, valid_split):
    logging.info("%s input: %s, %s", split, "files sharded" if data_lib.files_sharded(
        b, split, plan.input_pipelines) else "examples sharded" if plan.input_pipelines > 1
        else "one pipeline", f"cache {opts.cache}" + (f" in {cache_dir}" if cache_dir else ""))
  def check(n):
    if n != plan.input_pipelines:  # the plan's count must be the strategy's
      raise RuntimeError(f"{type(strategy).__name__} made {n} input pipelines; the step "
                         f"plan assumed {plan.input_pipelines}")

  def make_train_ds(bs, _, n, i):
    check(n)
    count, fingerprint = data_lib.shard_fingerprint(b, train_split, n, i)
    logging.info("%s: train input shard %d of %d: %d examples, fingerprint %s",
                 strategy_lib.worker_id(strategy), i + 1, n, count, fingerprint)
    return data_lib.train_dataset(b, train_split, opts.image_size, bs, opts.seed, n, i,
                                  opts.cache, cache_dir)

  def make_val_ds(bs, r, n, i):
    check(n)
    return data_lib.eval_dataset(b, valid_split, opts.image_size, bs, r, n, i, opts.cache,
                                 cache_dir)

  return (data_lib.distribute(strategy, make_train_ds, opts.batch_size),
          data_lib.distribute(strategy, make_val_ds, opts.batch_size))


def run(opts: options.Options, strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains, saves and evaluates; returns the metrics written to metrics.json.

  Args:
    opts: the options (the chief writes them to options.json and flags.txt).
    strategy: use this strategy instead of creating `opts.strategy` (tests).
  """
  # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
  strategy = strategy or strategy_lib.make_strategy(opts.strategy, opts.tpu)
  started = time.monotonic()
  keras.utils.set_random_seed(opts.seed)  # Python, NumPy, TensorFlow and Keras seeds
  if opts.deterministic:
    # Fixed seeds alone do not repeat a run: multi-threaded kernels sum in any order.
    tf.config.experimental.enable_op_determinism()
  precision = strategy_lib.resolve_precision(opts.precision, strategy)
  strategy_lib.set_precision(precision)
  chief = strategy_lib.is_chief(strategy)
  options.check_resume(opts)  # before options.json is written again
  replicas = strategy.num_replicas_in_sync
  data_lib.check_batch(opts.batch_size, replicas)  # before a build, which takes long

  b = data_lib.builder(opts.dataset, opts.data_dir, opts.manual_dir)
  train_split, valid_split = (data_lib.read_subsets(opts.subset_file) if opts.subset_file
                              else ("train", "valid"))
  if opts.subset_file:
    data_lib.check_subsets(b, train_split, valid_split)
  train_info = data_lib.split_info(b, train_split)
  pipelines = strategy_lib.input_pipelines(strategy)
  plan = data_lib.step_plan(opts.batch_size, replicas, pipelines, train_info.num_examples,
                            data_lib.shard_sizes(b, valid_split, pipelines))
  class_weights = None
  if opts.class_weight == "balanced":
    class_weights = balanced_weights(data_lib.class_counts(b, train_split))
  elif opts.class_weight != "none":
    raise ValueError(f"--class_weight={opts.class_weight!r}; expected balanced or none")
  train_ds, val_ds = _inputs(strategy, b, opts, plan, train_split, valid_split)
  if chief:
    tf.io.gfile.makedirs(opts.model_dir)
    options.save(opts, opts.model_dir)
    logging.info(
        "strategy %s: %d replica(s), %d worker(s); precision %s; global batch %d "
        "(%d per replica); %d steps per epoch, %d validation steps; class weights %s",
        type(strategy).__name__, replicas, plan.input_pipelines, precision, opts.batch_size,
        plan.per_replica_batch, plan.steps_per_epoch, plan.val_steps,
        class_weights and "(" + ", ".join(f"{w:.3f}" for w in class_weights) + ")")

  with strategy.scope():
    model = model_lib.build_model(opts.image_size, train_info.class_names, opts.weights,
                                  opts.schedule.freeze_batchnorm)
  cfg = loop.LoopConfig(
      global_batch=opts.batch_size, steps_per_epoch=plan.steps_per_epoch,
      val_steps=plan.val_steps, schedule=opts.schedule, steps_per_loop=opts.steps_per_loop,
      log_every_steps=opts.log_every_steps,
      class_weights=class_weights, loss_scaling=precision == "mixed_float16",
      checkpoint_every_steps=opts.checkpoint_every_steps, jit_compile=opts.jit_compile,
      augmentation=opts.augment, seed=opts.seed)
  if chief:
    logging.info("augmentation: %s", augment.describe(opts.augment))
  trainer = loop.Trainer(strategy, model, cfg, train_ds, val_ds,
                         opts.model_dir, chief, strategy_lib.worker_id(strategy))
  history = trainer.run()
  logging.info("%s: final weights checksum %s", strategy_lib.worker_id(strategy),
               weights_checksum(model))
  return _finish(opts, strategy, model, b, history, chief, valid_split,
                 {"strategy": type(strategy).__name__, "replicas": replicas,
                  "workers": plan.input_pipelines, "precision": precision,
                  "global_batch": opts.batch_size, "hardware": hardware.machine(),
                  "train_seconds": time.monotonic() - started})


def _finish(opts, strategy, model, b, history, chief, valid_split, run_info) -> dict:
  """Saves model.keras and the SavedModel (every worker saves, only the chief's
  copy is kept), then the chief evaluates and writes metrics, history and plots."""
  out = loop.write_dir(opts.model_dir, chief, strategy_lib.worker_id(strategy))
  files.save_model(model, os.path.join(out, "model.keras"))
  faults.point("during_export")
  if opts.export:
    files.export_saved_model(model, os.path.join(out, "saved_model"))
  if not chief:
    shutil.rmtree(out, ignore_errors=True)
    return {}
  inference = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
  calibration = None
  if opts.calibrate:
    calibration = calibrate_lib.calibrate(inference, b, valid_split, opts.eval_split)
    calibrate_lib.write(inference, calibration, out, opts.export)
    logging.info("calibrated (python -m ctdist.calibrate re-fits):\n%s",
                 calibrate_lib.render(calibration, opts.eval_split))
  started = time.monotonic()
  report = evaluate_lib.evaluate(inference, b, opts.eval_split, out)
  run_info = {**run_info, "evaluate_seconds": time.monotonic() - started}
  result = {"run": run_info, "history_last": history[-1] if history else None,
            opts.eval_split: report}
  if calibration:
    result["calibration"] = calibration
  files.write_json(os.path.join(out, "metrics.json"), result)
  plots.training_curves(history, os.path.join(out, "training_curves.png"))
  if opts.report:
    report_lib.write(out, b)
  logging.info("%s accuracy: %s (leak-free %s, %d leaked excluded); outputs in %s",
               opts.eval_split, metrics.with_interval(report["all"], "accuracy"),
               metrics.with_interval(report["leak_free"], "accuracy"),
               report["num_leaked"], out)
  logging.info("%s split, whole and leak-free (python -m ctdist.evaluate re-scores any split):"
               "\n%s", opts.eval_split, metrics.render(report, model_lib.class_names_of(model)))
  return result


# A user's mistakes: one message and exit status 2, no traceback.
USER_ERRORS = (data_lib.DatasetNotBuiltError, data_lib.BatchSizeError, data_lib.SubsetError,
               model_lib.WeightsError, strategy_lib.StrategyError, layout.LayoutError,
               scan.UnreadableImagesError, options.ResumeError)


def main(argv):
  del argv
  f = flags.FLAGS
  console.setup(f.verbosity)
  try:
    opts = dataflags.from_flags(options.Options, f)
  except ValueError as e:  # a value out of range (the fields' checks name it)
    console.fail(e)
  try:
    run(opts)
  except USER_ERRORS as e:
    console.fail(e)


if __name__ == "__main__":
  dataflags.define_flags(options.Options)
  app.run(main)
