"""Decodes image files by content into 8-bit RGB arrays, with a pixel limit: PNG, JPEG and
the other formats PIL reads, and CT slices stored as DICOM (through a Hounsfield window,
tfds_ctscan.dicom)."""

import io

import numpy as np
from PIL import Image

from tfds_ctscan import dicom

# Refuse images above this many pixels (decompression-bomb guard). The largest real
# Kaggle image is about 1200 x 900 px, so 40 MP leaves a wide margin.
MAX_PIXELS = 40_000_000

# The image files a class folder may hold: extension -> the format PIL should find.
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG",
                     ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF",
                     ".tiff": "TIFF", ".webp": "WEBP", ".dcm": "DICOM"}
IMAGE_EXTENSIONS = tuple(EXTENSION_FORMATS)


class ImageError(ValueError):
  """An image file that cannot be used: unreadable, truncated or too large."""


def _to_rgb(img: Image.Image) -> np.ndarray:
  """Converts any PIL mode to an H x W x 3 uint8 array.

  16-bit and 32-bit integer images keep their top 8 bits; alpha is composited
  onto black, which is the CT background.
  """
  if img.mode in ("I;16", "I;16B", "I;16L", "I"):
    arr = np.asarray(img, dtype=np.int64)
    top = 65535 if img.mode != "I" or arr.max() <= 65535 else int(arr.max())
    gray = np.clip(arr * 255 // max(top, 1), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if img.mode == "F":
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    gray = ((arr - lo) / (hi - lo or 1.0) * 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if img.mode == "P":
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
  if img.mode in ("LA", "RGBA", "PA"):
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:4] / 255.0
    return (rgba[..., :3] * alpha).round().astype(np.uint8)
  return np.asarray(img.convert("RGB"), dtype=np.uint8)


def sniff_format(data: bytes) -> str | None:
  """Returns PIL's format name for encoded bytes ('PNG', 'JPEG', ...), 'DICOM', or None."""
  if dicom.is_dicom(data):
    return "DICOM"
  try:
    with Image.open(io.BytesIO(data)) as img:
      return img.format
  except Exception:  # pylint: disable=broad-except
    return None


def decode(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS,
           window: dicom.Window = dicom.LUNG) -> tuple[np.ndarray, str]:
  """Decodes encoded image bytes by content.

  Args:
    data: the file's bytes.
    name: the file's name, used in error messages only.
    max_pixels: images with more pixels than this are refused.
    window: the Hounsfield window of a DICOM slice.

  Returns:
    (image, format): an H x W x 3 uint8 RGB array and PIL's format name.

  Raises:
    ImageError: empty, not an image, truncated, or above `max_pixels`.
  """
  if not data:
    raise ImageError(f"{name}: empty file (0 bytes)")
  if dicom.is_dicom(data):
    try:
      return dicom.decode(data, name, window, max_pixels), "DICOM"
    except dicom.DicomError as e:
      raise ImageError(str(e)) from e
  try:
    img = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise ImageError(
        f"{name}: refused as a decompression bomb ({e}); the limit is "
        f"{max_pixels} pixels") from e
  except Exception as e:  # pylint: disable=broad-except
    raise ImageError(f"{name}: not an image ({type(e).__name__})") from e
  with img:
    width, height = img.size
    if width * height > max_pixels:
      raise ImageError(
          f"{name}: {width}x{height} = {width * height} pixels is above the "
          f"limit of {max_pixels} (decompression-bomb guard); downscale the "
          "image or raise the limit")
    try:
      img.load()
    except Exception as e:  # pylint: disable=broad-except
      raise ImageError(
          f"{name}: truncated or corrupt {img.format} ({e})") from e
    return _to_rgb(img), img.format


def read(path, max_pixels: int = MAX_PIXELS,
         window: dicom.Window = dicom.LUNG) -> tuple[np.ndarray, str]:
  """Reads and decodes one image file; see `decode`."""
  with open(path, "rb") as f:
    return decode(f.read(), str(path), max_pixels, window)


def encode_png(pixels: np.ndarray) -> bytes:
  """H x W x 3 uint8 -> PNG bytes (lossless; fast zlib level: size matters less)."""
  buf = io.BytesIO()
  Image.fromarray(pixels, "RGB").save(buf, "PNG", compress_level=1)
  return buf.getvalue()
