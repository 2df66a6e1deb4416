"""One training run from options to its folder: train (both phases, resumable), save
model.keras and the SavedModel, calibrate if asked, evaluate, write metrics and report.

  from ctdist.config import training
  from ctdist.workflows import training_run
  training_run.run(training.from_flat(model_dir="runs/a", head_epochs=2))
"""

import os
import shutil
import time

from absl import logging
import keras
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.data import builders
from ctdist.data import examples
from ctdist.data import plan as plan_lib
from ctdist.data import records
from ctdist.data import subsets
from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import saved
from ctdist.model import serving
from ctdist.reporting import model_card
from ctdist.reporting import writer
from ctdist.scoring import baseline
from ctdist.scoring import calibration as calibration_lib
from ctdist.scoring import evaluation
from ctdist.scoring import metrics
from ctdist.scoring import plots
from ctdist.scoring import predictions
from ctdist.store import atomic
from ctdist.store import options_file
from ctdist.store import run_files
from ctdist.training import augment
from ctdist.store import faults
from ctdist.training import hardware
from ctdist.training import inputs
from ctdist.training import preemption
from ctdist.training import state
from ctdist.training import strategy as strategy_lib
from ctdist.training import trainer as trainer_lib


def run(opts: training_config.Options, strategy: tf.distribute.Strategy | None = None,
        note: str | None = None) -> dict:
  """Trains, saves and evaluates; returns the metrics written to metrics.json (an empty
  dict on a worker other than the chief).

  Args:
    opts: the options (the chief writes them to options.json and flags.txt).
    strategy: use this strategy instead of creating `opts.strategy` (ctdist.cv's folds
      share one; tests).
    note: with `strategy`, what its choice fell back from (strategy_lib.choose).
  """
  # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
  # `note`: a fallback of --strategy=auto, recorded in metrics.json and the report.
  if strategy is None:
    strategy, note = strategy_lib.choose(opts.strategy, opts.tpu)
  started = time.monotonic()
  keras.utils.set_random_seed(opts.seed)  # Python, NumPy, TensorFlow and Keras seeds
  if opts.deterministic:
    # Fixed seeds alone do not repeat a run: multi-threaded kernels sum in any order.
    tf.config.experimental.enable_op_determinism()
  precision = strategy_lib.resolve_precision(opts.precision, strategy)
  strategy_lib.set_precision(precision)  # once, before anything is built
  chief = strategy_lib.is_chief(strategy)
  options_file.check_resume(opts)  # before options.json is written again
  replicas = strategy.num_replicas_in_sync
  plan_lib.check_batch(opts.batch_size, replicas)  # before a build, which takes long

  b = builders.builder(opts.data.dataset, opts.data.data_dir, opts.manual_dir)
  train_split, valid_split = (subsets.read_subsets(opts.subset_file) if opts.subset_file
                              else ("train", "valid"))
  if opts.subset_file:
    examples.check_subsets(b, train_split, valid_split)
  else:
    for split in (train_split, valid_split):
      builders.check_split(b, split, "the split")
  builders.check_split(b, opts.eval_split, "--eval_split")  # evaluated after training
  train_info = records.split_info(b, train_split)
  pipelines = strategy_lib.input_pipelines(strategy)
  plan = plan_lib.step_plan(opts.batch_size, replicas, pipelines, train_info.num_examples,
                            records.shard_sizes(b, valid_split, pipelines))
  class_weights = inputs.class_weights(b, train_split, opts.class_weight)
  train_input, val_ds = inputs.distributed(strategy, b, opts, plan, train_split, valid_split)
  if chief:
    tf.io.gfile.makedirs(opts.model_dir)
    options_file.save(opts, opts.model_dir)
    logging.info(
        "strategy %s: %d replica(s), %d worker(s); precision %s; global batch %d "
        "(%d per replica); %d steps per epoch, %d validation steps; class weights %s",
        type(strategy).__name__, replicas, plan.input_pipelines, precision, opts.batch_size,
        plan.per_replica_batch, plan.steps_per_epoch, plan.val_steps,
        class_weights and "(" + ", ".join(f"{w:.3f}" for w in class_weights) + ")")

  with strategy.scope():
    model = resnet.build_model(opts.image_size, train_info.class_names, opts.weights,
                               opts.schedule.freeze_batchnorm)
  if chief:
    logging.info("augmentation: %s", augment.describe(opts.augment))
  # A SIGTERM/SIGINT stops after a step with a checkpoint there. Several workers agree on
  # the step (tf.distribute's PreemptionCheckpointHandler); one process (one device,
  # MirroredStrategy, a one-host TPU, where TF's handler does nothing) watches alone.
  watch = (preemption.ClusterWatch(strategy, opts.model_dir)
           if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
           else preemption.Watch().install())
  trainer = trainer_lib.Trainer(strategy, model, opts, plan, train_input, val_ds, chief,
                                strategy_lib.worker_id(strategy), class_weights,
                                loss_scaling=precision == "mixed_float16", watch=watch)
  try:
    history = trainer.run()
  except preemption.Stopped:
    trainer.cleanup()  # a worker's temporary folder (the chief's checkpoint is resumed)
    raise
  finally:
    watch.uninstall()
  logging.info("%s: final weights checksum %s", strategy_lib.worker_id(strategy),
               saved.weights_checksum(model))
  return _finish(opts, strategy, model, b, history, chief, train_split, valid_split,
                 {"strategy": type(strategy).__name__, "replicas": replicas,
                  "workers": plan.input_pipelines, "precision": precision,
                  "global_batch": opts.batch_size, "hardware": hardware.machine(),
                  "train_seconds": time.monotonic() - started,
                  **({"strategy_fallback": note} if note else {})})


def _finish(opts, strategy, model, b, history, chief, train_split, valid_split,
            run_info) -> dict:
  """Saves model.keras and the SavedModel (every worker saves, only the chief's
  copy is kept), then the chief evaluates (beside the trivial baselines fitted on
  `train_split`) and writes metrics, history and plots."""
  out = state.write_dir(opts.model_dir, chief, strategy_lib.worker_id(strategy))
  saved.save(model, os.path.join(out, "model.keras"))
  faults.point("during_export")
  calibration = None
  if chief:
    inference = saved.load(os.path.join(out, "model.keras"))
    if opts.calibrate:
      calibration = calibration_lib.calibrate(inference, b, valid_split, opts.eval_split)
      calibration_lib.write(inference, calibration, out)
      ctdist_layers.set_temperature(model, calibration["temperature"])  # for the export
      logging.info("calibrated (python -m ctdist.calibrate re-fits):\n%s",
                   calibration_lib.render(calibration, opts.eval_split))
  if opts.export:  # every worker (as every worker saves); the chief's carries the temperature
    logging.info("exported %s", serving.export(model, os.path.join(out, run_files.SAVED_MODEL)))
  if not chief:
    shutil.rmtree(out, ignore_errors=True)
    return {}
  started = time.monotonic()
  report = evaluation.evaluate(inference, b, opts.eval_split, out)
  run_info = {**run_info, "evaluate_seconds": time.monotonic() - started}
  result = {"run": run_info, "history_last": history[-1] if history else None,
            opts.eval_split: report}
  if calibration:
    result["calibration"] = calibration
  against = None
  if opts.baseline:
    against = baseline.versus(predictions.load(out, opts.eval_split), b, train_split)
    baseline.write(against, out, opts.eval_split)
    result["baseline"] = {"beats_pixels": against["beats_pixels"],
                          "sentence": against["sentence"]}
  atomic.write_json(os.path.join(out, run_files.METRICS), result)
  plots.training_curves(history, os.path.join(out, "training_curves.png"))
  if opts.report:
    writer.write(out, b)
  logging.info("model card: %s", model_card.write(out, b))
  logging.info("%s accuracy: %s (leak-free %s, %d leaked excluded); outputs in %s",
               opts.eval_split, metrics.with_interval(report["all"], "accuracy"),
               metrics.with_interval(report["leak_free"], "accuracy"),
               report["num_leaked"], out)
  logging.info("%s split, whole and leak-free (python -m ctdist.evaluate re-scores any split):"
               "\n%s", opts.eval_split,
               metrics.render(report, ctdist_layers.class_names_of(model)))
  if against:
    logging.info("against trivial baselines fitted on the training split (--nobaseline: "
                 "off):\n%s", baseline.render(against))
  return result
