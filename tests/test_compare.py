"""ctdist.compare on prediction files with known right/wrong tables (values by hand)."""

import json
import pathlib

import numpy as np
import pytest

from ctdist.scoring import comparison as compare
from ctdist.scoring import predictions
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = ("x", "y")


def _preds(right, labels=None, leaked=None, names=NAMES, dataset="tfds_ctscan/kaggle/1.0.0",
           files=None, temperature=1.0):
  """Predictions that are right where `right` is (confidence 0.8 either way)."""
  right = np.asarray(right, bool)
  n = len(right)
  labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
  predicted = np.where(right, labels, 1 - labels)
  probs = np.where(predicted[:, None] == np.arange(2), 0.8, 0.2)
  return predictions.Predictions(
      dataset=dataset, split="test", class_names=tuple(names), temperature=temperature,
      file_names=np.array(files or [f"test/x/{i:04d}.png" for i in range(n)]),
      labels=labels, probs=probs,
      leaked=np.zeros(n, bool) if leaked is None else np.asarray(leaked, bool),
      groups=np.arange(n))


def _table(both_right, a_only, b_only, both_wrong):
  a = [True] * both_right + [True] * a_only + [False] * b_only + [False] * both_wrong
  b = [True] * both_right + [False] * a_only + [True] * b_only + [False] * both_wrong
  return a, b


def test_known_table_gives_mcnemar_and_a_paired_interval():
  # 100 examples: A right on 90, B on 82; discordant: 9 A-only, 1 B-only.
  a, b = _table(81, 9, 1, 9)
  report = compare.compare(_preds(a), _preds(b))
  col = report["all"]
  assert col["num_examples"] == 100
  assert col["mcnemar_exact"] == {"a_right_b_wrong": 9, "a_wrong_b_right": 1,
                                  "p_value": pytest.approx(22 / 1024)}
  d = col["accuracy"]["difference"]
  assert (col["accuracy"]["a"], col["accuracy"]["b"]) == (0.9, 0.82)
  assert d["value"] == pytest.approx(0.08)
  # Paired: the per-example differences (+1 x 9, -1 x 1, 0 x 90) have standard error
  # sqrt((0.10 - 0.08^2) / 100) = 0.0306, so 0.08 +- 0.060. Resampling the two runs
  # independently would give +-0.095.
  assert d["low"] == pytest.approx(0.08 - 0.060, abs=0.015)
  assert d["high"] == pytest.approx(0.08 + 0.060, abs=0.015)
  assert d["resamples"] == 1000
  # Macro F1 by hand: all labels are class 0, every wrong answer says 1 (F1 of class 1 is
  # 0); class 0's precision is 1, so F1 = 2r / (1 + r): (0.9 -> 0.94737, 0.82 -> 0.90110)/2.
  f1 = col["macro_f1"]
  assert f1["a"] == pytest.approx(0.9 / 1.9) and f1["b"] == pytest.approx(0.82 / 1.82)
  assert f1["difference"]["value"] == pytest.approx(0.9 / 1.9 - 0.82 / 1.82)


def test_identical_runs_differ_by_exactly_zero():
  a, _ = _table(70, 10, 0, 20)
  col = compare.compare(_preds(a), _preds(a))["all"]
  assert col["accuracy"]["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0,
                                           "resamples": 1000}
  assert col["mcnemar_exact"]["p_value"] == 1.0


def test_examples_are_paired_by_file_name_and_the_leak_free_column_drops_leaks():
  a, b = _table(5, 3, 0, 2)
  leaked = [False] * 8 + [True] * 2  # the two both-wrong examples
  pa, pb = _preds(a, leaked=leaked), _preds(b, leaked=leaked)
  order = np.random.default_rng(0).permutation(10)  # B's file lists another order
  pb = predictions.Predictions(pb.dataset, pb.split, pb.class_names, 1.0,
                               pb.file_names[order], pb.labels[order], pb.probs[order],
                               pb.leaked[order], pb.groups[order])
  report = compare.compare(pa, pb)
  assert report["all"]["mcnemar_exact"]["a_right_b_wrong"] == 3
  assert report["all"]["accuracy"]["difference"]["value"] == pytest.approx(0.3)
  assert report["leak_free"]["num_examples"] == 8
  assert report["leak_free"]["accuracy"]["a"] == 1.0
  assert report["leak_free"]["accuracy"]["b"] == pytest.approx(5 / 8)
  text = compare.render(report, "runs/a", "runs/b")
  assert "A-B +0.300" in text and "leak-free (8 examples)" in text


@pytest.mark.parametrize("change,message", [
    (dict(names=("y", "x")), r"class names differ: \['x', 'y'\] vs \['y', 'x'\]"),
    (dict(dataset="tfds_ctscan/synthetic/1.0.0"),
     "different datasets: tfds_ctscan/kaggle/1.0.0 vs tfds_ctscan/synthetic/1.0.0"),
    (dict(files=[f"test/x/{i:04d}.png" for i in range(9)] + ["test/x/other.png"]),
     r"1 only in the first \(e.g. \['test/x/0009.png'\]\), 1 only in the second"),
    (dict(labels=[0] * 9 + [1]), "1 files have other labels or leak flags"),
    (dict(leaked=[True] + [False] * 9), "1 files have other labels or leak flags"),
])
def test_runs_on_different_data_are_refused_naming_the_difference(change, message):
  with pytest.raises(compare.NotComparableError, match=message):
    compare.compare(_preds([True] * 10), _preds([True] * 10, **change))


def test_files_round_trip_and_a_missing_one_names_the_command(tmp_path):
  p = _preds([True, True, False, True, False, False],
             leaked=[True, False, False, False, False, False], temperature=1.7)
  predictions.save(p, str(tmp_path))
  back = predictions.load(str(tmp_path), "test")
  for field in ("file_names", "labels", "probs", "leaked", "groups"):
    np.testing.assert_array_equal(getattr(back, field), getattr(p, field))
  assert (back.dataset, back.class_names, back.temperature) == (p.dataset, p.class_names, 1.7)
  with pytest.raises(predictions.NoPredictionsError,
                     match=f"python -m ctdist.evaluate --model_dir={tmp_path} --split=valid"):
    predictions.load(str(tmp_path), "valid")


def _cli(*args):
  return forked.run("ctdist.compare", *args, timeout=300)


def test_cli_prints_the_comparison_and_refuses_with_one_line(tmp_path):
  a, b = _table(81, 9, 1, 9)
  for name, right in (("a", a), ("b", b)):
    (tmp_path / name).mkdir()
    predictions.save(_preds(right), str(tmp_path / name))
  done = _cli(tmp_path / "a", tmp_path / "b", "--json", tmp_path / "c.json")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "McNemar    A right/B wrong 9, A wrong/B right 1: p = 0.02148" in done.stdout
  saved = json.loads((tmp_path / "c.json").read_text())
  assert saved["all"]["mcnemar_exact"]["a_right_b_wrong"] == 9
  (tmp_path / "empty").mkdir()
  done = _cli(tmp_path / "a", tmp_path / "empty")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      f"error: {tmp_path / 'empty' / 'predictions_test.json'} not found")
  assert "Traceback" not in done.stderr
