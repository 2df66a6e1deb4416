"""The evaluate and predict command lines and the exported SavedModel, as a user meets
them: subprocesses, exit codes, printed JSON, files written."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from tfds_ctscan import layout

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, timeout=600, **env_changes):
  env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", **env_changes)
  env = {k: v for k, v in env.items() if v is not None}
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(small_data_dir, tmp_path_factory) -> pathlib.Path:
  """One small training through the CLI, SavedModel exported, temperature calibrated,
  progress every 2 steps, the decoded images cached on disk in a temporary folder; the
  dataset is built by train itself from the Kaggle-layout folder given as --manual_dir.
  Its terminal is kept in train.log, its TMPDIR is tmp/."""
  root = tmp_path_factory.mktemp("cli")
  manual = pathlib.Path(small_data_dir).parent / "manual"
  out = root / "run"
  (root / "tmp").mkdir()
  done = _run("ctdist.train", "--dataset=tfds_ctscan/kaggle", f"--data_dir={root / 'tfds'}",
              f"--manual_dir={manual}", f"--model_dir={out}", "--weights=none",
              "--image_size=32", "--batch_size=4", "--head_epochs=1", "--finetune_epochs=1",
              "--finetune_layers=5", "--export", "--calibrate", "--log_every_steps=2",
              "--cache=disk", timeout=900, TMPDIR=str(root / "tmp"))
  (root / "train.log").write_text(done.stderr)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"building tfds_ctscan/kaggle in {root / 'tfds'}" in done.stderr
  assert "built tfds_ctscan/kaggle: test 13, train 16, valid 5" in done.stderr
  return out


@pytest.mark.slow
def test_progress_lines_every_n_steps_and_the_disk_cache_is_removed_at_exit(run_dir):
  log = (run_dir.parent / "train.log").read_text()
  # 16 training images / batch 4 = 4 steps an epoch: a line at step 2 of each phase's
  # epoch, none at step 4 (the epoch's own line follows).
  for phase in ("head", "finetune"):
    assert re.search(rf"^{phase} epoch 1/1 step 2/4: loss [\d.]+ acc [\d.]+ \| "
                     r"[\d.]+ images/s \| epoch ETA \d\d:\d\d:\d\d$", log, re.M), log
    assert f"{phase} epoch 1/1 step 4/4" not in log
  cache = re.search(r"cache disk in (\S+)", log)
  assert cache and cache.group(1).startswith(str(run_dir.parent / "tmp" / "ctdist_cache_"))
  assert not os.path.exists(cache.group(1))
  assert not list((run_dir.parent / "tmp").glob("ctdist_*"))  # nor a worker's folder


# Native (C++) and absl-format lines: TensorFlow's own, not ctdist's.
NATIVE = re.compile(r"^[IWE]\d{4} ", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("flags,level,loud", [
    ([], None, False),      # the default: ctdist's lines only
    (["-v", "1"], None, True),  # TensorFlow's logs back
    ([], "0", True)])       # a level the user exported is TensorFlow's to apply
def test_tensorflows_logs_only_when_asked(run_dir, small_data_dir, flags, level, loud):
  image = _image(small_data_dir, "test/normal/*")
  done = _run("ctdist.predict", f"--model_dir={run_dir}", "--json", str(image), *flags,
              TF_CPP_MIN_LOG_LEVEL=level)
  assert done.returncode == 0, done.stderr[-3000:]
  assert bool(NATIVE.search(done.stderr)) == loud, done.stderr
  assert json.loads(done.stdout)[0]["file"] == str(image)


def _image(small_data_dir, rel) -> pathlib.Path:
  """A file of the fixture's Kaggle folder (written beside the TFDS data_dir)."""
  matches = sorted((pathlib.Path(small_data_dir).parent / "manual" / "Data").glob(rel + ".*"))
  assert matches, rel
  return matches[0]


@pytest.mark.slow
def test_evaluate_cli_scores_the_split_whole_and_leak_free(run_dir):
  (run_dir / "metrics_test.json").unlink()
  done = _run("ctdist.evaluate", f"--model_dir={run_dir}", "--split=test")
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads((run_dir / "metrics_test.json").read_text())
  # The fixture's test split: 13 images, 7 normal of which int(0.15 * 7) = 1 is a copy.
  assert report["num_leaked"] == 1
  assert report["all"]["num_examples"] == 13 and report["leak_free"]["num_examples"] == 12
  assert "tfds_ctscan/kaggle test: 1 leaked example(s) excluded" in done.stdout
  assert f"{report['all']['accuracy']:.3f}" in done.stdout
  # Every headline metric with its interval, in the JSON and on screen; calibration too.
  for column in ("all", "leak_free"):
    iv = report[column]["intervals"]["accuracy"]
    assert iv["low"] <= report[column]["accuracy"] == iv["value"] <= iv["high"]
    assert iv["resamples"] == 1000
    assert 0 <= report[column]["calibration"]["ece_15_bins"] <= 1
  assert f"[{iv['low']:.3f}, {iv['high']:.3f}]" in done.stdout
  assert "[brackets: 95 % intervals, percentile bootstrap, 1000 resamples" in done.stdout
  assert (run_dir / "reliability_test.png").stat().st_size > 0


@pytest.mark.slow
def test_evaluate_cli_refuses_a_model_trained_on_other_classes(run_dir, tmp_path):
  other = tmp_path / "other"
  other.mkdir()
  shutil.copy(run_dir / "options.json", other / "options.json")
  permuted = ["normal", "adenocarcinoma", "squamous_cell_carcinoma", "large_cell_carcinoma"]
  resnet.build_model(32, permuted, weights="none").save(other / "model.keras")
  done = _run("ctdist.evaluate", f"--model_dir={other}")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      f"error: model classes {permuted} differ from dataset classes")
  assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_predict_cli_json_and_exit_codes(run_dir, small_data_dir, tmp_path):
  good = _image(small_data_dir, "test/normal/0003")
  bad = tmp_path / "notes.png"
  bad.write_text("not an image")
  done = _run("ctdist.predict", f"--model={run_dir / 'model.keras'}", "--json",
              str(good), str(bad))
  assert done.returncode == 1  # one file could not be classified
  results = json.loads(done.stdout)
  assert [r["file"] for r in results] == [str(good), str(bad)]
  probs = results[0]["probabilities"]
  assert list(probs) == list(layout.CLASS_NAMES)
  assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
  assert results[0]["label"] == max(probs, key=probs.get)
  assert "notes.png" in results[1]["error"]
  missing = _run("ctdist.predict", f"--model={tmp_path / 'none.keras'}", str(good))
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1].startswith(
      f"error: --model={tmp_path / 'none.keras'}: no such file")


@pytest.mark.slow
def test_saved_model_serves_what_model_keras_predicts(run_dir, small_data_dir):
  images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
  expected = keras.saving.load_model(run_dir / "model.keras")(images).numpy()
  served = tf.saved_model.load(str(run_dir / "saved_model"))
  out = served.serve(tf.constant(images))
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-5)
  assert np.asarray(out).shape == (3, 4)


@pytest.mark.slow
def test_train_calibrate_stores_the_temperature_everywhere(run_dir):
  t = json.loads((run_dir / "calibration.json").read_text())["temperature"]
  assert t != 1.0  # fitted (exactly 1 would mean nothing was stored)
  assert ctdist_layers.temperature_of(keras.saving.load_model(run_dir / "model.keras")) == t
  metrics = json.loads((run_dir / "metrics.json").read_text())
  assert metrics["calibration"]["temperature"] == t and metrics["test"]["temperature"] == t
  assert json.loads((run_dir / "predictions_test.json").read_text())["temperature"] == t


@pytest.mark.slow
def test_calibrate_cli_refits_from_the_uncalibrated_model_and_re_exports(run_dir, tmp_path):
  copy = tmp_path / "run"
  copy.mkdir()
  shutil.copy(run_dir / "options.json", copy / "options.json")
  uncalibrated = keras.saving.load_model(run_dir / "model.keras")
  ctdist_layers.set_temperature(uncalibrated, 1.0)
  uncalibrated.save(copy / "model.keras")
  uncalibrated.export(str(copy / "saved_model"), verbose=False)
  done = _run("ctdist.calibrate", f"--model_dir={copy}")
  assert done.returncode == 0, done.stderr[-3000:]
  t = json.loads((run_dir / "calibration.json").read_text())["temperature"]
  report = json.loads((copy / "calibration.json").read_text())
  assert report["temperature"] == pytest.approx(t, rel=1e-4)  # the same fit as train's
  assert f"temperature {report['temperature']:.3f} (fitted on valid)" in done.stdout
  calibrated = keras.saving.load_model(copy / "model.keras")
  assert ctdist_layers.temperature_of(calibrated) == report["temperature"]
  images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  loaded = tf.saved_model.load(str(copy / "saved_model"))  # kept: serve needs its variables
  np.testing.assert_allclose(np.asarray(loaded.serve(tf.constant(images))),
                             calibrated(images).numpy(), atol=1e-5)
  # Other splits: fitted on test (13 images), scored on valid (5); from temperature 1 again.
  done = _run("ctdist.calibrate", f"--model_dir={copy}", "--fit_split=test", "--split=valid")
  assert done.returncode == 0, done.stderr[-3000:]
  other = json.loads((copy / "calibration.json").read_text())
  assert other["fit_split"] == "test" and other["test"]["before"]["num_examples"] == 13
  assert other["valid"]["all"]["before"]["num_examples"] == 5
  assert other["test"]["after"]["nll"] <= other["test"]["before"]["nll"]  # fitted there
  assert other["temperature"] != pytest.approx(report["temperature"], rel=1e-3)
  assert f"temperature {other['temperature']:.3f} (fitted on test)" in done.stdout
  assert json.loads((copy / "metrics_valid.json").read_text())["temperature"] == (
      other["temperature"])
  assert ctdist_layers.temperature_of(keras.saving.load_model(copy / "model.keras")) == (
      other["temperature"])
  missing = _run("ctdist.calibrate", f"--model_dir={tmp_path / 'nothing'}")
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1] == (
      f"error: {tmp_path / 'nothing' / 'model.keras'} not found; train first with "
      "python -m ctdist.train")
