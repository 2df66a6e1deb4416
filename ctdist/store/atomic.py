"""Writes that are never seen half-done: a temporary name, then a rename (local, gs://)."""

import json

import tensorflow as tf

from ctdist.store import faults


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  faults.point("before_rename")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  faults.point("before_rename")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(obj, indent=1))
