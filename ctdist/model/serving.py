"""The SavedModel a server calls, in TensorFlow Serving's layout (`saved_model/<version>/`):
encoded image bytes in; probabilities, class index and class name out.

Signatures (names a client reads):
  serving_default  images: string [N] (PNG or JPEG bytes, any size)
  serving_resized  pixels: float32 [N, S, S, 3] (0-255 RGB, already resized as in training)
  both return      probabilities: float32 [N, classes], class_index: int64 [N],
                   class_name: string [N]
"""

import json
import os
import re

import keras
import tensorflow as tf

from ctdist.data import encoded
from ctdist.model import layers as ctdist_layers
from ctdist.model import saved
from ctdist.store import faults

DEFAULT_SIGNATURE = "serving_default"
RESIZED_SIGNATURE = "serving_resized"
IMAGES_INPUT = "images"
PIXELS_INPUT = "pixels"
OUTPUTS = ("probabilities", "class_index", "class_name")
# What a version folder records of the model it holds (TF Serving ignores assets.extra
# but for its warm-up file): a re-export of the same weights is not a new version.
RECORD = os.path.join("assets.extra", "ctdist.json")


def versions(base: str) -> list[int]:
  """The version numbers under `base` (folders named by a positive integer), ascending."""
  if not tf.io.gfile.isdir(base):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(base)]
  return sorted(int(n) for n in names if re.fullmatch(r"[1-9][0-9]*", n))


def latest(base: str) -> str | None:
  """The folder of the newest version under `base` (what TF Serving serves), or None."""
  found = versions(base)
  return os.path.join(base, str(found[-1])) if found else None


def _record(model: keras.Model) -> dict:
  return {"weights_checksum": saved.weights_checksum(model),
          "temperature": ctdist_layers.temperature_of(model),
          "class_names": ctdist_layers.class_names_of(model),
          "image_size": int(model.input_shape[1])}


def _read_record(version_dir: str) -> dict | None:
  path = os.path.join(version_dir, RECORD)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _archive(model: keras.Model) -> keras.export.ExportArchive:
  size = int(model.input_shape[1])
  names = tf.constant(ctdist_layers.class_names_of(model))

  def outputs(pixels):
    probabilities = model(tf.cast(pixels, tf.float32), training=False)
    index = tf.argmax(probabilities, axis=-1)
    return {"probabilities": probabilities, "class_index": index,
            "class_name": tf.gather(names, index)}

  def from_images(images):
    return outputs(encoded.batch_to_model_input(images, size))

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(DEFAULT_SIGNATURE, from_images, input_signature=[
      tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)])
  archive.add_endpoint(RESIZED_SIGNATURE, outputs, input_signature=[
      tf.TensorSpec([None, size, size, 3], tf.float32, name=PIXELS_INPUT)])
  return archive


def export(model: keras.Model, base: str) -> str:
  """Writes the model as the next version under `base` (1 in a new folder) and returns
  its folder; the newest version already holding these weights and this temperature is
  kept as it is. Written under a temporary name (not a number: a server never loads it),
  then renamed."""
  newest = latest(base)
  record = _record(model)
  if newest and _read_record(newest) == record:
    return newest
  version = (versions(base) or [0])[-1] + 1
  path = os.path.join(base, str(version))
  tmp = os.path.join(base, f".tmp-{version}")
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.io.gfile.makedirs(base)
  _archive(model).write_out(tmp, verbose=False)
  tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
  with tf.io.gfile.GFile(os.path.join(tmp, RECORD), "w") as f:
    json.dump(record, f, indent=1)
  faults.point("before_rename")
  tf.io.gfile.rename(tmp, path)
  return path
