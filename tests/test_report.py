"""report.html of a training run: written when training ends, self-contained, and in a
real browser (headless Chromium) every section shows and every image loads."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from ctdist.reporting import run_page
from ctdist.reporting import writer
import cli_run
import forked
import pages

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs Chromium (.ci/run) and sets this: there a missing browser fails the test.
REQUIRED = os.environ.get("CTDIST_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def run_dir(small_data_dir, tmp_path_factory) -> pathlib.Path:
  """The suite's small CLI training (tests/cli_run.py: read only), its --strategy=auto on
  a machine whose TPU does not answer."""
  return cli_run.run_dir(small_data_dir, tmp_path_factory)


# The gallery's three mistakes, planted with these confidences: whatever the small
# model got right or wrong, the gallery has a known content.
PLANTED = {0: 0.6, 4: 0.9, 7: 0.7}


@pytest.fixture(scope="module")
def planted_dir(run_dir, tmp_path_factory) -> pathlib.Path:
  """A copy of the run whose test predictions are right except at PLANTED, with its report
  written again from them."""
  copy = tmp_path_factory.mktemp("planted") / "run"
  shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "best"))
  path = copy / "predictions_test.json"
  saved = json.loads(path.read_text())
  for i, e in enumerate(saved["examples"]):
    n = len(e["probabilities"])
    pick = (e["label"] + 1) % n if i in PLANTED else e["label"]
    top = PLANTED.get(i, 0.97)
    e["probabilities"] = [top if c == pick else (1 - top) / (n - 1) for c in range(n)]
  path.write_text(json.dumps(saved))
  (copy / "report.html").unlink()
  writer.write(str(copy), writer.builder_of(str(copy)))
  return copy


def test_training_writes_a_self_contained_report(run_dir):
  text = (run_dir / "report.html").read_text()
  page = pages.check_self_contained(text)
  examples = json.loads((run_dir / "predictions_test.json").read_text())["examples"]
  wrong = [e for e in examples if int(np.argmax(e["probabilities"])) != e["label"]]
  assert page.figures == len(wrong)  # one figure per mistake (fewer than the limit here)
  metrics = json.loads((run_dir / "metrics.json").read_text())
  assert f"{metrics['test']['all']['accuracy']:.3f}" in text
  assert f"({os.cpu_count()} cores)" in text  # the hardware row, read when the run ran
  fallback = metrics["run"]["strategy_fallback"]
  assert fallback.startswith("--strategy=auto found a TPU it could not use") and (
      "(planted)" in fallback)
  assert "<td>strategy fallback</td>" in text and "(planted)" in text
  assert metrics["run"]["train_seconds"] > 0 and metrics["run"]["evaluate_seconds"] > 0


def test_the_gallery_shows_each_mistake_most_confident_first(planted_dir):
  text = (planted_dir / "report.html").read_text()
  page = pages.check_self_contained(text)
  examples = json.loads((planted_dir / "predictions_test.json").read_text())["examples"]
  order = sorted(PLANTED, key=lambda i: -PLANTED[i])
  names = [examples[i]["file_name"] for i in order]
  assert page.figures == len(PLANTED)
  figures = text[text.index('<section id="gallery">'):]
  positions = [figures.index(f"<b>{name}</b>") for name in names]
  assert positions == sorted(positions)  # 0.9, then 0.7, then 0.6


def _report(*args):
  return forked.run("ctdist.report", *args, timeout=600)


@pytest.mark.slow
def test_report_cli_rewrites_it_with_a_smaller_gallery_from_moved_data(planted_dir, tmp_path,
                                                                       small_data_dir):
  copy = tmp_path / "run"
  shutil.copytree(planted_dir, copy)
  (copy / "report.html").unlink()
  # The data has moved since training: the run's options.json names a folder now empty.
  options = json.loads((copy / "options.json").read_text())
  options["data"]["data_dir"] = str(tmp_path / "moved")
  (copy / "options.json").write_text(json.dumps(options))
  done = _report(f"--model_dir={copy}", "--gallery=1")
  assert done.returncode == 2 and not (copy / "report.html").exists()
  assert done.stderr.strip().splitlines()[-1].startswith(
      f"error: dataset 'tfds_ctscan/kaggle' is not built in {tmp_path / 'moved'}")
  done = _report(f"--model_dir={copy}", "--gallery=1", "--dataset=tfds_ctscan/kaggle",
                 f"--data_dir={small_data_dir}")
  assert done.returncode == 0, done.stderr[-3000:]
  # The report, then the model card written again beside it.
  assert done.stdout.split() == [str(copy / "report.html"), str(copy / "model_card.md")]
  assert json.loads((copy / "model_card.json").read_text())["model_details"]["path"] == str(copy)
  page = pages.check_self_contained((copy / "report.html").read_text())
  assert page.figures == 1  # of the three planted mistakes
  # The positional spelling, and --gallery=0: no figure, the count said.
  (copy / "report.html").unlink()
  done = _report(copy, "--gallery=0", f"--data_dir={small_data_dir}")
  assert done.returncode == 0, done.stderr[-3000:]
  text = (copy / "report.html").read_text()
  assert pages.check_self_contained(text).figures == 0
  assert f"{len(PLANTED)} misclassified; the gallery is off (--gallery=0)." in text


def test_a_folder_without_a_finished_run_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}/metrics.json not found"):
    run_page.run_report(str(tmp_path))


@pytest.mark.skipif(not CHROMIUM and not REQUIRED,
                    reason="no chromium: apt-get install -y chromium (CI installs it)")
def test_report_renders_in_headless_chromium(planted_dir, tmp_path):
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  assert CHROMIUM, "chromium not found: apt-get install -y chromium"
  shot = tmp_path / "report.png"
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
      page = browser.new_page(viewport={"width": 1280, "height": 800})
      page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(
          ("file:", "data:")) else route.continue_())  # nothing from a network
      page.goto((planted_dir / "report.html").as_uri())
      # A section is shown when there is more than its heading: text, a table or an image
      # laid out below it.
      shown = page.evaluate("""() => Array.from(document.querySelectorAll('section'))
          .filter(s => {
            const h = s.querySelector('h2').getBoundingClientRect().height;
            const body = s.getBoundingClientRect().height - h;
            return body > 40 && s.innerText.length > s.querySelector('h2').innerText.length + 20;
          }).map(s => s.id)""")
      broken = page.evaluate("""() => Array.from(document.images)
          .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)""")
      count = page.evaluate("() => document.images.length")
      page.screenshot(path=str(shot), full_page=True)
    finally:
      browser.close()
  missing = [s for s in pages.SECTIONS if s not in shown]
  assert not missing, f"sections not shown: {missing}"
  assert not broken, f"images that did not load: {broken}"
  assert count == len(pages.Page((planted_dir / "report.html").read_text()).images)
  pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
  assert pixels.shape[0] > 1500  # the whole page, not one screen
  assert pixels.std() > 20, "the screenshot is blank"
  # Dark pixels (text, figures) cover a real share of the page.
  assert (pixels < 128).mean() > 0.02
