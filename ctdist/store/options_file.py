"""A run's options on disk: options.json (what evaluate, calibrate, explain, report and a
resumed run read back) and flags.txt (`ctdist.train --flagfile=` repeats the run)."""

import os

import tensorflow as tf

from ctdist.config import flagtree
from ctdist.config import training
from ctdist.store import atomic
from ctdist.store import run_files

# options.json's layout: 1 kept dataset and data_dir at the top (before the shared
# DataSource group); 2 nests them under "data".
FORMAT = 2


class NoOptionsError(FileNotFoundError):
  """A run folder without options.json."""


class OptionsFileError(ValueError):
  """An options.json this version cannot read."""


class ResumeError(ValueError):
  """A run resumed with options that change what it trains."""


def save(opts: training.Options, model_dir: str) -> None:
  """options.json, and flags.txt: `python -m ctdist.train --flagfile=flags.txt` repeats
  the run (add --model_dir=NEW to keep the first)."""
  atomic.write_json(os.path.join(model_dir, run_files.OPTIONS),
                    {"format": FORMAT, **flagtree.to_dict(opts)})
  atomic.write_text(os.path.join(model_dir, run_files.FLAGFILE), flagtree.flagfile(opts))


def _upgrade(values: dict, path: str) -> dict:
  """options.json of any format this version reads, as the current tree's dict."""
  values = dict(values)
  version = values.pop("format", 1)
  if version == 1:
    data = {k: values.pop(k) for k in ("dataset", "data_dir") if k in values}
    values.setdefault("data", data)
  elif version != FORMAT:
    raise OptionsFileError(f"{path}: options format {version!r}; this ctdist reads formats "
                           f"1 to {FORMAT} (written by a newer ctdist? upgrade ctdist)")
  return values


def load(model_dir: str) -> training.Options:
  """The options a run in `model_dir` was trained with.

  Raises:
    NoOptionsError: no options.json (the message says what to pass instead).
    OptionsFileError: not JSON, an unknown format, or options this version lacks.
  """
  path = os.path.join(model_dir, run_files.OPTIONS)
  if not tf.io.gfile.exists(path):
    raise NoOptionsError(f"{path} not found: {model_dir} is not a ctdist run folder (or was "
                         "trained before options.json existed); pass --dataset and --data_dir")
  try:
    values = run_files.read_json(model_dir, run_files.OPTIONS)
    if not isinstance(values, dict):
      raise ValueError(f"expected a JSON object, got {type(values).__name__}")
    return flagtree.from_dict(training.Options, _upgrade(values, path), path)
  except OptionsFileError:
    raise
  except (ValueError, TypeError) as e:  # RunFileError is a ValueError
    raise OptionsFileError(f"{path}: {e}") from e


# What a resumed run may change: where things are, how the work is spread and logged.
# Anything else (data, model, schedule, batch, precision, seed, augmentation) would make
# the checkpoint's run a different run.
RESUMABLE = frozenset({
    "model_dir", "data_dir", "manual_dir", "strategy", "tpu", "steps_per_loop",
    "log_every_steps", "checkpoint_every_steps", "jit_compile", "cache", "cache_dir",
    "eval_split", "export", "calibrate", "report", "baseline"})


def check_resume(opts: training.Options) -> None:
  """Raises ResumeError if `opts.model_dir` holds a checkpoint of a run with other options
  (those outside RESUMABLE), naming each one."""
  checkpoints = os.path.join(opts.model_dir, run_files.CHECKPOINTS)
  if (not tf.io.gfile.exists(os.path.join(opts.model_dir, run_files.OPTIONS))
      or tf.train.latest_checkpoint(checkpoints) is None):
    return
  before, now = flagtree.flat(load(opts.model_dir)), flagtree.flat(opts)
  changed = [f"--{k}={before[k]} -> {now[k]}" for k in now
             if k not in RESUMABLE and before.get(k) != now[k]]
  if changed:
    raise ResumeError(
        f"{opts.model_dir} holds a checkpoint of a run with other options: "
        f"{', '.join(changed)}; resume with its flags (--flagfile={opts.model_dir}/"
        "flags.txt) or train into a new --model_dir")


def run_dataset(model_dir: str, dataset: str | None = None, data_dir: str | None = None
                ) -> tuple[str, str | None]:
  """(dataset, data_dir) of the run in `model_dir` (its options.json), each unless given;
  a folder without options.json needs `dataset`.

  Raises:
    NoOptionsError: no options.json and no `dataset`.
    OptionsFileError: an unreadable options.json.
  """
  saved = tf.io.gfile.exists(os.path.join(model_dir, run_files.OPTIONS))
  run = load(model_dir) if saved or dataset is None else None
  return dataset or run.data.dataset, data_dir or (run.data.data_dir if run else None)
