"""Temperature scaling of a trained model: fit T on the validation split, set it in the
model, and report calibration before and after."""

import os

import keras
import numpy as np

from ctdist.model import layers as ctdist_layers
from ctdist.model import saved
from ctdist.scoring import evaluation
from ctdist.scoring import stats
from ctdist.store import atomic
from ctdist.store import run_files


class SameSplitError(ValueError):
  """The temperature would be scored on the split it is fitted on."""


class EmptySplitError(ValueError):
  """A split with no example to fit a temperature on."""


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
    evaluation.ClassMismatchError: the model's classes are not the dataset's.
    EmptySplitError: the fit split is empty.
  """
  evaluation.check_classes(model, b)
  ctdist_layers.set_temperature(model, 1.0)
  fit = evaluation.predict_split(model, b, fit_split, batch_size)
  if not len(fit.labels):
    raise EmptySplitError(f"the {fit_split} split is empty: no examples to fit a temperature on")
  temperature = stats.fit_temperature(fit.labels, fit.probs)
  ev = evaluation.predict_split(model, b, eval_split, batch_size)
  ctdist_layers.set_temperature(model, temperature)

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


def write(model: keras.Model, report: dict, model_dir: str) -> None:
  """Saves the calibrated model.keras and calibration.json (the SavedModel: `serving`)."""
  saved.save(model, os.path.join(model_dir, "model.keras"))
  atomic.write_json(os.path.join(model_dir, run_files.CALIBRATION), report)
