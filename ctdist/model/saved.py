"""A trained model's model.keras: loaded in safe mode, by this module alone, and written
through a temporary name. (The SavedModel for serving: `serving`.)"""

import hashlib
import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

from ctdist.model import layers as ctdist_layers


class ModelFileError(ValueError):
  """A model file that is missing, unreadable, refused by safe mode, or not ctdist's."""


def load(path: str, flag: str | None = None) -> keras.Model:
  """The model in `path` (a .keras file ctdist wrote), in Keras safe mode: a file holding
  code (a Lambda layer) is refused, never run.

  Args:
    path: the .keras file.
    flag: how the user named it (e.g. "--model=PATH"), for the message when it is missing.

  Raises:
    ModelFileError: missing, not a Keras file, refused by safe mode, or a model without
      ctdist's output layer (class names); the message names the file.
  """
  if not tf.io.gfile.exists(path):
    if flag:
      raise ModelFileError(f"{flag}: no such file; pass the model.keras written by "
                           "ctdist.train, e.g. runs/demo/model/model.keras")
    raise ModelFileError(f"{path} not found; train first with python -m ctdist.train")
  try:
    model = keras.saving.load_model(path, safe_mode=True)
  except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as e:
    raise ModelFileError(f"{path}: not a model ctdist can load ({type(e).__name__}: "
                         f"{str(e)[:300]}); pass the model.keras ctdist.train wrote") from e
  try:
    model.get_layer(ctdist_layers.OUTPUT_NAME)
  except ValueError as e:
    raise ModelFileError(f"{path}: not a ctdist model (no {ctdist_layers.OUTPUT_NAME!r} "
                         "layer holding the class names)") from e
  return model


def save(model: keras.Model, path: str) -> None:
  """`model.save(path)` (a .keras file) through a temporary file in the same folder."""
  tmp = os.path.join(os.path.dirname(path), ".tmp." + os.path.basename(path))
  model.save(tmp)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def weights_checksum(model: keras.Model) -> str:
  """SHA-1 of every weight's bytes: equal on every worker of a synchronous run, and the
  key under which results computed from these weights are kept."""
  h = hashlib.sha1()
  for w in model.get_weights():
    h.update(np.ascontiguousarray(w).tobytes())
  return h.hexdigest()[:16]
