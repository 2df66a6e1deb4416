"""Picks the tf.distribute strategy and the mixed-precision policy."""

import json
import os

from absl import logging
import keras
import tensorflow as tf

from ctdist.config import training as training_config


class StrategyError(ValueError):
  """The requested strategy cannot be created here."""


def _tpu_strategy(tpu: str) -> tf.distribute.TPUStrategy:
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    raise StrategyError(
        f"no TPU reachable at tpu={tpu!r} ({type(e).__name__}: {e}). On a Colab or "
        "Cloud TPU VM use --tpu=local; for a TPU node pass its name or "
        "grpc://ADDRESS:8470; without a TPU use --strategy=auto") from e
  return tf.distribute.TPUStrategy(resolver)


def _tpu_present() -> bool:
  """A TPU VM (device files) or a TPU node named in the environment."""
  return bool(os.environ.get("TPU_NAME")) or any(
      os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0"))


def make_strategy(name: str, tpu: str = "local") -> tf.distribute.Strategy:
  """The strategy `choose` picks, without its note."""
  return choose(name, tpu)[0]


def choose(name: str, tpu: str = "local") -> tuple[tf.distribute.Strategy, str | None]:
  """Returns the strategy for `name`, and a note when `auto` could not take the device it
  found (a TPU that did not answer), for the user's terminal and the run's files.

  Args:
    name: one of training_config.STRATEGIES. `auto` takes a TPU if one is reachable, else
      MirroredStrategy over all GPUs if there are several, else one GPU, else
      the CPU. `mirrored` mirrors over all GPUs, or over all logical CPUs on a
      machine without GPUs. `multi_worker` reads the cluster from TF_CONFIG.
    tpu: the TPU address for `tpu` (and `auto`): 'local' on a TPU VM.

  Raises:
    StrategyError: unknown name, no TPU reachable, or no TF_CONFIG.
  """
  # multi_worker and tpu must come before any op initialises the runtime, so the
  # devices are only listed for the other strategies.
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise StrategyError(
          "--strategy=multi_worker needs TF_CONFIG, e.g. "
          + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                        "task": {"type": "worker", "index": 0}})
          + "; launch/local_cluster.py sets it for a cluster on one machine")
    return tf.distribute.MultiWorkerMirroredStrategy(), None
  if name == "tpu":
    return _tpu_strategy(tpu), None
  if name not in training_config.STRATEGIES:
    raise StrategyError(f"unknown strategy {name!r}; expected one of "
                        f"{training_config.STRATEGIES}")
  note = None
  if name == "auto" and _tpu_present():
    try:
      return _tpu_strategy(tpu), None
    except StrategyError as e:
      note = f"--strategy=auto found a TPU it could not use, so it runs on GPU/CPU: {e}"
      logging.warning("%s", note)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    if len(gpus) > 1:
      return tf.distribute.MirroredStrategy(), note
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), note
  if name == "cpu":
    return tf.distribute.OneDeviceStrategy("/cpu:0"), None
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), None
  devices = [d.name for d in gpus] or [  # mirrored
      d.name for d in tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(devices), None


def _on_gpu(strategy: tf.distribute.Strategy) -> bool:
  return any("GPU" in d.upper() for d in strategy.extended.worker_devices)


def mixed_precision(strategy: tf.distribute.Strategy) -> str:
  """The mixed policy the strategy's devices compute fastest in: mixed_float16 on GPU
  (tensor cores, with loss scaling), mixed_bfloat16 on TPU and CPU."""
  return "mixed_float16" if _on_gpu(strategy) else "mixed_bfloat16"


def resolve_precision(precision: str, strategy: tf.distribute.Strategy) -> str:
  """Maps `auto` to the device's `mixed_precision` on TPU and GPU, float32 on CPU
  (mixed precision is no faster there)."""
  if precision not in training_config.PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}; expected one of "
                     f"{training_config.PRECISIONS}")
  if precision != "auto":
    return precision
  if isinstance(strategy, tf.distribute.TPUStrategy) or _on_gpu(strategy):
    return mixed_precision(strategy)
  return "float32"


def set_precision(policy: str) -> None:
  """Sets Keras' global dtype policy; call once, before any layer is built."""
  keras.mixed_precision.set_global_policy(policy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return task_type in ("worker", None) and task_id == 0 and not has_chief


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker of a cluster has called it (one all-reduce of a number), at
  once with one worker: for a file one worker writes and the others then read."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM,
                                      strategy.run(lambda: tf.constant(1.0)), axis=None))()


def input_pipelines(strategy: tf.distribute.Strategy) -> int:
  """Input pipelines `distribute_datasets_from_function` makes: one per worker of the
  cluster (chief included), one per host on a TPU, one otherwise."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return strategy.extended.num_hosts
  resolver = getattr(strategy, "cluster_resolver", None)
  spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
  return max(1, sum(len(spec.get(task, [])) for task in ("chief", "worker")))


def worker_id(strategy: tf.distribute.Strategy) -> str:
  """'worker-1' style name of this task, for logs and temporary directories."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or resolver.task_type is None:
    return "local"
  return f"{resolver.task_type}-{resolver.task_id}"
