"""Intervals, calibration, temperature scaling and McNemar against values computed by
hand or by textbook formulas."""

import numpy as np
import pytest

from ctdist.scoring import metrics
from ctdist.scoring import stats


def _accuracy(labels, probs):
  return float((probs.argmax(1) == labels).mean())


def _bernoulli_set(n, p, copies=1):
  """n distinct examples, round(n * p) of them predicted right, each stored `copies`
  times; labels all 0, probs [N, 2]."""
  right = np.arange(n) < round(n * p)
  probs = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
  groups = np.repeat(np.arange(n), copies)
  return np.zeros(n * copies, int), np.repeat(probs, copies, axis=0), groups


def test_accuracy_interval_matches_the_normal_approximation():
  # 400 examples, 80 % right: p +- 1.96 sqrt(p (1 - p) / n) = 0.8 +- 0.0392.
  labels, probs, _ = _bernoulli_set(400, 0.8)
  iv = stats.bootstrap(_accuracy, (labels, probs), resamples=4000, seed=1)
  assert iv.value == 0.8 and iv.resamples == 4000
  assert iv.low == pytest.approx(0.8 - 0.0392, abs=0.006)
  assert iv.high == pytest.approx(0.8 + 0.0392, abs=0.006)


def test_copies_do_not_count_as_evidence_when_grouped():
  # 100 distinct images stored 4 times each: grouped, the interval is that of 100
  # examples (0.8 +- 0.0784), twice as wide as 400 independent ones would give.
  labels, probs, groups = _bernoulli_set(100, 0.8, copies=4)
  grouped = stats.bootstrap(_accuracy, (labels, probs), groups, resamples=4000, seed=1)
  naive = stats.bootstrap(_accuracy, (labels, probs), resamples=4000, seed=1)
  assert grouped.high - grouped.low == pytest.approx(2 * 0.0784, abs=0.015)
  assert naive.high - naive.low == pytest.approx(2 * 0.0392, abs=0.012)


def test_bootstrap_is_seeded_and_refuses_too_few_resamples():
  labels, probs, _ = _bernoulli_set(50, 0.7)
  a = stats.bootstrap(_accuracy, (labels, probs), resamples=1000, seed=3)
  assert a == stats.bootstrap(_accuracy, (labels, probs), resamples=1000, seed=3)
  assert a != stats.bootstrap(_accuracy, (labels, probs), resamples=1000, seed=4)
  with pytest.raises(ValueError, match="resamples=999: use at least 1000"):
    stats.bootstrap(_accuracy, (labels, probs), resamples=999)
  with pytest.raises(ValueError, match="groups has 3 entries for 50 examples"):
    stats.bootstrap(_accuracy, (labels, probs), groups=[1, 2, 3])
  with pytest.raises(ValueError, match="undefined on every resample"):
    stats.bootstrap(lambda *_: float("nan"), (labels, probs))


def test_ece_and_brier_by_hand():
  # Four at confidence 0.9, three right: |0.75 - 0.9| = 0.15 in their bin; two at 0.6,
  # both wrong: |0 - 0.6| = 0.6. ECE = 4/6 x 0.15 + 2/6 x 0.6 = 0.3.
  probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
  labels = np.array([0, 0, 0, 1, 1, 1])
  assert stats.expected_calibration_error(labels, probs) == pytest.approx(0.3)
  bars = stats.reliability(labels, probs)
  assert [(b["count"], b["accuracy"], b["confidence"]) for b in bars] == [
      (2, 0.0, pytest.approx(0.6)), (4, 0.75, pytest.approx(0.9))]
  # Brier: (0.3^2 + 0.3^2) and (0.5^2 + 0.5^2), mean (0.18 + 0.5) / 2 = 0.34.
  assert stats.brier_score([0, 1], np.array([[0.7, 0.3], [0.5, 0.5]])) == pytest.approx(0.34)
  # Perfect, confident predictions: both 0.
  assert stats.expected_calibration_error([0, 1], np.eye(2)) == 0
  assert stats.brier_score([0, 1], np.eye(2)) == 0


def test_temperature_scaling_recovers_a_known_temperature():
  # Labels drawn from softmax(z / 2.5), the model says softmax(z): over-confident by a
  # temperature of 2.5, which the fit must find; scaling keeps every predicted class.
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, (20000, 4))
  true = np.exp(z / 2.5) / np.exp(z / 2.5).sum(1, keepdims=True)
  labels = np.array([rng.choice(4, p=p) for p in true])
  probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  t = stats.fit_temperature(labels, probs)
  assert t == pytest.approx(2.5, abs=0.1)
  scaled = stats.scale(probs, t)
  assert (scaled.argmax(1) == probs.argmax(1)).all()
  assert stats.expected_calibration_error(labels, scaled) < 0.02 < \
      stats.expected_calibration_error(labels, probs)


@pytest.mark.parametrize("b,c,p", [
    (1, 9, 22 / 1024),  # 2 x (C(10,0) + C(10,1)) / 2^10
    (0, 5, 2 / 32),  # 2 x C(5,0) / 2^5
    (5, 5, 1.0),
    (0, 0, 1.0)])
def test_mcnemar_exact_on_known_tables(b, c, p):
  # b: A right, B wrong; c: A wrong, B right; plus 5 both right and 3 both wrong.
  a_right = [True] * b + [False] * c + [True] * 5 + [False] * 3
  b_right = [False] * b + [True] * c + [True] * 5 + [False] * 3
  result = stats.mcnemar_exact(a_right, b_right)
  assert (result["a_right_b_wrong"], result["a_wrong_b_right"]) == (b, c)
  assert result["p_value"] == pytest.approx(p)
  with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
    stats.mcnemar_exact([True] * 3, [True] * 2)


def test_headline_metrics_equal_scikit_learns():
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 300)
  labels[labels == 3] = 2  # class 3 absent: its recall is undefined, its F1 is 0
  probs = rng.dirichlet([1] * 4, 300)
  probs[np.arange(300), labels] += 0.3
  probs /= probs.sum(1, keepdims=True)
  h = metrics.headline(labels, probs, 4)
  pred = probs.argmax(1)
  assert h[0] == pytest.approx(skm.accuracy_score(labels, pred))
  assert h[1] == pytest.approx(skm.f1_score(labels, pred, labels=range(4), average="macro",
                                            zero_division=0))
  assert h[2:5] == pytest.approx(skm.recall_score(labels, pred, labels=range(3),
                                                  average=None))
  assert np.isnan(h[5])
  assert h[6] == pytest.approx(np.mean([skm.roc_auc_score(labels == c, probs[:, c])
                                        for c in range(3)]))


def test_accuracy_interval_of_a_report_has_the_textbook_width():
  labels, probs, _ = _bernoulli_set(400, 0.8)
  rep = metrics.with_leak_free(labels, probs, np.zeros(400, bool), ["a", "b"])
  iv = rep["leak_free"]["intervals"]["accuracy"]
  assert (iv["value"], iv["resamples"]) == (0.8, 1000)
  assert iv["high"] - iv["low"] == pytest.approx(2 * 0.0392, abs=0.012)
  assert "[0.7" in metrics.render(rep, ["a", "b"]).splitlines()[2]
