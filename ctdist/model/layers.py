"""ctdist's own Keras layers (registered for safe-mode loading) and what the output layer
stores: the class names and the softmax temperature."""

import keras
from keras import layers

OUTPUT_NAME = "probabilities"


@keras.saving.register_keras_serializable(package="ctdist")
class ResNetPreprocess(layers.Layer):
  """ResNet50's own `preprocess_input` (caffe mode: RGB->BGR, minus ImageNet mean)
  on raw 0-255 RGB, inside the model so that every caller feeds raw pixels."""

  def call(self, inputs):
    return keras.applications.resnet50.preprocess_input(
        keras.ops.cast(inputs, self.compute_dtype))


@keras.saving.register_keras_serializable(package="ctdist")
class LabeledSoftmax(layers.Activation):
  """A float32 softmax of logits / temperature that stores the class names (and the
  temperature `ctdist.calibrate` fitted; 1 until then) with the model."""

  def __init__(self, class_names, temperature: float = 1.0, **kwargs):
    kwargs.pop("activation", None)
    kwargs["dtype"] = "float32"
    super().__init__("softmax", **kwargs)
    self.class_names = list(class_names)
    self.temperature = float(temperature)
    if not self.temperature > 0:
      raise ValueError(f"temperature={temperature}; must be > 0")

  def call(self, inputs):
    # At 1 (always, during training) the graph is the plain softmax, whose logits the
    # cross-entropy reads back for a stable loss.
    if self.temperature == 1.0:
      return keras.activations.softmax(inputs)
    return keras.activations.softmax(inputs / self.temperature)

  def get_config(self):
    config = super().get_config()
    config.pop("activation", None)
    return {**config, "class_names": self.class_names, "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="ctdist")
class SlicedMaxPool(layers.Layer):
  """Max pooling ("valid" padding) as the maximum of k x k strided slices.

  The same outputs as MaxPooling2D, but its gradient is made of slices and
  element-wise selects: TensorFlow's XLA bridge refuses MaxPool's own gradient
  under op determinism ("MaxPool gradient ops do not yet have a deterministic
  XLA implementation"), so ResNet50's one max pool is swapped for this to allow
  `--deterministic` with `--jit_compile` (and so on a TPU or GPU with XLA).
  """

  def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs):
    super().__init__(**kwargs)
    self.pool_size, self.strides = int(pool_size), int(strides)

  def call(self, inputs):
    k, s = self.pool_size, self.strides
    out_h = (inputs.shape[1] - k) // s + 1
    out_w = (inputs.shape[2] - k) // s + 1
    parts = [inputs[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
             for i in range(k) for j in range(k)]
    return keras.ops.max(keras.ops.stack(parts, axis=0), axis=0)

  def compute_output_shape(self, input_shape):
    k, s = self.pool_size, self.strides
    size = lambda n: None if n is None else (n - k) // s + 1
    return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

  def get_config(self):
    return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


def class_names_of(model: keras.Model) -> list[str]:
  """The class names stored in a model from `build_model`."""
  return list(model.get_layer(OUTPUT_NAME).class_names)


def temperature_of(model: keras.Model) -> float:
  """The softmax temperature stored in a model from `build_model` (1: uncalibrated)."""
  return model.get_layer(OUTPUT_NAME).temperature


def set_temperature(model: keras.Model, temperature: float) -> None:
  """Sets the output softmax's temperature (probabilities = softmax(logits / T)); the
  model must be traced again (a new `tf.function`) to see it."""
  if not temperature > 0:
    raise ValueError(f"temperature={temperature}; must be > 0")
  model.get_layer(OUTPUT_NAME).temperature = float(temperature)
