"""The model for a device: a LiteRT (TensorFlow Lite) flat buffer, float32 or quantised,
and the interpreter that runs it.

Its input is one resized image, float32 [1, S, S, 3] of 0-255 RGB (as `serving_resized`
takes; LiteRT has no PNG/JPEG decoder among its built-in ops): decode and resize on the
device as `ctdist.data.encoded` does. Its output: the probabilities, float32 [1, classes].
"""

import importlib.util
import tempfile

import keras
import numpy as np
import tensorflow as tf

from ctdist.config import commands as commands_config

QUANTIZATIONS = commands_config.QUANTIZATIONS
# What a .tflite file takes and gives, as its JSON record states it.
INPUT = "pixels: float32 [1, S, S, 3], 0-255 RGB resized as in training"


def convert(model: keras.Model, quantization: str = "float32") -> bytes:
  """The model as a .tflite flat buffer.

  Args:
    model: a ctdist model (raw pixels in, probabilities out).
    quantization: float32 (as trained); float16 (weights stored in half precision, half
      the size); dynamic_range (weights stored as int8, a quarter of the size; activations
      quantised on the fly).
  """
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"quantization={quantization!r}; expected one of {QUANTIZATIONS}")
  size = int(model.input_shape[1])
  # Through a SavedModel (TFLite's own route): converted from a concrete function, the
  # weights stay resource variables that nothing initialises, and the file answers NaN.
  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("serving_default", lambda pixels: model(pixels, training=False),
                       input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32,
                                                      name="pixels")])
  with tempfile.TemporaryDirectory() as tmp:
    archive.write_out(tmp, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
    if quantization != "float32":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
      converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def interpreter_name() -> str:
  """The interpreter `Runner` uses: ai-edge-litert's when it is installed, else the one
  TensorFlow ships (tf.lite.Interpreter)."""
  return "ai_edge_litert" if importlib.util.find_spec("ai_edge_litert") else "tf.lite"


class Runner:
  """A .tflite model's interpreter, one image at a time."""

  def __init__(self, content: bytes):
    if interpreter_name() == "ai_edge_litert":
      from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
      self._interpreter = interpreter.Interpreter(model_content=content)
    else:
      self._interpreter = tf.lite.Interpreter(model_content=content)
    self._interpreter.allocate_tensors()
    self._input = self._interpreter.get_input_details()[0]["index"]
    self._output = self._interpreter.get_output_details()[0]["index"]

  def __call__(self, pixels: np.ndarray) -> np.ndarray:
    """[N, S, S, 3] 0-255 RGB -> [N, classes] probabilities."""
    out = []
    for image in np.asarray(pixels, np.float32):
      self._interpreter.set_tensor(self._input, image[None])
      self._interpreter.invoke()
      out.append(self._interpreter.get_tensor(self._output)[0].copy())
    return np.stack(out)
