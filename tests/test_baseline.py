"""The trivial baselines beside a model: the pixel baseline and the majority class, fitted on
the train split, scored on the model's split, compared with it paired; the sentence when
the model does not beat the pixels."""

import numpy as np
import pytest

from ctdist.data import builders
from ctdist.data import examples
from ctdist.scoring import baseline
from ctdist.scoring import predictions

CLASSES = ("adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma")


def _model_predictions(b, probs_of) -> predictions.Predictions:
  names, labels = examples.file_names_and_labels(b, "test")
  _, _, leaked = baseline.pixels(b, "test")
  return predictions.Predictions(
      dataset=b.info.full_name, split="test", class_names=CLASSES, temperature=1.0,
      file_names=names, labels=labels, probs=probs_of(labels), leaked=leaked,
      groups=np.arange(len(labels)))


def test_the_baselines_are_fitted_on_train_and_scored_on_the_models_split(small_data_dir):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  x, y, _ = baseline.pixels(b, "train")
  assert x.shape == (16, 16 * 16) and 0 <= x.min() and x.max() <= 255
  assert y.tolist() == examples.file_names_and_labels(b, "train")[1].tolist()
  perfect = _model_predictions(b, lambda labels: np.eye(4)[labels])
  report = baseline.versus(perfect, b)
  assert report == baseline.versus(perfect, b)  # seeded: the same report again
  pixel = report["baselines"][baseline.PIXEL]["all"]
  # By hand: the pixel baseline fitted on train, its answers on test.
  x_test, y_test, _ = baseline.pixels(b, "test")
  by_hand = baseline.fit_pixels(x, y).predict(x_test)
  assert pixel["accuracy"]["a"] == 1.0
  assert pixel["accuracy"]["b"] == pytest.approx((by_hand == y_test).mean())
  assert pixel["num_examples"] == 13
  # The majority class of train (normal, 7 of 16) is right on test's 7 normals of 13.
  majority = report["baselines"][baseline.MAJORITY]["all"]
  assert majority["accuracy"]["b"] == pytest.approx(7 / 13)
  assert majority["mcnemar_exact"]["a_wrong_b_right"] == 0
  assert majority["mcnemar_exact"]["a_right_b_wrong"] == 6
  assert "the majority class baseline" in baseline.render(report)


def test_a_model_no_better_than_the_pixels_is_told_so(small_data_dir):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  x, y, _ = baseline.pixels(b, "train")
  fitted = baseline.fit_pixels(x, y)
  x_test = baseline.pixels(b, "test")[0]

  def same_as_pixels(labels):
    probs = np.zeros((len(labels), 4))
    probs[:, fitted.classes_] = fitted.predict_proba(x_test)
    return probs
  report = baseline.versus(_model_predictions(b, same_as_pixels), b)
  compared = report["baselines"][baseline.PIXEL]["leak_free"]["accuracy"]
  assert compared["difference"]["value"] == 0 and compared["a"] == compared["b"]
  assert report["beats_pixels"] is False
  assert report["sentence"].startswith(
      "The model does NOT beat a logistic regression on 16x16 pixels: leak-free accuracy")
  assert baseline.render(report).endswith(report["sentence"])


@pytest.mark.parametrize("low,beats", [(0.01, True), (0.0, False), (-0.2, False)])
def test_the_verdict_needs_the_whole_interval_above_zero(low, beats):
  column = {"num_examples": 10, "accuracy": {
      "a": 0.8, "b": 0.6, "difference": {"value": 0.2, "low": low, "high": 0.4}}}
  verdict, sentence = baseline.verdict({"all": column, "leak_free": column})
  assert verdict is beats
  assert sentence.startswith("The model beats" if beats else "The model does NOT beat")
  assert f"difference +0.200 [{low:+.3f}, +0.400]" in sentence
  # Nothing leak-free: the whole split's column decides.
  verdict, sentence = baseline.verdict({"all": column, "leak_free": {"num_examples": 0}})
  assert verdict is beats and "all accuracy" in sentence
