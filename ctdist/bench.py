"""Benchmarks that compare side by side, in one process: build (the TFDS build), input,
step, precision, xla, augment (the step with and without augmentation), scaling.

Run: python -m ctdist.bench build|input|step|precision|xla|augment|scaling [--json=PATH]
Each prints a table and the machine it ran on; nothing here asserts a speed.
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import dataclasses
import json
import os
import tempfile

from absl import app
from absl import flags

from ctdist import bench_lib
from ctdist import dataflags
from ctdist import hardware

BENCHMARKS = ("build", "input", "step", "precision", "xla", "augment", "scaling")


def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    raise app.UsageError(f"usage: python -m ctdist.bench {{{'|'.join(BENCHMARKS)}}} [flags]")
  console.setup(flags.FLAGS.verbosity)
  try:
    opts = dataflags.from_flags(bench_lib.BenchOptions)
  except ValueError as e:
    console.fail(e)
  name = argv[1]
  if name == "scaling" and opts.replicas > 1:
    bench_lib.split_cpu(opts.replicas)
  with tempfile.TemporaryDirectory(prefix="ctdist_bench_") as tmp:
    tmp = opts.tmp or tmp
    opts = dataclasses.replace(opts, tmp=tmp,
                               data_dir=opts.data_dir or os.path.join(tmp, "tfds"))
    if name == "build":
      result = bench_lib.bench_build(opts)
    elif name == "input":
      result = bench_lib.bench_input(opts)
    elif name == "step":
      result = bench_lib.bench_step(opts)
    elif name == "precision":
      result = bench_lib.bench_variants(opts, "precision", ["float32", "mixed"])
    elif name == "xla":
      result = bench_lib.bench_variants(opts, "jit_compile", [False, True])
    elif name == "augment":
      result = bench_lib.bench_variants(opts, "augmentation", [False, True])
    else:
      result = bench_lib.bench_scaling(opts)
  report = {"benchmark": name, "machine": hardware.machine(), **result}
  print(bench_lib.render(report))
  if opts.json:
    with open(opts.json, "w") as fh:
      json.dump(report, fh, indent=1)


if __name__ == "__main__":
  dataflags.define_flags(bench_lib.BenchOptions)
  app.run(main)
