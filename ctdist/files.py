"""Writes that are never seen half-done: a temporary name, then a rename (local, gs://)."""

import json
import os

import tensorflow as tf


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON to `path` atomically."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def save_model(model, path: str) -> None:
  """`model.save(path)` (a .keras file) through a temporary file in the same folder."""
  tmp = os.path.join(os.path.dirname(path), ".tmp." + os.path.basename(path))
  model.save(tmp)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def export_saved_model(model, path: str) -> None:
  """`model.export(path)` into a temporary folder, then replaces `path` with it."""
  tmp = path.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  model.export(tmp, verbose=False)
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.rename(tmp, path)
