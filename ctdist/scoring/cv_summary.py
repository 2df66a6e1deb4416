"""A cross-validation's folds combined: per-fold scores with mean and standard deviation,
out-of-fold predictions of every pool image, and the ensemble of the fold models."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from ctdist.data import cv_plan
from ctdist.scoring import baseline
from ctdist.scoring import metrics
from ctdist.scoring import predictions
from ctdist.store import atomic
from ctdist.store import options_file
from ctdist.store import run_files


def _stack(parts: list[predictions.Predictions]) -> predictions.Predictions:
  cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
  return predictions.Predictions(parts[0].dataset, parts[0].split, parts[0].class_names,
                                 parts[0].temperature, cat("file_names"), cat("labels"),
                                 cat("probs"), cat("leaked"), cat("groups"))


def _mean_sd(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "n": int(len(values))}


def baseline_folder(fold: str, name: str) -> str:
  """Where a fold keeps a trivial baseline's held-out predictions."""
  return os.path.join(fold, {baseline.PIXEL: "baseline_pixels",
                            baseline.MAJORITY: "baseline_majority"}[name])


def _versus_baselines(root: str, folds: list[str], oof: predictions.Predictions
                      ) -> dict | None:
  """The out-of-fold model (`oof`, of `folds`) against the out-of-fold baselines, each
  fold's fitted on its training part, paired; None when the folds ran --nobaseline.
  Out of fold, no image has a copy on the other side (the folds are grouped): every
  example counts as leak-free."""
  scored = {}
  clean = lambda p: dataclasses.replace(p, split=oof.split, leaked=np.zeros(len(p.labels), bool))
  for name in (baseline.PIXEL, baseline.MAJORITY):
    where = [baseline_folder(os.path.join(root, f), name) for f in folds]
    if not all(tf.io.gfile.exists(predictions.path(w, cv_plan.HELDOUT)) for w in where):
      return None
    scored[name] = clean(_stack([predictions.load(w, cv_plan.HELDOUT) for w in where]))
  return baseline.compared(clean(oof), scored, "each fold's training part")


def aggregate(root: str) -> dict:
  """Combines the folds in `root`: per-fold scores with mean and standard deviation,
  out-of-fold predictions of every pool image (pooled metrics and confusion matrix),
  and the evaluation split scored by the probability-averaged ensemble of the folds.

  Raises:
    CVError: a fold is missing (all of them are named), or `root` holds no folds.json.
  """
  plan = run_files.read_json(root, run_files.FOLDS, None)
  if plan is None:
    raise cv_plan.CVError(f"{os.path.join(root, run_files.FOLDS)} not found: {root} is not "
                          "a ctdist.cv folder")
  total = plan["folds"] * plan["repeats"]
  names = [cv_plan.fold_name(plan, i) for i in range(total)]
  missing = [f"{n} (--fold={i})" for i, n in enumerate(names)
             if not tf.io.gfile.exists(predictions.path(os.path.join(root, n), cv_plan.HELDOUT))]
  if missing:
    raise cv_plan.CVError(f"{len(missing)} of {total} folds are not finished in {root}: "
                  f"{', '.join(missing)}; run them (python -m ctdist.cv ... --fold=i) and "
                  "aggregate again; nothing is averaged over missing folds")
  split = options_file.load(os.path.join(root, names[0])).eval_split
  held = [predictions.load(os.path.join(root, n), cv_plan.HELDOUT) for n in names]
  tested = [predictions.load(os.path.join(root, n), split) for n in names]
  class_names = list(held[0].class_names)
  per_fold = []
  for n, h, t in zip(names, held, tested):
    score = lambda p, keep: metrics.headline(p.labels[keep], p.probs[keep], len(class_names))
    hs, ts = score(h, slice(None)), score(t, ~t.leaked)
    per_fold.append({"fold": n, "heldout_examples": int(len(h.labels)),
                     "heldout_accuracy": float(hs[0]), "heldout_macro_f1": float(hs[1]),
                     f"{split}_leak_free_accuracy": float(ts[0]),
                     f"{split}_leak_free_macro_f1": float(ts[1])})
  summary = {"folds": plan["folds"], "repeats": plan["repeats"], "pool": cv_plan.POOL,
             "per_fold": per_fold,
             "mean_sd": {k: _mean_sd([f[k] for f in per_fold]) for k in per_fold[0]
                         if k not in ("fold", "heldout_examples")},
             "out_of_fold": [], "split": split}
  k = plan["folds"]
  group_of = dict(zip(plan["files"], plan["groups"]))  # pool-wide: exact and near copies
  for r in range(plan["repeats"]):
    oof = _stack(held[r * k:(r + 1) * k])
    if sorted(oof.file_names.tolist()) != sorted(plan["files"]):
      raise cv_plan.CVError(f"repeat {r}: the held-out parts do not cover the pool exactly once")
    oof = dataclasses.replace(oof, split=f"out_of_fold_repeat{r}", groups=np.array(
        [group_of[f] for f in oof.file_names.tolist()]))
    predictions.save(oof, root)
    summary["out_of_fold"].append(metrics.with_leak_free(
        oof.labels, oof.probs, np.zeros(len(oof.labels), bool), class_names, oof.groups))
    against = _versus_baselines(root, names[r * k:(r + 1) * k], oof)
    if against is not None:
      summary.setdefault("baseline", []).append(against)
  tested = [predictions.by_file(t) for t in tested]
  first = tested[0]
  if any(t.file_names.tolist() != first.file_names.tolist() for t in tested):
    raise cv_plan.CVError(f"the folds' {split} predictions are not of the same files")
  ensemble = dataclasses.replace(first, split=f"{split}_ensemble",
                                 probs=np.mean([t.probs for t in tested], axis=0))
  predictions.save(ensemble, root)
  summary["ensemble"] = metrics.with_leak_free(ensemble.labels, ensemble.probs,
                                               ensemble.leaked, class_names, ensemble.groups)
  atomic.write_json(os.path.join(root, run_files.CV_SUMMARY), summary)
  return summary


def render(summary: dict) -> str:
  """Per-fold lines, mean +- sd, out-of-fold and ensemble headline metrics."""
  split = summary["split"]
  lines = [f"{'fold':16s}{'held out':>9s}{'acc':>8s}{'macro F1':>10s}"
           f"{f'{split} leak-free acc':>22s}"]
  for f in summary["per_fold"]:
    lines.append(f"{f['fold']:16s}{f['heldout_examples']:9d}{f['heldout_accuracy']:8.3f}"
                 f"{f['heldout_macro_f1']:10.3f}{f[f'{split}_leak_free_accuracy']:22.3f}")
  ms = summary["mean_sd"]
  lines.append(f"{'mean +- sd':16s}{'':9s}{ms['heldout_accuracy']['mean']:8.3f}"
               f"{ms['heldout_macro_f1']['mean']:10.3f}"
               f"{ms[f'{split}_leak_free_accuracy']['mean']:22.3f}")
  lines.append(f"{'':25s}+-{ms['heldout_accuracy']['sd']:.3f}  +-{ms['heldout_macro_f1']['sd']:.3f}"
               f"{'':13s}+-{ms[f'{split}_leak_free_accuracy']['sd']:.3f}")
  for r, oof in enumerate(summary["out_of_fold"]):
    lines.append(f"out-of-fold (repeat {r}, {oof['all']['num_examples']} pool images): "
                 f"accuracy {metrics.with_interval(oof['all'], 'accuracy')}, macro F1 "
                 f"{oof['all']['macro']['f1']:.3f}")
  e = summary["ensemble"]
  lines.append(f"ensemble of {len(summary['per_fold'])} fold models on {split}: accuracy "
               f"{metrics.with_interval(e['all'], 'accuracy')} (leak-free "
               f"{metrics.with_interval(e['leak_free'], 'accuracy')})")
  for r, against in enumerate(summary.get("baseline", [])):
    lines.append(f"out-of-fold (repeat {r}) against trivial baselines fitted on each fold's "
                 "training part:")
    lines.append(baseline.render(against))
  return "\n".join(lines)
