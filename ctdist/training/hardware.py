"""The machine a run or a benchmark ran on, for its record."""

import os
import platform
import sys


def machine() -> dict:
  """CPU model and cores, accelerators, TensorFlow version."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), cpu)
  except OSError:
    pass
  gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
          for g in tf.config.list_physical_devices("GPU")]
  return {"cpu": cpu, "cpu_cores": os.cpu_count(), "gpus": gpus,
          "tpu": bool(tf.config.list_logical_devices("TPU")),
          "tensorflow": tf.__version__, "python": sys.version.split()[0]}
