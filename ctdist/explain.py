"""Where a trained model looked: Grad-CAM (or occlusion) per image, or the pointing game
against the synthetic findings' boxes.

Run: python -m ctdist.explain --model=runs/demo/model/model.keras IMAGE [IMAGE ...] --out=DIR
     python -m ctdist.explain --model=runs/demo/model/model.keras --pointing_game
     python -m ctdist.explain --model=... --pointing_game --method=occlusion   (the check)
"""

# First: sets TensorFlow's C++ log level before TensorFlow loads.
from ctdist import console  # pylint: disable=g-bad-import-order

import os
import pathlib
import sys

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from ctdist import data as data_lib
from ctdist import evaluate as evaluate_lib
from ctdist import files
from ctdist import gradcam
from ctdist import model as model_lib
from ctdist import occlusion
from ctdist import options
from ctdist import overlay
from ctdist import pointing
from ctdist import predict

BATCH = 32
METHODS = ("gradcam", "occlusion")


def explainer(model: keras.Model, method: str = "gradcam", layer: str | None = None,
              min_size: int = gradcam.MIN_MAP_SIZE):
  """Grad-CAM of `model` at `layer` (default: `gradcam.choose_layer`'s), or its
  occlusion sensitivity; either has `.maps(images, classes)`."""
  if method == "occlusion":
    return occlusion.Occluder(model)
  if method != "gradcam":
    raise ValueError(f"--method={method!r}; expected one of {METHODS}")
  return gradcam.Explainer(model, gradcam.choose_layer(model, layer, min_size))


def describe(ex) -> dict:
  """What a map was computed from: {method, layer and map size} or {method, patch}."""
  if isinstance(ex, occlusion.Occluder):
    return {"method": "occlusion", "patch": ex.patch, "stride": ex.stride}
  return {"method": "gradcam", "layer": ex.layer.name,
          "map_size": [ex.layer.height, ex.layer.width]}


def describe_text(d: dict) -> str:
  if d["method"] == "occlusion":
    return f"occlusion ({d['patch']} px squares every {d['stride']} px)"
  return f"Grad-CAM at {d['layer']} ({d['map_size'][0]}x{d['map_size'][1]} map)"


def explain_files(ex, paths: list[str], out_dir: str,
                  class_name: str | None = None) -> list[dict]:
  """Writes <stem>_input.png, <stem>_heatmap.png and <stem>_overlay.png per image into
  `out_dir` and returns one result per path: the explained class, probabilities, the
  map's peak and the files written, or {file, error} for an unreadable image (the others
  go on)."""
  class_names = model_lib.class_names_of(ex.model)
  if class_name is not None and class_name not in class_names:
    raise ValueError(f"--class={class_name!r}; expected one of {class_names}")
  size = int(ex.model.input_shape[1])
  tf.io.gfile.makedirs(out_dir)
  results, stems = [], set()
  for path in paths:
    try:
      image = predict.read_input(path, size)
    except predict.READ_ERRORS as e:
      results.append({"file": path, "error": str(e)})
      continue
    target = None if class_name is None else [class_names.index(class_name)]
    cams, probs, explained = ex.maps(image[None], target)
    stem = pathlib.Path(path).stem
    while stem in stems:  # two files of one name from different folders
      stem += "_"
    stems.add(stem)
    written = {}
    for kind, picture in (("input", image), ("heatmap", overlay.heat(cams[0])),
                          ("overlay", overlay.blend(image, cams[0]))):
      written[kind] = os.path.join(out_dir, f"{stem}_{kind}.png")
      with tf.io.gfile.GFile(written[kind], "wb") as f:
        f.write(overlay.png(overlay.enlarge(picture)))
    results.append({
        "file": path, "predicted": class_names[int(probs[0].argmax())],
        "explained": class_names[int(explained[0])],
        "probabilities": {n: float(p) for n, p in zip(class_names, probs[0])},
        "peak_yx": list(gradcam.peak(cams[0])), "empty_map": bool(cams[0].max() == 0),
        "files": written})
  return results


def pointing_game(ex, b, split: str = "test") -> dict:
  """The pointing game on `split`'s correctly classified images that have a finding box;
  the result names the method (`describe`) and how many images were left out."""
  class_names = evaluate_lib.check_classes(ex.model, b)
  size = int(ex.model.input_shape[1])
  kept_cams, kept_boxes, kept_labels = [], [], []
  counts = {"examples": 0, "without_finding": 0, "misclassified": 0, "empty_maps": 0}
  batch = []

  def flush():
    # At the map's own resolution: a box's fractions apply to it as to the image.
    cams, probs, _ = ex.maps(np.stack([image for _, image, _, _ in batch]), upsampled=False)
    for (_, _, label, boxes), cam, p in zip(batch, cams, probs):
      if int(p.argmax()) != label:
        counts["misclassified"] += 1
        continue
      counts["empty_maps"] += int(cam.max() == 0)
      kept_cams.append(cam)
      kept_boxes.append(boxes)
      kept_labels.append(label)
    batch.clear()

  for example in data_lib.annotated_examples(b, split, size):
    counts["examples"] += 1
    if not len(example[3]):
      counts["without_finding"] += 1
      continue
    batch.append(example)
    if len(batch) == BATCH:
      flush()
  if batch:
    flush()
  result = pointing.score(np.array(kept_cams), kept_boxes, np.array(kept_labels),
                          class_names)
  return {"dataset": b.info.full_name, "split": split, **describe(ex), "image_size": size,
          **counts, **result}


def render(results: list[dict]) -> str:
  lines = []
  for r in results:
    if "error" in r:
      lines.append(f"{r['file']}: ERROR: {r['error']}")
      continue
    p = r["probabilities"]
    lines.append(f"{r['file']}: predicted {r['predicted']} ({p[r['predicted']]:.3f}); "
                 f"{r['explained']}'s map -> {r['files']['overlay']}"
                 + ("  (empty map: nothing raised this class's score)"
                    if r["empty_map"] else ""))
  return "\n".join(lines)


def _define_flags():
  flags.DEFINE_string("model", None, "Path of model.keras from ctdist.train.", required=True)
  flags.DEFINE_string("out", None, "Folder for the pictures and explain.json "
                      "(default: explain/ beside the model).")
  flags.DEFINE_string("class", None, "Class to explain (default: the predicted one).")
  flags.DEFINE_enum("method", "gradcam", METHODS, "gradcam, or occlusion (slow, model-"
                    "agnostic: the probability drop when a square is covered).")
  flags.DEFINE_string("layer", None, "Grad-CAM layer, e.g. conv5_block3_out (default: "
                      "the deepest with a map of at least --min_map_size a side).")
  flags.DEFINE_integer("min_map_size", gradcam.MIN_MAP_SIZE,
                       "Smallest map side the default layer may have.", lower_bound=1)
  flags.DEFINE_bool("pointing_game", False, "Score where the maps peak against the "
                    "dataset's finding boxes (tfds_ctscan/synthetic) instead.")
  flags.DEFINE_string("split", "test", "Split of the pointing game.")
  flags.DEFINE_string("dataset", None, "TFDS name; default: the run's (options.json "
                      "beside the model).")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir; default: the run's.")


def main(argv):
  f = flags.FLAGS
  console.setup(f.verbosity)
  paths = argv[1:]
  if bool(paths) == f.pointing_game:
    raise app.UsageError("give image files, or --pointing_game (not both)")
  if not tf.io.gfile.exists(f.model):
    console.fail(FileNotFoundError(
        f"--model={f.model}: no such file; pass the model.keras written by "
        "ctdist.train, e.g. runs/demo/model/model.keras"))
  model_dir = os.path.dirname(f.model) or "."
  out = f.out or os.path.join(model_dir, "explain")
  model = keras.saving.load_model(f.model, safe_mode=True)
  try:
    ex = explainer(model, f.method, f.layer, f.min_map_size)
    if f.pointing_game:
      b = data_lib.builder(*options.run_dataset(model_dir, f.dataset, f.data_dir))
      result = pointing_game(ex, b, f.split)
      tf.io.gfile.makedirs(out)
      suffix = "" if f.method == "gradcam" else f"_{f.method}"
      files.write_json(os.path.join(out, f"pointing_game_{f.split}{suffix}.json"), result)
      print(f"{result['dataset']} {f.split}, {describe_text(result)}, "
            f"{result['image_size']} px input; {result['misclassified']} misclassified and "
            f"{result['without_finding']} without a finding left out")
      print(pointing.render(result))
      return
    results = explain_files(ex, paths, out, f["class"].value)
  except (gradcam.NoFeatureMapError, data_lib.NoFindingsError, data_lib.DatasetNotBuiltError,
          evaluate_lib.ClassMismatchError, options.NoOptionsError,
          options.OptionsFileError, ValueError) as e:
    console.fail(e)
  files.write_json(os.path.join(out, "explain.json"),
                   {"model": f.model, **describe(ex), "images": results})
  print(describe_text(describe(ex)))
  print(render(results))
  if any("error" in r for r in results):
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
