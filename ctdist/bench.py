"""Benchmarks that compare side by side, in one process: build (the TFDS build), input,
step, precision, xla, augment (the step with and without augmentation), scaling.

Run: python -m ctdist.bench build|input|step|precision|xla|augment|scaling [--json=PATH]
Each prints a table and the machine it ran on; nothing here asserts a speed.
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import dataclasses
import json
import os
import sys
import tempfile

from absl import app
from absl import flags

from ctdist.benchmarks import input_speed
from ctdist.benchmarks import render
from ctdist.benchmarks import steps
from ctdist.cli import user_errors
from ctdist.config import bench as bench_config
from ctdist.config import flagtree
from ctdist.training import hardware

BENCHMARKS = ("build", "input", "step", "precision", "xla", "augment", "scaling")


def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    raise app.UsageError(f"usage: python -m ctdist.bench {{{'|'.join(BENCHMARKS)}}} [flags]")
  console.setup(flags.FLAGS.verbosity)
  opts = console.options(bench_config.BenchOptions)
  name = argv[1]
  if name == "scaling" and opts.replicas > 1:
    steps.split_cpu(opts.replicas)
  with tempfile.TemporaryDirectory(prefix="ctdist_bench_") as tmp:
    tmp = opts.tmp or tmp
    opts = dataclasses.replace(opts, tmp=tmp, data=dataclasses.replace(
        opts.data, data_dir=opts.data.data_dir or os.path.join(tmp, "tfds")))
    try:
      result = _run(name, opts)
    except user_errors.TRAINING as e:
      console.fail(e)
  report = {"benchmark": name, "machine": hardware.machine(), **result}
  print(render.render(report))
  if opts.json:
    with open(opts.json, "w") as fh:
      json.dump(report, fh, indent=1)
  failed = [r for r in report.get("results", []) if "error" in r]
  if failed:  # the table shows the others; the exit status says the run is incomplete
    print(f"error: {len(failed)} of {len(report['results'])} variant(s) failed (the rows "
          "marked error); rerun with -v 1 for their logs", file=sys.stderr)
    sys.exit(1)


def _run(name: str, opts: bench_config.BenchOptions) -> dict:
  if name == "build":
    return input_speed.bench_build(opts)
  if name == "input":
    return input_speed.bench_input(opts)
  if name == "step":
    return steps.bench_step(opts)
  if name == "precision":
    return steps.bench_variants(opts, "precision", ["float32", "mixed"])
  if name == "xla":
    return steps.bench_variants(opts, "jit_compile", [False, True])
  if name == "augment":
    return steps.bench_variants(opts, "augmentation", [False, True])
  return steps.bench_scaling(opts)


if __name__ == "__main__":
  flagtree.define_flags(bench_config.BenchOptions)
  app.run(main, flags_parser=console.parse_flags)
