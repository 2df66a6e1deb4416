"""Evaluates a trained model on a split, whole and leak-free, side by side.

Run: python -m ctdist.evaluate --model_dir=runs/demo [--split=test]
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import hashlib
import os

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import files
from ctdist import metrics
from ctdist import model as model_lib
from ctdist import options
from ctdist import plots
from ctdist import predictions
from ctdist import stats


class ClassMismatchError(ValueError):
  """The model was trained on other classes than the dataset has."""


def predict_split(model: keras.Model, b, split: "str | data_lib.Subset",
                  batch_size: int = 32) -> predictions.Predictions:
  """The model's probabilities on every example of `split`, with labels, leak flags, file
  names and `groups`, which id exact copies alike (the same pixels as the model sees
  them), for grouped intervals."""
  image_size = int(model.input_shape[1])
  ds = data_lib.eval_dataset(b, split, image_size, batch_size)
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
  names = data_lib.file_names(b, split)
  if len(names) != keep.sum():
    raise RuntimeError(f"{split}: {len(names)} file names for {keep.sum()} examples")
  return predictions.Predictions(
      dataset=b.info.full_name, split=str(split),
      class_names=tuple(model_lib.class_names_of(model)),
      temperature=model_lib.temperature_of(model), file_names=names,
      labels=np.concatenate(labels)[keep].astype(np.int64),
      probs=np.concatenate(probs)[keep].astype(np.float64),
      leaked=np.concatenate(leaked)[keep].astype(bool), groups=groups[keep])


def check_classes(model: keras.Model, b) -> list[str]:
  """The model's class names; raises if they differ from the dataset's."""
  class_names = model_lib.class_names_of(model)
  ds_names = list(b.info.features["label"].names)
  if class_names != ds_names:
    raise ClassMismatchError(
        f"model classes {class_names} differ from dataset classes {ds_names}; evaluate "
        "with the dataset the model was trained on (--dataset)")
  return class_names


def evaluate(model: keras.Model, b, split: "str | data_lib.Subset", out_dir: str | None = None,
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
    files.write_json(os.path.join(out_dir, f"metrics_{split}.json"), report)
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


def load_run_model(model_dir: str) -> keras.Model:
  """model_dir's model.keras (safe mode); a missing one ends the program with one line."""
  model_path = os.path.join(model_dir, "model.keras")
  if not tf.io.gfile.exists(model_path):
    console.fail(FileNotFoundError(
        f"{model_path} not found; train first with python -m ctdist.train"))
  return keras.saving.load_model(model_path, safe_mode=True)


def _define_flags():
  flags.DEFINE_string("model_dir", None, "Training output folder holding model.keras.",
                      required=True)
  flags.DEFINE_string("split", "test", "Split to evaluate: train, valid or test.")
  flags.DEFINE_string("dataset", None,
                      "TFDS name; default: the run's (its options.json).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir; default: the run's.")
  flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.")


def main(argv):
  del argv
  f = flags.FLAGS
  console.setup(f.verbosity)
  model = load_run_model(f.model_dir)
  try:
    # The run's own dataset and data_dir unless given (a run without options.json needs
    # --dataset).
    dataset, data_dir = options.run_dataset(f.model_dir, f.dataset, f.data_dir)
    b = data_lib.builder(dataset, data_dir)
    report = evaluate(model, b, f.split, f.model_dir, f.batch_size)
  except (data_lib.DatasetNotBuiltError, ClassMismatchError, options.NoOptionsError,
          options.OptionsFileError) as e:
    console.fail(e)
  print(f"{dataset} {f.split}: {report['num_leaked']} leaked example(s) excluded "
        "from the leak-free column")
  print(metrics.render(report, model_lib.class_names_of(model)))
  logging.info("wrote %s", os.path.join(f.model_dir, f"metrics_{f.split}.json"))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
