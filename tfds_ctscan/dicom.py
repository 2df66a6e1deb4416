"""CT slices stored as DICOM, read into 8-bit grey images through a Hounsfield window.

A slice's stored values become Hounsfield units by its own Rescale Slope and Intercept;
a window (centre, width) maps them to 0-255: the lung window by default (centre -600 HU,
width 1500 HU), which shows the parenchyma and a mass in it. The 16-bit values are kept
until the window is applied. MONOCHROME1 slices (whose lowest values are meant to be shown
white) are inverted after the window: the image is what a DICOM viewer shows. A DICOM
file is recognised by its content (the "DICM" marker at byte 128), with or without the
.dcm extension. Multi-frame files and files of another modality than CT are refused,
each with the file named.
"""

import dataclasses
import io

import numpy as np

# Bytes 128-131 of a DICOM Part 10 file (after its 128-byte preamble).
MARKER = b"DICM"

# The packages that decode each compressed transfer syntax (pydicom's pixel-data plugins),
# for the error when none is installed.
DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or Pillow)",   # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg (or Pillow)",   # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",               # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",               # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",  # JPEG-LS
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",  # JPEG-LS near
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg (or Pillow)",   # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg (or Pillow)",   # JPEG 2000
}


class DicomError(ValueError):
  """A DICOM file that cannot be one CT slice: another modality, several frames, no pixel
  data, or pixel data no installed decoder reads."""


@dataclasses.dataclass(frozen=True)
class Window:
  """A Hounsfield window: `center - width / 2` maps to 0 and `center + width / 2` to 255."""
  center: float = -600.0
  width: float = 1500.0

  def __post_init__(self):
    if not self.width > 0:
      raise ValueError(f"a window's width must be above 0 HU, got {self.width:g}; the lung "
                       "window is centre -600, width 1500")


LUNG = Window()


def is_dicom(data: bytes) -> bool:
  """Whether `data` is a DICOM Part 10 file (by content, whatever the file's name)."""
  return len(data) >= 132 and data[128:132] == MARKER


def apply_window(hounsfield: np.ndarray, window: Window) -> np.ndarray:
  """Hounsfield units -> uint8: linear inside the window, clipped outside."""
  low = window.center - window.width / 2
  scaled = (hounsfield.astype(np.float64) - low) / window.width * 255.0
  return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def read_slice(data: bytes, name: str, max_pixels: int):
  """The pydicom dataset of one CT slice, checked; its pixels not yet decoded.

  Raises:
    DicomError: not DICOM, not CT, several frames, no pixels, or above `max_pixels`.
  """
  import pydicom  # pylint: disable=g-import-not-at-top  (only when a DICOM is read)
  try:
    ds = pydicom.dcmread(io.BytesIO(data))
  except Exception as e:  # pylint: disable=broad-except  (pydicom raises several kinds)
    raise DicomError(f"{name}: not a readable DICOM file ({type(e).__name__}: {e})") from e
  modality = ds.get("Modality")
  if modality != "CT":
    raise DicomError(f"{name}: a DICOM of modality {modality or 'unknown'!s}, not CT; "
                     "ctdist reads CT slices only: remove it from the class folder")
  if "PixelData" not in ds:
    raise DicomError(f"{name}: a DICOM without pixel data (not an image): remove it from "
                     "the class folder")
  frames = int(ds.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise DicomError(f"{name}: a multi-frame DICOM ({frames} frames); ctdist reads one "
                     "slice a file: store each frame as its own file")
  if int(ds.Rows) * int(ds.Columns) > max_pixels:
    raise DicomError(f"{name}: {ds.Columns} x {ds.Rows} pixels, above the limit of "
                     f"{max_pixels}")
  return ds


def hounsfield(ds, name: str) -> np.ndarray:
  """The slice's Hounsfield units: stored value x Rescale Slope + Rescale Intercept."""
  try:
    stored = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except  (a decoder missing or failing)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    packages = DECODERS.get(str(syntax))
    if packages is None:
      raise DicomError(f"{name}: its pixel data cannot be decoded ({type(e).__name__}: "
                       f"{e})") from e
    raise DicomError(
        f"{name}: pixel data in {syntax.name} ({syntax}), which the installed decoders "
        f"cannot read: pip install {packages}") from e
  slope = float(ds.get("RescaleSlope", 1) or 1)
  intercept = float(ds.get("RescaleIntercept", 0) or 0)
  return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def decode(data: bytes, name: str, window: Window = LUNG,
           max_pixels: int = 40_000_000) -> np.ndarray:
  """One CT slice as an H x W x 3 uint8 array (grey), through `window`.

  Raises:
    DicomError: see `read_slice` and `hounsfield`.
  """
  ds = read_slice(data, name, max_pixels)
  grey = apply_window(hounsfield(ds, name), window)
  if ds.get("PhotometricInterpretation") == "MONOCHROME1":
    grey = 255 - grey
  return np.repeat(grey[..., None], 3, axis=-1)
