"""A user's own class folders through the `folder` config: a pool split grouped and
stratified (the same split on every rebuild), split folders kept, the Kaggle layout read
the same way as by its own config, the audit on them, every bad folder stopped with the
folder or file named, and a folder taken through build, train, predict and report with
the user's class names."""

import html
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pydicom
from pydicom.data import get_testdata_file
import pytest
import tensorflow_datasets as tfds

from ctdist.scoring import baseline

from tfds_ctscan import layout
from tfds_ctscan import synthetic
from tfds_ctscan import tfds_ctscan_dataset_builder as builder_module
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A user's classes, drawn with the synthetic generator's findings.
DRAWN_AS = {"benign": "normal", "malignant": "adenocarcinoma",
            "normal": "squamous_cell_carcinoma"}
PER_CLASS = {"benign": 14, "malignant": 12, "normal": 16}


def _png(gray: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(gray).save(buf, "PNG")
  return buf.getvalue()


def _pool(root: pathlib.Path, per_class=PER_CLASS) -> dict:
  """benign/, malignant/ and normal/ of distinct slices, plus an exact copy (benign) and
  a re-encoded near copy (malignant, as JPEG); returns file -> class, from what was
  written (the expected values of the tests)."""
  written = {}
  for cls, n in per_class.items():
    (root / cls).mkdir(parents=True)
    for i in range(n):
      rng = np.random.default_rng([11, list(DRAWN_AS).index(cls), i])
      size = int(rng.integers(40, 65))
      (root / cls / f"{i:03d}.png").write_bytes(
          _png(synthetic.slice_image(DRAWN_AS[cls], rng, size, size)))
      written[f"{cls}/{i:03d}.png"] = cls
  if "benign/000.png" in written:
    shutil.copy(root / "benign" / "000.png", root / "benign" / "000_again.png")
    written["benign/000_again.png"] = "benign"
  if "malignant/001.png" in written:
    Image.open(root / "malignant" / "001.png").save(root / "malignant" / "001_scan.jpg",
                                                     quality=90)
    written["malignant/001_scan.jpg"] = "malignant"
  return written


def _build(manual: pathlib.Path, data_dir: pathlib.Path, **options):
  config = builder_module.CtScanConfig(name="folder", **options)
  b = tfds.builder("tfds_ctscan", config=config, data_dir=str(data_dir))
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual)))
  return b


def _read(b) -> dict:
  """file -> (split, class name, leaked) of a built dataset."""
  names = b.info.features["label"].names
  return {ex["file_name"].decode(): (split, names[ex["label"]], bool(ex["leaked"]))
          for split in layout.SPLITS
          for ex in tfds.as_numpy(b.as_dataset(split=split))}


def test_a_pool_is_split_grouped_and_stratified_the_same_on_every_rebuild(tmp_path):
  written = _pool(tmp_path / "pool")
  built = _read(_build(tmp_path / "pool", tmp_path / "a"))
  # Every file once, under its folder's class; the folders' names, sorted.
  assert {f: c for f, (_, c, _) in built.items()} == written
  b = tfds.builder("tfds_ctscan/folder", data_dir=str(tmp_path / "a"))  # read from disk
  assert b.info.features["label"].names == ["benign", "malignant", "normal"]
  assert b.info.metadata["split"]["seed"] == 0
  assert b.info.metadata["split"]["parts"] == {"train": 7, "valid": 1, "test": 2}
  # Copies never straddle splits, so none is leaked.
  assert built["benign/000.png"][0] == built["benign/000_again.png"][0]
  assert built["malignant/001.png"][0] == built["malignant/001_scan.jpg"][0]
  assert not any(leaked for _, _, leaked in built.values())
  # Stratified: every class in every split, most of it in train (7 parts of 10, whole
  # groups of copies: 12 to 16 images a class here).
  for cls in PER_CLASS:
    in_split = {s: sum(1 for f, (sp, c, _) in built.items() if c == cls and sp == s)
                for s in layout.SPLITS}
    assert all(in_split.values()), (cls, in_split)
    assert 0.55 < in_split["train"] / sum(in_split.values()) < 0.85, (cls, in_split)
  # Rebuilt elsewhere: the same split; another seed: another split.
  assert _read(_build(tmp_path / "pool", tmp_path / "b")) == built
  other = _read(_build(tmp_path / "pool", tmp_path / "c", split_seed=1))
  assert {f: s for f, (s, _, _) in other.items()} != {f: s for f, (s, _, _) in built.items()}


def test_split_folders_are_kept_and_a_mapping_merges_folders_into_classes(kaggle_dir,
                                                                          tmp_path):
  """The Kaggle layout through the folder config, its folder names mapped as the kaggle
  config maps them: the same examples, labels, splits and leaked flags."""
  data = kaggle_dir / "Data"
  folder = _build(data, tmp_path / "folder", classes=dict(layout.FOLDER_TO_LABEL))
  kaggle = tfds.builder("tfds_ctscan/kaggle", data_dir=str(tmp_path / "kaggle"))
  kaggle.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(kaggle_dir)))
  assert _read(folder) == _read(kaggle)
  assert sorted(folder.info.features["label"].names) == sorted(layout.CLASS_NAMES)
  assert folder.info.metadata["split"] == "the folder's own"
  # Files on disk, counted apart from the scanner: every image is an example.
  on_disk = sum(1 for p in data.rglob("*") if p.is_file())
  assert sum(s.num_examples for s in folder.info.splits.values()) == on_disk


def test_a_list_of_classes_sets_their_order(tmp_path):
  _pool(tmp_path / "pool")
  b = _build(tmp_path / "pool", tmp_path / "tfds", classes=["normal", "benign", "malignant"])
  assert b.info.features["label"].names == ["normal", "benign", "malignant"]
  first = next(iter(tfds.as_numpy(b.as_dataset(split="train"))))
  assert b.info.features["label"].names[first["label"]] == first["file_name"].decode(
  ).split("/")[0]


def _one_class(root):
  _pool(root, {"benign": 12})


def _empty_class(root):
  _pool(root)
  (root / "unlabelled").mkdir()
  (root / "unlabelled" / "notes.txt").write_text("to do")


def _splits_differ(root):
  for split in layout.SPLITS:
    _pool(root / split, {"benign": 2, "malignant": 2}
          if split != "test" else {"benign": 2, "normal": 2})


def _some_splits(root):
  _pool(root / "train")
  _pool(root / "test")


def _not_an_image_dicom(root):
  _pool(root)
  ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
  del ds.PixelData
  ds.save_as(root / "malignant" / "report.dcm", enforce_file_format=True)


def _too_few(root):
  _pool(root, {"benign": 12, "malignant": 6})


BAD = {  # name: (writes the folder, builder options, the error names ...)
    "one class": (_one_class, {}, ["holds 1 class folder(s) ['benign']", "at least 2"]),
    "class folder without images": (_empty_class, {}, [
        "class folder(s) without any image", "unlabelled", "remove the folder"]),
    "classes differ between splits": (_splits_differ, {}, [
        "class folders differ between splits", "'normal'", "same classes"]),
    "some split folders only": (_some_splits, {}, ["but no valid/", "give all of"]),
    "a DICOM that is not an image": (_not_an_image_dicom, {}, ["malignant/report.dcm"]),
    "a window of no width": (_pool, {"window_width": 0}, [
        "window_width=0", "must be above 0 HU"]),
    "a class too small to split": (_too_few, {}, [
        "class 'malignant' has 6 distinct images", "train/, valid/ and test/"]),
    "a class not in the given list": (_pool, {"classes": ["benign", "normal"]}, [
        "['malignant']", "not in the given classes"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_folder_stops_the_build_naming_the_folder_and_the_fix(name, tmp_path):
  write, options, says = BAD[name]
  write(tmp_path / "mine")
  with pytest.raises(ValueError) as raised:
    _build(tmp_path / "mine", tmp_path / "tfds", **options)
  for part in says:
    assert part in str(raised.value)
  assert not list((tmp_path / "tfds").rglob("*.tfrecord*"))  # nothing written


def _audit(*args) -> forked.Done:
  return forked.run("tfds_ctscan.audit", *args, timeout=300)


def test_the_audit_shows_the_split_the_build_will_write(tmp_path):
  written = _pool(tmp_path / "pool")
  done = _audit("--layout=folder", str(tmp_path / "pool"), f"--json={tmp_path / 'a.json'}")
  assert done.returncode == 0, done.stderr
  assert "Classes: benign, malignant, normal" in done.stdout
  assert f"Files found {len(written)} = usable images {len(written)} + ignored 0" in done.stdout
  rep = json.loads((tmp_path / "a.json").read_text())
  built = _read(_build(tmp_path / "pool", tmp_path / "tfds"))
  for split in layout.SPLITS:
    for cls in PER_CLASS:
      assert rep["counts"][split][cls] == sum(
          1 for s, c, _ in built.values() if (s, c) == (split, cls))
  assert rep["exact_duplicate_groups"] == [["benign/000.png", "benign/000_again.png"]]
  bad = _audit("--layout=folder", str(tmp_path / "pool" / "benign"))
  assert bad.returncode == 2 and bad.stderr.startswith("error: "), bad.stderr
  assert "Traceback" not in bad.stderr


def _run(*args, timeout=900) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
  return subprocess.run([*args], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.slow
def test_own_folder_to_a_trained_evaluated_reported_model(tmp_path):
  """The README's walk-through: `tfds build` with a config of the user's, then train
  (which evaluates, beside the pixel baseline, and writes the report) and predict: the
  user's class names, in the order given, everywhere."""
  _pool(tmp_path / "pool")
  shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "pool" / "normal" / "ct.dcm")
  tfds_cli = pathlib.Path(sys.executable).with_name("tfds")
  config = json.dumps({"name": "lungs", "classes": ["normal", "benign", "malignant"],
                       "window_center": -500, "window_width": 1400})
  done = _run(str(tfds_cli), "build", "tfds_ctscan", f"--config={config}",
              f"--manual_dir={tmp_path / 'pool'}", f"--data_dir={tmp_path / 'tfds'}")
  assert done.returncode == 0, done.stderr[-3000:]
  info = json.loads(next((tmp_path / "tfds").glob("tfds_ctscan/lungs/*/metadata.json")
                         ).read_text())
  assert info["window"] == {"center": -500.0, "width": 1400.0} and info["dicom_slices"] == 1

  run = tmp_path / "run"
  done = forked.run("ctdist.train", "--dataset=tfds_ctscan/lungs",
                    f"--data_dir={tmp_path / 'tfds'}", f"--model_dir={run}", "--weights=none",
                    "--image_size=32", "--batch_size=4", "--head_epochs=1",
                    "--finetune_epochs=1", "--finetune_layers=5", "--calibrate",
                    "--noexport")
  assert done.returncode == 0, done.stderr[-3000:]
  # Training ends against the trivial baselines, fitted on the train split: the majority
  # baseline's accuracy counted here from the built dataset's labels.
  against = json.loads((run / "baseline_test.json").read_text())
  assert (against["train_split"], against["seed"]) == ("train", 0)
  built = _read(tfds.builder("tfds_ctscan/lungs", data_dir=str(tmp_path / "tfds")))
  train = [c for s, c, _ in built.values() if s == "train"]
  majority = max(["normal", "benign", "malignant"], key=train.count)  # no tie here
  test = [c for s, c, _ in built.values() if s == "test"]
  assert train.count(majority) > max(train.count(c) for c in set(train) - {majority})
  assert against["baselines"][baseline.MAJORITY]["all"]["accuracy"]["b"] == (
      test.count(majority) / len(test))
  assert against["sentence"] in done.stderr
  assert json.loads((run / "metrics.json").read_text())["baseline"]["sentence"] == (
      against["sentence"])
  assert html.escape(against["sentence"]) in (run / "report.html").read_text()
  # Calibrated on the folder's own valid split (--calibrate): the temperature is stored.
  calibration = json.loads((run / "calibration.json").read_text())
  assert calibration["temperature"] > 0
  done = forked.run("ctdist.evaluate", f"--model_dir={run}", "--split=test")
  assert done.returncode == 0, done.stderr[-3000:]
  # The test split's confusion matrix: a row per class of the user's, in their order,
  # and the pixel baseline beside the model.
  rows = re.findall(r"^  (\w+) +\d+ +\d+ +\d+$", done.stdout, re.M)
  assert rows == ["normal", "benign", "malignant"], done.stdout
  assert "B = the pixels" in done.stdout and "McNemar" in done.stdout, done.stdout
  page = (run / "report.html").read_text()
  assert all(f">{name}<" in page for name in ("normal", "benign", "malignant"))

  image = tmp_path / "pool" / "malignant" / "003.png"
  done = forked.run("ctdist.predict", f"--model_dir={run}", str(image))
  assert done.returncode == 0, done.stderr[-3000:]
  header = next(line for line in done.stdout.splitlines() if "prediction" in line)
  assert header.split()[-3:] == ["normal", "benign", "malignant"], done.stdout
