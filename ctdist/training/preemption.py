"""A SIGTERM (or SIGINT) is a save, not a loss: the handler only notes the signal; the
training loop finishes the steps it is running, writes a checkpoint at that step, says
where it stopped, and the process exits with 128 + the signal number (143 for SIGTERM,
130 for SIGINT), the status a scheduler reads as "stopped from outside: retry me".

For one process (one device, MirroredStrategy). A second signal while the first is being
handled takes its default effect at once (a second Ctrl-C stops without saving).
"""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
  """Raised by the loop once the checkpoint at the stopping step is written."""

  def __init__(self, signum: int, where: str, checkpoints: str):
    self.signum, self.where, self.checkpoints = signum, where, checkpoints
    super().__init__(
        f"stopped by {signal.Signals(signum).name} at {where}; checkpoint written in "
        f"{checkpoints}: run the same command again to resume")

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


class Watch:
  """Notes the first SIGTERM or SIGINT between `install` and `uninstall`."""

  def __init__(self):
    self.signum = None
    self._previous = {}

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
