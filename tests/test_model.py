"""The model: preprocessing inside, float32 output, phases, saving with class names."""

import keras
import numpy as np
import pytest

from ctdist import model as model_lib
from tfds_ctscan import layout

NAMES = list(layout.CLASS_NAMES)


def test_preprocessing_is_resnet_caffe_mode():
  layer = model_lib.ResNetPreprocess()
  x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
  expected = keras.applications.resnet50.preprocess_input(x.copy())
  np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-6, atol=1e-4)
  # caffe mode: BGR minus the ImageNet mean, no 1/255 scaling
  np.testing.assert_allclose(np.asarray(layer(x))[..., 0], x[..., 2] - 103.939, atol=1e-4)


def test_mixed_precision_output_is_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    m = model_lib.build_model(32, NAMES, weights="none")
    out = m(np.zeros((1, 32, 32, 3), "float32"))
    assert out.dtype == "float32"
    assert m.get_layer("fc1").compute_dtype == "float16"
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_head_phase_trains_only_the_head():
  m = model_lib.build_model(32, NAMES, weights="none")
  names = {v.path.split("/")[0] for v in m.trainable_variables}
  assert names == {"fc1", "fc2", "logits"}


def test_unfreeze_top_exact_layers_and_batchnorm_frozen():
  m = model_lib.build_model(32, NAMES, weights="none")
  base = m.get_layer(model_lib.BASE_NAME)
  unfrozen = model_lib.unfreeze_top(m, 50)
  top = base.layers[-50:]
  expected = [l.name for l in top
              if l.weights and not isinstance(l, keras.layers.BatchNormalization)]
  assert unfrozen == expected and len(expected) > 0
  for layer in base.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      assert not layer.trainable, layer.name
    elif layer not in top:
      assert not layer.trainable or not layer.weights, layer.name
  trainable = {id(v) for v in m.trainable_variables}
  for layer in top:
    if layer.name in unfrozen:
      assert all(id(w) in trainable for w in layer.trainable_weights)


def test_bad_weights_path_names_alternatives(tmp_path):
  with pytest.raises(model_lib.WeightsError, match="'imagenet', 'none'"):
    model_lib.build_model(32, NAMES, weights=str(tmp_path / "missing.h5"))


def test_saved_model_keeps_class_names_and_loads_in_safe_mode(tmp_path):
  m = model_lib.build_model(32, NAMES, weights="none")
  path = str(tmp_path / "model.keras")
  m.save(path)
  loaded = keras.saving.load_model(path, safe_mode=True)
  assert model_lib.class_names_of(loaded) == NAMES
  x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(m(x)), atol=1e-5)


def test_imagenet_fetch_failure_names_the_alternatives(monkeypatch):
  def offline(**kwargs):
    raise OSError("URL fetch failure on https://storage.googleapis.com/...: no network")
  monkeypatch.setattr(keras.applications, "ResNet50", offline)
  with pytest.raises(model_lib.WeightsError) as err:
    model_lib.build_model(32, NAMES, weights="imagenet")
  assert "--weights=PATH" in str(err.value) and "--weights=none" in str(err.value)
