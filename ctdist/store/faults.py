"""Named crash points for tests: CTDIST_FAULT=POINT[:N] crashes the N-th arrival at POINT;
CTDIST_FAULT=POINT:N:SIGTERM (or SIGINT, SIGKILL) sends that real signal to this process there
instead, as a scheduler would, at a known step; POINT:N:SIGNAL:I only in the worker whose
TF_CONFIG task index is I (a cluster's workers share the variable).

The trainer and the atomic writes call `point(name)` where a crash would leave a run's
files in a state a re-run must cope with. Unset (always, outside tests) a point does
nothing but read the variable.
"""

import json
import os
import signal

ENV = "CTDIST_FAULT"
POINTS = (
    "mid_epoch",          # after a checkpoint inside an epoch (--checkpoint_every_steps)
    "after_best_save",    # best/ holds this epoch's weights; history and checkpoint do not
    "before_checkpoint",  # history.json holds the epoch; the checkpoint does not
    "after_checkpoint",   # history and checkpoint hold the epoch
    "during_export",      # model.keras is written; the SavedModel and metrics are not
    "before_rename",      # an atomic write's temporary file is complete, not yet renamed
    "after_step",         # a call of training steps has returned; the step is counted
)


class Crash(BaseException):
  """An injected crash: a BaseException, so that no `except Exception` swallows it."""


_arrivals = {"spec": None, "count": 0}


def point(name: str) -> None:
  """Raises Crash (or sends the signal named) on the N-th arrival at `name` if
  CTDIST_FAULT names it."""
  if name not in POINTS:
    raise ValueError(f"unknown fault point {name!r}; known: {', '.join(POINTS)}")
  spec = os.environ.get(ENV)
  if not spec:
    return
  wanted, _, nth = spec.partition(":")
  nth, _, signame = nth.partition(":")
  signame, _, task = signame.partition(":")
  if wanted not in POINTS:
    raise ValueError(f"{ENV}={spec!r}: unknown point {wanted!r}; known: {', '.join(POINTS)}")
  if wanted != name or (task and int(task) != _task_index()):
    return
  if _arrivals["spec"] != spec:
    _arrivals.update(spec=spec, count=0)
  _arrivals["count"] += 1
  if _arrivals["count"] == int(nth or 1):
    _arrivals.update(spec=None, count=0)  # counting starts again after a crash
    if signame:
      os.kill(os.getpid(), signal.Signals[signame])
      return
    raise Crash(f"injected crash at {name} (arrival {nth or 1})")


def _task_index() -> int:
  return json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0)
