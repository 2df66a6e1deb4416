"""Procedural chest-CT-like axial slices for offline demos and tests (not clinical data).

Each slice has a body outline, two dark lung fields, a mediastinum, a spine,
vessels and noise. The class is a finding a CNN can learn:
  adenocarcinoma          a small peripheral part-solid nodule (ground-glass halo, solid core)
  large_cell_carcinoma    a large peripheral solid lobulated mass
  squamous_cell_carcinoma a central hilar mass with an air-filled cavity
  normal                  no finding
"""

import io
import json
import pathlib
import shutil
import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from tfds_ctscan import layout
from tfds_ctscan import parallel

# Per-split, per-class counts of the Kaggle release (613 / 72 / 315 images).
KAGGLE_COUNTS = {
    "train": {"adenocarcinoma": 195, "large_cell_carcinoma": 115,
              "normal": 148, "squamous_cell_carcinoma": 155},
    "valid": {"adenocarcinoma": 23, "large_cell_carcinoma": 21,
              "normal": 13, "squamous_cell_carcinoma": 15},
    "test": {"adenocarcinoma": 120, "large_cell_carcinoma": 51,
             "normal": 54, "squamous_cell_carcinoma": 90},
}

# Share of "normal" images in valid and test that are copies of train images,
# as in the real release, so leak-aware evaluation has something to find.
LEAK_FRACTION = 0.15
# Written beside Data/: where each image's finding was drawn.
FINDINGS_FILE = "findings.json"


class ExistingDataError(FileExistsError):
  """OUT_DIR/Data holds data tfds_ctscan.synthetic did not write."""


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
  """((u/rx)^2 + (v/ry)^2) on the grid `yy` x `xx` (open: a column and a row)."""
  dy, dx = yy - cy, xx - cx
  c, s = np.cos(angle), np.sin(angle)  # NumPy float64: u and v are computed in float64
  if angle == 0.0:  # the values of the rotated form, computed on a column and a row
    return (dx * c / rx) ** 2 + (dy * c / ry) ** 2
  u, v = dx * c + dy * s, -dx * s + dy * c
  return (u / rx) ** 2 + (v / ry) ** 2


def _window(shape, cy, cx, r):
  """Slices of the square of half-side `r` around (cy, cx), clipped to `shape`."""
  y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, shape[0])
  x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, shape[1])
  return slice(y0, y1), slice(x0, x1)


def _paint_disc(img, mask, cy, cx, r, value, inner=1.0, lobes=None, painted=None):
  """Sets pixels of a disc (optionally lobulated, limited to `mask`) to `value`; marks
  them in the boolean image `painted` when given."""
  win = _window(img.shape, cy, cx, r * 1.2)
  yy, xx = (a.astype(np.float32) for a in np.ogrid[win[0], win[1]])
  d = _ellipse(yy, xx, cy, cx, r, r)
  limit = inner if lobes is None else lobes(yy, xx) ** 2 * inner
  sel = d <= limit
  if mask is not None:
    sel &= mask[win]
  img[win][sel] = value
  if painted is not None:
    painted[win] |= sel


def _box(painted: np.ndarray) -> tuple[float, float, float, float] | None:
  """(ymin, xmin, ymax, xmax) of the marked pixels' edges, as fractions of the image
  (TFDS's BBox convention, which a resize that does not keep the aspect preserves)."""
  rows, cols = np.flatnonzero(painted.any(1)), np.flatnonzero(painted.any(0))
  if not rows.size:
    return None
  h, w = painted.shape
  return (rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w)


def slice_image(label: str, rng: np.random.Generator, height: int, width: int
                ) -> np.ndarray:
  """Returns one synthetic H x W uint8 grayscale slice showing `label`'s finding."""
  return slice_with_finding(label, rng, height, width)[0]


def slice_with_finding(label: str, rng: np.random.Generator, height: int, width: int
                       ) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
  """`slice_image`, and the box of the finding's pixels ((ymin, xmin, ymax, xmax), as
  fractions of the image; None for `normal`): where a model should look."""
  if label not in layout.CLASS_NAMES:
    raise ValueError(f"unknown label {label!r}; expected one of {layout.CLASS_NAMES}")
  yy, xx = (a.astype(np.float32) for a in np.ogrid[0:height, 0:width])
  scale = min(height, width)
  cy, cx = height / 2 + rng.normal(0, 0.02) * scale, width / 2
  img = np.full((height, width), 5.0, np.float32)
  body_ry = 0.36 * scale * rng.uniform(0.9, 1.05)
  body_rx = 0.46 * scale * rng.uniform(0.9, 1.05)
  body = _ellipse(yy, xx, cy, cx, body_ry, body_rx)
  img[body <= 1.0] = 115 + rng.normal(0, 4)
  img[(body <= 1.0) & (body > 0.86)] = 150  # subcutaneous fat / muscle rim
  lungs = []
  lung_mask = np.zeros_like(img, bool)
  for side in (-1, 1):
    ly = cy - 0.03 * scale + rng.normal(0, 0.01) * scale
    lx = cx + side * body_rx * rng.uniform(0.42, 0.5)
    lry, lrx = body_ry * rng.uniform(0.68, 0.78), body_rx * rng.uniform(0.3, 0.36)
    lungs.append((ly, lx, lry, lrx, side))
    lung_mask |= _ellipse(yy, xx, ly, lx, lry, lrx, side * 0.12) <= 1.0
  img[lung_mask] = 22
  img[_ellipse(yy, xx, cy + 0.2 * body_ry, cx, 0.12 * scale, 0.09 * scale) <= 1] = 235
  img[_ellipse(yy, xx, cy - 0.05 * body_ry, cx + 0.02 * scale,
               0.16 * scale, 0.13 * scale) <= 1] = 128  # heart
  for _ in range(rng.integers(20, 45)):  # vessels: small bright dots in the lungs
    ly, lx, lry, lrx, _ = lungs[rng.integers(2)]
    r, t = rng.uniform(0, 0.9), rng.uniform(0, 2 * np.pi)
    vr = max(rng.uniform(0.004, 0.012) * scale * (1.4 - r), 0.8)
    _paint_disc(img, lung_mask, ly + r * lry * np.sin(t), lx + r * lrx * np.cos(t),
                vr, 105)
  ly, lx, lry, lrx, side = lungs[rng.integers(2)]
  finding = np.zeros(img.shape, bool)
  # Sizes are fractions of the slice: every finding spans at least ~5 pixels at the
  # 32 px demo resolution (a 0.08 radius is 2.6 px there), where vessels blur away.
  if label == "adenocarcinoma":
    # Within half the lung's radius of its centre: the nodule's radius is about half
    # the lung's width, and further out the lung edge clipped most of it away.
    r, t = rng.uniform(0.1, 0.45), rng.uniform(0, 2 * np.pi)
    ny, nx = ly + r * lry * np.sin(t), lx + r * lrx * np.cos(t)
    nr = rng.uniform(0.08, 0.1) * scale
    _paint_disc(img, lung_mask, ny, nx, nr, 80, painted=finding)  # ground-glass halo
    _paint_disc(img, lung_mask, ny, nx, nr, 185, inner=0.36)  # bright solid core
  elif label == "large_cell_carcinoma":
    r, t = rng.uniform(0.3, 0.5), rng.uniform(0, 2 * np.pi)
    my, mx = ly + r * lry * np.sin(t), lx + r * lrx * np.cos(t)
    n_lobes, phase = int(rng.integers(3, 6)), rng.uniform(0, 6)
    lobes = lambda y, x: 1 + 0.15 * np.sin(n_lobes * np.arctan2(y - my, x - mx) + phase)
    _paint_disc(img, lung_mask, my, mx, rng.uniform(0.12, 0.15) * scale, 138,
                lobes=lobes, painted=finding)
  elif label == "squamous_cell_carcinoma":
    hy = ly + rng.uniform(-0.1, 0.15) * lry
    hx = lx - side * lrx * rng.uniform(0.45, 0.6)  # medial edge: the hilum
    mr = rng.uniform(0.095, 0.115) * scale
    _paint_disc(img, None, hy, hx, mr, 135, painted=finding)
    _paint_disc(img, None, hy + rng.normal(0, 0.08) * mr, hx, 0.5 * mr, 10)  # cavity
  img += rng.normal(0, 6, img.shape).astype(np.float32)
  return np.clip(img, 0, 255).astype(np.uint8), _box(finding)


def encode(gray: np.ndarray, variant: int) -> tuple[bytes, str]:
  """Encodes a slice the ways the Kaggle files come: returns (bytes, extension).

  variant % 10: 0 -> RGBA PNG, 1 -> L PNG, 2 -> JPEG named .png,
  3 -> JPEG named .jpg, otherwise RGB PNG.
  """
  kind = variant % 10
  buf = io.BytesIO()
  if kind == 0:
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", compress_level=1)
  elif kind == 1:
    Image.fromarray(gray, "L").save(buf, "PNG", compress_level=1)
  elif kind in (2, 3):
    Image.fromarray(gray).convert("RGB").save(buf, "JPEG", quality=92)
  else:
    Image.fromarray(gray).convert("RGB").save(buf, "PNG", compress_level=1)
  return buf.getvalue(), (".jpg" if kind == 3 else ".png")


def _image_rng(seed: int, split: str, label: str, index: int) -> np.random.Generator:
  """The generator of one image: its own stream, whatever is drawn before or beside it."""
  return np.random.default_rng(
      [seed, layout.SPLITS.index(split), layout.CLASS_NAMES.index(label), index])


def _write_image(folder: pathlib.Path, rng: np.random.Generator, label: str, index: int,
                 size_range: tuple[int, int]) -> tuple[str, tuple | None]:
  """Draws, encodes and writes one slice; returns its file name and finding box."""
  h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
  gray, box = slice_with_finding(label, rng, h, w)
  payload, ext = encode(gray, int(rng.integers(10)))
  (folder / f"{index:04d}{ext}").write_bytes(payload)
  return f"{index:04d}{ext}", box


def read_findings(data_root: pathlib.Path | str) -> dict[str, tuple]:
  """The finding boxes `write_kaggle_layout` recorded beside `data_root` (Data/): {file
  name relative to Data/: (ymin, xmin, ymax, xmax)}; files without a finding are absent."""
  path = pathlib.Path(data_root).parent / FINDINGS_FILE
  try:
    return {name: tuple(box) for name, box in json.loads(path.read_text()).items()}
  except FileNotFoundError:
    raise FileNotFoundError(f"{path} not found: the finding boxes are written by "
                            "tfds_ctscan.synthetic.write_kaggle_layout") from None


def write_kaggle_layout(out_dir: pathlib.Path | str, seed: int = 0,
                        counts: dict | None = None,
                        size_range: tuple[int, int] = (170, 420),
                        threads: int | None = None) -> pathlib.Path:
  """Writes a synthetic dataset in the Kaggle folder layout.

  Args:
    out_dir: where `Data/` is created.
    seed: generator seed; the same seed writes the same bytes.
    counts: {split: {label: count}}; defaults to KAGGLE_COUNTS.
    size_range: inclusive range of image heights and widths in pixels.
    threads: images drawn at once (NumPy and PIL release the GIL); default: the CPU
      count. Every image has its own random stream, so the bytes do not depend on it.

  Returns:
    The path of the `Data/` folder; beside it FINDINGS_FILE holds the box of each
    image's finding (`read_findings`).

  Raises:
    ExistingDataError: `out_dir/Data` exists and is not an earlier synthetic dataset
      (a re-run replaces one that is, whole: no file of the old one stays).
  """
  out = pathlib.Path(out_dir)
  if (out / "Data").exists() and not (out / FINDINGS_FILE).exists():
    raise ExistingDataError(f"{out / 'Data'} exists and was not written by "
                            "tfds_ctscan.synthetic; give an empty or new OUT_DIR")
  tmp = out / ".synthetic.tmp"  # written whole, then swapped in
  shutil.rmtree(tmp, ignore_errors=True)
  _write(tmp / "Data", seed, counts or KAGGLE_COUNTS, size_range, threads)
  shutil.rmtree(out / "Data", ignore_errors=True)
  (tmp / "Data").replace(out / "Data")
  (tmp / FINDINGS_FILE).replace(out / FINDINGS_FILE)
  tmp.rmdir()
  return out / "Data"


def _write(data: pathlib.Path, seed: int, counts: dict, size_range: tuple[int, int],
           threads: int | None) -> None:
  jobs, leak_slots = [], []
  for split in layout.SPLITS:
    for label, n in counts.get(split, {}).items():
      folder = data / split / layout.KAGGLE_FOLDERS[split][label]
      folder.mkdir(parents=True, exist_ok=True)
      n_leak = int(n * LEAK_FRACTION) if label == "normal" and split != "train" else 0
      for i in range(n):
        if i < n_leak:
          leak_slots.append((folder, i))
        else:
          jobs.append((split, folder, _image_rng(seed, split, label, i), label, i))
  written = list(parallel.ordered_map(lambda job: _write_image(*job[1:], size_range), jobs,
                                      threads))
  names = [name for name, _ in written]
  boxes = {f"{folder.relative_to(data).as_posix()}/{name}": [float(v) for v in box]
           for (_, folder, *_), (name, box) in zip(jobs, written) if box is not None}
  (data.parent / FINDINGS_FILE).write_text(json.dumps(boxes, indent=0, sort_keys=True))
  # Copies of train "normal" images, as the real release has in valid and test.
  train_normals = [folder / name for (split, folder, _, label, _), name in zip(jobs, names)
                   if split == "train" and label == "normal"]
  if leak_slots and not train_normals:
    raise ValueError(f"counts {counts} ask for copies of train normal images, "
                     "but there are none: give train some 'normal' images")
  rng = np.random.default_rng([seed, len(layout.SPLITS)])
  for folder, i in leak_slots:
    source = train_normals[int(rng.integers(len(train_normals)))]
    (folder / f"{i:04d}{source.suffix}").write_bytes(source.read_bytes())


def main(argv):
  """`python -m tfds_ctscan.synthetic OUT_DIR [--seed=N]`: writes OUT_DIR/Data/."""
  if len(argv) != 2:
    raise app.UsageError("usage: python -m tfds_ctscan.synthetic OUT_DIR [--seed=N]")
  try:
    data = write_kaggle_layout(argv[1], seed=flags.FLAGS.seed)
  except ExistingDataError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote synthetic Kaggle layout to {data}")


if __name__ == "__main__":
  flags.DEFINE_integer("seed", 0, "Seed of the images (the synthetic config uses 0).")
  app.run(main)
