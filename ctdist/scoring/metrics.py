"""Classification metrics from labels and probabilities (scikit-learn), as plain dicts,
with 95 % bootstrap intervals and calibration."""

import numpy as np
from scipy import stats as scipy_stats
from sklearn import metrics as skm

from ctdist.scoring import stats

RESAMPLES = 1000


def classification_report(labels: np.ndarray, probs: np.ndarray,
                          class_names: list[str]) -> dict:
  """Accuracy, per-class and macro/weighted precision, recall and F1, the
  confusion matrix (rows: true, columns: predicted) and one-vs-rest ROC-AUC.

  Args:
    labels: [N] int true labels.
    probs: [N, K] predicted probabilities.
    class_names: K names in label order.
  """
  k = len(class_names)
  labels = np.asarray(labels, dtype=np.int64)
  probs = np.asarray(probs, dtype=np.float64)
  pred = probs.argmax(-1) if len(probs) else np.zeros(0, np.int64)
  rep = {"num_examples": int(len(labels))}
  if not len(labels):
    return rep
  sk = skm.classification_report(labels, pred, labels=list(range(k)),
                                 target_names=list(class_names), output_dict=True,
                                 zero_division=0)
  rename = lambda d: {"precision": float(d["precision"]), "recall": float(d["recall"]),
                      "f1": float(d["f1-score"])}
  rep["accuracy"] = float(skm.accuracy_score(labels, pred))
  rep["per_class"] = {name: {**rename(sk[name]), "support": int(sk[name]["support"])}
                      for name in class_names}
  rep["macro"], rep["weighted"] = rename(sk["macro avg"]), rename(sk["weighted avg"])
  rep["confusion_matrix"] = skm.confusion_matrix(
      labels, pred, labels=list(range(k))).tolist()
  auc = {}
  for i, name in enumerate(class_names):
    positives = labels == i
    # ROC-AUC is undefined when a class is absent or is every example.
    auc[name] = (float(skm.roc_auc_score(positives, probs[:, i]))
                 if 0 < positives.sum() < len(labels) else None)
  rep["roc_auc_ovr"] = auc
  defined = [v for v in auc.values() if v is not None]
  rep["roc_auc_ovr_macro"] = float(np.mean(defined)) if defined else None
  return rep


def headline(labels: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
  """[accuracy, macro F1, recall of each of the k classes, macro one-vs-rest ROC-AUC],
  computed in NumPy (fast enough to bootstrap); equal to scikit-learn's values, with
  NaN where a metric is undefined (a class's recall without examples of it; ROC-AUC
  without any class both present and absent)."""
  pred = probs.argmax(1)
  cm = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
  tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = tp / support  # NaN without examples of the class
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    r0 = np.nan_to_num(recall)  # scikit-learn's zero_division=0
    f1 = np.where(precision + r0 > 0, 2 * precision * r0 / (precision + r0), 0.0)
  aucs = []
  for c in range(k):
    positive = labels == c
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos and n_neg:  # Mann-Whitney U / (n_pos n_neg), ties counted half
      ranks = scipy_stats.rankdata(probs[:, c])
      aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
  auc = float(np.mean(aucs)) if aucs else np.nan
  return np.array([float((pred == labels).mean()), float(f1.mean()), *recall, auc])


def intervals(labels, probs, class_names, groups=None, resamples: int = RESAMPLES,
              seed: int = 0) -> dict:
  """95 % percentile-bootstrap intervals of the headline metrics, resampling `groups`
  (copies of one image) whole."""
  k = len(class_names)
  ivs = stats.bootstrap_many(lambda y, p: headline(y, p, k),
                             (np.asarray(labels, np.int64), np.asarray(probs, np.float64)),
                             groups, resamples, seed)
  d = lambda iv: iv and iv.as_dict()  # None: undefined on every resample
  return {"accuracy": d(ivs[0]), "macro_f1": d(ivs[1]),
          "recall": {name: d(ivs[2 + i]) for i, name in enumerate(class_names)},
          "roc_auc_ovr_macro": d(ivs[-1]),
          "method": f"percentile bootstrap, {resamples} resamples"
                    + (", duplicate groups resampled whole" if groups is not None else "")
                    + f", seed {seed}"}


def calibration(labels, probs) -> dict:
  return {"ece_15_bins": stats.expected_calibration_error(labels, probs),
          "brier": stats.brier_score(labels, probs)}


def _column(labels, probs, class_names, groups, resamples, seed) -> dict:
  rep = classification_report(labels, probs, class_names)
  if len(labels):
    rep["calibration"] = calibration(labels, probs)
    rep["intervals"] = intervals(labels, probs, class_names, groups, resamples, seed)
  return rep


def with_leak_free(labels, probs, leaked, class_names, groups=None,
                   resamples: int = RESAMPLES, seed: int = 0) -> dict:
  """`classification_report` (with intervals and calibration) on the whole split and on
  its non-leaked subset. `groups`: [N] duplicate-group ids (copies resampled together)."""
  keep = ~np.asarray(leaked, dtype=bool)
  labels, probs = np.asarray(labels), np.asarray(probs)
  kept_groups = None if groups is None else np.asarray(groups)[keep]
  return {"all": _column(labels, probs, class_names, groups, resamples, seed),
          "leak_free": _column(labels[keep], probs[keep], class_names, kept_groups,
                               resamples, seed),
          "num_leaked": int((~keep).sum())}


def with_interval(col: dict, key: str) -> str:
  """'0.946 [0.921, 0.968]' for a headline metric of one column ('n/a' if absent)."""
  value, iv = col.get(key), _get(col, ("intervals", key))
  if value is None:
    return "n/a"
  return f"{value:.3f}" + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")


def rows(class_names: list[str]) -> list[tuple]:
  """The report's table rows: (label, path of the value in a column, path of its interval
  under "intervals" or None); `cell_value` reads them."""
  table = [("accuracy", ("accuracy",), ("accuracy",)),
           ("macro F1", ("macro", "f1"), ("macro_f1",)),
           ("weighted F1", ("weighted", "f1"), None),
           ("macro ROC-AUC (one-vs-rest)", ("roc_auc_ovr_macro",), ("roc_auc_ovr_macro",)),
           ("ECE (15 bins)", ("calibration", "ece_15_bins"), None),
           ("Brier score", ("calibration", "brier"), None)]
  for name in class_names:
    table += [(f"{name} precision", ("per_class", name, "precision"), None),
              (f"{name} recall", ("per_class", name, "recall"), ("recall", name)),
              (f"{name} f1", ("per_class", name, "f1"), None)]
  return table


def cell_value(col: dict, path, iv_path) -> tuple:
  """(value or None, interval dict or None) of one `rows` entry in a report column."""
  return _get(col, path), iv_path and _get(col, ("intervals", *iv_path))


def render(report: dict, class_names: list[str]) -> str:
  """Side-by-side table of the whole split and its leak-free subset; headline metrics
  with their 95 % intervals in brackets."""
  a, b = report["all"], report["leak_free"]

  def cell(value, iv) -> str:
    text = "   n/a" if value is None else f"{value:6.3f}"
    text += f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else " " * 15
    return f"{text:>24s}"

  w = max([len("macro ROC-AUC (one-vs-rest)")] +
          [len(f"{name} precision") for name in class_names]) + 2  # label column
  lines = [f"{'':{w}s}{'all':>24s}{'leak-free':>24s}",
           f"{'examples':{w}s}{a['num_examples']:>24d}{b['num_examples']:>24d}"]
  if "accuracy" not in a:
    return "\n".join(lines)
  for label, path, iv_path in rows(class_names):
    lines.append(f"{label:{w}s}" + "".join(
        cell(_get(col, path), iv_path and _get(col, ("intervals", *iv_path)))
        for col in (a, b)))
  lines.append("confusion matrix (rows true, columns predicted), all:")
  for name, row in zip(class_names, a["confusion_matrix"]):
    lines.append(f"  {name:{w - 2}s}" + "".join(f"{v:6d}" for v in row))
  method = (a.get("intervals") or {}).get("method")
  if method:
    lines.append(f"[brackets: 95 % intervals, {method}]")
  return "\n".join(lines)


def _get(col: dict, path):
  """col[path[0]][path[1]]..., None where a level is missing (or null)."""
  node = col
  for key in path:
    if not isinstance(node, dict):
      return None
    node = node.get(key)
  return node
