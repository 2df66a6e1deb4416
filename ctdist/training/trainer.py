"""The custom distributed training loop: for each phase not yet done, enter it, train its
epochs, restore its best weights, mark it done; resumable from any checkpoint. One code
path for every strategy: `strategy.run` in a `tf.function` running `steps_per_loop` steps a
call (Keras 3 `model.fit` fails under two-worker MultiWorkerMirroredStrategy, keras#20585).
"""

import os
import shutil
import time

from absl import logging
import keras
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.data import plan as plan_lib
from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.store import run_files
from ctdist.store import faults
from ctdist.training import phases as phases_lib
from ctdist.training import preemption
from ctdist.training import state
from ctdist.training import steps


class Trainer:
  """Runs the phases of `opts.schedule` on `strategy`; resumable from `opts.model_dir`."""

  def __init__(self, strategy, model: keras.Model, opts: training_config.Options,
               plan: plan_lib.StepPlan, train_input, val_ds, chief: bool = True,
               worker: str = "local", class_weights: tuple[float, ...] | None = None,
               loss_scaling: bool = False, watch=None):
    self.strategy, self.model, self.opts, self.plan = strategy, model, opts, plan
    self.model_dir, self.chief, self.loss_scaling = opts.model_dir, chief, loss_scaling
    self.watch = watch or preemption.Watch()  # a signal: checkpoint, stop (or ClusterWatch)
    self.phases = phases_lib.build(opts.schedule)
    self.write_dir = state.write_dir(self.model_dir, chief, worker)
    # train_input(phase, epoch, step): the phase's batches from there on (None: the
    # caller feeds `train_steps` its own iterator).
    self.train_input, self.val_ds, self.train_iterator = train_input, val_ds, None
    self.history = []  # the epochs trained: the checkpoint's on resume
    self.phase = self.optimizer = None  # the phase entered last, and its optimizer
    self.eval_step = self._eval_fn = None  # traced on first use, for both phases
    self.position = state.Position()  # plain host variables: read eagerly on every worker
    self.stopping = state.EarlyStopping(opts.schedule.patience)
    with strategy.scope():
      sync = dict(synchronization=tf.VariableSynchronization.ON_READ,
                  aggregation=tf.VariableAggregation.SUM, trainable=False)
      self.sums = {k: tf.Variable(0.0, **sync) for k in ("loss", "correct", "count")}
      weights = class_weights or (1.0,) * len(ctdist_layers.class_names_of(model))
      self.class_weights = tf.constant(weights, tf.float32)
    # Dropout's random state, which tf.train.Checkpoint(model=...) leaves out: saved with
    # the position, so a resumed run draws the masks the uninterrupted one would have.
    self.seed_states = [v for v in model.variables if "seed_generator_state" in v.path]
    self.writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "tensorboard"))
                   if chief else tf.summary.create_noop_writer())

  # ---- the loop -------------------------------------------------------------------
  def run(self) -> list[dict]:
    """Trains the phases the newest checkpoint has not done (all without one) and
    returns the history."""
    latest = state.latest_checkpoint(self.model_dir)
    done = state.read_position(latest).phase
    if done >= len(self.phases):
      logging.info("training already finished in %s; nothing to do", self.model_dir)
      self._set_layers(self.phases[-1])  # model.keras records the last phase's layers
      self._resume(latest)
    for phase in self.phases[done:]:
      self.enter_phase(phase)
      if latest:  # once: the checkpoint is of the first phase not done
        self._resume(latest)
        latest = None
      self.train_iterator = iter(self.train_input(
          phase, int(self.position.epoch), int(self.position.step)))
      self._run_phase(phase)
      self._restore_best(phase)
      self._mark_done(phase)
    self.cleanup()
    return self.history

  def enter_phase(self, phase: phases_lib.Phase) -> None:
    """Sets up `phase`: trainable layers, a new optimizer (a Keras 3 optimizer only
    updates the variables it was built with), its checkpoints, and the compiled steps."""
    self._set_layers(phase)
    self.optimizer = self._make_optimizer(phase)
    self.ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                    position=self.position, early_stopping=self.stopping,
                                    sums=self.sums, seeds=self.seed_states)
    self.manager = tf.train.CheckpointManager(
        self.ckpt, os.path.join(self.write_dir, run_files.CHECKPOINTS), max_to_keep=2)
    self.best = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=self.model), os.path.join(self.write_dir, "best"),
        max_to_keep=1)
    self.replica_step, self._train_fn = steps.make_train_fn(
        self.strategy, self.model, self.optimizer, self.sums, self.class_weights, self.opts,
        phase.index)
    if self._eval_fn is None:  # the forward pass does not depend on the phase
      self.eval_step, self._eval_fn = steps.make_eval_fn(self.strategy, self.model, self.sums)
    self.phase = phase

  def _set_layers(self, phase: phases_lib.Phase) -> None:
    if phase.unfreeze is None:
      return
    bn_frozen = self.opts.schedule.freeze_batchnorm
    unfrozen = resnet.unfreeze_top(self.model, phase.unfreeze, bn_frozen)
    logging.info("%s: %d base layers with weights unfrozen (BatchNorm %s)", phase.name,
                 len(unfrozen), "frozen" if bn_frozen else "trained")

  def _make_optimizer(self, phase: phases_lib.Phase):
    sch = self.opts.schedule
    lr = phases_lib.phase_learning_rate(phase, sch, self.plan.steps_per_epoch)
    with self.strategy.scope():
      opt = phases_lib.optimizer(sch, lr)
      if self.loss_scaling:
        opt = keras.optimizers.LossScaleOptimizer(opt)
      opt.build(self.model.trainable_variables)
    return opt

  def _resume(self, latest: str) -> None:
    """Restores the newest checkpoint (the optimizer too if written inside the phase
    entered: a phase starts with a new one); keeps the history the checkpoint holds."""
    at = state.read_position(latest)
    inside = self.phase is not None and at.phase == self.phase.index and not at.at_phase_start
    ckpt = self.ckpt if inside else tf.train.Checkpoint(
        model=self.model, position=self.position, early_stopping=self.stopping,
        sums=self.sums, seeds=self.seed_states)
    ckpt.restore(latest).assert_existing_objects_matched()
    if at.phase < len(self.phases):
      logging.info("resumed from %s: phase %s, %d epoch(s) done, step %d", latest,
                   self.phases[at.phase].name, at.epoch, at.step)
    self.history = state.history_until(
        run_files.load_history(self.model_dir) if self.chief else [], at)

  def _mark_done(self, phase: phases_lib.Phase) -> None:
    """Moves the checkpointed position to the next phase's start (or past the last)."""
    self.position.start_phase(phase.index + 1)
    self.stopping.reset()
    self.manager.save()

  # ---- one phase ------------------------------------------------------------------
  def _run_phase(self, phase: phases_lib.Phase) -> None:
    batch, spe = self.opts.batch_size, self.plan.steps_per_epoch
    while int(self.position.epoch) < phase.epochs and not bool(self.stopping.stopped):
      epoch = int(self.position.epoch)
      start, done_steps = time.time(), int(self.position.step)
      self._train_epoch(phase, epoch, start, done_steps)
      elapsed = time.time() - start
      train_loss, train_acc = self.metrics()
      val_loss, val_acc = self._validate()
      improved = self.stopping.update(val_loss)
      if improved:
        self.best.save()
        faults.point("after_best_save")
      self.position.epoch.assign_add(1)
      self.position.step.assign(0)
      rate = (spe - done_steps) * batch / max(elapsed, 1e-9)
      record = {"phase": phase.name, "phase_index": phase.index, "epoch": epoch + 1,
                "loss": train_loss, "accuracy": train_acc, "val_loss": val_loss,
                "val_accuracy": val_acc, "images_per_sec": rate,
                "lr": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))}
      self.history.append(record)
      if self.chief:
        left = (phase.epochs - epoch - 1) * spe * batch / max(rate, 1e-9)
        logging.info(
            "%s epoch %d/%d: loss %.4f acc %.3f | val_loss %.4f val_acc %.3f%s | "
            "%.1f images/s | ETA %s", phase.name, epoch + 1, phase.epochs, train_loss,
            train_acc, val_loss, val_acc, " *" if improved else "", rate,
            time.strftime("%H:%M:%S", time.gmtime(left)))
        self._write_summaries(record)
        # History, then the checkpoint: resume drops a record the checkpoint lacks.
        run_files.save_history(self.model_dir, self.history)
      faults.point("before_checkpoint")
      self.manager.save()
      faults.point("after_checkpoint")
      self.watch.check(self.manager, f"the end of {phase.name} epoch {epoch + 1}", saved=True)
      if bool(self.stopping.stopped):
        logging.info("%s: early stop after %d epochs (val_loss did not improve for %d)",
                     phase.name, epoch + 1, self.stopping.patience)

  def _train_epoch(self, phase: phases_lib.Phase, epoch: int, start: float,
                   done_steps: int) -> None:
    """The rest of one epoch's steps, `steps_per_loop` a call; progress lines and
    mid-epoch checkpoints as configured."""
    opts, spe = self.opts, self.plan.steps_per_epoch
    every_log, every_ckpt = opts.log_every_steps, opts.checkpoint_every_steps
    while int(self.position.step) < spe:
      chunk = min(opts.steps_per_loop, spe - int(self.position.step))
      if every_log:
        chunk = min(chunk, every_log - int(self.position.step) % every_log)
      self.train_steps(self.train_iterator, chunk)
      self.position.step.assign_add(chunk)
      step = int(self.position.step)
      faults.point("after_step")
      if every_log and step % every_log == 0 and step < spe:
        rate = (step - done_steps) * opts.batch_size / (time.time() - start)
        loss, acc = self.metrics(reset=False)
        eta = (spe - step) * opts.batch_size / max(rate, 1e-9)
        if self.chief:
          logging.info("%s epoch %d/%d step %d/%d: loss %.4f acc %.3f | %.1f images/s | "
                       "epoch ETA %s", phase.name, epoch + 1, phase.epochs, step, spe,
                       loss, acc, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
      if every_ckpt and step % every_ckpt == 0 and step < spe:
        self.manager.save()
        faults.point("mid_epoch")
      if step < spe:  # at the epoch's end, after its validation and checkpoint
        self.watch.check(self.manager, f"{phase.name} epoch {epoch + 1}, step {step} of {spe}")

  def train_steps(self, iterator, steps_: int) -> None:
    """Queues `steps_` training steps from a distributed iterator (benchmarks: their own)."""
    self._train_fn(iterator, tf.constant(steps_))

  def metrics(self, reset: bool = True) -> tuple[float, float]:
    """Mean loss and accuracy of the steps since the last reset (waits for them)."""
    loss, correct, count = (float(self.sums[k].read_value()) for k in ("loss", "correct", "count"))
    if reset:
      for v in self.sums.values():
        v.assign(0.0)
    return loss / max(count, 1.0), correct / max(count, 1.0)

  def _validate(self) -> tuple[float, float]:
    """Loss and accuracy on the validation split (every example once)."""
    self._eval_fn(iter(self.val_ds), tf.constant(self.plan.val_steps))
    return self.metrics()

  def _restore_best(self, phase: phases_lib.Phase) -> None:
    """The weights of `phase`'s lowest validation loss (best/ holds them: never another
    phase's). Raises state.DivergedError if no validation of the phase had a finite loss."""
    epochs = int(self.position.epoch)
    if epochs == 0:
      return  # a phase of 0 epochs trains nothing: the weights are those it began with
    if not self.stopping.has_best:
      raise state.DivergedError(phase.name, epochs, phase.lr_flag)
    if self.best.latest_checkpoint:
      self.best.checkpoint.restore(self.best.latest_checkpoint).expect_partial()
    else:
      latest = tf.train.latest_checkpoint(os.path.join(self.model_dir, "best"))
      if latest:
        tf.train.Checkpoint(model=self.model).restore(latest).expect_partial()

  def _write_summaries(self, record: dict) -> None:
    with self.writer.as_default():
      for key in ("loss", "accuracy", "val_loss", "val_accuracy", "images_per_sec", "lr"):
        tf.summary.scalar(key, record[key], step=len(self.history))
    self.writer.flush()

  def cleanup(self) -> None:
    """Removes a non-chief worker's temporary checkpoint folder."""
    if not self.chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)
