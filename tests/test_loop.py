"""The learning-rate schedules, the schedule options and early stopping, against hand-computed
values; the checkpointed phase."""

import keras
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.training import phases
from ctdist.training import state


def _at(lr, step):
  return float(keras.ops.convert_to_numpy(lr(step))) if callable(lr) else lr


def test_plain_rate_without_warmup_is_the_seed_notebooks_constant():
  assert phases.learning_rate(1e-4, 190, 0, "constant") == 1e-4


@pytest.mark.parametrize("step,expected", [(0, 0.0), (5, 0.5e-3), (10, 1e-3), (60, 1e-3),
                                           (100, 1e-3)])
def test_constant_with_linear_warmup(step, expected):
  lr = phases.learning_rate(1e-3, 100, 10, "constant")
  assert _at(lr, step) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("step,expected", [(0, 0.0), (5, 1e-3), (10, 2e-3),
                                           (60, 1e-3),  # half-way through the decay: cos = 0
                                           (35, 2e-3 * (1 + 0.7071068) / 2),  # a quarter
                                           (110, 0.0)])
def test_cosine_after_warmup(step, expected):
  lr = phases.learning_rate(2e-3, 110, 10, "cosine")
  assert _at(lr, step) == pytest.approx(expected, abs=1e-8)


def test_cosine_without_warmup_starts_at_the_peak():
  lr = phases.learning_rate(1e-3, 100, 0, "cosine")
  assert _at(lr, 0) == pytest.approx(1e-3)
  assert _at(lr, 50) == pytest.approx(0.5e-3)


def test_warmup_longer_than_the_phase_is_capped():
  lr = phases.learning_rate(1e-3, 20, 50, "constant")
  assert _at(lr, 10) == pytest.approx(0.5e-3)
  assert _at(lr, 20) == pytest.approx(1e-3)


def test_bad_schedule_options_name_the_value():
  with pytest.raises(ValueError, match="'step'.*constant.*cosine"):
    phases.learning_rate(1e-3, 10, 0, "step")
  with pytest.raises(ValueError, match="'linear'"):
    training_config.Schedule(lr_schedule="linear")
  with pytest.raises(ValueError, match="label_smoothing=1.0"):
    training_config.Schedule(label_smoothing=1.0)
  with pytest.raises(ValueError, match="weight_decay=-0.1"):
    training_config.Schedule(weight_decay=-0.1)


@pytest.mark.parametrize("patience,losses,improved,stops_after", [
    # Patience counts validations without a new best; a stop ends the phase.
    (1, [1.0, 0.5, 0.9, 0.1], [True, True, False], 3),
    (2, [1.0, 0.5, 0.9, 0.6, 0.4, 0.7, 0.8], [True, True, False, False], 4),
    (2, [1.0, 0.5, 0.9, 0.4, 0.7, 0.8], [True, True, False, True, False, False], 6),
    # Equal is not better; NaN never is.
    (2, [1.0, 1.0, float("nan")], [True, False, False], 3)])
def test_early_stopping_by_hand(patience, losses, improved, stops_after):
  stopping = state.EarlyStopping(patience)
  seen = []
  for loss in losses:
    seen.append(stopping.update(loss))
    if bool(stopping.stopped):
      break
  assert seen == improved and len(seen) == stops_after
  stopping.reset()
  assert (float(stopping.best), int(stopping.wait), bool(stopping.stopped)) == (
      float("inf"), 0, False)


def test_checkpointed_phase_reads_the_newest_checkpoint(tmp_path):
  assert state.checkpointed_phase(str(tmp_path)) == 0  # no checkpoint: start at the head
  position = state.Position()
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(position=position),
                                       str(tmp_path / "checkpoints"), max_to_keep=2)
  for phase in (1, 2):
    position.phase.assign(phase)
    manager.save()
    assert state.checkpointed_phase(str(tmp_path)) == phase  # 2: past the last, finished
