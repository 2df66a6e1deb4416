"""`python -m MODULE ARGS` as a user runs it, without paying TensorFlow's import each time.

One server process imports TensorFlow, Keras, TFDS and ctdist's library once; each
command is then a fork of it that runs MODULE as `__main__` (runpy, as `python -m` does)
with its own argv, environment, working folder, stdout and stderr, and ends as Python
would: an uncaught exception prints its traceback and exits 1, SystemExit exits with its
code, atexit handlers run. The command modules themselves (they define their flags when
run as `__main__`) are never imported by the server, so every fork starts from the same
state. A TensorFlow import costs ~7-8 s of a core, a fork a few milliseconds: the
mistakes table (48 commands) has its own server; `run` below is every other test's,
one per pytest worker. A test that checks what TensorFlow prints as it loads (the log
level chosen from -v before the import) runs a real `python -m` instead, as does a
test that signals its process or starts several at once.
"""

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

_SERVER = r"""
import atexit, json, os, runpy, sys, tempfile, traceback
import tensorflow, keras, tensorflow_datasets  # noqa
import tfds_ctscan, tfds_ctscan.scan  # noqa
import ctdist.cli.console, ctdist.cli.user_errors, ctdist.workflows.training_run  # noqa
import ctdist.workflows.cross_validation, ctdist.scoring.evaluation  # noqa
import ctdist.saliency.explainers, ctdist.scoring.calibration, ctdist.reporting.writer  # noqa
requests = os.fdopen(os.dup(0), "r")
replies = os.fdopen(os.dup(1), "w")
os.close(0)
os.open(os.devnull, os.O_RDONLY)
print("ready", file=replies, flush=True)
for line in requests:
  req = json.loads(line)
  pid = os.fork()
  if pid == 0:
    requests.close()
    replies.close()
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
      os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    tempfile.tempdir = None  # read from this command's TMPDIR, not the server's
    sys.argv = [req["module"], *req["args"]]
    code = 0
    try:
      exec(req["prelude"], {})
      runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
      if e.code is None:
        code = 0
      elif isinstance(e.code, int):
        code = e.code
      else:
        print(e.code, file=sys.stderr)
        code = 1
    except BaseException:
      traceback.print_exc()
      code = 1
    try:
      atexit._run_exitfuncs()
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
  _, status = os.waitpid(pid, 0)
  print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), file=replies, flush=True)
"""


class Done:
  def __init__(self, returncode: int, stdout: str, stderr: str):
    self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


class Server:
  """Runs `python -m MODULE ARGS` commands, one at a time, as forks of one process."""

  def __init__(self, env: dict, timeout: float = 120):
    self._env, self._timeout = env, timeout
    self._dir = tempfile.mkdtemp(prefix="forked-")
    self._proc = None

  def _start(self):
    self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], cwd=ROOT, env=self._env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
    self._reply()  # "ready"

  def _reply(self, timeout: float | None = None) -> str:
    # One line is ever outstanding, so nothing waits in the reader's buffer: a command
    # that hangs fails its test after the time limit (its process group is killed).
    timeout = self._timeout if timeout is None else timeout
    ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
    if not ready:
      self._kill()  # the next command starts a new server
      raise AssertionError(f"no answer in {timeout} s")
    line = self._proc.stdout.readline()
    if not line:
      code = self._proc.wait()
      self._proc = None
      raise AssertionError(f"the command server exited with {code}")
    return line

  def run(self, module: str, args: list[str], env: dict | None = None,
          cwd: pathlib.Path = ROOT, prelude: str = "", timeout: float | None = None) -> Done:
    """`python -m module *args`; `prelude` is Python run in the fork first; the command
    fails its test if it has not ended after `timeout` seconds (the server's by default)."""
    if self._proc is None:
      self._start()
    out, err = os.path.join(self._dir, "stdout"), os.path.join(self._dir, "stderr")
    self._proc.stdin.write(json.dumps({
        "module": module, "args": list(args), "env": dict(env or self._env),
        "cwd": str(cwd), "prelude": prelude, "stdout": out, "stderr": err}) + "\n")
    self._proc.stdin.flush()
    status = json.loads(self._reply(timeout))["status"]
    return Done(status, pathlib.Path(out).read_text(), pathlib.Path(err).read_text())

  def _kill(self):
    if self._proc is not None:
      try:
        os.killpg(self._proc.pid, signal.SIGKILL)  # the server and the command it runs
      except (ProcessLookupError, PermissionError):
        pass
      self._proc.wait()
      self._proc.stdin.close()
      self._proc.stdout.close()
      self._proc = None

  def close(self):
    self._kill()
    for name in ("stdout", "stderr"):
      pathlib.Path(self._dir, name).unlink(missing_ok=True)
    os.rmdir(self._dir)


_shared: Server | None = None


def run(module: str, *args, env: dict | None = None, prelude: str = "",
        timeout: float = 900) -> Done:
  """`python -m module *args` from the project's root, forked from this pytest worker's
  one server (started on first use; it exits when the worker does, its stdin closed).
  `env` is the command's whole environment (default: this process's, with ctdist on
  PYTHONPATH and no GPU); `prelude` is Python the fork runs first."""
  global _shared
  base = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
  if _shared is None:
    # TensorFlow reads its native log level once, as it loads: in the server. Level 3 is
    # what ctdist's console chooses for a command run without -v.
    _shared = Server(dict(base, TF_CPP_MIN_LOG_LEVEL="3"))
  return _shared.run(module, [str(a) for a in args], env=env or base, prelude=prelude,
                     timeout=timeout)
