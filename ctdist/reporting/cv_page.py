"""report.html of a ctdist.cv folder: the design, each fold, out-of-fold and ensemble
metrics, and the ensemble's misclassified images."""

import os

from ctdist.config import commands as commands_config
from ctdist.model import saved
from ctdist.reporting import gallery
from ctdist.reporting import html
from ctdist.reporting import sections
from ctdist.scoring import metrics
from ctdist.scoring import predictions
from ctdist.store import run_files


def cv_report(root: str, b=None, limit: int = commands_config.GALLERY) -> str:
  """The HTML of a ctdist.cv folder (cv_summary.json and its folds)."""
  summary = run_files.read_json(root, run_files.CV_SUMMARY, None)
  if summary is None:
    raise run_files.UnfinishedRunError(f"{root}/cv_summary.json not found: aggregate first "
                            f"(python -m ctdist.cv aggregate {root})")
  split = summary["split"]
  folds = [f["fold"] for f in summary["per_fold"]]
  first = os.path.join(root, folds[0])
  opts = sections.run_options(first)
  runs = [(run_files.read_json(os.path.join(root, f), run_files.METRICS, {}) or {}).get("run", {})
          for f in folds]
  hw = runs[0].get("hardware", {})
  total = sum(r.get("train_seconds", 0) + r.get("evaluate_seconds", 0) for r in runs)
  rows = [["design", f"{summary['folds']} grouped, stratified folds x {summary['repeats']} "
                     f"repeat(s) of {summary['pool']}; each fold model scored on its "
                     f"held-out part and on {split}"],
          ["hardware", f"{hw.get('cpu', 'n/a')} ({hw.get('cpu_cores', '?')} cores)"],
          ["time, all folds", sections.seconds(total)]]
  parts = [html.section("run", "What ran", sections.run_section(rows, sections.flat_options(opts)))]
  parts.append(html.section("data", "Data", sections.audit(b) if b else
                               '<p class="warn">dataset not available: no audit</p>'))
  fold_rows = [[f["fold"], str(f["heldout_examples"]), sections.fmt(f["heldout_accuracy"]),
                sections.fmt(f["heldout_macro_f1"]), sections.fmt(f[f"{split}_leak_free_accuracy"])]
               for f in summary["per_fold"]]
  ms = summary["mean_sd"]
  fold_rows.append(["mean \u00b1 sd", "", *[
      f"{ms[k]['mean']:.3f} \u00b1 {ms[k]['sd']:.3f}"
      for k in ("heldout_accuracy", "heldout_macro_f1", f"{split}_leak_free_accuracy")]])
  curves = "".join(html.image(png, f"training curves of {f}", 480) for f in folds
                   if (png := run_files.read_bytes(os.path.join(root, f), "training_curves.png")))
  parts.append(html.section("training", "Folds", html.table(
      ["fold", "held out", "held-out accuracy", "held-out macro F1",
       f"{split} leak-free accuracy"], fold_rows) + f'<div class="figures">{curves}</div>'))
  ensemble = predictions.load(root, f"{split}_ensemble")
  class_names = list(ensemble.class_names)
  body = ""
  for r, oof in enumerate(summary["out_of_fold"]):
    body += (f"<h3>Out-of-fold predictions (repeat {r}): every pool image scored by the "
             "model that did not train on it</h3>"
             + sections.metrics_table(oof, class_names, ("all",), ("out-of-fold",)))
  body += (f"<h3>Ensemble of the {len(folds)} fold models on {html.esc(split)}</h3>"
           + sections.metrics_table(summary["ensemble"], class_names))
  parts.append(html.section("metrics", "Metrics", body))
  parts.append(html.section("baselines", "Better than trivial?", "".join(
      sections.baselines(against, f"the out-of-fold predictions (repeat {r})")
      for r, against in enumerate(summary.get("baseline") or [None]))))
  confusion = "".join(sections.confusion_table(m["all"]["confusion_matrix"], class_names, t)
                      for m, t in [(o, f"out-of-fold {r}")
                                   for r, o in enumerate(summary["out_of_fold"])]
                      + [(summary["ensemble"], f"ensemble {split}")])
  parts.append(html.section("confusion", "Confusion matrices", confusion))
  cal = summary["ensemble"]["all"].get("calibration", {})
  parts.append(html.section("calibration", "Calibration", (
      f"<p>Ensemble on {html.esc(split)}: ECE (15 bins) {sections.fmt(cal.get('ece_15_bins'))}, "
      "Brier score "
      f"{sections.fmt(cal.get('brier'))}.</p>")))
  if b:
    models = [saved.load(os.path.join(root, f, "model.keras")) for f in folds]
    body = gallery.misclassified(models, ensemble, b, limit)
  else:
    body = '<p class="warn">dataset not available: no images</p>'
  parts.append(html.section("gallery", f"Misclassified {split} images (ensemble)", body))
  e = summary["ensemble"]
  return html.page(f"ctdist cross-validation: {root}",
                   f"{opts.get('dataset')} \u00b7 ensemble {split} accuracy "
                   f"{metrics.with_interval(e['all'], 'accuracy')}, leak-free "
                   f"{metrics.with_interval(e['leak_free'], 'accuracy')}", parts)
