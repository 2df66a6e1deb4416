"""The suite's one small training through the CLI, built once per session and shared by
pytest-xdist's workers (tests/once.py): test_cli's commands and test_report's pages read
it; a test that writes works on a copy."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import forked
import once

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Run in the fork before `ctdist.train --strategy=auto`: a machine whose TPU does not
# answer. The run must say so in its files (metrics.json, report.html), not only in a log
# line.
UNREACHABLE_TPU = """
from ctdist.training import strategy


def unreachable(tpu):
  raise strategy.StrategyError(f"no TPU reachable at tpu={tpu!r} (planted)")


strategy._tpu_present = lambda: True
strategy._tpu_strategy = unreachable
"""


def stopped_while_building(cmd: list[str], env: dict, held: pathlib.Path, log: pathlib.Path):
  """Runs `cmd` with the image `held` swapped for a FIFO: the build's read of it waits for
  this function, which sends the process a SIGTERM then, mid-build, and lets the read go
  on. Returns the exit status; the terminal goes to `log`; `held` is restored."""
  kept = held.read_bytes()
  held.unlink()
  os.mkfifo(held)
  with open(log, "w") as out:
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 300
    while True:  # a writer's non-blocking open fails until the build opens the file
      try:
        fifo = os.open(held, os.O_WRONLY | os.O_NONBLOCK)
        break
      except OSError:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the build never read the FIFO"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    os.set_blocking(fifo, True)
    os.write(fifo, kept)
    os.close(fifo)
    return process.wait(timeout=300)
  finally:
    process.kill()
    held.unlink()
    held.write_bytes(kept)


def run_dir(small_data_dir: str, tmp_path_factory) -> pathlib.Path:
  """One small training through the CLI, SavedModel exported, temperature calibrated,
  progress every 2 steps, the decoded images cached on disk in a temporary folder; the
  dataset is built by train itself from the Kaggle-layout folder given as --manual_dir —
  the second time: the first is stopped by a SIGTERM during the build (status and
  terminal in interrupted.json, interrupted.log). Its terminal is kept in train.log, its
  TMPDIR is tmp/; its --strategy=auto meets a TPU that does not answer (UNREACHABLE_TPU).
  Built once, shared by the workers: tests read it (a test that writes works on a copy)."""
  def build(root):
    manual = root / "manual"
    shutil.copytree(pathlib.Path(small_data_dir).parent / "manual", manual)
    (root / "tmp").mkdir()
    flags = ["ctdist.train", "--dataset=tfds_ctscan/kaggle", f"--data_dir={root / 'tfds'}",
             f"--manual_dir={manual}", f"--model_dir={root / 'run'}", "--weights=none",
             "--image_size=32", "--batch_size=4", "--head_epochs=1", "--finetune_epochs=1",
             "--finetune_layers=5", "--export", "--calibrate", "--log_every_steps=2",
             "--cache=disk"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="",
               TMPDIR=str(root / "tmp"))
    held = sorted((manual / "Data" / "train").glob("*/*"))[-1]
    status = stopped_while_building([sys.executable, "-m", *flags], env, held,
                                    root / "interrupted.log")
    (root / "interrupted.json").write_text(json.dumps({
        "status": status, "left": sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                         if p.name.startswith("incomplete"))}))
    done = forked.run(*flags, env=env, prelude=UNREACHABLE_TPU, timeout=900)
    (root / "train.log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"building tfds_ctscan/kaggle in {root / 'tfds'}" in done.stderr
    assert "built tfds_ctscan/kaggle: test 13, train 16, valid 5" in done.stderr
  return once.shared(tmp_path_factory, "cli_run", build) / "run"
