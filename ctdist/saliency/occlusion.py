"""Occlusion sensitivity (Zeiler & Fergus 2014, "Visualizing and understanding
convolutional networks"): how much a class's probability drops when a square of the
image is covered. Model-agnostic and slow (one forward pass per position), a check on
what a gradient map such as Grad-CAM claims."""

import keras
import numpy as np
import tensorflow as tf


def window(image_size: int) -> tuple[int, int]:
  """(patch side, stride) in pixels: 3/16 of the image (6 px at 32, 42 at 224), half of
  that apart: squares that overlap by half, 10 x 10 positions at either size (a third
  apart, 14 x 14, drew the same findings at twice the forward passes)."""
  patch = max(2, round(image_size * 3 / 16))
  return patch, max(1, patch // 2)


class Occluder:
  """Occlusion maps of one model; a covered square takes the image's mean grey."""

  def __init__(self, model: keras.Model, batch: int = 256):
    self.model = model
    self._size = int(model.input_shape[1])
    if model.input_shape[2] != self._size:
      raise ValueError(f"input shape {model.input_shape}: occlusion needs square images")
    self.patch, self.stride = window(self._size)
    self._batch = batch
    self._forward = tf.function(lambda x: model(x, training=False))

  def maps(self, images: np.ndarray, classes=None, upsampled: bool = True
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps N x H x W in [0, 1], probabilities N x classes, explained class per image),
    like `gradcam.Explainer.maps` (classes None or -1: the predicted one; the maps are
    at the input's size either way): each map is the class probability's mean drop over
    the squares covering a pixel (rises clipped to 0), divided by its maximum."""
    del upsampled  # occlusion maps are made at the input's size
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:3] != (self._size, self._size):
      raise ValueError(f"images of shape {images.shape}; expected N x {self._size} x "
                       f"{self._size} x 3 (the model's input)")
    p, s, n = self.patch, self.stride, self._size
    starts = list(range(0, n - p + 1, s))
    if starts[-1] != n - p:
      starts.append(n - p)  # the last row and column are covered too
    positions = [(y, x) for y in starts for x in starts]
    probs = np.concatenate([self._forward(images[i:i + self._batch]).numpy()
                            for i in range(0, len(images), self._batch)])
    target = probs.argmax(1)
    if classes is not None:
      target = np.where(np.asarray(classes) < 0, target, classes)
    out = np.zeros((len(images), n, n))
    for i, image in enumerate(images):
      covered = np.repeat(image[None], len(positions), 0)
      for j, (y, x) in enumerate(positions):
        covered[j, y:y + p, x:x + p] = image.mean((0, 1))
      scores = np.concatenate([self._forward(covered[k:k + self._batch]).numpy()
                               for k in range(0, len(covered), self._batch)])[:, target[i]]
      drop, count = np.zeros((n, n)), np.zeros((n, n))
      for (y, x), score in zip(positions, scores):
        drop[y:y + p, x:x + p] += probs[i, target[i]] - score
        count[y:y + p, x:x + p] += 1
      cam = np.maximum(drop / count, 0)
      out[i] = cam / cam.max() if cam.max() > 0 else cam
    return out, probs, target
