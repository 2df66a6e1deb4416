"""Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks"):
where a convolutional feature map raised a class's score.

The map of class c at layer A (h x w x k) is ReLU(sum_k alpha_k A_k), alpha_k the spatial
mean of d logit_c / d A_k; it is upsampled to the input and scaled to [0, 1]. The logit is
the input of the model's final softmax (the score before the classes compete).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from ctdist.config import commands as commands_config


class NoFeatureMapError(ValueError):
  """The model has no convolutional feature map to explain."""


@dataclasses.dataclass(frozen=True)
class Layer:
  """A layer with a 4-D (batch, height, width, channels) output: `path` is its name,
  preceded by the name of the nested model holding it (("resnet50", "conv5_block3_out"))."""
  path: tuple[str, ...]
  height: int
  width: int

  @property
  def name(self) -> str:
    return "/".join(self.path)


def feature_layers(model: keras.Model) -> list[Layer]:
  """Every layer with a spatial (4-D) output, nested models' layers included, in order;
  the model's input and nested models themselves are not listed."""
  found = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    if isinstance(layer, keras.Model):
      found += [Layer((layer.name, *inner.path), inner.height, inner.width)
                for inner in feature_layers(layer)]
    elif len(layer.output.shape) == 4 and None not in layer.output.shape[1:3]:
      found.append(Layer((layer.name,), int(layer.output.shape[1]),
                         int(layer.output.shape[2])))
  return found


def choose_layer(model: keras.Model, name: str | None = None,
                 min_size: int = commands_config.MIN_MAP_SIZE) -> Layer:
  """The layer to explain: `name` ("conv5_block3_out" or "resnet50/conv5_block3_out"), or
  the deepest layer whose map is at least `min_size` x `min_size` (the last one if none
  is); a layer whose channels mix (a convolution or an activation after it) in practice.

  Raises:
    NoFeatureMapError: the model has no 4-D layer, or none named `name`.
  """
  # Input-side layers (the preprocessing) have the input's shape but compute no features.
  layers = [c for c in feature_layers(model) if c.path[0] != "preprocess"]
  if not layers:
    raise NoFeatureMapError(
        f"model {model.name!r} has no convolutional layer (no layer outputs a (height, "
        "width, channels) map), so Grad-CAM has nothing to explain; it needs a "
        "convolutional model such as ctdist.train's ResNet50")
  if name:
    chosen = [c for c in layers if name in (c.name, c.path[-1])]
    if not chosen:
      raise NoFeatureMapError(
          f"--layer={name!r}: no such layer with a spatial map in {model.name!r}; "
          f"e.g. {', '.join(c.name for c in layers[-3:])}")
    return chosen[-1]
  big = [c for c in layers if min(c.height, c.width) >= min_size]
  return (big or layers)[-1]


def _final_softmax(model: keras.Model) -> bool:
  """Whether the last layer is a softmax alone (ctdist's LabeledSoftmax, an Activation):
  its input is then the logits. A Dense layer with a softmax activation is explained
  through its output, the probability."""
  last = model.layers[-1]
  activation = getattr(last, "activation", None)
  return (isinstance(last, keras.layers.Activation)
          and getattr(activation, "__name__", "") == "softmax")


class Explainer:
  """Grad-CAM maps of one model at one layer.

  The model's top-level layers are replayed one after another (a functional chain, as
  ctdist.train builds), with the nested model that holds `layer` split at it; the replay
  is checked against the model itself.
  """

  def __init__(self, model: keras.Model, layer: Layer):
    self.model, self.layer = model, layer
    self._size = (int(model.input_shape[1]), int(model.input_shape[2]))
    owner = model.get_layer(layer.path[0])
    if len(layer.path) == 1:  # a top-level layer: its output is the map
      split = lambda x: (lambda y: (y, y))(owner(x, training=False))
    else:  # in a nested model: its map and its output, in one call
      inner = keras.Model(owner.inputs, [owner.get_layer(layer.path[-1]).output,
                                         owner.outputs[0]])
      split = lambda x: inner(x, training=False)
    self._split = {owner.name: split}
    self._logits_from_input = _final_softmax(model)
    self._maps = tf.function(self._maps_fn)
    self._check_replay()

  def _replay(self, images):
    x, features, logits = images, None, None
    layers = [layer for layer in self.model.layers
              if not isinstance(layer, keras.layers.InputLayer)]
    for i, layer in enumerate(layers):
      if layer.name in self._split:
        features, x = self._split[layer.name](x)
      else:
        if i == len(layers) - 1 and self._logits_from_input:
          logits = x
        x = layer(x, training=False)
    return features, (x if logits is None else logits), x

  def _check_replay(self):
    probe = tf.random.stateless_uniform((1, *self._size, 3), (1, 2), 0, 255)
    replayed = self._replay(probe)[2]
    direct = self.model(probe, training=False)
    if not np.allclose(np.asarray(replayed, np.float32), np.asarray(direct, np.float32),
                       atol=1e-3):
      raise NoFeatureMapError(
          f"model {self.model.name!r}: its layers replayed in order do not give its "
          "output (not a chain of layers); Grad-CAM here explains ctdist.train's models")

  def _maps_fn(self, images, classes):
    images = tf.cast(images, tf.float32)
    with tf.GradientTape() as tape:
      tape.watch(images)  # every op is recorded, frozen layers' included
      features, scores, probs = self._replay(images)
      target = tf.where(classes < 0, tf.argmax(probs, -1, output_type=tf.int32), classes)
      score = tf.reduce_sum(tf.gather(tf.cast(scores, tf.float32), target[:, None],
                                      batch_dims=1))
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(alpha * features, -1))
    return cam, tf.cast(probs, tf.float32), target

  def maps(self, images: np.ndarray, classes=None, upsampled: bool = True
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM of `images` (N x H x W x 3, raw 0-255 at the model's size).

    Args:
      images: the model's inputs.
      classes: a class index per image to explain; None (or -1): the predicted class.
      upsampled: maps at the input's size (bilinear); False: at the layer's (h x w).

    Returns:
      (maps N x H x W in [0, 1], each scaled by its maximum (all 0 when no feature raised
      the score), probabilities N x classes, explained class per image).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:3] != self._size:
      raise ValueError(f"images of shape {images.shape}; expected N x {self._size[0]} x "
                       f"{self._size[1]} x 3 (the model's input)")
    classes = np.full(len(images), -1) if classes is None else np.asarray(classes)
    cam, probs, target = self._maps(tf.constant(images, tf.float32),
                                    tf.constant(classes, tf.int32))
    cam = cam.numpy()
    return (upsample(cam, self._size) if upsampled else normalise(cam), probs.numpy(),
            target.numpy())


def normalise(cam: np.ndarray) -> np.ndarray:
  """N maps, each divided by its maximum (an all-zero map stays 0)."""
  top = cam.reshape(len(cam), -1).max(1)[:, None, None]
  return np.where(top > 0, cam / np.maximum(top, 1e-30), 0.0)


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """N x h x w maps -> N x H x W, bilinear (pixel centres aligned), normalised."""
  return normalise(tf.image.resize(cam[..., None], size, method="bilinear").numpy()[..., 0])


def peak(cam: np.ndarray) -> tuple[float, float]:
  """(y, x) of a map's maximum as fractions of the map: the centre of the pixels that
  reach it (a map upsampled from a coarser one has flat maxima; their first pixel would
  pull every peak to the top left)."""
  rows, cols = np.nonzero(cam >= cam.max())
  return (rows.mean() + 0.5) / cam.shape[0], (cols.mean() + 0.5) / cam.shape[1]
