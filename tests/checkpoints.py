"""Reading a run's newest checkpoint, for the resume tests."""

import dataclasses
import pathlib

from ctdist.training import state


def position(model_dir: pathlib.Path) -> tuple[int, int, int]:
  """(phase, epoch, step) of the newest checkpoint in model_dir/checkpoints."""
  return dataclasses.astuple(state.read_position(state.latest_checkpoint(str(model_dir))))
