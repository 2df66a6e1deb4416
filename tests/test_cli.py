"""The evaluate and predict command lines and the exported SavedModel, as a user meets
them: subprocesses, exit codes, printed JSON, files written."""

import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctdist.data import builders
from ctdist.model import layers as ctdist_layers
from ctdist.model import resnet
from ctdist.model import serving
from ctdist.scoring import baseline
from ctdist.scoring import evaluation
from ctdist.scoring import stats
from tfds_ctscan import layout
import cli_run
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, timeout=600, real=False, **env_changes):
  """`python -m *args`, forked (tests/forked.py) unless `real`: a new interpreter, for
  what TensorFlow prints as it loads."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", **env_changes)
  env = {k: v for k, v in env.items() if v is not None}
  if not real:
    return forked.run(*args, env=env, timeout=timeout)
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(small_data_dir, tmp_path_factory) -> pathlib.Path:
  return cli_run.run_dir(small_data_dir, tmp_path_factory)


@pytest.mark.slow
def test_a_sigterm_during_the_first_build_keeps_nothing_and_the_same_command_builds(run_dir):
  root = run_dir.parent
  interrupted = json.loads((root / "interrupted.json").read_text())
  log = (root / "interrupted.log").read_text()
  # Exit 128 + 15, and TFDS's `incomplete.*` folder removed (the build had made it: the
  # signal came while it read an image).
  assert interrupted == {"status": 143, "left": []}, log[-3000:]
  assert "Traceback" not in log
  assert log.strip().splitlines()[-1].endswith(
      f"stopped by SIGTERM while building tfds_ctscan/kaggle in {root / 'tfds'}/tfds_ctscan/"
      "kaggle/1.0.0; an unfinished build is not kept: run the same command again to build it")


@pytest.mark.slow
def test_progress_lines_every_n_steps_and_the_disk_cache_is_removed_at_exit(run_dir):
  log = (run_dir.parent / "train.log").read_text()
  # 16 training images / batch 4 = 4 steps an epoch: a line at step 2 of each phase's
  # epoch, none at step 4 (the epoch's own line follows).
  for phase in ("head", "finetune"):
    assert re.search(rf"^{phase} epoch 1/1 step 2/4: loss [\d.]+ acc [\d.]+ \| "
                     r"[\d.]+ images/s \| epoch ETA \d\d:\d\d:\d\d$", log, re.M), log
    assert f"{phase} epoch 1/1 step 4/4" not in log
  cache = re.search(r"cache disk in (\S+)", log)
  assert cache and cache.group(1).startswith(str(run_dir.parent / "tmp" / "ctdist_cache_"))
  assert not os.path.exists(cache.group(1))
  assert not list((run_dir.parent / "tmp").glob("ctdist_*"))  # nor a worker's folder


# Native (C++) and absl-format lines: TensorFlow's own, not ctdist's.
NATIVE = re.compile(r"^[IWE]\d{4} ", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("flags,level,loud", [
    ([], None, False),      # the default: ctdist's lines only
    (["-v", "1"], None, True),  # TensorFlow's logs back
    ([], "0", True)])       # a level the user exported is TensorFlow's to apply
def test_tensorflows_logs_only_when_asked(run_dir, small_data_dir, flags, level, loud):
  image = _image(small_data_dir, "test/normal/*")
  done = _run("ctdist.predict", f"--model_dir={run_dir}", "--json", str(image), *flags,
              real=True, TF_CPP_MIN_LOG_LEVEL=level)
  assert done.returncode == 0, done.stderr[-3000:]
  assert bool(NATIVE.search(done.stderr)) == loud, done.stderr
  assert json.loads(done.stdout)[0]["file"] == str(image)


def _image(small_data_dir, rel) -> pathlib.Path:
  """A file of the fixture's Kaggle folder (written beside the TFDS data_dir)."""
  matches = sorted((pathlib.Path(small_data_dir).parent / "manual" / "Data").glob(rel + ".*"))
  assert matches, rel
  return matches[0]


def _copy(run_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  """The shared run without its checkpoints, for a test that writes into it."""
  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "best"))
  return copy


@pytest.mark.slow
def test_evaluate_cli_scores_the_split_whole_and_leak_free(run_dir, tmp_path):
  run_dir = _copy(run_dir, tmp_path)
  (run_dir / "metrics_test.json").unlink()
  (run_dir / "reliability_test.png").unlink()
  done = _run("ctdist.evaluate", f"--model_dir={run_dir}", "--split=test")
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads((run_dir / "metrics_test.json").read_text())
  # The fixture's test split: 13 images, 7 normal of which int(0.15 * 7) = 1 is a copy.
  assert report["num_leaked"] == 1
  assert report["all"]["num_examples"] == 13 and report["leak_free"]["num_examples"] == 12
  assert "tfds_ctscan/kaggle test: 1 leaked example(s) excluded" in done.stdout
  assert f"{report['all']['accuracy']:.3f}" in done.stdout
  # Every headline metric with its interval, in the JSON and on screen; calibration too.
  for column in ("all", "leak_free"):
    iv = report[column]["intervals"]["accuracy"]
    assert iv["low"] <= report[column]["accuracy"] == iv["value"] <= iv["high"]
    assert iv["resamples"] == 1000
    assert 0 <= report[column]["calibration"]["ece_15_bins"] <= 1
  assert f"[{iv['low']:.3f}, {iv['high']:.3f}]" in done.stdout
  assert "[brackets: 95 % intervals, percentile bootstrap, 1000 resamples" in done.stdout
  assert (run_dir / "reliability_test.png").stat().st_size > 0
  # The trivial baselines beside it, compared paired, and one sentence on the pixels.
  against = json.loads((run_dir / "baseline_test.json").read_text())
  assert set(against["baselines"]) == {baseline.PIXEL, baseline.MAJORITY}
  assert against["sentence"] in done.stdout.splitlines()
  assert "A = the model" in done.stdout and "McNemar" in done.stdout
  (run_dir / "baseline_test.json").unlink()
  done = _run("ctdist.evaluate", f"--model_dir={run_dir}", "--split=test", "--nobaseline")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "baseline" not in done.stdout and not (run_dir / "baseline_test.json").exists()


@pytest.mark.slow
def test_evaluate_cli_refuses_a_model_trained_on_other_classes(run_dir, tmp_path):
  other = tmp_path / "other"
  other.mkdir()
  shutil.copy(run_dir / "options.json", other / "options.json")
  permuted = ["normal", "adenocarcinoma", "squamous_cell_carcinoma", "large_cell_carcinoma"]
  resnet.build_model(32, permuted, weights="none").save(other / "model.keras")
  done = _run("ctdist.evaluate", f"--model_dir={other}")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      f"error: model classes {permuted} differ from dataset classes")
  assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_predict_cli_json_and_exit_codes(run_dir, small_data_dir, tmp_path):
  good = _image(small_data_dir, "test/normal/0003")
  bad = tmp_path / "notes.png"
  bad.write_text("not an image")
  done = _run("ctdist.predict", f"--model={run_dir / 'model.keras'}", "--json",
              str(good), str(bad))
  assert done.returncode == 1  # one file could not be classified
  results = json.loads(done.stdout)
  assert [r["file"] for r in results] == [str(good), str(bad)]
  probs = results[0]["probabilities"]
  assert list(probs) == list(layout.CLASS_NAMES)
  assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
  assert results[0]["label"] == max(probs, key=probs.get)
  assert "notes.png" in results[1]["error"]
  missing = _run("ctdist.predict", f"--model={tmp_path / 'none.keras'}", str(good))
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1].startswith(
      f"error: --model={tmp_path / 'none.keras'}: no such file")


# Run by `python -I` from another folder (no PYTHONPATH): TensorFlow alone. `import
# tensorflow` itself imports part of Keras; loading and calling the SavedModel must add
# nothing from Keras, and nothing of ctdist is ever imported.
_SERVE_FROM_TENSORFLOW_ALONE = """
import json, sys
import tensorflow as tf
ours = lambda: {m for m in sys.modules if m.split(".")[0] in ("ctdist", "keras", "tfds_ctscan")}
before = ours()
infer = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = infer(images=tf.constant([open(p, "rb").read() for p in sys.argv[2:]]))
print(json.dumps({"class_name": [n.decode() for n in out["class_name"].numpy()],
                  "class_index": out["class_index"].numpy().tolist(),
                  "probabilities": out["probabilities"].numpy().tolist(),
                  "imported_by_serving": sorted(ours() - before),
                  "ctdist": sorted(m for m in ours() if not m.startswith("keras"))}))
"""


def _served_files(small_data_dir, folder: pathlib.Path) -> list[pathlib.Path]:
  """Test images of every class re-encoded as a user's files may be: PNG 8-bit RGB, grey and
  RGBA, a 16-bit grey PNG, JPEG RGB and grey; sizes from 40 to 300 px."""
  sources = [_image(small_data_dir, f"test/{c}/*") for c in
             ("adenocarcinoma", "large.cell.carcinoma", "normal", "squamous.cell.carcinoma")]
  grey = [np.asarray(Image.open(p).convert("L")) for p in sources]
  files = {
      "rgb.png": Image.open(sources[0]).convert("RGB"),
      "grey_big.png": Image.fromarray(grey[1]).resize((300, 250)),
      "rgba.png": Image.open(sources[2]).convert("RGBA"),
      "grey16.png": Image.fromarray(grey[3].astype(np.uint16) * 257 + 100),
      "rgb.jpg": Image.open(sources[1]).convert("RGB").resize((83, 57)),
      "grey.jpg": Image.fromarray(grey[2]),
  }
  paths = []
  for name, image in files.items():
    image.save(folder / name, **({"quality": 90} if name.endswith(".jpg") else {}))
    paths.append(folder / name)
  assert Image.open(folder / "grey16.png").mode == "I;16"
  return paths


def _saved_model(run_dir) -> pathlib.Path:
  versions = sorted(int(p.name) for p in (run_dir / "saved_model").iterdir() if p.name.isdigit())
  assert versions == [1]  # trained and calibrated in one run: one version, calibrated
  return run_dir / "saved_model" / "1"


@pytest.mark.slow
def test_saved_model_in_a_process_without_ctdist_answers_image_bytes_as_predict(
    run_dir, small_data_dir, tmp_path):
  paths = _served_files(small_data_dir, tmp_path)
  predicted = _run("ctdist.predict", f"--model_dir={run_dir}", "--json", *map(str, paths))
  assert predicted.returncode == 0, predicted.stderr[-3000:]
  expected = json.loads(predicted.stdout)
  served = subprocess.run(
      [sys.executable, "-I", "-c", _SERVE_FROM_TENSORFLOW_ALONE, str(_saved_model(run_dir)),
       *map(str, paths)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert served.returncode == 0, served.stderr[-3000:]
  got = json.loads(served.stdout.strip().splitlines()[-1])
  assert got["imported_by_serving"] == [] and got["ctdist"] == []
  names = list(layout.CLASS_NAMES)
  assert got["class_name"] == [r["label"] for r in expected]
  assert [names[i] for i in got["class_index"]] == got["class_name"]
  # (This 8-step model from random init, its logits kernel started at zero, answers
  # nearly 1/4 for every image, the more so once calibrated: whether the served graph
  # reads each image as the builder does is tested pixel by pixel in test_serving.py.)
  np.testing.assert_allclose(
      got["probabilities"], [[r["probabilities"][n] for n in names] for r in expected],
      atol=1e-5, rtol=0)
  # The calibrated temperature is inside the export: not the softmax of temperature 1.
  assert json.loads((_saved_model(run_dir) / "assets.extra" / "ctdist.json").read_text())[
      "temperature"] == json.loads((run_dir / "calibration.json").read_text())["temperature"]


def _readme_block(language: str, containing: str) -> str:
  blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
  found = [b for b in blocks if containing in b]
  assert len(found) == 1, f"README: one ```{language} block holding {containing!r}"
  return found[0]


@pytest.mark.slow
def test_saved_model_signature_is_the_one_the_readme_shows(run_dir):
  shown = subprocess.run(
      [str(pathlib.Path(sys.executable).parent / "saved_model_cli"), "show", "--dir",
       str(_saved_model(run_dir)), "--tag_set", "serve", "--signature_def", "serving_default"],
      capture_output=True, text=True, timeout=300)
  assert shown.returncode == 0, shown.stderr[-2000:]
  readme = _readme_block("text", "inputs['images'] tensor_info")
  assert shown.stdout.strip() == readme.strip()


def _demo_paths(block: str, small_data_dir) -> dict:
  """The README's demo files -> this test's copies of the same classes."""
  return {p: str(_image(small_data_dir, "test/" + p.split("/Data/test/")[1].split("/")[0] + "/*"))
          for p in re.findall(r"runs/demo/files/Data/test/[\w.]+/\d+\.png", block)}


@pytest.mark.slow
def test_readme_rest_request_body_decoded_as_the_rest_api_does_gives_the_class_names(
    run_dir, small_data_dir, tmp_path):
  block = _readme_block("sh", "curl -s -d @request.json")
  make_body = block.split("curl ")[0]
  for readme_path, ours in _demo_paths(make_body, small_data_dir).items():
    make_body = make_body.replace(readme_path, ours)
  done = subprocess.run(["bash", "-euc", make_body], cwd=tmp_path, capture_output=True,
                        text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  body = json.loads((tmp_path / "request.json").read_text())
  # TensorFlow Serving's REST API: a one-input signature's `instances` are its values, one
  # per example; {"b64": ...} is a binary string.
  images = [base64.b64decode(instance["b64"]) for instance in body["instances"]]
  infer = tf.saved_model.load(str(_saved_model(run_dir))).signatures["serving_default"]
  out = infer(images=tf.constant(images))
  files = list(_demo_paths(block, small_data_dir).values())
  expected = json.loads(_run("ctdist.predict", f"--model_dir={run_dir}", "--json", *files).stdout)
  assert [n.decode() for n in out["class_name"].numpy()] == [r["label"] for r in expected]
  shown = json.loads(_readme_block("json", '"predictions"'))
  assert [sorted(p) for p in shown["predictions"]] == [sorted(out)] * len(images)


class _StubFeedingTheSignature:
  """Stands in for PredictionServiceStub: Predict feeds the request's tensors to the
  signature it names, as the server would, and answers a PredictResponse."""

  def __init__(self, saved_model_dir):
    self.model = tf.saved_model.load(saved_model_dir)

  def __call__(self, channel):
    return self

  def Predict(self, request, timeout):  # pylint: disable=invalid-name
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
    infer = self.model.signatures[request.model_spec.signature_name]
    out = infer(**{k: tf.make_ndarray(v) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for name, value in out.items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


@pytest.mark.slow
def test_readme_grpc_lines_print_the_class_names(run_dir, small_data_dir, monkeypatch, capsys):
  import grpc  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
  code = _readme_block("python", "prediction_service_pb2_grpc")
  paths = _demo_paths(code, small_data_dir)
  for readme_path, ours in paths.items():
    code = code.replace(readme_path, ours)
  monkeypatch.setattr(grpc, "insecure_channel", lambda target: target)
  monkeypatch.setattr(prediction_service_pb2_grpc, "PredictionServiceStub",
                      _StubFeedingTheSignature(str(_saved_model(run_dir))))
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  expected = json.loads(_run("ctdist.predict", f"--model_dir={run_dir}", "--json",
                             *paths.values()).stdout)
  assert capsys.readouterr().out.splitlines() == [f"{r['file']} {r['label']}" for r in expected]


@pytest.mark.slow
def test_train_calibrate_stores_the_temperature_everywhere(run_dir):
  t = json.loads((run_dir / "calibration.json").read_text())["temperature"]
  assert t != 1.0  # fitted (exactly 1 would mean nothing was stored)
  assert ctdist_layers.temperature_of(keras.saving.load_model(run_dir / "model.keras")) == t
  metrics = json.loads((run_dir / "metrics.json").read_text())
  assert metrics["calibration"]["temperature"] == t and metrics["test"]["temperature"] == t
  assert json.loads((run_dir / "predictions_test.json").read_text())["temperature"] == t


@pytest.mark.slow
def test_calibrate_cli_refits_from_the_uncalibrated_model_and_re_exports(run_dir, tmp_path):
  copy = tmp_path / "run"
  copy.mkdir()
  shutil.copy(run_dir / "options.json", copy / "options.json")
  uncalibrated = keras.saving.load_model(run_dir / "model.keras")
  ctdist_layers.set_temperature(uncalibrated, 1.0)
  uncalibrated.save(copy / "model.keras")
  serving.export(uncalibrated, str(copy / "saved_model"))
  done = _run("ctdist.calibrate", f"--model_dir={copy}")
  assert done.returncode == 0, done.stderr[-3000:]
  t = json.loads((run_dir / "calibration.json").read_text())["temperature"]
  report = json.loads((copy / "calibration.json").read_text())
  assert report["temperature"] == pytest.approx(t, rel=1e-4)  # the same fit as train's
  assert f"temperature {report['temperature']:.3f} (fitted on valid)" in done.stdout
  calibrated = keras.saving.load_model(copy / "model.keras")
  assert ctdist_layers.temperature_of(calibrated) == report["temperature"]
  images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  # The calibrated model is the SavedModel's next version (what a server then serves).
  assert serving.versions(str(copy / "saved_model")) == [1, 2]
  loaded = tf.saved_model.load(str(copy / "saved_model" / "2"))  # kept: its variables
  served = loaded.signatures[serving.RESIZED_SIGNATURE](pixels=tf.constant(images))
  np.testing.assert_allclose(served["probabilities"].numpy(), calibrated(images).numpy(),
                             atol=1e-5)
  # Other splits: fitted on test (13 images), scored on valid (5); from temperature 1 again.
  done = _run("ctdist.calibrate", f"--model_dir={copy}", "--fit_split=test", "--split=valid")
  assert done.returncode == 0, done.stderr[-3000:]
  other = json.loads((copy / "calibration.json").read_text())
  assert other["fit_split"] == "test" and other["test"]["before"]["num_examples"] == 13
  assert other["valid"]["all"]["before"]["num_examples"] == 5
  assert other["test"]["after"]["nll"] <= other["test"]["before"]["nll"]  # fitted there
  # The temperature of the test split's answers at temperature 1, fitted here by hand.
  ctdist_layers.set_temperature(uncalibrated, 1.0)
  test = evaluation.predict_split(uncalibrated, builders.builder(
      "tfds_ctscan/kaggle", str(run_dir.parent / "tfds")), "test", 32)  # calibrate's batch
  assert other["temperature"] == pytest.approx(stats.fit_temperature(test.labels, test.probs),
                                               rel=1e-4)
  assert f"temperature {other['temperature']:.3f} (fitted on test)" in done.stdout
  assert json.loads((copy / "metrics_valid.json").read_text())["temperature"] == (
      other["temperature"])
  assert ctdist_layers.temperature_of(keras.saving.load_model(copy / "model.keras")) == (
      other["temperature"])
  missing = _run("ctdist.calibrate", f"--model_dir={tmp_path / 'nothing'}")
  assert missing.returncode == 2
  assert missing.stderr.strip().splitlines()[-1] == (
      f"error: {tmp_path / 'nothing' / 'model.keras'} not found; train first with "
      "python -m ctdist.train")


@pytest.mark.slow
def test_export_litert_writes_files_that_agree_with_model_keras(run_dir, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "best", "explain"))
  sizes = {}
  for quantization in ("float32", "float16"):
    done = _run("ctdist.export", f"--model_dir={copy}", "--format=litert",
                f"--quantization={quantization}")
    assert done.returncode == 0, done.stderr[-3000:]
    path = copy / "litert" / f"model_{quantization}.tflite"
    sizes[quantization] = path.stat().st_size
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["bytes"] == sizes[quantization] and record["quantization"] == quantization
    checked = record["agreement"]
    assert (checked["split"], checked["num_examples"]) == ("test", 13)
    assert f"wrote {path} ({sizes[quantization] / 1e6:.1f} MB, {quantization})" in done.stdout
    assert f"same class {checked['same_class']}/13" in done.stdout
    # The file itself, run by the interpreter TensorFlow ships on an image the test makes:
    # the probabilities of model.keras (calibrated, temperature inside).
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    pixels = np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = keras.saving.load_model(copy / "model.keras")(pixels).numpy()
    tolerance = 1e-4 if quantization == "float32" else 5e-2
    np.testing.assert_allclose(got, expected, atol=tolerance)
    if quantization == "float32":  # the same arithmetic: the same classes, near-equal numbers
      assert checked["same_class"] == 13 and checked["max_probability_difference"] < 1e-4
  # Half-precision weights: about half the bytes (ResNet50's weights are nearly all of it).
  assert 0.4 < sizes["float16"] / sizes["float32"] < 0.6
  again = _run("ctdist.export", f"--model_dir={copy}", "--format=saved_model")
  assert again.returncode == 0 and again.stdout.strip() == f"wrote {copy}/saved_model/1"


@pytest.mark.slow
def test_model_card_states_the_runs_data_metrics_and_limits(run_dir, small_data_dir):
  card = json.loads((run_dir / "model_card.json").read_text())
  text = (run_dir / "model_card.md").read_text()
  # Counts from the files on disk, not from the builder.
  manual = pathlib.Path(small_data_dir).parent / "manual" / "Data"
  for split in ("train", "valid", "test"):
    counted = card["model_parameters"]["data"]["splits"][split]
    assert counted["examples"] == len(list((manual / split).glob("*/*")))
    assert counted["per_class"]["normal"] == len(list((manual / split).glob("normal/*")))
  metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
  shown = {(m["type"], m["slice"]): m for m in card["quantitative_analysis"]["performance_metrics"]}
  for column in ("all", "leak_free"):
    accuracy = shown[("accuracy", column)]
    assert accuracy["value"] == metrics[column]["accuracy"]
    assert accuracy["confidence_interval"] == {
        "lower_bound": metrics[column]["intervals"]["accuracy"]["low"],
        "upper_bound": metrics[column]["intervals"]["accuracy"]["high"]}
  calibration = json.loads((run_dir / "calibration.json").read_text())
  assert card["calibration"]["temperature"] == calibration["temperature"]
  assert card["training"]["options"]["image_size"] == 32
  limits = " ".join(card["considerations"]["limitations"])
  assert "from scratch" in limits and "32 x 32" in limits and "SYNTHETIC" not in limits
  assert "Not for diagnosis" in card["considerations"]["use_cases"][0]
  for heading in ("## Intended use", "## Data", "## Training", "## Quantitative analysis",
                  "## Calibration", "## Limitations", "## Ethical considerations"):
    assert heading in text
  acc = metrics["all"]["accuracy"]
  iv = metrics["all"]["intervals"]["accuracy"]
  assert f"| accuracy | {acc:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] |" in text
  assert 'href="model_card.md"' in (run_dir / "report.html").read_text()
