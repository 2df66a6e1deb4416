"""A trained model applied to image files: one class and its probabilities per file."""

import keras
import numpy as np
import tensorflow as tf

from ctdist.data import image_files
from ctdist.model import layers as ctdist_layers


def predict_files(model: keras.Model, paths: list[str]) -> list[dict]:
  """Returns one result per path: {file, label, probabilities} or {file, error}.

  Images are decoded by content (any PNG/JPEG, any mode) and resized as in
  training; a bad file gets an error entry and does not stop the others.
  """
  class_names = ctdist_layers.class_names_of(model)
  size = int(model.input_shape[1])
  results = []
  for path, image, error in image_files.read_each(paths, size):
    if error:
      results.append({"file": path, "error": error})
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
