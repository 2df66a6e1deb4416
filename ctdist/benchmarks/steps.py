"""Train-step speed: the real loop fed by the real pipeline, against a constant batch, per
precision, with and without XLA or augmentation, and on one replica against several."""

import dataclasses
import os
import statistics
import time

from absl import logging
import keras
import tensorflow as tf

from ctdist.config import bench as bench_config
from ctdist.config import training as training_config
from ctdist.data import builders
from ctdist.data import pipeline
from ctdist.data import plan as plan_lib
from ctdist.data import records
from ctdist.model import resnet
from ctdist.training import phases as phases_lib
from ctdist.training import strategy as strategy_lib
from ctdist.training import trainer as trainer_lib


def split_cpu(n: int) -> None:
  """Splits the first CPU into `n` logical devices; call before TensorFlow starts."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * n)


# ---- train steps ------------------------------------------------------------------------
def _trainer(opts: bench_config.BenchOptions, strategy, precision: str, jit_compile: bool,
             augmentation: bool):
  keras.backend.clear_session()
  strategy_lib.set_precision(precision)
  b = builders.builder(opts.data.dataset, opts.data.data_dir)
  info = records.split_info(b, "train")
  pipelines = strategy_lib.input_pipelines(strategy)
  plan = plan_lib.step_plan(opts.batch_size, strategy.num_replicas_in_sync, pipelines,
                            info.num_examples, records.shard_sizes(b, "valid", pipelines))
  with strategy.scope():
    model = resnet.build_model(opts.image_size, info.class_names, "none")
  run_opts = training_config.Options(
      model_dir=os.path.join(opts.tmp, "model"), batch_size=opts.batch_size,
      schedule=training_config.Schedule(finetune_layers=opts.finetune_layers),
      steps_per_loop=opts.steps_per_loop, jit_compile=jit_compile,
      augment=training_config.AugmentConfig() if augmentation else training_config.AUGMENT_OFF)
  train_ds = plan_lib.distribute(
      strategy, lambda bs, _, n, i: pipeline.train_dataset(
          b, "train", opts.image_size, bs, 0, n, i), opts.batch_size)
  trainer = trainer_lib.Trainer(strategy, model, run_opts, plan, None, None, chief=True,
                                loss_scaling=precision == "mixed_float16")
  pipe_it = iter(train_ds)
  for _ in range(plan.steps_per_epoch):  # fill the cache: time the steady state
    next(pipe_it)
  const = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.train_dataset(
          b, "train", opts.image_size, ctx.get_per_replica_batch_size(opts.batch_size), 0,
          ctx.num_input_pipelines, ctx.input_pipeline_id).take(1).cache().repeat())
  return trainer, pipe_it, iter(const)


def _time_steps(trainer, it, opts: bench_config.BenchOptions) -> float:
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
  trainer, pipe_it, const_it = _trainer(opts, strategy, precision, jit_compile, augmentation)
  rows = []
  for phase in opts.phases:
    trainer.enter_phase(phases_lib.named(trainer.phases, phase))
    pipe, const = [], []
    for _ in range(max(1, opts.repeats)):  # alternate, so drift hits both alike
      pipe.append(_time_steps(trainer, pipe_it, opts))
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


def _config(opts: bench_config.BenchOptions, strategy) -> dict:
  return {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
          "image_size": opts.image_size, "batch_size": opts.batch_size,
          "steps": opts.steps, "repeats": opts.repeats, "steps_per_loop": opts.steps_per_loop,
          "finetune_layers": opts.finetune_layers, "deterministic": opts.deterministic,
          "weights": "none (same speed as imagenet)"}


def bench_step(opts: bench_config.BenchOptions) -> dict:
  """The real loop fed by the real pipeline against one constant in-memory batch."""
  strategy = strategy_lib.make_strategy(opts.strategy)
  if opts.deterministic:  # as ctdist.train --deterministic; cannot be undone in-process
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
  precision = strategy_lib.resolve_precision(opts.precision, strategy)
  return {"config": _config(opts, strategy),
          "results": _measure(opts, strategy, precision, opts.jit_compile)}


def bench_variants(opts: bench_config.BenchOptions, key: str, values: list) -> dict:
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


def bench_scaling(opts: bench_config.BenchOptions) -> dict:
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
