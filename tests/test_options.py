"""One shape for a run's options: flags, options.json and flags.txt all rebuild the same
Options tree."""

import dataclasses
import json
import pathlib
import re
import subprocess
import sys

from absl import flags
import pytest
import tensorflow as tf

from ctdist.config import bench as bench_config
from ctdist.config import commands as commands_config
from ctdist.config import flagtree
from ctdist.config import shared
from ctdist.config import training as training_config
from ctdist.store import options_file
from ctdist.training import augment

# The command line as released (README, launch scripts, users' flag files): every name
# must still exist, and no other.
TRAIN_FLAGS = {
    "strategy", "tpu", "precision", "dataset", "data_dir", "manual_dir", "model_dir",
    "weights", "image_size", "batch_size", "head_epochs", "head_lr", "finetune_epochs",
    "finetune_lr", "finetune_layers", "freeze_batchnorm", "patience", "warmup_epochs",
    "lr_schedule", "weight_decay", "label_smoothing", "clip_norm", "class_weight",
    "steps_per_loop", "log_every_steps", "checkpoint_every_steps", "seed", "deterministic",
    "jit_compile", "augment_rotation", "augment_zoom", "augment_shift",
    "augment_brightness", "augment_flip", "eval_split", "export",
    # added by issue 11
    "cache", "cache_dir",
    # added by issue 12
    "calibrate", "subset_file",
    # added by issue 13
    "report",
    # added by issue 26
    "baseline"}
BENCH_FLAGS = {
    "json", "folder", "data_dir", "dataset", "image_size", "batch_size", "strategy",
    "precision", "phases", "finetune_layers", "steps", "warmup", "repeats",
    "steps_per_loop", "epochs", "replicas", "jit_compile", "deterministic", "tmp"}

COMMAND_OPTIONS = {
    "evaluate": commands_config.EvaluateOptions, "calibrate": commands_config.CalibrateOptions,
    "explain": commands_config.ExplainOptions, "predict": commands_config.PredictOptions,
    "report": commands_config.ReportOptions}


def _parse(cls, argv):
  fv = flags.FlagValues()
  flagtree.define_flags(cls, fv)
  fv(["prog", *argv])
  return fv


def test_the_flags_are_the_released_command_line():
  assert {name for name, *_ in flagtree.flag_fields(training_config.Options)} == TRAIN_FLAGS
  assert {name for name, *_ in flagtree.flag_fields(bench_config.BenchOptions)} == BENCH_FLAGS
  fv = _parse(training_config.Options, ["--model_dir=r"])
  assert set(fv) >= TRAIN_FLAGS


def test_each_flag_lands_in_the_field_of_its_name():
  fv = _parse(training_config.Options, [
      "--model_dir=run", "--augment_rotation=7", "--augment_zoom=0.11", "--augment_shift=0",
      "--augment_brightness=0.33", "--noaugment_flip", "--head_epochs=3",
      "--finetune_lr=2e-6", "--lr_schedule=cosine", "--nofreeze_batchnorm",
      "--data_dir=/d", "--deterministic", "--seed=5"])
  opts = flagtree.from_flags(training_config.Options, fv)
  assert opts.augment == training_config.AugmentConfig(rotation=7.0, zoom=0.11, shift=0.0,
                                                       brightness=0.33, flip=False)
  assert opts.schedule == training_config.Schedule(head_epochs=3, finetune_lr=2e-6,
                                                   lr_schedule="cosine", freeze_batchnorm=False)
  assert (opts.model_dir, opts.data.data_dir, opts.deterministic, opts.seed) == (
      "run", "/d", True, 5)
  # Untouched flags give the dataclass defaults: the flags are the tree, not a copy.
  assert dataclasses.replace(opts, augment=training_config.AugmentConfig(),
                             schedule=training_config.Schedule(), model_dir="x",
                             data=dataclasses.replace(opts.data, data_dir=None),
                             deterministic=False,
                             seed=42) == training_config.Options(model_dir="x")
  assert augment.describe(opts.augment).startswith(
      "rotation +-7 deg, zoom +-0.11, brightness +-0.33; inside the replica step")


def test_bench_flags_fill_bench_options():
  fv = _parse(bench_config.BenchOptions, ["--phases=head", "--steps=4", "--jit_compile"])
  opts = flagtree.from_flags(bench_config.BenchOptions, fv)
  assert (opts.phases, opts.steps, opts.jit_compile, opts.warmup) == (("head",), 4, True, 3)
  with pytest.raises(ValueError, match=r"phases \['tail'\] unknown; use some of head,finetune"):
    bench_config.BenchOptions(phases=("head", "tail"))


def test_options_json_and_flags_txt_rebuild_the_options(tmp_path):
  opts = training_config.from_flat(model_dir=str(tmp_path), data_dir="/data", head_epochs=2,
                           head_lr=3e-4, augment_zoom=0.0, augment_flip=False,
                           precision="mixed_bfloat16", seed=7)
  options_file.save(opts, str(tmp_path))
  assert options_file.load(str(tmp_path)) == opts
  saved = json.loads((tmp_path / "options.json").read_text())
  assert saved["schedule"]["head_lr"] == 3e-4 and saved["augment"]["flip"] is False
  # flags.txt, read by absl's own --flagfile: the same tree.
  fv = _parse(training_config.Options, [f"--flagfile={tmp_path / 'flags.txt'}"])
  assert flagtree.from_flags(training_config.Options, fv) == opts
  assert "--noaugment_flip\n" in (tmp_path / "flags.txt").read_text()


def test_bad_options_name_the_value():
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['head_epoch'\]"):
    training_config.from_flat(model_dir="r", head_epoch=2)
  with pytest.raises(ValueError, match=r"augmentation zoom=1.5 is out of range"):
    training_config.from_flat(model_dir="r", augment_zoom=1.5)
  with pytest.raises(ValueError, match="lr_schedule='step'"):
    training_config.from_flat(model_dir="r", lr_schedule="step")


def test_unreadable_options_json_names_the_file(tmp_path):
  with pytest.raises(options_file.NoOptionsError, match=r"options.json not found.*--dataset"):
    options_file.load(str(tmp_path))
  (tmp_path / "options.json").write_text(json.dumps({"model_dir": "r", "epochs": 3}))
  with pytest.raises(options_file.OptionsFileError,
                     match=r"options.json: unknown option\(s\) \['epochs'\]"):
    options_file.load(str(tmp_path))
  (tmp_path / "options.json").write_text("{not json")
  with pytest.raises(options_file.OptionsFileError, match="options.json"):
    options_file.load(str(tmp_path))


def test_a_field_without_help_has_no_flag():
  @dataclasses.dataclass(frozen=True)
  class Bad:
    n: int = 3
  with pytest.raises(TypeError, match="field 'n' has no help text"):
    flagtree.define_flags(Bad, flags.FlagValues())


def test_resuming_with_other_options_is_refused(tmp_path):
  opts = training_config.from_flat(model_dir=str(tmp_path), image_size=32, head_epochs=2)
  options_file.save(opts, str(tmp_path))
  # No checkpoint yet: a new start.
  options_file.check_resume(dataclasses.replace(opts, image_size=40))
  tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1)),
                             str(tmp_path / "checkpoints"), max_to_keep=1).save()
  options_file.check_resume(opts)  # the same run
  # Where and how it runs may change on resume.
  options_file.check_resume(training_config.from_flat(model_dir=str(tmp_path), image_size=32,
                                         head_epochs=2, strategy="mirrored",
                                         log_every_steps=5, cache="none"))
  with pytest.raises(options_file.ResumeError,
                     match=r"other options: --image_size=32 -> 40, --augment_flip=True -> "
                           r"False; resume with its flags \(--flagfile=.*flags.txt\)"):
    options_file.check_resume(training_config.from_flat(model_dir=str(tmp_path), image_size=40,
                                           head_epochs=2, augment_flip=False))


def test_helpshort_lists_every_training_flag():
  done = subprocess.run([sys.executable, "-m", "ctdist.train", "--helpshort"],
                        cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True,
                        text=True, timeout=300)
  listed = set(re.findall(r"^  --(?:\[no\])?([a-z_0-9]+):", done.stdout, re.M))
  assert listed == TRAIN_FLAGS, done.stdout[-2000:]


def test_an_options_json_of_format_1_still_loads(tmp_path):
  # Written before the shared DataSource group: dataset and data_dir at the top, no format.
  opts = training_config.from_flat(model_dir=str(tmp_path), dataset="tfds_ctscan/synthetic",
                                   data_dir="/data", head_epochs=2)
  values = json.loads(json.dumps(flagtree.to_dict(opts)))
  values.update(values.pop("data"))
  (tmp_path / "options.json").write_text(json.dumps(values))
  loaded = options_file.load(str(tmp_path))
  assert loaded == opts
  assert loaded.data.dataset == "tfds_ctscan/synthetic" and loaded.data.data_dir == "/data"


def test_an_options_json_of_a_newer_format_names_its_version(tmp_path):
  opts = training_config.from_flat(model_dir=str(tmp_path))
  options_file.save(opts, str(tmp_path))
  values = json.loads((tmp_path / "options.json").read_text())
  assert values["format"] == options_file.FORMAT
  (tmp_path / "options.json").write_text(json.dumps({**values, "format": 99}))
  with pytest.raises(options_file.OptionsFileError,
                     match=r"options.json: options format 99; this ctdist reads formats 1 "
                           r"to 2 .*upgrade ctdist"):
    options_file.load(str(tmp_path))


def test_a_run_is_named_once():
  assert shared.RunFolder(model_dir="runs/a").model_file == "runs/a/model.keras"
  assert shared.RunFolder(model_dir="runs/a").flag is None
  old = shared.RunFolder(model="runs/b/model.keras")
  assert (old.folder, old.model_file) == ("runs/b", "runs/b/model.keras")
  assert old.flag == "--model=runs/b/model.keras"
  with pytest.raises(shared.RunFolderError, match="name the trained run: --model_dir=DIR"):
    _ = shared.RunFolder().folder
  with pytest.raises(shared.RunFolderError, match="both name a run; give --model_dir alone"):
    shared.RunFolder(model_dir="runs/a", model="runs/b/model.keras").check()


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "explain", "predict", "report"])
def test_every_command_that_reads_a_run_names_it_with_model_dir(command):
  fv = flags.FlagValues()
  flagtree.define_flags(COMMAND_OPTIONS[command], fv)
  assert "model_dir" in fv and "model" in fv
  assert "Old spelling" in fv["model"].help and "--model_dir" in fv["model"].help
