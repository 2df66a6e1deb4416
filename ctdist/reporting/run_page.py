"""report.html of a ctdist.train run folder: what ran, the data, training, metrics,
confusion matrices, calibration, and the misclassified images."""

import os

import numpy as np

from ctdist.config import commands as commands_config
from ctdist.model import saved
from ctdist.reporting import gallery
from ctdist.reporting import html
from ctdist.reporting import sections
from ctdist.saliency import choice
from ctdist.scoring import baseline
from ctdist.scoring import metrics
from ctdist.scoring import predictions
from ctdist.store import run_files


def run_report(model_dir: str, b=None, limit: int = commands_config.GALLERY) -> str:
  """The HTML of a ctdist.train run folder (metrics.json, history.json, options.json).

  Args:
    model_dir: the run's folder.
    b: its dataset's builder, for the data audit and the gallery's images (left out
      with a note without it).
    limit: misclassified images shown at most.
  """
  result = run_files.read_json(model_dir, run_files.METRICS, None)
  if result is None:
    raise run_files.UnfinishedRunError(f"{model_dir}/metrics.json not found: not a finished "
                            "ctdist.train run (the report is written when training ends)")
  opts = sections.run_options(model_dir)
  history = run_files.load_history(model_dir)
  split = opts.get("eval_split", "test")
  report, run = result[split], result.get("run", {})
  p = predictions.load(model_dir, split)
  class_names = list(p.class_names)
  hw = run.get("hardware", {})
  speeds = {}
  for h in history:
    speeds.setdefault(h["phase"], []).append(h["images_per_sec"])
  rows = [["dataset", str(opts.get("dataset"))],
          ["strategy", f"{run.get('strategy')}: {run.get('replicas')} replica(s), "
                       f"{run.get('workers')} worker(s)"],
          *([["strategy fallback", run["strategy_fallback"]]]
            if run.get("strategy_fallback") else []),
          ["precision", str(run.get("precision"))],
          ["global batch", str(run.get("global_batch"))],
          ["hardware", f"{hw.get('cpu', 'n/a')} ({hw.get('cpu_cores', '?')} cores); "
                       f"GPUs: {', '.join(hw.get('gpus', [])) or 'none'}; "
                       f"TPU: {'yes' if hw.get('tpu') else 'no'}"],
          ["software", f"TensorFlow {hw.get('tensorflow', '?')}, Python "
                       f"{hw.get('python', '?')}"],
          ["training time", sections.seconds(run.get("train_seconds"))],
          ["evaluation time", sections.seconds(run.get("evaluate_seconds"))]]
  rows += [[f"images/s ({phase}, mean of {len(v)} epochs)", f"{np.mean(v):.1f}"]
           for phase, v in speeds.items()]
  card = ("<p>Model card (intended use, data, metrics, limitations): "
          f'<a href="{run_files.MODEL_CARD}">{run_files.MODEL_CARD}</a>, the same facts in '
          f'<a href="{run_files.MODEL_CARD_JSON}">{run_files.MODEL_CARD_JSON}</a>.</p>')
  parts = [html.section("run", "What ran",
                        card + sections.run_section(rows, sections.flat_options(opts)))]
  parts.append(html.section("data", "Data", sections.audit(b) if b else
                               '<p class="warn">dataset not available: no audit</p>'))
  curves = run_files.read_bytes(model_dir, "training_curves.png")
  epochs = html.table(["phase", "epoch", "loss", "accuracy", "val loss", "val accuracy",
                       "learning rate", "images/s"],
                      [[h["phase"], str(h["epoch"]), f"{h['loss']:.4f}", f"{h['accuracy']:.3f}",
                        f"{h['val_loss']:.4f}", f"{h['val_accuracy']:.3f}", f"{h['lr']:.2e}",
                        f"{h['images_per_sec']:.1f}"] for h in history])
  parts.append(html.section("training", "Training", (
      f'<div class="figures">{html.image(curves, "training curves")}</div>' if curves
      else "") + (epochs if history else
                  '<p class="warn">history.json is missing or empty: no epoch to show</p>')))
  parts.append(html.section("metrics", f"Metrics on {split}", (
      f"<p>{report['num_leaked']} leaked copies excluded from the leak-free column."
      + (f" Softmax temperature {report['temperature']:.3f}." if report.get("temperature", 1)
         != 1 else "") + "</p>") + sections.metrics_table(report, class_names)))
  confusion = "".join(sections.confusion_table(report[c]["confusion_matrix"], class_names, t)
                      for c, t in (("all", "all"), ("leak_free", "leak-free"))
                      if "confusion_matrix" in report[c])
  parts.append(html.section("baselines", "Better than trivial?", sections.baselines(
      baseline.read(model_dir, split), split)))
  parts.append(html.section("confusion", "Confusion matrices", confusion or (
      '<p class="warn">no confusion matrix: the split has no labelled example</p>')))
  parts.append(html.section("calibration", "Calibration", sections.calibration(
      model_dir, split, report, result.get("calibration"))))
  if b:
    model = saved.load(os.path.join(model_dir, "model.keras"))
    pick = choice.choose(model, b, split, os.path.join(model_dir, "explain"))
    body = gallery.choice_line(pick, split) + gallery.misclassified([model], p, b, limit, pick)
  else:
    body = '<p class="warn">dataset not available: no images</p>'
  parts.append(html.section("gallery", f"Misclassified {split} images", body))
  return html.page(f"ctdist run: {model_dir}", f"{opts.get('dataset')} \u00b7 {split} "
                   f"accuracy {metrics.with_interval(report['all'], 'accuracy')}, leak-free "
                   f"{metrics.with_interval(report['leak_free'], 'accuracy')}", parts)
