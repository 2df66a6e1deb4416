"""Every entry point meets a user's mistake the same way: exit status 2 within seconds,
one `error:` line naming the value or file and the fix, no traceback, nothing written.

One table over ctdist's commands, the audit, the synthetic writer and the local cluster
launcher: bad flags, unknown names, missing, corrupt and foreign files."""

import dataclasses
import json
import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.model import layers as ctdist_layers
from ctdist.store import options_file
from tfds_ctscan import layout
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECONDS = 120  # a TensorFlow import on a busy CI core; a mistake is found long before


@dataclasses.dataclass
class Case:
  args: list[str]  # after `python -m`; {data}, {run}, {tmp} ... are filled in below
  says: str  # in the error line
  absent: tuple[str, ...] = ()  # paths the mistake must not create


def _tiny_model(inputs, x):
  x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(x))
  logits = keras.layers.Dense(len(layout.CLASS_NAMES))(x)
  return keras.Model(inputs, ctdist_layers.LabeledSoftmax(
      list(layout.CLASS_NAMES), name=ctdist_layers.OUTPUT_NAME)(logits))


@pytest.fixture(scope="module")
def commands():
  """Each case is `python -m ...` forked from one process that imported TensorFlow once
  (tests/forked.py): 48 imports of TensorFlow would cost ~6 minutes of a core."""
  server = forked.Server(dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES=""),
                         timeout=SECONDS)
  yield server
  server.close()


@pytest.fixture(scope="module")
def places(small_data_dir, tmp_path_factory) -> dict:
  """Run folders holding a good (tiny) ctdist model, a corrupt one, one carrying code and
  a foreign one, each with the options.json of a run on the fixture's data."""
  root = tmp_path_factory.mktemp("mistakes")
  opts = training_config.from_flat(model_dir="x", dataset="tfds_ctscan/kaggle",
                                   data_dir=small_data_dir, image_size=32, weights="none")
  folders = {}
  for name in ("good", "corrupt", "code", "foreign", "resume", "bad_metrics"):
    folders[name] = root / name
    folders[name].mkdir()
    options_file.save(dataclasses.replace(opts, model_dir=str(folders[name])),
                      str(folders[name]))
  inputs = keras.Input((32, 32, 3))
  _tiny_model(inputs, inputs).save(folders["good"] / "model.keras")
  (folders["corrupt"] / "model.keras").write_bytes(b"PK\x03\x04 cut short")
  # A ctdist-looking model whose first layer is a Lambda: loading it outside safe mode
  # would run the code stored in the file.
  _tiny_model(inputs, keras.layers.Lambda(lambda t: t * 1.0)(inputs)).save(
      folders["code"] / "model.keras")
  x = keras.Input((4,))
  keras.Model(x, keras.layers.Dense(2)(x)).save(folders["foreign"] / "model.keras")
  # A run with a checkpoint whose options.json was damaged.
  tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1)),
                             str(folders["resume"] / "checkpoints"), max_to_keep=1).save()
  (folders["resume"] / "options.json").write_text('{"model_dir": ')
  (folders["resume"] / "flags.txt").unlink()
  (root / "empty").mkdir()
  image = root / "scan.png"
  keras.utils.save_img(image, tf.zeros((40, 40, 3)).numpy())
  (root / "broken.zip").write_bytes(b"PK\x03\x04 not a whole zip")
  (root / "predictions").mkdir()
  (root / "predictions" / "predictions_test.json").write_text('{"examples": 3}')
  (root / "user_data" / "Data").mkdir(parents=True)
  (root / "user_data" / "Data" / "mine.png").write_bytes(b"a user's own file")
  (folders["bad_metrics"] / "metrics.json").write_text("{")
  # A user's pool of class folders too small to split (3 images a class).
  for c, cls in enumerate(("benign", "malignant")):
    (root / "pool" / cls).mkdir(parents=True)
    for i in range(3):
      keras.utils.save_img(root / "pool" / cls / f"{i}.png", np.random.default_rng(
          [c, i]).uniform(0, 255, (40, 40, 3)))
  return {"data": small_data_dir, "tmp": str(root), "image": str(image),
          **{k: str(v) for k, v in folders.items()}}


TRAIN = ["ctdist.train", "--dataset=tfds_ctscan/kaggle", "--data_dir={data}",
         "--model_dir={tmp}/new", "--weights=none", "--image_size=32", "--batch_size=4"]
NEW = ("{tmp}/new",)
CASES = {
    "train_steps_per_loop_0": Case([*TRAIN, "--steps_per_loop=0"],
                                   "--steps_per_loop=0; use 1 or more", NEW),
    "train_calibrated_on_the_eval_split": Case(
        [*TRAIN, "--calibrate", "--eval_split=valid"],
        "--calibrate fits the temperature on valid and --eval_split=valid", NEW),
    "train_negative_log_every": Case([*TRAIN, "--log_every_steps=-1"],
                                     "--log_every_steps=-1; use 0 (off) or more", NEW),
    "train_image_size_16": Case([*TRAIN, "--image_size=16"],
                                "--image_size=16: ResNet50 takes images of 32 pixels", NEW),
    "train_batch_size_0": Case([*TRAIN, "--batch_size=0"], "--batch_size=0; use 1", NEW),
    "train_bogus_eval_split": Case([*TRAIN, "--eval_split=bogus"],
                                   "--eval_split=bogus: tfds_ctscan/kaggle/", NEW),
    "train_unknown_config": Case([*TRAIN, "--dataset=tfds_ctscan/bogus"],
                                 "--dataset=tfds_ctscan/bogus: not built in {data} (the configs "
                                 "tfds_ctscan/kaggle, tfds_ctscan/synthetic come with", NEW),
    "train_unknown_dataset": Case([*TRAIN, "--dataset=nosuch"],
                                  "no dataset 'nosuch' is registered", NEW),
    "train_not_built": Case([*TRAIN, "--data_dir={tmp}/empty"],
                            "is not built in {tmp}/empty", NEW),
    "train_corrupt_options_on_resume": Case(
        [*TRAIN, "--model_dir={resume}"], "{resume}/options.json", ("{resume}/flags.txt",)),
    "evaluate_no_run": Case(["ctdist.evaluate"], "name the trained run: --model_dir=DIR"),
    "evaluate_corrupt_model": Case(["ctdist.evaluate", "--model_dir={corrupt}"],
                                   "{corrupt}/model.keras: not a model ctdist can load",
                                   ("{corrupt}/metrics_test.json",)),
    "evaluate_model_with_code": Case(["ctdist.evaluate", "--model_dir={code}"],
                                     "{code}/model.keras: not a model ctdist can load",
                                     ("{code}/metrics_test.json",)),
    "evaluate_foreign_model": Case(["ctdist.evaluate", "--model_dir={foreign}"],
                                   "{foreign}/model.keras: not a ctdist model"),
    "evaluate_bogus_split": Case(["ctdist.evaluate", "--model_dir={good}", "--split=bogus"],
                                 "--split=bogus: tfds_ctscan/kaggle/",
                                 ("{good}/metrics_bogus.json",)),
    "predict_corrupt_model": Case(["ctdist.predict", "--model_dir={corrupt}", "{image}"],
                                  "{corrupt}/model.keras: not a model ctdist can load"),
    "predict_model_with_code": Case(["ctdist.predict", "--model_dir={code}", "{image}"],
                                    "{code}/model.keras: not a model ctdist can load"),
    "explain_model_with_code": Case(["ctdist.explain", "--model_dir={code}", "{image}",
                                     "--out={tmp}/explained"],
                                    "{code}/model.keras: not a model ctdist can load",
                                    ("{tmp}/explained",)),
    "explain_unknown_class": Case(["ctdist.explain", "--model_dir={good}", "{image}",
                                   "--class=bogus", "--out={tmp}/explained"],
                                  "--class='bogus'; expected one of", ("{tmp}/explained",)),
    "calibrate_model_with_code": Case(["ctdist.calibrate", "--model_dir={code}"],
                                      "{code}/model.keras: not a model ctdist can load",
                                      ("{code}/calibration.json",)),
    "calibrate_bogus_fit_split": Case(["ctdist.calibrate", "--model_dir={good}",
                                       "--fit_split=bogus"], "--fit_split=bogus",
                                      ("{good}/calibration.json",)),
    "calibrate_on_the_scored_split": Case(["ctdist.calibrate", "--model_dir={good}",
                                           "--fit_split=valid", "--split=valid"],
                                          "--fit_split=valid and --split=valid",
                                          ("{good}/calibration.json",)),
    "report_unfinished_run": Case(["ctdist.report", "--model_dir={good}"],
                                  "{good}/metrics.json not found", ("{good}/report.html",)),
    "report_corrupt_metrics": Case(["ctdist.report", "--model_dir={bad_metrics}"],
                                   "{bad_metrics}/metrics.json is not valid JSON",
                                   ("{bad_metrics}/report.html",)),
    "compare_corrupt_predictions": Case(
        ["ctdist.compare", "{tmp}/predictions", "{tmp}/predictions"],
        "predictions_test.json is not a ctdist predictions file"),
    "export_run_without_model": Case(["ctdist.export", "--model_dir={tmp}/empty"],
                                     "{tmp}/empty/model.keras not found",
                                     ("{tmp}/empty/litert", "{tmp}/empty/saved_model")),
    "export_unknown_format": Case(["ctdist.export", "--model_dir={good}", "--format=onnx"],
                                  "--format=onnx: value should be one of <saved_model|litert>",
                                  ("{good}/onnx", "{good}/litert")),
    "export_unknown_quantization": Case(
        ["ctdist.export", "--model_dir={good}", "--quantization=int4"],
        "value should be one of <float32|float16|dynamic_range>", ("{good}/litert",)),
    "export_litert_bogus_split": Case(["ctdist.export", "--model_dir={good}", "--split=bogus"],
                                      "--split=bogus: tfds_ctscan/kaggle/", ("{good}/litert",)),
    "explain_unknown_method": Case(["ctdist.explain", "--model_dir={good}", "{image}",
                                    "--method=bogus", "--out={tmp}/explained"],
                                   "value should be one of <auto|gradcam|occlusion>",
                                   ("{tmp}/explained",)),
    "cv_one_fold": Case(["ctdist.cv", "--folds=1", *TRAIN[1:]], "--folds=1", NEW),
    "cv_aggregate_nothing": Case(["ctdist.cv", "aggregate", "{tmp}/empty"], "{tmp}/empty"),
    "bench_not_built": Case(["ctdist.bench", "step", "--dataset=tfds_ctscan/kaggle",
                             "--data_dir={tmp}/empty", "--image_size=32", "--steps=1"],
                            "is not built in {tmp}/empty"),
    "audit_corrupt_zip": Case(["tfds_ctscan.audit", "{tmp}/broken.zip"],
                              "{tmp}/broken.zip: not a readable zip"),
    "audit_no_folder": Case(["tfds_ctscan.audit", "{tmp}/nowhere"], "{tmp}/nowhere"),
    "audit_folder_of_one_class": Case(["tfds_ctscan.audit", "--layout=folder",
                                       "{tmp}/user_data"],
                                      "{tmp}/user_data holds 1 class folder(s) ['Data']"),
    "audit_window_of_no_width": Case(["tfds_ctscan.audit", "--layout=folder",
                                      "--window_width=0", "{tmp}/pool"],
                                     "--window_width=0.0: a window's width must be above 0"),
    "audit_pool_too_small": Case(["tfds_ctscan.audit", "--layout=folder", "{tmp}/pool"],
                                 "class 'benign' has 3 distinct images"),
    "train_own_pool_too_small": Case(
        ["ctdist.train", "--dataset=tfds_ctscan/mine", "--data_dir={tmp}/pool_data",
         "--manual_dir={tmp}/pool", *TRAIN[3:]],
        "class 'benign' has 3 distinct images", (*NEW, "{tmp}/pool_data/tfds_ctscan/mine/1.0.0")),
    "synthetic_over_user_data": Case(["tfds_ctscan.synthetic", "{tmp}/user_data"],
                                     "{tmp}/user_data/Data exists and was not written by "
                                     "tfds_ctscan.synthetic"),
    "local_cluster_bad_flag": Case(["launch.local_cluster", "--workers=2", "--",
                                    *TRAIN[1:], "--steps_per_loop=0"],
                                   "--steps_per_loop=0; use 1 or more", NEW),
    "k8s_without_an_image": Case(["launch.k8s", "--volume_claim=runs", "--out={tmp}/tfjob.json"],
                                 "--image: name the container image", ("{tmp}/tfjob.json",)),
    "slurm_worker_outside_slurm": Case(["launch.slurm_worker", "--", *TRAIN[1:]],
                                       "not set: run this under srun inside a Slurm job",
                                       NEW),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_ends_in_one_error_line_and_status_2(name, places, commands):
  case = CASES[name]
  module, *args = [a.format(**places) for a in case.args]
  done = commands.run(module, args)
  err = done.stderr
  assert done.returncode == 2, err[-3000:]
  assert "Traceback" not in err and "Traceback" not in done.stdout, err[-3000:]
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, err[-3000:]
  assert case.says.format(**places) in errors[0]
  for path in case.absent:
    assert not os.path.exists(path.format(**places)), path
  if name == "train_corrupt_options_on_resume":  # left as it was found
    assert pathlib.Path(places["resume"], "options.json").read_text() == '{"model_dir": '
  if name == "synthetic_over_user_data":  # the user's file is untouched
    assert (pathlib.Path(places["tmp"]) / "user_data/Data/mine.png").read_bytes() == (
        b"a user's own file")


def test_the_table_covers_every_entry_point():
  commands = {p.stem for p in (ROOT / "ctdist").glob("*.py")} - {"__init__"}
  covered = {c.args[0] for c in CASES.values()}
  assert {f"ctdist.{c}" for c in commands} <= covered
  launchers = {f"launch.{p.stem}" for p in (ROOT / "launch").glob("*.py")} - {"launch.__init__"}
  assert {"tfds_ctscan.audit", "tfds_ctscan.synthetic", *launchers} <= covered
  assert json.dumps([c.args for c in CASES.values()])  # plain strings only


# A bug inside ctdist (here: a plain ValueError planted in the library a command calls)
# must keep its traceback: commands catch ctdist's own error types only.
BUGS = {
    "explain": ("ctdist.saliency.explainers", "explain_files",
                ["--model_dir={good}", "{image}", "--out={tmp}/bug"]),
    "compare": ("ctdist.scoring.predictions", "load", ["{tmp}/predictions"] * 2),
    "calibrate": ("ctdist.scoring.calibration", "calibrate", ["--model_dir={good}"]),
    "evaluate": ("ctdist.scoring.evaluation", "evaluate", ["--model_dir={good}"]),
    "report": ("ctdist.reporting.writer", "write", ["--model_dir={good}"]),
    "cv": ("ctdist.workflows.cross_validation", "run", ["--folds=2", *TRAIN[1:]]),
    "train": ("ctdist.workflows.training_run", "run", TRAIN[1:]),
}


@pytest.mark.parametrize("command", list(BUGS))
def test_a_bug_in_ctdist_still_shows_its_traceback(command, places, commands):
  module, function, args = BUGS[command]
  prelude = f"""
import importlib
def planted(*args, **kwargs):
  raise ValueError("planted bug")
setattr(importlib.import_module({module!r}), {function!r}, planted)
"""
  done = commands.run(f"ctdist.{command}", [a.format(**places) for a in args],
                      prelude=prelude)
  assert done.returncode == 1, done.stderr[-3000:]
  assert "Traceback" in done.stderr and "ValueError: planted bug" in done.stderr
  assert not [line for line in done.stderr.splitlines() if line.startswith("error: ")]
