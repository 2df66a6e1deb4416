"""One model in two forms (model.keras and an export of it) compared on a split: how often
they give the same class, and how far apart their probabilities are."""

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from ctdist.data import pipeline
from ctdist.data import subsets


def on_split(model: keras.Model, other: Callable[[np.ndarray], np.ndarray], b,
             split: "str | subsets.Subset", batch_size: int = 32) -> dict:
  """`model` and `other` (pixels [N, S, S, 3] -> probabilities [N, classes]) on every
  image of `split`, as evaluation feeds them.

  Returns:
    {split, num_examples, same_class, same_class_share, max_probability_difference,
     mean_probability_difference}: the differences are absolute, over every class of
    every image.
  """
  size = int(model.input_shape[1])
  forward = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False))
  ours, theirs = [], []
  for batch in pipeline.eval_dataset(b, split, size, batch_size).as_numpy_iterator():
    keep = batch["weight"] > 0
    images = batch["image"][keep]
    if len(images):
      ours.append(forward(images).numpy())
      theirs.append(np.asarray(other(images.astype(np.float32))))
  ours, theirs = np.concatenate(ours), np.concatenate(theirs)
  same = int((ours.argmax(1) == theirs.argmax(1)).sum())
  diff = np.abs(ours.astype(np.float64) - theirs)
  return {"split": str(split), "num_examples": len(ours), "same_class": same,
          "same_class_share": same / len(ours),
          "max_probability_difference": float(diff.max()),
          "mean_probability_difference": float(diff.mean())}


def render(result: dict, what: str) -> str:
  """One line: `what` against model.keras on the split."""
  return (f"{what} vs model.keras on {result['split']} ({result['num_examples']} images): "
          f"same class {result['same_class']}/{result['num_examples']} "
          f"({100 * result['same_class_share']:.1f} %), probabilities differ by at most "
          f"{result['max_probability_difference']:.2g} "
          f"(mean {result['mean_probability_difference']:.2g})")
