"""Trains the ResNet50 chest-CT classifier: head, then fine-tune, on any strategy.

Run: python -m ctdist.train --strategy=mirrored --model_dir=runs/kaggle
     (python -m ctdist.train --helpfull lists every flag)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import dataclasses
import hashlib
import os
import shutil
import tempfile

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist import augment
from ctdist import data as data_lib
from ctdist import evaluate as evaluate_lib
from ctdist import faults
from ctdist import files
from ctdist import loop
from ctdist import metrics
from ctdist import model as model_lib
from ctdist import plots
from ctdist import strategy as strategy_lib
from tfds_ctscan import layout
from tfds_ctscan import scan


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """The resolved training options (the flags, as plain values)."""
  model_dir: str
  dataset: str = "tfds_ctscan/kaggle"
  data_dir: str | None = None
  manual_dir: str | None = None
  strategy: str = "auto"
  tpu: str = "local"
  precision: str = "auto"
  weights: str = "imagenet"
  image_size: int = 224
  batch_size: int = 32
  schedule: loop.Schedule = loop.Schedule()
  class_weight: str = "balanced"
  steps_per_loop: int = 1
  log_every_steps: int = 0
  checkpoint_every_steps: int = 0
  seed: int = 42
  deterministic: bool = False
  jit_compile: bool = False
  augmentation: augment.AugmentConfig = augment.AugmentConfig()
  eval_split: str = "test"
  export: bool = True


_SCHEDULE_FIELDS = {f.name for f in dataclasses.fields(loop.Schedule)}


def make_options(**values) -> TrainOptions:
  """TrainOptions from flat values named like the flags (head_epochs=..., ...)."""
  schedule = {k: values.pop(k) for k in list(values) if k in _SCHEDULE_FIELDS}
  return TrainOptions(schedule=loop.Schedule(**schedule), **values)


def balanced_weights(counts: np.ndarray) -> tuple[float, ...]:
  """n / (k * n_c) per class, as scikit-learn's 'balanced'."""
  counts = np.asarray(counts, dtype=np.float64)
  if (counts == 0).any():
    raise ValueError(f"class counts {counts.tolist()} include an empty class; "
                     "--class_weight=balanced needs every class in train")
  return tuple(float(w) for w in counts.sum() / (len(counts) * counts))


def weights_checksum(model: keras.Model) -> str:
  """SHA-1 of every weight's bytes: equal on every worker of a synchronous run."""
  h = hashlib.sha1()
  for w in model.get_weights():
    h.update(np.ascontiguousarray(w).tobytes())
  return h.hexdigest()[:16]


def _inputs(strategy, b, opts: TrainOptions):
  """Distributed train and validation datasets, and the number of input pipelines."""
  def make_train_ds(bs, _, n, i):
    count, fingerprint = data_lib.shard_fingerprint(b, "train", n, i)
    logging.info("%s: train input shard %d of %d: %d examples, fingerprint %s",
                 strategy_lib.worker_id(strategy), i + 1, n, count, fingerprint)
    return data_lib.train_dataset(b, "train", opts.image_size, bs, opts.seed, n, i)

  train_ds = data_lib.distribute(strategy, make_train_ds, opts.batch_size)
  pipelines = []  # distribute() calls the function at once, on every worker

  def make_val_ds(bs, r, n, i):
    pipelines.append(n)
    return data_lib.eval_dataset(b, "valid", opts.image_size, bs, r, n, i)

  val_ds = data_lib.distribute(strategy, make_val_ds, opts.batch_size)
  return train_ds, val_ds, pipelines[0]


def run(opts: TrainOptions, strategy: tf.distribute.Strategy | None = None,
        flagfile: str | None = None) -> dict:
  """Trains, saves and evaluates; returns the metrics written to metrics.json.

  Args:
    opts: the options.
    strategy: use this strategy instead of creating `opts.strategy` (tests).
    flagfile: the resolved flags, written to model_dir/flags.txt by the chief.
  """
  # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
  strategy = strategy or strategy_lib.make_strategy(opts.strategy, opts.tpu)
  keras.utils.set_random_seed(opts.seed)  # Python, NumPy, TensorFlow and Keras seeds
  if opts.deterministic:
    # Fixed seeds alone do not repeat a run: multi-threaded kernels sum in any order.
    tf.config.experimental.enable_op_determinism()
  precision = strategy_lib.resolve_precision(opts.precision, strategy)
  strategy_lib.set_precision(precision)
  chief = strategy_lib.is_chief(strategy)
  replicas = strategy.num_replicas_in_sync
  per_replica = data_lib.check_batch(opts.batch_size, replicas)

  b = data_lib.builder(opts.dataset, opts.data_dir, opts.manual_dir)
  train_info = data_lib.split_info(b, "train")
  val_info = data_lib.split_info(b, "valid")
  steps_per_epoch = train_info.num_examples // opts.batch_size
  if steps_per_epoch == 0:
    raise data_lib.BatchSizeError(
        f"global batch {opts.batch_size} is larger than the {train_info.num_examples} "
        f"training examples of {opts.dataset}; use --batch_size={train_info.num_examples} "
        "or less")
  class_weights = None
  if opts.class_weight == "balanced":
    class_weights = balanced_weights(data_lib.class_counts(b, "train"))
  elif opts.class_weight != "none":
    raise ValueError(f"--class_weight={opts.class_weight!r}; expected balanced or none")
  train_ds, val_ds, num_workers = _inputs(strategy, b, opts)
  val_steps = data_lib.eval_steps(val_info.num_examples,
                                  opts.batch_size // num_workers, num_workers)
  if chief:
    tf.io.gfile.makedirs(opts.model_dir)
    if flagfile:
      with tf.io.gfile.GFile(os.path.join(opts.model_dir, "flags.txt"), "w") as fh:
        fh.write(flagfile)
    logging.info(
        "strategy %s: %d replica(s), %d worker(s); precision %s; global batch %d "
        "(%d per replica); %d steps per epoch, %d validation steps; class weights %s",
        type(strategy).__name__, replicas, num_workers, precision, opts.batch_size,
        per_replica, steps_per_epoch, val_steps,
        class_weights and "(" + ", ".join(f"{w:.3f}" for w in class_weights) + ")")

  with strategy.scope():
    model = model_lib.build_model(opts.image_size, train_info.class_names, opts.weights,
                                  opts.schedule.freeze_batchnorm)
  cfg = loop.LoopConfig(
      global_batch=opts.batch_size, steps_per_epoch=steps_per_epoch,
      val_steps=val_steps, schedule=opts.schedule, steps_per_loop=opts.steps_per_loop, log_every_steps=opts.log_every_steps,
      class_weights=class_weights, loss_scaling=precision == "mixed_float16",
      checkpoint_every_steps=opts.checkpoint_every_steps, jit_compile=opts.jit_compile,
      augmentation=opts.augmentation, seed=opts.seed)
  if chief:
    logging.info("augmentation: %s", augment.describe(opts.augmentation))
  trainer = loop.Trainer(strategy, model, cfg, train_ds, val_ds,
                         opts.model_dir, chief, strategy_lib.worker_id(strategy))
  history = trainer.run()
  logging.info("%s: final weights checksum %s", strategy_lib.worker_id(strategy),
               weights_checksum(model))
  return _finish(opts, strategy, model, b, history, chief,
                 {"strategy": type(strategy).__name__, "replicas": replicas,
                  "workers": num_workers, "precision": precision,
                  "global_batch": opts.batch_size})


def _finish(opts, strategy, model, b, history, chief, run_info) -> dict:
  """Saves model.keras and the SavedModel (every worker saves, only the chief's
  copy is kept), then the chief evaluates and writes metrics, history and plots."""
  out = opts.model_dir if chief else tempfile.mkdtemp(
      prefix=f"ctdist_{strategy_lib.worker_id(strategy)}_out_")
  files.save_model(model, os.path.join(out, "model.keras"))
  faults.point("during_export")
  if opts.export:
    files.export_saved_model(model, os.path.join(out, "saved_model"))
  if not chief:
    shutil.rmtree(out, ignore_errors=True)
    return {}
  inference = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
  report = evaluate_lib.evaluate(inference, b, opts.eval_split, out)
  result = {"run": run_info, "history_last": history[-1] if history else None,
            opts.eval_split: report}
  files.write_json(os.path.join(out, "metrics.json"), result)
  plots.training_curves(history, os.path.join(out, "training_curves.png"))
  logging.info("%s accuracy: %.3f (leak-free %.3f, %d leaked excluded); outputs in %s",
               opts.eval_split, report["all"].get("accuracy", float("nan")),
               report["leak_free"].get("accuracy", float("nan")),
               report["num_leaked"], out)
  logging.info("%s split, whole and leak-free (python -m ctdist.evaluate re-scores any split):"
               "\n%s", opts.eval_split, metrics.render(report, model_lib.class_names_of(model)))
  return result


def _define_flags():
  d = TrainOptions(model_dir="")
  a, sch = d.augmentation, d.schedule
  flags.DEFINE_enum("strategy", d.strategy, strategy_lib.STRATEGIES,
                    "auto: TPU, else all GPUs, else one GPU, else CPU.")
  flags.DEFINE_string("tpu", d.tpu, "TPU address for --strategy=tpu: 'local' on a TPU VM.")
  flags.DEFINE_enum("precision", d.precision, strategy_lib.PRECISIONS,
                    "auto: mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU.")
  flags.DEFINE_string("dataset", d.dataset, "TFDS name: tfds_ctscan/kaggle or tfds_ctscan/synthetic.")
  flags.DEFINE_string("data_dir", d.data_dir, "TFDS data_dir (local path or gs://...).")
  flags.DEFINE_string("manual_dir", d.manual_dir,
                      "Build the Kaggle dataset from this download first, if not built.")
  flags.DEFINE_string("model_dir", None, "Output and checkpoint folder.", required=True)
  flags.DEFINE_string("weights", d.weights, "imagenet, none (random init) or a local .h5 path.")
  flags.DEFINE_integer("image_size", d.image_size, "Input height and width in pixels.")
  flags.DEFINE_integer("batch_size", d.batch_size, "Global batch; divisible by the replicas.")
  flags.DEFINE_integer("head_epochs", sch.head_epochs, "Phase 1 epochs (base frozen).")
  flags.DEFINE_float("head_lr", sch.head_lr, "Phase 1 Adam learning rate.")
  flags.DEFINE_integer("finetune_epochs", sch.finetune_epochs, "Phase 2 epochs.")
  flags.DEFINE_float("finetune_lr", sch.finetune_lr, "Phase 2 Adam learning rate.")
  flags.DEFINE_integer("finetune_layers", sch.finetune_layers,
                       "Top base layers unfrozen in phase 2 (-1: all); BatchNorm stays frozen.")
  flags.DEFINE_bool("freeze_batchnorm", sch.freeze_batchnorm,
                    "Keep BatchNorm frozen in inference mode; --nofreeze_batchnorm only "
                    "to train from scratch with --weights=none.")
  flags.DEFINE_float("warmup_epochs", sch.warmup_epochs,
                     "Both phases: linear learning-rate warm-up from 0 over this many epochs.")
  flags.DEFINE_enum("lr_schedule", sch.lr_schedule, loop.LR_SCHEDULES,
                    "Both phases, after the warm-up: constant, or cosine decay to 0.")
  flags.DEFINE_float("weight_decay", sch.weight_decay,
                     "Decoupled weight decay (AdamW) if > 0; not on biases and BatchNorm.")
  flags.DEFINE_float("label_smoothing", sch.label_smoothing, "Label smoothing of the loss.")
  flags.DEFINE_float("clip_norm", sch.clip_norm, "Clip gradients to this global norm (0: off).")
  flags.DEFINE_integer("patience", sch.patience, "Early-stopping patience in epochs (val loss).")
  flags.DEFINE_enum("class_weight", d.class_weight, ["balanced", "none"],
                    "Loss weights for the imbalanced classes.")
  flags.DEFINE_integer("steps_per_loop", d.steps_per_loop,
                       "Train steps per tf.function call (raise on TPU).")
  flags.DEFINE_integer("log_every_steps", d.log_every_steps, "Progress line every N steps (0: off).")
  flags.DEFINE_integer("checkpoint_every_steps", d.checkpoint_every_steps,
                       "Also checkpoint every N steps inside an epoch (0: per epoch only).")
  flags.DEFINE_integer("seed", d.seed, "Seed for weights, shuffling and augmentation.")
  flags.DEFINE_bool("deterministic", d.deterministic,
                    "TensorFlow op determinism: the same flags on the same machine repeat "
                    "a run exactly (slower; see README).")
  flags.DEFINE_bool("jit_compile", d.jit_compile,
                    "XLA-compile the replica step: augmentation, forward, backward, update.")
  flags.DEFINE_float("augment_rotation", a.rotation_deg, "Max rotation in degrees (0: off).")
  flags.DEFINE_float("augment_zoom", a.zoom, "Max zoom fraction (0: off).")
  flags.DEFINE_float("augment_shift", a.shift, "Max shift fraction (0: off).")
  flags.DEFINE_float("augment_brightness", a.brightness, "Max brightness change (0: off).")
  flags.DEFINE_bool("augment_flip", a.flip, "Random horizontal flips.")
  flags.DEFINE_string("eval_split", d.eval_split, "Split evaluated after training.")
  flags.DEFINE_bool("export", d.export, "Also export a SavedModel for serving.")


# A user's mistakes: one message and exit status 2, no traceback.
USER_ERRORS = (data_lib.DatasetNotBuiltError, data_lib.BatchSizeError, model_lib.WeightsError,
               strategy_lib.StrategyError, layout.LayoutError, scan.UnreadableImagesError)


FLAG_NAMES = ("strategy", "tpu", "precision", "dataset", "data_dir", "manual_dir",
              "model_dir", "weights", "image_size", "batch_size", "head_epochs", "head_lr",
              "finetune_epochs", "finetune_lr", "finetune_layers", "freeze_batchnorm", "patience",
              "warmup_epochs", "lr_schedule", "weight_decay", "label_smoothing", "clip_norm",
              "class_weight", "steps_per_loop", "log_every_steps",
              "checkpoint_every_steps", "seed", "deterministic", "jit_compile", "augment_rotation", "augment_zoom",
              "augment_shift", "augment_brightness", "augment_flip", "eval_split", "export")


def options_from_flags(f) -> TrainOptions:
  aug = augment.AugmentConfig(f.augment_rotation, f.augment_zoom, f.augment_shift,
                              f.augment_brightness, f.augment_flip)
  values = {n: f[n].value for n in FLAG_NAMES if not n.startswith("augment_")}
  return make_options(augmentation=aug, **values)


def main(argv):
  del argv
  f = flags.FLAGS
  console.setup(f.verbosity)
  flagfile = "".join(f[n].serialize() + "\n" for n in FLAG_NAMES if f[n].value is not None)
  try:
    run(options_from_flags(f), flagfile=flagfile)
  except USER_ERRORS as e:
    console.fail(e)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
