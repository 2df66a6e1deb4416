"""Paired comparison of two runs on the same examples: McNemar's exact test on right/wrong
and paired-bootstrap intervals of the differences in accuracy and macro F1, whole split
and leak-free.

Run: python -m ctdist.compare RUN_A RUN_B [--split=test] [--json=PATH]
     (each run folder needs predictions_<split>.json: python -m ctdist.evaluate writes it)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist.cli import console  # pylint: disable=g-bad-import-order

from absl import app
from absl import flags

from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.scoring import comparison
from ctdist.scoring import predictions
from ctdist.store import atomic


def main(argv):
  console.setup(flags.FLAGS.verbosity)
  o = console.options(commands_config.CompareOptions)
  if len(argv) != 3:
    raise app.UsageError(f"expected two run folders, got {len(argv) - 1}: "
                         "python -m ctdist.compare RUN_A RUN_B [--split=test]")
  try:
    a, b = (predictions.load(d, o.split.split) for d in argv[1:])
    report = comparison.compare(a, b)
  except (predictions.NoPredictionsError, predictions.PredictionsFileError,
          comparison.NotComparableError) as e:
    console.fail(e)
  print(comparison.render(report, argv[1], argv[2]))
  if o.json:
    atomic.write_json(o.json, report)


if __name__ == "__main__":
  flagtree.define_flags(commands_config.CompareOptions)
  app.run(main, flags_parser=console.parse_flags)
