"""The trainer end to end on small data: strategies, precisions, resume, outputs."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.model import inference
from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import saved
from ctdist.scoring import metrics
from ctdist.store import faults
from ctdist.training import inputs
from ctdist.training import state
from ctdist.training import strategy as strategy_lib
from ctdist.training import trainer as trainer_lib
from ctdist.workflows import training_run

ROOT = pathlib.Path(__file__).resolve().parents[1]

FAST = dict(image_size=32, batch_size=4, head_epochs=1, finetune_epochs=1,
            weights="none", finetune_layers=5, export=False, report=False,
            baseline=False)


def _opts(tmp_path, small_data_dir, **kw):
  return training_config.from_flat(model_dir=str(tmp_path / "run"), dataset="tfds_ctscan/kaggle",
                           data_dir=small_data_dir, **{**FAST, **kw})


def _spy_on_phases(monkeypatch) -> list[str]:
  """The names of the phases the trainer enters, in order, as it enters them. Entering a
  phase twice built a second optimizer and changed the run's numbers (the demo recipe's
  first epoch: loss 1.3865 instead of 1.3864)."""
  entered = []
  real_enter = trainer_lib.Trainer.enter_phase
  monkeypatch.setattr(trainer_lib.Trainer, "enter_phase",
                      lambda self, phase: (entered.append(phase.name), real_enter(self, phase))[1])
  return entered


@pytest.fixture(autouse=True)
def _float32_policy():
  yield
  keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_mirrored_two_replicas_trains_and_keeps_replicas_identical(tmp_path, small_data_dir,
                                                                   monkeypatch, two_replicas):
  # The two logical CPUs conftest makes, named: on a GPU host "mirrored" would take GPUs.
  strategy = two_replicas
  assert strategy.num_replicas_in_sync == 2
  built = {}
  real_build = resnet.build_model
  monkeypatch.setattr(resnet, "build_model",
                      lambda *a, **k: built.setdefault("m", real_build(*a, **k)))
  entered = _spy_on_phases(monkeypatch)
  result = training_run.run(_opts(tmp_path, small_data_dir, steps_per_loop=2), strategy)
  assert entered == ["head", "finetune"]
  model = built["m"]
  for v in model.variables:
    # v.value is the MirroredVariable behind the Keras variable: one copy per replica.
    copies = [np.asarray(x) for x in strategy.experimental_local_results(v.value)]
    assert len(copies) == 2
    np.testing.assert_array_equal(copies[0], copies[1], err_msg=v.path)
  assert result["run"]["replicas"] == 2
  run_dir = tmp_path / "run"
  for name in ("model.keras", "history.json", "metrics.json", "metrics_test.json",
               "training_curves.png", "confusion_test.png", "reliability_test.png"):
    assert (run_dir / name).exists(), name
  history = json.loads((run_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1), ("finetune", 1)]
  assert (run_dir / "tensorboard").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_paths_train(tmp_path, small_data_dir, precision, monkeypatch):
  seen = {}
  real = trainer_lib.Trainer._make_optimizer

  def spy(self, phase):
    opt = real(self, phase)
    seen["opt"] = opt
    return opt
  monkeypatch.setattr(trainer_lib.Trainer, "_make_optimizer", spy)
  entered = _spy_on_phases(monkeypatch)
  result = training_run.run(_opts(tmp_path, small_data_dir, head_epochs=0, precision=precision),
                     strategy_lib.make_strategy("cpu"))
  # A phase of 0 epochs is entered too (its checkpoint marks it done), each phase once.
  assert entered == ["head", "finetune"]
  assert result["run"]["precision"] == precision
  assert isinstance(seen["opt"], keras.optimizers.LossScaleOptimizer) == (
      precision == "mixed_float16")
  assert int(seen["opt"].iterations) > 0
  assert np.isfinite(result["history_last"]["loss"])
  probs = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))(
      np.zeros((1, 32, 32, 3), "float32"))
  assert probs.dtype == "float32"


# (fault point, arrival): each lands where a crash leaves files a re-run must cope with.
# 16 training images in batches of 4: 4 steps per epoch; mid_epoch checkpoints at step 2
# (the 2nd arrival is inside the fine-tune epoch); the others crash in the first epoch,
# before any checkpoint exists.
# before_rename:4 is the 4th atomic write (options.json, flags.txt, history.json after the
# head epoch, then after the fine-tune epoch): its temporary file is complete, unrenamed.
CRASHES = [("mid_epoch", 2), ("after_best_save", 1), ("before_checkpoint", 1),
           ("after_checkpoint", 1), ("during_export", 1), ("before_rename", 4)]


@pytest.mark.slow
@pytest.mark.parametrize("point,arrival", CRASHES)
def test_crash_then_rerun_keeps_every_epoch_once_and_completes_outputs(
    tmp_path, small_data_dir, monkeypatch, point, arrival):
  opts = _opts(tmp_path, small_data_dir, head_epochs=1, finetune_epochs=1, patience=10,
               checkpoint_every_steps=2 if point == "mid_epoch" else 0,
               export=point == "during_export")
  run_dir = tmp_path / "run"
  monkeypatch.setenv(faults.ENV, f"{point}:{arrival}")
  with pytest.raises(faults.Crash, match=point):
    training_run.run(opts, strategy_lib.make_strategy("cpu"))
  # Nothing half-written: what a reader sees is complete, and the last complete version.
  left = sorted(p.name for p in run_dir.rglob("*tmp*") if p.is_file())
  if point == "before_rename":
    assert left == ["history.json.tmp"]
    assert len(json.loads((run_dir / "history.json.tmp").read_text())) == 2
    assert [h["phase"] for h in json.loads((run_dir / "history.json").read_text())] == ["head"]
  else:
    assert not left
  if (run_dir / "history.json").exists():
    json.loads((run_dir / "history.json").read_text())
  if point == "during_export":
    keras.saving.load_model(run_dir / "model.keras")
    assert not (run_dir / "saved_model").exists() and not (run_dir / "metrics.json").exists()
  monkeypatch.delenv(faults.ENV)
  if point == "after_checkpoint":
    # What a crash in the middle of writing a checkpoint leaves: data, an index, and no
    # update of TensorFlow's checkpoint state, which ctdist resumes from: a newer-looking
    # file is not what it restores.
    (run_dir / "checkpoints" / "ckpt-99.data-00000-of-00001").write_bytes(b"\0" * 100)
    (run_dir / "checkpoints" / "ckpt-99.index").write_bytes(b"truncated")
  keras.backend.clear_session()
  training_run.run(opts, strategy_lib.make_strategy("cpu"))
  history = json.loads((run_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1), ("finetune", 1)]
  assert not [p.name for p in run_dir.rglob("*tmp*") if p.is_file()]  # the re-run's writes
  ckpt = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
  assert tf.train.load_variable(ckpt, "position/phase/.ATTRIBUTES/VARIABLE_VALUE") == 2
  # The fine-tune optimizer ran each of its 4 steps once, whatever was re-run.
  iterations = [name for name, _ in tf.train.list_variables(ckpt)
                if name.startswith("optimizer/") and "iteration" in name]
  assert iterations and tf.train.load_variable(ckpt, iterations[0]) == 4
  assert json.loads((run_dir / "metrics.json").read_text())["test"]["all"]["num_examples"] == 13
  assert (run_dir / "saved_model" / "1" / "saved_model.pb").exists() == opts.export
  assert not (run_dir / "saved_model" / "2").exists()  # the re-run's export is version 1
  assert (run_dir / "training_curves.png").stat().st_size > 0
  if point != "after_checkpoint":
    return
  # A finished run is not repeated.
  mtime = (run_dir / "history.json").stat().st_mtime
  keras.backend.clear_session()
  training_run.run(opts, strategy_lib.make_strategy("cpu"))
  assert (run_dir / "history.json").stat().st_mtime == mtime


def test_unknown_fault_point_is_refused(monkeypatch):
  monkeypatch.setenv(faults.ENV, "after_lunch")
  with pytest.raises(ValueError, match="unknown point 'after_lunch'"):
    faults.point("after_checkpoint")


@pytest.mark.slow
def test_finetune_leaves_batchnorm_statistics_unchanged(tmp_path, small_data_dir,
                                                        monkeypatch):
  built, before = {}, {}
  real_build = resnet.build_model

  def build_and_snapshot(*a, **k):
    m = built.setdefault("m", real_build(*a, **k))
    for layer in m.get_layer(resnet.BASE_NAME).layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        # As ImageNet weights would be: without its zero-initialised residual scales a
        # from-scratch base passes gradients to every convolution.
        layer.gamma.assign(keras.ops.ones_like(layer.gamma))
      before[layer.name] = [np.array(w) for w in layer.weights]  # as built, untrained
    return m
  monkeypatch.setattr(resnet, "build_model", build_and_snapshot)
  training_run.run(_opts(tmp_path, small_data_dir, finetune_layers=-1, head_epochs=0,
                  finetune_lr=1e-4), strategy_lib.make_strategy("cpu"))
  bn_changed = conv_changed = 0
  for layer in built["m"].get_layer(resnet.BASE_NAME).layers:
    for w, b in zip(layer.weights, before[layer.name]):
      diff = not np.allclose(np.asarray(w), b)
      if isinstance(layer, keras.layers.BatchNormalization):
        bn_changed += diff
      else:
        conv_changed += diff
  assert bn_changed == 0
  # Trained: every kernel and bias of ResNet50's 53 convolutions moved (all unfrozen).
  assert conv_changed == 2 * 53, conv_changed


def test_leak_free_metrics_on_known_fixture():
  names = ["a", "b"]
  labels = np.array([0, 0, 1, 1, 1, 0])
  probs = np.array([[.9, .1], [.8, .2], [.3, .7], [.6, .4], [.2, .8], [.4, .6]])
  leaked = np.array([True, True, False, False, False, False])
  rep = metrics.with_leak_free(labels, probs, leaked, names)
  assert rep["num_leaked"] == 2
  assert rep["all"]["accuracy"] == pytest.approx(4 / 6)
  assert rep["leak_free"]["accuracy"] == pytest.approx(2 / 4)
  assert rep["leak_free"]["confusion_matrix"] == [[0, 1], [1, 2]]
  assert rep["leak_free"]["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
  # Class a's scores: positives .9 .8 .4, negatives .3 .6 .2; 8 of the 9 pairs ordered.
  assert rep["all"]["roc_auc_ovr"]["a"] == pytest.approx(8 / 9)
  assert "leak-free" in metrics.render(rep, names)


def test_predict_uses_the_models_class_order(tmp_path):
  # Not alphabetical: code that assumed the dataset's (alphabetical) order would name
  # output 1 "large_cell_carcinoma" and output 3 "squamous_cell_carcinoma".
  names = ["normal", "squamous_cell_carcinoma", "adenocarcinoma", "large_cell_carcinoma"]
  m = resnet.build_model(32, names, weights="none")
  logits = m.get_layer("logits")
  kernel, bias = logits.get_weights()
  bias[:] = 0
  bias[1] = 50.0  # always output 1: "squamous_cell_carcinoma" in this model
  logits.set_weights([np.zeros_like(kernel), bias])
  path = tmp_path / "model.keras"
  m.save(str(path))
  from PIL import Image
  good = tmp_path / "scan.png"
  Image.new("RGBA", (70, 50), (40, 40, 40, 255)).save(good)
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
  results = inference.predict_files(saved.load(str(path)), [str(bad), str(good)])
  assert "error" in results[0] and "broken.png" in results[0]["error"]
  assert results[1]["label"] == "squamous_cell_carcinoma"
  assert list(results[1]["probabilities"]) == names
  assert results[1]["probabilities"]["squamous_cell_carcinoma"] > 0.99
  table = inference.render(results, ctdist_layers.class_names_of(saved.load(str(path))))
  header = table.splitlines()[0].split()
  assert header[2:] == names  # columns in the model's order


def test_metrics_table_columns_line_up_for_long_class_names():
  names = ["squamous_cell_carcinoma", "b"]
  labels = np.array([0, 1, 1, 0])
  probs = np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]])
  rep = metrics.with_leak_free(labels, probs, np.zeros(4, bool), names)
  rows = metrics.render(rep, names).splitlines()
  metric_rows = rows[1:rows.index("confusion matrix (rows true, columns predicted), all:")]
  assert "squamous_cell_carcinoma precision" in metrics.render(rep, names)
  # Every value ends in the same two columns: the rows are as long as the header.
  assert {len(r) for r in metric_rows} == {len(rows[0])}


@pytest.mark.slow
def test_early_stopping_restores_the_best_epoch(tmp_path, small_data_dir, monkeypatch):
  # The validation losses are scripted (1.0, 0.5, then worse), so what happens does not
  # depend on how training goes: with patience 1 the third epoch stops the phase, and
  # model.keras must hold the weights validated at epoch 2, not the last ones.
  script, snapshots = [1.0, 0.5, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1], []
  real_validate = trainer_lib.Trainer._validate

  def scripted(self):
    snapshots.append([np.array(w) for w in self.model.get_weights()])
    _, accuracy = real_validate(self)
    return script[len(snapshots) - 1], accuracy
  monkeypatch.setattr(trainer_lib.Trainer, "_validate", scripted)
  # BatchNorm trained (--nofreeze_batchnorm): every BatchNorm's moving statistics move at
  # every step, so base weights differ between epochs and a restore that missed the base
  # fails. (With BatchNorm frozen and --finetune_layers=5 the one convolution trained feeds
  # a BatchNorm whose scale is 0, zero_residual_branches: no base weight would move.)
  opts = _opts(tmp_path, small_data_dir, head_epochs=0, finetune_epochs=8,
               finetune_lr=1e-3, patience=1, freeze_batchnorm=False)
  training_run.run(opts, strategy_lib.make_strategy("cpu"))
  history = json.loads((tmp_path / "run" / "history.json").read_text())
  assert [h["val_loss"] for h in history] == [1.0, 0.5, 0.9]
  model = keras.saving.load_model(tmp_path / "run" / "model.keras")
  saved = model.get_weights()
  assert len(saved) == len(snapshots[1])
  for got, best in zip(saved, snapshots[1]):
    np.testing.assert_array_equal(got, best)
  # Training did move the base's weights after the best epoch: restoring them made a
  # difference.
  base = {v.path for v in model.get_layer(resnet.BASE_NAME).weights}
  assert any(v.path in base and not np.array_equal(a, b)
             for v, a, b in zip(model.weights, snapshots[1], snapshots[2]))


@pytest.mark.slow
@pytest.mark.parametrize("phase,script", [("finetune", [1.0, np.nan, np.nan]),
                                          ("head", [np.nan, np.inf])])
def test_a_phase_without_a_finite_validation_loss_stops_the_run(
    tmp_path, small_data_dir, monkeypatch, phase, script):
  # Before: the head kept its last weights silently, and a diverged fine-tune restored the
  # head's best weights (best/ held only those) and reported them as the fine-tune's.
  real_validate = trainer_lib.Trainer._validate
  calls = []

  def scripted(self):
    _, accuracy = real_validate(self)
    calls.append(1)
    return script[len(calls) - 1], accuracy
  monkeypatch.setattr(trainer_lib.Trainer, "_validate", scripted)
  opts = _opts(tmp_path, small_data_dir, head_epochs=1 if phase == "finetune" else 2,
               finetune_epochs=2 if phase == "finetune" else 1, patience=5)
  with pytest.raises(state.DivergedError,
                     match=f"the {phase} phase diverged: its validation loss was NaN or "
                           f"infinite in every epoch \\(1 to 2\\); lower --{phase}_lr"):
    training_run.run(opts, strategy_lib.make_strategy("cpu"))
  assert not (tmp_path / "run" / "model.keras").exists()


def test_balanced_class_weights_by_hand():
  # The Kaggle train split: 195 adenocarcinoma, 115 large cell, 148 normal, 155 squamous;
  # weight = 613 / (4 x count).
  assert inputs.balanced_weights([195, 115, 148, 155]) == pytest.approx(
      (613 / 780, 613 / 460, 613 / 592, 613 / 620))
  with pytest.raises(ValueError, match=r"\[3.0, 0.0\] include an empty class"):
    inputs.balanced_weights([3, 0])
