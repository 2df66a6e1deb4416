"""One self-contained report.html of a training run or a cross-validation folder: what
ran, the data, training curves, metrics with intervals, confusion matrices, calibration,
and the misclassified test images with their Grad-CAM overlays.

Run: python -m ctdist.report --model_dir=MODEL_DIR   (a ctdist.train --model_dir, or a
     ctdist.cv folder; `python -m ctdist.report MODEL_DIR` works too)
The page embeds its images (data: URIs) and needs no network and no JavaScript.
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

from absl import app
from absl import flags

from ctdist.cli import user_errors
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.reporting import model_card
from ctdist.reporting import writer


def main(argv):
  console.setup(flags.FLAGS.verbosity)
  o = console.options(commands_config.ReportOptions)
  if len(argv) > 2 or (len(argv) == 2 and (o.run.model_dir or o.run.model)):
    raise app.UsageError("usage: python -m ctdist.report --model_dir=MODEL_DIR")
  try:
    folder = argv[1] if len(argv) == 2 else o.run.folder
    b = writer.builder_of(folder, o.data.dataset, o.data.data_dir)
    print(writer.write(folder, b, o.gallery))
    if not writer.is_cv(folder):
      print(model_card.write(folder, b))
  except user_errors.READING_A_RUN as e:
    console.fail(e)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.ReportOptions)
  app.run(main, flags_parser=console.parse_flags)
