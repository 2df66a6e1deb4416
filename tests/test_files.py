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

  def export(self, path, verbose=False):
    import os  # pylint: disable=g-import-not-at-top
    os.makedirs(path)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
      f.write(b"half")
    raise OSError("disk full")


def test_model_save_and_export_that_die_leave_the_previous_outputs(tmp_path):
  keras_file, exported = tmp_path / "model.keras", tmp_path / "saved_model"
  keras_file.write_bytes(b"the previous model")
  exported.mkdir()
  (exported / "saved_model.pb").write_bytes(b"the previous export")
  with pytest.raises(OSError):
    saved.save(_DyingModel(), str(keras_file))
  with pytest.raises(OSError):
    saved.export(_DyingModel(), str(exported))
  assert keras_file.read_bytes() == b"the previous model"
  assert (exported / "saved_model.pb").read_bytes() == b"the previous export"
