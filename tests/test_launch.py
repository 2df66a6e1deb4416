"""Multi-worker clusters on localhost, kill-and-resume, and the Colab TPU notebook."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "launch" / "colab_tpu.ipynb"
TRAIN_FLAGS = ["--dataset=tfds_ctscan/kaggle", "--weights=none", "--image_size=32",
               "--batch_size=4", "--finetune_layers=5", "--seed=1"]


def _env(tmp_path):
  tmp = tmp_path / "worker_tmp"
  tmp.mkdir(exist_ok=True)
  return dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT),
              TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _cluster(tmp_path, data_dir, model_dir, extra=(), timeout=900):
  cmd = [sys.executable, "-m", "launch.local_cluster", "--workers=2", "--",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TRAIN_FLAGS, *extra]
  return subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path, small_data_dir):
  model_dir = tmp_path / "run"
  proc = _cluster(tmp_path, small_data_dir, model_dir,
                  ["--head_epochs=1", "--finetune_epochs=1"])
  out, _ = proc.communicate(timeout=900)
  assert proc.returncode == 0, out[-5000:]
  checksums = dict(re.findall(r"\[(worker-\d)\].*(?:worker-\d): final weights checksum (\w+)", out))
  assert set(checksums) == {"worker-0", "worker-1"}, out[-3000:]
  assert checksums["worker-0"] == checksums["worker-1"]
  shards = re.findall(r"\[(worker-\d)\].*train input shard (\d) of 2: (\d+) examples, "
                      r"fingerprint (\w+)", out)
  by_worker = {w: (s, int(n), f) for w, s, n, f in shards}
  assert by_worker["worker-0"][0] != by_worker["worker-1"][0]
  assert by_worker["worker-0"][2] != by_worker["worker-1"][2]
  assert by_worker["worker-0"][1] + by_worker["worker-1"][1] == 16
  # The chief wrote everything; the other worker left nothing behind.
  for name in ("model.keras", "saved_model", "checkpoints", "history.json", "metrics.json",
               "flags.txt", "tensorboard"):
    assert (model_dir / name).exists(), name
  assert list((tmp_path / "worker_tmp").iterdir()) == []
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [("head", 1), ("finetune", 1)]
  assert json.loads((model_dir / "metrics.json").read_text())["run"]["workers"] == 2


def _wait_for_checkpoint(model_dir: pathlib.Path, proc, timeout=600):
  state = model_dir / "checkpoints" / "checkpoint"
  deadline = time.time() + timeout
  while time.time() < deadline:
    if state.exists():
      return
    if proc.poll() is not None:
      raise AssertionError(f"exited early with {proc.returncode}: {proc.stdout.read()[-3000:]}")
    time.sleep(0.5)
  raise AssertionError("no checkpoint written in time")


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_without_losing_or_repeating_epochs(tmp_path, small_data_dir):
  model_dir = tmp_path / "run"
  cmd = [sys.executable, "-m", "ctdist.train", "--strategy=cpu", f"--data_dir={small_data_dir}",
         f"--model_dir={model_dir}", *TRAIN_FLAGS, "--head_epochs=3", "--finetune_epochs=1",
         "--patience=10", "--checkpoint_every_steps=2", "--noexport"]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  _wait_for_checkpoint(model_dir, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rerun = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                         timeout=900)
  assert rerun.returncode == 0, rerun.stderr[-5000:]
  assert "resumed from" in rerun.stderr
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [
      ("head", 1), ("head", 2), ("head", 3), ("finetune", 1)]


@pytest.mark.slow
def test_killed_worker_stops_the_cluster_and_a_restart_resumes(tmp_path, small_data_dir):
  model_dir = tmp_path / "run"
  extra = ["--head_epochs=2", "--finetune_epochs=1", "--patience=10", "--noexport"]
  proc = _cluster(tmp_path, small_data_dir, model_dir, extra)
  pids = {}
  lines = []
  while len(pids) < 2:
    line = proc.stdout.readline()
    lines.append(line)
    m = re.match(r"local_cluster: (worker-\d) pid (\d+)", line)
    if m:
      pids[m.group(1)] = int(m.group(2))
  _wait_for_checkpoint(model_dir, proc)
  os.kill(pids["worker-1"], signal.SIGKILL)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "worker-1" in out and "exited with code -9" in out
  restart = _cluster(tmp_path, small_data_dir, model_dir, extra)
  out, _ = restart.communicate(timeout=900)
  assert restart.returncode == 0, out[-5000:]
  assert "resumed from" in out
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [
      ("head", 1), ("head", 2), ("finetune", 1)]


def _cells(kind):
  nb = json.loads(NOTEBOOK.read_text())
  return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def _help_flags(module):
  out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300).stdout
  return set(re.findall(r"--(?:\[no\])?([a-z_0-9]+)", out))


def test_notebook_is_valid_and_uses_only_existing_flags():
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["nbformat"] == 4 and nb["metadata"]["accelerator"] == "TPU"
  for c in nb["cells"]:
    assert c["cell_type"] in ("markdown", "code") and isinstance(c["source"], list)
  code = _cells("code")
  text = "\n".join(code)
  assert "tensorflow-tpu" in text and "--strategy=tpu" in text
  assert "files.upload()" in code[-1] and "predict" in code[-1]
  for module in ("ctdist.train", "ctdist.evaluate", "tfds_ctscan.audit"):
    known = _help_flags(module)
    assert known, module
    for cell in code:
      for line in cell.replace("\\\n", " ").splitlines():
        if f"-m {module}" in line:
          used = set(re.findall(r"\s--([a-z_0-9]+)", line))
          assert used <= known, (module, used - known)


def test_notebook_python_cells_compile():
  for i, cell in enumerate(_cells("code")):
    lines, skip = [], False
    for line in cell.splitlines():
      is_shell = line.lstrip().startswith(("!", "%")) or skip
      skip = is_shell and line.rstrip().endswith("\\")
      lines.append("pass" if is_shell else line)
    compile("\n".join(lines), f"cell {i}", "exec")
