"""TFDS examples -> resized, cached, shuffled, batched and sharded tf.data input."""

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ctdist import files

BUILD_HINT = (
    "build it first: `tfds build tfds_ctscan --config=synthetic --data_dir={data_dir}` "
    "for the offline synthetic data, or `tfds build tfds_ctscan "
    "--manual_dir=KAGGLE_DOWNLOAD --data_dir={data_dir}` for the real one "
    "(or pass --manual_dir to ctdist.train)")


class DatasetNotBuiltError(FileNotFoundError):
  """The requested TFDS dataset has not been prepared in data_dir."""


class BatchSizeError(ValueError):
  """The global batch does not fit the replicas or the data."""


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """What the trainer needs to know about one split."""
  name: str
  num_examples: int
  class_names: tuple[str, ...]


class SubsetError(ValueError):
  """A subset file that is missing, malformed, or lists files the dataset lacks."""


@dataclasses.dataclass(frozen=True)
class Subset:
  """The examples of a TFDS split expression (e.g. "train+valid") whose file names are
  listed: a cross-validation fold's part. Accepted wherever a split name is."""
  name: str  # for logs and output files, e.g. "fold0_heldout"
  split: str
  files: tuple[str, ...]

  def __str__(self):
    return self.name


def write_subsets(path: str, train: Subset, valid: Subset) -> None:
  """The train and validation parts of a run (a fold), as `read_subsets` reads them."""
  files.write_json(path, {"train": dataclasses.asdict(train),
                          "valid": dataclasses.asdict(valid)})  # atomic: workers read it


def read_subsets(path: str) -> tuple[Subset, Subset]:
  """(train, valid) Subsets from a file `write_subsets` wrote.

  Raises:
    SubsetError: naming the file, if it is missing or not such a file.
  """
  try:
    with tf.io.gfile.GFile(path) as f:
      d = json.load(f)
    return tuple(Subset(d[k]["name"], d[k]["split"], tuple(d[k]["files"]))
                 for k in ("train", "valid"))
  except (OSError, tf.errors.NotFoundError, KeyError, TypeError, ValueError) as e:
    raise SubsetError(f"--subset_file={path}: not a subset file written by ctdist.cv "
                     f"({e!r})") from e


def builder(dataset: str, data_dir: str | None, manual_dir: str | None = None):
  """Returns the prepared TFDS builder, preparing it if `manual_dir` is given.

  Raises:
    DatasetNotBuiltError: not prepared and no `manual_dir`; says how to build it.
  """
  import tfds_ctscan  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  b = tfds.builder(dataset, data_dir=data_dir)
  if not b.is_prepared():
    if manual_dir is None and not dataset.endswith("/synthetic"):
      raise DatasetNotBuiltError(
          f"dataset {dataset!r} is not built in {b.data_dir}; "
          + BUILD_HINT.format(data_dir=data_dir or "~/tensorflow_datasets"))
    logging.info("building %s in %s (first use)", dataset, b.data_dir)
    # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout: its
    # sizes are unknown here and the line above says what happens.
    with contextlib.redirect_stdout(io.StringIO()):
      b.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir))
    logging.info("built %s: %s", dataset, ", ".join(
        f"{name} {split.num_examples}" for name, split in sorted(b.info.splits.items())))
  return b


def check_subsets(b, *subsets: Subset) -> None:
  """Raises SubsetError naming listed files that their split does not hold, or that a
  subset lists twice (each split expression is read once, file names only)."""
  found = {}
  for subset in subsets:
    if subset.split not in found:
      found[subset.split] = set(file_names(b, subset.split).tolist())
    missing = [f for f in subset.files if f not in found[subset.split]]
    if missing:
      raise SubsetError(
          f"{subset.name}: {len(missing)} of its {len(subset.files)} files are not in "
          f"{b.info.full_name} {subset.split} (e.g. {missing[:3]}); was the dataset rebuilt "
          "since ctdist.cv assigned the folds?")
    twice = sorted(f for f, n in collections.Counter(subset.files).items() if n > 1)
    if twice:
      raise SubsetError(f"{subset.name}: files listed more than once: {twice[:3]}")


def split_info(b, split: "str | Subset") -> SplitInfo:
  n = len(split.files) if isinstance(split, Subset) else b.info.splits[split].num_examples
  return SplitInfo(str(split), n, tuple(b.info.features["label"].names))


def class_counts(b, split: "str | Subset") -> np.ndarray:
  """Examples per class in `split`, read from the labels alone."""
  ds = _records(b, split, 1, 0)
  labels = [int(label) for label in ds.map(lambda ex: ex["label"]).as_numpy_iterator()]
  return np.bincount(labels, minlength=b.info.features["label"].num_classes)


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


# Where decoded, resized examples are kept between epochs: in memory (fastest; 224 px x
# 613 images = 92 MB), in files under a local folder (data larger than memory), or
# nowhere (decode every epoch).
CACHES = ("memory", "disk", "none")


def files_sharded(b, split: "str | Subset", num_shards: int) -> bool:
  """True when each of `num_shards` input pipelines reads its own TFRecord files (the
  split has at least one file per pipeline); otherwise each reads every file and keeps
  every `num_shards`-th example (always, for a Subset)."""
  if isinstance(split, Subset):
    return False
  return num_shards > 1 and len(b.info.splits[split].shard_lengths) >= num_shards


def shard_sizes(b, split: "str | Subset", num_shards: int) -> list[int]:
  """Examples each of `num_shards` input pipelines reads (see `files_sharded`)."""
  if files_sharded(b, split, num_shards):  # TFDS gives pipeline i files i, i + n, ...
    lengths = b.info.splits[split].shard_lengths
    return [sum(lengths[i::num_shards]) for i in range(num_shards)]
  n = split_info(b, split).num_examples
  return [n // num_shards + (1 if i < n % num_shards else 0) for i in range(num_shards)]


def _records(b, split, num_shards: int, shard: int) -> tf.data.Dataset:
  """One input pipeline's share of `split` (a name or a Subset), images still encoded."""
  read_config = None
  if files_sharded(b, split, num_shards):
    read_config = tfds.ReadConfig(input_context=tf.distribute.InputContext(
        num_input_pipelines=num_shards, input_pipeline_id=shard))
  ds = b.as_dataset(split=split.split if isinstance(split, Subset) else split,
                    shuffle_files=False, read_config=read_config,
                    decoders={"image": tfds.decode.SkipDecoding()})
  if isinstance(split, Subset):
    listed = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(split.files, tf.string), tf.ones(len(split.files), tf.int32)), 0)
    ds = ds.filter(lambda ex: listed.lookup(ex["file_name"]) > 0)
  if num_shards > 1 and read_config is None:
    ds = ds.shard(num_shards, shard)
  return ds


def _examples(b, split: "str | Subset", image_size: int, num_shards: int, shard: int,
              cache: str, cache_dir: str | None) -> tf.data.Dataset:
  ds = _records(b, split, num_shards, shard).map(
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
    raise ValueError(f"cache={cache!r}; expected one of {CACHES}")
  return ds


def _cache_key(split) -> str:
  if isinstance(split, Subset):  # its files decide what is cached
    return f"{split.name}_" + hashlib.sha1("\n".join(split.files).encode()).hexdigest()[:12]
  return split


def train_dataset(b, split: "str | Subset", image_size: int, batch_size: int, seed: int,
                  num_shards: int = 1, shard: int = 0, cache: str = "memory",
                  cache_dir: str | None = None) -> tf.data.Dataset:
  """Endless shuffled training batches of `batch_size` (static shapes).

  With a cache, each image is decoded and resized once; later epochs only shuffle and
  batch.
  """
  ds = _examples(b, split, image_size, num_shards, shard, cache, cache_dir)
  ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_steps(largest_shard: int, step_batch: int) -> int:
  """Steps that cover the largest input pipeline's examples, `step_batch` a step."""
  return max(1, math.ceil(largest_shard / step_batch))


def eval_dataset(b, split: "str | Subset", image_size: int, batch_size: int,
                 replicas_per_shard: int = 1, num_shards: int = 1,
                 shard: int = 0, cache: str = "memory",
                 cache_dir: str | None = None) -> tf.data.Dataset:
  """Every example once, in batches of `batch_size`, padded with weight-0
  examples to `eval_steps` full steps, so shapes stay static (TPU) and every
  worker runs the same number of steps. A step takes `replicas_per_shard`
  batches from a shard."""
  sizes = shard_sizes(b, split, num_shards)
  step_batch = batch_size * replicas_per_shard
  pad = eval_steps(max(sizes), step_batch) * step_batch - sizes[shard]
  ds = _examples(b, split, image_size, num_shards, shard, cache, cache_dir)
  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros((image_size, image_size, 3), tf.uint8),
      "label": tf.constant(0, tf.int32),
      "leaked": tf.constant(False),
      "weight": tf.constant(0.0)}).repeat(pad)
  ds = ds.concatenate(padding).batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def check_batch(global_batch: int, replicas: int) -> int:
  """Returns the per-replica batch; raises if the global batch does not divide."""
  if global_batch <= 0 or global_batch % replicas:
    raise BatchSizeError(
        f"global batch {global_batch} is not divisible by {replicas} replicas; "
        f"use a multiple of {replicas}, e.g. --batch_size="
        f"{max(replicas, global_batch // replicas * replicas)}")
  return global_batch // replicas


@dataclasses.dataclass(frozen=True)
class StepPlan:
  """How a global batch spreads over replicas and input pipelines, and how many steps
  an epoch and a validation pass take."""
  global_batch: int
  per_replica_batch: int
  input_pipelines: int  # one per worker (per host on a TPU)
  steps_per_epoch: int  # full global batches of the training split
  val_steps: int  # steps covering every validation example once (the rest padded)


def step_plan(global_batch: int, replicas: int, input_pipelines: int,
              train_examples: int, val_shard_sizes: list[int]) -> StepPlan:
  """The one place these numbers are computed (train, bench, tests). `val_shard_sizes`:
  the validation examples each input pipeline reads (`shard_sizes`).

  Raises:
    BatchSizeError: the batch does not divide over the replicas, or exceeds the split.
  """
  per_replica = check_batch(global_batch, replicas)
  steps_per_epoch = train_examples // global_batch
  if steps_per_epoch == 0:
    raise BatchSizeError(
        f"global batch {global_batch} is larger than the {train_examples} training "
        f"examples; use --batch_size={train_examples} or less")
  return StepPlan(global_batch, per_replica, input_pipelines, steps_per_epoch,
                  eval_steps(max(val_shard_sizes), global_batch // input_pipelines))


def distribute(strategy: tf.distribute.Strategy, make_ds, global_batch: int):
  """Calls `make_ds(per_replica_batch, replicas_per_shard, num_shards, shard)`
  once per input pipeline (one per worker) via `distribute_datasets_from_function`."""
  def fn(ctx: tf.distribute.InputContext):
    return make_ds(ctx.get_per_replica_batch_size(global_batch),
                   ctx.num_replicas_in_sync // ctx.num_input_pipelines,
                   ctx.num_input_pipelines, ctx.input_pipeline_id)
  return strategy.distribute_datasets_from_function(fn)


def file_names(b, split: "str | Subset") -> np.ndarray:
  """The split's file names (e.g. `test/normal/0020.png`), in `eval_dataset`'s order."""
  return np.array([n.decode() for n in _records(b, split, 1, 0).map(
      lambda ex: ex["file_name"]).as_numpy_iterator()], dtype=str)


def leaked_count(b, split: "str | Subset") -> int:
  """Examples of `split` flagged as copies of an earlier split's images."""
  return int(sum(_records(b, split, 1, 0).map(lambda ex: tf.cast(ex["leaked"], tf.int32))
                 .as_numpy_iterator()))


def images_named(b, split: "str | Subset", image_size: int, names) -> dict[str, np.ndarray]:
  """{file name: resized image} of the examples of `split` named in `names`; raises
  KeyError naming those the split does not hold."""
  wanted = set(names)
  found = {}
  for ex in _records(b, split, 1, 0).as_numpy_iterator():
    name = ex["file_name"].decode()
    if name in wanted:
      found[name] = decode_and_resize(ex["image"], image_size).numpy()
  missing = sorted(wanted - set(found))
  if missing:
    raise KeyError(f"{b.info.full_name} {split} has no {', '.join(missing[:5])}"
                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
  return found


class NoFindingsError(ValueError):
  """The dataset records no finding boxes."""


def annotated_examples(b, split: "str | Subset", image_size: int):
  """(file name, resized image, label, finding boxes K x 4) of every example of `split`,
  in `eval_dataset`'s order; the boxes are (ymin, xmin, ymax, xmax) fractions, none for
  an image without a finding.

  Raises:
    NoFindingsError: the dataset has no `findings` feature.
  """
  if "findings" not in b.info.features:
    raise NoFindingsError(
        f"dataset {b.info.full_name} records no finding boxes (no 'findings' feature): "
        "the pointing game needs tfds_ctscan/synthetic, whose boxes say where each "
        "finding was drawn")
  ds = _records(b, split, 1, 0).map(
      lambda ex: (ex["file_name"], decode_and_resize(ex["image"], image_size),
                  tf.cast(ex["label"], tf.int32), ex["findings"]))
  for name, image, label, boxes in ds.as_numpy_iterator():
    yield name.decode(), image, int(label), boxes.reshape(-1, 4)


def shard_fingerprint(b, split: "str | Subset", num_shards: int, shard: int) -> tuple[int, str]:
  """(examples, SHA-1 of their file names) of one input shard, for logs: workers
  of a cluster must report different fingerprints."""
  names = sorted(_records(b, split, num_shards, shard).map(
      lambda ex: ex["file_name"]).as_numpy_iterator())
  return len(names), hashlib.sha1(b"\n".join(names)).hexdigest()[:12]
