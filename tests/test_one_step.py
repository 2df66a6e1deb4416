"""One training step checked by hand: the update the replica step and the optimizer make
from a known batch, against numpy. Each option that shapes the step (balanced class
weights, label smoothing, augmentation, AdamW's decay and its exclusions, gradient
clipping) must change that update as written; a run compared with itself cannot see it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.training import augment
from ctdist.training import phases
from ctdist.training import steps

SIZE, CLASSES, BATCH = 4, 3, 6


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3)).astype(np.uint8)
  labels = np.array([0, 0, 0, 0, 1, 2], np.int32)  # imbalanced: class 0 is two thirds
  return images, labels


def _linear_model(seed=0):
  """softmax(flatten(x / 255) @ W + b): its gradient is known in closed form."""
  inputs = keras.Input((SIZE, SIZE, 3))
  x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
  outputs = keras.layers.Dense(CLASSES, activation="softmax",
                               kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                               bias_initializer=keras.initializers.RandomNormal(seed=seed + 1))(x)
  return keras.Model(inputs, outputs)


class _Seen(keras.layers.Layer):
  """Passes its input through and keeps a copy: the images the model trained on."""

  def build(self, shape):
    self.seen = self.add_weight(shape=(BATCH, *shape[1:]), initializer="zeros",
                                trainable=False, name="seen")

  def call(self, x):
    self.seen.assign(x)
    return x


def _train_once(model, optimizer, class_weights, images, labels, **flat):
  opts = training_config.from_flat(model_dir="unused", batch_size=BATCH, **flat)
  strategy = tf.distribute.get_strategy()
  sums = {k: tf.Variable(0.0) for k in ("loss", "correct", "count")}
  optimizer.build(model.trainable_variables)
  _, run_steps = steps.make_train_fn(strategy, model, optimizer, sums,
                                     tf.constant(class_weights, tf.float32), opts, 0)
  ds = tf.data.Dataset.from_tensors({"image": images, "label": labels})
  run_steps(iter(strategy.experimental_distribute_dataset(ds)), tf.constant(1))
  return opts, {k: float(v.numpy()) for k, v in sums.items()}


NO_AUGMENT = dict(augment_rotation=0, augment_zoom=0, augment_shift=0, augment_brightness=0,
                  augment_flip=False)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_class_weights_and_label_smoothing_shape_the_update(smoothing):
  images, labels = _batch()
  model = _linear_model()
  w0, b0 = (v.numpy().astype(np.float64) for v in model.trainable_variables)
  class_weights = np.array([0.5, 1.5, 3.0])
  lr = 0.5
  _, sums = _train_once(model, keras.optimizers.SGD(lr), class_weights, images, labels,
                        label_smoothing=smoothing, jit_compile=False, **NO_AUGMENT)

  x = images.reshape(BATCH, -1).astype(np.float64) / 255
  logits = x @ w0 + b0
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  target = np.eye(CLASSES)[labels] * (1 - smoothing) + smoothing / CLASSES
  weight = class_weights[labels]
  loss = -(target * np.log(p)).sum(1) * weight
  # d(sum of weighted cross-entropies / global batch) / d logits, then through the Dense.
  dlogits = (p - target) * weight[:, None] / BATCH
  w1, b1 = (v.numpy() for v in model.trainable_variables)
  np.testing.assert_allclose(sums["loss"], loss.sum(), rtol=1e-5)
  np.testing.assert_allclose(w1, w0 - lr * x.T @ dlogits, atol=1e-6)
  np.testing.assert_allclose(b1, b0 - lr * dlogits.sum(0), atol=1e-6)
  # The weights matter here: unweighted, the same step moves the bias elsewhere.
  plain = (p - target) / BATCH
  assert np.abs(lr * (plain.sum(0) - dlogits.sum(0))).max() > 1e-2


@pytest.mark.parametrize("jit", [False, True])
def test_the_model_trains_on_the_augmented_images(jit):
  images, labels = _batch()
  inputs = keras.Input((SIZE, SIZE, 3))
  seen = _Seen()
  x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(seen(inputs)))
  model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
  optimizer = keras.optimizers.SGD(0.1)
  opts, _ = _train_once(model, optimizer, [1.0] * CLASSES, images, labels, jit_compile=jit,
                        seed=11, augment_rotation=10.0, augment_brightness=0.2)
  # What the replica step draws for this step (seed, phase 0, optimizer step 0, replica 0
  # of 1), applied outside the step.
  raw = tf.constant(images, tf.float32)
  params = augment.draw(augment.step_seed(11, 0, tf.constant(0, tf.int64), 0, 1), raw,
                        opts.augment)
  expected = augment.apply(raw, params, opts.augment).numpy()
  trained_on = seen.seen.numpy()
  assert np.abs(trained_on - images).max() > 1.0  # not the raw images
  np.testing.assert_allclose(trained_on, expected, atol=1e-3)


def _adam_reference(values, grads_per_step, lr, decay=0.0, decayed=(), clip=0.0,
                    b1=0.9, b2=0.999, eps=1e-7):
  """Adam (AdamW when `decay`) in numpy: the names in `decayed` decay, gradients are
  clipped to the global norm `clip` first."""
  values = {k: v.astype(np.float64).copy() for k, v in values.items()}
  m = {k: np.zeros_like(v) for k, v in values.items()}
  s = {k: np.zeros_like(v) for k, v in values.items()}
  for t, grads in enumerate(grads_per_step, start=1):
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    scale = min(1.0, clip / norm) if clip else 1.0
    for k, g in grads.items():
      g = g * scale
      if k in decayed:
        values[k] -= lr * decay * values[k]
      m[k] = b1 * m[k] + (1 - b1) * g
      s[k] = b2 * s[k] + (1 - b2) * g * g
      alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
      values[k] -= alpha * m[k] / (np.sqrt(s[k]) + eps)
  return values


@pytest.mark.parametrize("weight_decay,clip_norm", [(0.0, 0.0), (0.1, 0.0), (0.0, 1.0),
                                                    (0.1, 1.0)])
def test_the_optimizer_decays_the_kernels_only_and_clips_the_global_norm(weight_decay,
                                                                          clip_norm):
  inputs = keras.Input((5,))
  x = keras.layers.Dense(4, name="dense")(inputs)
  x = keras.layers.BatchNormalization(name="bn")(x)
  model = keras.Model(inputs, x)
  for v in model.trainable_variables:  # gamma 1 and beta 0 would hide a decay
    v.assign(np.random.default_rng(len(v.path)).normal(1.0, 0.5, v.shape))
  names = [v.path for v in model.trainable_variables]
  assert names == ["dense/kernel", "dense/bias", "bn/gamma", "bn/beta"]
  schedule = training_config.Schedule(weight_decay=weight_decay, clip_norm=clip_norm)
  opt = phases.optimizer(schedule, 0.01)
  opt.build(model.trainable_variables)
  rng = np.random.default_rng(3)
  unit = {k: rng.normal(size=v.shape) for k, v in zip(names, model.trainable_variables)}
  # A large step, then a small one: clipped, both have the same size; unclipped, Adam's
  # moments remember the large one.
  steps_ = [{k: 10 * g for k, g in unit.items()}, unit]
  before = {k: v.numpy() for k, v in zip(names, model.trainable_variables)}
  for grads in steps_:
    opt.apply([tf.constant(grads[k], tf.float32) for k in names], model.trainable_variables)
  after = {k: v.numpy() for k, v in zip(names, model.trainable_variables)}
  expected = _adam_reference(before, steps_, 0.01, weight_decay, ["dense/kernel"], clip_norm)
  for k in names:
    np.testing.assert_allclose(after[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
  # The options change the update by far more than the tolerance.
  plain = _adam_reference(before, steps_, 0.01)
  moved = max(np.abs(expected[k] - plain[k]).max() for k in names)
  assert (moved > 1e-4) == bool(weight_decay or clip_norm)


def _step_on_replicas(strategy, make_model, lr, class_weights, images, labels,
                      jit_compile=False):
  """One training step (SGD at `lr`) of the model `make_model` builds, in `strategy`'s
  scope, on one batch split between its replicas; returns (the model, the step's sums)."""
  with strategy.scope():
    model = make_model()
    optimizer = keras.optimizers.SGD(lr)
    optimizer.build(model.trainable_variables)
    sums = {k: tf.Variable(0.0, synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.SUM)
            for k in ("loss", "correct", "count")}
  opts = training_config.from_flat(model_dir="unused", batch_size=BATCH,
                                   jit_compile=jit_compile, **NO_AUGMENT)
  _, run_steps = steps.make_train_fn(strategy, model, optimizer, sums,
                                     tf.constant(class_weights, tf.float32), opts, 0)
  ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(BATCH)
  run_steps(iter(strategy.experimental_distribute_dataset(ds)), tf.constant(1))
  return model, sums


def _bn_model(layer):
  inputs = keras.Input((SIZE, SIZE, 3))
  x = keras.layers.Flatten()(layer(inputs))
  return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


def test_batchnorm_statistics_are_the_replicas_mean_after_a_step(two_replicas):
  """Each replica's BatchNormalization updates only its own copy of the moving
  statistics (Keras: aggregation "none"); after a step every copy must hold the mean of
  the replicas' updates, as a checkpoint (the first copy) and a validation (each its
  own) read them."""
  strategy = two_replicas
  rng = np.random.default_rng(3)
  # The two replicas' halves of the batch: dark and bright images.
  images = np.concatenate([rng.integers(0, 60, (BATCH // 2, SIZE, SIZE, 3)),
                           rng.integers(180, 256, (BATCH // 2, SIZE, SIZE, 3))]
                          ).astype(np.uint8)
  labels = np.array([0, 1, 2, 0, 1, 2], np.int32)
  bn = keras.layers.BatchNormalization(momentum=0.5)
  _step_on_replicas(strategy, lambda: _bn_model(bn), 0.1, [1.0] * CLASSES, images, labels)
  # By hand: 0.5 * 0 (its start) + 0.5 * the mean over the replicas of each one's
  # per-channel batch mean.
  halves = images.astype(np.float64).reshape(2, BATCH // 2, SIZE, SIZE, 3)
  expected = 0.5 * halves.mean(axis=(1, 2, 3)).mean(axis=0)
  copies = [c.numpy() for c in bn.moving_mean.value.values]
  assert len(copies) == 2
  for copy in copies:
    np.testing.assert_allclose(copy, expected, rtol=1e-5)
  variances = [c.numpy() for c in bn.moving_variance.value.values]
  np.testing.assert_array_equal(variances[0], variances[1])


def test_an_xla_step_on_several_replicas_makes_the_plain_steps_update(two_replicas):
  """--jit_compile with MirroredStrategy (or several workers): the update's gradient sum
  cannot sit in the compiled function (tf.distribute's merge_call); the step must run
  and make the update the plain step makes."""
  strategy = two_replicas
  images, labels = _batch()
  after = {}
  for jit in (False, True):
    model, sums = _step_on_replicas(strategy, _linear_model, 0.5, [0.5, 1.5, 3.0], images,
                                    labels, jit_compile=jit)
    after[jit] = [v.numpy() for v in model.trainable_variables]
    assert float(sums["count"].read_value()) == BATCH
  w0 = [v.numpy() for v in _linear_model().trainable_variables]
  assert not np.allclose(after[False][0], w0[0])  # the step did update
  for plain, compiled in zip(after[False], after[True]):
    np.testing.assert_allclose(compiled, plain, rtol=1e-5, atol=1e-6)
