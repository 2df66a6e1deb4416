"""Measurements behind `python -m ctdist.bench`: each returns plain dicts, asserts nothing."""

import contextlib
import dataclasses
import io
import os
import pathlib
import shutil
import statistics
import time

from absl import logging
import keras
import tensorflow as tf

from ctdist import augment
from ctdist import data as data_lib
from ctdist import dataflags
from ctdist import loop
from ctdist import model as model_lib
from ctdist import strategy as strategy_lib

option = dataflags.option


@dataclasses.dataclass(frozen=True)
class BenchOptions:
  """What `python -m ctdist.bench` is told; flags of the same names fill it."""
  dataset: str = option("tfds_ctscan/synthetic", "TFDS dataset for step benchmarks.")
  data_dir: str | None = option(None, "TFDS data_dir; default: one in --tmp.")
  tmp: str | None = option(None, "Scratch folder; default: a new temporary one.")
  folder: str | None = option(
      None, "`build`, `input`: Kaggle-layout folder (containing Data/); default: the synthetic "
      "config exported to --tmp.")
  json: str | None = option(None, "Also write the results as JSON here.")
  image_size: int = option(224, "Input height and width.")
  batch_size: int = option(32, "Global batch.")
  strategy: str = option("auto", "Strategy for step benchmarks.",
                         choices=strategy_lib.STRATEGIES)
  precision: str = option("auto", "Precision for `step` and `scaling`.",
                          choices=strategy_lib.PRECISIONS)
  phases: tuple[str, ...] = option(loop.PHASES, "Phases timed by step benchmarks.")
  finetune_layers: int = option(50, "Layers unfrozen for the fine-tune phase (-1 all).")
  steps: int = option(20, "Timed steps per measurement.")
  warmup: int = option(3, "Untimed steps before each measurement.")
  repeats: int = option(3, "Alternating repetitions; the median is reported.")
  steps_per_loop: int = option(1, "Steps per tf.function call.")
  epochs: int = option(3, "`input`: steady-state epochs timed after the first.")
  replicas: int = option(2, "`scaling`: replicas (logical CPUs when there is no GPU).")
  jit_compile: bool = option(
      False, "`step`/`precision`/`augment`/`scaling`: XLA for the replica step.")
  deterministic: bool = option(
      False, "`step`: TensorFlow op determinism, as ctdist.train --deterministic (run "
      "once with, once without).")

  def __post_init__(self):
    unknown = [p for p in self.phases if p not in loop.PHASES]
    if unknown:
      raise ValueError(f"phases {unknown} unknown; use some of {','.join(loop.PHASES)}")


def split_cpu(n: int) -> None:
  """Splits the first CPU into `n` logical devices; call before TensorFlow starts."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * n)


# ---- input ------------------------------------------------------------------------------
def _notebook_generator(folder: pathlib.Path, image_size: int, batch_size: int):
  """The seed notebook's input on `folder` (a `Data/`): Keras 2 ImageDataGenerator with
  its augmentations."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  gen = tf_keras.preprocessing.image.ImageDataGenerator(
      rescale=1 / 255.0, rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
      zoom_range=0.1, horizontal_flip=True)
  return gen.flow_from_directory(str(folder / "train"),
                                 target_size=(image_size, image_size),
                                 batch_size=batch_size, class_mode="categorical", seed=0)


def _unzip(archive: pathlib.Path, into: str) -> str:
  shutil.unpack_archive(archive, into)
  return into


def _kaggle_folder(opts: BenchOptions) -> pathlib.Path:
  """`Data/` of --folder (any form the builder's manual dir accepts: the zip, its folder,
  a parent of Data/, Data/), or of the synthetic config written to --tmp."""
  from tfds_ctscan import layout  # pylint: disable=g-import-not-at-top
  from tfds_ctscan import synthetic  # pylint: disable=g-import-not-at-top
  folder = opts.folder
  if folder is None:
    folder = os.path.join(opts.tmp, "folder")
    synthetic.write_kaggle_layout(folder, seed=0)
  return layout.kaggle_root(folder, lambda z: _unzip(z, os.path.join(opts.tmp, "unzip")))


def _images_per_sec(batches, steps: int, batch_size: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return steps * batch_size / (time.perf_counter() - start)


def bench_input(opts: BenchOptions) -> dict:
  """ctdist's input pipeline (first epoch, steady state) against ImageDataGenerator."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  folder, epochs = _kaggle_folder(opts), opts.epochs
  b = tfds.builder("tfds_ctscan/kaggle", data_dir=opts.data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(folder)))
  n = b.info.splits["train"].num_examples
  steps = n // opts.batch_size
  it = iter(data_lib.train_dataset(b, "train", opts.image_size, opts.batch_size, seed=0))
  first = _images_per_sec(it, steps, opts.batch_size)
  steady = statistics.median(
      _images_per_sec(it, steps, opts.batch_size) for _ in range(max(1, epochs)))
  baseline = _images_per_sec(_notebook_generator(folder, opts.image_size, opts.batch_size),
                             steps, opts.batch_size)
  return {
      "config": {"folder": str(folder), "train_images": n, "image_size": opts.image_size,
                 "batch_size": opts.batch_size, "steady_epochs": epochs},
      "results": [
          {"name": "ctdist first epoch (TFRecords: decode, resize, fill cache)",
           "images_per_sec": first},
          {"name": "ctdist steady state (from cache)", "images_per_sec": steady},
          {"name": "notebook: ImageDataGenerator.flow_from_directory + augmentation",
           "images_per_sec": baseline}],
      "ratios": {"steady_vs_notebook": steady / baseline, "first_vs_notebook": first / baseline},
      "notes": "ctdist augments inside the train step on the accelerator (timed by `step`); "
               "the notebook's generator augments here, on the CPU."}


# ---- build ------------------------------------------------------------------------------
def bench_build(opts: BenchOptions) -> dict:
  """`tfds build tfds_ctscan` (the kaggle config) on a Kaggle-layout folder: scan, decode,
  hash, flag leaks, encode, write TFRecords. The synthetic files stand in for the real
  ones (same counts and layout)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  folder = _kaggle_folder(opts)
  rates = []
  for i in range(max(1, opts.repeats)):
    b = tfds.builder("tfds_ctscan/kaggle", data_dir=os.path.join(opts.tmp, f"build{i}"))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Dataset ... prepared" lines
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=str(folder)))
    seconds = time.perf_counter() - start
    n = sum(split.num_examples for split in b.info.splits.values())
    rates.append(n / seconds)
  return {"config": {"folder": str(folder), "images": n, "repeats": len(rates),
                     "cpu_threads": os.cpu_count()},
          "results": [{"name": "tfds build tfds_ctscan (kaggle config), median",
                       "images_per_sec": statistics.median(rates)}]}


# ---- train steps ------------------------------------------------------------------------
def _trainer(opts: BenchOptions, strategy, precision: str, jit_compile: bool,
             augmentation: bool):
  keras.backend.clear_session()
  strategy_lib.set_precision(precision)
  b = data_lib.builder(opts.dataset, opts.data_dir)
  info = data_lib.split_info(b, "train")
  pipelines = strategy_lib.input_pipelines(strategy)
  plan = data_lib.step_plan(opts.batch_size, strategy.num_replicas_in_sync, pipelines,
                            info.num_examples, data_lib.shard_sizes(b, "valid", pipelines))
  with strategy.scope():
    model = model_lib.build_model(opts.image_size, info.class_names, "none")
  cfg = loop.LoopConfig(
      global_batch=opts.batch_size, steps_per_epoch=plan.steps_per_epoch,
      val_steps=plan.val_steps, schedule=loop.Schedule(finetune_layers=opts.finetune_layers),
      steps_per_loop=opts.steps_per_loop,
      loss_scaling=precision == "mixed_float16", jit_compile=jit_compile,
      augmentation=augment.AugmentConfig() if augmentation else augment.OFF)
  train_ds = data_lib.distribute(
      strategy, lambda bs, _, n, i: data_lib.train_dataset(
          b, "train", opts.image_size, bs, 0, n, i), opts.batch_size)
  trainer = loop.Trainer(strategy, model, cfg, train_ds, None,
                         os.path.join(opts.tmp, "model"), chief=True)
  for _ in range(cfg.steps_per_epoch):  # fill the cache: time the steady state
    next(trainer.train_iterator)
  const = strategy.distribute_datasets_from_function(
      lambda ctx: data_lib.train_dataset(
          b, "train", opts.image_size, ctx.get_per_replica_batch_size(opts.batch_size), 0,
          ctx.num_input_pipelines, ctx.input_pipeline_id).take(1).cache().repeat())
  return trainer, iter(const)


def _time_steps(trainer, it, opts: BenchOptions) -> float:
  spl = max(1, opts.steps_per_loop)
  trainer.train_steps(it, max(opts.warmup, 1))
  trainer.metrics(reset=False)  # waits for the device
  calls = max(1, opts.steps // spl)
  start = time.perf_counter()
  for _ in range(calls):
    trainer.train_steps(it, spl)
  trainer.metrics(reset=False)
  return calls * spl * opts.batch_size / (time.perf_counter() - start)


def _measure(opts, strategy, precision, jit_compile, with_constant=True,
             augmentation=True) -> list[dict]:
  trainer, const_it = _trainer(opts, strategy, precision, jit_compile, augmentation)
  rows = []
  for phase in opts.phases:
    trainer.enter_phase(phase)
    pipe, const = [], []
    for _ in range(max(1, opts.repeats)):  # alternate, so drift hits both alike
      pipe.append(_time_steps(trainer, trainer.train_iterator, opts))
      if with_constant:
        const.append(_time_steps(trainer, const_it, opts))
    row = {"phase": phase, "precision": precision, "jit_compile": jit_compile,
           "augmentation": augmentation,
           "replicas": strategy.num_replicas_in_sync,
           "pipeline_images_per_sec": statistics.median(pipe)}
    if with_constant:
      row["constant_batch_images_per_sec"] = statistics.median(const)
      row["pipeline_vs_constant"] = row["pipeline_images_per_sec"] / row[
          "constant_batch_images_per_sec"]
      row["input_bound_fraction"] = max(0.0, 1.0 - row["pipeline_vs_constant"])
    rows.append(row)
  return rows


def _config(opts: BenchOptions, strategy) -> dict:
  return {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
          "image_size": opts.image_size, "batch_size": opts.batch_size,
          "steps": opts.steps, "repeats": opts.repeats, "steps_per_loop": opts.steps_per_loop,
          "finetune_layers": opts.finetune_layers, "deterministic": opts.deterministic,
          "weights": "none (same speed as imagenet)"}


def bench_step(opts: BenchOptions) -> dict:
  """The real loop fed by the real pipeline against one constant in-memory batch."""
  strategy = strategy_lib.make_strategy(opts.strategy)
  if opts.deterministic:  # as ctdist.train --deterministic; cannot be undone in-process
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
  precision = strategy_lib.resolve_precision(opts.precision, strategy)
  return {"config": _config(opts, strategy),
          "results": _measure(opts, strategy, precision, opts.jit_compile)}


def bench_variants(opts: BenchOptions, key: str, values: list) -> dict:
  """The pipeline-fed step for each precision, with and without XLA, or with and without
  augmentation (`key` is precision, jit_compile or augmentation). A precision "mixed" is
  the strategy's `mixed_precision`."""
  strategy = strategy_lib.make_strategy(opts.strategy)
  if key == "precision":
    values = [strategy_lib.mixed_precision(strategy) if v == "mixed" else v for v in values]
  results = []
  for value in values:
    precision = value if key == "precision" else strategy_lib.resolve_precision(
        opts.precision, strategy)
    jit = value if key == "jit_compile" else opts.jit_compile
    aug = value if key == "augmentation" else True
    try:
      results += _measure(opts, strategy, precision, jit, with_constant=False,
                          augmentation=aug)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("%s=%s failed: %s", key, value, e)
      results.append({key: value, "error": f"{type(e).__name__}: {str(e)[:300]}"})
  ratios = {}
  for phase in opts.phases:
    rates = [r["pipeline_images_per_sec"] for r in results
             if r.get("phase") == phase and "error" not in r]
    if len(rates) == 2:
      ratios[f"{phase}_{values[1]}_vs_{values[0]}"] = rates[1] / rates[0]
      if key == "augmentation":  # time per image with it, less without, over with it
        ratios[f"{phase}_augmentation_share_of_step"] = 1 - rates[1] / rates[0]
  return {"config": {**_config(opts, strategy), "compared": key,
                     "values": [str(v) for v in values]},
          "results": results, "ratios": ratios}


def bench_scaling(opts: BenchOptions) -> dict:
  """Images/s on 1 replica against `replicas` (per-replica batch held fixed)."""
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))][:opts.replicas]
  results = []
  for strategy in (tf.distribute.OneDeviceStrategy(devices[0]),
                   tf.distribute.MirroredStrategy(devices)):
    scaled = dataclasses.replace(
        opts, batch_size=opts.batch_size * strategy.num_replicas_in_sync)
    precision = strategy_lib.resolve_precision(opts.precision, strategy)
    results += _measure(scaled, strategy, precision, opts.jit_compile, with_constant=False)
  ratios = {}
  for phase in opts.phases:
    one, many = [r["pipeline_images_per_sec"] for r in results if r["phase"] == phase]
    ratios[f"{phase}_speedup"] = many / one
    ratios[f"{phase}_efficiency"] = many / one / len(devices)
  return {"config": {**_config(opts, tf.distribute.MirroredStrategy(devices)),
                     "per_replica_batch": opts.batch_size, "devices": devices},
          "results": results, "ratios": ratios}


def render(report: dict) -> str:
  """A plain-text table of a report."""
  m = report["machine"]
  lines = [f"ctdist.bench {report['benchmark']} on {m['cpu']} ({m['cpu_cores']} cores), "
           f"GPUs {m['gpus'] or 'none'}, TPU {m['tpu']}, TensorFlow {m['tensorflow']}",
           "config: " + ", ".join(f"{k}={v}" for k, v in report["config"].items())]
  for r in report["results"]:
    lines.append("  " + ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
  for k, v in report.get("ratios", {}).items():
    lines.append(f"  {k}: {v:.0%}" if k.endswith("_share_of_step") else f"  {k}: {v:.2f}x")
  if report.get("notes"):
    lines.append(f"note: {report['notes']}")
  return "\n".join(lines)
