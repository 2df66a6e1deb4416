"""Grouped, stratified K-fold cross-validation on train + valid, each fold one resumable
training run; out-of-fold predictions, per-fold and ensemble scores on the test split.

Run: python -m ctdist.cv --folds=5 --model_dir=runs/cv [any ctdist.train flag]
     python -m ctdist.cv --folds=5 --fold=3 --model_dir=runs/cv ...   (one fold, one job)
     python -m ctdist.cv aggregate runs/cv                            (combine the folds)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import dataclasses
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ctdist import data as data_lib
from ctdist import dataflags
from ctdist import evaluate as evaluate_lib
from ctdist import files
from ctdist import folds as folds_lib
from ctdist import metrics
from ctdist import options
from ctdist import predictions
from ctdist import report as report_lib
from ctdist import train
from tfds_ctscan import hashing

POOL = "train+valid"
PLAN = "folds.json"
HELDOUT = "heldout"
option = dataflags.option


@dataclasses.dataclass(frozen=True)
class CVOptions:
  """A cross-validation: the folds, and the training run each fold is (--model_dir is the
  cross-validation's folder; each fold trains in a folder of its own inside it)."""
  folds: int = option(5, "Number of folds K.")
  repeats: int = option(1, "Repeat the K folds with other group shuffles (seed + repeat).")
  fold: int = option(
      -1, "Run only this fold: 0 .. folds x repeats - 1 (repeat i // folds, fold i % folds); "
      "-1: every fold, then aggregate.")
  inner_parts: int = option(
      8, "Early stopping validates on a grouped, stratified 1/N of each fold's training part.")
  train: options.Options = dataflags.group(options.Options)


class CVError(ValueError):
  """Folds that cannot be made, a folder of another cross-validation, missing folds."""


def pool(b):
  """(file names, labels, copy groups) of train + valid: exact and near copies (the
  builder's thumbnails, `tfds_ctscan.hashing`) share a group."""
  names, labels, thumbs = [], [], []
  for ex in tfds.as_numpy(b.as_dataset(split=POOL, shuffle_files=False)):
    names.append(ex["file_name"].decode())
    labels.append(int(ex["label"]))
    thumbs.append(hashing.perceptual_hash(ex["image"]))
  return np.array(names), np.array(labels), hashing.component_ids(np.stack(thumbs))


def make_plan(names, labels, groups, cvo: CVOptions, class_names) -> dict:
  """Every repeat's fold of every pool file (seed = the training seed + repeat)."""
  seed = cvo.train.seed
  return {"dataset": cvo.train.dataset, "pool": POOL, "folds": cvo.folds,
          "repeats": cvo.repeats, "seed": seed,
          "inner_parts": cvo.inner_parts, "class_names": list(class_names),
          "files": names.tolist(), "labels": labels.tolist(),
          "groups": groups.tolist(),
          "fold_of": [folds_lib.assign(labels, groups, cvo.folds, seed + r, class_names).tolist()
                      for r in range(cvo.repeats)]}


def load_or_make_plan(b, cvo: CVOptions) -> dict:
  """The folder's folds.json, checked against `cvo` and the data; made on first use."""
  root = cvo.train.model_dir
  path = os.path.join(root, PLAN)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      plan = json.load(f)
    asked = {"dataset": cvo.train.dataset, "folds": cvo.folds, "repeats": cvo.repeats,
             "seed": cvo.train.seed, "inner_parts": cvo.inner_parts}
    changed = [f"--{k}={plan.get(k)} -> {v}" for k, v in asked.items() if plan.get(k) != v]
    if changed:
      raise CVError(f"{root} holds a cross-validation with other folds: {', '.join(changed)}; "
                    "use its flags or another --model_dir")
    names = data_lib.file_names(b, POOL)
    if sorted(names.tolist()) != sorted(plan["files"]):
      raise CVError(f"{path} lists other files than {b.info.full_name} {POOL} holds now; "
                    "the dataset was rebuilt: use another --model_dir")
    return plan
  names, labels, groups = pool(b)
  plan = make_plan(names, labels, groups, cvo, list(b.info.features["label"].names))
  tf.io.gfile.makedirs(root)
  files.write_json(path, plan)
  logging.info("%d folds x %d repeat(s) of %d pool images (%d groups of copies) -> %s",
               cvo.folds, cvo.repeats, len(names), len(set(groups.tolist())), path)
  return plan


def fold_name(plan: dict, index: int) -> str:
  r, k = divmod(index, plan["folds"])
  return f"repeat{r}_fold{k}"


def fold_parts(plan: dict, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train, inner valid, held-out) pool indices of fold `index`."""
  r, k = divmod(index, plan["folds"])
  fold_of = np.asarray(plan["fold_of"][r])
  held = np.flatnonzero(fold_of == k)
  rest = np.flatnonzero(fold_of != k)
  valid = folds_lib.inner_validation(plan["labels"], plan["groups"], rest,
                                     plan["inner_parts"], plan["seed"] + r, plan["class_names"])
  return np.setdiff1d(rest, valid), valid, held


def run_fold(cvo: CVOptions, b, plan: dict, index: int, strategy=None) -> str:
  """Trains and scores one fold (resumes an interrupted one, skips a finished one);
  returns its folder. The held-out part is scored after training, never before."""
  name = fold_name(plan, index)
  out = os.path.join(cvo.train.model_dir, name)
  if tf.io.gfile.exists(predictions.path(out, HELDOUT)):
    logging.info("%s: done, skipped", name)
    return out
  fit, valid, held = fold_parts(plan, index)
  pool_files = np.asarray(plan["files"])
  subset = lambda part, idx: data_lib.Subset(f"{name}_{part}", POOL, tuple(pool_files[idx]))
  tf.io.gfile.makedirs(out)
  subset_file = os.path.join(out, "subset.json")
  data_lib.write_subsets(subset_file, subset("train", fit), subset("valid", valid))
  logging.info("%s: train %d, inner valid %d, held out %d", name, len(fit), len(valid),
               len(held))
  keras.backend.clear_session()
  result = train.run(dataclasses.replace(cvo.train, model_dir=out, subset_file=subset_file),
                     strategy)
  if result:  # the chief
    model = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    evaluate_lib.evaluate(model, b, data_lib.Subset(HELDOUT, POOL, tuple(pool_files[held])),
                          out)
  return out


def run(cvo: CVOptions, strategy=None) -> dict | None:
  """Runs every fold (or `cvo.fold` alone); after every fold, the aggregate."""
  b = data_lib.builder(cvo.train.dataset, cvo.train.data_dir, cvo.train.manual_dir)
  plan = load_or_make_plan(b, cvo)
  total = cvo.folds * cvo.repeats
  if cvo.fold >= total or cvo.fold < -1:
    raise CVError(f"--fold={cvo.fold}; expected -1 (all) or 0 .. {total - 1}")
  if cvo.fold >= 0:
    run_fold(cvo, b, plan, cvo.fold, strategy)
    return None
  for index in range(total):
    run_fold(cvo, b, plan, index, strategy)
  summary = aggregate(cvo.train.model_dir)
  if cvo.train.report:
    report_lib.write(cvo.train.model_dir, b)
  return summary


def _stack(parts: list[predictions.Predictions]) -> predictions.Predictions:
  cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
  return predictions.Predictions(parts[0].dataset, parts[0].split, parts[0].class_names,
                                 parts[0].temperature, cat("file_names"), cat("labels"),
                                 cat("probs"), cat("leaked"), cat("groups"))


def _mean_sd(values) -> dict:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
          else 0.0, "n": int(len(values))}


def aggregate(root: str) -> dict:
  """Combines the folds in `root`: per-fold scores with mean and standard deviation,
  out-of-fold predictions of every pool image (pooled metrics and confusion matrix),
  and the evaluation split scored by the probability-averaged ensemble of the folds.

  Raises:
    CVError: a fold is missing (all of them are named), or `root` holds no folds.json.
  """
  path = os.path.join(root, PLAN)
  if not tf.io.gfile.exists(path):
    raise CVError(f"{path} not found: {root} is not a ctdist.cv folder")
  with tf.io.gfile.GFile(path) as f:
    plan = json.load(f)
  total = plan["folds"] * plan["repeats"]
  names = [fold_name(plan, i) for i in range(total)]
  missing = [f"{n} (--fold={i})" for i, n in enumerate(names)
             if not tf.io.gfile.exists(predictions.path(os.path.join(root, n), HELDOUT))]
  if missing:
    raise CVError(f"{len(missing)} of {total} folds are not finished in {root}: "
                  f"{', '.join(missing)}; run them (python -m ctdist.cv ... --fold=i) and "
                  "aggregate again; nothing is averaged over missing folds")
  split = options.load(os.path.join(root, names[0])).eval_split
  held = [predictions.load(os.path.join(root, n), HELDOUT) for n in names]
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
  summary = {"folds": plan["folds"], "repeats": plan["repeats"], "pool": POOL,
             "per_fold": per_fold,
             "mean_sd": {k: _mean_sd([f[k] for f in per_fold]) for k in per_fold[0]
                         if k not in ("fold", "heldout_examples")},
             "out_of_fold": [], "split": split}
  k = plan["folds"]
  group_of = dict(zip(plan["files"], plan["groups"]))  # pool-wide: exact and near copies
  for r in range(plan["repeats"]):
    oof = _stack(held[r * k:(r + 1) * k])
    if sorted(oof.file_names.tolist()) != sorted(plan["files"]):
      raise CVError(f"repeat {r}: the held-out parts do not cover the pool exactly once")
    oof = dataclasses.replace(oof, split=f"out_of_fold_repeat{r}", groups=np.array(
        [group_of[f] for f in oof.file_names.tolist()]))
    predictions.save(oof, root)
    summary["out_of_fold"].append(metrics.with_leak_free(
        oof.labels, oof.probs, np.zeros(len(oof.labels), bool), class_names, oof.groups))
  tested = [predictions.by_file(t) for t in tested]
  first = tested[0]
  if any(t.file_names.tolist() != first.file_names.tolist() for t in tested):
    raise CVError(f"the folds' {split} predictions are not of the same files")
  ensemble = dataclasses.replace(first, split=f"{split}_ensemble",
                                 probs=np.mean([t.probs for t in tested], axis=0))
  predictions.save(ensemble, root)
  summary["ensemble"] = metrics.with_leak_free(ensemble.labels, ensemble.probs,
                                               ensemble.leaked, class_names, ensemble.groups)
  files.write_json(os.path.join(root, "cv_summary.json"), summary)
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
  return "\n".join(lines)


def main(argv):
  del argv
  f = flags.FLAGS
  console.setup(f.verbosity)
  try:
    cvo = dataflags.from_flags(CVOptions, f)
    summary = run(cvo)
  except (CVError, folds_lib.FoldCountError, *train.USER_ERRORS) as e:
    console.fail(e)
  except ValueError as e:  # a value out of range (the fields' checks name it)
    console.fail(e)
  if summary:
    print(render(summary))
  else:
    print(f"fold {cvo.fold} done; when every fold is: python -m ctdist.cv aggregate "
          f"{cvo.train.model_dir}")


def main_aggregate(argv):
  console.setup(flags.FLAGS.verbosity)
  if len(argv) != 3:
    raise app.UsageError("usage: python -m ctdist.cv aggregate DIR")
  try:
    summary = aggregate(argv[2])
    report = report_lib.write(argv[2], report_lib.builder_of(argv[2]))
  except (CVError, predictions.NoPredictionsError, options.NoOptionsError,
          data_lib.DatasetNotBuiltError) as e:
    console.fail(e)
  print(render(summary))
  print(f"report: {report}")


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "aggregate":
    app.run(main_aggregate)
  else:
    dataflags.define_flags(CVOptions)
    app.run(main)
