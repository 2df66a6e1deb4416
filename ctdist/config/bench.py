"""The options of `python -m ctdist.bench`."""

import dataclasses

from ctdist.config import flagtree
from ctdist.config import shared
from ctdist.config import training

option = flagtree.option


@dataclasses.dataclass(frozen=True)
class BenchOptions:
  """What `python -m ctdist.bench` is told; flags of the same names fill it."""
  data: shared.DataSource = flagtree.group(
      shared.DataSource, default=shared.DataSource(dataset="tfds_ctscan/synthetic"))
  tmp: str | None = option(None, "Scratch folder; default: a new temporary one.")
  folder: str | None = option(
      None, "`build`, `input`: Kaggle-layout folder (containing Data/); default: the synthetic "
      "config exported to --tmp.")
  json: str | None = option(None, "Also write the results as JSON here.")
  image_size: int = option(224, "Input height and width.")
  batch_size: int = option(32, "Global batch.")
  strategy: str = option("auto", "Strategy for step benchmarks.",
                         choices=training.STRATEGIES)
  precision: str = option("auto", "Precision for `step` and `scaling`.",
                          choices=training.PRECISIONS)
  phases: tuple[str, ...] = option(training.PHASE_NAMES, "Phases timed by step benchmarks.")
  finetune_layers: int = option(50, "Layers unfrozen for the fine-tune phase (-1 all).")
  steps: int = option(20, "Timed steps per measurement.")
  warmup: int = option(3, "Untimed steps before each measurement.")
  repeats: int = option(3, "Alternating repetitions; the median is reported.")
  steps_per_loop: int = option(1, "Steps per tf.function call.")
  epochs: int = option(3, "`input`: steady-state epochs timed after the first.")
  replicas: int = option(2, "`scaling`: replicas (logical CPUs when there is no GPU).")
  jit_compile: bool = option(
      False, "`step`/`precision`/`augment`/`scaling`: XLA for the replica step.")
  deterministic: bool = option(
      False, "`step`: TensorFlow op determinism, as ctdist.train --deterministic (run "
      "once with, once without).")

  def __post_init__(self):
    unknown = [p for p in self.phases if p not in training.PHASE_NAMES]
    if unknown:
      raise ValueError(f"phases {unknown} unknown; use some of "
                       f"{','.join(training.PHASE_NAMES)}")
