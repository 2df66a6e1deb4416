"""The ResNet50 transfer model: its base (ImageNet, random or a local file), its head,
and the layers each training phase unfreezes."""

import os
import re

import keras
from keras import layers

from ctdist.model import layers as ctdist_layers

BASE_NAME = "resnet50"


# The last BatchNorm of each bottleneck's residual branch in Keras' ResNet50.
_BRANCH_END = re.compile(r"conv\d_block\d+_3_bn")


# Keras' ResNet50 uses 0.99; with a few hundred steps from scratch the moving
# statistics then lag the weights and inference collapses to one class.
FROM_SCRATCH_BN_MOMENTUM = 0.9


def _sliced_pools(base: keras.Model) -> keras.Model:
  """`base` with every square, unpadded MaxPooling2D replaced by SlicedMaxPool,
  weights copied."""
  def clone(layer):
    if (isinstance(layer, layers.MaxPooling2D) and layer.padding == "valid"
        and len(set(layer.pool_size)) == 1 and len(set(layer.strides)) == 1):
      return ctdist_layers.SlicedMaxPool(layer.pool_size[0], layer.strides[0], name=layer.name)
    return layer.__class__.from_config(layer.get_config())
  clone_ = keras.models.clone_model(base, clone_function=clone)
  clone_.set_weights(base.get_weights())
  return clone_


class WeightsError(ValueError):
  """The requested base weights cannot be loaded."""


def _base(image_size: int, weights: str) -> keras.Model:
  if weights not in ("imagenet", "none") and not os.path.isfile(weights):
    raise WeightsError(
        f"--weights={weights!r}: no such file; expected 'imagenet', 'none' or "
        "the path of a local ResNet50 notop .h5 file")
  try:
    base = keras.applications.ResNet50(
        include_top=False, input_shape=(image_size, image_size, 3),
        weights=None if weights == "none" else weights)
  except Exception as e:  # pylint: disable=broad-except
    raise WeightsError(
        f"could not load ResNet50 weights {weights!r} ({type(e).__name__}: {e}). "
        "Without network access, download resnet50_weights_tf_dim_ordering_tf_"
        "kernels_notop.h5 elsewhere and pass --weights=PATH, or train from "
        "scratch on purpose with --weights=none") from e
  return _sliced_pools(base)


def zero_residual_branches(base: keras.Model) -> list[str]:
  """Sets the scale (gamma) of each residual branch's last BatchNorm to 0, so
  that a randomly initialised ResNet starts as the identity through every block
  (Goyal et al. 2017, "Accurate, large minibatch SGD", section 5.1): its
  activations no longer grow block by block and the first steps stay stable.

  Returns:
    The names of the BatchNorm layers zeroed (conv2_block1_3_bn, ...).
  """
  zeroed = []
  for layer in base.layers:
    if isinstance(layer, layers.BatchNormalization) and _BRANCH_END.fullmatch(layer.name):
      layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
      zeroed.append(layer.name)
  return zeroed


def build_model(image_size: int, class_names, weights: str = "imagenet",
                freeze_batchnorm: bool = True) -> keras.Model:
  """Builds the classifier: raw 0-255 RGB in, class probabilities out.

  The base starts frozen. With `freeze_batchnorm` (the transfer-learning
  default) it always runs BatchNorm in inference mode (`training=False`), so
  fine-tuning never updates the pretrained batch statistics.

  Args:
    image_size: input height and width in pixels.
    class_names: the label names, in label-index order.
    weights: 'imagenet', 'none' (random init) or the path of a .h5 file.
    freeze_batchnorm: False only to train from scratch (`weights='none'`),
      where there are no statistics to keep and a ResNet without working
      BatchNorm does not train. BatchNorm momentum is then lowered to
      FROM_SCRATCH_BN_MOMENTUM so that a short run's moving statistics
      catch up with the weights.

  Raises:
    WeightsError: the weights cannot be loaded; never falls back silently.
  """
  base = _base(image_size, weights)
  base.name = BASE_NAME
  base.trainable = False
  if weights == "none":
    zero_residual_branches(base)
  if not freeze_batchnorm:
    for layer in base.layers:
      if isinstance(layer, layers.BatchNormalization):
        layer.momentum = FROM_SCRATCH_BN_MOMENTUM
  inputs = keras.Input((image_size, image_size, 3), name="image")
  x = ctdist_layers.ResNetPreprocess(name="preprocess")(inputs)
  x = base(x, training=False) if freeze_batchnorm else base(x)
  x = layers.GlobalAveragePooling2D(name="gap")(x)
  x = layers.Dense(512, activation="relu", name="fc1")(x)
  x = layers.Dropout(0.4, name="drop1")(x)
  x = layers.Dense(128, activation="relu", name="fc2")(x)
  x = layers.Dropout(0.3, name="drop2")(x)
  # Zero logits: every class starts at 1/k (loss ln k). With Glorot's default a
  # random base's features (std ~3) gave confident wrong answers, loss 4.8 at step 0.
  x = layers.Dense(len(class_names), kernel_initializer="zeros", name="logits")(x)
  outputs = ctdist_layers.LabeledSoftmax(class_names, name=ctdist_layers.OUTPUT_NAME)(x)
  return keras.Model(inputs, outputs, name="ctdist_resnet50")


def unfreeze_top(model: keras.Model, n_layers: int,
                 freeze_batchnorm: bool = True) -> list[str]:
  """Unfreezes the top `n_layers` layers of the base, BatchNorm excluded.

  Args:
    model: a model from `build_model`.
    n_layers: how many of the base's last layers to unfreeze; -1 for all.
    freeze_batchnorm: keep BatchNorm layers frozen (see `build_model`).

  Returns:
    The names of the layers now trainable.
  """
  base = model.get_layer(BASE_NAME)
  base.trainable = True
  top = base.layers if n_layers < 0 else base.layers[len(base.layers) - n_layers:]
  top_ids = {id(layer) for layer in top} if n_layers != 0 else set()
  unfrozen = []
  for layer in base.layers:
    is_bn = freeze_batchnorm and isinstance(layer, layers.BatchNormalization)
    layer.trainable = id(layer) in top_ids and not is_bn
    if layer.trainable and layer.weights:
      unfrozen.append(layer.name)
  return unfrozen
