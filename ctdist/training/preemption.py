"""A SIGTERM (or SIGINT) is a save, not a loss: the handler only notes the signal; the
training loop finishes the steps it is running, writes a checkpoint at that step, says
where it stopped, and the process exits with 128 + the signal number (143 for SIGTERM,
130 for SIGINT), the status a scheduler reads as "stopped from outside: retry me".

One process (one device, MirroredStrategy, a one-host TPU): `Watch`. Several workers
(MultiWorkerMirroredStrategy): `ClusterWatch`, tf.distribute's PreemptionCheckpointHandler,
which agrees through the cluster's coordination service on the step at which every worker
saves, whichever worker the signal reached. A second signal while the first is being
handled takes its default effect at once (a second Ctrl-C stops without saving).
"""

import os
import signal
import threading

import tensorflow as tf

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
  """Raised by the loop once the checkpoint at the stopping step is written."""

  def __init__(self, signum: int, where: str, checkpoints: str, by: str = ""):
    self.signum, self.where, self.checkpoints = signum, where, checkpoints
    super().__init__(
        f"stopped by {signal.Signals(signum).name}{by} at {where}; checkpoint written in "
        f"{checkpoints}: run the same command again to resume")

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


class Watch:
  """Notes the first SIGTERM or SIGINT between `install` and `uninstall`."""

  def __init__(self, tell=None):
    self.signum = None
    self._previous = {}
    self._tell = tell  # called with the first signal (in the signal handler)

  def install(self) -> "Watch":
    """Installs the handlers (signals reach the main thread only: elsewhere, nothing)."""
    if threading.current_thread() is threading.main_thread():
      for s in SIGNALS:
        self._previous[s] = signal.signal(s, self._note)
    return self

  def uninstall(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _note(self, signum, frame) -> None:
    del frame
    self.signum = signum
    for s in SIGNALS:  # a second signal: its default effect (or the caller's handler)
      signal.signal(s, self._previous.get(s, signal.SIG_DFL))
    if self._tell:
      self._tell()

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def check(self, manager, where: str, saved: bool = False) -> None:
    """After a noted signal: a checkpoint at this step through `manager` (a
    tf.train.CheckpointManager; none if one was just `saved`), then Stopped."""
    if self.signum is None:
      return
    if not saved:
      manager.save()
    raise Stopped(self.signum, where, manager.directory)


class ClusterWatch:
  """`Watch`'s behaviour for several workers: a SIGTERM or SIGINT reaching any one of them
  stops them all after the same step, each saving its checkpoint there (a save is a
  collective: every worker takes part), then Stopped on each. A worker the signal did not
  reach stops as for a SIGTERM (status 143: "retry me").

  The handler counts `check` calls, which every worker makes at the same points of the
  loop, and saves through the CheckpointManager of the phase in progress. The worker a
  signal reaches claims it at once (the handler's own SIGTERM function, called from the
  Watch for SIGINT too), so the cluster stops after the next call: a known step.
  """

  def __init__(self, strategy, model_dir: str):
    self._manager, self._where, self._saved = None, "", False
    self._checkpoints = os.path.join(model_dir, "checkpoints")  # the chief's: resumed from
    config = tf.distribute.experimental.TerminationConfig(exit_fn=self._stop,
                                                          save_fn=self._save)
    # The handler restores its own checkpoint when created: an empty one, in a folder
    # nothing writes to (our checkpoints are the phase's, saved by _save).
    unused = tf.train.CheckpointManager(
        tf.train.Checkpoint(), os.path.join(model_dir, "preemption_handler"), max_to_keep=1)
    before = signal.getsignal(signal.SIGTERM)
    self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, unused, termination_config=config)
    signal.signal(signal.SIGTERM, before)  # the handler set its own: the Watch calls it
    # pylint: disable-next=protected-access
    self.watch = Watch(tell=lambda: self.handler._sigterm_handler_fn(None, None)).install()

  def check(self, manager, where: str, saved: bool = False) -> None:
    self._manager, self._where, self._saved = manager, where, saved
    self.handler.save_checkpoint_if_preempted()

  def _save(self) -> None:
    if not self._saved:
      self._manager.save()

  def _stop(self) -> None:
    own = self.watch.signum
    raise Stopped(own or signal.SIGTERM, self._where, self._checkpoints,
                  "" if own else " (sent to another worker)")

  def uninstall(self) -> None:
    # pylint: disable=protected-access
    self.handler._stop_cluster_wise_termination_watcher_thread()
    self.handler._stop_poll_termination_signal_thread()
    self.watch.uninstall()
