"""How a global batch spreads over replicas and input pipelines, and how many steps an
epoch and a validation pass take: checked before any work starts."""

import dataclasses
import math

import tensorflow as tf


class BatchSizeError(ValueError):
  """The global batch does not fit the replicas or the data."""


def eval_steps(largest_shard: int, step_batch: int) -> int:
  """Steps that cover the largest input pipeline's examples, `step_batch` a step."""
  return max(1, math.ceil(largest_shard / step_batch))


def check_batch(global_batch: int, replicas: int) -> int:
  """Returns the per-replica batch; raises if the global batch does not divide."""
  if global_batch <= 0 or global_batch % replicas:
    raise BatchSizeError(
        f"global batch {global_batch} is not divisible by {replicas} replicas; "
        f"use a multiple of {replicas}, e.g. --batch_size="
        f"{max(replicas, global_batch // replicas * replicas)}")
  return global_batch // replicas


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """How a global batch spreads over replicas and input pipelines, and how many steps
  an epoch and a validation pass take."""
  global_batch: int
  per_replica_batch: int
  input_pipelines: int  # one per worker (per host on a TPU)
  steps_per_epoch: int  # full global batches of the training split
  val_steps: int  # steps covering every validation example once (the rest padded)


def step_plan(global_batch: int, replicas: int, input_pipelines: int,
              train_examples: int, val_shard_sizes: list[int]) -> StepPlan:
  """The one place these numbers are computed (train, bench, tests). `val_shard_sizes`:
  the validation examples each input pipeline reads (`shard_sizes`).

  Raises:
    BatchSizeError: the batch does not divide over the replicas, or exceeds the split.
  """
  per_replica = check_batch(global_batch, replicas)
  steps_per_epoch = train_examples // global_batch
  if steps_per_epoch == 0:
    raise BatchSizeError(
        f"global batch {global_batch} is larger than the {train_examples} training "
        f"examples; use --batch_size={train_examples} or less")
  return StepPlan(global_batch, per_replica, input_pipelines, steps_per_epoch,
                  eval_steps(max(val_shard_sizes), global_batch // input_pipelines))


def distribute(strategy: tf.distribute.Strategy, make_ds, global_batch: int):
  """Calls `make_ds(per_replica_batch, replicas_per_shard, num_shards, shard)`
  once per input pipeline (one per worker) via `distribute_datasets_from_function`."""
  def fn(ctx: tf.distribute.InputContext):
    return make_ds(ctx.get_per_replica_batch_size(global_batch),
                   ctx.num_replicas_in_sync // ctx.num_input_pipelines,
                   ctx.num_input_pipelines, ctx.input_pipeline_id)
  return strategy.distribute_datasets_from_function(fn)
