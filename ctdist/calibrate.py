"""Temperature scaling of a trained run: fit T on the validation split, store it in
model.keras (and the SavedModel), report calibration before and after.

Run: python -m ctdist.calibrate --model_dir=runs/demo [--fit_split=valid] [--split=test]
     (or train with --calibrate)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import os

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import evaluate as evaluate_lib
from ctdist import files
from ctdist import model as model_lib
from ctdist import options
from ctdist import stats

FILENAME = "calibration.json"


def _scores(labels, probs) -> dict:
  if not len(labels):
    return {"num_examples": 0}
  return {"num_examples": int(len(labels)), "nll": stats.negative_log_likelihood(labels, probs),
          "ece_15_bins": stats.expected_calibration_error(labels, probs),
          "brier": stats.brier_score(labels, probs),
          "accuracy": float((np.asarray(probs).argmax(1) == labels).mean())}


def calibrate(model: keras.Model, b, fit_split: str = "valid", eval_split: str = "test",
              batch_size: int = 32) -> dict:
  """Fits the softmax temperature on `fit_split` and sets it in `model`.

  The fit starts from the uncalibrated model (temperature 1), whatever it held. The
  report holds the temperature and, on the fit split and on `eval_split` (whole and
  leak-free), NLL, ECE, Brier score and accuracy before and after (accuracy never
  changes: a temperature keeps every prediction's class).

  Raises:
    evaluate.ClassMismatchError: the model's classes are not the dataset's.
    ValueError: the fit split is empty.
  """
  evaluate_lib.check_classes(model, b)
  model_lib.set_temperature(model, 1.0)
  fit = evaluate_lib.predict_split(model, b, fit_split, batch_size)
  if not len(fit.labels):
    raise ValueError(f"the {fit_split} split is empty: no examples to fit a temperature on")
  temperature = stats.fit_temperature(fit.labels, fit.probs)
  ev = evaluate_lib.predict_split(model, b, eval_split, batch_size)
  model_lib.set_temperature(model, temperature)

  def before_after(labels, probs):
    return {"before": _scores(labels, probs),
            "after": _scores(labels, stats.scale(probs, temperature))}
  keep = ~ev.leaked
  return {"temperature": temperature, "fit_split": str(fit_split),
          str(fit_split): before_after(fit.labels, fit.probs),
          str(eval_split): {"all": before_after(ev.labels, ev.probs),
                       "leak_free": before_after(ev.labels[keep], ev.probs[keep])}}


def render(report: dict, eval_split: str) -> str:
  """The before/after table of a `calibrate` report."""
  rows = [(report["fit_split"], report[report["fit_split"]]),
          (f"{eval_split} (all)", report[eval_split]["all"]),
          (f"{eval_split} (leak-free)", report[eval_split]["leak_free"])]
  lines = [f"temperature {report['temperature']:.3f} (fitted on {report['fit_split']})",
           f"{'':24s}{'NLL':>16s}{'ECE (15 bins)':>18s}{'Brier':>16s}",
           f"{'':24s}" + "    before  after" * 3]
  for name, d in rows:
    if not d["before"]["num_examples"]:
      continue
    lines.append(f"{name:24s}" + "".join(
        f"    {d['before'][k]:6.3f} {d['after'][k]:6.3f}" for k in ("nll", "ece_15_bins",
                                                                 "brier")))
  return "\n".join(lines)


def write(model: keras.Model, report: dict, model_dir: str, export: bool) -> None:
  """Saves the calibrated model.keras (and SavedModel if `export`) and calibration.json."""
  files.save_model(model, os.path.join(model_dir, "model.keras"))
  if export:
    files.export_saved_model(model, os.path.join(model_dir, "saved_model"))
  files.write_json(os.path.join(model_dir, FILENAME), report)


def _define_flags():
  flags.DEFINE_string("model_dir", None, "Training output folder holding model.keras.",
                      required=True)
  flags.DEFINE_string("fit_split", None, "Split the temperature is fitted on; default: the "
                      "run's validation part (its --subset_file's, for a ctdist.cv fold).")
  flags.DEFINE_string("split", None, "Split reported before/after and re-evaluated; "
                      "default: the run's --eval_split.")
  flags.DEFINE_integer("batch_size", 32, "Prediction batch size.")


def main(argv):
  del argv
  f = flags.FLAGS
  console.setup(f.verbosity)
  model = evaluate_lib.load_run_model(f.model_dir)
  try:
    run = options.load(f.model_dir)
    split = f.split or run.eval_split
    fit_split = f.fit_split or (data_lib.read_subsets(run.subset_file)[1] if run.subset_file
                                else "valid")
    b = data_lib.builder(run.dataset, run.data_dir)
    report = calibrate(model, b, fit_split, split, f.batch_size)
  except (data_lib.DatasetNotBuiltError, evaluate_lib.ClassMismatchError,
          options.NoOptionsError, options.OptionsFileError, ValueError) as e:
    console.fail(e)
  export = tf.io.gfile.exists(os.path.join(f.model_dir, "saved_model"))
  write(model, report, f.model_dir, export)
  # The split's metrics and predictions, now from the calibrated model.
  evaluate_lib.evaluate(model, b, split, f.model_dir, f.batch_size)
  print(render(report, split))
  logging.info("wrote %s, model.keras%s and metrics_%s.json", FILENAME,
               ", saved_model" if export else "", split)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
