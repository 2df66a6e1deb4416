"""Multi-worker clusters on localhost, kill-and-resume, and the Colab TPU notebook."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

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


def _cluster(spawn, tmp_path, data_dir, model_dir, extra=()):
  cmd = [sys.executable, "-m", "launch.local_cluster", "--workers=2", "--",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TRAIN_FLAGS, *extra]
  return spawn(cmd, cwd=ROOT, env=_env(tmp_path))


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path, small_data_dir, spawn):
  model_dir = tmp_path / "run"
  proc = _cluster(spawn, tmp_path, small_data_dir, model_dir,
                  ["--head_epochs=1", "--finetune_epochs=1"])
  code = proc.wait(900)
  out = proc.output
  assert code == 0, out[-5000:]
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


def _checkpointed(model_dir: pathlib.Path):
  return lambda: (model_dir / "checkpoints" / "checkpoint").exists()


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_without_losing_or_repeating_epochs(tmp_path, small_data_dir,
                                                                      spawn):
  model_dir = tmp_path / "run"
  cmd = [sys.executable, "-m", "ctdist.train", "--strategy=cpu", f"--data_dir={small_data_dir}",
         f"--model_dir={model_dir}", *TRAIN_FLAGS, "--head_epochs=3", "--finetune_epochs=1",
         "--patience=10", "--checkpoint_every_steps=2", "--noexport"]
  proc = spawn(cmd, cwd=ROOT, env=_env(tmp_path))
  proc.wait_until(_checkpointed(model_dir), 600, "checkpoint")
  proc.kill()  # SIGKILL: no clean-up of any kind
  rerun = spawn(cmd, cwd=ROOT, env=_env(tmp_path))
  assert rerun.wait(900) == 0, rerun.output[-5000:]
  assert "resumed from" in rerun.output
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [
      ("head", 1), ("head", 2), ("head", 3), ("finetune", 1)]


@pytest.mark.slow
def test_killed_worker_stops_the_cluster_and_a_restart_resumes(tmp_path, small_data_dir,
                                                               spawn):
  model_dir = tmp_path / "run"
  extra = ["--head_epochs=2", "--finetune_epochs=1", "--patience=10", "--noexport"]
  proc = _cluster(spawn, tmp_path, small_data_dir, model_dir, extra)
  worker_1 = int(proc.wait_for(r"local_cluster: worker-1 pid (\d+)", 120).group(1))
  proc.wait_until(_checkpointed(model_dir), 600, "checkpoint")
  os.kill(worker_1, signal.SIGKILL)
  assert proc.wait(300) != 0
  assert "worker-1" in proc.output and "exited with code -9" in proc.output
  restart = _cluster(spawn, tmp_path, small_data_dir, model_dir, extra)
  assert restart.wait(900) == 0, restart.output[-5000:]
  assert "resumed from" in restart.output
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


def _fake_python(tmp_path, body: str) -> str:
  """An executable that stands in for `python -m ctdist.train` in launch.local_cluster."""
  script = tmp_path / "fake_python"
  script.write_text("#!/bin/sh\necho start >> \"$STARTS\"\n" + body)
  script.chmod(0o755)
  return str(script)


def test_cluster_retries_on_new_ports_when_a_port_was_taken(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  marker = tmp_path / "taken_once"
  python = _fake_python(tmp_path, f"""
if [ ! -e {marker} ]; then touch {marker}
  echo "E0000 server.cc] Failed to add :12345: Address already in use"; exit 1; fi
exit 0
""")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05) == 0
  assert len((tmp_path / "starts").read_text().split()) == 4  # two starts of two workers
  assert "starting again on new ports (attempt 2 of 3)" in capsys.readouterr().err


def test_cluster_does_not_retry_other_failures(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  python = _fake_python(tmp_path, "echo 'ValueError: bad flag'; exit 3\n")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05) == 1
  assert len((tmp_path / "starts").read_text().split()) == 2  # one start only
  err = capsys.readouterr().err
  assert "exited with code 3" in err and "re-run the same command to resume" in err
