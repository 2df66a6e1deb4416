"""A trained model scored on a split: its predictions, and the report whole and leak-free
(metrics with intervals, calibration), with the files ctdist.evaluate writes."""

import hashlib
import os

import keras
import numpy as np
import tensorflow as tf

from ctdist.data import examples
from ctdist.data import pipeline
from ctdist.data import subsets
from ctdist.model import layers as ctdist_layers
from ctdist.scoring import metrics
from ctdist.scoring import plots
from ctdist.scoring import predictions
from ctdist.scoring import stats
from ctdist.store import atomic


class ClassMismatchError(ValueError):
  """The model was trained on other classes than the dataset has."""


def predict_split(model: keras.Model, b, split: "str | subsets.Subset",
                  batch_size: int = 32) -> predictions.Predictions:
  """The model's probabilities on every example of `split`, with labels, leak flags, file
  names and `groups`, which id exact copies alike (the same pixels as the model sees
  them), for grouped intervals."""
  image_size = int(model.input_shape[1])
  ds = pipeline.eval_dataset(b, split, image_size, batch_size)
  # One traced graph for every batch (they are padded to one shape): 2x eager's speed.
  forward = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False))
  labels, probs, leaked, weights, digests = [], [], [], [], []
  for batch in ds.as_numpy_iterator():
    probs.append(forward(batch["image"]).numpy())
    labels.append(batch["label"])
    leaked.append(batch["leaked"])
    weights.append(batch["weight"])
    digests += [hashlib.sha1(image.tobytes()).hexdigest() for image in batch["image"]]
  keep = np.concatenate(weights) > 0
  ids = {}
  groups = np.array([ids.setdefault(d, len(ids)) for d in digests])
  names = examples.file_names(b, split)
  if len(names) != keep.sum():
    raise RuntimeError(f"{split}: {len(names)} file names for {keep.sum()} examples")
  return predictions.Predictions(
      dataset=b.info.full_name, split=str(split),
      class_names=tuple(ctdist_layers.class_names_of(model)),
      temperature=ctdist_layers.temperature_of(model), file_names=names,
      labels=np.concatenate(labels)[keep].astype(np.int64),
      probs=np.concatenate(probs)[keep].astype(np.float64),
      leaked=np.concatenate(leaked)[keep].astype(bool), groups=groups[keep])


def check_classes(model: keras.Model, b) -> list[str]:
  """The model's class names; raises if they differ from the dataset's."""
  class_names = ctdist_layers.class_names_of(model)
  ds_names = list(b.info.features["label"].names)
  if class_names != ds_names:
    raise ClassMismatchError(
        f"model classes {class_names} differ from dataset classes {ds_names}; evaluate "
        "with the dataset the model was trained on (--dataset)")
  return class_names


def evaluate(model: keras.Model, b, split: "str | subsets.Subset", out_dir: str | None = None,
             batch_size: int = 32) -> dict:
  """Computes the report; with `out_dir`, writes metrics_<split>.json,
  predictions_<split>.json (for `ctdist.compare`) and the plots.

  Raises:
    ClassMismatchError: the model's class names differ from the dataset's.
  """
  class_names = check_classes(model, b)
  p = predict_split(model, b, split, batch_size)
  report = metrics.with_leak_free(p.labels, p.probs, p.leaked, class_names, p.groups)
  report["split"] = str(split)
  report["temperature"] = p.temperature
  if out_dir:
    atomic.write_json(os.path.join(out_dir, f"metrics_{split}.json"), report)
    predictions.save(p, out_dir)
    if "confusion_matrix" in report["all"]:
      plots.confusion_matrix(report["all"]["confusion_matrix"], class_names,
                             os.path.join(out_dir, f"confusion_{split}.png"),
                             f"{split} (all {report['all']['num_examples']})")
      plots.reliability_diagram(
          stats.reliability(p.labels, p.probs),
          os.path.join(out_dir, f"reliability_{split}.png"),
          f"{split} (all {report['all']['num_examples']}): ECE "
          f"{report['all']['calibration']['ece_15_bins']:.3f}")
  return report
