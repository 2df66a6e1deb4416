"""tfds_ctscan dataset: chest CT slices in four classes, with cross-split leak flags."""

import atexit
import dataclasses
import os
import pathlib
import shutil
import tempfile
from typing import Any

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from tfds_ctscan import dicom
from tfds_ctscan import layout
from tfds_ctscan import own_folder
from tfds_ctscan import scan
from tfds_ctscan import splitting

KAGGLE_DATASET = "mohamedhanyyy/chest-ctscan-images"


@dataclasses.dataclass
class CtScanConfig(tfds.core.BuilderConfig):
  """`kaggle` reads the manual dir; `synthetic` generates slices from `seed`. Any other
  name is a user's own class folders, read from the manual dir (`is_own_folder`):

    tfds build tfds_ctscan --config='{"name": "mine", "classes": ["a", "b"]}' \
        --manual_dir=YOUR_FOLDER --data_dir=DATA_DIR

  (or `CtScanConfig(name="mine", ...)` from Python), read back as `tfds_ctscan/mine`.
  They are not listed in BUILDER_CONFIGS, so `tfds build tfds_ctscan` builds the Kaggle
  release and the synthetic set only, as it always has. Their options, recorded in the
  dataset's metadata:
    classes: the class names: a list of folder names (label order) or a dict folder ->
      class name; by default each folder is a class, sorted.
    window_center, window_width: the Hounsfield window of DICOM slices (lung by default).
    split_seed: the shuffle of a pool's grouped, stratified split.
  """
  seed: int = 0
  classes: Any = None
  window_center: float = dicom.LUNG.center
  window_width: float = dicom.LUNG.width
  split_seed: int = 0

  @property
  def is_own_folder(self) -> bool:
    return self.name not in ("kaggle", "synthetic")

  def window(self) -> dicom.Window:
    return own_folder.window(self.window_center, self.window_width, "window_width")


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for tfds_ctscan."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: unified labels, `leaked` flags."}
  BUILDER_CONFIGS = [
      CtScanConfig(name="kaggle",
                   description="The Kaggle release, read from --manual_dir."),
      CtScanConfig(name="synthetic", seed=0, version="1.3.0",
                   release_notes={
                       "1.3.0": "Each finding's box stored (`findings`); the same images.",
                       "1.2.0": "Every image drawn from its own random stream "
                                "(generated on all cores); new draws.",
                       "1.1.0": "Findings redrawn larger, visible at 32 px.",
                       "1.0.0": "Initial release."},
                   description="Procedural CT-like slices (not clinical data), "
                               "613/72/315 images, generated offline."),
  ]
  DEFAULT_CONFIG_NAME = "kaggle"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download the Kaggle dataset "Chest CT-Scan images" ({KAGGLE_DATASET}):
    https://www.kaggle.com/datasets/{KAGGLE_DATASET}
  (the "Download" button gives archive.zip, about 120 MB), or with the Kaggle CLI:
    kaggle datasets download -d {KAGGLE_DATASET}
  Put the zip, or its unzipped content (the folder that contains Data/, or
  Data/ itself with train/, valid/ and test/) into the manual dir, then run:
    tfds build tfds_ctscan --manual_dir=THAT_DIR
  With Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME and
  KAGGLE_KEY) and an empty manual dir, the download is done for you.

  Your own class folders (PNG, JPEG or DICOM; train/, valid/ and test/ or one pool of
  class folders) are built under a config name of your choice:
    tfds build tfds_ctscan --config='{{"name": "mine"}}' --manual_dir=YOUR_FOLDER
  """

  def _info(self) -> tfds.core.DatasetInfo:
    # A user's folder's class names are set when it is built (from its folders or the
    # `classes` option) and read back from the built dataset (label.labels.txt).
    label = (tfds.features.ClassLabel() if self.builder_config.is_own_folder
             else tfds.features.ClassLabel(names=list(layout.CLASS_NAMES)))
    features = {
        "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8),
        "label": label,
        "file_name": tfds.features.Text(),
        "leaked": tfds.features.Scalar(
            dtype=np.bool_, doc="An exact or near copy of an image in an earlier split."),
    }
    if self.builder_config.name == "synthetic":  # the Kaggle release has no annotations
      features["findings"] = tfds.features.Sequence(
          tfds.features.BBoxFeature(doc="Where the finding was drawn; none for normal."))
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=("image", "label"),
        homepage=f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    if self.builder_config.name == "synthetic":
      # Imported here, not at the top: `python -m tfds_ctscan.synthetic` must not find
      # its module already imported by the package (runpy warns).
      from tfds_ctscan import synthetic  # pylint: disable=g-import-not-at-top
      out = tempfile.mkdtemp(prefix="tfds_ctscan_synthetic_")
      atexit.register(shutil.rmtree, out, ignore_errors=True)
      data_root = synthetic.write_kaggle_layout(out, seed=self.builder_config.seed)
      self._findings = synthetic.read_findings(data_root)
    elif self.builder_config.is_own_folder:
      data_root = own_folder.layout_of(_manual_folder(dl_manager, self.builder_config.name),
                                self.builder_config.classes)
    else:
      data_root = layout.find_data_root(_kaggle_folder(dl_manager))
    config = self.builder_config
    window = config.window()
    # Decoded once: the scan writes each image's pixels as PNG while it hashes them.
    encoded = tempfile.mkdtemp(prefix="tfds_ctscan_png_")
    atexit.register(shutil.rmtree, encoded, ignore_errors=True)
    result = scan.scan(data_root, encode_to=pathlib.Path(encoded), window=window,
                       split_seed=config.split_seed)
    scan.raise_if_unreadable(result)
    _log_summary(result)
    if config.is_own_folder:
      self.info.features["label"].names = list(result.class_names)
    self.info.metadata.update({
        "window": {"center": window.center, "width": window.width},
        "dicom_slices": sum(r.format == "DICOM" for r in result.records),
        "split": ({"assigned": "grouped, stratified (tfds_ctscan.splitting)",
                   "seed": config.split_seed, "parts": dict(splitting.PARTS)}
                  if result.pooled else "the folder's own"),
    })
    return {split: self._generate_examples(result, split)
            for split in layout.SPLITS}

  def _generate_examples(self, result: scan.Scan, split: str):
    chosen = [(r, leaked) for r, leaked in zip(result.records, result.leaked)
              if r.file.split == split]
    for record, leaked in chosen:
      example = {
          "image": record.encoded.read_bytes(),
          "label": record.file.label,
          "file_name": record.file.rel_name,
          "leaked": leaked,
      }
      if self.builder_config.name == "synthetic":
        box = self._findings.get(record.file.rel_name)
        example["findings"] = [] if box is None else [tfds.features.BBox(*box)]
      yield record.file.rel_name, example


def _has_kaggle_credentials() -> bool:
  return bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
              ) or (pathlib.Path.home() / ".kaggle" / "kaggle.json").exists()


def _manual_folder(dl_manager, self_name: str) -> pathlib.Path:
  try:
    return pathlib.Path(dl_manager.manual_dir)
  except AssertionError as e:  # TFDS's "manual dir does not exist or is empty"
    raise layout.LayoutError(
        f"the {self_name} config reads your class folders from the manual dir: pass "
        "--manual_dir=YOUR_FOLDER (it is missing or empty)") from e


def _kaggle_folder(dl_manager) -> pathlib.Path:
  """`Data/` of the manual dir (any form `layout.kaggle_root` accepts), or of a Kaggle
  download if the manual dir is empty."""
  try:
    manual = pathlib.Path(dl_manager.manual_dir)
  except AssertionError:  # TFDS's "manual dir does not exist or is empty"
    if not _has_kaggle_credentials():
      raise
    return pathlib.Path(dl_manager.download_kaggle_data(KAGGLE_DATASET))
  return layout.kaggle_root(manual, dl_manager.extract)


def _log_summary(result: scan.Scan) -> None:
  counts = {}
  for r in result.records:
    key = (r.file.split, r.file.label)
    counts[key] = counts.get(key, 0) + 1
  for (split, label), n in sorted(counts.items()):
    logging.info("tfds_ctscan: %s/%s: %d images", split, label, n)
  for ig in result.ignored:
    logging.warning("tfds_ctscan: ignored %s: %s", ig.rel_name, ig.reason)
  for group in scan.label_conflicts(result):
    logging.warning("tfds_ctscan: one image filed under several classes: %s",
                    ", ".join(group))
  logging.info(
      "tfds_ctscan: files found %d = examples written %d + files ignored %d; "
      "%d valid/test examples flagged leaked", result.files_found,
      len(result.records), len(result.ignored), sum(result.leaked))
