"""Trivial baselines beside every model: is the network better than something trivial?

The pixel baseline is a logistic regression on the first principal components of each
image's raw pixels, grey and shrunk to 16 x 16 by the resize the model's input uses,
fitted on the training split (seeded); the majority baseline always answers the training
split's most frequent class. Both are scored on the split the model was, in both columns
(whole and leak-free), and the model is compared with each on the same examples by the
paired tests of `comparison` (McNemar exact, paired-bootstrap interval of the accuracy
difference). A model that does not beat the pixel baseline with an interval above zero
is told so in one sentence.
"""

import numpy as np
from sklearn import decomposition
from sklearn import linear_model
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing

from ctdist.data import examples
from ctdist.data import pipeline
from ctdist.scoring import comparison
from ctdist.scoring import predictions

SIZE = 16  # pixels a side
COMPONENTS = 32  # principal components kept (fewer when the split is smaller)
PIXEL = f"pixels ({SIZE}x{SIZE} grey, PCA {COMPONENTS}, logistic regression)"
MAJORITY = "majority class"


def pixels(b, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(features [N, SIZE*SIZE], labels, leaked) of every example of `split`, in
  `eval_dataset`'s order (that of `examples.file_names`)."""
  features, labels, leaked, weights = [], [], [], []
  for batch in pipeline.eval_dataset(b, split, SIZE, 64).as_numpy_iterator():
    images = batch["image"].astype(np.float32)
    features.append(images.mean(axis=-1).reshape(len(images), -1))
    labels.append(batch["label"])
    leaked.append(batch["leaked"])
    weights.append(batch["weight"])
  keep = np.concatenate(weights) > 0
  return (np.concatenate(features)[keep], np.concatenate(labels)[keep].astype(np.int64),
          np.concatenate(leaked)[keep].astype(bool))


def fit_pixels(x: np.ndarray, y: np.ndarray, seed: int = 0) -> sk_pipeline.Pipeline:
  """The pixel baseline fitted on training features `x` and labels `y`."""
  components = min(COMPONENTS, len(x) - 1, x.shape[1])
  model = sk_pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      decomposition.PCA(components, svd_solver="full", random_state=seed),
      linear_model.LogisticRegression(max_iter=5000, random_state=seed))
  return model.fit(x, y)


def _predictions(p: predictions.Predictions, probs: np.ndarray, split_pixels,
                 names: np.ndarray) -> predictions.Predictions:
  _, labels, leaked = split_pixels
  # No copy groups of its own: the paired bootstrap resamples by the model's (`a`'s).
  return predictions.Predictions(
      dataset=p.dataset, split=p.split, class_names=p.class_names, temperature=1.0,
      file_names=names, labels=labels, probs=probs, leaked=leaked,
      groups=np.arange(len(labels)))


def versus(p: predictions.Predictions, b, train_split: str = "train", seed: int = 0) -> dict:
  """The baselines fitted on `train_split` and scored on `p`'s split, and the model's
  paired comparison with each ("a" is the model, "b" the baseline)."""
  x_train, y_train, _ = pixels(b, train_split)
  split_pixels = pixels(b, p.split)
  names = examples.file_names(b, p.split)
  k = len(p.class_names)
  fitted = fit_pixels(x_train, y_train, seed)
  probs = np.zeros((len(names), k))
  probs[:, fitted.classes_] = fitted.predict_proba(split_pixels[0])
  majority = int(np.bincount(y_train, minlength=k).argmax())
  report = {"train_split": train_split, "seed": seed, "baselines": {}}
  for name, baseline_probs in ((PIXEL, probs), (MAJORITY, np.eye(k)[[majority] * len(names)])):
    report["baselines"][name] = comparison.compare(
        p, _predictions(p, baseline_probs, split_pixels, names), seed=seed)
  report["beats_pixels"], report["sentence"] = verdict(report["baselines"][PIXEL])
  return report


def verdict(compared: dict) -> tuple[bool, str]:
  """Whether the model beats the pixel baseline (the leak-free column's paired interval of
  the accuracy difference above zero; the whole split's when nothing is leak-free), and
  the sentence saying so."""
  column = "leak_free" if compared["leak_free"]["num_examples"] else "all"
  acc = compared[column]["accuracy"]
  d = acc["difference"]
  figures = (f"{column.replace('_', '-')} accuracy {acc['a']:.3f} vs {acc['b']:.3f}, "
             f"difference {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
  if d["low"] > 0:
    return True, f"The model beats the pixel baseline: {figures}."
  return False, (f"The model does NOT beat a logistic regression on {SIZE}x{SIZE} pixels: "
                 f"{figures}, an interval that does not lie above zero.")


def render(report: dict) -> str:
  """The baselines' comparisons as tables, then the verdict's sentence."""
  blocks = [comparison.render(c, "the model", f"the {name} baseline")
            for name, c in report["baselines"].items()]
  return "\n".join([*blocks, report["sentence"]])
