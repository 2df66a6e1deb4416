"""TFDS examples -> resized, cached, shuffled, batched tf.data input, one pipeline's share."""

import hashlib
import os

import numpy as np
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.data import plan
from ctdist.data import records
from ctdist.data import subsets


def resize(pixels, image_size: int) -> tf.Tensor:
  """[H, W, 3] (or a batch) -> image_size x image_size uint8, aspect not kept (as the
  notebook's flow_from_directory did), bilinear with antialiasing. Training, evaluation
  and `ctdist.predict` all resize here."""
  image = tf.image.resize(pixels, (image_size, image_size), antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """Encoded PNG/JPEG -> `resize`d uint8."""
  return resize(tf.io.decode_image(encoded, channels=3, expand_animations=False),
                image_size)


# A phase's epoch shuffles at most this many examples at once (an exact permutation of
# any shard up to this size: the Kaggle train split has 613).
SHUFFLE_BUFFER = 8192


def shard_examples(b, split: "str | subsets.Subset", image_size: int, num_shards: int = 1,
                   shard: int = 0, cache: str = "memory",
                   cache_dir: str | None = None) -> tf.data.Dataset:
  """One shard's examples, decoded, resized and cached as `cache` says, in file order."""
  ds = records.read(b, split, num_shards, shard).map(
      lambda ex: {"image": decode_and_resize(ex["image"], image_size),
                  "label": tf.cast(ex["label"], tf.int32),
                  "leaked": ex["leaked"],
                  "weight": tf.constant(1.0)},
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if cache == "memory":
    return ds.cache()
  if cache == "disk":
    if not cache_dir:
      raise ValueError("cache='disk' needs a cache_dir (a local folder)")
    tf.io.gfile.makedirs(cache_dir)
    return ds.cache(os.path.join(
        cache_dir, f"{b.name}_{_cache_key(split)}_{image_size}px_{shard}of{num_shards}"))
  if cache != "none":
    raise ValueError(f"cache={cache!r}; expected one of {training_config.CACHES}")
  return ds


def _cache_key(split) -> str:
  if isinstance(split, subsets.Subset):  # its files decide what is cached
    return f"{split.name}_" + hashlib.sha1("\n".join(split.files).encode()).hexdigest()[:12]
  return split


def train_dataset(b, split: "str | subsets.Subset", image_size: int, batch_size: int, seed: int,
                  num_shards: int = 1, shard: int = 0, cache: str = "memory",
                  cache_dir: str | None = None) -> tf.data.Dataset:
  """Endless shuffled training batches of `batch_size` (static shapes).

  With a cache, each image is decoded and resized once; later epochs only shuffle and
  batch.
  """
  ds = shard_examples(b, split, image_size, num_shards, shard, cache, cache_dir)
  ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
  """The shuffle seed of `epoch` of `phase`: a function of the three alone (NumPy's
  SeedSequence, the same on every machine)."""
  key = [seed & 0xFFFF_FFFF_FFFF_FFFF, phase, epoch]
  return int(np.random.default_rng(key).integers(1, 2**31 - 1))


def phase_batches(shard: tf.data.Dataset, shard_size: int, batch_size: int, seed: int,
                  phase: int, epochs: int, steps_per_epoch: int, epoch: int = 0,
                  step: int = 0) -> tf.data.Dataset:
  """The training batches of one phase from `epoch`, batch `step` on, out of one shard's
  `shard_examples` (a step of several local replicas takes one batch each: count them).

  Epoch e is `steps_per_epoch` batches of the shard shuffled by `epoch_seed(seed, phase,
  e)` (cycled when a shard is short of them): the same batches on every run, so a run
  resumed at (epoch, step) trains on the batches the interrupted run had not reached.
  Ends after the phase's last epoch.
  """
  buffer = max(1, min(shard_size, SHUFFLE_BUFFER))

  # The epochs are chained in Python, each with its seed as a number: a seed tensor in a
  # dataset function fails under a global seed of 0 (tf.random.set_seed(0), --seed=0).
  def epochs_between(first, last):  # halved, so the chain nests log2(epochs) deep
    if last - first == 1:
      return (shard.shuffle(buffer, seed=epoch_seed(seed, phase, first),
                            reshuffle_each_iteration=False)
              .repeat().batch(batch_size, drop_remainder=True).take(steps_per_epoch))
    middle = (first + last) // 2
    return epochs_between(first, middle).concatenate(epochs_between(middle, last))

  if epoch >= epochs:
    return shard.batch(batch_size, drop_remainder=True).take(0)
  return epochs_between(epoch, epochs).skip(step).prefetch(tf.data.AUTOTUNE)


def eval_dataset(b, split: "str | subsets.Subset", image_size: int, batch_size: int,
                 replicas_per_shard: int = 1, num_shards: int = 1,
                 shard: int = 0, cache: str = "memory",
                 cache_dir: str | None = None) -> tf.data.Dataset:
  """Every example once, in batches of `batch_size`, padded with weight-0
  examples to `eval_steps` full steps, so shapes stay static (TPU) and every
  worker runs the same number of steps. A step takes `replicas_per_shard`
  batches from a shard."""
  sizes = records.shard_sizes(b, split, num_shards)
  step_batch = batch_size * replicas_per_shard
  pad = plan.eval_steps(max(sizes), step_batch) * step_batch - sizes[shard]
  ds = shard_examples(b, split, image_size, num_shards, shard, cache, cache_dir)
  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros((image_size, image_size, 3), tf.uint8),
      "label": tf.constant(0, tf.int32),
      "leaked": tf.constant(False),
      "weight": tf.constant(0.0)}).repeat(pad)
  ds = ds.concatenate(padding).batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)
