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

import os

import numpy as np
from sklearn import decomposition
from sklearn import linear_model
from sklearn import pipeline as sk_pipeline
from sklearn import preprocessing

from ctdist.data import examples
from ctdist.data import pipeline
from ctdist.scoring import comparison
from ctdist.scoring import predictions
from ctdist.store import atomic
from ctdist.store import run_files

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


def scored(p: predictions.Predictions, b, train_split="train", seed: int = 0,
           split=None) -> dict:
  """{baseline name: its predictions on `p`'s examples}, each fitted on `train_split` (a
  split name or a `subsets.Subset`) and scored on `split` (default `p.split`; a
  `subsets.Subset` when `p` holds a subset's predictions)."""
  split = p.split if split is None else split
  x_train, y_train, _ = pixels(b, train_split)
  split_pixels = pixels(b, split)
  names = examples.file_names(b, split)
  k = len(p.class_names)
  fitted = fit_pixels(x_train, y_train, seed)
  probs = np.zeros((len(names), k))
  probs[:, fitted.classes_] = fitted.predict_proba(split_pixels[0])
  majority = int(np.bincount(y_train, minlength=k).argmax())
  return {PIXEL: _predictions(p, probs, split_pixels, names),
          MAJORITY: _predictions(p, np.eye(k)[[majority] * len(names)], split_pixels, names)}


def compared(p: predictions.Predictions, baselines: dict, train_split, seed: int = 0) -> dict:
  """The model's paired comparison with each of `scored`'s baselines ("a" is the model,
  "b" the baseline), and the verdict on the pixel baseline."""
  report = {"train_split": getattr(train_split, "name", train_split), "seed": seed,
            "baselines": {name: comparison.compare(p, q, seed=seed)
                          for name, q in baselines.items()}}
  report["beats_pixels"], report["sentence"] = verdict(report["baselines"][PIXEL])
  return report


def versus(p: predictions.Predictions, b, train_split="train", seed: int = 0,
           split=None) -> dict:
  """`scored` and `compared`: the baselines fitted on `train_split`, scored on `p`'s
  examples, and the model compared with each."""
  return compared(p, scored(p, b, train_split, seed, split), train_split, seed)


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


def file_name(split: str) -> str:
  return f"baseline_{split}.json"


def write(report: dict, folder: str, split: str) -> str:
  """Writes `versus`'s report beside the run's metrics; returns its path."""
  path = os.path.join(folder, file_name(split))
  atomic.write_json(path, report)
  return path


def read(folder: str, split: str) -> dict | None:
  """The report `write` wrote for `split`, or None (switched off, or an older run)."""
  return run_files.read_json(folder, file_name(split), None)
