"""The pointing game (Zhang et al. 2018, "Top-down neural attention by excitation
backprop"): a map hits when its maximum falls inside the object's box.

A map is scored at its own resolution: its maximum is a cell (a 4 x 4 Grad-CAM has 16,
each 8 x 8 pixels of a 32 px image; an occlusion map has one per pixel), and it hits when
that cell touches the box. Chance is the share of the map's cells that touch the box:
the hit rate of a maximum placed in a uniformly random cell (for a pixel-sized cell, the
box's share of the image).
"""

import numpy as np

from ctdist.scoring import stats


class NoImageToScoreError(ValueError):
  """No correctly classified image with a finding box: nothing to score."""


def _cells_touching(box: np.ndarray, h: int, w: int) -> np.ndarray:
  """h x w booleans: which cells of an h x w grid overlap the (ymin, xmin, ymax, xmax) box
  by a positive area."""
  y0, x0, y1, x1 = np.asarray(box, np.float64).reshape(4)
  rows = (np.arange(h) + 1) / h > y0
  rows &= np.arange(h) / h < y1
  cols = (np.arange(w) + 1) / w > x0
  cols &= np.arange(w) / w < x1
  return rows[:, None] & cols[None, :]


def hit(cam: np.ndarray, boxes: np.ndarray) -> bool:
  """Whether a cell where the map reaches its maximum touches one of the boxes; an
  all-zero map (nothing raised the class's score) points nowhere."""
  if not cam.max() > 0:
    return False
  top = cam >= cam.max()
  return any((top & _cells_touching(b, *cam.shape)).any() for b in np.asarray(boxes))


def chance(cam_shape: tuple[int, int], boxes: np.ndarray) -> float:
  """Share of an h x w map's cells that touch the image's single box."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if len(boxes) != 1:
    raise ValueError(f"{len(boxes)} boxes; the chance level is computed for one box")
  return float(_cells_touching(boxes[0], *cam_shape).mean())


def score(cams: np.ndarray, boxes: list[np.ndarray], labels: np.ndarray,
          class_names: list[str]) -> dict:
  """Hits, their share (95 % bootstrap interval) and chance, whole and per class.

  Args:
    cams: N maps (any resolution: a box's fractions apply to each) of N images, each
      with one finding box.
    boxes: the N images' boxes (1 x 4 each).
    labels: their class indices.
    class_names: names of the class indices.
  """
  if not len(cams):
    raise NoImageToScoreError("no image to score: the pointing game needs correctly classified "
                     "images that have a finding box")
  hits = np.array([hit(c, b) for c, b in zip(cams, boxes)], np.float64)
  chances = np.array([chance(c.shape, b) for c, b in zip(cams, boxes)])
  labels = np.asarray(labels)

  def summary(sel):
    return {"images": int(sel.sum()), "hits": int(hits[sel].sum()),
            "share": float(hits[sel].mean()), "chance": float(chances[sel].mean())}

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
           + f"; chance (share of the map's cells touching the box) {result['chance']:.3f}"]
  for name, c in result["per_class"].items():
    lines.append(f"  {name:24s} {c['hits']:4d}/{c['images']:<4d} {c['share']:.3f}  "
                 f"chance {c['chance']:.3f}")
  return "\n".join(lines)
