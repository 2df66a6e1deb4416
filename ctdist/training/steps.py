"""The compiled steps: one training step (augmentation, forward, backward, update) and one
evaluation step per replica, each inside a `tf.function` that runs `steps` of them per call
on any strategy."""

import keras
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.training import augment


def _loop(strategy, step_fn):
  @tf.function
  def run_steps(iterator, steps):
    for _ in tf.range(steps):
      strategy.run(step_fn, args=(next(iterator),))
  return run_steps


def moving_statistics(model: keras.Model) -> list:
  """The moving means and variances of the BatchNormalization layers that update them
  (the trainable ones: Keras runs a frozen BatchNormalization in inference mode)."""
  found, layers = [], list(model.layers)
  while layers:
    layer = layers.pop(0)
    layers.extend(getattr(layer, "layers", []))
    if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
      found += [layer.moving_mean, layer.moving_variance]
  return found


def make_train_fn(strategy, model: keras.Model, optimizer, sums: dict, class_weights,
                  opts: training_config.Options, phase_index: int):
  """(the replica step, a `tf.function(iterator, steps)` running `steps` of them).

  The replica step adds its loss, right answers and count to `sums` (SUM-aggregated
  variables); `class_weights` ([classes] float32) weigh each example's loss. With
  several replicas, the BatchNormalization statistics it updates are averaged over the
  replicas after each step (`moving_statistics`).
  """
  global_batch, smoothing = opts.batch_size, opts.schedule.label_smoothing
  aug, seed = opts.augment, opts.seed
  num_classes = int(class_weights.shape[0])

  def forward_backward(images, labels, params):
    if params:
      images = augment.apply(images, params, aug)
    with tf.GradientTape() as tape:
      probs = model(images, training=True)
      per_example = keras.losses.categorical_crossentropy(
          tf.one_hot(labels, num_classes), tf.cast(probs, tf.float32),
          label_smoothing=smoothing) * tf.gather(class_weights, labels)
      loss = tf.reduce_sum(per_example) / global_batch
      scaled = optimizer.scale_loss(loss)
    return probs, per_example, tape.gradient(scaled, model.trainable_variables)

  several = strategy.num_replicas_in_sync > 1
  # With several replicas the update sums the replicas' gradients: a synchronization
  # point, which a nested tf.function cannot hold (tf.distribute's merge_call). XLA then
  # compiles the augmentation, forward and backward; the update follows outside it.
  gradients = (tf.function(forward_backward, jit_compile=True)
               if opts.jit_compile and several else forward_backward)

  def compute(images, labels, params):
    probs, per_example, grads = gradients(images, labels, params)
    optimizer.apply(grads, model.trainable_variables)
    return probs, per_example

  if opts.jit_compile and not several:
    # Augmentation, forward, backward and update: one graph, which XLA compiles whole.
    compute = tf.function(compute, jit_compile=True)
  # Keras creates BatchNormalization's moving statistics with aggregation "none": under a
  # distribution strategy each replica updates only its own copy, from its own examples,
  # and a checkpoint saves the first replica's. Averaged after every step, every copy
  # holds the same statistics (of the whole global batch's), so the saved model, each
  # replica's validation and a resumed run all see one value.
  moving = moving_statistics(model) if several else []

  def step_fn(batch):
    images = tf.cast(batch["image"], tf.float32)
    labels = batch["label"]
    params = {}
    if aug.enabled:  # drawn outside XLA: see augment.draw
      replica = tf.distribute.get_replica_context()
      params = augment.draw(
          augment.step_seed(seed, phase_index, optimizer.iterations,
                            replica.replica_id_in_sync_group, replica.num_replicas_in_sync),
          images, aug)
    probs, per_example = compute(images, labels, params)
    if moving:
      # tf.identity: this replica's copy, placed on its device (several workers' collective
      # all-reduce needs a device; a bare variable read has none there).
      means = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in moving])
      for v, mean in zip(moving, means):
        v.assign(mean)
    sums["loss"].assign_add(tf.reduce_sum(per_example))
    sums["correct"].assign_add(tf.reduce_sum(tf.cast(
        tf.equal(tf.argmax(probs, -1, output_type=tf.int32), labels), tf.float32)))
    sums["count"].assign_add(tf.cast(tf.shape(labels)[0], tf.float32))

  return step_fn, _loop(strategy, step_fn)


def make_eval_fn(strategy, model: keras.Model, sums: dict):
  """(the replica step, a `tf.function(iterator, steps)`) of validation: loss and right
  answers weighted by each example's `weight` (0 for padding)."""

  def step_fn(batch):
    probs = tf.cast(model(tf.cast(batch["image"], tf.float32), training=False), tf.float32)
    w = batch["weight"]
    per_example = keras.losses.sparse_categorical_crossentropy(batch["label"], probs)
    sums["loss"].assign_add(tf.reduce_sum(per_example * w))
    sums["correct"].assign_add(tf.reduce_sum(w * tf.cast(tf.equal(
        tf.argmax(probs, -1, output_type=tf.int32), batch["label"]), tf.float32)))
    sums["count"].assign_add(tf.reduce_sum(w))

  return step_fn, _loop(strategy, step_fn)
