"""Grouped, stratified K-fold cross-validation on train + valid, each fold one resumable
training run; out-of-fold predictions, per-fold and ensemble scores on the test split.

Run: python -m ctdist.cv --folds=5 --model_dir=runs/cv [any ctdist.train flag]
     python -m ctdist.cv --folds=5 --fold=3 --model_dir=runs/cv ...   (one fold, one job)
     python -m ctdist.cv aggregate runs/cv                            (combine the folds)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

import sys

from absl import app
from absl import flags

from ctdist.cli import user_errors
from ctdist.config import cv as cv_config
from ctdist.config import flagtree
from ctdist.data import builders
from ctdist.data import cv_plan
from ctdist.data import folds
from ctdist.reporting import writer
from ctdist.scoring import cv_summary
from ctdist.training import preemption
from ctdist.workflows import cross_validation


def main(argv):
  del argv
  console.setup(flags.FLAGS.verbosity)
  cvo = console.options(cv_config.CVOptions)
  try:
    summary = cross_validation.run(cvo)
  except (cv_plan.CVError, folds.FoldCountError, *user_errors.TRAINING) as e:
    console.fail(e)
  # A fold in progress resumes; finished ones are skipped; a stopped build starts again.
  except (preemption.Stopped, builders.BuildStopped) as e:
    console.stopped(e)
  if summary:
    print(cv_summary.render(summary))
  elif cvo.fold >= 0:
    print(f"fold {cvo.fold} done; when every fold is: python -m ctdist.cv aggregate "
          f"{cvo.train.model_dir}")


def main_aggregate(argv):
  console.setup(flags.FLAGS.verbosity)
  if len(argv) != 3:
    raise app.UsageError("usage: python -m ctdist.cv aggregate DIR")
  try:
    summary = cv_summary.aggregate(argv[2])
    report = writer.write(argv[2], writer.builder_of(argv[2]))
  except (cv_plan.CVError, *user_errors.READING_A_RUN) as e:
    console.fail(e)
  print(cv_summary.render(summary))
  print(f"report: {report}")


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "aggregate":
    app.run(main_aggregate, flags_parser=console.parse_flags)
  else:
    flagtree.define_flags(cv_config.CVOptions)
    app.run(main, flags_parser=console.parse_flags)
