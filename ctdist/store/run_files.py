"""The files of a run's folder and the one function that reads its JSON files."""

import json
import os

import tensorflow as tf

from ctdist.store import atomic

OPTIONS = "options.json"
FLAGFILE = "flags.txt"
HISTORY = "history.json"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"
CV_SUMMARY = "cv_summary.json"
FOLDS = "folds.json"
REPORT = "report.html"
CHECKPOINTS = "checkpoints"
SAVED_MODEL = "saved_model"  # numbered versions beneath, as TF Serving reads them
MODEL_CARD = "model_card.md"
LITERT = "litert"  # model_<quantization>.tflite and .json (ctdist.export)
MODEL_CARD_JSON = "model_card.json"
REQUIRED = object()


class RunFileError(ValueError):
  """A run's JSON file that is missing (where required) or unreadable."""


class UnfinishedRunError(FileNotFoundError):
  """A folder without the file a finished run (or cross-validation) leaves."""


def read_json(folder: str, name: str, default=REQUIRED):
  """The JSON file `name` of `folder`; `default` if it is missing (RunFileError without
  one).

  Raises:
    RunFileError: missing without a default, or not JSON; names the file.
  """
  path = os.path.join(folder, name)
  if not tf.io.gfile.exists(path):
    if default is REQUIRED:
      raise RunFileError(f"{path} not found")
    return default
  with tf.io.gfile.GFile(path) as f:
    try:
      return json.load(f)
    except ValueError as e:  # json.JSONDecodeError
      raise RunFileError(f"{path} is not valid JSON: {e}") from e


def read_bytes(folder: str, name: str) -> bytes | None:
  """The bytes of `name` in `folder` (a picture), or None without it."""
  path = os.path.join(folder, name)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def load_history(folder: str) -> list[dict]:
  """history.json: one record per epoch trained (empty before the first)."""
  return read_json(folder, HISTORY, [])


def save_history(folder: str, history: list[dict]) -> None:
  atomic.write_json(os.path.join(folder, HISTORY), history)
