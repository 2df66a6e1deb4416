"""Temperature scaling: the fitted temperature is stored in the model, and the model then
outputs softmax(log p / T) of its uncalibrated probabilities, saved and reloaded."""

import json

import keras
import numpy as np
import pytest

from ctdist.data import builders
from ctdist.model import inference
from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import saved
from ctdist.scoring import calibration as calibrate
from ctdist.scoring import evaluation as evaluate
from ctdist.scoring import stats
from ctdist.store import run_files


def _overconfident_model(b):
  """A random 32 px model whose logits are blown up: confident, mostly wrong."""
  keras.utils.set_random_seed(0)
  m = resnet.build_model(32, list(b.info.features["label"].names), weights="none")
  logits = m.get_layer("logits")
  kernel, bias = logits.get_weights()
  logits.set_weights([np.random.default_rng(1).normal(0, 5, kernel.shape).astype("float32"),
                      bias])
  return m


def test_the_softmax_temperature_divides_the_logits_and_is_saved(tmp_path):
  m = resnet.build_model(32, ["a", "b", "c"], weights="none")
  logits = m.get_layer("logits")
  kernel, _ = logits.get_weights()
  logits.set_weights([np.zeros_like(kernel), np.array([2.0, 0.0, -1.0], "float32")])
  image = np.zeros((1, 32, 32, 3), "float32")
  # softmax([2, 0, -1] / 2) = e^(1, 0, -0.5) / (e + 1 + e^-0.5), by hand:
  expected = np.exp([1.0, 0.0, -0.5]) / np.exp([1.0, 0.0, -0.5]).sum()
  ctdist_layers.set_temperature(m, 2.0)
  np.testing.assert_allclose(m(image).numpy()[0], expected, rtol=1e-6)
  m.save(tmp_path / "m.keras")
  back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
  assert ctdist_layers.temperature_of(back) == 2.0
  np.testing.assert_allclose(back(image).numpy()[0], expected, rtol=1e-6)
  with pytest.raises(ValueError, match="temperature=0.0; must be > 0"):
    ctdist_layers.set_temperature(m, 0.0)


def test_calibrate_fits_on_valid_and_the_model_then_outputs_scaled_probabilities(
    small_data_dir, tmp_path):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  m = _overconfident_model(b)
  before_valid = evaluate.predict_split(m, b, "valid", 8)
  before_test = evaluate.predict_split(m, b, "test", 8)
  report = calibrate.calibrate(m, b, "valid", "test", batch_size=8)
  t = report["temperature"]
  # The fit is stats.fit_temperature's (tested on labels drawn at a known temperature)
  # on the validation split's uncalibrated probabilities, nothing else.
  assert t == pytest.approx(stats.fit_temperature(before_valid.labels, before_valid.probs))
  assert t > 1.5  # the blown-up logits are over-confident
  assert ctdist_layers.temperature_of(m) == t
  after_test = evaluate.predict_split(m, b, "test", 8)
  np.testing.assert_allclose(after_test.probs, stats.scale(before_test.probs, t), atol=1e-5)
  assert (after_test.probs.argmax(1) == before_test.probs.argmax(1)).all()
  fit = report["valid"]
  assert fit["after"]["nll"] < fit["before"]["nll"]
  assert report["test"]["all"]["after"]["accuracy"] == report["test"]["all"]["before"][
      "accuracy"]
  assert report["test"]["leak_free"]["before"]["num_examples"] == 12
  # Calibrating again starts from the uncalibrated model: the same temperature.
  assert calibrate.calibrate(m, b, "valid", "test", 8)["temperature"] == pytest.approx(t)
  # Saved: model.keras carries the temperature to ctdist.predict.
  calibrate.write(m, report, str(tmp_path))
  assert json.loads((tmp_path / run_files.CALIBRATION).read_text())["temperature"] == t
  loaded = saved.load(str(tmp_path / "model.keras"))
  assert ctdist_layers.temperature_of(loaded) == t
  image = tmp_path / "scan.png"
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(image)
  got = inference.predict_files(loaded, [str(image)])[0]["probabilities"]
  ctdist_layers.set_temperature(m, 1.0)
  raw = inference.predict_files(m, [str(image)])[0]["probabilities"]
  np.testing.assert_allclose(list(got.values()),
                             stats.scale(np.array([list(raw.values())]), t)[0], atol=1e-5)
