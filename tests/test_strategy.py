"""The strategy factory's choices and errors, and the precision policy."""


import pytest
import tensorflow as tf

from ctdist.training import strategy as strategy_lib


GPUS = tf.config.list_logical_devices("GPU")
NO_GPU_HOST = pytest.mark.skipif(bool(GPUS), reason="this host has a GPU: auto, one_device "
                                 "and mirrored pick it (tested by the GPU variants)")
GPU_HOST = pytest.mark.skipif(not GPUS, reason="needs a GPU")


def test_cpu_is_one_cpu_device_on_any_host():
  s = strategy_lib.make_strategy("cpu")
  assert isinstance(s, tf.distribute.OneDeviceStrategy)
  assert "CPU" in s.extended.worker_devices[0].upper()


@NO_GPU_HOST
def test_one_device_and_auto_fall_back_to_the_cpu():
  for name in ("one_device", "auto"):
    s = strategy_lib.make_strategy(name)
    assert isinstance(s, tf.distribute.OneDeviceStrategy), name
    assert "CPU" in s.extended.worker_devices[0].upper()


@GPU_HOST
def test_one_device_and_auto_use_the_gpu():
  assert "GPU" in strategy_lib.make_strategy("one_device").extended.worker_devices[0].upper()
  auto = strategy_lib.make_strategy("auto")
  assert auto.num_replicas_in_sync == len(GPUS)
  assert all("GPU" in d.upper() for d in auto.extended.worker_devices)


@NO_GPU_HOST
def test_mirrored_uses_every_logical_cpu_without_gpu():
  s = strategy_lib.make_strategy("mirrored")
  assert isinstance(s, tf.distribute.MirroredStrategy)
  assert s.num_replicas_in_sync == 2  # conftest splits the CPU in two


@GPU_HOST
def test_mirrored_uses_every_gpu():
  assert strategy_lib.make_strategy("mirrored").num_replicas_in_sync == len(GPUS)


def test_unknown_name_lists_valid_ones():
  with pytest.raises(strategy_lib.StrategyError, match="unknown strategy 'gpu'.*mirrored"):
    strategy_lib.make_strategy("gpu")


def test_multi_worker_needs_tf_config(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(strategy_lib.StrategyError, match="needs TF_CONFIG"):
    strategy_lib.make_strategy("multi_worker")


def test_unreachable_tpu_is_a_clear_error():
  with pytest.raises(strategy_lib.StrategyError, match="no TPU reachable at tpu='local'"):
    strategy_lib.make_strategy("tpu")


def test_auto_precision_per_device():
  cpu = strategy_lib.make_strategy("cpu")
  assert strategy_lib.resolve_precision("auto", cpu) == "float32"
  assert strategy_lib.mixed_precision(cpu) == "mixed_bfloat16"  # bench precision's "mixed"
  assert strategy_lib.resolve_precision("mixed_bfloat16", cpu) == "mixed_bfloat16"
  with pytest.raises(ValueError, match="unknown precision 'fp16'"):
    strategy_lib.resolve_precision("fp16", cpu)


def test_chief_detection(monkeypatch):
  assert strategy_lib.is_chief(strategy_lib.make_strategy("cpu"))

  class Resolver:
    def __init__(self, task_type, task_id, cluster):
      self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
      return tf.train.ClusterSpec(self._cluster)

  class Fake:
    def __init__(self, *args):
      self.cluster_resolver = Resolver(*args)

  workers = {"worker": ["a:1", "b:2"]}
  assert strategy_lib.is_chief(Fake("worker", 0, workers))
  assert not strategy_lib.is_chief(Fake("worker", 1, workers))
  assert not strategy_lib.is_chief(Fake("worker", 0, {**workers, "chief": ["c:3"]}))
  assert strategy_lib.worker_id(Fake("worker", 1, workers)) == "worker-1"
