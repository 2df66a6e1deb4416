"""Seconds from a SIGTERM to the exit of a training process (the step in flight and the
checkpoint at it): trains with the given flags, sends SIGTERM when the progress line of
--at_line appears, and prints the exit status and the time.

Run (after `make demo`, from the repository root):
  python bench/sigterm.py --flagfile=demo.flags --data_dir=runs/demo/tensorflow_datasets \
    --model_dir=/tmp/sigterm_run --log_every_steps=1 --noreport
A cluster: `--workers=N` first starts N workers with `launch.local_cluster` and sends the
SIGTERM to the launcher, which passes it on to every worker; the time runs to the
launcher's exit (every worker saved and exited):
  python bench/sigterm.py --workers=2 --at_line='finetune epoch 1/\\d+ step 5/' \
    --flagfile=demo.flags ... (as above)
`--at_line=REGEX` picks the progress line that triggers the signal (default: fine-tune
epoch 2, step 5).
"""

import re
import shutil
import signal
import subprocess
import sys
import time

AT_LINE = r"finetune epoch 2/\d+ step 5/"  # inside an epoch, once XLA has compiled


def main(flags: list[str]) -> None:
  workers = [f for f in flags if f.startswith("--workers=")]
  at_line = next((f.split("=", 1)[1] for f in flags if f.startswith("--at_line=")), AT_LINE)
  flags = [f for f in flags if f not in workers and not f.startswith("--at_line=")]
  model_dir = next(f.split("=", 1)[1] for f in flags if f.startswith("--model_dir="))
  shutil.rmtree(model_dir, ignore_errors=True)  # a fresh run, or the line never comes
  command = (["-m", "launch.local_cluster", *workers, "--", *flags] if workers
             else ["-m", "ctdist.train", *flags])
  p = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
  sent, last = None, ""
  for line in p.stdout:
    last = line.strip() or last
    if sent is None and re.search(at_line, line):
      sent = time.monotonic()
      p.send_signal(signal.SIGTERM)
  p.wait()
  if sent is None:
    sys.exit(f"error: no line matched {at_line!r}; the run ended with {p.returncode}")
  print(f"exit status {p.returncode}, {time.monotonic() - sent:.2f} s from SIGTERM to exit")
  print(last)


if __name__ == "__main__":
  main(sys.argv[1:])
