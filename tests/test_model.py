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


def test_sliced_max_pool_equals_max_pooling_2d():
  x = np.random.default_rng(1).normal(size=(2, 11, 9, 3)).astype("float32")
  x[0, 4, 4, 0] = x[0, 4, 5, 0] = 9.0  # a tie inside one window
  expected = keras.layers.MaxPooling2D(3, strides=2)(x)
  got = model_lib.SlicedMaxPool(3, 2)(x)
  assert got.shape == (2, 5, 4, 3)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_resnet_base_has_no_max_pooling_and_keeps_its_weights(tmp_path):
  m = model_lib.build_model(32, NAMES, weights="none")
  base = m.get_layer(model_lib.BASE_NAME)
  kinds = {type(l).__name__ for l in base.layers}
  assert "MaxPooling2D" not in kinds and "SlicedMaxPool" in kinds
  # a local .h5 (like the ImageNet file) survives the swap: save a base's weights, reload
  ref = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
  ref.save_weights(str(tmp_path / "w.weights.h5"))
  src = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
  src.load_weights(str(tmp_path / "w.weights.h5"))
  swapped = model_lib._sliced_pools(src)  # pylint: disable=protected-access
  x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_array_equal(np.asarray(swapped(x)), np.asarray(ref(x)))


def test_from_scratch_starts_at_uniform_predictions():
  m = model_lib.build_model(32, NAMES, weights="none", freeze_batchnorm=False)
  base = m.get_layer(model_lib.BASE_NAME)
  # 3 + 4 + 6 + 3 bottleneck blocks in ResNet50, each ending in a zeroed BatchNorm
  zeroed = [l.name for l in base.layers if l.name.endswith("_3_bn")
            and not np.any(np.asarray(l.gamma))]
  assert len(zeroed) == 16
  assert not np.any(np.asarray(base.get_layer("conv2_block1_0_bn").gamma) == 0)  # shortcut
  x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(np.asarray(m(x, training=True)), 0.25, atol=1e-6)
