"""Evaluates a trained model on a split, whole and leak-free, side by side.

Run: python -m ctdist.evaluate --model_dir=runs/demo/model [--split=test]
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import os

from absl import app
from absl import flags
from absl import logging

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.data import builders
from ctdist.model import layers as ctdist_layers
from ctdist.scoring import baseline
from ctdist.scoring import evaluation
from ctdist.scoring import metrics
from ctdist.scoring import predictions
from ctdist.store import options_file


def main(argv):
  del argv
  console.setup(flags.FLAGS.verbosity)
  o = console.options(commands_config.EvaluateOptions)
  try:
    model = console.run_model(o.run)
    # The run's own dataset and data_dir unless given (a run without options.json needs
    # --dataset).
    dataset, data_dir = options_file.run_dataset(o.run.folder, o.data.dataset, o.data.data_dir)
    b = builders.builder(dataset, data_dir)
    builders.check_split(b, o.split.split)
    report = evaluation.evaluate(model, b, o.split.split, o.run.folder, o.batch.batch_size)
  except user_errors.READING_A_RUN as e:
    console.fail(e)
  print(f"{dataset} {o.split.split}: {report['num_leaked']} leaked example(s) excluded "
        "from the leak-free column")
  print(metrics.render(report, ctdist_layers.class_names_of(model)))
  logging.info("wrote %s", os.path.join(o.run.folder, f"metrics_{o.split.split}.json"))
  if o.baseline:
    against = baseline.versus(predictions.load(o.run.folder, o.split.split), b)
    print(baseline.render(against))
    baseline.write(against, o.run.folder, o.split.split)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.EvaluateOptions)
  app.run(main, flags_parser=console.parse_flags)
