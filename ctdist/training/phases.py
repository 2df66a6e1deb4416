"""The training phases as data, built once from the options: head (the base frozen), then
fine-tune (the top of the base unfrozen), each with its epochs and learning rate."""

import dataclasses

import keras

from ctdist.config import training as training_config


@dataclasses.dataclass(frozen=True)
class Phase:
  """One phase of a run."""
  index: int  # its place in the run: checkpoints and augmentation seeds record it
  name: str  # as in logs and history.json: one of training_config.PHASE_NAMES
  epochs: int
  peak_lr: float  # reached after the warm-up
  unfreeze: int | None  # top base layers made trainable on entry (-1: all); None: none
  lr_flag: str  # the flag that sets peak_lr, for messages


def build(schedule: training_config.Schedule) -> tuple[Phase, ...]:
  """The phases of `schedule`, in training order."""
  head, finetune = training_config.PHASE_NAMES
  return (Phase(0, head, schedule.head_epochs, schedule.head_lr, None, "--head_lr"),
          Phase(1, finetune, schedule.finetune_epochs, schedule.finetune_lr,
                schedule.finetune_layers, "--finetune_lr"))


def learning_rate(peak: float, total_steps: int, warmup_steps: int, kind: str):
  """The learning rate of one phase: a float, or a Keras schedule over the
  optimizer's step (which restarts at 0 with each phase's new optimizer).

  Args:
    peak: the phase's learning rate, reached after the warm-up.
    total_steps: the phase's steps (epochs x steps per epoch).
    warmup_steps: linear warm-up from 0 over this many steps (0: none).
    kind: one of training_config.LR_SCHEDULES.

  Raises:
    ValueError: an unknown `kind`, named with the valid ones.
  """
  if kind not in training_config.LR_SCHEDULES:
    raise ValueError(f"lr_schedule={kind!r}; expected one of {training_config.LR_SCHEDULES}")
  warmup_steps = min(warmup_steps, total_steps)
  if kind == "constant" and warmup_steps == 0:
    return peak
  # alpha is the final fraction of the peak: 1.0 holds it (constant), 0.0 decays to 0.
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0 if warmup_steps else peak,
      decay_steps=max(1, total_steps - warmup_steps),
      alpha=1.0 if kind == "constant" else 0.0,
      warmup_target=peak if warmup_steps else None, warmup_steps=warmup_steps)


def phase_learning_rate(phase: Phase, schedule: training_config.Schedule,
                        steps_per_epoch: int):
  """`learning_rate` of `phase` under `schedule`'s warm-up and decay."""
  return learning_rate(phase.peak_lr, phase.epochs * steps_per_epoch,
                       round(schedule.warmup_epochs * steps_per_epoch), schedule.lr_schedule)


def optimizer(schedule: training_config.Schedule, lr) -> keras.optimizers.Optimizer:
  """A phase's optimizer: Adam, or AdamW with `--weight_decay` (biases and BatchNorm's
  gamma and beta not decayed); gradients clipped to a global norm with `--clip_norm`."""
  clip = dict(global_clipnorm=schedule.clip_norm) if schedule.clip_norm else {}
  if not schedule.weight_decay:
    return keras.optimizers.Adam(lr, **clip)
  opt = keras.optimizers.AdamW(lr, weight_decay=schedule.weight_decay, **clip)
  opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
  return opt


def named(phases: list[Phase], name: str) -> Phase:
  """The phase called `name` (benchmarks and tests enter one by name)."""
  for phase in phases:
    if phase.name == name:
      return phase
  raise ValueError(f"phase {name!r}; expected one of {[p.name for p in phases]}")
