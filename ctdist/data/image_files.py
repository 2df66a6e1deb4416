"""Image files as the model sees them: decoded by content (any PNG/JPEG, any mode) and
resized as in training."""

import numpy as np

from ctdist.data import pipeline
from tfds_ctscan import images

# What an unreadable image file raises in `read_input`: the caller names the file and goes on.
READ_ERRORS = (OSError, images.ImageError)


def read_input(path: str, image_size: int) -> np.ndarray:
  """An image file decoded by content (any PNG/JPEG, any mode) and resized as in
  training: image_size x image_size x 3 uint8, the model's input."""
  pixels, _ = images.read(path)
  return pipeline.resize(pixels, image_size).numpy()


def read_each(paths, image_size: int):
  """(path, model input, None) for each readable file and (path, None, the reason) for
  the others: an unreadable file does not stop the rest."""
  for path in paths:
    try:
      yield path, read_input(path, image_size), None
    except READ_ERRORS as e:
      yield path, None, str(e)
