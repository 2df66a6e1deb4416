"""Classifies image files with a trained model.

Run: python -m ctdist.predict --model_dir=runs/demo/model IMAGE [IMAGE ...] [--json]
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import json
import sys

from absl import app
from absl import flags

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.model import inference
from ctdist.model import layers as ctdist_layers


def main(argv):
  console.setup(flags.FLAGS.verbosity)
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more image files")
  o = console.options(commands_config.PredictOptions)
  try:
    model = console.run_model(o.run)
  except user_errors.READING_A_RUN as e:
    console.fail(e)
  results = inference.predict_files(model, paths)
  if o.json:
    print(json.dumps(results, indent=1))
  else:
    print(inference.render(results, ctdist_layers.class_names_of(model)))
  if any("error" in r for r in results):
    sys.exit(1)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.PredictOptions)
  app.run(main, flags_parser=console.parse_flags)
