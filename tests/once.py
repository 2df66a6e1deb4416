"""Folders built once per test session and shared by pytest-xdist's workers."""

import fcntl
import os
import pathlib
import shutil
import traceback

import pytest


def shared(tmp_path_factory, name: str, build) -> pathlib.Path:
  """The folder `name`, filled by `build(folder)` once for the whole test session and
  shared by pytest-xdist's workers: the first worker that asks builds it under a file
  lock, the others wait for it (a trained run is built once, not once per worker). It
  lives in the controller's temporary folder, removed with it when the session passes.
  Tests only read it (copy it to change it). A failed build fails every test asking."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # each worker's folder is popen-gwN inside the controller's
  root = base / "shared"
  root.mkdir(exist_ok=True)
  folder, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if failed.exists():
      pytest.fail(f"building the shared folder {name} failed:\n{failed.read_text()}")
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      try:
        build(folder)
      except BaseException:
        failed.write_text(traceback.format_exc()[-5000:])
        raise
      done.touch()
  return folder
