"""Temperature scaling of a trained run: fit T on the validation split, store it in
model.keras (and the SavedModel), report calibration before and after.

Run: python -m ctdist.calibrate --model_dir=runs/demo/model [--fit_split=valid] [--split=test]
     (or train with --calibrate)
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
from ctdist.data import subsets
from ctdist.model import serving
from ctdist.scoring import calibration
from ctdist.scoring import evaluation
from ctdist.store import options_file
from ctdist.store import run_files


def main(argv):
  del argv
  console.setup(flags.FLAGS.verbosity)
  o = console.options(commands_config.CalibrateOptions)
  try:
    model_dir = o.run.folder
    model = console.run_model(o.run)
    run = options_file.load(model_dir)
    split = o.split.split or run.eval_split
    fit_split = o.fit_split or (subsets.read_subsets(run.subset_file)[1] if run.subset_file
                                else "valid")
    b = builders.builder(run.data.dataset, run.data.data_dir)
    builders.check_split(b, split)
    if isinstance(fit_split, str):  # a subset file's valid part is a Subset
      builders.check_split(b, fit_split, "--fit_split")
    if str(fit_split) == split:
      raise calibration.SameSplitError(
          f"--fit_split={fit_split} and --split={split}: a temperature scored on the images "
          "it was fitted on says nothing of new ones; score another split (e.g. --split=test)")
    report = calibration.calibrate(model, b, fit_split, split, o.batch.batch_size)
  except (*user_errors.READING_A_RUN, subsets.SubsetError, calibration.EmptySplitError,
          calibration.SameSplitError) as e:
    console.fail(e)
  calibration.write(model, report, model_dir)
  exported = None
  if tf.io.gfile.exists(os.path.join(model_dir, run_files.SAVED_MODEL)):
    exported = serving.export(model, os.path.join(model_dir, run_files.SAVED_MODEL))
  # The split's metrics and predictions, now from the calibrated model.
  evaluation.evaluate(model, b, split, model_dir, o.batch.batch_size)
  print(calibration.render(report, split))
  logging.info("wrote %s, model.keras%s and metrics_%s.json", run_files.CALIBRATION,
               f", {exported}" if exported else "", split)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.CalibrateOptions)
  app.run(main, flags_parser=console.parse_flags)
