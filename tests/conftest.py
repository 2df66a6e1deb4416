"""Shared fixtures: small Kaggle-layout folders written by the synthetic generator."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest
import tensorflow as tf

# Two logical CPUs, before TF initialises, so MirroredStrategy has 2 replicas.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import tensorflow_datasets as tfds  # noqa: E402

import tfds_ctscan  # noqa: E402,F401
from tfds_ctscan import synthetic  # noqa: E402
import once  # noqa: E402

SMALL_COUNTS = {
    "train": {"adenocarcinoma": 3, "large_cell_carcinoma": 3, "normal": 7,
              "squamous_cell_carcinoma": 3},
    "valid": {"adenocarcinoma": 1, "large_cell_carcinoma": 1, "normal": 2,
              "squamous_cell_carcinoma": 1},
    "test": {"adenocarcinoma": 2, "large_cell_carcinoma": 2, "normal": 7,
             "squamous_cell_carcinoma": 2},
}


@pytest.fixture(scope="session")
def two_replicas():
  """The one MirroredStrategy over the two logical CPUs above, for every test of a
  process: a second instance in the same process starts its collective instance keys
  where the first did, and the two runs' all-reduces then abort ("Shape mismatch in the
  collective instance 100")."""
  return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


@pytest.fixture
def kaggle_dir(tmp_path) -> pathlib.Path:
  """A folder holding Data/ in the Kaggle layout, both naming schemes, 40-64 px."""
  synthetic.write_kaggle_layout(tmp_path, seed=3, counts=SMALL_COUNTS,
                                size_range=(40, 64))
  return tmp_path


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir holding tfds_ctscan/kaggle built from a small fixture (34 images),
  beside its files in manual/."""
  def build(root):
    synthetic.write_kaggle_layout(root / "manual", seed=3, counts=SMALL_COUNTS,
                                  size_range=(40, 64))
    tfds.builder("tfds_ctscan/kaggle", data_dir=str(root / "tfds")).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
  return str(once.shared(tmp_path_factory, "small", build) / "tfds")


class Process:
  """A child process whose output is read all along (a full pipe never blocks it) and
  whose whole process group is killed when the test ends, however it ends."""

  def __init__(self, cmd, **kwargs):
    self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True, **kwargs)
    self._lines = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.popen.stdout:
      self._lines.append(line)

  @property
  def output(self) -> str:
    return "".join(self._lines)

  def wait_for(self, pattern: str, timeout: float) -> re.Match:
    """The first match of `pattern` in the output; fails if the process exits or time
    runs out first."""
    deadline = time.monotonic() + timeout
    while True:
      m = re.search(pattern, self.output)
      if m:
        return m
      if self.popen.poll() is not None:
        self._reader.join(5)
        m = re.search(pattern, self.output)
        if m:
          return m
        raise AssertionError(f"exited with {self.popen.returncode} before printing "
                             f"{pattern!r}:\n{self.output[-3000:]}")
      if time.monotonic() > deadline:
        raise AssertionError(f"{pattern!r} not printed in {timeout} s:\n{self.output[-3000:]}")
      time.sleep(0.2)

  def wait_until(self, condition, timeout: float, what: str) -> None:
    """Polls `condition()` while the process runs; fails if it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
      if self.popen.poll() is not None:
        raise AssertionError(f"exited with {self.popen.returncode} before {what}:\n"
                             f"{self.output[-3000:]}")
      if time.monotonic() > deadline:
        raise AssertionError(f"no {what} in {timeout} s:\n{self.output[-3000:]}")
      time.sleep(0.5)

  def wait(self, timeout: float) -> int:
    """The exit code; on timeout the process group is killed and the test fails."""
    try:
      self.popen.wait(timeout)
    except subprocess.TimeoutExpired:
      self.kill()
      raise AssertionError(f"still running after {timeout} s:\n{self.output[-3000:]}") from None
    self._reader.join(10)
    return self.popen.returncode

  def kill(self) -> None:
    try:
      os.killpg(self.popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
    self.popen.wait()


@pytest.fixture
def spawn():
  """spawn(cmd, **popen_kwargs) -> Process; every process is killed at teardown."""
  started = []

  def start(cmd, **kwargs):
    started.append(Process(cmd, **kwargs))
    return started[-1]
  yield start
  for p in started:
    p.kill()


# Seconds each slow module's tests took under `make test`'s load (pytest --durations=0
# with three workers on 2 cores, 2026-12-07, after the forked commands): weights for
# placing whole modules on workers, not limits. A module not named weighs 60 s per slow
# test.
MODULE_SECONDS = {"test_train": 870, "test_cv": 620, "test_demo": 600,
                  "test_preemption": 560, "test_launch": 450, "test_cli": 400,
                  "test_tpu_readiness": 280, "test_bench": 190, "test_own_folder": 115,
                  "test_explain": 110, "test_report": 60}


def pytest_collection_modifyitems(items):
  """Each module's tests together (its module-scoped fixtures, trained runs among them,
  are built once), its slow tests first. Under xdist's work stealing (the Makefile's
  `--dist worksteal`) worker i is first handed the i-th contiguous share of this list
  (a third each with -n 3), then steals from the others' tails: so the slow modules
  are dealt out whole, heaviest first, to the share with the least weight so far (each
  worker starts on its longest tests), and the quick tests fill each share to its count.
  Without xdist: slow modules first, heaviest first."""
  def file(item):
    return item.nodeid.split("::")[0]

  modules: dict[str, list] = {}
  for item in items:
    modules.setdefault(file(item), []).append(item)
  weight = {}
  for name, tests in modules.items():
    slow = sum(t.get_closest_marker("slow") is not None for t in tests)
    # A module without slow tests: ~0.5 s a test.
    weight[name] = MODULE_SECONDS.get(pathlib.Path(name).stem, 60 * slow) or 0.5 * len(tests)
    tests.sort(key=lambda t: t.get_closest_marker("slow") is None)  # stable: slow first
  workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
  sizes, left = [], len(items)
  for i in range(workers):  # as xdist's work-stealing scheduler splits the list
    sizes.append(left // (workers - i))
    left -= sizes[-1]
  shares, load = [[] for _ in sizes], [0.0] * len(sizes)
  leftover = []
  for m in sorted(modules, key=lambda m: -weight[m]):  # whole, to the lightest with room
    room = [i for i in range(len(sizes)) if len(shares[i]) + len(modules[m]) <= sizes[i]]
    if not room:
      leftover += modules[m]
      continue
    i = min(room, key=lambda i: load[i])
    shares[i] += modules[m]
    load[i] += weight[m]
  for i, size in enumerate(sizes):  # what fits nowhere whole fills the shares' counts
    take = size - len(shares[i])
    shares[i] += leftover[:take]
    leftover = leftover[take:]
  items[:] = [t for share in shares for t in share]
