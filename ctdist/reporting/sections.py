"""Pieces of report.html both pages use: option lists, metric and confusion tables, the
data audit, calibration."""

import json


from ctdist.config import flagtree
from ctdist.data import examples
from ctdist.reporting import html
from ctdist.scoring import metrics
from ctdist.store import options_file
from ctdist.store import run_files


def run_options(folder: str) -> dict:
  """{flag name: value} of the run in `folder` (empty without options.json)."""
  try:
    return flagtree.flat(options_file.load(folder))
  except options_file.NoOptionsError:
    return {}


def flat_options(tree: dict, prefix: str = "") -> list[tuple[str, str]]:
  out = []
  for key, value in tree.items():
    if isinstance(value, dict):
      out += flat_options(value, f"{prefix}{key}.")
    else:
      out.append((f"{prefix}{key}", json.dumps(value) if not isinstance(value, str)
                  else value))
  return out


def fmt(value, iv=None) -> str:
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
    rows += [[label, *[fmt(*metrics.cell_value(c, path, iv)) for c in cols]]
             for label, path, iv in metrics.rows(class_names)]
  method = (cols[0].get("intervals") or {}).get("method")
  note = f'<p class="note">Brackets: 95 % intervals, {html.esc(method)}.</p>' if method else ""
  return html.table(["", *titles], rows, "metrics") + note


def confusion_table(matrix, class_names: list[str], title: str) -> str:
  header = [f"{title}: true \u2193 / predicted \u2192", *class_names]
  return html.table(header, [[n, *map(str, row)] for n, row in zip(class_names, matrix)],
                    "confusion")


def audit(b) -> str:
  """Counts per split and class, and the copies flagged leaked, read from the dataset."""
  names = list(b.info.features["label"].names)
  rows = []
  for split in b.info.splits:
    counts = examples.class_counts(b, split)
    rows.append([split, *map(str, counts), str(int(counts.sum())),
                 str(examples.leaked_count(b, split))])
  return (f"<p>{html.esc(b.info.full_name)} in {html.esc(b.data_dir)}</p>"
          + html.table(["split", *names, "total", "leaked copies"], rows)
          + '<p class="note">Leaked: an exact or near copy of an image of an earlier split; '
          "the leak-free column leaves them out.</p>")


def run_section(rows: list[list[str]], options: list[tuple[str, str]]) -> str:
  return (html.table(None, rows, "info")
          + '<p class="note">Options (the run\'s flags.txt repeats it):</p>'
          + html.pairs(options))


def seconds(value) -> str:
  return "n/a" if value is None else f"{value:.0f} s ({value / 60:.1f} min)"


def calibration(model_dir, split, report, fitted) -> str:
  cal = report["all"].get("calibration", {})
  text = (f"<p>ECE (15 bins) {fmt(cal.get('ece_15_bins'))}, Brier score "
          f"{fmt(cal.get('brier'))}.</p>")
  if fitted:
    text += "<p>Temperature fitted: " + html.esc(
        ", ".join(f"{k} {fmt(v) if isinstance(v, float) else v}" for k, v in fitted.items()
                  if not isinstance(v, (dict, list)))) + "</p>"
  diagram = run_files.read_bytes(model_dir, f"reliability_{split}.png")
  return text + (f'<div class="figures">{html.image(diagram, "reliability diagram")}</div>'
                 if diagram else "")


def baselines(against: dict | None, what: str) -> str:
  """The model against the trivial baselines (`baseline.versus`'s report) on `what`: the
  verdict's sentence, then each baseline's paired comparison, per column."""
  if not against:
    return ('<p class="warn">no baseline comparison (trained with --nobaseline): run '
            "python -m ctdist.evaluate to fit the baselines</p>")
  rows = []
  for name, c in against["baselines"].items():
    for column, title in (("all", "all"), ("leak_free", "leak-free")):
      col = c[column]
      if not col["num_examples"]:
        continue
      acc, m = col["accuracy"], col["mcnemar_exact"]
      d = acc["difference"]
      rows.append([name, f"{title} ({col['num_examples']})", f"{acc['a']:.3f}",
                   f"{acc['b']:.3f}", f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]",
                   f"{m['p_value']:.4g}"])
  verdict = "" if against["beats_pixels"] else ' class="warn"'
  return (f"<p{verdict}>{html.esc(against['sentence'])}</p>"
          f"<p>Baselines fitted on {html.esc(against['train_split'])}, scored on {html.esc(what)}"
          f"; paired with the model on the same examples (seed {against['seed']}).</p>"
          + html.table(["baseline", "examples", "model accuracy", "baseline accuracy",
                        "difference [95 % interval]", "McNemar p"], rows))
