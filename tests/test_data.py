"""The input pipeline: decode/resize eager and in tf.data, padding, sharding, batch checks."""

import hashlib
import io
import math

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from ctdist.data import builders
from ctdist.data import pipeline
from ctdist.data import plan as plan_lib
from ctdist.data import records
from ctdist.model import inference
from ctdist.model import resnet
from ctdist.scoring import evaluation as evaluate


def _png(arr):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, "PNG")
  return buf.getvalue()


def test_decode_and_resize_same_eager_and_in_map():
  rng = np.random.default_rng(0)
  encoded = tf.constant(_png(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)))
  eager = pipeline.decode_and_resize(encoded, 32).numpy()
  mapped = next(iter(tf.data.Dataset.from_tensors(encoded).map(
      lambda e: pipeline.decode_and_resize(e, 32)))).numpy()
  assert eager.shape == (32, 32, 3) and eager.dtype == np.uint8
  np.testing.assert_array_equal(eager, mapped)
  gray = tf.constant(_png(rng.integers(0, 255, (40, 40), dtype=np.uint8)))
  assert pipeline.decode_and_resize(gray, 16).shape == (16, 16, 3)


def test_check_batch_names_the_numbers():
  assert plan_lib.check_batch(32, 4) == 8
  with pytest.raises(ValueError, match="global batch 30 is not divisible by 4 replicas"):
    plan_lib.check_batch(30, 4)


def test_not_built_dataset_says_how_to_build(tmp_path):
  with pytest.raises(builders.DatasetNotBuiltError, match="tfds build tfds_ctscan"):
    builders.builder("tfds_ctscan/kaggle", str(tmp_path))


def _digest(image) -> str:
  return hashlib.sha1(np.asarray(image).tobytes()).hexdigest()


@pytest.mark.parametrize("data", ["small_data_dir", "files_data_dir"])
def test_eval_dataset_covers_each_example_once_across_shards(request, data):
  # One TFRecord file: examples sharded; four: each pipeline reads its own files.
  b = builders.builder("tfds_ctscan/kaggle", request.getfixturevalue(data))
  n = b.info.splits["test"].num_examples  # 13 distinct images
  whole = sorted(_digest(ex["image"]) for ex in b.as_dataset(split="test").map(
      lambda ex: {"image": pipeline.decode_and_resize(
          tf.io.encode_png(ex["image"]), 16)}).as_numpy_iterator())
  assert len(set(whole)) == n
  seen, steps = [], []
  for shard in range(2):
    batches = list(pipeline.eval_dataset(b, "test", 16, 3, 1, 2, shard).as_numpy_iterator())
    steps.append(len(batches))
    for batch in batches:
      assert batch["image"].shape == (3, 16, 16, 3)  # static, full batches
      seen += [_digest(img) for img, w in zip(batch["image"], batch["weight"]) if w]
      assert not batch["image"][batch["weight"] == 0].any()  # padding is blank
  assert sorted(seen) == whole  # every example, once, over both shards
  largest = max(records.shard_sizes(b, "test", 2))  # 7 of 13 when examples are sharded
  assert largest == 7 or data == "files_data_dir"
  assert steps[0] == steps[1] == math.ceil(largest / 3)


def test_train_shards_are_disjoint_and_cover_the_split(small_data_dir):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  n = b.info.splits["train"].num_examples  # 16 distinct images: 8 a shard, 2 batches of 4
  shards = []
  for shard in range(2):
    it = iter(pipeline.train_dataset(b, "train", 24, 4, seed=0, num_shards=2, shard=shard))
    batches = [next(it) for _ in range(2)]  # one epoch of this shard
    assert batches[0]["image"].shape == (4, 24, 24, 3)
    assert batches[0]["image"].dtype == tf.uint8
    shards.append({_digest(img) for batch in batches for img in batch["image"]})
  assert len(shards[0]) == len(shards[1]) == n // 2
  assert shards[0].isdisjoint(shards[1])


def test_gcs_data_dir_passes_through_untouched(monkeypatch):
  seen = {}

  class Built:
    def is_prepared(self):
      return True

  def fake_builder(name, data_dir=None):
    seen.update(name=name, data_dir=data_dir)
    return Built()
  monkeypatch.setattr(builders.tfds, "builder", fake_builder)
  builders.builder("tfds_ctscan/kaggle", "gs://my-bucket/tensorflow_datasets")
  assert seen == {"name": "tfds_ctscan/kaggle", "data_dir": "gs://my-bucket/tensorflow_datasets"}


def test_predict_and_the_eval_pipeline_give_the_same_probabilities(small_data_dir):
  # One file, two ways in: ctdist.predict reads the file itself; evaluation reads the
  # builder's TFRecords. Both must reach the model as the same pixels.
  import pathlib  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  names = [n.decode() for n in b.as_dataset(
      split="test", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
  ).map(lambda ex: ex["file_name"]).as_numpy_iterator()]
  model = resnet.build_model(40, list(b.info.features["label"].names), "none")
  kernel = [w for w in model.weights if w.path.endswith("logits/kernel")][0]
  kernel.assign(np.random.RandomState(0).normal(0, 0.05, kernel.shape))  # zero: all 0.25
  probs = evaluate.predict_split(model, b, "test", batch_size=4).probs
  data_root = pathlib.Path(small_data_dir).parent / "manual" / "Data"
  results = inference.predict_files(model, [str(data_root / n) for n in names])
  assert len(results) == len(names) == 13
  for r, p in zip(results, probs):
    assert "error" not in r, r
    np.testing.assert_allclose(list(r["probabilities"].values()), p, rtol=1e-4, atol=1e-6)
  # Different images give different outputs: the comparison is not of constants.
  assert len({round(float(p.max()), 6) for p in probs}) > 1


@pytest.mark.parametrize("batch,replicas,val_sizes,want", [
    # The Kaggle splits (613 train, 72 valid): 613 // 32 = 19 steps; 72 / 32 -> 3.
    (32, 2, [72], (16, 19, 3)),
    # Three workers of 2 replicas: 36 per step; each pipeline 24 valid images / 12 -> 2.
    (36, 6, [24, 24, 24], (6, 17, 2)),
    # One example per replica on 8 TPU cores of 2 hosts: 36 per host / 4 -> 9.
    (8, 8, [36, 36], (1, 76, 9)),
    # Files of unequal length: the larger pipeline sets the steps, 40 / 4 -> 10.
    (8, 2, [40, 32], (4, 76, 10))])
def test_step_plan_by_hand(batch, replicas, val_sizes, want):
  plan = plan_lib.step_plan(batch, replicas, len(val_sizes), 613, val_sizes)
  assert (plan.per_replica_batch, plan.steps_per_epoch, plan.val_steps) == want
  assert (plan.global_batch, plan.input_pipelines) == (batch, len(val_sizes))


def test_step_plan_refuses_batches_that_do_not_fit():
  with pytest.raises(plan_lib.BatchSizeError, match="not divisible by 4 replicas"):
    plan_lib.step_plan(30, 4, 1, 613, [72])
  with pytest.raises(plan_lib.BatchSizeError,
                     match="global batch 32 is larger than the 16 training examples"):
    plan_lib.step_plan(32, 2, 1, 16, [4])


@pytest.fixture(scope="module")
def files_data_dir(tmp_path_factory):
  """tfds_ctscan/kaggle from the small fixture, each split written as 4 TFRecord files."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tests import conftest  # pylint: disable=g-import-not-at-top
  from tfds_ctscan import synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("files")
  synthetic.write_kaggle_layout(root / "manual", seed=3, counts=conftest.SMALL_COUNTS,
                                size_range=(40, 64))
  tfds.builder("tfds_ctscan/kaggle", data_dir=str(root / "tfds")).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual"),
                                                   num_shards=4))
  return str(root / "tfds")


def _names(ds):
  return [n.decode() for n in ds.map(lambda ex: ex["file_name"]).as_numpy_iterator()]


@pytest.mark.parametrize("pipelines", [1, 2, 3, 5])
def test_each_pipeline_reads_its_own_files(files_data_dir, pipelines):
  b = builders.builder("tfds_ctscan/kaggle", files_data_dir)
  lengths = b.info.splits["train"].shard_lengths
  assert len(lengths) == 4  # the fixture's files
  whole = _names(b.as_dataset(split="train", shuffle_files=False))
  shards = [_names(records.read(b, "train", pipelines, i)) for i in range(pipelines)]
  # Disjoint, and together the split: every example exactly once.
  assert sorted(n for s in shards for n in s) == sorted(whole)
  # 2 and 3 pipelines read whole files (file i goes to pipeline i mod n); 5 pipelines
  # outnumber the 4 files, so each keeps every 5th example instead.
  sharded = pipelines in (2, 3)
  assert records.files_sharded(b, "train", pipelines) == sharded
  if sharded:
    assert [len(s) for s in shards] == [sum(lengths[i::pipelines]) for i in range(pipelines)]
  else:
    assert [len(s) for s in shards] == [len(whole[i::pipelines]) for i in range(pipelines)]
  assert records.shard_sizes(b, "train", pipelines) == [len(s) for s in shards]


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_caches_give_the_same_epochs(small_data_dir, tmp_path, cache):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  ds = pipeline.eval_dataset(b, "test", 16, 4, cache=cache, cache_dir=str(tmp_path / "c"))
  epochs = [[_digest(img) for batch in ds.as_numpy_iterator() for img in batch["image"]]
            for _ in range(2)]
  assert epochs[0] == epochs[1] and len(epochs[0]) == 16  # 13 examples + 3 padding
  files = list((tmp_path / "c").glob("*")) if (tmp_path / "c").exists() else []
  assert bool(files) == (cache == "disk")  # only the disk cache writes files


@pytest.mark.parametrize("global_seed", [42, 0])
def test_phase_batches_resume_at_any_step_and_each_epoch_has_its_order(global_seed):
  # A global seed of 0 (--seed=0) once failed: a seed tensor in a dataset function.
  tf.random.set_seed(global_seed)
  try:
    shard = tf.data.Dataset.range(7)
    def batches(epoch=0, step=0, seed=5, phase=1):
      ds = pipeline.phase_batches(shard, 7, 2, seed, phase, 3, 4, epoch, step)
      return [b.tolist() for b in ds.as_numpy_iterator()]
    whole = batches()
    assert len(whole) == 3 * 4 and all(len(b) == 2 for b in whole)
    epochs = [sum(whole[4 * e:4 * e + 4], []) for e in range(3)]
    # Each epoch a permutation of the shard, cycled for its 8th example; epochs differ.
    assert all(sorted(e[:7]) == list(range(7)) and e[7] == e[0] for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3
    for e in range(3):
      for s in range(4):
        assert batches(e, s) == whole[4 * e + s:], (e, s)
    assert batches(3) == []
    assert batches(seed=6) != whole and batches(phase=0) != whole
  finally:
    tf.random.set_seed(None)


def test_predict_split_groups_exact_copies(kaggle_dir, tmp_path):
  # Two files of one image in the test split: one group; every other example its own.
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  folder = next((kaggle_dir / "Data" / "test").iterdir())
  first = sorted(folder.iterdir())[0]
  shutil.copy(first, folder / f"copy_of_{first.name}")
  b = tfds.builder("tfds_ctscan/kaggle", data_dir=str(tmp_path / "tfds"))
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(kaggle_dir)))
  model = resnet.build_model(32, list(b.info.features["label"].names), "none")
  p = evaluate.predict_split(model, b, "test", batch_size=4)
  assert len(p.labels) == 14 and len(set(p.groups.tolist())) == 13
  assert sorted(np.bincount(p.groups).tolist()) == [1] * 12 + [2]
  # The copy and its original: one group, and the file names are the ones on disk.
  pair = [i for i, f in enumerate(p.file_names)
          if f in (f"test/{folder.name}/{first.name}", f"test/{folder.name}/copy_of_{first.name}")]
  assert len(pair) == 2 and p.groups[pair[0]] == p.groups[pair[1]]
  on_disk = sorted(f"test/{d.name}/{f.name}" for d in (kaggle_dir / "Data" / "test").iterdir()
                   for f in d.iterdir())
  assert sorted(p.file_names.tolist()) == on_disk
