"""Paired comparison of two runs on the same examples: McNemar's exact test on right/wrong
and paired-bootstrap intervals of the differences in accuracy and macro F1, whole split
and leak-free."""

import numpy as np

from ctdist.scoring import metrics
from ctdist.scoring import predictions
from ctdist.scoring import stats


class NotComparableError(ValueError):
  """Two runs' predictions are not on the same examples."""


def pair(a: predictions.Predictions, b: predictions.Predictions):
  """Both runs' predictions in one order (by file name), after checking that they are on
  the same examples of the same split of the same dataset, with the same classes.

  Returns:
    (a, b) re-ordered.

  Raises:
    NotComparableError: naming what differs (dataset, split, classes, files, labels).
  """
  if a.dataset != b.dataset:
    raise NotComparableError(f"the runs were evaluated on different datasets: {a.dataset} "
                             f"vs {b.dataset}")
  if a.split != b.split:
    raise NotComparableError(f"the predictions are of different splits: {a.split} vs "
                             f"{b.split}")
  if a.class_names != b.class_names:
    raise NotComparableError(f"the runs' class names differ: {list(a.class_names)} vs "
                             f"{list(b.class_names)}")
  only_a = sorted(set(a.file_names.tolist()) - set(b.file_names.tolist()))
  only_b = sorted(set(b.file_names.tolist()) - set(a.file_names.tolist()))
  if only_a or only_b:
    raise NotComparableError(
        f"the runs' {a.split} splits hold different files: {len(only_a)} only in the first "
        f"(e.g. {only_a[:3]}), {len(only_b)} only in the second (e.g. {only_b[:3]}); "
        "evaluate both on the same build of the dataset")
  try:
    a, b = predictions.by_file(a), predictions.by_file(b)
  except ValueError as e:
    raise NotComparableError(str(e)) from e
  differ = np.flatnonzero((a.labels != b.labels) | (a.leaked != b.leaked))
  if len(differ):
    raise NotComparableError(
        f"{len(differ)} files have other labels or leak flags in the two runs (e.g. "
        f"{a.file_names[differ[0]]}); evaluate both on the same build of the dataset")
  return a, b


def _column(labels, probs_a, probs_b, groups, k, resamples, seed) -> dict:
  if not len(labels):
    return {"num_examples": 0}
  right_a, right_b = probs_a.argmax(1) == labels, probs_b.argmax(1) == labels
  both = lambda y, pa, pb: np.array([metrics.headline(y, pa, k)[:2],
                                     metrics.headline(y, pb, k)[:2]])
  diff = lambda y, pa, pb: np.subtract(*both(y, pa, pb))
  ivs = stats.bootstrap_many(diff, (labels, probs_a, probs_b), groups, resamples, seed)
  (acc_a, f1_a), (acc_b, f1_b) = both(labels, probs_a, probs_b)
  return {"num_examples": int(len(labels)),
          "accuracy": {"a": float(acc_a), "b": float(acc_b), "difference": ivs[0].as_dict()},
          "macro_f1": {"a": float(f1_a), "b": float(f1_b), "difference": ivs[1].as_dict()},
          "mcnemar_exact": stats.mcnemar_exact(right_a, right_b)}


def compare(a: predictions.Predictions, b: predictions.Predictions,
            resamples: int = metrics.RESAMPLES, seed: int = 0) -> dict:
  """A minus B on the same examples, whole split and leak-free: accuracy and macro F1 of
  each with the paired-bootstrap interval of the difference (both runs scored on the
  same resamples; copies inside the split resampled whole), and McNemar's exact test."""
  a, b = pair(a, b)
  k, keep = len(a.class_names), ~a.leaked
  return {"dataset": a.dataset, "split": a.split,
          "method": f"paired percentile bootstrap, {resamples} resamples, duplicate groups "
                    f"resampled whole, seed {seed}; McNemar exact (two-sided)",
          "all": _column(a.labels, a.probs, b.probs, a.groups, k, resamples, seed),
          "leak_free": _column(a.labels[keep], a.probs[keep], b.probs[keep], a.groups[keep],
                               k, resamples, seed)}


def render(report: dict, name_a: str, name_b: str) -> str:
  """The comparison as a table: one block per column (all, leak-free)."""
  lines = [f"A = {name_a}", f"B = {name_b}",
           f"{report['dataset']} {report['split']}; A minus B, 95 % intervals in brackets"]
  for column, title in (("all", "all"), ("leak_free", "leak-free")):
    c = report[column]
    if not c["num_examples"]:
      continue
    lines.append(f"{title} ({c['num_examples']} examples)")
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro F1")):
      d = c[key]["difference"]
      lines.append(f"  {label:10s} A {c[key]['a']:.3f}  B {c[key]['b']:.3f}  "
                   f"A-B {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    m = c["mcnemar_exact"]
    lines.append(f"  McNemar    A right/B wrong {m['a_right_b_wrong']}, A wrong/B right "
                 f"{m['a_wrong_b_right']}: p = {m['p_value']:.4g}")
  lines.append(f"[{report['method']}]")
  return "\n".join(lines)
