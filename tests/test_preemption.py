"""A SIGTERM or SIGINT is a save, not a loss (one process: one device, MirroredStrategy):
the training stops after the step in flight with a checkpoint at that step, one line
saying where, status 128 + the signal; the same command then finishes the run."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from ctdist.training import preemption

ROOT = pathlib.Path(__file__).resolve().parents[1]
# 16 training images / batch 4: 4 steps an epoch; one head epoch, then one fine-tune epoch.
TRAIN = ["--dataset=tfds_ctscan/kaggle", "--weights=none", "--image_size=32", "--batch_size=4",
         "--head_epochs=1", "--finetune_epochs=1", "--finetune_layers=5", "--log_every_steps=1",
         "--noexport", "--noreport"]


def _cmd(model_dir, data_dir):
  return [sys.executable, "-m", "ctdist.train", f"--model_dir={model_dir}",
          f"--data_dir={data_dir}", *TRAIN]


def _env(**changes):
  return dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", **changes)


def _position(model_dir) -> tuple[int, int, int]:
  """(phase, epoch, step) of the newest checkpoint."""
  latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return tuple(int(tf.train.load_variable(latest, f"position/{k}/.ATTRIBUTES/VARIABLE_VALUE"))
               for k in ("phase", "epoch", "step"))


def _rerun_completes(model_dir, data_dir):
  done = subprocess.run(_cmd(model_dir, data_dir), cwd=ROOT, env=_env(), capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1), ("finetune", 1)]
  assert (model_dir / "model.keras").exists() and (model_dir / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arrival, name, where, position", [
    (3, "SIGTERM", "head epoch 1, step 3 of 4", (0, 0, 3)),      # inside the first phase
    (6, "SIGINT", "finetune epoch 1, step 2 of 4", (1, 0, 2)),   # the second (4 + 2 steps)
])
def test_a_signal_at_a_step_saves_that_step_and_the_same_command_finishes(
    tmp_path, small_data_dir, arrival, name, where, position):
  # The process sends itself the real signal right after its `arrival`-th call of steps.
  run = tmp_path / "run"
  done = subprocess.run(_cmd(run, small_data_dir), cwd=ROOT, capture_output=True, text=True,
                        timeout=900, env=_env(CTDIST_FAULT=f"after_step:{arrival}:{name}"))
  signum = signal.Signals[name]
  assert done.returncode == 128 + signum, done.stderr[-3000:]
  assert "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1] == (
      f"warning: stopped by {name} at {where}; checkpoint written in {run / 'checkpoints'}: "
      "run the same command again to resume")
  assert _position(run) == position
  assert not (run / "model.keras").exists()
  _rerun_completes(run, small_data_dir)


@pytest.mark.slow
def test_sigterm_from_outside_stops_at_the_step_it_says_and_the_run_resumes(
    tmp_path, small_data_dir, spawn):
  run = tmp_path / "run"
  p = spawn(_cmd(run, small_data_dir), cwd=ROOT, env=_env())
  p.wait_for(r"head epoch 1/1 step 1/4", timeout=600)
  os.kill(p.popen.pid, signal.SIGTERM)
  assert p.wait(timeout=300) == 143, p.output[-3000:]
  stop = re.search(r"stopped by SIGTERM at (?:(\w+) epoch 1, step (\d) of 4|the end of (\w+) "
                   r"epoch 1); checkpoint written", p.output)
  assert stop, p.output[-3000:]
  phases = {"head": 0, "finetune": 1}
  if stop.group(1):  # inside an epoch: the checkpoint holds that step
    assert _position(run) == (phases[stop.group(1)], 0, int(stop.group(2)))
  else:  # at an epoch's end: the checkpoint holds the epoch done
    assert _position(run) == (phases[stop.group(3)], 1, 0)
  _rerun_completes(run, small_data_dir)


def test_the_watch_notes_a_signal_and_hands_a_second_one_to_the_handler_before_it():
  received = []
  before = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    watch = preemption.Watch().install()
    os.kill(os.getpid(), signal.SIGTERM)
    assert watch.requested and watch.signum == signal.SIGTERM and received == []
    os.kill(os.getpid(), signal.SIGTERM)  # the second: what would have happened without it
    assert received == [signal.SIGTERM]
    watch.uninstall()
    assert signal.getsignal(signal.SIGINT) is not watch._note  # pylint: disable=protected-access
  finally:
    signal.signal(signal.SIGTERM, before)
  stop = preemption.Stopped(signal.SIGTERM, "head epoch 1, step 2 of 4", "/run/checkpoints")
  assert stop.exit_status == 143 and preemption.Stopped(signal.SIGINT, "", "").exit_status == 130
