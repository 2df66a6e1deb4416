"""Classifies image files with a trained model.

Run: python -m ctdist.predict --model=runs/demo/model.keras IMAGE [IMAGE ...] [--json]
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import json
import sys

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import model as model_lib
from tfds_ctscan import images


def load(path: str) -> keras.Model:
  """Loads a model.keras in Keras safe mode (no arbitrary code)."""
  return keras.saving.load_model(path, safe_mode=True)


# What an unreadable image file raises in `read_input`: the caller names the file and goes on.
READ_ERRORS = (OSError, images.ImageError)


def read_input(path: str, image_size: int) -> np.ndarray:
  """An image file decoded by content (any PNG/JPEG, any mode) and resized as in
  training: image_size x image_size x 3 uint8, the model's input."""
  pixels, _ = images.read(path)
  return data_lib.resize(pixels, image_size).numpy()


def predict_files(model: keras.Model, paths: list[str]) -> list[dict]:
  """Returns one result per path: {file, label, probabilities} or {file, error}.

  Images are decoded by content (any PNG/JPEG, any mode) and resized as in
  training; a bad file gets an error entry and does not stop the others.
  """
  class_names = model_lib.class_names_of(model)
  size = int(model.input_shape[1])
  results = []
  for path in paths:
    try:
      image = read_input(path, size)
    except READ_ERRORS as e:
      results.append({"file": path, "error": str(e)})
      continue
    probs = np.asarray(model(tf.cast(image, tf.float32)[None], training=False))[0]
    results.append({"file": path, "label": class_names[int(probs.argmax())],
                    "probabilities": {n: float(p) for n, p in zip(class_names, probs)}})
  return results


def render(results: list[dict], class_names: list[str]) -> str:
  """A table with whole file and class names: one row per file, one column per class."""
  file_w = max([len("file")] + [len(r["file"]) for r in results])
  label_w = max(len("prediction"), *(len(n) for n in class_names))
  lines = [f"{'file':{file_w}s}  {'prediction':{label_w}s}"
           + "".join(f"  {n:>{max(len(n), 5)}s}" for n in class_names)]
  for r in results:
    if "error" in r:
      lines.append(f"{r['file']:{file_w}s}  ERROR: {r['error']}")
    else:
      lines.append(f"{r['file']:{file_w}s}  {r['label']:{label_w}s}" + "".join(
          f"  {r['probabilities'][n]:{max(len(n), 5)}.3f}" for n in class_names))
  return "\n".join(lines)


def _define_flags():
  flags.DEFINE_string("model", None, "Path of model.keras from ctdist.train.", required=True)
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.")


def main(argv):
  console.setup(flags.FLAGS.verbosity)
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more image files")
  if not tf.io.gfile.exists(flags.FLAGS.model):
    console.fail(FileNotFoundError(
        f"--model={flags.FLAGS.model}: no such file; pass the model.keras written by "
        "ctdist.train, e.g. runs/demo/model/model.keras"))
  model = load(flags.FLAGS.model)
  results = predict_files(model, paths)
  if flags.FLAGS.json:
    print(json.dumps(results, indent=1))
  else:
    print(render(results, model_lib.class_names_of(model)))
  if any("error" in r for r in results):
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
