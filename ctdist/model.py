"""The ResNet50 transfer model, its preprocessing, and the two training phases."""

import os

import keras
from keras import layers

BASE_NAME = "resnet50"
OUTPUT_NAME = "probabilities"
# Keras' ResNet50 uses 0.99; with a few hundred steps from scratch the moving
# statistics then lag the weights and inference collapses to one class.
FROM_SCRATCH_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="ctdist")
class ResNetPreprocess(layers.Layer):
  """ResNet50's own `preprocess_input` (caffe mode: RGB->BGR, minus ImageNet mean)
  on raw 0-255 RGB, inside the model so that every caller feeds raw pixels."""

  def call(self, inputs):
    return keras.applications.resnet50.preprocess_input(
        keras.ops.cast(inputs, self.compute_dtype))


@keras.saving.register_keras_serializable(package="ctdist")
class LabeledSoftmax(layers.Activation):
  """A float32 softmax that stores the class names with the model."""

  def __init__(self, class_names, **kwargs):
    kwargs.pop("activation", None)
    kwargs["dtype"] = "float32"
    super().__init__("softmax", **kwargs)
    self.class_names = list(class_names)

  def get_config(self):
    config = super().get_config()
    config.pop("activation", None)
    return {**config, "class_names": self.class_names}


class WeightsError(ValueError):
  """The requested base weights cannot be loaded."""


def _base(image_size: int, weights: str) -> keras.Model:
  if weights not in ("imagenet", "none") and not os.path.isfile(weights):
    raise WeightsError(
        f"--weights={weights!r}: no such file; expected 'imagenet', 'none' or "
        "the path of a local ResNet50 notop .h5 file")
  try:
    return keras.applications.ResNet50(
        include_top=False, input_shape=(image_size, image_size, 3),
        weights=None if weights == "none" else weights)
  except Exception as e:  # pylint: disable=broad-except
    raise WeightsError(
        f"could not load ResNet50 weights {weights!r} ({type(e).__name__}: {e}). "
        "Without network access, download resnet50_weights_tf_dim_ordering_tf_"
        "kernels_notop.h5 elsewhere and pass --weights=PATH, or train from "
        "scratch on purpose with --weights=none") from e


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
  if not freeze_batchnorm:
    for layer in base.layers:
      if isinstance(layer, layers.BatchNormalization):
        layer.momentum = FROM_SCRATCH_BN_MOMENTUM
  inputs = keras.Input((image_size, image_size, 3), name="image")
  x = ResNetPreprocess(name="preprocess")(inputs)
  x = base(x, training=False) if freeze_batchnorm else base(x)
  x = layers.GlobalAveragePooling2D(name="gap")(x)
  x = layers.Dense(512, activation="relu", name="fc1")(x)
  x = layers.Dropout(0.4, name="drop1")(x)
  x = layers.Dense(128, activation="relu", name="fc2")(x)
  x = layers.Dropout(0.3, name="drop2")(x)
  x = layers.Dense(len(class_names), name="logits")(x)
  outputs = LabeledSoftmax(class_names, name=OUTPUT_NAME)(x)
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
  top_ids = {id(l) for l in top} if n_layers != 0 else set()
  unfrozen = []
  for layer in base.layers:
    is_bn = freeze_batchnorm and isinstance(layer, layers.BatchNormalization)
    layer.trainable = id(layer) in top_ids and not is_bn
    if layer.trainable and layer.weights:
      unfrozen.append(layer.name)
  return unfrozen


def class_names_of(model: keras.Model) -> list[str]:
  """The class names stored in a model from `build_model`."""
  return list(model.get_layer(OUTPUT_NAME).class_names)
