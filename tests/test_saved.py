"""The one model loader: safe mode, and one error naming the file for a missing, corrupt,
foreign or code-carrying model.keras."""

import keras
import numpy as np
import pytest

from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import saved


def test_a_ctdist_model_round_trips(tmp_path):
  m = resnet.build_model(32, ["a", "b", "c"], weights="none")
  saved.save(m, str(tmp_path / "model.keras"))
  back = saved.load(str(tmp_path / "model.keras"))
  assert ctdist_layers.class_names_of(back) == ["a", "b", "c"]
  x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(back(x).numpy(), m(x).numpy(), atol=1e-6)
  assert not list(tmp_path.glob(".tmp*"))


def test_a_missing_file_is_named_with_the_flag_that_named_it(tmp_path):
  path = str(tmp_path / "run" / "model.keras")
  with pytest.raises(saved.ModelFileError, match=f"^{path} not found; train first"):
    saved.load(path)
  with pytest.raises(saved.ModelFileError, match=f"^--model={path}: no such file"):
    saved.load(path, flag=f"--model={path}")


def test_a_corrupt_file_is_named(tmp_path):
  path = tmp_path / "model.keras"
  path.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(saved.ModelFileError, match=f"^{path}: not a model ctdist can load"):
    saved.load(str(path))


def test_a_model_that_is_not_ctdists_is_refused(tmp_path):
  inputs = keras.Input((4,))
  keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "other.keras")
  with pytest.raises(saved.ModelFileError, match="not a ctdist model.*'probabilities'"):
    saved.load(str(tmp_path / "other.keras"))


def test_a_model_carrying_code_is_refused(tmp_path):
  inputs = keras.Input((4,))
  # Saved with a Lambda: loading it outside safe mode would run this function's code.
  code = keras.layers.Lambda(lambda x: x * 2.0, name="code")(inputs)
  keras.Model(inputs, code).save(tmp_path / "code.keras")
  with pytest.raises(saved.ModelFileError, match="code.keras: not a model ctdist can load"
                     ".*(safe_mode|arbitrary code)"):
    saved.load(str(tmp_path / "code.keras"))
