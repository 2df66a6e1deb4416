"""The dataset builder and audit on fixtures in the real Kaggle layout."""

import io
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image
from scipy import ndimage
import pytest
import tensorflow_datasets as tfds

import tfds_ctscan  # noqa: F401  registers the builder
from tfds_ctscan import audit
from tfds_ctscan import images
from tfds_ctscan import layout
from tfds_ctscan import scan
from tfds_ctscan import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_ADENO = "adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib"
TRAIN_LARGE = "large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa"


def _png(arr, mode=None) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr, mode).save(buf, "PNG")
  return buf.getvalue()


def _build(manual_dir, data_dir):
  builder = tfds.builder("tfds_ctscan/kaggle", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  out = {}
  for split in layout.SPLITS:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      out[ex["file_name"].decode()] = ex
  return builder, out


@pytest.fixture
def dirty_dir(kaggle_dir):
  """The fixture plus the real release's defects."""
  data = kaggle_dir / "Data"
  src = synthetic.slice_image("normal", np.random.default_rng(7), 300, 320)
  (data / "train" / "normal" / "big.png").write_bytes(_png(src))
  # A near copy in valid: rescaled to 80 % and re-saved as JPEG (under a .png name).
  small = Image.fromarray(src).resize((256, 240))
  buf = io.BytesIO()
  small.save(buf, "JPEG", quality=80)
  (data / "valid" / "normal" / "near_copy.png").write_bytes(buf.getvalue())
  # The same image filed under two classes (train adenocarcinoma and train large cell).
  twin = sorted((data / "train" / TRAIN_ADENO).iterdir())[0]
  (data / "train" / TRAIN_LARGE / "twin.png").write_bytes(twin.read_bytes())
  # Junk that must be ignored and reported.
  (data / "test" / "normal" / ".DS_Store").write_bytes(b"\0\1")
  (data / "test" / "normal" / "Thumbs.db").write_bytes(b"\0\1")
  (data / "test" / "normal" / "notes.txt").write_text("scanner notes")
  return kaggle_dir


def test_decode_converts_every_mode_to_rgb():
  gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
  cases = {
      "L": _png(gray, "L"),
      "LA": _png(np.dstack([gray, np.full_like(gray, 255)]), "LA"),
      "RGBA": _png(np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA"),
      "P": _png(np.asarray(Image.fromarray(gray).convert("P"))),
      # Pillow reads a uint16 array as I;16 (Pillow 13 refuses the mode named for it).
      "I;16": _png(gray.astype(np.uint16) * 257),
  }
  for mode, data in cases.items():
    pixels, fmt = images.decode(data, mode)
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3), mode
    assert fmt == "PNG"
    np.testing.assert_allclose(pixels[..., 0], gray, atol=1, err_msg=mode)


def test_decode_by_content_not_extension():
  buf = io.BytesIO()
  Image.new("RGB", (9, 7), (10, 20, 30)).save(buf, "JPEG")
  pixels, fmt = images.decode(buf.getvalue(), "looks_like.png")
  assert fmt == "JPEG" and pixels.shape == (7, 9, 3)


def test_build_unifies_labels_and_flags_leaks(dirty_dir, tmp_path):
  builder, ex = _build(dirty_dir, tmp_path / "tfds")
  names = builder.info.features["label"].names
  assert names == ["adenocarcinoma", "large_cell_carcinoma", "normal",
                   "squamous_cell_carcinoma"]
  assert builder.info.splits["train"].num_examples == 16 + 2  # + twin, big
  assert builder.info.splits["valid"].num_examples == 5 + 1  # + near copy
  assert builder.info.splits["test"].num_examples == 13
  # File names without extension: the generator draws PNG or JPEG per image.
  stem = {os.path.splitext(f)[0]: f for f in ex}
  label = lambda f: names[ex[stem[f]]["label"]]
  # Both naming schemes map to one label.
  assert label(f"train/{TRAIN_ADENO}/0000") == "adenocarcinoma"
  assert label("test/adenocarcinoma/0000") == "adenocarcinoma"
  assert label("test/large.cell.carcinoma/0000") == "large_cell_carcinoma"
  assert label("test/squamous.cell.carcinoma/0000") == "squamous_cell_carcinoma"
  # Leaks: the generator copies the first int(0.15 * n) normal test images from train.
  assert ex[stem["test/normal/0000"]]["leaked"]
  assert ex["valid/normal/near_copy.png"]["leaked"]
  assert not ex[stem["test/normal/0003"]]["leaked"]
  assert not any(e["leaked"] for f, e in ex.items() if f.startswith("train/"))
  # Every example is 8-bit RGB at source resolution.
  for f, e in ex.items():
    assert e["image"].dtype == np.uint8 and e["image"].shape[-1] == 3, f
  src = images.read(dirty_dir / "Data" / stem["test/normal/0003"])[0]
  np.testing.assert_array_equal(ex[stem["test/normal/0003"]]["image"], src)


def test_audit_reports_every_defect(dirty_dir, tmp_path, capsys):
  data = dirty_dir / "Data"
  (data / "train" / ".ipynb_checkpoints").mkdir()
  (data / "train" / ".ipynb_checkpoints" / "a-checkpoint.png").write_bytes(b"\x89PNG")
  (data / "train" / ".ipynb_checkpoints" / "b-checkpoint.txt").write_text("x")
  (data / "README.txt").write_text("Chest CT-Scan images")
  on_disk = sum(len(names) for _, _, names in os.walk(data))  # counted apart from scan
  result = scan.scan(layout.find_data_root(dirty_dir))
  rep = audit.report(result)
  # 34 generated + 6 the fixture adds + 3 here: every file once.
  assert rep["files_found"] == on_disk == 34 + 6 + 3
  assert rep["examples"] == 16 + 2 + 5 + 1 + 13
  assert {i["file"] for i in rep["ignored"]} == {
      "test/normal/.DS_Store", "test/normal/Thumbs.db", "test/normal/notes.txt",
      "train/.ipynb_checkpoints/a-checkpoint.png",
      "train/.ipynb_checkpoints/b-checkpoint.txt", "README.txt"}
  assert "valid/normal/near_copy.png" in rep["leaked"]
  assert any("valid/normal/near_copy.png" in g for g in rep["near_duplicate_groups"])
  assert any(f"train/{TRAIN_LARGE}/twin.png (large_cell_carcinoma)" in g
             for g in rep["label_conflicts"])
  assert {"file": "valid/normal/near_copy.png", "format": "JPEG"} in rep["format_mismatches"]
  text = audit.render(rep)
  assert "Files found" in text and "near_copy.png" in text


def test_manual_dir_accepts_zip_parent_and_data(kaggle_dir, tmp_path):
  zip_dir = tmp_path / "zip"
  zip_dir.mkdir()
  with zipfile.ZipFile(zip_dir / "archive.zip", "w") as z:
    for p in (kaggle_dir / "Data").rglob("*"):
      z.write(p, p.relative_to(kaggle_dir))
  for manual in (kaggle_dir, kaggle_dir / "Data", zip_dir):
    builder, ex = _build(manual, tmp_path / f"tfds_{manual.name}")
    assert len(ex) == 34, manual


def test_missing_split_names_folder(kaggle_dir):
  import shutil
  shutil.rmtree(kaggle_dir / "Data" / "valid")
  with pytest.raises(layout.LayoutError, match=r"no split folder\(s\) \['valid'\]"):
    layout.find_data_root(kaggle_dir)


def test_unknown_class_folder_lists_accepted_names(kaggle_dir, tmp_path):
  (kaggle_dir / "Data" / "test" / "Normal cases").mkdir()
  with pytest.raises(layout.LayoutError) as err:
    _build(kaggle_dir, tmp_path / "tfds")
  assert "Normal cases" in str(err.value)
  assert "large.cell.carcinoma" in str(err.value)


def test_every_unreadable_image_is_listed(kaggle_dir, tmp_path):
  data = kaggle_dir / "Data"
  good = (data / "train" / "normal" / "0000.png").read_bytes()
  (data / "train" / "normal" / "truncated.png").write_bytes(good[: len(good) // 2])
  (data / "valid" / "normal" / "empty.png").write_bytes(b"")
  (data / "test" / "normal" / "text.jpg").write_text("not an image")
  with pytest.raises(scan.UnreadableImagesError) as err:
    _build(kaggle_dir, tmp_path / "tfds")
  msg = str(err.value)
  assert "3 image file(s)" in msg
  for name in ("truncated.png", "empty.png", "text.jpg"):
    assert name in msg


def test_oversized_image_is_refused(tmp_path):
  path = tmp_path / "bomb.png"
  Image.new("L", (7000, 6000)).save(path)  # 42 MP > MAX_PIXELS
  with pytest.raises(images.ImageError, match="above the limit of 40000000"):
    images.read(path)


def test_tfds_build_cli(kaggle_dir, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  tfds_cli = pathlib.Path(sys.executable).with_name("tfds")
  proc = subprocess.run(
      [str(tfds_cli), "build", "tfds_ctscan", f"--manual_dir={kaggle_dir}",
       f"--data_dir={tmp_path / 'out'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  builder = tfds.builder("tfds_ctscan/kaggle", data_dir=str(tmp_path / "out"))
  assert builder.info.splits["test"].num_examples == 13


def test_audit_cli_writes_json(kaggle_dir, tmp_path):
  out = tmp_path / "audit.json"
  proc = subprocess.run(
      [sys.executable, "-m", "tfds_ctscan.audit", str(kaggle_dir), f"--json={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rep = json.loads(out.read_text())
  assert rep["counts"]["test"]["normal"] == 7
  assert "Files found 34 = usable images 34" in proc.stdout


def _tree(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthetic_bytes_depend_on_seed_only(tmp_path):
  """Each image has its own random stream: threads and the other classes' counts do
  not change an image; another seed does. Valid/test normals hold train copies."""
  counts = {"train": {"normal": 8, "adenocarcinoma": 2},
            "test": {"normal": 7, "adenocarcinoma": 1}}
  one = _tree(synthetic.write_kaggle_layout(tmp_path / "a", seed=5, counts=counts,
                                            size_range=(40, 64), threads=1))
  two = _tree(synthetic.write_kaggle_layout(tmp_path / "b", seed=5, counts=counts,
                                            size_range=(40, 64), threads=2))
  assert one == two and len(one) == 18
  fewer = {"train": {"normal": 8}, "test": {"normal": 7}}
  sub = _tree(synthetic.write_kaggle_layout(tmp_path / "c", seed=5, counts=fewer,
                                            size_range=(40, 64), threads=2))
  assert sub == {k: v for k, v in one.items() if "adenocarcinoma" not in k}
  other = _tree(synthetic.write_kaggle_layout(tmp_path / "d", seed=6, counts=counts,
                                              size_range=(40, 64)))
  assert not set(other.values()) & set(one.values())
  train_normals = {v for k, v in one.items() if k.startswith("train/normal/")}
  copies = [k for k, v in one.items() if k.startswith("test/normal/") and v in train_normals]
  assert copies and len(copies) == int(7 * synthetic.LEAK_FRACTION)
  assert len(set(one.values())) == len(one) - len(copies)  # all others differ


def test_synthetic_copies_need_train_normals(tmp_path):
  with pytest.raises(ValueError, match="no.*train.*normal|give train some 'normal'"):
    synthetic.write_kaggle_layout(tmp_path, counts={"test": {"normal": 7}},
                                  size_range=(40, 64))


def test_ordered_map_keeps_order_bounds_lookahead_and_raises_at_item():
  from tfds_ctscan import parallel  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  consumed = []

  def items():
    for i in range(20):
      consumed.append(i)
      yield i

  def slow_square(i):
    time.sleep(0.02 if i % 3 == 0 else 0.0)  # later items finish first
    if i == 13:
      raise KeyError(i)
    return i * i

  out = parallel.ordered_map(slow_square, items(), threads=2)
  assert [next(out) for _ in range(3)] == [0, 1, 4]
  assert len(consumed) <= 3 + 2 * 2  # never the whole input ahead
  assert [next(out) for _ in range(10)] == [i * i for i in range(3, 13)]
  with pytest.raises(KeyError):
    next(out)


def test_kaggle_root_accepts_zip_its_folder_a_parent_and_data(tmp_path):
  """One function decides what a Kaggle folder is, for the builder and the benchmark."""
  data = tmp_path / "download" / "archive" / "Data"
  for split in layout.SPLITS:
    (data / split / "normal").mkdir(parents=True)
  zip_dir = tmp_path / "zipped"
  zip_dir.mkdir()
  with zipfile.ZipFile(zip_dir / "archive.zip", "w") as z:
    for p in data.rglob("*"):
      z.write(p, p.relative_to(data.parent))
  extracted = []

  def extract(archive):
    out = tmp_path / f"x{len(extracted)}"
    zipfile.ZipFile(archive).extractall(out)
    extracted.append(pathlib.Path(archive).name)
    return out

  assert layout.kaggle_root(data, extract) == data
  assert layout.kaggle_root(tmp_path / "download", extract) == data  # two levels up
  assert layout.kaggle_root(zip_dir, extract) == tmp_path / "x0" / "Data"
  assert layout.kaggle_root(zip_dir / "archive.zip", extract) == tmp_path / "x1" / "Data"
  assert extracted == ["archive.zip", "archive.zip"]
  (zip_dir / "other.zip").write_bytes((zip_dir / "archive.zip").read_bytes())
  with pytest.raises(layout.LayoutError, match="no Data/ folder"):
    layout.kaggle_root(zip_dir, extract)  # two zips: which one is meant is unclear


def test_build_decodes_each_image_once(kaggle_dir, tmp_path, monkeypatch):
  # The scan hashes the pixels and writes the PNG the TFRecords hold in the same pass.
  decoded = []
  real = images.decode
  monkeypatch.setattr(images, "decode", lambda data, name="<bytes>", *a, **k: (
      decoded.append(name), real(data, name, *a, **k))[1])
  _, examples = _build(kaggle_dir, tmp_path / "tfds")
  on_disk = sorted(str(p) for p in (kaggle_dir / "Data").rglob("*") if p.is_file())
  assert sorted(decoded) == on_disk
  assert len(examples) == len(on_disk)


@pytest.mark.parametrize("label", ["adenocarcinoma", "large_cell_carcinoma",
                                   "squamous_cell_carcinoma"])
def test_finding_box_holds_the_pixels_the_finding_changed(label):
  """The same random stream drawn as `normal` takes the same draws up to the finding:
  the pixels that differ by far more than the noise (6 grey levels) are the finding's,
  and they must lie in its box."""
  for seed in range(5):
    image, box = synthetic.slice_with_finding(label, np.random.default_rng(seed), 300, 360)
    plain, none = synthetic.slice_with_finding("normal", np.random.default_rng(seed), 300, 360)
    assert none is None
    rows, cols = np.nonzero(np.abs(image.astype(int) - plain.astype(int)) > 50)
    assert len(rows) > 30, (label, seed)
    y0, x0, y1, x1 = box[0] * 300, box[1] * 360, box[2] * 300, box[3] * 360
    assert (rows >= y0).all() and (rows < y1).all(), (label, seed)
    assert (cols >= x0).all() and (cols < x1).all(), (label, seed)
    if label == "adenocarcinoma":  # its halo stands out all round (80 on the lung's 22)
      assert rows.min() - y0 <= 1 and y1 - rows.max() - 1 <= 1, (label, seed)
      assert cols.min() - x0 <= 1 and x1 - cols.max() - 1 <= 1, (label, seed)
    # Tight: averaged over 5 x 5 pixels (noise 6 / 5 * sqrt(2) = 1.7) the finding's
    # faintest edge (a mass 20 grey levels over the tissue it covers) stands out at 12,
    # and it reaches each side of the box to 3 pixels (the window blurs it by 2).
    # (Not for the squamous mass: where it lies on the heart, 135 on 128, it cannot.)
    if label == "squamous_cell_carcinoma":
      continue
    smooth = ndimage.uniform_filter(image.astype(float) - plain, 5)
    rows, cols = np.nonzero(np.abs(smooth) > 12)
    assert abs(rows.min() - y0) <= 3 and abs(rows.max() + 1 - y1) <= 3, (label, seed)
    assert abs(cols.min() - x0) <= 3 and abs(cols.max() + 1 - x1) <= 3, (label, seed)


def test_write_kaggle_layout_records_a_box_for_each_finding(tmp_path):
  data = synthetic.write_kaggle_layout(tmp_path, seed=3, counts={
      "train": {"normal": 3, "adenocarcinoma": 2},
      "test": {"normal": 7, "large_cell_carcinoma": 1, "squamous_cell_carcinoma": 1}},
      size_range=(40, 64))
  boxes = synthetic.read_findings(data)
  assert all((data / name).is_file() for name in boxes)
  assert sorted(name.rsplit(".", 1)[0] for name in boxes) == [
      "test/large.cell.carcinoma/0000", "test/squamous.cell.carcinoma/0000",
      "train/adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib/0000",
      "train/adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib/0001"]
  for ymin, xmin, ymax, xmax in boxes.values():
    assert 0 <= ymin < ymax <= 1 and 0 <= xmin < xmax <= 1
  (tmp_path / synthetic.FINDINGS_FILE).unlink()
  with pytest.raises(FileNotFoundError, match="findings.json not found"):
    synthetic.read_findings(data)
