"""The options of the commands that read a trained run: evaluate, calibrate, predict,
explain, report and compare. Each nests the shared groups (`ctdist.config.shared`)."""

import dataclasses

from ctdist.config import flagtree
from ctdist.config import shared

option = flagtree.option
group = flagtree.group
# How ctdist.explain draws a map; auto: the one that passes the pointing game
# (saliency.choice).
METHODS = ("auto", "gradcam", "occlusion")
# The smallest feature map Grad-CAM's default layer may have: ResNet50's last block at
# 224 px gives 7 x 7 (the map of the Grad-CAM paper); at the demo's 32 px that block is
# 1 x 1 (no "where" left), so a shallower block is explained (saliency.gradcam).
MIN_MAP_SIZE = 4
GALLERY = 24  # misclassified images report.html shows, most confident mistakes first
# What ctdist.export writes: TensorFlow Serving's SavedModel, or LiteRT (TensorFlow Lite)
# with its weights as trained, in half precision, or int8 (dynamic-range quantisation).
EXPORT_FORMATS = ("saved_model", "litert")
QUANTIZATIONS = ("float32", "float16", "dynamic_range")


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
  """python -m ctdist.evaluate."""
  run: shared.RunFolder = group(shared.RunFolder)
  data: shared.DataSource = group(shared.DataSource)
  split: shared.SplitChoice = group(shared.SplitChoice)
  batch: shared.PredictBatch = group(shared.PredictBatch)
  baseline: bool = option(True, "Also fit trivial baselines on the train split (raw pixels: "
                          "PCA + logistic regression; the majority class), score them on "
                          "--split and compare the model with each, paired.")


@dataclasses.dataclass(frozen=True)
class CalibrateOptions:
  """python -m ctdist.calibrate."""
  run: shared.RunFolder = group(shared.RunFolder)
  fit_split: str | None = option(
      None, "Split the temperature is fitted on; default: the run's validation part (its "
      "--subset_file's, for a ctdist.cv fold).")
  split: shared.SplitChoice = group(shared.SplitChoice, default=shared.SplitChoice(None))
  batch: shared.PredictBatch = group(shared.PredictBatch)


@dataclasses.dataclass(frozen=True)
class PredictOptions:
  """python -m ctdist.predict."""
  run: shared.RunFolder = group(shared.RunFolder)
  json: bool = option(False, "Print JSON instead of a table.")


@dataclasses.dataclass(frozen=True)
class ExplainOptions:
  """python -m ctdist.explain."""
  run: shared.RunFolder = group(shared.RunFolder)
  out: str | None = option(
      None, "Folder for the pictures and explain.json (default: explain/ in the run's "
      "folder).")
  class_: str | None = option(None, "Class to explain (default: the predicted one).",
                              flag="class")
  method: str = option(
      "auto", "auto: Grad-CAM where it passes the pointing game on the run's data, else "
      "occlusion where that passes (played once, kept in explain/); gradcam; or occlusion "
      "(slow, model-agnostic: the probability drop when a square is covered).",
      choices=METHODS)
  layer: str | None = option(
      None, "Grad-CAM layer, e.g. conv5_block3_out (default: the deepest with a map of at "
      "least --min_map_size a side).")
  min_map_size: int = option(MIN_MAP_SIZE, "Smallest map side the default layer may have.")
  pointing_game: bool = option(
      False, "Score where the maps peak against the dataset's finding boxes "
      "(tfds_ctscan/synthetic) instead.")
  split: shared.SplitChoice = group(shared.SplitChoice)
  data: shared.DataSource = group(shared.DataSource)

  def __post_init__(self):
    if self.min_map_size < 1:
      raise ValueError(f"--min_map_size={self.min_map_size}; use 1 or more")


@dataclasses.dataclass(frozen=True)
class ReportOptions:
  """python -m ctdist.report."""
  run: shared.RunFolder = group(shared.RunFolder)
  data: shared.DataSource = group(shared.DataSource)
  gallery: int = option(GALLERY, "Misclassified images shown at most.")

  def __post_init__(self):
    if self.gallery < 0:
      raise ValueError(f"--gallery={self.gallery}; use 0 (no gallery) or more")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  """python -m ctdist.export."""
  run: shared.RunFolder = group(shared.RunFolder)
  format: str = option(
      "litert", "saved_model: the next version under saved_model/ (TensorFlow Serving); "
      "litert: litert/model_<quantization>.tflite, checked against model.keras on --split.",
      choices=EXPORT_FORMATS)
  quantization: str = option(
      "float32", "LiteRT weights: float32 (as trained), float16 (half the size) or "
      "dynamic_range (int8 weights, a quarter).", choices=QUANTIZATIONS)
  split: shared.SplitChoice = group(shared.SplitChoice)
  data: shared.DataSource = group(shared.DataSource)
  batch: shared.PredictBatch = group(shared.PredictBatch)


@dataclasses.dataclass(frozen=True)
class CompareOptions:
  """python -m ctdist.compare."""
  split: shared.SplitChoice = group(shared.SplitChoice)
  json: str | None = option(None, "Also write the comparison to this JSON file.")
