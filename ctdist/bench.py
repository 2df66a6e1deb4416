"""Benchmarks that compare side by side, in one process: input, step, precision, xla,
augment (the step with and without augmentation), scaling.

Run: python -m ctdist.bench input|step|precision|xla|augment|scaling [--json=PATH] [flags]
Each prints a table and the machine it ran on; nothing here asserts a speed.
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import json
import os
import platform
import sys
import tempfile

from absl import app
from absl import flags

BENCHMARKS = ("input", "step", "precision", "xla", "augment", "scaling")


def _define_flags():
  flags.DEFINE_string("json", None, "Also write the results as JSON here.")
  flags.DEFINE_string("folder", None, "Kaggle-layout folder (containing Data/) for `input`; "
                      "default: the synthetic config exported to a temporary folder.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir; default: a temporary one.")
  flags.DEFINE_string("dataset", "tfds_ctscan/synthetic", "TFDS dataset for step benchmarks.")
  flags.DEFINE_integer("image_size", 224, "Input height and width.")
  flags.DEFINE_integer("batch_size", 32, "Global batch.")
  flags.DEFINE_string("strategy", "auto", "Strategy for step benchmarks.")
  flags.DEFINE_string("precision", "auto", "Precision for `step` and `scaling`.")
  flags.DEFINE_string("phases", "head,finetune", "Phases timed by step benchmarks.")
  flags.DEFINE_integer("finetune_layers", 50, "Layers unfrozen for the fine-tune phase (-1 all).")
  flags.DEFINE_integer("steps", 20, "Timed steps per measurement.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps before each measurement.")
  flags.DEFINE_integer("repeats", 3, "Alternating repetitions; the median is reported.")
  flags.DEFINE_integer("steps_per_loop", 1, "Steps per tf.function call.")
  flags.DEFINE_integer("epochs", 3, "`input`: steady-state epochs timed after the first.")
  flags.DEFINE_integer("replicas", 2, "`scaling`: replicas (logical CPUs when there is no GPU).")
  flags.DEFINE_bool("jit_compile", False,
                    "`step`/`precision`/`augment`/`scaling`: XLA for the replica step.")
  flags.DEFINE_bool("deterministic", False, "`step`: TensorFlow op determinism, as "
                    "ctdist.train --deterministic (run once with, once without).")


def machine() -> dict:
  """CPU model and cores, accelerators, TensorFlow version."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
          for g in tf.config.list_physical_devices("GPU")]
  return {"cpu": cpu, "cpu_cores": os.cpu_count(), "gpus": gpus,
          "tpu": bool(tf.config.list_logical_devices("TPU")),
          "tensorflow": tf.__version__, "python": sys.version.split()[0]}


def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    raise app.UsageError(f"usage: python -m ctdist.bench {{{'|'.join(BENCHMARKS)}}} [flags]")
  f = flags.FLAGS
  console.setup(f.verbosity)
  name = argv[1]
  if name == "scaling" and f.replicas > 1:
    from ctdist import bench_lib  # pylint: disable=g-import-not-at-top
    bench_lib.split_cpu(f.replicas)
  from ctdist import bench_lib  # pylint: disable=g-import-not-at-top,reimported
  with tempfile.TemporaryDirectory(prefix="ctdist_bench_") as tmp:
    opts = bench_lib.BenchOptions(
        data_dir=f.data_dir or os.path.join(tmp, "tfds"), dataset=f.dataset,
        image_size=f.image_size, batch_size=f.batch_size, strategy=f.strategy,
        precision=f.precision, phases=tuple(f.phases.split(",")),
        finetune_layers=f.finetune_layers, steps=f.steps, warmup=f.warmup,
        repeats=f.repeats, steps_per_loop=f.steps_per_loop, jit_compile=f.jit_compile,
        deterministic=f.deterministic, tmp=tmp)
    if name == "input":
      result = bench_lib.bench_input(opts, f.folder, f.epochs)
    elif name == "step":
      result = bench_lib.bench_step(opts)
    elif name == "precision":
      result = bench_lib.bench_variants(opts, "precision", ["float32", _mixed()])
    elif name == "xla":
      result = bench_lib.bench_variants(opts, "jit_compile", [False, True])
    elif name == "augment":
      result = bench_lib.bench_variants(opts, "augmentation", [False, True])
    else:
      result = bench_lib.bench_scaling(opts, f.replicas)
  report = {"benchmark": name, "machine": machine(), **result}
  print(bench_lib.render(report))
  if f.json:
    with open(f.json, "w") as fh:
      json.dump(report, fh, indent=1)


def _mixed() -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.config.list_logical_devices("TPU"):
    return "mixed_bfloat16"
  return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


if __name__ == "__main__":
  _define_flags()
  app.run(main)
