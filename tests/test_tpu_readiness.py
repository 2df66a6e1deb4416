"""What a TPU needs, checked without one: static shapes, no Python callbacks, loop equivalence."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist import augment
from ctdist import data as data_lib
from ctdist import faults
from ctdist import loop
from ctdist import model as model_lib
from ctdist import strategy as strategy_lib
from ctdist import train


def _ops(ds: tf.data.Dataset) -> set[str]:
  graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(ds))
  graph_def = tf.compat.v1.GraphDef.FromString(graph.numpy())
  ops = {n.op for n in graph_def.node}
  for f in graph_def.library.function:
    ops |= {n.op for n in f.node_def}
  return ops


def test_pipelines_have_static_shapes_and_no_python_callbacks(small_data_dir):
  b = data_lib.builder("tfds_ctscan/kaggle", small_data_dir)
  for ds in (data_lib.train_dataset(b, "train", 32, 4, seed=0),
             data_lib.eval_dataset(b, "valid", 32, 4)):
    for key, spec in ds.element_spec.items():
      assert spec.shape.is_fully_defined(), (key, spec.shape)
    assert ds.element_spec["image"].shape == (4, 32, 32, 3)
    ops = _ops(ds)
    assert not {o for o in ops if "PyFunc" in o}, ops


@pytest.mark.slow
def test_steps_per_loop_gives_the_same_result(tmp_path, small_data_dir, monkeypatch):
  weights = {}
  real_build = model_lib.build_model

  def run(steps_per_loop):
    keras.backend.clear_session()
    built = {}
    monkeypatch.setattr(model_lib, "build_model",
                        lambda *a, **k: built.setdefault("m", real_build(*a, **k)))
    opts = train.make_options(
        model_dir=str(tmp_path / f"spl{steps_per_loop}"), dataset="tfds_ctscan/kaggle",
        data_dir=small_data_dir, weights="none", image_size=32, batch_size=4,
        head_epochs=2, finetune_epochs=0, steps_per_loop=steps_per_loop, export=False,
        seed=7)
    train.run(opts, strategy_lib.make_strategy("cpu"))
    weights[steps_per_loop] = [np.asarray(w) for w in built["m"].get_layer("fc1").get_weights()]
    return json.loads((tmp_path / f"spl{steps_per_loop}" / "history.json").read_text())

  h1, h3 = run(1), run(3)
  assert [h["loss"] for h in h1] == pytest.approx([h["loss"] for h in h3], rel=1e-3)
  for a, b in zip(weights[1], weights[3]):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_partial_checkpoint_files_do_not_break_resume(tmp_path, small_data_dir, monkeypatch):
  opts = train.make_options(model_dir=str(tmp_path / "run"), dataset="tfds_ctscan/kaggle",
                            data_dir=small_data_dir, weights="none", image_size=32,
                            batch_size=4, head_epochs=1, finetune_epochs=1, export=False)
  monkeypatch.setenv(faults.ENV, "after_checkpoint:1")  # killed after the first epoch
  with pytest.raises(faults.Crash):
    train.run(opts, strategy_lib.make_strategy("cpu"))
  monkeypatch.delenv(faults.ENV)
  ckpts = tmp_path / "run" / "checkpoints"
  # What a crash in the middle of writing checkpoint 99 leaves: data, no index update.
  (ckpts / "ckpt-99.data-00000-of-00001").write_bytes(b"\0" * 100)
  (ckpts / "ckpt-99.index").write_bytes(b"truncated")
  assert not tf.train.latest_checkpoint(str(ckpts)).endswith("ckpt-99")
  keras.backend.clear_session()
  train.run(opts, strategy_lib.make_strategy("cpu"))
  history = json.loads((tmp_path / "run" / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1), ("finetune", 1)]


# ---- the replica steps under XLA: what every TPU step is compiled with ----------------
def _tpu_like_trainer(tmp_path, small_data_dir, jit_compile, weights=None):
  """The TPU configuration on the CPU: bf16, several steps per loop, default augmentation."""
  strategy_lib.set_precision("mixed_bfloat16")
  b = data_lib.builder("tfds_ctscan/kaggle", small_data_dir)
  model = model_lib.build_model(32, data_lib.split_info(b, "train").class_names, "none")
  if weights is not None:
    model.set_weights(weights)
  cfg = loop.LoopConfig(global_batch=4, steps_per_epoch=4, val_steps=1, steps_per_loop=4,
                        schedule=loop.Schedule(finetune_layers=-1), jit_compile=jit_compile,
                        augmentation=augment.AugmentConfig(), seed=3)
  trainer = loop.Trainer(tf.distribute.get_strategy(), model, cfg,
                         data_lib.train_dataset(b, "train", 32, 4, seed=0), None,
                         str(tmp_path / f"run_{jit_compile}"))
  trainer.enter_phase(1)
  return trainer, b


@pytest.fixture
def _bf16():
  yield
  keras.mixed_precision.set_global_policy("float32")


def test_whole_replica_steps_compile_with_xla(tmp_path, small_data_dir, _bf16):
  # A TPU compiles everything inside strategy.run: augmentation (draws included), forward,
  # backward, optimizer; then the eval step. An op without an XLA kernel fails here as it
  # would there (keras-cv's rotation: "No registered 'ImageProjectiveTransformV3' OpKernel
  # for XLA_CPU_JIT").
  trainer, b = _tpu_like_trainer(tmp_path, small_data_dir, jit_compile=False)
  batch = next(iter(data_lib.train_dataset(b, "train", 32, 4, seed=0)))
  step = tf.function(trainer.replica_step, jit_compile=True)
  for _ in range(2):
    step(batch)
  assert int(trainer.optimizer.iterations) == 2
  loss, _ = trainer._read_sums()
  assert np.isfinite(loss) and loss > 0
  valid = next(iter(data_lib.eval_dataset(b, "valid", 32, 4)))
  tf.function(trainer.eval_step, jit_compile=True)(valid)
  loss, accuracy = trainer._read_sums()
  assert np.isfinite(loss) and 0 <= accuracy <= 1


def test_xla_step_gives_the_losses_of_the_plain_step(tmp_path, small_data_dir, _bf16):
  # The same start, batches and augmentation draws, with and without XLA: three steps'
  # losses agree to bf16's precision, so the compiled updates are the same updates.
  plain, b = _tpu_like_trainer(tmp_path, small_data_dir, jit_compile=False)
  start = plain.model.get_weights()
  xla, _ = _tpu_like_trainer(tmp_path, small_data_dir, jit_compile=True, weights=start)
  losses = {}
  for name, trainer in (("plain", plain), ("xla", xla)):
    step, batches = tf.function(trainer.replica_step), iter(
        data_lib.train_dataset(b, "train", 32, 4, seed=0))
    losses[name] = []
    for _ in range(3):
      step(next(batches))
      losses[name].append(trainer._read_sums()[0])
  assert losses["xla"] == pytest.approx(losses["plain"], rel=2e-2)
  assert len(set(losses["plain"])) == 3  # three different batches and weights
  kernel = [i for i, w in enumerate(xla.model.weights) if w.path.endswith("logits/kernel")][0]
  assert np.abs(xla.model.get_weights()[kernel] - start[kernel]).max() > 0
