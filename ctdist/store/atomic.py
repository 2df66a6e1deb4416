"""Writes that are never seen half-done: a temporary name, then a rename (local, gs://)."""

import json

import tensorflow as tf

from ctdist.store import faults


def _write(path: str, data, mode: str) -> None:
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, mode) as f:
    f.write(data)
  faults.point("before_rename")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically."""
  _write(path, text, "w")


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  _write(path, data, "wb")


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(obj, indent=1))
