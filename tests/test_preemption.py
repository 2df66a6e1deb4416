"""A SIGTERM or SIGINT is a save, not a loss (one process: one device, MirroredStrategy):
the training stops after the step in flight with a checkpoint at that step, one line
saying where, status 128 + the signal; the same command then finishes the run, and with
--deterministic it is the same run: on one device the weights, losses and metrics of a
run never stopped; over two mirrored devices its weights and training losses (the
validation losses to 1e-2). (Two workers: tests/test_launch.py.)"""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from ctdist.training import preemption
import checkpoints
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]

# ---- a resumed run is the same run -------------------------------------------------------
# Deterministic, both phases, the cosine schedule with warm-up, weight decay, label
# smoothing, clipping; a checkpoint after every step (a SIGKILL loses one step at most).
# The fine-tune trains the base's last convolution and BatchNorm (moving statistics too).
# Its rate is too high for this data on purpose: its validation loss climbs (measured
# 1.55 after epoch 1, 2.66 after epoch 2; ln 4 = 1.39), so with --patience=1 early stopping
# ends the phase after 2 of its 5 epochs and the final weights are epoch 1's, restored
# from best/. 4 steps an epoch: head steps 1-4, fine-tune epoch 1 steps 5-8, epoch 2 9-12.
SAME_RUN = ["--dataset=tfds_ctscan/kaggle", "--weights=none", "--nofreeze_batchnorm",
            "--image_size=32", "--batch_size=4", "--head_epochs=1", "--finetune_layers=5",
            "--finetune_epochs=5", "--finetune_lr=1e-2", "--patience=1", "--seed=7",
            "--lr_schedule=cosine", "--warmup_epochs=0.5", "--weight_decay=0.05",
            "--label_smoothing=0.1", "--clip_norm=1", "--deterministic",
            "--checkpoint_every_steps=1", "--log_every_steps=1", "--noexport", "--noreport",
            "--nobaseline"]
CHECKSUM = re.compile(r"final weights checksum (\w+)")


def _cmd(model_dir, data_dir):
  return [sys.executable, "-m", "ctdist.train", f"--model_dir={model_dir}",
          f"--data_dir={data_dir}", *SAME_RUN]


def _env(**changes):
  return dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", **changes)


def _same_run(cmd, fault=None):
  """`cmd` with the fault asked for; a `python -m` command forked (tests/forked.py): a
  process of its own, as the fault's signal needs, without a TensorFlow import."""
  env = _env(**({"CTDIST_FAULT": fault} if fault else {}))
  if cmd[:2] == [sys.executable, "-m"]:
    return forked.run(*cmd[2:], env=env, timeout=900)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _without_timing(model_dir):
  return [{k: v for k, v in h.items() if k != "images_per_sec"}
          for h in json.loads((model_dir / "history.json").read_text())]


def _last_line(done):
  return done.stderr.strip().splitlines()[-1]


def _stopped_line(name, where, model_dir):
  return (f"warning: stopped by {name} at {where}; checkpoint written in "
          f"{model_dir / 'checkpoints'}: run the same command again to resume")


def _assert_same_run(reference, ref_dir, done, model_dir):
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  assert CHECKSUM.findall(done.stderr) == CHECKSUM.findall(reference.stderr)
  assert _without_timing(model_dir) == _without_timing(ref_dir)


@pytest.mark.slow
def test_stopped_by_signals_at_several_steps_a_run_ends_as_the_uninterrupted_one(
    tmp_path, small_data_dir, spawn):
  ref_dir = tmp_path / "uninterrupted"
  reference = _same_run(_cmd(ref_dir, small_data_dir))
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert [(h["phase"], h["epoch"]) for h in _without_timing(ref_dir)] == [
      ("head", 1), ("finetune", 1), ("finetune", 2)]
  assert "finetune: early stop after 2 epochs" in reference.stderr
  # The schedule by hand: warm-up round(0.5 * 4) = 2 steps, then cosine over the phase's
  # other 18: after fine-tune epoch 1 (step 4) the rate is 1e-2 * (1 + cos(pi 2/18)) / 2.
  assert _without_timing(ref_dir)[1]["lr"] == pytest.approx(
      1e-2 * (1 + math.cos(math.pi / 9)) / 2, rel=1e-5)
  # The interrupted run is the reference's flags.txt alone (it must reproduce the run).
  run = tmp_path / "interrupted"
  cmd = [sys.executable, "-m", "ctdist.train", f"--flagfile={ref_dir / 'flags.txt'}",
         f"--model_dir={run}"]
  # 1. SIGTERM after head step 3: saved at that step.
  done = _same_run(cmd, "after_step:3:SIGTERM")
  assert done.returncode == 143, done.stderr[-3000:]
  assert "Traceback" not in done.stderr
  assert _last_line(done) == _stopped_line("SIGTERM", "head epoch 1, step 3 of 4", run)
  assert checkpoints.position(run) == (0, 0, 3) and not (run / "model.keras").exists()
  # 2. SIGKILL right after the fine-tune's first step, before its checkpoint: that step
  # is lost; the run goes on from the phase boundary.
  done = _same_run(cmd, "after_step:2:SIGKILL")
  assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
  assert "resumed from" in done.stderr and checkpoints.position(run) == (1, 0, 0)
  # 3. SIGINT inside the fine-tune's first epoch (its optimizer state in the checkpoint).
  done = _same_run(cmd, "after_step:2:SIGINT")
  assert done.returncode == 130, done.stderr[-3000:]
  assert _last_line(done) == _stopped_line("SIGINT", "finetune epoch 1, step 2 of 4", run)
  assert checkpoints.position(run) == (1, 0, 2)
  # 4. A SIGTERM from outside while the resumed process compiles its first steps: it
  # stops where its line says, and the checkpoint holds that position.
  p = spawn(cmd, cwd=ROOT, env=_env())
  p.wait_for(r"resumed from", timeout=600)
  os.kill(p.popen.pid, signal.SIGTERM)
  assert p.wait(timeout=300) == 143, p.output[-3000:]
  stop = re.search(r"stopped by SIGTERM at finetune epoch (\d), step (\d) of 4", p.output)
  assert stop, p.output[-3000:]
  assert checkpoints.position(run) == (1, int(stop.group(1)) - 1, int(stop.group(2)))
  # 5. The same command finishes: the weights, every epoch's losses, rates and early stop,
  # and the test metrics are the uninterrupted run's.
  _assert_same_run(reference, ref_dir, _same_run(cmd), run)
  assert json.loads((run / "metrics.json").read_text())["test"] == json.loads(
      (ref_dir / "metrics.json").read_text())["test"]


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


# MirroredStrategy over the two logical CPUs tests/two_cpus.py makes: stopped inside the
# fine-tune's first epoch (its optimizer state in the checkpoint), resumed in a new process.
# The fine-tune trains the base's last convolution and BatchNorm (--finetune_layers=5 with
# --nofreeze_batchnorm): that BatchNorm's moving statistics are what the replicas must
# average (without it the resumed run's validation loss differs in the 7th digit).
MIRRORED_RUN = ["--dataset=tfds_ctscan/kaggle", "--strategy=mirrored", "--weights=none",
                "--nofreeze_batchnorm", "--image_size=32", "--batch_size=4", "--head_epochs=1",
                "--finetune_layers=5", "--finetune_epochs=2", "--finetune_lr=1e-2", "--seed=7",
                "--lr_schedule=cosine", "--warmup_epochs=0.5", "--weight_decay=0.05",
                "--label_smoothing=0.1", "--clip_norm=1", "--deterministic", "--noexport",
                "--noreport", "--nobaseline"]


def _two_cpus(model_dir, data_dir, fault=None):
  cmd = [sys.executable, str(ROOT / "tests" / "two_cpus.py"), f"--model_dir={model_dir}",
         f"--data_dir={data_dir}", *MIRRORED_RUN]
  return _same_run(cmd, fault)


@pytest.mark.slow
def test_mirrored_over_two_devices_stopped_by_sigterm_resumes_to_the_same_weights(
    tmp_path, small_data_dir):
  ref_dir, run = tmp_path / "uninterrupted", tmp_path / "interrupted"
  reference = _two_cpus(ref_dir, small_data_dir)
  assert reference.returncode == 0, reference.stderr[-3000:]
  assert "strategy MirroredStrategy: 2 replica(s)" in reference.stderr
  # SIGTERM after the 6th call of steps: fine-tune epoch 1, step 2 of 4.
  done = _two_cpus(run, small_data_dir, "after_step:6:SIGTERM")
  assert done.returncode == 143, done.stderr[-3000:]
  assert _last_line(done) == _stopped_line("SIGTERM", "finetune epoch 1, step 2 of 4", run)
  assert checkpoints.position(run) == (1, 0, 2)
  done = _two_cpus(run, small_data_dir)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "resumed from" in done.stderr
  # The final weights (every weight's bytes, BatchNorm statistics included) and every
  # epoch's training accuracy, rate, validation loss and accuracy are the uninterrupted
  # run's. (Validation once differed from the 4th digit: each replica had kept its own
  # BatchNorm statistics, and a resumed one started from the first replica's; they are
  # averaged over the replicas after every step now, tests/test_one_step.py.) The mean
  # training loss of the epoch stopped mid-way agrees to float rounding: its running sum
  # is one ON_READ variable per replica, checkpointed as their total and restored split
  # in halves, so the resumed sums round otherwise (1.4074070 vs 1.4074069 measured on
  # one CPU, equal on another).
  assert CHECKSUM.findall(done.stderr) == CHECKSUM.findall(reference.stderr)
  history, expected = _without_timing(run), _without_timing(ref_dir)
  same = lambda h: {k: v for k, v in h.items() if k != "loss"}
  assert [same(h) for h in history] == [same(h) for h in expected]
  assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in expected],
                                                       rel=1e-6)
