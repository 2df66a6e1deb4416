"""Reading a run's newest checkpoint, for the resume tests."""

import pathlib

import tensorflow as tf


def position(model_dir: pathlib.Path) -> tuple[int, int, int]:
  """(phase, epoch, step) of the newest checkpoint in model_dir/checkpoints."""
  latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return tuple(int(tf.train.load_variable(latest, f"position/{k}/.ATTRIBUTES/VARIABLE_VALUE"))
               for k in ("phase", "epoch", "step"))
