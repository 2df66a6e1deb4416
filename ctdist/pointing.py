"""The pointing game (Zhang et al. 2018, "Top-down neural attention by excitation
backprop"): a map hits when its maximum falls inside the object's box. Chance is the
share of the image the box covers (a peak placed uniformly at random)."""

import numpy as np

from ctdist import gradcam
from ctdist import stats


def inside(point: tuple[float, float], boxes: np.ndarray) -> bool:
  """Whether (y, x) (fractions of the image) lies in any (ymin, xmin, ymax, xmax) box."""
  y, x = point
  return any(b[0] <= y <= b[2] and b[1] <= x <= b[3] for b in np.asarray(boxes))


def box_area(boxes: np.ndarray) -> float:
  """Share of the image covered by a single box (the synthetic findings have one)."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if len(boxes) != 1:
    raise ValueError(f"{len(boxes)} boxes; the chance level is computed for one box")
  b = boxes[0]
  return float(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))


def score(cams: np.ndarray, boxes: list[np.ndarray], labels: np.ndarray,
          class_names: list[str]) -> dict:
  """Hits, their share (95 % bootstrap interval) and chance, whole and per class.

  Args:
    cams: N x H x W maps of N images, each with one finding box.
    boxes: the N images' boxes (1 x 4 each).
    labels: their class indices.
    class_names: names of the class indices.
  """
  if not len(cams):
    raise ValueError("no image to score: the pointing game needs correctly classified "
                     "images that have a finding box")
  hits = np.array([inside(gradcam.peak(c), b) for c, b in zip(cams, boxes)], np.float64)
  chance = np.array([box_area(b) for b in boxes])
  labels = np.asarray(labels)

  def summary(sel):
    return {"images": int(sel.sum()), "hits": int(hits[sel].sum()),
            "share": float(hits[sel].mean()), "chance": float(chance[sel].mean())}

  result = summary(np.ones(len(hits), bool))
  if len(hits) > 1:
    result["interval"] = stats.bootstrap(np.mean, (hits,)).as_dict()
  result["per_class"] = {class_names[k]: summary(labels == k)
                         for k in sorted(set(labels.tolist()))}
  return result


def render(result: dict) -> str:
  """A short table: share of hits against chance, whole and per class."""
  iv = result.get("interval")
  lines = [f"pointing game: {result['hits']}/{result['images']} peaks inside the finding's "
           f"box = {result['share']:.3f}"
           + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")
           + f"; chance (box area / image area) {result['chance']:.3f}"]
  for name, c in result["per_class"].items():
    lines.append(f"  {name:24s} {c['hits']:4d}/{c['images']:<4d} {c['share']:.3f}  "
                 f"chance {c['chance']:.3f}")
  return "\n".join(lines)
