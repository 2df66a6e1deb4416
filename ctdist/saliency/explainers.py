"""Explaining a trained model's answers: an explainer by name (Grad-CAM or occlusion), its
maps of image files as pictures, and the pointing game on a dataset's finding boxes."""

import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from ctdist.config import commands as commands_config
from ctdist.data import examples
from ctdist.data import image_files
from ctdist.model import layers as ctdist_layers
from ctdist.saliency import gradcam
from ctdist.saliency import occlusion
from ctdist.saliency import overlay
from ctdist.saliency import pointing
from ctdist.scoring import evaluation

BATCH = 32


class UnknownClassError(ValueError):
  """A --class the model does not have."""


def explainer(model: keras.Model, method: str = "gradcam", layer: str | None = None,
              min_size: int = commands_config.MIN_MAP_SIZE):
  """Grad-CAM of `model` at `layer` (default: `gradcam.choose_layer`'s), or its
  occlusion sensitivity; either has `.maps(images, classes)`."""
  if method == "occlusion":
    return occlusion.Occluder(model)
  if method != "gradcam":
    raise ValueError(f"--method={method!r}; expected one of {commands_config.METHODS}")
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


def explain_files(ex, paths: list[str], out_dir: str, class_name: str | None = None,
                  label: str | None = None) -> list[dict]:
  """Writes <stem>_input.png, <stem>_heatmap.png and <stem>_overlay.png per image into
  `out_dir` (`label`, e.g. the method and its pointing-game score, written under the
  overlay) and returns one result per path: the explained class, probabilities, the
  map's peak and the files written, or {file, error} for an unreadable image (the others
  go on)."""
  class_names = ctdist_layers.class_names_of(ex.model)
  if class_name is not None and class_name not in class_names:
    raise UnknownClassError(f"--class={class_name!r}; expected one of {class_names}")
  size = int(ex.model.input_shape[1])
  tf.io.gfile.makedirs(out_dir)
  results, stems = [], set()
  for path, image, error in image_files.read_each(paths, size):
    if error:
      results.append({"file": path, "error": error})
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
      picture = overlay.enlarge(picture)
      if kind == "overlay" and label:
        picture = overlay.caption(picture, label)
      with tf.io.gfile.GFile(written[kind], "wb") as f:
        f.write(overlay.png(picture))
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
  class_names = evaluation.check_classes(ex.model, b)
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

  for example in examples.annotated_examples(b, split, size):
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
