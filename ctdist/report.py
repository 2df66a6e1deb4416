"""One self-contained report.html of a training run or a cross-validation folder: what
ran, the data, training curves, metrics with intervals, confusion matrices, calibration,
and the misclassified test images with their Grad-CAM overlays.

Run: python -m ctdist.report MODEL_DIR   (a ctdist.train --model_dir, or a ctdist.cv folder)
The page embeds its images (data: URIs) and needs no network and no JavaScript.
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import json
import os

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import explain
from ctdist import gradcam
from ctdist import html
from ctdist import metrics
from ctdist import options
from ctdist import overlay
from ctdist import predictions

FILENAME = "report.html"
GALLERY = 24  # misclassified images shown, most confident mistakes first


def _read(path: str, default=None):
  if not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _png(path: str) -> bytes | None:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def _flat(tree: dict, prefix: str = "") -> list[tuple[str, str]]:
  out = []
  for key, value in tree.items():
    if isinstance(value, dict):
      out += _flat(value, f"{prefix}{key}.")
    else:
      out.append((f"{prefix}{key}", json.dumps(value) if not isinstance(value, str)
                  else value))
  return out


def _fmt(value, iv=None) -> str:
  if value is None:
    return "n/a"
  text = f"{value:.3f}" if isinstance(value, float) else str(value)
  return text + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")


def metrics_table(report: dict, class_names: list[str], columns=("all", "leak_free"),
                  titles=("all", "leak-free")) -> str:
  """The report's rows (`metrics.rows`), one column per part, intervals in brackets."""
  cols = [report[c] for c in columns]
  rows = [["examples", *[str(c["num_examples"]) for c in cols]]]
  if "accuracy" in cols[0]:
    rows += [[label, *[_fmt(*metrics.cell_value(c, path, iv)) for c in cols]]
             for label, path, iv in metrics.rows(class_names)]
  method = (cols[0].get("intervals") or {}).get("method")
  note = f'<p class="note">Brackets: 95 % intervals, {html.esc(method)}.</p>' if method else ""
  return html.table(["", *titles], rows, "metrics") + note


def confusion_table(matrix, class_names: list[str], title: str) -> str:
  header = [f"{title}: true \u2193 / predicted \u2192", *class_names]
  return html.table(header, [[n, *map(str, row)] for n, row in zip(class_names, matrix)],
                    "confusion")


def _audit(b) -> str:
  """Counts per split and class, and the copies flagged leaked, read from the dataset."""
  names = list(b.info.features["label"].names)
  rows = []
  for split in b.info.splits:
    counts = data_lib.class_counts(b, split)
    rows.append([split, *map(str, counts), str(int(counts.sum())),
                 str(data_lib.leaked_count(b, split))])
  return (f"<p>{html.esc(b.info.full_name)} in {html.esc(b.data_dir)}</p>"
          + html.table(["split", *names, "total", "leaked copies"], rows)
          + '<p class="note">Leaked: an exact or near copy of an image of an earlier split; '
          "the leak-free column leaves them out.</p>")


def gallery(models: list[keras.Model], p: predictions.Predictions, b,
            limit: int = GALLERY) -> str:
  """The misclassified examples of `p` (most confident first), each with the Grad-CAM
  of the predicted class (averaged over `models`, the folds of an ensemble)."""
  wrong = np.flatnonzero(p.probs.argmax(1) != p.labels)
  if not len(wrong):
    return f"<p>No misclassified image in {html.esc(p.split)} ({len(p.labels)} images).</p>"
  wrong = wrong[np.argsort(-p.probs[wrong].max(1), kind="stable")]
  shown = wrong[:limit]
  if not len(shown):
    return f"<p>{len(wrong)} misclassified; the gallery is off (--gallery=0).</p>"
  size = int(models[0].input_shape[1])
  names = [str(p.file_names[i]) for i in shown]
  split = p.split.removesuffix("_ensemble")
  images = data_lib.images_named(b, split, size, names)
  batch = np.stack([images[n] for n in names])
  predicted = p.probs[shown].argmax(1)
  explainers = [gradcam.Explainer(m, gradcam.choose_layer(m)) for m in models]
  cams = np.mean([ex.maps(batch, predicted)[0] for ex in explainers], axis=0)
  figures = []
  for i, name, image, cam in zip(shown, names, batch, cams):
    true, pred = p.class_names[p.labels[i]], p.class_names[p.probs[i].argmax()]
    pictures = np.concatenate([image, overlay.blend(image, cam)], axis=1)
    figures.append(
        f"<figure>{html.image(overlay.png(overlay.enlarge(pictures, 112)), name)}"
        f"<figcaption><b>{html.esc(name)}</b><br>true {html.esc(true)} "
        f"(p {p.probs[i, p.labels[i]]:.2f}), predicted <b>{html.esc(pred)}</b> "
        f"(p {p.probs[i].max():.2f})" + (" \u00b7 leaked copy" if p.leaked[i] else "")
        + "</figcaption></figure>")
  layer = explainers[0].layer
  note = (f'<p class="note">{len(wrong)} of {len(p.labels)} {html.esc(p.split)} images '
          f"misclassified; {len(shown)} shown (most confident first). Left: the model's "
          f"input; right: Grad-CAM of the predicted class at {html.esc(layer.name)} "
          f"({layer.height}\u00d7{layer.width} map"
          + (f", averaged over {len(models)} fold models" if len(models) > 1 else "")
          + "), red = raised the score most.</p>")
  return note + '<div class="gallery">' + "".join(figures) + "</div>"


def _run_section(rows: list[list[str]], flat_options: list[tuple[str, str]]) -> str:
  return (html.table(None, rows, "info")
          + '<p class="note">Options (the run\'s flags.txt repeats it):</p>'
          + html.pairs(flat_options))


def _seconds(value) -> str:
  return "n/a" if value is None else f"{value:.0f} s ({value / 60:.1f} min)"


def run_report(model_dir: str, b=None, limit: int = GALLERY) -> str:
  """The HTML of a ctdist.train run folder (metrics.json, history.json, options.json).

  Args:
    model_dir: the run's folder.
    b: its dataset's builder, for the data audit and the gallery's images (left out
      with a note without it).
    limit: misclassified images shown at most.
  """
  result = _read(os.path.join(model_dir, "metrics.json"))
  if result is None:
    raise FileNotFoundError(f"{model_dir}/metrics.json not found: not a finished "
                            "ctdist.train run (the report is written when training ends)")
  opts = _read(os.path.join(model_dir, options.FILENAME), {})
  history = _read(os.path.join(model_dir, "history.json"), [])
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
          ["precision", str(run.get("precision"))],
          ["global batch", str(run.get("global_batch"))],
          ["hardware", f"{hw.get('cpu', 'n/a')} ({hw.get('cpu_cores', '?')} cores); "
                       f"GPUs: {', '.join(hw.get('gpus', [])) or 'none'}; "
                       f"TPU: {'yes' if hw.get('tpu') else 'no'}"],
          ["software", f"TensorFlow {hw.get('tensorflow', '?')}, Python "
                       f"{hw.get('python', '?')}"],
          ["training time", _seconds(run.get("train_seconds"))],
          ["evaluation time", _seconds(run.get("evaluate_seconds"))]]
  rows += [[f"images/s ({phase}, mean of {len(v)} epochs)", f"{np.mean(v):.1f}"]
           for phase, v in speeds.items()]
  sections = [html.section("run", "What ran", _run_section(rows, _flat(opts)))]
  sections.append(html.section("data", "Data", _audit(b) if b else
                               '<p class="warn">dataset not available: no audit</p>'))
  curves = _png(os.path.join(model_dir, "training_curves.png"))
  epochs = html.table(["phase", "epoch", "loss", "accuracy", "val loss", "val accuracy",
                       "learning rate", "images/s"],
                      [[h["phase"], str(h["epoch"]), f"{h['loss']:.4f}", f"{h['accuracy']:.3f}",
                        f"{h['val_loss']:.4f}", f"{h['val_accuracy']:.3f}", f"{h['lr']:.2e}",
                        f"{h['images_per_sec']:.1f}"] for h in history])
  sections.append(html.section("training", "Training", (
      f'<div class="figures">{html.image(curves, "training curves")}</div>' if curves
      else "") + (epochs if history else
                  '<p class="warn">history.json is missing or empty: no epoch to show</p>')))
  sections.append(html.section("metrics", f"Metrics on {split}", (
      f"<p>{report['num_leaked']} leaked copies excluded from the leak-free column."
      + (f" Softmax temperature {report['temperature']:.3f}." if report.get("temperature", 1)
         != 1 else "") + "</p>") + metrics_table(report, class_names)))
  confusion = "".join(confusion_table(report[c]["confusion_matrix"], class_names, t)
                      for c, t in (("all", "all"), ("leak_free", "leak-free"))
                      if "confusion_matrix" in report[c])
  sections.append(html.section("confusion", "Confusion matrices", confusion or (
      '<p class="warn">no confusion matrix: the split has no labelled example</p>')))
  sections.append(html.section("calibration", "Calibration", _calibration(
      model_dir, split, report, result.get("calibration"))))
  if b:
    model = _model(model_dir)
    body = _pointing(model, b, split) + gallery([model], p, b, limit)
  else:
    body = '<p class="warn">dataset not available: no images</p>'
  sections.append(html.section("gallery", f"Misclassified {split} images", body))
  return html.page(f"ctdist run: {model_dir}", f"{opts.get('dataset')} \u00b7 {split} "
                   f"accuracy {metrics.with_interval(report['all'], 'accuracy')}, leak-free "
                   f"{metrics.with_interval(report['leak_free'], 'accuracy')}", sections)


def _pointing(model: keras.Model, b, split: str) -> str:
  """The pointing game's line where the dataset records its findings' boxes."""
  if "findings" not in b.info.features:
    return ""
  try:
    r = explain.pointing_game(explain.explainer(model), b, split)
  except ValueError as e:  # no correctly classified image with a finding
    return f"<p><b>Pointing game</b>: not played ({html.esc(e)}).</p>"
  iv = r.get("interval")
  return (f"<p><b>Pointing game</b> (where the findings were drawn): the Grad-CAM peak "
          f"falls inside the finding's box for {r['hits']} of {r['images']} correctly "
          f"classified {html.esc(split)} images with a finding = {r['share']:.3f}"
          + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")
          + f"; chance (share of the map's cells touching the box) {r['chance']:.3f}. "
          f"Per class: "
          + html.esc(", ".join(f"{k} {c['hits']}/{c['images']}"
                               for k, c in r["per_class"].items()))
          + ". <span class=\"note\">python -m ctdist.explain --pointing_game "
          "--method=occlusion checks it without gradients.</span></p>")


def _calibration(model_dir, split, report, fitted) -> str:
  cal = report["all"].get("calibration", {})
  text = (f"<p>ECE (15 bins) {_fmt(cal.get('ece_15_bins'))}, Brier score "
          f"{_fmt(cal.get('brier'))}.</p>")
  if fitted:
    text += "<p>Temperature fitted: " + html.esc(
        ", ".join(f"{k} {_fmt(v) if isinstance(v, float) else v}" for k, v in fitted.items()
                  if not isinstance(v, (dict, list)))) + "</p>"
  diagram = _png(os.path.join(model_dir, f"reliability_{split}.png"))
  return text + (f'<div class="figures">{html.image(diagram, "reliability diagram")}</div>'
                 if diagram else "")


def _model(model_dir: str) -> keras.Model:
  return keras.saving.load_model(os.path.join(model_dir, "model.keras"), safe_mode=True)


def cv_report(root: str, b=None, limit: int = GALLERY) -> str:
  """The HTML of a ctdist.cv folder (cv_summary.json and its folds)."""
  summary = _read(os.path.join(root, "cv_summary.json"))
  if summary is None:
    raise FileNotFoundError(f"{root}/cv_summary.json not found: aggregate first "
                            f"(python -m ctdist.cv aggregate {root})")
  split = summary["split"]
  folds = [f["fold"] for f in summary["per_fold"]]
  first = os.path.join(root, folds[0])
  opts = _read(os.path.join(first, options.FILENAME), {})
  runs = [(_read(os.path.join(root, f, "metrics.json"), {}) or {}).get("run", {})
          for f in folds]
  hw = runs[0].get("hardware", {})
  total = sum(r.get("train_seconds", 0) + r.get("evaluate_seconds", 0) for r in runs)
  rows = [["design", f"{summary['folds']} grouped, stratified folds x {summary['repeats']} "
                     f"repeat(s) of {summary['pool']}; each fold model scored on its "
                     f"held-out part and on {split}"],
          ["hardware", f"{hw.get('cpu', 'n/a')} ({hw.get('cpu_cores', '?')} cores)"],
          ["time, all folds", _seconds(total)]]
  sections = [html.section("run", "What ran", _run_section(rows, _flat(opts)))]
  sections.append(html.section("data", "Data", _audit(b) if b else
                               '<p class="warn">dataset not available: no audit</p>'))
  fold_rows = [[f["fold"], str(f["heldout_examples"]), _fmt(f["heldout_accuracy"]),
                _fmt(f["heldout_macro_f1"]), _fmt(f[f"{split}_leak_free_accuracy"])]
               for f in summary["per_fold"]]
  ms = summary["mean_sd"]
  fold_rows.append(["mean \u00b1 sd", "", *[
      f"{ms[k]['mean']:.3f} \u00b1 {ms[k]['sd']:.3f}"
      for k in ("heldout_accuracy", "heldout_macro_f1", f"{split}_leak_free_accuracy")]])
  curves = "".join(html.image(png, f"training curves of {f}", 480) for f in folds
                   if (png := _png(os.path.join(root, f, "training_curves.png"))))
  sections.append(html.section("training", "Folds", html.table(
      ["fold", "held out", "held-out accuracy", "held-out macro F1",
       f"{split} leak-free accuracy"], fold_rows) + f'<div class="figures">{curves}</div>'))
  ensemble = predictions.load(root, f"{split}_ensemble")
  class_names = list(ensemble.class_names)
  body = ""
  for r, oof in enumerate(summary["out_of_fold"]):
    body += (f"<h3>Out-of-fold predictions (repeat {r}): every pool image scored by the "
             "model that did not train on it</h3>"
             + metrics_table(oof, class_names, ("all",), ("out-of-fold",)))
  body += (f"<h3>Ensemble of the {len(folds)} fold models on {html.esc(split)}</h3>"
           + metrics_table(summary["ensemble"], class_names))
  sections.append(html.section("metrics", "Metrics", body))
  confusion = "".join(confusion_table(m["all"]["confusion_matrix"], class_names, t)
                      for m, t in [(o, f"out-of-fold {r}")
                                   for r, o in enumerate(summary["out_of_fold"])]
                      + [(summary["ensemble"], f"ensemble {split}")])
  sections.append(html.section("confusion", "Confusion matrices", confusion))
  cal = summary["ensemble"]["all"].get("calibration", {})
  sections.append(html.section("calibration", "Calibration", (
      f"<p>Ensemble on {html.esc(split)}: ECE (15 bins) {_fmt(cal.get('ece_15_bins'))}, "
      "Brier score "
      f"{_fmt(cal.get('brier'))}.</p>")))
  body = gallery([_model(os.path.join(root, f)) for f in folds], ensemble, b, limit) if b \
      else '<p class="warn">dataset not available: no images</p>'
  sections.append(html.section("gallery", f"Misclassified {split} images (ensemble)", body))
  e = summary["ensemble"]
  return html.page(f"ctdist cross-validation: {root}",
                   f"{opts.get('dataset')} \u00b7 ensemble {split} accuracy "
                   f"{metrics.with_interval(e['all'], 'accuracy')}, leak-free "
                   f"{metrics.with_interval(e['leak_free'], 'accuracy')}", sections)


def is_cv(folder: str) -> bool:
  return tf.io.gfile.exists(os.path.join(folder, "cv_summary.json"))


def write(folder: str, b=None, limit: int = GALLERY) -> str:
  """Writes folder/report.html (a run's or a cv folder's); returns its path."""
  page = (cv_report if is_cv(folder) else run_report)(folder, b, limit)
  path = os.path.join(folder, FILENAME)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(page)
  logging.info("report: %s", path)
  return path


def builder_of(folder: str, dataset: str | None = None, data_dir: str | None = None):
  """The dataset of a run (or of a cv folder's first fold), unless named."""
  if is_cv(folder):
    summary = _read(os.path.join(folder, "cv_summary.json"))
    folder = os.path.join(folder, summary["per_fold"][0]["fold"])
  return data_lib.builder(*options.run_dataset(folder, dataset, data_dir))


def main(argv):
  f = flags.FLAGS
  console.setup(f.verbosity)
  if len(argv) != 2:
    raise app.UsageError("usage: python -m ctdist.report MODEL_DIR")
  try:
    b = builder_of(argv[1], f.dataset, f.data_dir)
    print(write(argv[1], b, f.gallery))
  except (FileNotFoundError, data_lib.DatasetNotBuiltError, options.NoOptionsError,
          options.OptionsFileError, KeyError) as e:
    console.fail(e)


if __name__ == "__main__":
  flags.DEFINE_string("dataset", None, "TFDS name; default: the run's (options.json).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir; default: the run's.")
  flags.DEFINE_integer("gallery", GALLERY, "Misclassified images shown at most.",
                       lower_bound=0)
  app.run(main)
