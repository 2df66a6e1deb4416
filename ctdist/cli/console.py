"""What a user's terminal shows: ctdist's own lines, TensorFlow's noise only with -v.

Imported first by every entry module: TensorFlow reads TF_CPP_MIN_LOG_LEVEL once,
when it loads, before absl has parsed any flag, so the level is chosen here from
the command line's -v/--verbosity (absl's own flag, read, never redefined).
"""

import importlib.util
import logging as py_logging
import os
import sys

from absl import flags
from absl import logging

from ctdist.config import flagtree

_PACKAGES = ("ctdist", "tfds_ctscan")
# TFDS warns so about the folder it is about to build into.
_TFDS_EMPTY_VARIANT = "Variant folder %s has no %s"


def verbosity_requested(argv: list[str]) -> int:
  """The value of absl's -v/--verbosity in `argv` (0 if absent or unreadable)."""
  for i, arg in enumerate(argv):
    for name in ("-v", "--v", "--verbosity"):
      value = None
      if arg.startswith(name + "="):
        value = arg.split("=", 1)[1]
      elif arg == name and i + 1 < len(argv):
        value = argv[i + 1]
      if value is not None:
        try:
          return int(value)
        except ValueError:
          return 0
  return 0


def _import_tensorflow_quietly() -> None:
  """Loads TensorFlow with file descriptor 2 pointed at /dev/null: its shared
  libraries print notices while loading ("Could not find cuda drivers", "All log
  messages before absl::InitializeLog()") that no environment variable hides.
  An import error is still raised, and printed, after stderr is back."""
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  try:
    sys.stderr.flush()
    os.dup2(devnull, 2)
    import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


# Without -v: C++ INFO, WARNING and ERROR notices (oneDNN banners, cuInit on a
# machine without a GPU) are hidden. A level the user exported is TensorFlow's to
# apply, from the first notice on: nothing is hidden from them then.
if (verbosity_requested(sys.argv) < 1 and "tensorflow" not in sys.modules
    and "TF_CPP_MIN_LOG_LEVEL" not in os.environ):
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  _import_tensorflow_quietly()


def _package_dirs() -> tuple[str, ...]:
  """The folders ctdist and tfds_ctscan are imported from, each ending in a separator."""
  dirs = []
  for name in _PACKAGES:
    spec = importlib.util.find_spec(name)
    dirs += [os.path.join(os.path.realpath(d), "") for d in spec.submodule_search_locations]
  return tuple(dirs)


class _OwnLines(py_logging.Filter):
  """Passes ctdist's and tfds_ctscan's records, and anyone's warnings and errors.

  A record is ctdist's when its source file lies in ctdist's own folder: not when its
  path merely holds "/ctdist/" (a clone named ctdist has its venv, TFDS and TensorFlow
  included, below such a folder: their INFO lines, "Constructing tf.data.Dataset…",
  "Sharding callback duration…", passed for ctdist's)."""

  def __init__(self):
    super().__init__()
    self.dirs = _package_dirs()

  def filter(self, record):
    own = os.path.realpath(record.pathname).startswith(self.dirs)
    if record.msg == _TFDS_EMPTY_VARIANT:  # before every first build: not a problem
      return False
    return own or record.levelno >= py_logging.WARNING


class _Plain(py_logging.Formatter):
  """The message alone; warnings and errors say so."""

  def format(self, record):
    message = record.getMessage()
    if record.levelno >= py_logging.WARNING:
      message = f"{record.levelname.lower()}: {message}"
    if record.exc_info:
      message += "\n" + self.formatException(record.exc_info)
    return message


def setup(verbosity: int) -> None:
  """Plain progress lines at the default verbosity; absl's full format with -v 1."""
  if verbosity >= 1:
    return
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  handler = logging.get_absl_handler()
  handler.setFormatter(_Plain())
  handler.addFilter(_OwnLines())
  py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


def options(cls):
  """The `cls` options tree from the parsed flags; a value a field refuses (its check
  names it) ends the program as a user's mistake."""
  try:
    return flagtree.from_flags(cls)
  except ValueError as e:
    fail(e)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (app.run's flags_parser) with a refused flag (an unknown name, a
  value outside its choices) ending as a user's mistake: one line, exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e} (--helpshort lists the flags)")


def stopped(stop) -> None:
  """Ends the program after a SIGTERM/SIGINT was turned into a checkpoint
  (training.preemption.Stopped): one line saying where, status 128 + the signal."""
  logging.warning("%s", stop)
  sys.exit(stop.exit_status)


def fail(error: Exception) -> None:
  """Ends the program on a user's mistake: its one message, exit status 2."""
  print(f"error: {error}", file=sys.stderr)
  sys.exit(2)


def run_model(run):
  """The keras.Model of the run a command was given (`shared.RunFolder`), in safe mode;
  one line when it was named by the old --model spelling.

  Raises:
    shared.RunFolderError, saved.ModelFileError: user's mistakes (user_errors.READING_A_RUN).
  """
  # Here, not at the top: this module is imported before TensorFlow, to quiet it.
  from ctdist.model import saved  # pylint: disable=g-import-not-at-top
  note_old_spelling(run)
  return saved.load(run.model_file, run.flag)


def note_old_spelling(run) -> None:
  """One line when a run was named by its model.keras (--model) instead of --model_dir."""
  if run.model is not None and os.path.basename(run.model) == "model.keras":
    logging.warning("--model=%s is the old spelling; use --model_dir=%s", run.model,
                    run.folder)
