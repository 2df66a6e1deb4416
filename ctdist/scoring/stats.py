"""Numbers you can trust on a few hundred images: bootstrap intervals, calibration,
temperature scaling and paired comparison. Plain NumPy arrays in, plain values out.

Probabilities are [N, K] (rows sum to 1), labels [N] ints in 0..K-1. `groups` ([N], any
hashable ids) marks copies of one image: a bootstrap resamples whole groups, so duplicates
never count as independent evidence.
"""

import dataclasses
from typing import Callable

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

ECE_BINS = 15


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate and its percentile-bootstrap interval."""
  value: float
  low: float
  high: float
  resamples: int  # resamples on which the metric was defined (e.g. both classes present)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def _group_index(groups, n: int) -> list[np.ndarray]:
  """Example indices per group (each example its own group without `groups`)."""
  if groups is None:
    return [np.array([i]) for i in range(n)]
  groups = np.asarray(groups)
  if len(groups) != n:
    raise ValueError(f"groups has {len(groups)} entries for {n} examples")
  _, inverse = np.unique(groups, return_inverse=True)
  order = np.argsort(inverse, kind="stable")
  return np.split(order, np.cumsum(np.bincount(inverse))[:-1])


def bootstrap(metric: Callable[..., float], arrays: tuple, groups=None,
              resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
  """Percentile bootstrap of `metric(*arrays)` over examples (or over `groups`).

  Args:
    metric: a function of the arrays (indexed alike along axis 0) returning a float,
      NaN where undefined.
    arrays: the per-example arrays, e.g. (labels, probs).
    groups: optional [N] group ids; a resample draws whole groups with replacement.
    resamples: number of resamples (at least 1,000 for a 95 % interval).
    seed: the resampling seed: the same seed gives the same interval.
    level: the interval's coverage.

  Raises:
    ValueError: fewer than 1,000 resamples, or no resample where the metric is defined.
  """
  interval = bootstrap_many(lambda *a: np.array([metric(*a)]), arrays, groups, resamples,
                            seed, level)[0]
  if interval is None:
    raise ValueError("the metric is undefined on every resample (a class never present?)")
  return interval


def bootstrap_many(metrics: Callable[..., np.ndarray], arrays: tuple, groups=None,
                   resamples: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> list[Interval | None]:
  """`bootstrap` of a function returning several metrics at once (a 1-D array), on the
  same resamples; one Interval each, None for a metric undefined on every resample."""
  if resamples < 1000:
    raise ValueError(f"resamples={resamples}: use at least 1000 for a {level:.0%} interval")
  arrays = tuple(np.asarray(a) for a in arrays)
  n = len(arrays[0])
  members = _group_index(groups, n)
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(resamples):
    picked = rng.integers(0, len(members), len(members))
    idx = np.concatenate([members[g] for g in picked])
    values.append(metrics(*(a[idx] for a in arrays)))
  values = np.asarray(values, dtype=np.float64)  # [resamples, metrics]
  point = np.asarray(metrics(*arrays), dtype=np.float64)
  tail = (1 - level) / 2 * 100
  out = []
  for j in range(values.shape[1]):
    defined = values[~np.isnan(values[:, j]), j]
    if not len(defined):
      out.append(None)
      continue
    low, high = np.percentile(defined, [tail, 100 - tail])
    out.append(Interval(float(point[j]), float(low), float(high), int(len(defined))))
  return out


def reliability(labels, probs, bins: int = ECE_BINS) -> list[dict]:
  """Per confidence bin (confidence = the top probability; bin b holds (b/bins,
  (b+1)/bins], a confidence of 0 goes to bin 0): its range, example count, accuracy and
  mean confidence (the reliability diagram's bars; empty bins are left out)."""
  labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
  confidence, correct = probs.max(1), probs.argmax(1) == labels
  which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
  return [{"low": b / bins, "high": (b + 1) / bins, "count": int((which == b).sum()),
           "accuracy": float(correct[which == b].mean()),
           "confidence": float(confidence[which == b].mean())}
          for b in range(bins) if (which == b).any()]


def expected_calibration_error(labels, probs, bins: int = ECE_BINS) -> float:
  """ECE: over the `reliability` bins, the example-weighted mean of
  |accuracy - mean confidence|."""
  bars = reliability(labels, probs, bins)
  n = sum(bar["count"] for bar in bars)
  return float(sum(bar["count"] / n * abs(bar["accuracy"] - bar["confidence"])
                   for bar in bars))


def brier_score(labels, probs) -> float:
  """Mean over examples of the squared distance between the probabilities and the
  one-hot label (0 perfect, 2 worst)."""
  probs = np.asarray(probs, dtype=np.float64)
  onehot = np.eye(probs.shape[1])[np.asarray(labels)]
  return float(((probs - onehot) ** 2).sum(1).mean())


def negative_log_likelihood(labels, probs) -> float:
  """Mean over examples of -log(probability of the true class), floored at 1e-12."""
  probs = np.asarray(probs, dtype=np.float64)
  picked = probs[np.arange(len(probs)), np.asarray(labels)]
  return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def _log_softmax(logits):
  shifted = logits - logits.max(1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


# Log-probabilities from float32 softmax outputs keep their logits' differences down to
# float32's smallest subnormal (1.4e-45); only an exact 0 is floored, at float64's tiny.
_LOG_FLOOR = np.finfo(np.float64).tiny


def _logits(probs) -> np.ndarray:
  return np.log(np.clip(np.asarray(probs, dtype=np.float64), _LOG_FLOOR, 1.0))


def fit_temperature(labels, probs) -> float:
  """The temperature T that minimises the negative log-likelihood of
  softmax(log(probs) / T) on (labels, probs) (Guo et al. 2017). T > 1 softens
  over-confident probabilities; it never changes the predicted class."""
  labels = np.asarray(labels)
  logits = _logits(probs)

  def nll(log_t):
    return -_log_softmax(logits / np.exp(log_t))[np.arange(len(labels)), labels].mean()

  best = optimize.minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                                  options={"xatol": 1e-6})
  return float(np.exp(best.x))


def scale(probs, temperature: float) -> np.ndarray:
  """softmax(log(probs) / temperature)."""
  return np.exp(_log_softmax(_logits(probs) / temperature))


def mcnemar_exact(correct_a, correct_b) -> dict:
  """McNemar's exact test on paired right/wrong: b = A right and B wrong, c = A wrong and
  B right; two-sided p = P(Binomial(b + c, 1/2) as far from (b + c)/2 as min(b, c))."""
  a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
  if a.shape != b_.shape:
    raise ValueError(f"paired results differ in length: {a.shape[0]} vs {b_.shape[0]}")
  b, c = int((a & ~b_).sum()), int((~a & b_).sum())
  p = 1.0 if b + c == 0 else float(scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue)
  return {"a_right_b_wrong": b, "a_wrong_b_right": c, "p_value": p}
