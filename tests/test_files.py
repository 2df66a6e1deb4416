"""Outputs are replaced whole or not at all: a writer that dies midway leaves the old file."""

import json

import pytest

from ctdist.model import saved
from ctdist.store import atomic


class _Unwritable:
  """json.dump writes the keys before this value, then fails on it."""


def test_write_json_that_fails_midway_leaves_the_previous_file(tmp_path):
  path = tmp_path / "metrics.json"
  atomic.write_json(str(path), {"accuracy": 0.9})
  with pytest.raises(TypeError):
    atomic.write_json(str(path), {"accuracy": 0.5, "broken": _Unwritable()})
  assert json.loads(path.read_text()) == {"accuracy": 0.9}


class _DyingModel:
  """Writes half a file where it is told to, then dies, as a crash during save would."""

  def save(self, path):
    with open(path, "wb") as f:
      f.write(b"PK\x03\x04 half a zip")
    raise OSError("disk full")


def test_model_save_that_dies_leaves_the_previous_model(tmp_path):
  keras_file = tmp_path / "model.keras"
  keras_file.write_bytes(b"the previous model")
  with pytest.raises(OSError):
    saved.save(_DyingModel(), str(keras_file))
  assert keras_file.read_bytes() == b"the previous model"
