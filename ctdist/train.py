"""Trains the ResNet50 chest-CT classifier: head, then fine-tune, on any strategy.

Run: python -m ctdist.train --strategy=mirrored --model_dir=runs/kaggle
     (python -m ctdist.train --helpfull lists every flag)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

from absl import app
from absl import flags

from ctdist.cli import user_errors
from ctdist.config import flagtree
from ctdist.config import training as training_config
from ctdist.data import builders
from ctdist.training import preemption
from ctdist.workflows import training_run


def main(argv):
  del argv
  console.setup(flags.FLAGS.verbosity)
  opts = console.options(training_config.Options)
  try:
    training_run.run(opts)
  except user_errors.TRAINING as e:
    console.fail(e)
  except (preemption.Stopped, builders.BuildStopped) as e:
    console.stopped(e)


if __name__ == "__main__":
  flagtree.define_flags(training_config.Options)
  app.run(main, flags_parser=console.parse_flags)
