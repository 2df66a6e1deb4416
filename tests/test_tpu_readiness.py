"""What a TPU needs, checked without one: static shapes, no Python callbacks, loop equivalence."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import faults
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
