"""Exports a trained run for serving (a SavedModel version) or for a device (LiteRT), the
LiteRT file checked against model.keras on a split.

Run: python -m ctdist.export --model_dir=runs/demo/model --format=litert \
       [--quantization=float32|float16|dynamic_range] [--split=test]
     python -m ctdist.export --model_dir=runs/demo/model --format=saved_model
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import os

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.data import builders
from ctdist.model import litert
from ctdist.model import serving
from ctdist.scoring import agreement
from ctdist.store import atomic
from ctdist.store import options_file
from ctdist.store import run_files


def main(argv):
  del argv
  console.setup(flags.FLAGS.verbosity)
  o = console.options(commands_config.ExportOptions)
  try:
    model = console.run_model(o.run)
    if o.format == "litert":
      dataset, data_dir = options_file.run_dataset(o.run.folder, o.data.dataset,
                                                   o.data.data_dir)
      b = builders.builder(dataset, data_dir)
      builders.check_split(b, o.split.split)
  except user_errors.READING_A_RUN as e:
    console.fail(e)
  if o.format == "saved_model":
    print(f"wrote {serving.export(model, os.path.join(o.run.folder, run_files.SAVED_MODEL))}")
    return
  content = litert.convert(model, o.quantization)
  checked = agreement.on_split(model, litert.Runner(content), b, o.split.split,
                               o.batch.batch_size)
  folder = os.path.join(o.run.folder, run_files.LITERT)
  name = os.path.join(folder, f"model_{o.quantization}")
  path, record, interpreter = name + ".tflite", name + ".json", litert.interpreter_name()
  tf.io.gfile.makedirs(folder)
  atomic.write_bytes(path, content)
  atomic.write_json(record, {
      "file": os.path.basename(path), "bytes": len(content), "quantization": o.quantization,
      "interpreter": interpreter, "input": litert.INPUT, "agreement": checked})
  print(f"wrote {path} ({len(content) / 1e6:.1f} MB, {o.quantization})")
  print(agreement.render(checked, f"LiteRT ({interpreter})"))
  logging.info("wrote %s", record)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.ExportOptions)
  app.run(main, flags_parser=console.parse_flags)
