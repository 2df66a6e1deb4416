"""The custom distributed training loop: head phase, then fine-tune, with resume.

One code path for every strategy: `strategy.run` inside a `tf.function` that
runs `steps_per_loop` steps per call. Keras 3 `model.fit` fails under
two-worker MultiWorkerMirroredStrategy (keras-team/keras#20585).
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ctdist import augment
from ctdist import dataflags
from ctdist import faults
from ctdist import files
from ctdist import model as model_lib

PHASES = ("head", "finetune")
LR_SCHEDULES = ("constant", "cosine")
option = dataflags.option


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Head, then fine-tune: epochs, learning rates, what unfreezes, when to stop."""
  head_epochs: int = option(10, "Phase 1 epochs (base frozen).")
  head_lr: float = option(1e-4, "Phase 1 Adam learning rate.")
  finetune_epochs: int = option(10, "Phase 2 epochs.")
  finetune_lr: float = option(1e-5, "Phase 2 Adam learning rate.")
  finetune_layers: int = option(
      50, "Top base layers unfrozen in phase 2 (-1: all); BatchNorm stays frozen.")
  freeze_batchnorm: bool = option(
      True, "Keep BatchNorm frozen in inference mode; --nofreeze_batchnorm only to train "
      "from scratch with --weights=none.")
  patience: int = option(3, "Early-stopping patience in epochs (val loss).")
  warmup_epochs: float = option(
      0.0, "Both phases: linear learning-rate warm-up from 0 over this many epochs.")
  lr_schedule: str = option(
      "constant", "Both phases, after the warm-up: constant, or cosine decay to 0 at the "
      "phase's last step.", choices=LR_SCHEDULES)
  weight_decay: float = option(
      0.0, "Decoupled weight decay (AdamW) if > 0; not on biases and BatchNorm.")
  label_smoothing: float = option(0.0, "Label smoothing of the loss.")
  clip_norm: float = option(0.0, "Clip gradients to this global norm (0: off).")

  def __post_init__(self):
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule={self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
    for name in ("warmup_epochs", "weight_decay", "label_smoothing", "clip_norm"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
    if self.label_smoothing >= 1:
      raise ValueError(f"label_smoothing={self.label_smoothing} must be below 1")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Everything the loop needs besides the model, data and strategy."""
  global_batch: int
  steps_per_epoch: int
  val_steps: int
  schedule: Schedule = Schedule()
  steps_per_loop: int = 1
  log_every_steps: int = 0
  class_weights: tuple[float, ...] | None = None
  loss_scaling: bool = False
  checkpoint_every_steps: int = 0
  jit_compile: bool = False  # XLA for the per-replica step (one-device strategies)
  augmentation: augment.AugmentConfig = augment.AugmentConfig()
  seed: int = 0  # of the augmentation, with the phase, step and replica


def learning_rate(peak: float, total_steps: int, warmup_steps: int, kind: str):
  """The learning rate of one phase: a float, or a Keras schedule over the
  optimizer's step (which restarts at 0 with each phase's new optimizer).

  Args:
    peak: the phase's learning rate, reached after the warm-up.
    total_steps: the phase's steps (epochs x steps per epoch).
    warmup_steps: linear warm-up from 0 over this many steps (0: none).
    kind: one of LR_SCHEDULES.
  """
  if kind not in LR_SCHEDULES:
    raise ValueError(f"lr_schedule={kind!r}; expected one of {LR_SCHEDULES}")
  warmup_steps = min(warmup_steps, total_steps)
  if kind == "constant" and warmup_steps == 0:
    return peak
  # alpha is the final fraction of the peak: 1.0 holds it (constant), 0.0 decays to 0.
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0 if warmup_steps else peak,
      decay_steps=max(1, total_steps - warmup_steps),
      alpha=1.0 if kind == "constant" else 0.0,
      warmup_target=peak if warmup_steps else None, warmup_steps=warmup_steps)


def write_dir(model_dir: str, chief: bool, worker: str) -> str:
  """Where this worker writes: model_dir on the chief, a temporary folder elsewhere
  (every worker must save, for the collectives, but only the chief's copy is kept)."""
  if chief:
    return model_dir
  return tempfile.mkdtemp(prefix=f"ctdist_{worker}_")


class _Position(tf.Module):
  """Where the loop is: phase index (into PHASES), epochs done, steps into the epoch."""

  def __init__(self):
    super().__init__()
    self.phase = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False)


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

  def reset(self) -> None:
    self.best.assign(np.inf)
    self.wait.assign(0)
    self.stopped.assign(False)


def checkpointed_phase(model_dir: str) -> int:
  """The phase index saved in model_dir's newest checkpoint (0 without one;
  len(PHASES) once training finished)."""
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if latest is None:
    return 0
  position = _Position()
  tf.train.Checkpoint(position=position).read(latest).expect_partial()
  return int(position.phase)


class Trainer:
  """Runs both phases on `strategy`; resumable from `model_dir`."""

  def __init__(self, strategy, model, cfg: LoopConfig,
               train_ds, val_ds, model_dir: str, chief: bool = True,
               worker: str = "local"):
    self.strategy, self.model, self.cfg = strategy, model, cfg
    self.model_dir, self.chief = model_dir, chief
    self.write_dir = write_dir(model_dir, chief, worker)
    self.train_iterator = iter(train_ds)
    self.val_ds = val_ds
    self.history = _load_history(model_dir) if chief else []
    self.phase = None  # the phase entered last
    self.eval_step = self._eval_fn = None  # traced on first use, for both phases
    # Plain host variables: read eagerly on every worker.
    self.position = _Position()
    self.stopping = EarlyStopping(cfg.schedule.patience)
    with strategy.scope():
      sync = dict(synchronization=tf.VariableSynchronization.ON_READ,
                  aggregation=tf.VariableAggregation.SUM, trainable=False)
      self.sums = {k: tf.Variable(0.0, **sync) for k in ("loss", "correct", "count")}
      weights = cfg.class_weights or (1.0,) * len(model_lib.class_names_of(model))
      self.class_weights = tf.constant(weights, tf.float32)
    self.writer = (tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
                   if chief else tf.summary.create_noop_writer())

  # ---- optimizer and checkpoint, per phase -------------------------------------------
  def _make_optimizer(self, phase: str):
    sch, spe = self.cfg.schedule, self.cfg.steps_per_epoch
    lr = learning_rate(sch.head_lr if phase == "head" else sch.finetune_lr,
                       self._epochs(phase) * spe, round(sch.warmup_epochs * spe),
                       sch.lr_schedule)
    clip = dict(global_clipnorm=sch.clip_norm) if sch.clip_norm else {}
    with self.strategy.scope():
      if sch.weight_decay:
        opt = keras.optimizers.AdamW(lr, weight_decay=sch.weight_decay, **clip)
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
      else:
        opt = keras.optimizers.Adam(lr, **clip)
      if self.cfg.loss_scaling:
        opt = keras.optimizers.LossScaleOptimizer(opt)
      opt.build(self.model.trainable_variables)
    return opt

  def enter_phase(self, phase: str):
    """Sets up `phase` ("head" or "finetune"): trainable layers, a new optimizer (a
    Keras 3 optimizer only updates the variables it was built with), its checkpoint,
    and the compiled steps."""
    if phase not in PHASES:
      raise ValueError(f"phase {phase!r}; expected one of {PHASES}")
    if phase == "finetune":
      unfrozen = model_lib.unfreeze_top(self.model, self.cfg.schedule.finetune_layers,
                                        self.cfg.schedule.freeze_batchnorm)
      logging.info("finetune: %d base layers with weights unfrozen (BatchNorm %s)",
                   len(unfrozen), "frozen" if self.cfg.schedule.freeze_batchnorm else "trained")
    self.optimizer = self._make_optimizer(phase)
    self.ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                    position=self.position, early_stopping=self.stopping)
    self.manager = tf.train.CheckpointManager(
        self.ckpt, os.path.join(self.write_dir, "checkpoints"), max_to_keep=2)
    self.best = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=self.model),
        os.path.join(self.write_dir, "best"), max_to_keep=1)
    self.replica_step, self._train_fn = self._make_train_fn(PHASES.index(phase))
    # The forward pass does not depend on the phase: traced once, for both.
    if self._eval_fn is None:
      self.eval_step, self._eval_fn = self._make_eval_fn()
    self.phase = phase

  # ---- compiled steps -------------------------------------------------------------
  def _make_train_fn(self, phase: int):
    model, opt, cw, cfg = self.model, self.optimizer, self.class_weights, self.cfg
    global_batch, sums = cfg.global_batch, self.sums
    smoothing = cfg.schedule.label_smoothing
    num_classes = int(cw.shape[0])

    def compute(images, labels, params):
      # Augmentation, forward, backward and update: one graph, which XLA compiles whole.
      if params:
        images = augment.apply(images, params, cfg.augmentation)
      with tf.GradientTape() as tape:
        probs = model(images, training=True)
        per_example = keras.losses.categorical_crossentropy(
            tf.one_hot(labels, num_classes), tf.cast(probs, tf.float32),
            label_smoothing=smoothing) * tf.gather(cw, labels)
        loss = tf.reduce_sum(per_example) / global_batch
        scaled = opt.scale_loss(loss)
      grads = tape.gradient(scaled, model.trainable_variables)
      opt.apply(grads, model.trainable_variables)
      return probs, per_example

    if cfg.jit_compile:
      compute = tf.function(compute, jit_compile=True)

    def step_fn(batch):
      images = tf.cast(batch["image"], tf.float32)
      labels = batch["label"]
      params = {}
      if cfg.augmentation.enabled:  # drawn outside XLA: see augment.draw
        replica = tf.distribute.get_replica_context()
        params = augment.draw(
            augment.step_seed(cfg.seed, phase, opt.iterations,
                              replica.replica_id_in_sync_group, replica.num_replicas_in_sync),
            images, cfg.augmentation)
      probs, per_example = compute(images, labels, params)
      sums["loss"].assign_add(tf.reduce_sum(per_example))
      sums["correct"].assign_add(tf.reduce_sum(tf.cast(
          tf.equal(tf.argmax(probs, -1, output_type=tf.int32), labels), tf.float32)))
      sums["count"].assign_add(tf.cast(tf.shape(labels)[0], tf.float32))

    @tf.function
    def train_fn(iterator, steps):
      for _ in tf.range(steps):
        self.strategy.run(step_fn, args=(next(iterator),))
    return step_fn, train_fn

  def train_steps(self, iterator, steps: int) -> None:
    """Runs `steps` training steps from a distributed iterator (`train_iterator`, or
    another one: benchmarks, tests); returns once they are queued."""
    self._train_fn(iterator, tf.constant(steps))

  def _make_eval_fn(self):
    model, sums = self.model, self.sums

    def step_fn(batch):
      probs = tf.cast(model(tf.cast(batch["image"], tf.float32), training=False), tf.float32)
      w = batch["weight"]
      per_example = keras.losses.sparse_categorical_crossentropy(batch["label"], probs)
      sums["loss"].assign_add(tf.reduce_sum(per_example * w))
      sums["correct"].assign_add(tf.reduce_sum(w * tf.cast(tf.equal(
          tf.argmax(probs, -1, output_type=tf.int32), batch["label"]), tf.float32)))
      sums["count"].assign_add(tf.reduce_sum(w))

    @tf.function
    def eval_fn(iterator, steps):
      for _ in tf.range(steps):
        self.strategy.run(step_fn, args=(next(iterator),))
    return step_fn, eval_fn

  def metrics(self, reset: bool = True) -> tuple[float, float]:
    """Mean loss and accuracy of the steps since the last reset (waits for them)."""
    loss, correct, count = (float(self.sums[k].read_value()) for k in ("loss", "correct", "count"))
    if reset:
      for v in self.sums.values():
        v.assign(0.0)
    return loss / max(count, 1.0), correct / max(count, 1.0)

  # ---- the loop -------------------------------------------------------------------
  def run(self) -> list[dict]:
    """Trains the phases left (all, or what a checkpoint has not done) and returns the
    history."""
    done = checkpointed_phase(self.model_dir)
    if done >= len(PHASES):
      logging.info("training already finished in %s; nothing to do", self.model_dir)
      self.enter_phase(PHASES[-1])
      self._restore_latest()
      self.cleanup()
      return self.history
    self.enter_phase(PHASES[done])
    self._restore_latest()
    for phase in PHASES[done:]:
      if phase != self.phase:  # _start_next_phase entered it already
        self.enter_phase(phase)
      self._run_phase(phase)
      self._restore_best()
      self._start_next_phase(phase)
    self.cleanup()
    return self.history

  def _restore_latest(self) -> None:
    """Restores the newest checkpoint, if any, and keeps the history it holds."""
    latest = tf.train.latest_checkpoint(os.path.join(self.model_dir, "checkpoints"))
    if latest:
      self.ckpt.restore(latest).assert_existing_objects_matched()
      if int(self.position.phase) < len(PHASES):
        logging.info("resumed from %s: phase %s, %d epoch(s) done, step %d", latest,
                     PHASES[int(self.position.phase)], int(self.position.epoch),
                     int(self.position.step))
    # Only the epochs the checkpoint holds (none without one): a crash between the
    # history write and the checkpoint leaves one record more.
    self.history = [h for h in self.history if (h["phase_index"], h["epoch"]) <= (
        int(self.position.phase), int(self.position.epoch))]

  def _start_next_phase(self, phase: str) -> None:
    """Moves the checkpointed position to the next phase (or past the last) and saves."""
    self.position.phase.assign(PHASES.index(phase) + 1)
    self.position.epoch.assign(0)
    self.position.step.assign(0)
    self.stopping.reset()
    if phase != PHASES[-1]:
      self.enter_phase(PHASES[PHASES.index(phase) + 1])  # the checkpoint holds its optimizer
    self.manager.save()

  def _epochs(self, phase: str) -> int:
    return self.cfg.schedule.head_epochs if phase == "head" else self.cfg.schedule.finetune_epochs

  def _run_phase(self, phase: str):
    epochs = self._epochs(phase)
    while int(self.position.epoch) < epochs and not bool(self.stopping.stopped):
      epoch = int(self.position.epoch)
      start, done_steps = time.time(), int(self.position.step)
      self._train_epoch(phase, epoch, epochs, start, done_steps)
      elapsed = time.time() - start
      train_loss, train_acc = self.metrics()
      val_loss, val_acc = self._validate()
      improved = self.stopping.update(val_loss)
      if improved:
        self.best.save()
        faults.point("after_best_save")
      self.position.epoch.assign_add(1)
      self.position.step.assign(0)
      rate = (self.cfg.steps_per_epoch - done_steps) * self.cfg.global_batch / max(elapsed, 1e-9)
      record = {"phase": phase, "phase_index": PHASES.index(phase), "epoch": epoch + 1,
                "loss": train_loss, "accuracy": train_acc, "val_loss": val_loss,
                "val_accuracy": val_acc, "images_per_sec": rate,
                "lr": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))}
      self.history.append(record)
      if self.chief:
        left = ((epochs - epoch - 1) * self.cfg.steps_per_epoch * self.cfg.global_batch
                / max(rate, 1e-9))
        logging.info(
            "%s epoch %d/%d: loss %.4f acc %.3f | val_loss %.4f val_acc %.3f%s | "
            "%.1f images/s | ETA %s", phase, epoch + 1, epochs, train_loss, train_acc,
            val_loss, val_acc, " *" if improved else "", rate,
            time.strftime("%H:%M:%S", time.gmtime(left)))
        self._write_summaries(record)
        # History first, then the checkpoint: a crash between the two leaves a record
        # the checkpoint does not have, which resume drops and the re-run writes again.
        # (The other order lost the epoch from history.json for good.)
        _save_history(self.model_dir, self.history)
      faults.point("before_checkpoint")
      self.manager.save()
      faults.point("after_checkpoint")
      if bool(self.stopping.stopped):
        logging.info("%s: early stop after %d epochs (val_loss did not improve for %d)",
                     phase, epoch + 1, self.stopping.patience)

  def _train_epoch(self, phase: str, epoch: int, epochs: int, start: float,
                   done_steps: int) -> None:
    """The rest of one epoch's steps, `steps_per_loop` a call; progress lines and
    mid-epoch checkpoints as configured."""
    cfg = self.cfg
    while int(self.position.step) < cfg.steps_per_epoch:
      chunk = min(cfg.steps_per_loop, cfg.steps_per_epoch - int(self.position.step))
      if cfg.log_every_steps:
        chunk = min(chunk, cfg.log_every_steps - int(self.position.step) % cfg.log_every_steps)
      self.train_steps(self.train_iterator, chunk)
      self.position.step.assign_add(chunk)
      step = int(self.position.step)
      if cfg.log_every_steps and step % cfg.log_every_steps == 0 and step < cfg.steps_per_epoch:
        rate = (step - done_steps) * cfg.global_batch / (time.time() - start)
        loss, acc = self.metrics(reset=False)
        eta = (cfg.steps_per_epoch - step) * cfg.global_batch / max(rate, 1e-9)
        if self.chief:
          logging.info("%s epoch %d/%d step %d/%d: loss %.4f acc %.3f | %.1f images/s | "
                       "epoch ETA %s", phase, epoch + 1, epochs, step, cfg.steps_per_epoch,
                       loss, acc, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
      if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 \
          and step < cfg.steps_per_epoch:
        self.manager.save()
        faults.point("mid_epoch")

  def _validate(self) -> tuple[float, float]:
    """Loss and accuracy on the validation split (every example once)."""
    self._eval_fn(iter(self.val_ds), tf.constant(self.cfg.val_steps))
    return self.metrics()

  def _restore_best(self):
    if self.best.latest_checkpoint:
      self.best.checkpoint.restore(self.best.latest_checkpoint).expect_partial()
    else:
      best_dir = os.path.join(self.model_dir, "best")
      latest = tf.train.latest_checkpoint(best_dir)
      if latest:
        tf.train.Checkpoint(model=self.model).restore(latest).expect_partial()

  def _write_summaries(self, record: dict):
    step = sum(1 for _ in self.history)
    with self.writer.as_default():
      for key in ("loss", "accuracy", "val_loss", "val_accuracy", "images_per_sec", "lr"):
        tf.summary.scalar(key, record[key], step=step)
    self.writer.flush()

  def cleanup(self):
    """Removes a non-chief worker's temporary checkpoint folder."""
    if not self.chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)


def _load_history(model_dir: str) -> list[dict]:
  path = os.path.join(model_dir, "history.json")
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _save_history(model_dir: str, history: list[dict]) -> None:
  files.write_json(os.path.join(model_dir, "history.json"), history)
