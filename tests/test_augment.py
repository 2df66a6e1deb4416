"""Augmentation: what keras' layers did, from ops XLA compiles, reproducible from a seed."""


import numpy as np
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.training import augment

OFF = training_config.AugmentConfig(rotation=0, zoom=0, shift=0, brightness=0, flip=False)


def _images(n=3, h=24, w=20, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(0, 255, (n, h, w, 3)).astype("float32"))


def test_warp_matches_tensorflows_projective_transform():
  # The reference: TensorFlow's own kernel (no XLA kernel, so not usable in the step).
  images = _images()
  transforms = tf.constant([
      [1, 0, 0, 0, 1, 0, 0, 0],                      # identity
      [0.9, -0.3, 4.2, 0.3, 0.9, -2.7, 0, 0],        # rotate + zoom + shift
      [1.2, 0.1, -6.5, -0.2, 1.1, 9.3, 0, 0],        # reaches far outside: edges repeat
  ], tf.float32)
  expected = tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")
  got = augment.apply_transforms(images, transforms)
  np.testing.assert_allclose(got, expected, atol=1e-3)


def test_random_transforms_stay_in_the_configured_ranges():
  cfg = training_config.AugmentConfig(rotation=20, zoom=0.1, shift=0.1)
  t = augment.affine_transforms(tf.constant([1, 2]), 4000, 32, 48, cfg).numpy()
  # A rotation times an isotropic zoom: no mirror, no shear, the same zoom on both axes.
  np.testing.assert_allclose(t[:, 4], t[:, 0], atol=1e-6)
  np.testing.assert_allclose(t[:, 1], -t[:, 3], atol=1e-6)
  angle = np.degrees(np.arctan2(t[:, 3], t[:, 0]))
  scale = np.hypot(t[:, 0], t[:, 3])
  assert np.abs(angle).max() <= 20 + 1e-4 and np.abs(angle).max() > 19
  assert scale.min() >= 0.9 - 1e-6 and scale.max() <= 1.1 + 1e-6
  assert scale.min() < 0.91 and scale.max() > 1.09
  # Where the image centre is taken from: the shift, up to 10 % of 48 wide and 32 high.
  cx, cy = 23.5, 15.5
  src_x = t[:, 0] * cx + t[:, 1] * cy + t[:, 2]
  src_y = t[:, 3] * cx + t[:, 4] * cy + t[:, 5]
  assert np.abs(src_x - cx).max() <= 4.8 + 1e-4 and np.abs(src_x - cx).max() > 4.5
  assert np.abs(src_y - cy).max() <= 3.2 + 1e-4 and np.abs(src_y - cy).max() > 3.0


def test_all_off_is_the_identity_and_flip_mirrors_half():
  images = _images(n=400, h=8, w=6)
  np.testing.assert_array_equal(augment.augment(images, tf.constant([3, 4]), OFF), images)
  params = augment.draw(tf.constant([3, 4]), images, training_config.AugmentConfig())
  np.testing.assert_array_equal(augment.apply(images, params, OFF), images)
  flip = training_config.AugmentConfig(rotation=0, zoom=0, shift=0, brightness=0, flip=True)
  out = augment.augment(images, tf.constant([3, 4]), flip).numpy()
  same = np.all(out == images.numpy(), axis=(1, 2, 3))
  mirrored = np.all(out == images.numpy()[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same ^ mirrored)
  assert 150 < mirrored.sum() < 250


def test_brightness_shifts_each_image_by_one_clipped_amount():
  images = tf.fill([200, 4, 4, 3], 100.0)
  cfg = training_config.AugmentConfig(rotation=0, zoom=0, shift=0, brightness=0.2, flip=False)
  out = augment.augment(images, tf.constant([5, 6]), cfg).numpy()
  per_image = out.reshape(200, -1)
  assert np.all(per_image.min(1) == per_image.max(1))  # one shift per image
  assert np.abs(per_image[:, 0] - 100).max() <= 51 and np.abs(per_image[:, 0] - 100).max() > 45
  bright = augment.augment(tf.fill([50, 2, 2, 3], 250.0), tf.constant([5, 6]), cfg)
  assert float(tf.reduce_max(bright)) == 255.0  # clipped, not wrapped
  dark = augment.augment(tf.fill([50, 2, 2, 3], 5.0), tf.constant([5, 6]), cfg)
  assert float(tf.reduce_min(dark)) == 0.0


def test_same_seed_same_images_other_step_other_images():
  images, cfg = _images(), training_config.AugmentConfig()
  a = augment.augment(images, augment.step_seed(7, 0, 10, 0, 2), cfg)
  b = augment.augment(images, augment.step_seed(7, 0, 10, 0, 2), cfg)
  np.testing.assert_array_equal(a, b)
  for other in (augment.step_seed(7, 0, 11, 0, 2), augment.step_seed(7, 0, 10, 1, 2),
                augment.step_seed(7, 1, 10, 0, 2), augment.step_seed(8, 0, 10, 0, 2)):
    assert not np.allclose(a, augment.augment(images, other, cfg))
  # Every (phase, step, replica) of a run has a seed of its own: 2 phases x 50 steps x 4.
  seeds = {tuple(augment.step_seed(7, p, s, r, 4).numpy())
           for p in range(2) for s in range(50) for r in range(4)}
  assert len(seeds) == 400


def test_compiles_with_xla_and_gives_the_same_images():
  images, cfg = _images(), training_config.AugmentConfig()
  seed = augment.step_seed(7, 1, 3, 1, 2)

  def both(x, s):
    params = augment.draw(s, x, cfg)
    return params, augment.apply(x, params, cfg)
  params, compiled = tf.function(both, jit_compile=True)(images, seed)
  # The draws compile too (their numbers differ from the CPU kernels'; see draw()).
  assert params["transforms"].shape == (3, 8) and params["flip"].dtype == tf.bool
  assert np.abs(params["transforms"][:, 0] - 1).max() > 1e-3  # not the identity
  np.testing.assert_allclose(compiled, augment.apply(images, params, cfg), atol=1e-3)


@pytest.mark.parametrize("name,value", [("rotation", 180), ("zoom", -0.1),
                                         ("shift", 1.5), ("brightness", 1)])
def test_out_of_range_settings_are_refused_by_name(name, value):
  with pytest.raises(ValueError, match=f"{name}={value}"):
    training_config.AugmentConfig(**{name: value})
