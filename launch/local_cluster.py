"""Starts N ctdist.train workers on this machine as one MultiWorkerMirroredStrategy cluster.

Run: python -m launch.local_cluster --workers=2 -- --model_dir=runs/cluster \
         --dataset=tfds_ctscan/synthetic --weights=none --image_size=64

Each worker gets its own TF_CONFIG on a free localhost port; their logs are
streamed with a `[worker-i]` prefix. If a worker dies, the others are stopped
and the exit code is non-zero, naming the lost worker: 2 when it stopped on a mistake in
the flags (fix them; nothing to resume), 1 otherwise (re-running the same command resumes
from the chief's checkpoint). A cluster that does not finish is stopped too: once one
worker is done the others get --finish_grace seconds, and --timeout bounds the whole run.

A SIGTERM or SIGINT sent to the launcher is passed on to every worker. The workers (also
when one of them alone is signalled, from elsewhere) agree on a step, each saves its
checkpoint there and exits 128 + the signal, which the launcher returns: "retry me".
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags


def free_ports(n: int) -> list[int]:
  """Returns `n` distinct free TCP ports on localhost."""
  socks, ports = [], []
  for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    ports.append(s.getsockname()[1])
  for s in socks:
    s.close()
  return ports


def tf_config(ports: list[int], index: int) -> str:
  return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


# gRPC's words when a port was taken between `free_ports` and the worker binding it.
PORT_TAKEN = "Address already in use"


def _stream(proc: subprocess.Popen, prefix: str, out, seen: dict) -> None:
  for line in iter(proc.stdout.readline, ""):
    if PORT_TAKEN in line:
      seen["port_taken"] = True
    if line.startswith("error: "):  # ctdist's one line on a user's mistake
      seen.setdefault("error", line[len("error: "):].strip())
    out.write(f"{prefix} {line}")
    out.flush()


# ctdist's exit status for a user's mistake (one `error:` line): retrying cannot help.
USER_ERROR = 2
# 128 + the signal: a worker stopped by SIGTERM/SIGINT after its checkpoint at the step
# the cluster agreed on; the others are doing the same and get time to finish saving.
STOPPED = (128 + signal.SIGTERM, 128 + signal.SIGINT)


class _PassOn:
  """While installed: a SIGTERM/SIGINT to the launcher goes to every worker."""

  def __init__(self, procs: list):
    self.procs, self.previous = procs, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in (signal.SIGTERM, signal.SIGINT):
        self.previous[s] = signal.signal(s, self._pass_on)
    return self

  def _pass_on(self, signum, frame):
    del frame
    for p in self.procs:
      if p.poll() is None:
        p.send_signal(signum)

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)


def _run_once(num_workers: int, train_args: list[str], env: dict | None, python: str,
              out, poll_s: float, grace_s: float, finish_grace_s: float,
              timeout_s: float, stop_grace_s: float
              ) -> tuple[int | None, int | None, bool, str | None]:
  """One cluster start: (the first failed worker's exit status and index, or None twice;
  whether a port was taken before the workers could bind it; a worker's `error:` line).
  A worker still running `finish_grace_s` after another finished, or after `timeout_s`
  in all (0: no limit), counts as failed (hung). Once one stopped on a signal (after its
  checkpoint), the others get `stop_grace_s` to save theirs and exit."""
  ports = free_ports(num_workers)
  procs, threads, seen = [], [], {}
  with _PassOn(procs):  # a signal to the launcher: to every worker started
    for i in range(num_workers):
      worker_env = dict(env or os.environ, TF_CONFIG=tf_config(ports, i),
                        PYTHONUNBUFFERED="1")
      cmd = [python, "-m", "ctdist.train", "--strategy=multi_worker", *train_args]
      proc = subprocess.Popen(cmd, env=worker_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
      procs.append(proc)  # at once: a signal from now on reaches it
      print(f"local_cluster: worker-{i} pid {proc.pid} TF_CONFIG {worker_env['TF_CONFIG']}",
            file=out, flush=True)
      t = threading.Thread(target=_stream, args=(proc, f"[worker-{i}]", out, seen), daemon=True)
      t.start()
      threads.append(t)
    failed, started, first_done, hung = None, time.monotonic(), None, None
    while failed is None and any(p.poll() is None for p in procs):
      for i, p in enumerate(procs):
        if p.poll() not in (None, 0):
          failed = i
          break
      now = time.monotonic()
      if first_done is None and any(p.poll() == 0 for p in procs):
        first_done = now
      running = [i for i, p in enumerate(procs) if p.poll() is None]
      if failed is None and running and (
          (first_done is not None and now - first_done > finish_grace_s)
          or (timeout_s and now - started > timeout_s)):
        failed = hung = running[0]
        why = (f"{finish_grace_s:g} s after another worker finished" if first_done is not None
               and now - first_done > finish_grace_s else f"after --timeout={timeout_s:g} s")
        print(f"local_cluster: worker-{hung} (pid {procs[hung].pid}) still running {why}: "
              "hung; stopping the cluster.", file=sys.stderr)
        break
      time.sleep(poll_s)
    if failed is None:
      failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
    if failed is not None:
      if procs[failed].returncode in STOPPED and hung is None:
        _wait_all(procs, stop_grace_s)  # the others save at the same step and exit too
        for p in procs:  # they were signalled: one still running after that is stuck
          if p.poll() is None:
            p.kill()
      for p in procs:
        if p.poll() is None:
          p.terminate()
      deadline = time.time() + grace_s
      for p in procs:
        try:
          p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
          p.kill()
          p.wait()
  for t in threads:
    t.join(timeout=5)
  if failed is not None and hung is None and procs[failed].returncode not in STOPPED:
    code = procs[failed].returncode
    print(f"local_cluster: worker-{failed} (pid {procs[failed].pid}) exited with code "
          f"{code}; stopped the other workers.", file=sys.stderr)
  code = None if failed is None else (procs[failed].returncode if hung is None else 1)
  return code, failed, bool(seen.get("port_taken")), seen.get("error")


def _wait_all(procs: list, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline and any(p.poll() is None for p in procs):
    time.sleep(0.2)


def launch(num_workers: int, train_args: list[str], env: dict | None = None,
           python: str = sys.executable, out=None, poll_s: float = 0.5,
           grace_s: float = 10.0, port_attempts: int = 3, finish_grace_s: float = 600.0,
           timeout_s: float = 0.0, stop_grace_s: float = 300.0) -> int:
  """Runs the cluster to completion; returns 0 if every worker exited 0, 2 if one
  stopped on a mistake in the flags, 128 + the signal if they stopped on a SIGTERM or
  SIGINT (after a checkpoint: re-running resumes), 1 otherwise.

  When one worker exits non-zero, the others cannot finish (their collectives
  wait for it): they are terminated and the lost worker is named on stderr. A start
  that failed because another process took a port first is retried on new ports
  (up to `port_attempts` starts); the retry resumes from any checkpoint written.
  """
  out = out or sys.stdout
  for attempt in range(1, port_attempts + 1):
    code, failed, port_taken, error = _run_once(num_workers, train_args, env, python, out, poll_s,
                                                grace_s, finish_grace_s, timeout_s,
                                                stop_grace_s)
    if failed is None:
      return 0
    if code in STOPPED:
      print(f"local_cluster: stopped by {signal.Signals(code - 128).name} (exit status "
            f"{code}); every worker saved a checkpoint at the same step: re-run the same "
            "command to resume.", file=sys.stderr)
      return code
    if code == USER_ERROR:
      print(f"error: worker-{failed} stopped on a mistake in the flags: {error}; fix it "
            "and run again", file=sys.stderr)
      return USER_ERROR
    if not (port_taken and attempt < port_attempts):
      break
    print(f"local_cluster: a port was taken before a worker could bind it; starting "
          f"again on new ports (attempt {attempt + 1} of {port_attempts})",
          file=sys.stderr)
  print("local_cluster: re-run the same command to resume from the chief's last "
        "checkpoint.", file=sys.stderr)
  return 1


def main(argv) -> int:
  """`python -m launch.local_cluster --workers=N -- TRAIN_FLAGS...`: absl keeps what
  follows `--` in argv, for ctdist.train."""
  return launch(flags.FLAGS.workers, argv[1:], finish_grace_s=flags.FLAGS.finish_grace,
                timeout_s=flags.FLAGS.timeout)


if __name__ == "__main__":
  flags.DEFINE_integer("workers", 2, "Number of worker processes.", lower_bound=1)
  flags.DEFINE_float("finish_grace", 600.0, "Seconds the other workers get to finish once "
                     "one has; then they count as hung and are stopped.", lower_bound=0)
  flags.DEFINE_float("timeout", 0.0, "Stop the cluster after this many seconds (0: no "
                     "limit).", lower_bound=0)
  app.run(main)
