"""Classification metrics from labels and probabilities (scikit-learn), as plain dicts."""

import numpy as np
from sklearn import metrics as skm


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


def with_leak_free(labels, probs, leaked, class_names) -> dict:
  """`classification_report` on the whole split and on its non-leaked subset."""
  keep = ~np.asarray(leaked, dtype=bool)
  return {"all": classification_report(labels, probs, class_names),
          "leak_free": classification_report(
              np.asarray(labels)[keep], np.asarray(probs)[keep], class_names),
          "num_leaked": int((~keep).sum())}


def render(report: dict, class_names: list[str]) -> str:
  """Side-by-side table of the whole split and its leak-free subset."""
  a, b = report["all"], report["leak_free"]
  fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"
  w = max([len("macro ROC-AUC (one-vs-rest)")] +
          [len(f"{name} precision") for name in class_names]) + 2  # label column
  lines = [f"{'':{w}s}{'all':>10s}{'leak-free':>12s}",
           f"{'examples':{w}s}{a['num_examples']:>10d}{b['num_examples']:>12d}"]
  if "accuracy" not in a:
    return "\n".join(lines)
  rows = [("accuracy", a.get("accuracy"), b.get("accuracy")),
          ("macro F1", a["macro"]["f1"], b.get("macro", {}).get("f1")),
          ("weighted F1", a["weighted"]["f1"], b.get("weighted", {}).get("f1")),
          ("macro ROC-AUC (one-vs-rest)", a["roc_auc_ovr_macro"],
           b.get("roc_auc_ovr_macro"))]
  for name in class_names:
    for key in ("precision", "recall", "f1"):
      rows.append((f"{name} {key}", a["per_class"][name][key],
                   b.get("per_class", {}).get(name, {}).get(key)))
  lines += [f"{label:{w}s}{fmt(x):>10s}{fmt(y):>12s}" for label, x, y in rows]
  lines.append("confusion matrix (rows true, columns predicted), all:")
  for name, row in zip(class_names, a["confusion_matrix"]):
    lines.append(f"  {name:{w - 2}s}" + "".join(f"{v:6d}" for v in row))
  return "\n".join(lines)
