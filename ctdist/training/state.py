"""Where a run is, saved in every checkpoint so that a resumed run goes on from there: the
position (phase, epoch, step), early stopping's count, and the history on disk."""

import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

from ctdist.store import run_files


class Position(tf.Module):
  """Where the loop is: phase index, epochs done in it, steps into the next epoch."""

  def __init__(self):
    super().__init__()
    self.phase = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False)

  def start_phase(self, index: int) -> None:
    """At the start of phase `index` (len(phases): past the last, finished)."""
    self.phase.assign(index)
    self.epoch.assign(0)
    self.step.assign(0)

  def values(self) -> "At":
    return At(int(self.phase), int(self.epoch), int(self.step))


@dataclasses.dataclass(frozen=True)
class At:
  """A Position's values, read once."""
  phase: int
  epoch: int
  step: int

  @property
  def at_phase_start(self) -> bool:
    return self.epoch == 0 and self.step == 0


class DivergedError(RuntimeError):
  """Every validation loss of a phase was NaN or infinite: no weights worth keeping."""

  def __init__(self, phase: str, epochs: int, lr_flag: str):
    super().__init__(
        f"the {phase} phase diverged: its validation loss was NaN or infinite in every "
        f"epoch (1 to {epochs}); lower {lr_flag}, or set --clip_norm (e.g. 1.0)")


class EarlyStopping(tf.Module):
  """Stops a phase after `patience` validations without a lower loss; its state is
  checkpointed (a resumed run keeps counting)."""

  def __init__(self, patience: int):
    super().__init__()
    self.patience = patience
    self.best = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
    self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.stopped = tf.Variable(False, trainable=False)

  def update(self, val_loss: float) -> bool:
    """Records one validation; returns whether it improved on the best (NaN never does)."""
    improved = bool(val_loss < float(self.best))
    if improved:
      self.best.assign(val_loss)
      self.wait.assign(0)
    else:
      self.wait.assign_add(1)
      if int(self.wait) >= self.patience:
        self.stopped.assign(True)
    return improved

  @property
  def has_best(self) -> bool:
    """Whether a validation of this phase had a finite loss (and best/ holds its weights)."""
    return bool(np.isfinite(float(self.best)))

  def reset(self) -> None:
    self.best.assign(np.inf)
    self.wait.assign(0)
    self.stopped.assign(False)


def latest_checkpoint(model_dir: str) -> str | None:
  return tf.train.latest_checkpoint(os.path.join(model_dir, run_files.CHECKPOINTS))


def read_position(checkpoint: str | None) -> At:
  """The position a checkpoint holds (the start of the first phase without one)."""
  position = Position()
  if checkpoint:
    tf.train.Checkpoint(position=position).read(checkpoint).expect_partial()
  return position.values()


def checkpointed_phase(model_dir: str) -> int:
  """The phase index saved in model_dir's newest checkpoint (0 without one; the number of
  phases once training finished)."""
  return read_position(latest_checkpoint(model_dir)).phase


def history_until(history: list[dict], at: At) -> list[dict]:
  """The records of the epochs a checkpoint at `at` holds: a crash between the history
  write and the checkpoint leaves one record more, which the resumed run writes again."""
  return [h for h in history if (h["phase_index"], h["epoch"]) <= (at.phase, at.epoch)]


def write_dir(model_dir: str, chief: bool, worker: str) -> str:
  """Where this worker writes: model_dir on the chief, a temporary folder elsewhere
  (every worker must save, for the collectives, but only the chief's copy is kept)."""
  if chief:
    return model_dir
  return tempfile.mkdtemp(prefix=f"ctdist_{worker}_")
