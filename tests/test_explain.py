"""Grad-CAM: it points at planted evidence, passes Adebayo et al.'s sanity checks
(re-initialised top layers and other inputs change the map; a little noise does not), and
`python -m ctdist.explain` works on ctdist models at 32 and 224 px."""

import json
import os
import pathlib

import keras
import numpy as np
from PIL import Image
import pytest

from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import saved
from ctdist.saliency import choice
from ctdist.saliency import explainers
from ctdist.saliency import gradcam
from ctdist.saliency import occlusion
from ctdist.saliency import overlay
from ctdist.saliency import pointing
import forked
import sanity

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLOURS = ["red", "green", "blue"]
SIDE = 6  # the planted square's side, pixels of 32


def _squares(seed: int, n: int):
  """Grey noise with one bright square per image in the channel of its class: the
  evidence, and its box, are known without the model."""
  rng = np.random.default_rng(seed)
  x = np.clip(rng.normal(100, 12, (n, 32, 32, 3)), 0, 255).astype(np.float32)
  y = rng.integers(0, 3, n)
  boxes = []
  for i in range(n):
    cy, cx = (int(v) for v in rng.integers(SIDE // 2, 32 - SIDE // 2, 2))
    y0, x0 = cy - SIDE // 2, cx - SIDE // 2
    x[i, y0:y0 + SIDE, x0:x0 + SIDE, y[i]] = 250
    boxes.append(np.array([[y0 / 32, x0 / 32, (y0 + SIDE) / 32, (x0 + SIDE) / 32]]))
  return x, y, boxes


@pytest.fixture(scope="module")
def toy():
  """A small CNN laid out as ctdist's (a nested convolutional base, then a head and the
  labelled softmax), trained to tell the squares' colours."""
  keras.utils.set_random_seed(0)
  inp = keras.Input((32, 32, 3))
  h = keras.layers.Rescaling(1 / 255)(inp)
  for i, filters in enumerate((16, 32)):
    h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(h)
  base = keras.Model(inp, h, name="base")
  image = keras.Input((32, 32, 3), name="image")
  z = keras.layers.GlobalAveragePooling2D(name="gap")(base(image))
  z = keras.layers.Dense(32, activation="tanh", name="fc")(z)
  z = keras.layers.Dense(3, name="logits")(z)
  model = keras.Model(image, ctdist_layers.LabeledSoftmax(COLOURS, name="probabilities")(z))
  model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
  x, y, _ = _squares(0, 512)
  model.fit(x, y, epochs=15, batch_size=32, verbose=0)
  x, y, boxes = _squares(100, 64)
  ex = gradcam.Explainer(model, gradcam.choose_layer(model))
  cams, probs, explained = ex.maps(x)
  assert (probs.argmax(1) == y).mean() >= 0.9  # the checks below need a model that learned
  return {"model": model, "ex": ex, "x": x, "y": y, "boxes": boxes, "cams": cams,
          "explained": explained}


def test_the_default_layer_is_the_deepest_map_and_the_predicted_class_is_explained(toy):
  assert toy["ex"].layer == gradcam.Layer(("base", "conv1"), 32, 32)
  np.testing.assert_array_equal(toy["explained"], toy["ex"].maps(toy["x"])[1].argmax(1))
  assert toy["cams"].shape == (64, 32, 32)
  assert toy["cams"].min() >= 0 and np.allclose(toy["cams"].max((1, 2)), 1)


def test_maps_point_at_the_planted_square(toy):
  result = pointing.score(toy["cams"], toy["boxes"], toy["y"], COLOURS)
  assert result["chance"] == pytest.approx((SIDE / 32) ** 2)
  for name, c in result["per_class"].items():
    assert c["share"] >= 0.9, (name, c)
  # Another class's map of the same image is not the square's: explaining green on a red
  # square points elsewhere most of the time.
  other = toy["ex"].maps(toy["x"], (toy["y"] + 1) % 3)[0]
  assert pointing.score(other, toy["boxes"], toy["y"], COLOURS)["share"] <= 0.5


def test_occlusion_points_at_the_planted_square_too(toy):
  occluder = occlusion.Occluder(toy["model"])
  assert (occluder.patch, occluder.stride) == (6, 3)  # 3/16 of 32 px, half of that apart
  maps, _, explained = occluder.maps(toy["x"][:24], toy["y"][:24])
  np.testing.assert_array_equal(explained, toy["y"][:24])
  result = pointing.score(maps, toy["boxes"][:24], toy["y"][:24], COLOURS)
  assert result["share"] >= 0.9, result


def test_randomised_top_layers_change_the_map(toy):
  """Cascading model randomisation: the head and the explained convolution re-initialised."""
  noisy = np.clip(toy["x"] + np.random.default_rng(1).normal(0, 2, toy["x"].shape), 0, 255)
  self_similarity = sanity.median_similarity(toy["cams"], toy["ex"].maps(noisy)[0])
  assert self_similarity >= 0.9
  layers = sanity.top_layers(toy["model"], 2) + ["base/conv1"]
  assert layers == ["fc", "logits", "base/conv1"]
  before = [w.copy() for w in toy["model"].get_weights()]
  random_model = sanity.randomized_copy(toy["model"], layers)
  for a, b in zip(before, toy["model"].get_weights()):  # the trained model is untouched
    np.testing.assert_array_equal(a, b)
  random_maps = gradcam.Explainer(random_model, toy["ex"].layer).maps(
      toy["x"], toy["explained"])[0]
  randomised = sanity.median_similarity(toy["cams"], random_maps)
  assert randomised <= 0.5 and randomised <= self_similarity - 0.4, (randomised,
                                                                     self_similarity)


def test_the_map_depends_on_the_input(toy):
  # Each image's map against the next image's: other squares, other maps.
  across = sanity.median_similarity(toy["cams"], np.roll(toy["cams"], 1, axis=0))
  assert across <= 0.5, across


def test_rank_correlation_by_hand():
  assert sanity.rank_correlation(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == 1
  assert sanity.rank_correlation(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == -1
  # Spearman of (1,2,3,4) and (1,3,2,4): 1 - 6 * (0+1+1+0) / (4 * 15) = 0.8
  assert sanity.rank_correlation(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == (
      pytest.approx(0.8))
  assert sanity.rank_correlation(np.zeros(4), np.zeros(4)) == 1
  assert sanity.rank_correlation(np.zeros(4), np.arange(4)) == 0


def test_pointing_game_by_hand():
  cam = np.zeros((2, 10, 10))
  cam[0, 2, 3] = 1  # peak at pixel centre (0.25, 0.35)
  cam[1, 9, 9] = 1  # (0.95, 0.95)
  box = np.array([[0.2, 0.3, 0.4, 0.5]])  # 0.2 x 0.2 = 0.04 of the image
  result = pointing.score(cam, [box, box], np.array([0, 1]), ["a", "b"])
  assert (result["hits"], result["images"], result["chance"]) == (1, 2, pytest.approx(0.04))
  assert result["per_class"] == {"a": {"images": 1, "hits": 1, "share": 1.0,
                                       "chance": pytest.approx(0.04)},
                                 "b": {"images": 1, "hits": 0, "share": 0.0,
                                       "chance": pytest.approx(0.04)}}


def test_a_coarse_map_is_scored_by_its_cells():
  # A 4 x 4 map of a 32 px image: cells 8 px wide. The box (0.3-0.45 of each side)
  # touches one cell, (1, 1): chance 1/16.
  box = np.array([[0.3, 0.3, 0.45, 0.45]])
  cam = np.zeros((2, 4, 4))
  cam[0, 1, 1] = 1
  cam[1, 0, 0] = 1
  result = pointing.score(cam, [box, box], np.array([0, 0]), ["a"])
  assert (result["hits"], result["chance"]) == (1, pytest.approx(1 / 16))
  # An all-zero map points nowhere, even where the box would cover its first cell.
  corner = np.array([[0.0, 0.0, 0.2, 0.2]])
  assert pointing.score(np.zeros((1, 4, 4)), [corner], np.array([0]), ["a"])["hits"] == 0


def test_the_peak_of_a_flat_maximum_is_its_centre():
  cam = np.zeros((8, 8))
  cam[0:4, 0:4] = 1  # an upsampled corner cell: a 4 x 4 plateau
  assert gradcam.peak(cam) == (pytest.approx(2 / 8), pytest.approx(2 / 8))
  cam = np.zeros((4, 4))
  cam[2, 1] = 0.7
  assert gradcam.peak(cam) == (pytest.approx(2.5 / 4), pytest.approx(1.5 / 4))


def test_the_class_asked_for_is_the_one_explained(toy):
  asked = (toy["y"] + 2) % 3
  _, _, explained = toy["ex"].maps(toy["x"], asked)
  np.testing.assert_array_equal(explained, asked)
  mixed = np.where(np.arange(len(asked)) % 2 == 0, asked, -1)  # -1: the predicted class
  _, probs, explained = toy["ex"].maps(toy["x"], mixed)
  np.testing.assert_array_equal(explained, np.where(mixed < 0, probs.argmax(1), asked))


def test_a_model_without_a_convolution_is_refused():
  inp = keras.Input((8, 8, 3))
  out = keras.layers.Dense(2)(keras.layers.Flatten()(inp))
  with pytest.raises(gradcam.NoFeatureMapError, match="no convolutional layer"):
    gradcam.choose_layer(keras.Model(inp, out, name="flat"))


def test_the_resnet_layer_follows_the_image_size():
  small = resnet.build_model(32, COLOURS, weights="none")
  assert gradcam.choose_layer(small) == gradcam.Layer(("resnet50", "conv3_block4_out"), 4, 4)
  big = resnet.build_model(224, COLOURS, weights="none")
  assert gradcam.choose_layer(big) == gradcam.Layer(("resnet50", "conv5_block3_out"), 7, 7)
  assert gradcam.choose_layer(big, "conv4_block6_out").height == 14
  with pytest.raises(gradcam.NoFeatureMapError, match="--layer='fc1'"):
    gradcam.choose_layer(big, "fc1")


def _env():
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return dict(env, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")


def _run(module, *args, timeout=900):
  return forked.run(module, *args, env=_env(), timeout=timeout)


@pytest.mark.slow
def test_explain_cli_on_a_model_trained_at_224_px(tmp_path, small_data_dir):
  run = tmp_path / "run"
  done = _run("ctdist.train", f"--model_dir={run}", f"--data_dir={small_data_dir}",
              "--dataset=tfds_ctscan/kaggle", "--weights=none", "--nofreeze_batchnorm",
              "--image_size=224", "--batch_size=8", "--head_epochs=0",
              "--finetune_epochs=1", "--finetune_layers=5", "--noexport", "--noreport",
              "--nobaseline")
  assert done.returncode == 0, done.stderr[-3000:]
  manual = pathlib.Path(small_data_dir).parent / "manual" / "Data" / "test"
  images = sorted(manual.glob("*/*"))[:2]
  bad = tmp_path / "notes.png"
  bad.write_text("not an image")
  out = tmp_path / "explained"
  done = _run("ctdist.explain", f"--model={run / 'model.keras'}", *images, bad,
              f"--out={out}")
  assert done.returncode == 1, done.stderr[-3000:]  # the bad file, named; the others done
  assert f"{bad}: ERROR" in done.stdout
  report = json.loads((out / "explain.json").read_text())
  assert report["layer"] == "resnet50/conv5_block3_out" and report["map_size"] == [7, 7]
  for path, result in zip(images, report["images"]):
    assert result["file"] == str(path)
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert result["explained"] == result["predicted"]
    for kind in ("input", "heatmap", "overlay"):
      width, height = Image.open(result["files"][kind]).size
      assert width == 224 and (height == 224 if kind != "overlay" else height > 224), (
          kind, width, height)  # the overlay has its caption strip underneath
  # The input written is the model's input: the file resized to 224 x 224.
  source = np.asarray(Image.open(images[0]).convert("RGB").resize((224, 224), Image.BILINEAR),
                      np.float32)
  written = np.asarray(Image.open(report["images"][0]["files"]["input"]), np.float32)
  assert np.abs(source - written).mean() < 8  # resampling filters differ a little
  done = _run("ctdist.explain", f"--model={run / 'model.keras'}", images[0], "--class=normal",
              f"--out={out / 'normal'}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert json.loads((out / "normal" / "explain.json").read_text())["images"][0][
      "explained"] == "normal"
  done = _run("ctdist.explain", f"--model={run / 'model.keras'}", images[0], "--class=cyst")
  assert done.returncode == 2
  assert "--class='cyst'; expected one of" in done.stderr
  # The Kaggle release has no finding boxes: the pointing game says what it needs.
  done = _run("ctdist.explain", f"--model={run / 'model.keras'}", "--pointing_game")
  assert done.returncode == 2
  assert "records no finding boxes" in done.stderr and "tfds_ctscan/synthetic" in done.stderr


def test_explain_cli_refuses_a_model_without_a_convolution(tmp_path):
  inp = keras.Input((8, 8, 3))
  # A ctdist model (its output layer holds the class names) without a convolution.
  out = ctdist_layers.LabeledSoftmax(["a", "b"], name="probabilities")(
      keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
  path = tmp_path / "flat.keras"
  keras.Model(inp, out, name="flat").save(path)
  image = tmp_path / "x.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  done = _run("ctdist.explain", f"--model={path}", image, timeout=300)
  assert done.returncode == 2
  assert "error: model 'flat' has no convolutional layer" in done.stderr


class _Builder:
  """What choice.choose reads of a TFDS builder: its name and whether it has findings."""

  def __init__(self, findings: bool):
    self.info = type("Info", (), {"full_name": "toy/1.0.0",
                                  "features": {"findings": 1} if findings else {}})()


def _game(method: str, share: float, low: float, chance: float = 0.2) -> dict:
  return {"dataset": "toy/1.0.0", "split": "test", "method": method, "layer": "base/conv1",
          "map_size": [32, 32], "patch": 6, "stride": 2, "image_size": 32, "examples": 10,
          "without_finding": 0, "misclassified": 0, "empty_maps": 0, "images": 10,
          "hits": round(share * 10), "share": share, "chance": chance,
          "interval": {"value": share, "low": low, "high": min(1.0, share + 0.2)},
          "per_class": {}}


@pytest.mark.parametrize("gradcam_low,occlusion_low,expected,played", [
    (0.3, None, "gradcam", ["gradcam"]),                  # Grad-CAM passes: kept
    (0.1, 0.5, "occlusion", ["gradcam", "occlusion"]),    # fails: occlusion, which passes
    (0.1, 0.15, "gradcam", ["gradcam", "occlusion"])])    # neither: Grad-CAM, said so
def test_the_pictures_use_the_map_that_passes_the_pointing_game(
    toy, tmp_path, monkeypatch, gradcam_low, occlusion_low, expected, played):
  calls = []

  def scripted(ex, b, split):
    method = explainers.describe(ex)["method"]
    calls.append(method)
    low = gradcam_low if method == "gradcam" else occlusion_low
    return {**_game(method, low + 0.1, low), **explainers.describe(ex)}

  monkeypatch.setattr(explainers, "pointing_game", scripted)
  pick = choice.choose(toy["model"], _Builder(True), "test", str(tmp_path))
  assert pick.method == expected and calls == played and list(pick.games) == played
  assert pick.label().startswith("Grad-CAM - " if expected == "gradcam" else "occlusion - ")
  assert pick.label().endswith("passes" if occlusion_low != 0.15 else "FAILS")
  if expected == "gradcam" and len(played) == 2:
    assert pick.why.startswith("neither map passes the pointing game on test")
  # Kept beside the run with the weights' checksum: asked again, nothing is played again...
  assert choice.choose(toy["model"], _Builder(True), "test", str(tmp_path)).method == expected
  assert calls == played
  kept = json.loads((tmp_path / "pointing_game_test.json").read_text())
  assert kept["weights_checksum"] == saved.weights_checksum(toy["model"])
  # ...until the weights change, or the map is drawn otherwise (another layer here; for
  # occlusion, other squares).
  for field, other in (("weights_checksum", "0" * 16), ("layer", "base/other_layer")):
    changed = {**kept, field: other}
    (tmp_path / "pointing_game_test.json").write_text(json.dumps(changed))
    choice.choose(toy["model"], _Builder(True), "test", str(tmp_path))
    assert calls == played + ["gradcam"], field
    calls[:] = played


def test_without_drawn_findings_the_pictures_say_they_are_unchecked(toy, tmp_path):
  pick = choice.choose(toy["model"], _Builder(False), "test", str(tmp_path))
  assert pick.method == "gradcam" and pick.game is None and not pick.games
  assert pick.label() == "Grad-CAM - pointing game not played"
  assert "toy/1.0.0 has no drawn findings" in pick.why
  assert not list(tmp_path.iterdir())


def test_the_caption_is_written_under_the_picture():
  picture = np.full((224, 224, 3), 128, np.uint8)
  out = overlay.caption(picture, "occlusion - pointing game 0.98 vs chance 0.18: passes")
  assert out.shape[1:] == (224, 3) and out.shape[0] > 224
  np.testing.assert_array_equal(out[:224], picture)
  strip = out[224:]
  assert (strip < 64).any() and (strip == 255).mean() > 0.5  # dark text on white
  # Too long for one line at this width: wrapped, not cut.
  assert overlay.caption(picture[:, :112], "occlusion - pointing game 0.98 vs chance "
                         "0.18: passes").shape[0] > out.shape[0]
