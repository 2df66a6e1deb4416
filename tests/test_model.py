"""The model: preprocessing inside, float32 output, phases, saving with class names."""

import keras
import numpy as np
import pytest

from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from tfds_ctscan import layout

NAMES = list(layout.CLASS_NAMES)


def test_preprocessing_is_resnet_caffe_mode():
  layer = ctdist_layers.ResNetPreprocess()
  # Caffe mode (Keras ResNet50's documented preprocessing): RGB -> BGR, minus the
  # ImageNet BGR mean (103.939, 116.779, 123.68), no 1/255 scaling.
  x = np.array([[[[10, 20, 30], [255, 0, 128]]]], "float32")  # 1 x 1 x 2 x RGB
  expected = [[[[30 - 103.939, 20 - 116.779, 10 - 123.68],
                [128 - 103.939, 0 - 116.779, 255 - 123.68]]]]
  np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4)


def test_mixed_precision_output_is_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    m = resnet.build_model(32, NAMES, weights="none")
    out = m(np.zeros((1, 32, 32, 3), "float32"))
    assert out.dtype == "float32"
    assert m.get_layer("fc1").compute_dtype == "float16"
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_head_phase_trains_only_the_head():
  m = resnet.build_model(32, NAMES, weights="none")
  names = {v.path.split("/")[0] for v in m.trainable_variables}
  assert names == {"fc1", "fc2", "logits"}


# From ResNet50's architecture: a bottleneck block is 10 layers (1_conv 1_bn 1_relu 2_conv
# 2_bn 2_relu 3_conv 3_bn add out), a stage's first block 12 (+ 0_conv 0_bn). The top 50
# = conv5 (12 + 10 + 10) + conv4_block6 (10) + the last 8 of conv4_block5 (from 1_relu).
TOP_50_CONVS = {"conv4_block5_2_conv", "conv4_block5_3_conv",
                *(f"conv4_block6_{i}_conv" for i in (1, 2, 3)),
                *(f"conv5_block1_{i}_conv" for i in (0, 1, 2, 3)),
                *(f"conv5_block{b}_{i}_conv" for b in (2, 3) for i in (1, 2, 3))}


@pytest.mark.parametrize("n,expected", [
    (0, set()), (1, set()),  # conv5_block3_out has no weights
    (5, {"conv5_block3_3_conv"}),  # out, add, 3_bn, 3_conv, 2_relu
    (10, {"conv5_block3_1_conv", "conv5_block3_2_conv", "conv5_block3_3_conv"}),
    (50, TOP_50_CONVS)])
def test_unfreeze_top_exact_layers(n, expected):
  m = resnet.build_model(32, NAMES, weights="none")
  assert set(resnet.unfreeze_top(m, n)) == expected
  trainable = {v.path.split("/")[0] for v in m.trainable_variables}
  assert trainable == expected | {"fc1", "fc2", "logits"}


def test_unfreeze_all_but_batchnorm():
  m = resnet.build_model(32, NAMES, weights="none")
  unfrozen = resnet.unfreeze_top(m, -1)
  assert len(unfrozen) == 53 and all(u.endswith("_conv") for u in unfrozen)  # 1 + 16*3 + 4


def test_unfreeze_top_exact_layers_and_batchnorm_frozen():
  m = resnet.build_model(32, NAMES, weights="none")
  base = m.get_layer(resnet.BASE_NAME)
  unfrozen = resnet.unfreeze_top(m, 50)
  top = base.layers[-50:]
  assert set(unfrozen) == TOP_50_CONVS
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
  with pytest.raises(resnet.WeightsError, match="'imagenet', 'none'"):
    resnet.build_model(32, NAMES, weights=str(tmp_path / "missing.h5"))


def test_saved_model_keeps_class_names_and_loads_in_safe_mode(tmp_path):
  m = resnet.build_model(32, NAMES, weights="none")
  path = str(tmp_path / "model.keras")
  m.save(path)
  loaded = keras.saving.load_model(path, safe_mode=True)
  assert ctdist_layers.class_names_of(loaded) == NAMES
  x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(m(x)), atol=1e-5)


def test_imagenet_fetch_failure_names_the_alternatives(monkeypatch):
  def offline(**kwargs):
    raise OSError("URL fetch failure on https://storage.googleapis.com/...: no network")
  monkeypatch.setattr(keras.applications, "ResNet50", offline)
  with pytest.raises(resnet.WeightsError) as err:
    resnet.build_model(32, NAMES, weights="imagenet")
  assert "--weights=PATH" in str(err.value) and "--weights=none" in str(err.value)


def test_sliced_max_pool_equals_max_pooling_2d():
  x = np.random.default_rng(1).normal(size=(2, 11, 9, 3)).astype("float32")
  x[0, 4, 4, 0] = x[0, 4, 5, 0] = 9.0  # a tie inside one window
  expected = keras.layers.MaxPooling2D(3, strides=2)(x)
  got = ctdist_layers.SlicedMaxPool(3, 2)(x)
  assert got.shape == (2, 5, 4, 3)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_resnet_base_has_no_max_pooling_and_keeps_its_weights(tmp_path):
  m = resnet.build_model(32, NAMES, weights="none")
  base = m.get_layer(resnet.BASE_NAME)
  kinds = {type(layer).__name__ for layer in base.layers}
  assert "MaxPooling2D" not in kinds and "SlicedMaxPool" in kinds
  # a local .h5 (like the ImageNet file) survives the swap: save a base's weights, reload
  ref = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
  ref.save_weights(str(tmp_path / "w.weights.h5"))
  src = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
  src.load_weights(str(tmp_path / "w.weights.h5"))
  swapped = resnet._sliced_pools(src)  # pylint: disable=protected-access
  x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  np.testing.assert_array_equal(np.asarray(swapped(x)), np.asarray(ref(x)))


def test_from_scratch_starts_at_uniform_predictions():
  m = resnet.build_model(32, NAMES, weights="none", freeze_batchnorm=False)
  base = m.get_layer(resnet.BASE_NAME)
  # 3 + 4 + 6 + 3 bottleneck blocks in ResNet50, each ending in a zeroed BatchNorm
  zeroed = [layer.name for layer in base.layers if layer.name.endswith("_3_bn")
            and not np.any(np.asarray(layer.gamma))]
  assert len(zeroed) == 16
  assert not np.any(np.asarray(base.get_layer("conv2_block1_0_bn").gamma) == 0)  # shortcut
  x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
  np.testing.assert_allclose(np.asarray(m(x, training=True)), 0.25, atol=1e-6)


def test_weights_from_a_local_h5_file_are_loaded(tmp_path):
  # The published ImageNet file is a Keras 2 HDF5 of the no-top ResNet50; tf_keras
  # (Keras 2) writes the same format, here with random weights.
  import tf_keras  # pylint: disable=g-import-not-at-top
  k2 = tf_keras.applications.ResNet50(include_top=False, weights=None,
                                      input_shape=(32, 32, 3))
  path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
  k2.save_weights(str(path))
  base = resnet.build_model(32, NAMES, weights=str(path)).get_layer(resnet.BASE_NAME)
  for name in ("conv1_conv", "conv3_block2_2_conv", "conv5_block3_3_conv",
               "conv5_block3_3_bn"):
    for mine, theirs in zip(base.get_layer(name).weights, k2.get_layer(name).weights):
      np.testing.assert_array_equal(np.asarray(mine), theirs.numpy(), err_msg=name)
