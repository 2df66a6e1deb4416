"""Maps as pictures: a colour heat map, its blend over the image, a caption strip saying
what drew it, PNG bytes."""

import io

import matplotlib

matplotlib.use("Agg")
from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# Pictures are enlarged to at least this many pixels a side (nearest neighbour: the
# pixels the model saw, not invented detail); a 32 px input is shown at 224.
DISPLAY_SIDE = 224


def heat(cam: np.ndarray) -> np.ndarray:
  """H x W map in [0, 1] -> H x W x 3 uint8 ("jet": blue low, red high)."""
  rgb = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
  return np.round(rgb * 255).astype(np.uint8)


def blend(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """The heat map over the image (H x W x 3 uint8), `alpha` the heat map's share."""
  mixed = (1 - alpha) * image.astype(np.float32) + alpha * heat(cam).astype(np.float32)
  return np.round(np.clip(mixed, 0, 255)).astype(np.uint8)


def enlarge(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
  """`image` scaled up by a whole factor until its shorter side is at least `side`."""
  factor = max(1, -(-side // min(image.shape[:2])))
  return np.repeat(np.repeat(image, factor, 0), factor, 1)


def png(image: np.ndarray) -> bytes:
  """An H x W x 3 (or H x W) uint8 array as PNG bytes."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, "PNG")
  return buf.getvalue()


def caption(image: np.ndarray, text: str) -> np.ndarray:
  """`image` (H x W x 3 uint8) above a white strip holding `text` in black, wrapped to the
  image's width: what a picture shows travels with it."""
  font = ImageFont.load_default()
  width, line_height = image.shape[1], 13
  lines = [""]
  for word in text.split():
    trial = f"{lines[-1]} {word}".strip()
    if lines[-1] and font.getlength(trial) > width - 8:
      lines.append(word)
    else:
      lines[-1] = trial
  strip = Image.new("RGB", (width, 6 + line_height * len(lines)), "white")
  draw = ImageDraw.Draw(strip)
  for i, line in enumerate(lines):
    draw.text((4, 3 + line_height * i), line, fill="black", font=font)
  return np.concatenate([image, np.asarray(strip)], axis=0)
