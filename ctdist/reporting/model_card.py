"""model_card.md and model_card.json beside a trained model: what it is for, the data, how
it was trained, its metrics with their intervals (whole split and leak-free), calibration,
the pointing game where one was played, and what it cannot do.

The sections and field names are those of Google's Model Card Toolkit (model_details,
model_parameters, quantitative_analysis, considerations), after Mitchell et al. 2019,
"Model Cards for Model Reporting"; the toolkit itself is not used.
"""

import datetime
import os

from ctdist.config import flagtree
from ctdist.data import examples
from ctdist.model import saved
from ctdist.saliency import choice
from ctdist.scoring import metrics
from ctdist.store import atomic
from ctdist.store import options_file
from ctdist.store import run_files

SCHEMA = "ctdist model card 1 (Model Card Toolkit sections, Mitchell et al. 2019)"
NOT_FOR_DIAGNOSIS = (
    "Research on the public Kaggle chest-CT slices (ML engineering, medical-imaging "
    "methods). Not for diagnosis, screening or any decision about a patient: it was not "
    "validated clinically and is not a medical device.")


def _data(b, eval_split: str, report: dict) -> dict:
  names = list(b.info.features["label"].names)
  splits = {}
  for split in sorted(b.info.splits):
    counts = examples.class_counts(b, split)
    splits[split] = {"examples": int(counts.sum()),
                     "per_class": {n: int(c) for n, c in zip(names, counts)}}
  return {"name": b.info.full_name, "splits": splits, "eval_split": eval_split,
          "leaked_in_eval_split": report["num_leaked"],
          "leak_note": (f"{report['num_leaked']} of the {report['all']['num_examples']} "
                        f"{eval_split} images are copies of images of an earlier split; the "
                        "leak-free column leaves them out")}


def _performance(report: dict, class_names: list[str]) -> list[dict]:
  out = []
  for label, path, iv_path in metrics.rows(class_names):
    for column in ("all", "leak_free"):
      value, iv = metrics.cell_value(report[column], path, iv_path)
      if value is None:
        continue
      entry = {"type": label, "slice": column, "value": value}
      if iv:
        entry["confidence_interval"] = {"lower_bound": iv["low"], "upper_bound": iv["high"]}
      out.append(entry)
  return out


def _explanations(model_dir: str, eval_split: str, checksum: str) -> list[dict]:
  """The pointing games kept in explain/ for these weights (ctdist.explain, the report)."""
  games = []
  for method in ("gradcam", "occlusion"):
    path = choice.game_file(os.path.join(model_dir, "explain"), eval_split, method)
    game = run_files.read_json(os.path.dirname(path), os.path.basename(path), None)
    if game and game.get("weights_checksum") == checksum:
      games.append({"method": method, "hits": game["hits"], "images": game["images"],
                    "share": game["share"], "chance": game["chance"],
                    "interval": game.get("interval"), "passes": choice.passes(game)})
  return games


def _limitations(opts, data: dict, games: list[dict], calibrated: bool) -> list[str]:
  out = []
  if opts.data.dataset.endswith("/synthetic"):
    out.append("SYNTHETIC data (tfds_ctscan/synthetic: drawn shapes on a drawn chest, not "
               "CT scans): these numbers say nothing about real scans.")
  weights = opts.weights
  out.append("Trained from scratch (--weights=none): no ImageNet features; far below what "
             "ImageNet weights reach on real slices." if weights == "none" else
             f"ResNet50 started from {weights} weights (ImageNet), fine-tuned on ~600 "
             "training slices: a small set for a 23-million-weight network.")
  size = opts.image_size
  out.append(f"Images are resized to {size} x {size} pixels, aspect not kept"
             + (f" (ResNet50 was designed for 224; at {size} detail is lost)" if size < 224
                else "") + ".")
  out.append("One 2-D slice per image, chosen by whoever made the public set: no volume, no "
             "patient identifiers, no scanner or site information; the test split is not an "
             "independent population.")
  if data["leaked_in_eval_split"]:
    out.append("The public split leaks: " + data["leak_note"] + ".")
  if not calibrated:
    out.append("Probabilities are not calibrated (no --calibrate / ctdist.calibrate): do "
               "not read them as frequencies.")
  if not games:
    out.append("Where the model looks was not checked: no pointing game was played (the "
               "Kaggle slices have no drawn findings).")
  elif not any(g["passes"] for g in games):
    out.append("No saliency method passed the pointing game: the pictures do not show "
               "where the model looks.")
  return out


def facts(model_dir: str, b) -> dict:
  """The card's facts, from the run's files (model.keras, metrics.json, options.json, the
  pointing games kept for these weights) and its dataset."""
  weights_checksum = saved.weights_checksum(saved.load(os.path.join(model_dir, "model.keras")))
  result = run_files.read_json(model_dir, run_files.METRICS)
  opts = options_file.load(model_dir)
  split = opts.eval_split
  report, run = result[split], result.get("run", {})
  class_names = list(b.info.features["label"].names)
  data = _data(b, split, report)
  if opts.subset_file:  # a ctdist.cv fold: trained and validated on parts of the pool
    data["trained_on"] = f"the train part of {opts.subset_file} (its valid part validated)"
  games = _explanations(model_dir, split, weights_checksum)
  calibration = result.get("calibration")
  return {
      "schema": SCHEMA,
      "model_details": {
          "name": "ctdist ResNet50 chest-CT classifier "
                  f"({os.path.basename(model_dir.rstrip('/'))})",
          "overview": ("Classifies one chest-CT slice as " + ", ".join(class_names)
                       + f": a Keras ResNet50 with a new head; up to {opts.schedule.head_epochs} "
                       "epoch(s) training the head alone, then up to "
                       f"{opts.schedule.finetune_epochs} fine-tuning the base."),
          "version": {"name": weights_checksum,
                      "date": datetime.date.today().isoformat()},
          "path": model_dir,
          "references": ["https://www.kaggle.com/datasets/mohamedhanyyy/chest-ctscan-images",
                         "He et al. 2016, Deep Residual Learning for Image Recognition"]},
      "model_parameters": {
          "model_architecture": f"ResNet50 (keras.applications), {opts.image_size} px input, "
                                "global average pooling, dropout, dense softmax",
          "input_format": (f"raw 0-255 RGB, {opts.image_size} x {opts.image_size} (model.keras); "
                           "PNG or JPEG bytes (saved_model/, serving_default)"),
          "output_format": "probabilities of " + ", ".join(class_names),
          "data": data},
      "training": {"options": flagtree.flat(opts), "strategy": run.get("strategy"),
                   "replicas": run.get("replicas"), "precision": run.get("precision"),
                   "hardware": run.get("hardware"), "train_seconds": run.get("train_seconds")},
      "quantitative_analysis": {"split": split,
                                "intervals": (report["all"].get("intervals") or {}).get("method"),
                                "performance_metrics": _performance(report, class_names)},
      "calibration": ({"temperature": calibration["temperature"],
                       "fit_split": calibration["fit_split"],
                       split: calibration[split]["all"]} if calibration else None),
      "explanations": games,
      "considerations": {
          "users": ["ML engineers and medical-imaging researchers"],
          "use_cases": [NOT_FOR_DIAGNOSIS],
          "limitations": _limitations(opts, data, games, bool(calibration)),
          "ethical_considerations": [{
              "name": "A wrong answer about cancer harms a patient.",
              "mitigation_strategy": "Not for clinical use; every figure is given with its "
                                     "95 % interval and without the leaked test copies."}]},
  }


def _table(rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def markdown(card: dict) -> str:
  """The card as Markdown, one section per toolkit section."""
  d, p = card["model_details"], card["model_parameters"]
  data, q, t = p["data"], card["quantitative_analysis"], card["training"]
  names = list(next(iter(data["splits"].values()))["per_class"])
  values = {}
  for m in q["performance_metrics"]:
    iv = m.get("confidence_interval")
    values[(m["type"], m["slice"])] = f"{m['value']:.3f}" + (
        f" [{iv['lower_bound']:.3f}, {iv['upper_bound']:.3f}]" if iv else "")
  kinds = list(dict.fromkeys(m["type"] for m in q["performance_metrics"]))
  out = [f"# Model card: {d['name']}", "", d["overview"], "",
         "## Intended use", "", card["considerations"]["use_cases"][0], "",
         "Users: " + "; ".join(card["considerations"]["users"]) + ".", "",
         "## Model details", "",
         _table([["field", "value"], ["architecture", p["model_architecture"]],
                 ["input", p["input_format"]], ["output", p["output_format"]],
                 ["weights checksum", str(d["version"]["name"])],
                 ["written", d["version"]["date"]], ["folder", d["path"]]]), "",
         "## Data", "", f"Dataset `{data['name']}`.", "",
         _table([["split", "images", *names]] + [
             [s, str(v["examples"]), *(str(v["per_class"][n]) for n in names)]
             for s, v in data["splits"].items()]), "", data["leak_note"] + ".",
         *([f"Trained on {data['trained_on']}."] if "trained_on" in data else []), "",
         "## Training", "",
         _table([["", ""], ["strategy", f"{t['strategy']}, {t['replicas']} replica(s)"],
                 ["precision", str(t["precision"])],
                 ["hardware", str((t["hardware"] or {}).get("cpu"))],
                 ["training time", f"{t['train_seconds'] or 0:.0f} s"]]), "",
         "Options: " + ", ".join(f"`--{k}={v}`" for k, v in t["options"].items()), "",
         f"## Quantitative analysis ({q['split']} split)", "",
         f"95 % intervals in brackets ({q['intervals']}).", "",
         _table([["metric", "all", "leak-free"]] + [
             [k, values.get((k, "all"), "n/a"), values.get((k, "leak_free"), "n/a")]
             for k in kinds]), "", "## Calibration", ""]
  cal = card["calibration"]
  if cal:
    scores = cal[q["split"]]
    out += [f"Temperature {cal['temperature']:.3f}, fitted on {cal['fit_split']}; on "
            f"{q['split']}: NLL {scores['before']['nll']:.3f} -> {scores['after']['nll']:.3f}, "
            f"ECE {scores['before']['ece_15_bins']:.3f} -> {scores['after']['ece_15_bins']:.3f}."]
  else:
    out += ["Not calibrated (python -m ctdist.calibrate fits a temperature)."]
  out += ["", "## Where the model looks (pointing game)", ""]
  if card["explanations"]:
    out += [f"- {g['method']}: {g['hits']}/{g['images']} = {g['share']:.3f} against chance "
            f"{g['chance']:.3f}: {'passes' if g['passes'] else 'fails'} "
            f"({choice.RULE})" for g in card["explanations"]]
  else:
    out += ["Not measured."]
  out += ["", "## Limitations", ""] + [f"- {x}" for x in card["considerations"]["limitations"]]
  e = card["considerations"]["ethical_considerations"][0]
  out += ["", "## Ethical considerations", "", f"{e['name']} {e['mitigation_strategy']}", ""]
  return "\n".join(out)


def write(model_dir: str, b) -> str:
  """Writes model_card.md and model_card.json into `model_dir`; returns the .md's path."""
  card = facts(model_dir, b)
  atomic.write_json(os.path.join(model_dir, run_files.MODEL_CARD_JSON), card)
  path = os.path.join(model_dir, run_files.MODEL_CARD)
  atomic.write_text(path, markdown(card))
  return path
