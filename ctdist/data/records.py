"""What a split (a name or a Subset) holds, and each input pipeline's share of its records."""

import dataclasses

import tensorflow as tf
import tensorflow_datasets as tfds

from ctdist.data import subsets


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """What the trainer needs to know about one split."""
  name: str
  num_examples: int
  class_names: tuple[str, ...]


def split_info(b, split: "str | subsets.Subset") -> SplitInfo:
  n = len(split.files) if isinstance(split, subsets.Subset) else b.info.splits[split].num_examples
  return SplitInfo(str(split), n, tuple(b.info.features["label"].names))


def files_sharded(b, split: "str | subsets.Subset", num_shards: int) -> bool:
  """True when each of `num_shards` input pipelines reads its own TFRecord files (the
  split has at least one file per pipeline); otherwise each reads every file and keeps
  every `num_shards`-th example (always, for a Subset)."""
  if isinstance(split, subsets.Subset):
    return False
  return num_shards > 1 and len(b.info.splits[split].shard_lengths) >= num_shards


def shard_sizes(b, split: "str | subsets.Subset", num_shards: int) -> list[int]:
  """Examples each of `num_shards` input pipelines reads (see `files_sharded`)."""
  if files_sharded(b, split, num_shards):  # TFDS gives pipeline i files i, i + n, ...
    lengths = b.info.splits[split].shard_lengths
    return [sum(lengths[i::num_shards]) for i in range(num_shards)]
  n = split_info(b, split).num_examples
  return [n // num_shards + (1 if i < n % num_shards else 0) for i in range(num_shards)]


def read(b, split, num_shards: int, shard: int) -> tf.data.Dataset:
  """One input pipeline's share of `split` (a name or a Subset), images still encoded."""
  read_config = None
  if files_sharded(b, split, num_shards):
    read_config = tfds.ReadConfig(input_context=tf.distribute.InputContext(
        num_input_pipelines=num_shards, input_pipeline_id=shard))
  # A pool such as "train+valid" is read split after split: TFDS would interleave the
  # splits' files, and the order of a subset's records would then depend on how many
  # records of other files come first (a cv fold's batches would change when a held-out
  # file is renamed). Each split's own order is TFDS's, by hashed file name.
  names = (split.split if isinstance(split, subsets.Subset) else split).split("+")
  ds = None
  for name in names:
    part = b.as_dataset(split=name, shuffle_files=False, read_config=read_config,
                        decoders={"image": tfds.decode.SkipDecoding()})
    ds = part if ds is None else ds.concatenate(part)
  if isinstance(split, subsets.Subset):
    listed = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(split.files, tf.string), tf.ones(len(split.files), tf.int32)), 0)
    ds = ds.filter(lambda ex: listed.lookup(ex["file_name"]) > 0)
  if num_shards > 1 and read_config is None:
    ds = ds.shard(num_shards, shard)
  return ds
