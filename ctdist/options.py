"""A training run's options: one frozen tree, its flags (`python -m ctdist.train`) and
its `options.json` and `flags.txt` (what evaluate and a repeated run read back).

  from ctdist import loop, options, train
  train.run(options.Options(model_dir="runs/a", schedule=loop.Schedule(head_epochs=2)))
  train.run(options.from_flat(model_dir="runs/b", head_epochs=2))  # by flag name
"""

import dataclasses
import json
import os

import tensorflow as tf

from ctdist import augment as augment_lib
from ctdist import data as data_lib
from ctdist import dataflags
from ctdist import loop
from ctdist import strategy as strategy_lib

option = dataflags.option
FILENAME = "options.json"


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a training run is told; flags of the same names fill it."""
  model_dir: str = option(None, "Output and checkpoint folder.", required=True)
  dataset: str = option("tfds_ctscan/kaggle",
                        "TFDS name: tfds_ctscan/kaggle or tfds_ctscan/synthetic.")
  data_dir: str | None = option(None, "TFDS data_dir (local path or gs://...).")
  manual_dir: str | None = option(
      None, "Build the Kaggle dataset from this download first, if not built.")
  subset_file: str | None = option(
      None, "Train and validate on the files this JSON lists (python -m ctdist.cv writes "
      "one per fold) instead of the train and valid splits.")
  strategy: str = option("auto", "auto: TPU, else all GPUs, else one GPU, else CPU.",
                         choices=strategy_lib.STRATEGIES)
  tpu: str = option("local", "TPU address for --strategy=tpu: 'local' on a TPU VM.")
  precision: str = option(
      "auto", "auto: mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU.",
      choices=strategy_lib.PRECISIONS)
  weights: str = option("imagenet", "imagenet, none (random init) or a local .h5 path.")
  image_size: int = option(224, "Input height and width in pixels.")
  cache: str = option(
      "memory", "Keep decoded examples between epochs: memory, disk (files under "
      "--cache_dir; for data larger than memory) or none (decode every epoch).",
      choices=data_lib.CACHES)
  cache_dir: str | None = option(
      None, "Local folder for --cache=disk; default: a temporary one, removed at exit.")
  batch_size: int = option(32, "Global batch; divisible by the replicas.")
  schedule: loop.Schedule = dataflags.group(loop.Schedule)
  class_weight: str = option("balanced", "Loss weights for the imbalanced classes.",
                             choices=("balanced", "none"))
  steps_per_loop: int = option(1, "Train steps per tf.function call (raise on TPU).")
  log_every_steps: int = option(0, "Progress line every N steps (0: off).")
  checkpoint_every_steps: int = option(
      0, "Also checkpoint every N steps inside an epoch (0: per epoch only).")
  seed: int = option(42, "Seed for weights, shuffling and augmentation.")
  deterministic: bool = option(
      False, "TensorFlow op determinism: the same flags on the same machine repeat a run "
      "exactly (slower; see README).")
  jit_compile: bool = option(
      False, "XLA-compile the replica step: augmentation, forward, backward, update.")
  augment: augment_lib.AugmentConfig = dataflags.group(augment_lib.AugmentConfig,
                                                      prefix="augment_")
  eval_split: str = option("test", "Split evaluated after training.")
  calibrate: bool = option(
      False, "After training, fit a softmax temperature on the validation split and store "
      "it in model.keras (see python -m ctdist.calibrate).")
  export: bool = option(True, "Also export a SavedModel for serving.")
  report: bool = option(True, "Write report.html when training ends (python -m "
                        "ctdist.report writes it again).")


def from_flat(**values) -> Options:
  """Options from values named like the flags (head_epochs=2, augment_zoom=0, ...)."""
  return dataflags.from_flat(Options, values)


def save(opts: Options, model_dir: str) -> None:
  """options.json, and flags.txt: `python -m ctdist.train --flagfile=flags.txt` repeats
  the run (add --model_dir=NEW to keep the first)."""
  with tf.io.gfile.GFile(os.path.join(model_dir, FILENAME), "w") as f:
    json.dump(dataflags.to_dict(opts), f, indent=1)
  with tf.io.gfile.GFile(os.path.join(model_dir, "flags.txt"), "w") as f:
    f.write(dataflags.flagfile(opts))


# What a resumed run may change: where things are, how the work is spread and logged.
# Anything else (data, model, schedule, batch, precision, seed, augmentation) would make
# the checkpoint's run a different run.
RESUMABLE = frozenset({
    "model_dir", "data_dir", "manual_dir", "strategy", "tpu", "steps_per_loop",
    "log_every_steps", "checkpoint_every_steps", "jit_compile", "cache", "cache_dir",
    "eval_split", "export", "calibrate", "report"})


class ResumeError(ValueError):
  """A run resumed with options that change what it trains."""


def check_resume(opts: Options) -> None:
  """Raises if `opts.model_dir` holds a checkpoint of a run with other options (those
  outside RESUMABLE), naming each one."""
  checkpoints = os.path.join(opts.model_dir, "checkpoints")
  if (not tf.io.gfile.exists(os.path.join(opts.model_dir, FILENAME))
      or tf.train.latest_checkpoint(checkpoints) is None):
    return
  before, now = dataflags.flat(load(opts.model_dir)), dataflags.flat(opts)
  changed = [f"--{k}={before[k]} -> {now[k]}" for k in now
             if k not in RESUMABLE and before.get(k) != now[k]]
  if changed:
    raise ResumeError(
        f"{opts.model_dir} holds a checkpoint of a run with other options: "
        f"{', '.join(changed)}; resume with its flags (--flagfile={opts.model_dir}/"
        "flags.txt) or train into a new --model_dir")


class NoOptionsError(FileNotFoundError):
  """A run folder without options.json."""


class OptionsFileError(ValueError):
  """An options.json this version cannot read."""


def load(model_dir: str) -> Options:
  """The options a run in `model_dir` was trained with."""
  path = os.path.join(model_dir, FILENAME)
  if not tf.io.gfile.exists(path):
    raise NoOptionsError(f"{path} not found: {model_dir} is not a ctdist run folder (or was "
                         "trained before options.json existed); pass --dataset and --data_dir")
  with tf.io.gfile.GFile(path) as f:
    try:
      return dataflags.from_dict(Options, json.load(f), path)
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
      raise OptionsFileError(f"{path}: {e}") from e


def run_dataset(model_dir: str, dataset: str | None = None, data_dir: str | None = None
                ) -> tuple[str, str | None]:
  """(dataset, data_dir) of the run in `model_dir` (its options.json), each unless given;
  a folder without options.json needs `dataset`.

  Raises:
    NoOptionsError: no options.json and no `dataset`.
  """
  saved = tf.io.gfile.exists(os.path.join(model_dir, FILENAME))
  run = load(model_dir) if saved or dataset is None else None
  return dataset or run.dataset, data_dir or (run.data_dir if run else None)
